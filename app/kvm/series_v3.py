"""Era `series-v3`: Yan Zhao's June 2023 series as posted, all 11 patches applied.

"[PATCH v3 xx/11] KVM: x86/mmu: refine memtype related mmu zap" (cover letter
L(20230616023101.7019-1-yan.y.zhao@intel.com), base 24ff4c08e5bb). Over v6.7 it adds
patch 06 (zap on every CD toggle, skip MTRR-write zaps while CD=1), 08 (CD=1 memtype in
common code: kvm_mtrr_get_cd_memory_type), 09 (serialised zap list), 10 (fine-grained zap
on a CD toggle) and 11 (zap ranges split per memslot). Never merged past patch 07.
"""

from __future__ import annotations

from ..x86.mtrr import ONE_MIB
from .era import (
    C_CD_ZAP,
    C_DMA_ZAP,
    C_DROP_IPAT,
    C_HELPERS,
    C_MTRR_ZAP,
    RULE_GUEST_MTRR,
    RULE_MMIO,
    UC,
    WB,
    Commit,
    Era,
    Rule,
    ZapInput,
    ZapTrail,
    mtrr_write_zap,
    no_zap_for_pat,
    rule_no_ncdma,
)
from .mtrr import kvm_disabled_type, var_mtrr_range
from .scenario import CR0_CD, MTRR_WRITE, NONCOHERENT_DMA, VmConfig

P06 = Commit("v3-06/11", "KVM: x86: move TDP zaps from MTRR update to CR0.CD toggling")
P08 = Commit("v3-08/11", "KVM: x86: move CR0.CD=1 memtype calculation to common code")
P09 = Commit("v3-09/11", "KVM: x86/mmu: serialize vCPUs to zap gfn when guest MTRRs are honored")
P10 = Commit("v3-10/11", "KVM: x86/mmu: fine-grained gfn zap when guest MTRRs are honored")
P11 = Commit("v3-11/11", "KVM: x86/mmu: split a single gfn zap range when guest MTRRs are honored")


def cd_memtype(quirk: bool) -> tuple:
    """kvm_mtrr_get_cd_memory_type() (patch 08) when MTRRs are honoured: quirk -> WB, else UC|IPAT."""
    return (WB, False) if quirk else (UC, True)


RULES = (
    RULE_MMIO,
    rule_no_ncdma("!kvm_mmu_honors_guest_mtrrs(kvm)", C_HELPERS.sha),
    Rule("cd", "kvm_mtrr_get_cd_memory_type", "kvm_read_cr0_bits(vcpu, X86_CR0_CD)",
         lambda f: f.cr0_cd,
         lambda f: (*cd_memtype(f.quirk_cd_nw_cleared),
                    "WB without IPAT: quirk on, guest PAT applies" if f.quirk_cd_nw_cleared else "UC|IPAT: quirk off"),
         P08.sha),
    RULE_GUEST_MTRR,
)


def _fine_grained(z: ZapInput, t: ZapTrail) -> None:
    """Patch 10: zap only the ranges whose type differs from the default, when that suffices."""
    mtrr = z.vcpu.mtrr
    cd_type, cd_ipat = cd_memtype(z.vm.quirk_cd_nw_cleared)
    default = mtrr.default_type if mtrr.enabled else kvm_disabled_type(z.vm.guest_has_mtrr)
    fn = "kvm_post_set_cr0 -> fine-grained zap (v3 10/11)"
    if t.check("all", fn, f"CD=1 type {cd_type.label}{'|IPAT' if cd_ipat else ''} != default type {default.label} or IPAT set",
               cd_type != default or cd_ipat, "zap everything", P10.sha):
        t.zap(z.everything)
        return
    if t.check("disabled", fn, "MTRRs disabled and default equals the CD=1 type", not mtrr.enabled, "nothing to zap", P10.sha):
        return
    fixed_differs = any(mtrr.fixed_type(i) != default for i in range(88))
    if t.check("fixed", fn, "any of the 88 fixed-range types differs from the default (FE not consulted)",
               fixed_differs, "queue [0, 1 MiB)", P10.sha):
        t.zap((0, ONE_MIB))
    for n, pair in enumerate(mtrr.variable):
        if pair.valid and pair.type != default:
            s, e = var_mtrr_range(pair, z.vm.maxphyaddr)
            t.check(f"var{n}", fn, f"valid variable range {n} has type {pair.type} != default", True,
                    f"queue [{s:#x}, {e:#x})", P10.sha)
            t.zap((s, e))


def zap(z: ZapInput):
    t = ZapTrail()
    honors = z.vm.noncoherent_dma
    kind = z.event.kind
    if kind == MTRR_WRITE:
        if not t.check("cd1", "update_mtrr", "CR0.CD=1: MTRR-write zaps deferred to the CD toggle",
                       z.vcpu.cr0_cd and honors, "return: no zap", P06.sha):
            mtrr_write_zap(z, t, honors, "!kvm_mmu_honors_guest_mtrrs(kvm)", C_MTRR_ZAP.sha)
    elif kind == CR0_CD:
        if t.check("toggle", "kvm_post_set_cr0", "CR0.CD changed", z.cd_toggled):
            if t.check("honors", "kvm_post_set_cr0", "kvm_mmu_honors_guest_mtrrs(kvm) (quirk no longer consulted)",
                       honors, "fine-grained zap", P06.sha):
                _fine_grained(z, t)
    elif kind == NONCOHERENT_DMA:
        if t.check("transition", "kvm_noncoherent_dma_assignment_start_or_stop", "counter went 0->1 or 1->0",
                   z.dma_transition, "zap everything", C_DMA_ZAP.sha):
            t.zap(z.everything)
        return t.done()
    else:
        no_zap_for_pat(t)
    if t.calls:
        t.check("memslot", "kvm_zap_gfn_range (patch 11)", "split each queued range by memslot", True,
                "only the parts inside memslots are zapped", P11.sha)
    return t.done(per_memslot=True)


def huge_pages(vm: VmConfig) -> tuple[tuple[str, bool], ...]:
    return (("series-v3", vm.noncoherent_dma),)


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
    zap_policy=zap,
    huge_page_check=huge_pages,
    notes=("Patch 09's serialisation changes contention, not which ranges are zapped; it is not modelled.",),
)
