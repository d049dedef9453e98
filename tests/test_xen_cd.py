"""Guest CR0.CD under Xen/VMX with EPT: vmx_handle_cd() and the hardware CR0.CD.

Written from hvm_set_cr0() (hvm.c:2388), vmx_handle_cd() (vmx.c:1477) and
vmx_update_guest_cr() (vmx.c:1768) at RELEASE-4.22.0: the guest's CD reaches GUEST_CR0;
handle_cd runs only for IOMMU domains holding iomem, ioports or PCI devices and swaps in
an all-UC PAT while CD=1. The effective type uses the SDM's table (app/x86 COMBINE).
"""

import itertools

import pytest

from app.x86.ept import COMBINE
from app.x86.memtype import MemType, MemTypeError
from app.x86.mtrr import MtrrState
from app.x86.pat import PAT_LINUX, Pat
from app.xen import NEWEST, Coverage, Domain, P2mType, Page, cd_view, effective, entry_emt

UC = MemType.UC
KINDS = {
    "plain": (False, False, False),
    "iommu": (True, False, False),
    "io": (False, True, False),
    "iommu+io": (True, True, False),
    "iommu+pci": (True, False, True),
}
HANDLE_CD = {"plain": False, "iommu": False, "io": False, "iommu+io": True, "iommu+pci": True}
GUEST_PAT = Pat.from_msr(PAT_LINUX)
# pages whose EMT is (type, IPAT) in an IOMMU domain: RAM under WB MTRRs, mmio_direct,
# a grant, a special page
PAGES = {
    "ram": Page(0x40000, 0x80000),
    "mmio": Page(0xFE000, 0xFE000, 0, P2mType.MMIO_DIRECT),
    "grant": Page(0x50000, 0x90000, 0, P2mType.GRANT_RW),
    "special": Page(0x60000, 0xA0000, 0, special=Coverage.ALL),
}


@pytest.mark.parametrize(("kind", "cd"), list(itertools.product(KINDS, (False, True))))
def test_cd_view(kind, cd):
    iommu, io, pci = KINDS[kind]
    v = cd_view(Domain(iommu_enabled=iommu, io_resources=io, pci_devices=pci), cd, GUEST_PAT)
    assert v.hw_cr0_cd is cd
    assert v.handle_cd is HANDLE_CD[kind]
    no_fill = HANDLE_CD[kind] and cd
    assert v.cache_mode == ("no-fill" if no_fill else "normal")
    assert v.vmcs_pat.to_msr() == (0 if no_fill else PAT_LINUX)


def test_effective_types_exhaustive():
    n = 0
    for kind, cd, name, idx in itertools.product(KINDS, (False, True), PAGES, range(8)):
        iommu, io, pci = KINDS[kind]
        d = Domain(iommu_enabled=iommu, io_resources=io, pci_devices=pci)
        r = entry_emt(d, PAGES[name], MtrrState(def_type=0x806), NEWEST)
        got, _ = effective(r, cd_view(d, cd, GUEST_PAT), idx)
        if cd:
            want = UC  # hardware CR0.CD=1
        elif r.ipat:
            want = r.emt
        else:
            want = COMBINE[(r.emt, GUEST_PAT[idx])]
        assert got == want, (kind, cd, name, idx)
        n += 1
    assert n == 5 * 2 * 4 * 8


def test_ipat_entries_keep_wb_under_cd0_and_mmio_can_be_wc():
    d = Domain(iommu_enabled=True, io_resources=True)
    view = cd_view(d, False, GUEST_PAT)
    grant = entry_emt(d, PAGES["grant"], None, NEWEST)
    mmio = entry_emt(d, PAGES["mmio"], None, NEWEST)
    assert [effective(grant, view, i)[0] for i in range(8)] == [MemType.WB] * 8
    assert effective(mmio, view, 1)[0] == MemType.WC  # Linux PAT entry 1 is WC


def test_split_entry_has_no_effective_type():
    d = Domain()
    r = entry_emt(d, Page(0x40000, 0x80000, 9, mmio_ro=Coverage.PARTIAL), None, NEWEST)
    t, why = effective(r, cd_view(d, False, GUEST_PAT), 0)
    assert t is None and "EPT misconfiguration" in why


def test_paging_off_uses_wb_for_pat():
    d = Domain(iommu_enabled=True)
    r = entry_emt(d, PAGES["mmio"], None, NEWEST)
    assert effective(r, cd_view(d, False, GUEST_PAT), 3, paging=False)[0] == UC  # UC x WB


def test_nw_without_cd_is_refused():
    with pytest.raises(MemTypeError) as e:
        cd_view(Domain(), False, GUEST_PAT, cr0_nw=True)
    assert e.value.field == "vcpu.cr0_nw"
