"""Era `series-v3`: Yan Zhao's June 2023 series as posted, all 11 patches applied.

"[PATCH v3 xx/11] KVM: x86/mmu: refine memtype related mmu zap" (cover letter
L(20230616023101.7019-1-yan.y.zhao@intel.com), base 24ff4c08e5bb). Over v6.7 it adds
patch 06 (zap on every CD toggle, skip MTRR-write zaps while CD=1), 08 (CD=1 memtype in
common code: kvm_mtrr_get_cd_memory_type), 09 (serialised zap list), 10 (fine-grained zap
on a CD toggle) and 11 (zap ranges split per memslot). Never merged past patch 07.
"""

from __future__ import annotations

from dataclasses import replace

from .era import (
    C_CD_ZAP,
    C_DMA_ZAP,
    C_DROP_IPAT,
    C_HELPERS,
    C_MTRR_ZAP,
    PAT_NO_ZAP,
    RULE_GUEST_MTRR,
    RULE_MMIO,
    Commit,
    Era,
    EventZap,
    Gate,
    Rule,
    ZapPolicy,
    Zaps,
    cd_memtype,
    dma_zap_all,
    mtrr_range_zap,
    rule_no_ncdma,
)

P06 = Commit("v3-06/11", "KVM: x86: move TDP zaps from MTRR update to CR0.CD toggling")
P08 = Commit("v3-08/11", "KVM: x86: move CR0.CD=1 memtype calculation to common code")
P09 = Commit("v3-09/11", "KVM: x86/mmu: serialize vCPUs to zap gfn when guest MTRRs are honored")
P10 = Commit("v3-10/11", "KVM: x86/mmu: fine-grained gfn zap when guest MTRRs are honored")
P11 = Commit("v3-11/11", "KVM: x86/mmu: split a single gfn zap range when guest MTRRs are honored")

RULES = (
    RULE_MMIO,
    rule_no_ncdma("!kvm_mmu_honors_guest_mtrrs(kvm)", C_HELPERS.sha),
    Rule("cd", "kvm_mtrr_get_cd_memory_type", "kvm_read_cr0_bits(vcpu, X86_CR0_CD)",
         lambda f: f.cr0_cd,
         lambda f: (*cd_memtype(f.quirk_cd_nw_cleared),
                    "WB without IPAT: quirk on, guest PAT applies" if f.quirk_cd_nw_cleared else "UC|IPAT: quirk off"),
         P08.sha, reads=frozenset({"cr0_cd", "quirk_cd_nw_cleared"})),
    RULE_GUEST_MTRR,
)

# kvm_mmu_honors_guest_mtrrs() (nc-DMA on EPT) gates the MTRR and CD paths; the CD toggle no
# longer consults the quirk (patch 06); everything but the nc-DMA zap is split by memslot (11).
ZAP_POLICY = ZapPolicy(
    mtrr_write=mtrr_range_zap("!kvm_mmu_honors_guest_mtrrs(kvm)", C_MTRR_ZAP.sha, defer_while_cd=P06.sha,
                              per_memslot=True),
    cr0_cd=EventZap(Zaps.FINE_GRAINED, "honors", "kvm_post_set_cr0",
                    "kvm_mmu_honors_guest_mtrrs(kvm) (quirk no longer consulted)", Gate.NONCOHERENT_DMA, P06.sha,
                    detail_commit=P10.sha, per_memslot=True),
    noncoherent_dma=replace(dma_zap_all("", Gate.ALWAYS, "", C_DMA_ZAP.sha), separate_gate=False),
    pat_write=replace(PAT_NO_ZAP, per_memslot=True),
    memslot_commit=P11.sha,
)

HUGE_PAGES = (("series-v3", Gate.NONCOHERENT_DMA),)


ERA = Era(
    id="series-v3",
    title="The June 2023 series as posted (v3, all 11 patches)",
    kernels="unmerged (on 6.4)",
    summary=(
        "The memtype is as in v6.7 (WB without IPAT for CR0.CD=1 under the quirk). Zaps move from "
        "MTRR writes to CR0.CD toggles: MTRR writes made while CD=1 do not zap, and a CD toggle "
        "zaps only the fixed window and the variable ranges whose type differs from the default "
        "(when the CD=1 type equals the default and IPAT is clear), split per memslot; otherwise "
        "everything. Non-coherent DMA starting or stopping zaps everything."
    ),
    commits=(C_HELPERS, C_CD_ZAP, C_MTRR_ZAP, C_DMA_ZAP, P06, C_DROP_IPAT, P08, P09, P10, P11),
    rules=RULES,
    zap_policy=ZAP_POLICY,
    huge_pages=HUGE_PAGES,
    notes=("Patch 09's serialisation changes contention, not which ranges are zapped; it is not modelled.",),
)
