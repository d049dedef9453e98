"""resolve_xen() (one scenario, everything out) and its 72-column text rendering."""

import itertools

import pytest

from app.kvm.scenario import Cr0Write, MtrrWrite, PatWrite, VcpuState
from app.x86.memtype import MemType, MemTypeError
from app.x86.mtrr import MtrrState, VarMtrr
from app.x86.pat import PAT_LINUX, Pat
from app.xen import NEWEST, XEN_VERSIONS, Coverage, Domain, P2mType, Page, Passthrough, PinnedRange, event_answer
from app.xen.resolve import resolve_xen
from app.xen.text import render_xen, render_xen_event

OVMF = MtrrState(def_type=0xC06, variable=(VarMtrr(0x80000000, 0x3FFF80000800),))
LINUX = Pat.from_msr(PAT_LINUX)
PASSTHROUGH = Domain(iommu_enabled=True, pci_devices=True)


def test_bar_in_a_passthrough_domain():
    """The bochs VRAM BAR at 0xfd000000 as p2m_mmio_direct in a domain with a PCI device,
    OVMF's MTRRs (UC above 2 GiB), Linux PAT: UC without IPAT, PAT entry 1 gives WC."""
    bar = Page(0xFD000, 0xFD000, 0, P2mType.MMIO_DIRECT)
    r = resolve_xen(NEWEST, PASSTHROUGH, bar, VcpuState(pat=LINUX, mtrr=OVMF))
    assert (r.emt.emt, r.emt.ipat, r.mask, r.leaf.raw) == (MemType.UC, False, 0x0, 0xFD000107)
    assert [row.effective for row in r.pat_rows] == [MemType.UC, MemType.WC] + [MemType.UC] * 6
    assert {row.relation for row in r.pat_rows} == {"same"}
    text = render_xen(r)
    assert "  EPT entry    UC  (EMT UC, IPAT 0, mask 0x0)\n" in text
    assert "  [x] mmio_direct     epte_get_entry_emt (p2m-ept.c:538): type ==\n" in text
    assert "  1   0 0 1        WC   WC    WC         WC     same\n" in text


def test_ram_in_a_plain_domain_is_wb_ipat_and_weaker_than_uc_mtrr():
    r = resolve_xen(NEWEST, Domain(), Page(0xFD000, 0x12345), VcpuState(pat=LINUX, mtrr=OVMF))
    assert r.emt.label == "WB!" and r.leaf.raw == 0x12345177
    # the guest expects UC (UC MTRR) except WC through PAT entry 1: WB is weaker than UC
    # and incomparable with WC
    assert [row.relation for row in r.pat_rows] == ["weaker", "incomparable"] + ["weaker"] * 6
    assert r.mtrr_finding is None


def test_cd1_in_a_handle_cd_domain():
    v = VcpuState(cr0_cd=True, pat=LINUX, mtrr=OVMF)
    r = resolve_xen(NEWEST, PASSTHROUGH, Page(0x1000, 0x1000), v)
    assert r.cd.cache_mode == "no-fill" and r.cd.vmcs_pat.to_msr() == 0
    assert {row.effective for row in r.pat_rows} == {MemType.UC}
    assert {row.pat_type_used for row in r.pat_rows} == {MemType.UC}
    assert ("  vCPU         CR0.CD=1, cache mode no-fill, GUEST_PAT\n"
            "               0x0000000000000000\n") in render_xen(r)


def test_split_entry():
    r = resolve_xen(NEWEST, Domain(), Page(0x40000, 0x80000, 9, mmio_ro=Coverage.PARTIAL), VcpuState())
    assert r.pat_rows == () and r.leaf.raw == 0x800001BF
    assert r.leaf.misconfig() == ["memtype 7 (bits 5:3) is reserved: EPT misconfiguration"]
    assert "  EPT entry    ?? (EMT 7, mask 0x38): misconfiguration on access;\n" in render_xen(r)


def test_superpage_finding():
    mtrr = MtrrState(def_type=0x800, variable=(VarMtrr(0x40003000 | 6, 0x3FFFFFFFF800),))
    r = resolve_xen(NEWEST, PASSTHROUGH, Page(0x40000, 0x80000, 9), VcpuState(mtrr=mtrr))
    assert r.emt.emt == MemType.WB  # the 4K WB pair decides the whole 2M page
    assert r.mtrr_finding is not None and "Xen uses WB for the whole 2M page" in r.mtrr_finding


def test_gfn_above_maxphyaddr_is_refused():
    with pytest.raises(MemTypeError) as e:
        resolve_xen(NEWEST, Domain(), Page(1 << 30, 0), VcpuState(), maxphyaddr=40)
    assert e.value.field == "page.gfn"


def _lines_ok(text):
    for line in text.splitlines():
        assert len(line) <= 72, line
        assert line.isascii() and "\t" not in line, line


def test_every_rendering_fits_72_columns():
    domains = [Domain(), Domain(iommu_enabled=True), Domain(io_resources=True), PASSTHROUGH,
               Domain(iommu_enabled=True, io_resources=True, pinned=(PinnedRange(0x40000, 0x401FF, MemType.UC_MINUS),)),
               Domain(has_vcpu=False)]
    pages = [Page(0x40000, 0x80000, 9, p) for p in (P2mType.RAM, P2mType.MMIO_DIRECT, P2mType.GRANT_RW)] + [
        Page(0x40000, 0x80000, 0, P2mType.FOREIGN), Page(0x40000, 0x80000, 9, special=Coverage.PARTIAL),
        Page(0x40000, 0x80000, 18, host_mtrr=None), Page(0xFEE00, 0x1, mmio_ro=Coverage.ALL)]
    vcpus = [VcpuState(), VcpuState(cr0_cd=True, pat=LINUX, mtrr=OVMF)]
    n = 0
    for v, d, p, c in itertools.product(XEN_VERSIONS.values(), domains, pages, vcpus):
        _lines_ok(render_xen(resolve_xen(v, d, p, c)))
        n += 1
    events = [MtrrWrite(msr=0x2FF, value=0x800), PatWrite(value=PAT_LINUX), Cr0Write(value=True),
              Passthrough(True), Passthrough(True, "pci")]
    for v, ev in itertools.product(XEN_VERSIONS.values(), events):
        _lines_ok(render_xen_event(event_answer(v, PASSTHROUGH, pages[0], VcpuState(mtrr=OVMF), ev)))
        n += 1
    assert n == 2 * 6 * 7 * 2 + 2 * 5
