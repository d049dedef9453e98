"""Era `v6.16`: KVM_X86_QUIRK_IGNORE_GUEST_PAT (c9c1e20b4c7d), 6.16 through 6.19.

vmx_ignore_guest_pat() is true when the VM has no non-coherent DMA and the quirk is on
(the default). Userspace may turn the quirk off only where VMX lists it as supported, i.e.
on a CPU with self-snoop; then guest PAT is always honoured. CD_NW_CLEARED is AMD-only.
"""

from __future__ import annotations

from .era import (
    C_IGNORE_PAT,
    CD_NOT_VIRTUALISED,
    MTRR_NOT_VIRTUALISED,
    NO_HUGE_PAGE_CHECK,
    RULE_HONOR_PAT,
    RULE_MMIO,
    WB,
    Era,
    Gate,
    Rule,
    ZapPolicy,
    dma_zap_all,
)

ERA = Era(
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
             lambda _: (WB, True, "WB|IPAT: guest PAT ignored"), C_IGNORE_PAT.sha,
             reads=frozenset({"quirk_ignore_guest_pat", "noncoherent_dma"})),
        RULE_HONOR_PAT,
    ),
    zap_policy=ZapPolicy(
        mtrr_write=MTRR_NOT_VIRTUALISED,
        cr0_cd=CD_NOT_VIRTUALISED,
        # 6.16.1 x86.c kvm_noncoherent_dma_assignment_start_or_stop() tests the quirk itself.
        noncoherent_dma=dma_zap_all("kvm_check_has_quirk(kvm, KVM_X86_QUIRK_IGNORE_GUEST_PAT)",
                                    Gate.QUIRK_IGNORE_GUEST_PAT, C_IGNORE_PAT.sha),
    ),
    huge_pages=NO_HUGE_PAGE_CHECK,
    notes=("KVM_X86_QUIRK_CD_NW_CLEARED is auto-disabled on Intel and has no effect on VMX.",),
)
