"""Eras `v6.11-rc1` and `v6.11`: guest MTRRs and CR0.CD no longer honoured on VMX.

0a7b73559b39 dropped guest-MTRR memtypes, e1548088ff54 dropped CR0.CD emulation and its
zap. 377b2f359d1f (6.11-rc1..rc7) also honoured guest PAT on every CPU with self-snoop,
which turned bochs-display's UC- framebuffer mapping from WB into UC (very slow on SPR);
Paolo's revert 9d70f3fec144 went into 6.11 final. v6.11 holds through 6.15.
"""

from __future__ import annotations

from .era import (
    C_NO_CD,
    C_NO_MTRR,
    C_REVERT,
    C_SELFSNOOP,
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
    rule_no_ncdma,
)

ERA_RC1 = Era(
    id="v6.11-rc1",
    title="Linux 6.11-rc1 to rc7 (honour guest PAT on self-snoop CPUs; reverted)",
    kernels="6.11-rc1..6.11-rc7",
    summary=(
        "MMIO is UC; a CPU without self-snoop and a VM without non-coherent DMA get WB|IPAT; "
        "everything else is WB without IPAT, so guest PAT decides. On a self-snoop CPU a guest "
        "UC- mapping of RAM (bochs-drm's ioremap() of its VRAM BAR) becomes UC instead of WB: "
        "the slowdown that got 377b2f359d1f reverted before 6.11 final."
    ),
    commits=(C_NO_MTRR, C_NO_CD, C_SELFSNOOP),
    rules=(
        RULE_MMIO,
        Rule("no-selfsnoop", "vmx_get_mt_mask",
             "!static_cpu_has(X86_FEATURE_SELFSNOOP) && !kvm_arch_has_noncoherent_dma(kvm)",
             lambda f: not f.self_snoop and not f.noncoherent_dma,
             lambda _: (WB, True, "WB|IPAT: no self-snoop and no non-coherent DMA"), C_SELFSNOOP.sha,
             reads=frozenset({"self_snoop", "noncoherent_dma"})),
        RULE_HONOR_PAT,
    ),
    zap_policy=ZapPolicy(
        mtrr_write=MTRR_NOT_VIRTUALISED,
        cr0_cd=CD_NOT_VIRTUALISED,
        noncoherent_dma=dma_zap_all("kvm_mmu_may_ignore_guest_pat(): EPT on && !SELFSNOOP", Gate.NO_SELF_SNOOP,
                                    C_SELFSNOOP.sha),
    ),
    huge_pages=NO_HUGE_PAGE_CHECK,
)

ERA_611 = Era(
    id="v6.11",
    title="Linux 6.11 to 6.15",
    kernels="6.11-6.15",
    summary=(
        "Guest MTRRs and CR0.CD are ignored. MMIO is UC; without non-coherent DMA every page is "
        "WB|IPAT; with it, WB without IPAT so guest PAT alone picks the effective type. Only "
        "non-coherent DMA starting or stopping zaps (everything)."
    ),
    commits=(C_NO_MTRR, C_NO_CD, C_REVERT),
    rules=(
        RULE_MMIO,
        rule_no_ncdma(commit=C_REVERT.sha),
        RULE_HONOR_PAT,
    ),
    zap_policy=ZapPolicy(
        mtrr_write=MTRR_NOT_VIRTUALISED,
        cr0_cd=CD_NOT_VIRTUALISED,
        noncoherent_dma=dma_zap_all("kvm_mmu_may_ignore_guest_pat(): EPT on", Gate.ALWAYS, C_REVERT.sha),
    ),
    huge_pages=NO_HUGE_PAGE_CHECK,
)
