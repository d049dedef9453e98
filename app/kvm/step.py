"""One check of a kernel function as evaluated, for the audit trails the page lights up.

Shared by every decision the resolver explains step by step: vmx_get_mt_mask()'s rules and
an era's zap checks (app.kvm.era), and kvm_is_mmio_pfn()'s tests (app.kvm.host_page).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Step:
    """A check as evaluated: held (True), did not hold (False), or was never reached (None).

    `commit` says where the check was read: a commit id, or a file and the trees read.
    """

    id: str
    function: str
    condition: str
    held: bool | None
    result: str
    commit: str = ""
