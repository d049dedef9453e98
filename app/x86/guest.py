"""What the guest expects on bare metal: its own MTRR type (SDM rules) x its PAT, and CR0.

SDM "Cache Control" (11.5.3, Table 11-5 in the ~2016 edition): CR0.CD=1 puts the cache in
no-fill mode, which we report as UC (the guest asked for uncached behaviour; lines already
cached may still hit, which only makes bare metal *weaker* than UC, never stronger);
CR0.CD=0 with NW=1 is invalid (#GP). With paging off (CR0.PG=0) the PAT type is WB
(SDM 29.3.7.2 text). A guest without the MTRR CPUID bit has no MTRRs to consult, so PAT
alone decides (the WB row of the combination table).
"""

from __future__ import annotations

from dataclasses import dataclass

from .ept import combine
from .memtype import LocLike, MemType, MemTypeError, as_loc
from .mtrr import Lookup


@dataclass(frozen=True, slots=True)
class Expectation:
    type: MemType | None
    reason: str


def check_cr0(cd: bool, nw: bool, field: LocLike = "vcpu") -> None:
    """CR0.NW=1 with CD=0 is an invalid combination: MOV to CR0 raises #GP(0)."""
    if nw and not cd:
        raise MemTypeError((*as_loc(field), "cr0_nw"), "CR0.NW=1 with CR0.CD=0 is invalid",
                           "MOV to CR0 raises #GP(0) (SDM Table 11-5)")


def guest_pat_type(pat_entry: MemType, paging: bool) -> MemType:
    """The PAT type of an access: WB when the guest runs with CR0.PG=0."""
    return pat_entry if paging else MemType.WB


def expectation(
    mtrr: Lookup, pat_entry: MemType, *, cd: bool, nw: bool = False, paging: bool = True, guest_has_mtrr: bool = True
) -> Expectation:
    check_cr0(cd, nw)
    if cd:
        return Expectation(MemType.UC, "CR0.CD=1: no-fill mode, effectively UC")
    pat = guest_pat_type(pat_entry, paging)
    if not guest_has_mtrr:
        eff = combine(MemType.WB, pat)  # the WB row: PAT alone, UC- resolving to UC
        return Expectation(eff, f"no MTRR feature: PAT {pat.label} alone gives {eff.label}")
    if mtrr.type is None:
        return Expectation(None, f"MTRR type undefined ({mtrr.reason})")
    eff = combine(mtrr.type, pat)
    return Expectation(eff, f"MTRR {mtrr.type.label} x PAT {pat.label} = {eff.label}")
