"""epte_get_entry_emt() against tables written from the Xen source, over every state.

The expectations below are written from xen/arch/x86/mm/p2m-ept.c and hvm/mtrr.c at
RELEASE-4.22.0 (d45d5687f144) and RELEASE-4.19.0 (026c9fa29716) as tables and a
table-driven walk, independently of app/xen (which is an if-chain over facts): the
combine table is spelled out cell by cell, the order of the tests is a list.
"""

import functools
import itertools

import pytest

from app.x86.memtype import MemType, MemTypeError
from app.x86.mtrr import MtrrState, VarMtrr
from app.xen import (
    XEN_VERSIONS,
    Coverage,
    Domain,
    P2mType,
    Page,
    PinnedRange,
    coverage,
    entry_emt,
    get_version,
)
from app.xen.emt import RULES

UC, WC, WT, WP, WB, UCM = MemType.UC, MemType.WC, MemType.WT, MemType.WP, MemType.WB, MemType.UC_MINUS
V419, V421 = XEN_VERSIONS["xen-4.19"], XEN_VERSIONS["xen-4.21"]

# guest MTRR type (row) x host MTRR type (column), p2m-ept.c lines 580-608.
COMBINE_TABLE = {
    #        host: UC  WC  WT  WP  WB
    UC: dict(zip((UC, WC, WT, WP, WB), (UC, UC, UC, UC, UC), strict=True)),
    WC: dict(zip((UC, WC, WT, WP, WB), (UC, WC, UC, UC, WC), strict=True)),
    WT: dict(zip((UC, WC, WT, WP, WB), (UC, UC, WT, WP, WT), strict=True)),
    WP: dict(zip((UC, WC, WT, WP, WB), (UC, UC, WP, WP, WP), strict=True)),
    WB: dict(zip((UC, WC, WT, WP, WB), (UC, WC, WT, WP, WB), strict=True)),
}

# Domain kinds: (iommu, io_resources, pci_devices).
KINDS = {
    "plain": (False, False, False),
    "iommu": (True, False, False),
    "io": (False, True, False),
    "iommu+io": (True, True, False),
    "iommu+pci": (True, False, True),
}
# Does the second test (no IOMMU, no cache-flush permission) fail, i.e. does the domain
# get past it? pci alone counts in 4.21 (8333e358e4) but needs an IOMMU anyway.
PASSTHROUGH = {
    ("xen-4.19", "plain"): False, ("xen-4.19", "iommu"): True, ("xen-4.19", "io"): True,
    ("xen-4.19", "iommu+io"): True, ("xen-4.19", "iommu+pci"): True,
    ("xen-4.21", "plain"): False, ("xen-4.21", "iommu"): True, ("xen-4.21", "io"): True,
    ("xen-4.21", "iommu+io"): True, ("xen-4.21", "iommu+pci"): True,
}

GFN, MFN = 0x40000, 0x80000  # 1 GiB, 2 GiB: above the fixed ranges, 1G-aligned
SPLIT = "split"


@functools.cache
def guest_state(kind, order):
    """The guest MTRR state for a label: a type via the default type (E=1, FE=0), etc."""
    if kind == "disabled":
        return MtrrState(def_type=int(WB))  # E=0: UC in Xen whatever the type byte
    if kind == "novcpu":
        return None
    if kind == "mixed":  # two 4K ranges of different types inside the 2M page at GFN
        a = VarMtrr((GFN << 12) | int(UC), 0xFFFFFFF000 | 0x800)
        b = VarMtrr(((GFN + 1) << 12) | int(WC), 0xFFFFFFF000 | 0x800)
        return MtrrState(def_type=0x800 | int(WB), variable=(a, b))
    return MtrrState(def_type=0x800 | int(kind))


def guest_expected(kind, order):
    return {"disabled": UC, "novcpu": WB, "mixed": SPLIT if order else UC}.get(kind, kind)


def expected(version, kind, p2m, order, mmio_ro, special, pinned, guest, host):
    """(EMT or 'split', IPAT, id of the test that answered), walking the function's list."""
    grant = p2m in (P2mType.GRANT_RO, P2mType.GRANT_RW, P2mType.FOREIGN)
    walk = [
        ("mmio_ro", mmio_ro != "none",
         (UC, True) if (order == 0 or mmio_ro == "all") else (SPLIT, False)),
        ("no_passthrough", p2m != P2mType.MMIO_DIRECT and not PASSTHROUGH[(version, kind)], (WB, True)),
        ("special", special != "none", (WB, True) if special == "all" else (SPLIT, False)),
        ("mmio_direct", p2m == P2mType.MMIO_DIRECT, (UC, False)),
        ("grant_foreign", grant, (WB, True)),
        ("pinned", pinned != "none",
         (SPLIT, False) if pinned == "partial" else (UC if pinned == UCM else pinned, True)),
    ]
    for rid, cond, answer in walk:
        if cond:
            return answer[0], answer[1], rid
    g = guest_expected(guest, order)
    if g == SPLIT or host is None:
        return SPLIT, False, "mtrr"
    return COMBINE_TABLE[g][host], False, "combine"


def pinned_ranges(pinned, order):
    if pinned == "none":
        return ()
    if pinned == "partial":  # covers the second half of the superpage only
        half = 1 << (order - 1)
        return (PinnedRange(GFN + half, GFN + (1 << order) - 1, WB),)
    return (PinnedRange(GFN, GFN + (1 << order) - 1, pinned),)


def all_cases():
    for version, kind, p2m, order in itertools.product(XEN_VERSIONS, KINDS, P2mType, (0, 9)):
        if p2m == P2mType.FOREIGN and order:
            continue
        covs = ("none", "all") if order == 0 else ("none", "partial", "all")
        pins = ("none", WB, UCM, WC) + (("partial",) if order else ())
        guests = (UC, WC, WT, WP, WB, "disabled", "novcpu") + (("mixed",) if order else ())
        hosts = (UC, WC, WT, WP, WB) + ((None,) if order else ())
        yield from itertools.product([version], [kind], [p2m], [order], covs, covs, pins, guests, hosts)


CASES = list(all_cases())


def test_case_count():
    # order 0: 2 versions x 5 kinds x 5 p2m types x 2 x 2 x 4 pins x 7 guests x 5 hosts
    # order 9: 2 x 5 x 4 (no foreign) x 3 x 3 x 5 x 8 x 6
    assert len(CASES) == 2 * 5 * 5 * 2 * 2 * 4 * 7 * 5 + 2 * 5 * 4 * 3 * 3 * 5 * 8 * 6 == 114_400


def test_every_state_matches_the_table():
    bad = []
    refused = 0
    for case in CASES:
        version, kind, p2m, order, mmio_ro, special, pinned, guest, host = case
        iommu, io, pci = KINDS[kind]
        v = XEN_VERSIONS[version]
        d = Domain(iommu_enabled=iommu, io_resources=io, pci_devices=pci, pinned=pinned_ranges(pinned, order),
                   has_vcpu=guest != "novcpu")
        page = Page(GFN, MFN, order, p2m, Coverage(mmio_ro), Coverage(special), host).validate()
        uncachable_pin = pinned in (UCM, WC)
        if version == "xen-4.21" and uncachable_pin and not PASSTHROUGH[(version, kind)]:
            with pytest.raises(MemTypeError, match="-EPERM"):
                d.validate(v)
            refused += 1
            continue
        d.validate(v)
        r = entry_emt(d, page, guest_state(guest, order), v)
        got = (SPLIT if r.emt is None else r.emt, r.ipat, next(s.id for s in r.path if s.held))
        want = expected(version, kind, p2m, order, mmio_ro, special, pinned, guest, host)
        if got != want:
            bad.append((case, got, want))
    assert bad == []
    # plain domains in 4.21 with a UC- or WC pin: 2 pins x (order 0 and 9 states)
    assert refused == 2 * (5 * 2 * 2 * 7 * 5 + 4 * 3 * 3 * 8 * 6)


def test_path_lists_every_test_once_in_order():
    d = Domain(iommu_enabled=True)
    r = entry_emt(d, Page(GFN, MFN), MtrrState(def_type=0x806), V421)
    assert [s.id for s in r.path] == [rid for rid, _, _ in RULES]
    assert [s.held for s in r.path] == [False] * 7 + [True]
    r = entry_emt(Domain(), Page(GFN, MFN), MtrrState(def_type=0x806), V421)
    assert [s.held for s in r.path] == [False, True] + [None] * 6
    assert r.path[1].function == "epte_get_entry_emt (p2m-ept.c:512)"


def test_leaf_bits_and_notation():
    plain = entry_emt(Domain(), Page(GFN, MFN), None, V421)
    assert (plain.mask, plain.label) == (0x70, "WB!")
    mmio = entry_emt(Domain(iommu_enabled=True), Page(GFN, MFN, 0, P2mType.MMIO_DIRECT), None, V421)
    assert (mmio.mask, mmio.label, mmio.emt_field) == (0x00, "UC", 0)
    split = entry_emt(Domain(), Page(GFN, MFN, 9, mmio_ro=Coverage.PARTIAL), None, V421)
    assert (split.mask, split.label, split.emt_field, split.split) == (0x38, "??", 7, True)


def test_apic_access_page_is_wb_ipat_in_any_domain():
    """domain_creation_finished() (vmx.c) asserts WB|IPAT for the APIC access page: a
    special (PGC_extra) page mapped p2m_mmio_direct."""
    for (iommu, io, pci), v in itertools.product(KINDS.values(), XEN_VERSIONS.values()):
        page = Page(0xFEE00, 0x123456, 0, P2mType.MMIO_DIRECT, special=Coverage.ALL)
        r = entry_emt(Domain(iommu_enabled=iommu, io_resources=io, pci_devices=pci), page, None, v)
        assert (r.emt, r.ipat) == (WB, True)


def test_combine_table_is_symmetric():
    # The rule reads "either" throughout, so swapping guest and host changes nothing.
    for g, h in itertools.product(COMBINE_TABLE, repeat=2):
        assert COMBINE_TABLE[g][h] == COMBINE_TABLE[h][g]


def test_coverage_helper():
    ranges = ((0x100, 0x1FF), (0x400, 0x400))
    assert coverage(ranges, 0x100, 8) == Coverage.ALL
    assert coverage(ranges, 0x000, 9) == Coverage.PARTIAL
    assert coverage(ranges, 0x200, 8) == Coverage.NONE
    assert coverage(ranges, 0x400, 0) == Coverage.ALL
    assert coverage(ranges, 0x401, 0) == Coverage.NONE


def test_pinned_lookup_walks_ranges():
    d = Domain(iommu_enabled=True, pinned=(PinnedRange(0x40000, 0x400FF, WT), PinnedRange(0x40100, 0x401FF, UCM)))
    got = [entry_emt(d, Page(g, MFN + g - GFN), MtrrState(def_type=0x806), V421) for g in (0x40000, 0x40100, 0x40200)]
    assert [(r.emt, r.ipat) for r in got] == [(WT, True), (UC, True), (WB, False)]
    big = entry_emt(d, Page(0x40000, MFN, 9), MtrrState(def_type=0x806), V421)
    assert big.split  # the first range holds only part of the 2M page: -EADDRNOTAVAIL


@pytest.mark.parametrize(
    ("domain", "field", "rule"),
    [
        (Domain(pci_devices=True), "domain.pci_devices", "XEN_DOMCTL_CDF_iommu"),
        (Domain(pinned=(PinnedRange(5, 4, WB),)), "domain.pinned[0]", "-EINVAL"),
        (Domain(pinned=(PinnedRange(0, 9, WB), PinnedRange(9, 12, WT))), "domain.pinned[1]", "-EBUSY"),
        (Domain(pinned=(PinnedRange(0, 9, WB), PinnedRange(0, 9, WT))), "domain.pinned[1]", "replaces"),
        (Domain(pinned=tuple(PinnedRange(n, n, WB) for n in range(65))), "domain.pinned", "-ENOSPC"),
        (Domain(pinned=(PinnedRange(0, 9, UC),)), "domain.pinned[0].type", "-EPERM"),
    ],
)
def test_domain_refusals(domain, field, rule):
    with pytest.raises(MemTypeError) as e:
        domain.validate(V421)
    assert e.value.field == field and rule in e.value.rule


def test_uncachable_pin_allowed_before_4_21():
    Domain(pinned=(PinnedRange(0, 9, UC),)).validate(V419)


@pytest.mark.parametrize(
    ("page", "field"),
    [
        (Page(GFN, MFN, 3), "page.order"),
        (Page(GFN + 1, MFN, 9), "page.gfn"),
        (Page(GFN, MFN + 7, 9), "page.mfn"),
        (Page(GFN, MFN, 0, mmio_ro=Coverage.PARTIAL), "page.mmio_ro"),
        (Page(GFN, MFN, 0, special=Coverage.PARTIAL), "page.special"),
        (Page(GFN, MFN, 9, P2mType.FOREIGN), "page.order"),
        (Page(GFN, MFN, 0, host_mtrr=None), "page.host_mtrr"),
        (Page(GFN, MFN, 0, host_mtrr=UCM), "page.host_mtrr"),
        (Page(-1, MFN), "page.gfn"),
    ],
)
def test_page_refusals(page, field):
    with pytest.raises(MemTypeError) as e:
        page.validate()
    assert e.value.field == field


def test_version_ids():
    assert get_version("xen") is V421
    assert get_version("xen-4.19") is V419
    with pytest.raises(MemTypeError) as e:
        get_version("xen-4.2")
    assert e.value.field == "kernel" and "xen-4.19" in e.value.rule
