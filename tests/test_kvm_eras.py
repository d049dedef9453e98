"""Each era's vmx_get_mt_mask() against the rule as the docs state it, over every state.

The expected functions below are written from docs/notes/kernel-history.md §1 and the issue's era
table, independently of the era modules (which are rule lists): if either drifts, the
exhaustive comparison over all 1920 states fails.
"""

import pytest

from app.analysis import all_states
from app.kvm.era import Fault
from app.kvm.eras import ERAS, get_era
from app.kvm.scenario import VmConfig
from app.x86.memtype import MemType, MemTypeError

UC, WB = MemType.UC, MemType.WB


def doc_v4_2(f: Fault):
    if f.is_mmio:
        return (UC, False)
    if not f.noncoherent_dma:
        return (WB, True)
    if f.cr0_cd:
        return (WB, True) if f.quirk_cd_nw_cleared else (UC, True)
    return (f.guest_mtrr, False)


def doc_v6_7(f: Fault):
    if f.is_mmio:
        return (UC, False)
    if not f.noncoherent_dma:
        return (WB, True)
    if f.cr0_cd:
        return (WB, False) if f.quirk_cd_nw_cleared else (UC, True)
    return (f.guest_mtrr, False)


def doc_v6_11_rc1(f: Fault):
    if f.is_mmio:
        return (UC, False)
    if not f.self_snoop and not f.noncoherent_dma:
        return (WB, True)
    return (WB, False)


def doc_v6_11(f: Fault):
    if f.is_mmio:
        return (UC, False)
    return (WB, True) if not f.noncoherent_dma else (WB, False)


def doc_v6_16(f: Fault):
    if f.is_mmio:
        return (UC, False)
    if f.quirk_ignore_guest_pat and not f.noncoherent_dma:
        return (WB, True)
    return (WB, False)


DOC = {
    "v4.2": doc_v4_2,
    "series-v3": doc_v6_7,  # the memtype of v3 equals what was merged (07 + 08's move)
    "v6.7": doc_v6_7,
    "v6.11-rc1": doc_v6_11_rc1,
    "v6.11": doc_v6_11,
    "v6.16": doc_v6_16,
}


def test_registry_ids_are_the_stable_ones():
    assert list(ERAS) == ["v4.2", "series-v3", "v6.7", "v6.11-rc1", "v6.11", "v6.16"]


@pytest.mark.parametrize("era_id", list(DOC))
def test_mt_mask_matches_docs_for_every_state(era_id):
    era = ERAS[era_id]
    seen = set()
    for s in all_states():
        m = era.mt_mask(s.fault)
        assert (m.memtype, m.ipat) == DOC[era_id](s.fault), s.fault
        seen.add((m.memtype, m.ipat))
    assert len(seen) >= 2


@pytest.mark.parametrize("era_id", list(DOC))
def test_path_has_exactly_one_taken_step_and_dims_the_rest(era_id):
    era = ERAS[era_id]
    for s in all_states()[::7]:
        path = era.mt_mask(s.fault).path
        held = [st.held for st in path]
        assert held.count(True) == 1
        i = held.index(True)
        assert all(h is False for h in held[:i]) and all(h is None for h in held[i + 1:])
        assert all(st.function for st in path)


def _seed(quirk: bool, mmio: bool = False) -> Fault:
    return Fault(is_mmio=mmio, noncoherent_dma=True, cr0_cd=True, quirk_cd_nw_cleared=quirk,
                 quirk_ignore_guest_pat=True, self_snoop=True, guest_mtrr=MemType.WB)


def _mask(era_id, f):
    m = ERAS[era_id].mt_mask(f)
    return int(m.memtype) << 3 | (0x40 if m.ipat else 0)


def test_seed_case_masks():
    assert _mask("v4.2", _seed(True)) == 0x70
    assert _mask("v6.7", _seed(True)) == 0x30
    assert _mask("v4.2", _seed(False)) == 0x40
    assert _mask("v6.7", _seed(False)) == 0x40
    for era in ("v4.2", "v6.7"):
        assert _mask(era, _seed(True, mmio=True)) == 0x00


def test_quirk_rules():
    vm_off = VmConfig(quirk_ignore_guest_pat=False, self_snoop=True)
    get_era("v6.16").check_vm(vm_off)  # allowed with self-snoop
    with pytest.raises(MemTypeError, match="self-snoop") as e:
        get_era("v6.16").check_vm(VmConfig(quirk_ignore_guest_pat=False, self_snoop=False))
    assert e.value.field == "vm.quirk_ignore_guest_pat"
    for era in ("v4.2", "series-v3", "v6.7", "v6.11-rc1", "v6.11"):
        with pytest.raises(MemTypeError, match="6.16"):
            get_era(era).check_vm(vm_off)
    with pytest.raises(MemTypeError, match="unknown kernel era"):
        get_era("v5.0")


def test_huge_page_rules_per_kernel_range():
    on, off = VmConfig(noncoherent_dma=True), VmConfig(noncoherent_dma=False)
    assert ERAS["v4.2"].huge_page_check(off) == (("4.2-5.19", True), ("6.0-6.6", False))
    assert ERAS["v4.2"].huge_page_check(on) == (("4.2-5.19", True), ("6.0-6.6", True))
    assert ERAS["v6.7"].huge_page_check(off) == (("6.7-6.10", False),)
    assert ERAS["v6.7"].huge_page_check(on) == (("6.7-6.10", True),)
    for e in ("v6.11-rc1", "v6.11", "v6.16"):
        assert all(not applies for _, applies in ERAS[e].huge_page_check(on))


def test_every_era_cites_commits_and_kernels():
    for era in ERAS.values():
        assert era.commits and era.kernels and len(era.summary) > 80
        assert all(c.sha and c.subject for c in era.commits)
