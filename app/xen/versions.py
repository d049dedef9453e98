"""Xen releases whose EPT memory-type rules this package models, and what differs.

Read from xen-project/xen at two release tags (the EMT computation itself,
`epte_get_entry_emt()` in xen/arch/x86/mm/p2m-ept.c and `mtrr_get_type()` in
xen/arch/x86/hvm/mtrr.c, is the same text at both):

- RELEASE-4.19.0 (026c9fa29716), unchanged through 4.20: `memory_type_changed()` runs the
  EMT invalidation for domains with an IOMMU *or* I/O resources, and always flushes caches;
  `cache_flush_permitted()` means "has iomem or ioport ranges".
- RELEASE-4.21.0 (06af9ef22996) to RELEASE-4.22.0 (d45d5687f144): 2d779cabdd dropped
  `is_iommu_enabled(d)` from that gate (only `cache_flush_permitted(d)` remains) and limited
  the flush to CPUs without self-snoop or IOMMUs without snoop control; 3125ca0da2 skips the
  flush before the domain first runs; 8333e358e4 made `cache_flush_permitted()` also true for
  domains with assigned PCI devices; d63b2c60f7 refuses uncachable pinned cache attributes
  (UC, UC-, WC) for domains with neither an IOMMU nor I/O resources (-EPERM).

One record per release line; every rule that differs reads its flag here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..x86.memtype import MemTypeError

SYSTEM_ID = "xen"
"""The id accepted where a KVM era id is (issue 14): the newest modelled release."""


@dataclass(frozen=True, slots=True)
class XenVersion:
    id: str
    title: str
    releases: str
    tag: str
    commit: str
    mtc_gate_iommu: bool
    """memory_type_changed() also runs for IOMMU-enabled domains (dropped by 2d779cabdd)."""
    cfp_counts_pdevs: bool
    """cache_flush_permitted() is true with assigned PCI devices (8333e358e4)."""
    flush_needs_no_selfsnoop: bool
    """The cache flush only without self-snoop or IOMMU snoop control (2d779cabdd)."""
    pinned_uc_needs_io: bool
    """UC/UC-/WC pinned ranges need an IOMMU or I/O resources (d63b2c60f7)."""
    changes: tuple[str, ...] = ()


XEN_4_19 = XenVersion(
    "xen-4.19", "Xen 4.19 and 4.20", "4.19.0-4.20.x", "RELEASE-4.19.0",
    "026c9fa29716b0ff0f8b7c687908e71ba29cf239",
    mtc_gate_iommu=True, cfp_counts_pdevs=False, flush_needs_no_selfsnoop=False, pinned_uc_needs_io=False,
)
XEN_4_21 = XenVersion(
    "xen-4.21", "Xen 4.21 and 4.22", "4.21.0-4.22.0", "RELEASE-4.22.0",
    "d45d5687f1441495f4ee20d5e9940066c5fa5beb",
    mtc_gate_iommu=False, cfp_counts_pdevs=True, flush_needs_no_selfsnoop=True, pinned_uc_needs_io=True,
    changes=(
        "2d779cabdd x86/hvm: reduce the need to flush caches in memory_type_changed()",
        "3125ca0da2 x86/hvm: limit memory type cache flush to running domains",
        "50bbacacb8 x86/p2m: limit cache flush in memory_type_changed()",
        "8333e358e4 xen/x86: account for assigned PCI devices in cache_flush_permitted()",
        "d63b2c60f7 x86/HVM: restrict use of pinned cache attributes as well as associated flushing",
    ),
)

XEN_VERSIONS: dict[str, XenVersion] = {v.id: v for v in (XEN_4_19, XEN_4_21)}
NEWEST = XEN_4_21


def is_xen(system_id: str) -> bool:
    """Whether a `kernel` value names Xen (the system id or a modelled release id)."""
    return system_id == SYSTEM_ID or system_id in XEN_VERSIONS


def check_xen_side(given: bool, kernel: str, field: str = "xen") -> None:
    """Xen facts (a domain's, the p2m entry's, the map's per-frame facts) describe a Xen
    domain: given with a KVM kernel they would be silently unused, so they are refused (the
    API's `xen`, a link's xen_* parameters)."""
    if given and not is_xen(kernel):
        raise MemTypeError(field, "Xen facts given with a KVM kernel", 'xen needs kernel "xen"')


def get_version(version_id: str, field: str = "kernel") -> XenVersion:
    """A modelled release by id; `xen` names the newest."""
    if version_id == SYSTEM_ID:
        return NEWEST
    if version_id in XEN_VERSIONS:
        return XEN_VERSIONS[version_id]
    known = ", ".join((SYSTEM_ID, *XEN_VERSIONS))
    raise MemTypeError(field, f"unknown Xen version {version_id!r}", f"known: {known}")
