"""Era `v6.16`: KVM_X86_QUIRK_IGNORE_GUEST_PAT (c9c1e20b4c7d), 6.16 through 6.19.

vmx_ignore_guest_pat() is true when the VM has no non-coherent DMA and the quirk is on
(the default). Userspace may turn the quirk off only where VMX lists it as supported, i.e.
on a CPU with self-snoop; then guest PAT is always honoured. CD_NW_CLEARED is AMD-only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..x86.memtype import MemTypeError
from .era import C_IGNORE_PAT, RULE_MMIO, WB, Era, Rule
from .scenario import VmConfig
from .v6_11 import HONOR, _zap, no_huge_page_check


@dataclass(frozen=True)
class Era616(Era):
    def check_vm(self, vm: VmConfig) -> None:
        if not vm.quirk_ignore_guest_pat and not vm.self_snoop:
            raise MemTypeError(
                ("vm", "quirk_ignore_guest_pat"),
                "KVM_X86_QUIRK_IGNORE_GUEST_PAT cannot be turned off on a CPU without self-snoop",
                "VMX drops the quirk from supported_quirks without X86_FEATURE_SELFSNOOP (c9c1e20b4c7d)",
            )


ERA = Era616(
    id="v6.16",
    title="Linux 6.16 onward (KVM_X86_QUIRK_IGNORE_GUEST_PAT)",
    kernels="6.16-6.19",
    summary=(
        "MMIO is UC. While KVM_X86_QUIRK_IGNORE_GUEST_PAT is on (the default) and the VM has no "
        "non-coherent DMA, pages are WB|IPAT; otherwise WB without IPAT, honouring guest PAT. The "
        "quirk can be disabled only on CPUs with self-snoop; TDX VMs always have it off. "
        "Non-coherent DMA starting or stopping zaps everything only while the quirk is on."
    ),
    commits=(C_IGNORE_PAT,),
    rules=(
        RULE_MMIO,
        Rule("ignore-pat", "vmx_ignore_guest_pat", "quirk(IGNORE_GUEST_PAT) && !kvm_arch_has_noncoherent_dma(kvm)",
             lambda f: f.quirk_ignore_guest_pat and not f.noncoherent_dma,
             lambda f: (WB, True, "WB|IPAT: guest PAT ignored"), C_IGNORE_PAT.sha),
        HONOR,
    ),
    zap_policy=_zap(lambda vm: vm.quirk_ignore_guest_pat, "kvm_mmu_may_ignore_guest_pat(): quirk(IGNORE_GUEST_PAT) on", C_IGNORE_PAT.sha),
    huge_page_check=no_huge_page_check,
    notes=("KVM_X86_QUIRK_CD_NW_CLEARED is auto-disabled on Intel and has no effect on VMX.",),
)
