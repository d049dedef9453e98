"""The address map the page draws: runs cover the space, agree with point resolution."""

from app.kvm.eras import ERAS
from app.kvm.layouts import ovmf_state
from app.kvm.memmap import UNMAPPED, address_map, mtrr_ranges
from app.kvm.resolve import resolve
from app.kvm.scenario import Access, VcpuState, VmConfig


def test_runs_tile_the_address_space_and_match_resolve():
    vm = VmConfig(noncoherent_dma=True)
    vcpu = VcpuState(mtrr=ovmf_state(linux=True))
    for era in ERAS.values():
        runs = address_map(era, vm, vcpu, pat_index=3)
        assert runs[0].start == 0 and runs[-1].end == 1 << vm.maxphyaddr
        assert all(a.end == b.start for a, b in zip(runs, runs[1:]))
        for r in runs:
            if r.kind == UNMAPPED:
                continue
            for addr in (r.start, r.end - 0x1000):
                res = resolve(era, vm, vcpu, Access(addr))
                assert (res.memtype, res.ipat) == (r.memtype, r.ipat)
                assert res.pat_rows[3].effective == r.effective
                assert res.pat_rows[3].guest_expected == r.expected


def test_mtrr_ranges_of_ovmf_layout():
    vm = VmConfig()
    rs = mtrr_ranges(VcpuState(mtrr=ovmf_state(linux=True)), vm)
    assert [(r.start, r.end, r.type.label, r.source) for r in rs] == [
        (0, 0xA0000, "WB", "fixed"), (0xA0000, 0x100000, "UC", "fixed"),
        (0x80000000, 0x100000000, "UC", "variable 0"), (0x800000000, 0x1000000000, "UC", "variable 1"),
    ]
