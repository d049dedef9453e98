"""Zap audits for the issue's must-hold cases, and resolve() end to end."""

import pytest

from app.kvm.eras import ERAS
from app.kvm.ranges import intersect, merge, subtract
from app.kvm.resolve import resolve
from app.kvm.scenario import (
    DEFAULT_MEMORY_MAP,
    RAM,
    Access,
    Cr0Write,
    MtrrWrite,
    NoncoherentDma,
    PatWrite,
    VcpuState,
    VmConfig,
)
from app.kvm.zap import audit
from app.x86.memtype import MemType, MemTypeError
from app.x86.mtrr import MtrrState, range_to_pair

MAXPHY = 46
EVERYTHING = (0, 1 << MAXPHY)
UC_HOLE = (0x80000000, 0x100000000)
RAM_RANGES = [(r.start, r.end) for r in DEFAULT_MEMORY_MAP if r.kind == RAM]


def mtrr_wb_with_uc_hole() -> MtrrState:
    """MTRRs enabled, default WB, fixed ranges off, one UC range over the 32-bit PCI hole."""
    return MtrrState(def_type=0x806, variable=(range_to_pair(UC_HOLE[0], UC_HOLE[1] - UC_HOLE[0], MemType.UC, MAXPHY),))


def cd_clear(era_id, **vm):
    vm = VmConfig(noncoherent_dma=True, quirk_cd_nw_cleared=True, **vm)
    vcpu = VcpuState(cr0_cd=True, mtrr=mtrr_wb_with_uc_hole())
    return audit(ERAS[era_id], vm, vcpu, Cr0Write(value=False))


def test_v4_2_leaves_every_ram_range_stale():
    a = cd_clear("v4.2")
    assert a.calls == ()
    assert list(a.stale) == merge(RAM_RANGES)


def test_v6_7_leaves_exactly_the_non_wb_ranges_stale():
    a = cd_clear("v6.7")
    assert a.calls == ()
    assert list(a.stale) == intersect(RAM_RANGES, [UC_HOLE])  # the VRAM BAR inside the UC hole
    assert list(a.stale) == [(0xFD000000, 0xFE000000)]


def test_series_v3_leaves_none_stale_and_zaps_only_the_uc_range():
    a = cd_clear("series-v3")
    assert a.stale == ()
    mapped = [(r.start, r.end) for r in DEFAULT_MEMORY_MAP]
    # patch 10 queues [0, 1 MiB) when any fixed byte differs from the default, without
    # looking at FE: here FE=0 and the fixed bytes are UC, so that window is pure excess.
    assert list(a.zapped) == intersect([(0, 0x100000), UC_HOLE], mapped)
    assert list(a.excess) == intersect([(0, 0x100000)], mapped)


@pytest.mark.parametrize("era", ["v6.11", "v6.16", "v6.11-rc1"])
def test_late_eras_need_no_zap(era):
    a = cd_clear(era)
    assert a.needed == () and a.stale == () and a.calls == ()


def test_quirk_off_zaps_everything_from_v4_2_to_v6_7():
    for era in ("v4.2", "v6.7"):
        a = audit(ERAS[era], VmConfig(noncoherent_dma=True, quirk_cd_nw_cleared=False),
                  VcpuState(cr0_cd=True, mtrr=mtrr_wb_with_uc_hole()), Cr0Write(value=False))
        assert a.calls == (EVERYTHING,) and a.stale == ()


def test_mtrr_write_zaps_the_new_variable_range_only():
    vm = VmConfig(noncoherent_dma=True)
    old = mtrr_wb_with_uc_hole()
    vcpu = VcpuState(mtrr=old)
    new_base = 0xC0000000 | int(MemType.UC)  # a base not aligned to the 2 GiB mask
    a = audit(ERAS["v4.2"], vm, vcpu, MtrrWrite(msr=0x200, value=new_base))
    # var_mtrr_range(): start is the raw base, end the next mask boundary: [3G, 4G),
    # while the SDM match (addr & mask == base & mask) still covers [2G, 4G).
    assert a.calls == ((0xC0000000, 0x100000000),)
    # Moving the UC range to [0, 2G): the new range is zapped, the old one is not, so the
    # VRAM BAR in the old UC hole keeps its UC entry although it is WB now: stale.
    a2 = audit(ERAS["v4.2"], vm, vcpu, MtrrWrite(msr=0x200, value=0x0 | int(MemType.UC)))
    assert a2.calls == ((0x0, 0x80000000),)
    assert list(a2.needed) == merge(intersect(RAM_RANGES, [(0, 0x80000000)]) + [(0xFD000000, 0xFE000000)])
    assert list(a2.stale) == [(0xFD000000, 0xFE000000)]


def test_mtrr_write_without_ncdma_never_zaps_before_6_11():
    vcpu = VcpuState(mtrr=mtrr_wb_with_uc_hole())
    for era in ("v4.2", "v6.7", "series-v3"):
        a = audit(ERAS[era], VmConfig(noncoherent_dma=False), vcpu, MtrrWrite(msr=0x2FF, value=0x806))
        assert a.calls == () and a.needed == ()


def test_def_type_write_zaps_everything_and_fixed_msr_its_window():
    vm = VmConfig(noncoherent_dma=True)
    vcpu = VcpuState(mtrr=MtrrState(def_type=0xC06))
    a = audit(ERAS["v6.7"], vm, vcpu, MtrrWrite(msr=0x2FF, value=0x806))
    assert a.calls == (EVERYTHING,)
    b = audit(ERAS["v6.7"], vm, vcpu, MtrrWrite(msr=0x26F, value=0x0606060606060606))
    assert b.calls == ((0xF8000, 0x100000),)
    c = audit(ERAS["v6.7"], vm, VcpuState(mtrr=MtrrState(def_type=0x806)), MtrrWrite(msr=0x250, value=0))
    assert c.calls == ()  # FE=0: fixed MSR writes zap nothing


def test_ncdma_start_zaps_from_v6_7_only():
    vcpu = VcpuState(mtrr=mtrr_wb_with_uc_hole())
    a = audit(ERAS["v4.2"], VmConfig(), vcpu, NoncoherentDma(value=True))
    assert a.calls == () and a.stale  # WB|IPAT entries survive: the hot-plug case of patch 05
    for era in ("v6.7", "series-v3", "v6.11", "v6.16"):
        b = audit(ERAS[era], VmConfig(), vcpu, NoncoherentDma(value=True))
        assert b.calls == (EVERYTHING,) and b.stale == ()
    c = audit(ERAS["v6.11-rc1"], VmConfig(self_snoop=True), vcpu, NoncoherentDma(value=True))
    assert c.calls == () and c.needed == ()  # self-snoop: PAT was already honoured


def test_pat_write_never_zaps_and_needs_none():
    for era in ERAS.values():
        a = audit(era, VmConfig(noncoherent_dma=True), VcpuState(), PatWrite(value=0x0007010600070106))
        assert a.calls == () and a.needed == ()


def test_bad_events_are_refused():
    with pytest.raises(MemTypeError, match="reserved"):
        audit(ERAS["v6.7"], VmConfig(), VcpuState(), MtrrWrite(msr=0x2FF, value=0x2))
    with pytest.raises(MemTypeError, match="read-only"):
        audit(ERAS["v6.7"], VmConfig(), VcpuState(), MtrrWrite(msr=0xFE, value=0))
    with pytest.raises(MemTypeError, match="NW"):
        audit(ERAS["v6.7"], VmConfig(), VcpuState(cr0_cd=True, cr0_nw=True), Cr0Write(value=False))


def test_resolve_seed_case():
    vm = VmConfig(noncoherent_dma=True)
    vcpu = VcpuState(cr0_cd=True, mtrr=mtrr_wb_with_uc_hole())
    r = resolve(ERAS["v6.7"], vm, vcpu, Access(0x1000))
    assert (r.memtype, r.ipat, r.mask) == (MemType.WB, False, 0x30)
    assert all(row.guest_expected == MemType.UC for row in r.pat_rows)  # CD=1: no-fill
    # power-on PAT WB, WT, UC-, UC twice; EPT WB without IPAT -> WB, WT, UC, UC vs UC expected
    assert [row.effective.label for row in r.pat_rows] == ["WB", "WT", "UC", "UC"] * 2
    assert [row.relation for row in r.pat_rows] == ["weaker", "weaker", "same", "same"] * 2
    old = resolve(ERAS["v4.2"], vm, vcpu, Access(0x1000))
    assert old.mask == 0x70 and old.leaf.ipat and old.leaf.memtype_bits == 6
    mm = resolve(ERAS["v6.7"], vm, vcpu, Access(0x800000000))
    assert mm.is_mmio and mm.mask == 0x00


def test_resolve_validates_address_and_maxphyaddr():
    with pytest.raises(MemTypeError) as e:
        resolve(ERAS["v6.7"], VmConfig(maxphyaddr=36), VcpuState(), Access(1 << 36))
    assert e.value.field == "gpa"
    with pytest.raises(MemTypeError) as e:
        resolve(ERAS["v6.7"], VmConfig(maxphyaddr=53), VcpuState(), Access(0))
    assert e.value.field == "vm.maxphyaddr"


def test_page_size_follows_the_mtrr_check_only_where_it_applies():
    vcpu = VcpuState(mtrr=mtrr_wb_with_uc_hole())
    # 0x7fe00000 is in the 1 GiB block [1G, 2G): uniform WB -> 1G; a block straddling
    # the UC hole (none here at 1G alignment) would drop to 2M.
    r = resolve(ERAS["v4.2"], VmConfig(noncoherent_dma=False), vcpu, Access(0x7FE00000))
    assert [(p.kernels, p.mtrr_check, p.page_size) for p in r.page_sizes] == [("4.2-5.19", True, "1G"), ("6.0-6.6",
                                                                                                         False, "1G")]
    fixed = VcpuState(mtrr=MtrrState(def_type=0xC06))  # fixed ranges all UC below 1 MiB
    r2 = resolve(ERAS["v6.7"], VmConfig(noncoherent_dma=True), fixed, Access(0x1000))
    assert r2.page_size == "4K"


def test_range_algebra():
    assert merge([(5, 9), (0, 3), (3, 4), (8, 12)]) == [(0, 4), (5, 12)]
    assert subtract([(0, 10)], [(2, 3), (5, 20)]) == [(0, 2), (3, 5)]
    assert intersect([(0, 10), (20, 30)], [(5, 25)]) == [(5, 10), (20, 25)]
