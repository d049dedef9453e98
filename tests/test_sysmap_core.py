"""The cores of the AMD and Xen maps against the one-page answers (issue 14).

Each run of app.kvm.svm.svm_map and app.xen.map.xen_map must give, at every address
inside it, what the one-page functions give there (svm_resolve; entry_emt at the run's
order and at 4K, and cd.effective), for firmware MTRR layouts, every PAT entry and the
domain kinds; and a run's page size must be the largest order whose EMT is defined.
Addresses probed: each run's first and last page and its middle.
"""

from __future__ import annotations

import itertools

import pytest

from app.kvm.layouts import ovmf_state, seabios_state
from app.kvm.scenario import MMIO, VcpuState, VmConfig
from app.kvm.svm import svm_kernel, svm_map, svm_resolve
from app.x86.memtype import MemType
from app.x86.mtrr import MtrrState
from app.x86.pat import PAT_LINUX, Pat
from app.xen import Domain, P2mType, Page, PinnedRange, entry_emt, get_version
from app.xen.cd import cd_view, effective
from app.xen.map import HOST_MTRR_OF_KIND, xen_map

LAYOUTS = {"ovmf": ovmf_state(46, linux=True), "seabios": seabios_state(46), "off": MtrrState()}
ORDER = {"4K": 0, "2M": 9, "1G": 18}


def probes(r) -> list[int]:
    return sorted({r.start, (r.start + (r.end - r.start) // 2) & ~0xFFF, r.end - 0x1000})


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kernel", ["4.14", "5.2", "6.8", "6.19"])
@pytest.mark.parametrize("cd, quirk", [(False, True), (True, True), (True, False)])
def test_svm_map_runs_agree_with_svm_resolve(layout, kernel, cd, quirk):
    k = svm_kernel(kernel)
    vm = VmConfig(vendor="amd", quirk_cd_nw_cleared=quirk)
    vcpu = VcpuState(cr0_cd=cd, pat=Pat.from_msr(PAT_LINUX), mtrr=LAYOUTS[layout])
    for pati in range(8):
        runs, _ = svm_map(k, vm, vcpu, pati)
        for r in runs:
            if r.kind == "unmapped":
                continue
            for a in probes(r):
                res = svm_resolve(k, vm, vcpu, a, is_mmio=r.kind == MMIO)
                row = res.rows[pati]
                assert (row.effective, row.guest_expected, res.host_type) == (r.effective, r.expected, r.host_type)


DOMAINS = {
    "plain": Domain(), "iommu": Domain(iommu_enabled=True), "io": Domain(io_resources=True),
    "pci": Domain(iommu_enabled=True, pci_devices=True),
    "pinned": Domain(iommu_enabled=True, pinned=(PinnedRange(0x100000, 0x1001FF, MemType.WC),
                                                 PinnedRange(0x80, 0x8F, MemType.UC_MINUS))),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dom", DOMAINS)
@pytest.mark.parametrize("version", ["xen-4.19", "xen-4.21"])
def test_xen_map_runs_agree_with_entry_emt(layout, dom, version):
    v, d = get_version(version), DOMAINS[dom]
    vm = VmConfig()
    for cd, pati in itertools.product((False, True), range(8)):
        vcpu = VcpuState(cr0_cd=cd, pat=Pat.from_msr(PAT_LINUX), mtrr=LAYOUTS[layout])
        view = cd_view(d, cd, vcpu.pat)
        for r in xen_map(v, d, vm, vcpu, pati):
            if r.kind == "unmapped":
                continue
            order = ORDER[r.page_size]
            host = HOST_MTRR_OF_KIND[r.kind]
            p2m = P2mType.MMIO_DIRECT if r.kind == MMIO else P2mType.RAM
            assert r.start % (1 << (12 + order)) == 0 and r.end % (1 << (12 + order)) == 0
            for a in probes(r):
                gfn = a >> 12
                big = entry_emt(d, Page(gfn & ~((1 << order) - 1), gfn & ~((1 << order) - 1), order, p2m,
                                        host_mtrr=host), vcpu.mtrr, v)
                small = entry_emt(d, Page(gfn, gfn, 0, p2m, host_mtrr=host), vcpu.mtrr, v)
                assert (big.emt, big.ipat) == (r.emt, r.ipat) == (small.emt, small.ipat), (hex(a), r)
                assert effective(small, view, pati)[0] == r.effective
                if order < 18:  # the next larger aligned block that fits in the run gives -1
                    size = 1 << (12 + order + 9)
                    lo = -(-r.start // size) * size
                    if lo + size <= r.end:
                        up = entry_emt(d, Page(lo >> 12, lo >> 12, order + 9, p2m, host_mtrr=host), vcpu.mtrr, v)
                        assert up.emt is None, (hex(a), r)
