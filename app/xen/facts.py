"""What Xen knows when it computes an EPT memory type: the domain, the p2m entry, the page.

Inputs only; the rules live in emt.py. Each fact is named after the Xen predicate it stands
for (xen-project/xen at RELEASE-4.22.0, d45d5687f144, unless a docstring says otherwise):

- `iommu_enabled`: `is_iommu_enabled(d)`, the domain was created with an IOMMU context
  (XEN_DOMCTL_CDF_iommu). Assigning a PCI device needs it.
- `io_resources`: `has_arch_io_resources(d)`, the domain holds iomem or ioport ranges
  (xen/arch/x86/include/asm/iocap.h).
- `pci_devices`: `has_arch_pdevs(d)`, PCI devices are assigned to the domain.
- `cache_flush_permitted(d)`: io_resources, or (from 4.21, 8333e358e4) pci_devices.
- the gfn's p2m type (`p2m_type_t`), and where the mfn lies relative to `mmio_ro_ranges`
  and to special (Xen-owned) pages: `is_special_page()` = Xen heap or PGC_extra pages,
  such as the VMX APIC access page (vmx_alloc_vlapic_mapping(), MEMF_no_refcount), which
  is mapped as p2m_mmio_direct.
- pinned cache attribute ranges (XEN_DOMCTL_pin_mem_cacheattr, gfn ranges, inclusive).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..x86.memtype import MTRR_TYPE_NAMES, LocLike, MemType, MemTypeError, as_loc, host_mtrr_type
from .versions import XenVersion


class P2mType(StrEnum):
    """The p2m types epte_get_entry_emt() tells apart; every other RAM-like type
    (p2m_ram_logdirty, p2m_ram_ro, p2m_ram_shared, p2m_ioreq_server, ...) takes the
    `default:` branch of its switch exactly like p2m_ram_rw."""

    RAM = "ram"
    MMIO_DIRECT = "mmio_direct"
    GRANT_RW = "grant_map_rw"
    GRANT_RO = "grant_map_ro"
    FOREIGN = "map_foreign"

    @property
    def c_name(self) -> str:
        return "p2m_ram_rw" if self is P2mType.RAM else f"p2m_{self.value}"

    @property
    def grant_or_foreign(self) -> bool:
        return self in (P2mType.GRANT_RW, P2mType.GRANT_RO, P2mType.FOREIGN)


class Coverage(StrEnum):
    """How much of the 2^order frames from mfn a set covers (for superpages)."""

    NONE = "none"
    PARTIAL = "partial"
    ALL = "all"


ORDERS = {0: "4K", 9: "2M", 18: "1G"}
"""The page orders an EPT leaf can have (PAGE_ORDER_4K/2M/1G)."""

PINNED_TYPES: frozenset[MemType] = frozenset(MemType)
"""Types hvm_set_mem_pinned_cacheattr() accepts: UC, UC-, WC, WB, WP, WT (else -EINVAL)."""
PINNED_UNCACHABLE: frozenset[MemType] = frozenset({MemType.UC, MemType.UC_MINUS, MemType.WC})
PINNED_MAX = 64
"""hvm_set_mem_pinned_cacheattr(): `nr >= 64` ranges -> -ENOSPC (an arbitrary limit)."""


def coverage(ranges: tuple[tuple[int, int], ...], first: int, order: int) -> Coverage:
    """rangeset_overlaps_range / rangeset_contains_range over [first, first | 2^order-1].

    `ranges` are inclusive frame ranges; contained means one range holds all the frames
    (rangesets merge adjacent ranges, so pass them merged)."""
    last = first | ((1 << order) - 1)
    if any(s <= first and last <= e for s, e in ranges):
        return Coverage.ALL
    if any(s <= last and first <= e for s, e in ranges):
        return Coverage.PARTIAL
    return Coverage.NONE


@dataclass(frozen=True, slots=True)
class PinnedRange:
    """One pinned cache attribute range: gfns start..end inclusive, and its type."""

    start: int
    end: int
    type: MemType


@dataclass(frozen=True, slots=True)
class Domain:
    """The per-domain facts epte_get_entry_emt() and the event paths read."""

    iommu_enabled: bool = False
    io_resources: bool = False
    pci_devices: bool = False
    pinned: tuple[PinnedRange, ...] = ()
    has_vcpu: bool = True
    """d->vcpu[0] exists (false only while a domain is being built)."""
    iommu_snoop: bool = True
    """The global `iommu_snoop` (IOMMU forces DMA snooping); read by CD=0 and the 4.21 flush."""
    self_snoop: bool = True
    """X86_FEATURE_XEN_SELFSNOOP on the boot CPU (the 4.21 flush condition)."""
    running: bool = True
    """d->creation_finished (the domain has been unpaused once; 3125ca0da2)."""

    def cache_flush_permitted(self, version: XenVersion) -> bool:
        return self.io_resources or (version.cfp_counts_pdevs and self.pci_devices)

    def passthrough(self, version: XenVersion) -> bool:
        """The second test of epte_get_entry_emt(): an IOMMU or cache-flush permission."""
        return self.iommu_enabled or self.cache_flush_permitted(version)

    def validate(self, version: XenVersion, field: LocLike = "domain") -> Domain:
        if self.pci_devices and not self.iommu_enabled:
            raise MemTypeError(
                (*as_loc(field), "pci_devices"), "PCI devices assigned to a domain without an IOMMU",
                "device assignment needs a domain created with XEN_DOMCTL_CDF_iommu",
            )
        check_pinned(self.pinned, self, version, (*as_loc(field), "pinned"))
        return self


def check_pinned(ranges: tuple[PinnedRange, ...], d: Domain, version: XenVersion, field: LocLike) -> None:
    """What hvm_set_mem_pinned_cacheattr() (xen/arch/x86/hvm/mtrr.c) would refuse."""
    if len(ranges) > PINNED_MAX:
        raise MemTypeError(field, f"{len(ranges)} ranges given",
                           f"hvm_set_mem_pinned_cacheattr() allows at most {PINNED_MAX} (-ENOSPC)")
    for n, r in enumerate(ranges):
        f = (*as_loc(field), n)
        if r.start < 0 or r.end < r.start:
            raise MemTypeError(f, f"gfn range {r.start:#x}..{r.end:#x} is empty or negative",
                               "gfn_end < gfn_start is -EINVAL")
        if r.type not in PINNED_TYPES:
            raise MemTypeError((*f, "type"), f"type {int(r.type)} is not a memory type", "-EINVAL")
        if version.pinned_uc_needs_io and r.type in PINNED_UNCACHABLE and not d.passthrough(version):
            raise MemTypeError(
                (*f, "type"), f"{r.type.label} pinned for a domain with neither an IOMMU nor I/O resources",
                f"{version.id}: UC, UC- and WC pins need either (-EPERM, d63b2c60f7)",
            )
        for m, o in enumerate(ranges[:n]):
            if o.start <= r.end and r.start <= o.end:
                same = o.start == r.start and o.end == r.end
                raise MemTypeError(
                    f, f"overlaps range {m} ({o.start:#x}..{o.end:#x})",
                    "pinning the same range again replaces its type: give it once" if same
                    else "overlapping pinned ranges are refused (-EBUSY)",
                )


@dataclass(frozen=True, slots=True)
class Page:
    """One p2m entry as ept_set_entry() or resolve_misconfig() hands it over."""

    gfn: int
    mfn: int
    order: int = 0
    p2m_type: P2mType = P2mType.RAM
    mmio_ro: Coverage = Coverage.NONE
    special: Coverage = Coverage.NONE
    host_mtrr: MemType | None = MemType.WB
    """mtrr_get_type(&mtrr_state, mfn, order) on the host: None when it returns -1
    (the host MTRRs differ inside the superpage)."""

    def validate(self, field: LocLike = "page") -> Page:
        if self.order not in ORDERS:
            raise MemTypeError((*as_loc(field), "order"), f"order {self.order}",
                               "EPT leaves have order 0 (4K), 9 (2M) or 18 (1G)")
        size = 1 << self.order
        for name, v in (("gfn", self.gfn), ("mfn", self.mfn)):
            if v < 0 or v >= 1 << 40:
                raise MemTypeError((*as_loc(field), name), f"{v:#x} is out of range",
                                   "frame numbers are 0..2^40-1 (52-bit addresses)")
            if v % size:
                raise MemTypeError((*as_loc(field), name), f"{v:#x} is not aligned to order {self.order}",
                                   "ept_set_entry() refuses unaligned gfn/mfn (-EINVAL)")
        if self.order == 0:
            for name, c in (("mmio_ro", self.mmio_ro), ("special", self.special)):
                if c is Coverage.PARTIAL:
                    raise MemTypeError((*as_loc(field), name), "partial coverage of a single 4K frame",
                                       "a frame is either in the set or not")
        if self.p2m_type is P2mType.FOREIGN and self.order:
            raise MemTypeError((*as_loc(field), "order"), "foreign mapping larger than 4K",
                               "ept_set_entry() asserts foreign entries are order 0")
        if self.host_mtrr is None:
            if self.order == 0:
                raise MemTypeError((*as_loc(field), "host_mtrr"), "mixed host MTRR types for one 4K frame",
                                   "mtrr_get_type() returns -1 only for order > 0")
        else:
            host_mtrr_type(self.host_mtrr, (*as_loc(field), "host_mtrr"))
        return self


P2M_TYPES = tuple(t.value for t in P2mType)
COVERAGES = tuple(c.value for c in Coverage)
HOST_MTRR_CHOICES = (*MTRR_TYPE_NAMES, "mixed")
"""The host MTRR of the entry's frames: an MTRR type, or mixed (mtrr_get_type() -1, superpages)."""


@dataclass(frozen=True, slots=True)
class XenFacts:
    """The Xen facts one scenario carries, as a permalink and the CLI hold them (the API's
    `xen` object, app/api/schemas.py XenIn, member for member): the domain's and those of
    the p2m entry holding the address. Domain() and Page() are built from them
    (app/api/xen.py to_xen), where every rule is checked."""

    iommu: bool = False
    io_resources: bool = False
    pci_devices: bool = False
    has_vcpu: bool = True
    pinned: tuple[PinnedRange, ...] = ()
    p2m_type: str = P2mType.RAM.value
    order: int = 0
    mfn: int | None = None
    mmio_ro: str = Coverage.NONE.value
    special: str = Coverage.NONE.value
    host_mtrr: str | None = None
    """An MTRR type or "mixed"; None: WB for one entry (resolve), by the range's kind (RAM
    WB, MMIO UC) for a whole domain (map, zap)."""

    def domain(self) -> Domain:
        return Domain(iommu_enabled=self.iommu, io_resources=self.io_resources, pci_devices=self.pci_devices,
                      pinned=self.pinned, has_vcpu=self.has_vcpu)

    def page(self, gpa: int) -> Page:
        """The entry holding `gpa` (gfn aligned down to the order; mfn = gfn unless given)."""
        gfn = (gpa >> 12) & ~((1 << self.order) - 1)
        host = None if self.host_mtrr == "mixed" else MemType.from_label(self.host_mtrr or "WB")
        return Page(gfn, gfn if self.mfn is None else self.mfn, self.order, P2mType(self.p2m_type),
                    Coverage(self.mmio_ro), Coverage(self.special), host)

    def map_host_mtrr(self) -> MemType | None:
        """For a whole-domain answer (map, zap): the host type given for every frame, or None
        (by the range's kind); "mixed" has no meaning there."""
        if self.host_mtrr == "mixed":
            raise MemTypeError(("xen", "host_mtrr"), "mixed applies to one superpage entry",
                               "a map or zap takes one host MTRR type for every frame, or none (by kind)")
        return None if self.host_mtrr is None else MemType.from_label(self.host_mtrr)
