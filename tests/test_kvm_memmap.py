"""The address map the page draws: runs cover the space, agree with point resolution."""

import itertools

from app.kvm.eras import ERAS
from app.kvm.layouts import ovmf_state
from app.kvm.memmap import UNMAPPED, MtrrRange, address_map, mtrr_default, mtrr_ranges
from app.kvm.resolve import resolve
from app.kvm.scenario import Access, VcpuState, VmConfig
from app.x86.memtype import MemType


def test_runs_tile_the_address_space_and_match_resolve():
    vm = VmConfig(noncoherent_dma=True)
    vcpu = VcpuState(mtrr=ovmf_state(linux=True))
    for era in ERAS.values():
        runs = address_map(era, vm, vcpu, pat_index=3)
        assert runs[0].start == 0 and runs[-1].end == 1 << vm.maxphyaddr
        assert all(a.end == b.start for a, b in itertools.pairwise(runs))
        for r in runs:
            if r.kind == UNMAPPED:
                continue
            for addr in (r.start, r.end - 0x1000):
                res = resolve(era, vm, vcpu, Access(addr))
                assert (res.memtype, res.ipat) == (r.memtype, r.ipat)
                assert res.pat_rows[3].effective == r.effective
                assert res.pat_rows[3].guest_expected == r.expected
                # the map and the example leaf agree on the page KVM may use there
                assert res.leaf.page_size == r.page_size, (era.id, hex(addr))


def test_page_runs_split_where_the_block_answer_changes():
    vm = VmConfig(noncoherent_dma=False)  # v4.2: MTRR check on every fault up to 5.19
    vcpu = VcpuState(mtrr=ovmf_state(linux=True))
    runs = [(r.start, r.end, r.page_size) for r in address_map(ERAS["v4.2"], vm, vcpu) if r.kind != UNMAPPED]
    assert (0x100000, 0x200000, "4K") in runs  # the 2M block [0, 2M) holds the fixed ranges
    assert (0x200000, 0x40000000, "2M") in runs  # the 1G block [0, 1G) does too
    assert (0x40000000, 0x80000000, "1G") in runs
    assert (0xFD000000, 0xFE000000, "2M") in runs  # 16 MiB memslot: no 1G block fits


def test_mtrr_ranges_of_ovmf_layout():
    vm = VmConfig()
    rs = mtrr_ranges(VcpuState(mtrr=ovmf_state(linux=True)), vm)
    assert [(r.start, r.end, r.type.label, r.source) for r in rs] == [
        (0, 0xA0000, "WB", "fixed"), (0xA0000, 0x100000, "UC", "fixed"),
        (0x80000000, 0x100000000, "UC", "variable 0"), (0x800000000, 0x1000000000, "UC", "variable 1"),
    ]


def test_mtrr_default_follows_e_and_the_sdm_lookup():
    """Every MTRRdefType value KVM accepts (E, FE, five types): the default range covers the
    space and its type is what the SDM lookup says where no range applies."""
    from app.x86.memtype import MTRR_TYPES
    from app.x86.mtrr import MtrrState, sdm_lookup

    vm = VmConfig(maxphyaddr=40)
    seen = set()
    for flags in (0, 0x400, 0x800, 0xC00):
        for t in sorted(MTRR_TYPES):
            m = MtrrState(def_type=flags | t)
            d = mtrr_default(VcpuState(mtrr=m), vm)
            assert (d.start, d.end) == (0, 1 << 40)
            assert d.type == sdm_lookup(m, 0x100000, 40).type  # above 1 MiB, no variable pair
            seen.add((d.type.label, d.source))
    assert seen == {("UC", "disabled"), ("UC", "default"), ("WC", "default"), ("WT", "default"),
                    ("WP", "default"), ("WB", "default")}
    wb = mtrr_default(VcpuState(mtrr=MtrrState(def_type=0x806)), VmConfig())
    assert wb == MtrrRange(0, 1 << 46, MemType.WB, "default")
