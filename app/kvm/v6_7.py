"""Era `v6.7`: what was merged from the 2023 series for 6.7 (v4 patches 1-5 and 7).

vmx_get_mt_mask() changes only for CR0.CD=1 with the quirk (c9f65a3f2d92: WB without IPAT).
Zaps are gated by kvm_mmu_honors_guest_mtrrs() (nc-DMA && EPT), the CD-toggle zap needs the
quirk off (7a18c7c2b69a), and nc-DMA 0<->1 now zaps everything (362ff6dca541). Holds for
6.7 to 6.10 (6.8 and 6.9 read; 6.10 inferred).
"""

from __future__ import annotations

from .era import (
    C_CD_FIX,
    C_CD_ZAP,
    C_DMA_ZAP,
    C_DROP_IPAT,
    C_HELPERS,
    C_MTRR_ZAP,
    RULE_GUEST_MTRR,
    RULE_MMIO,
    UC,
    WB,
    Era,
    Gate,
    Rule,
    ZapPolicy,
    cd_zap_all,
    dma_zap_all,
    mtrr_range_zap,
    rule_no_ncdma,
)

RULES = (
    RULE_MMIO,
    rule_no_ncdma(),
    Rule("cd", "vmx_get_mt_mask", "kvm_read_cr0_bits(vcpu, X86_CR0_CD)",
         lambda f: f.cr0_cd,
         lambda f: (WB, False, "WB without IPAT: quirk on, guest PAT now applies") if f.quirk_cd_nw_cleared
         else (UC, True, "UC|IPAT: quirk off, emulate no-fill mode as UC"),
         C_DROP_IPAT.sha, reads=frozenset({"cr0_cd", "quirk_cd_nw_cleared"})),
    RULE_GUEST_MTRR,
)

# kvm_mmu_honors_guest_mtrrs(): nc-DMA && shadow_memtype_mask (EPT on).
ZAP_POLICY = ZapPolicy(
    mtrr_write=mtrr_range_zap("!kvm_mmu_honors_guest_mtrrs(kvm)", C_MTRR_ZAP.sha),
    cr0_cd=cd_zap_all("kvm_mmu_honors_guest_mtrrs(kvm) && !quirk(CD_NW_CLEARED)", C_CD_ZAP.sha),
    noncoherent_dma=dma_zap_all("__kvm_mmu_honors_guest_mtrrs(true): EPT on", Gate.ALWAYS, C_DMA_ZAP.sha,
                                C_DMA_ZAP.sha),
)

HUGE_PAGES = (("6.7-6.10", Gate.NONCOHERENT_DMA),)
"""kvm_tdp_page_fault(): MTRR check only when kvm_mmu_honors_guest_mtrrs() (1affe455d66d)."""


ERA = Era(
    id="v6.7",
    title="Linux 6.7 to 6.10 (2023 series, patches 1-5 and 7 merged)",
    kernels="6.7-6.10",
    summary=(
        "As v4.2 except that guest CR0.CD=1 under KVM_X86_QUIRK_CD_NW_CLEARED gives WB without IPAT, "
        "so guest PAT applies (c9f65a3f2d92). Zaps happen only when KVM honours guest MTRRs (a VM "
        "with non-coherent DMA on EPT): MTRR writes zap the written range, a CR0.CD toggle zaps "
        "everything only with the quirk off, and non-coherent DMA starting or stopping zaps everything."
    ),
    commits=(C_HELPERS, C_CD_ZAP, C_MTRR_ZAP, C_DMA_ZAP, C_DROP_IPAT, C_CD_FIX),
    rules=RULES,
    zap_policy=ZAP_POLICY,
    huge_pages=HUGE_PAGES,
)
