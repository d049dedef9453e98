"""Era `v4.2`: Linux 4.2 to 6.6, vmx_get_mt_mask() after "fix CR0.CD virtualization".

Read in arch/x86/kvm/vmx.c (4.2, 4.15) and vmx/vmx.c (5.15 to 6.6; gotos became early
returns between 5.15 and 5.19 with no functional change). Guest MTRRs are honoured only for
VMs with non-coherent DMA; guest CR0.CD is emulated by the EPT type. Zaps: update_mtrr()
(MTRR writes, nc-DMA only) and kvm_post_set_cr0() (CD toggles, only with the quirk off).
"""

from __future__ import annotations

from .era import (
    C_CD_FIX,
    C_HUGE_IFF,
    C_QUIRK,
    RULE_GUEST_MTRR,
    RULE_MMIO,
    UC,
    WB,
    Era,
    EventZap,
    Gate,
    Rule,
    ZapPolicy,
    Zaps,
    cd_zap_all,
    mtrr_range_zap,
    rule_no_ncdma,
)

RULES = (
    RULE_MMIO,
    rule_no_ncdma(),
    Rule("cd", "vmx_get_mt_mask", "kvm_read_cr0_bits(vcpu, X86_CR0_CD)",
         lambda f: f.cr0_cd,
         lambda f: (WB, True, "WB|IPAT: KVM_X86_QUIRK_CD_NW_CLEARED is on") if f.quirk_cd_nw_cleared
         else (UC, True, "UC|IPAT: quirk off, emulate no-fill mode as UC"),
         C_CD_FIX.sha, reads=frozenset({"cr0_cd", "quirk_cd_nw_cleared"})),
    RULE_GUEST_MTRR,
)

ZAP_POLICY = ZapPolicy(
    mtrr_write=mtrr_range_zap("!tdp_enabled || !kvm_arch_has_noncoherent_dma(kvm)"),
    cr0_cd=cd_zap_all("kvm_arch_has_noncoherent_dma && !quirk(CD_NW_CLEARED)"),
    noncoherent_dma=EventZap(Zaps.NOTHING, "count", "kvm_arch_register_noncoherent_dma",
                             "counter inc/dec only, no zap in this era"),
)

HUGE_PAGES = (("4.2-5.19", Gate.ALWAYS), ("6.0-6.6", Gate.NONCOHERENT_DMA))
"""kvm_tdp_page_fault(): MTRR consistency check on every fault up to 5.19, only with nc-DMA from 6.0."""


ERA = Era(
    id="v4.2",
    title="Linux 4.2 to 6.6",
    kernels="4.2-6.6",
    summary=(
        "MMIO is UC; without non-coherent DMA every page is WB with IPAT. With non-coherent DMA, "
        "guest CR0.CD=1 gives WB|IPAT under KVM_X86_QUIRK_CD_NW_CLEARED (the default) or UC|IPAT "
        "without it, and otherwise the guest MTRR type without IPAT so guest PAT combines. MTRR "
        "writes zap only with non-coherent DMA; a CR0.CD toggle zaps everything only with the "
        "quirk off, so WB|IPAT entries from the CD=1 period survive CD=0."
    ),
    commits=(C_CD_FIX, C_QUIRK, C_HUGE_IFF),
    rules=RULES,
    zap_policy=ZAP_POLICY,
    huge_pages=HUGE_PAGES,
    notes=("Models the 4.15+ MTRR lookup; 4.2.8's fixed-segment lookup bug is not modelled.",),
)
