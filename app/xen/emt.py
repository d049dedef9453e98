"""epte_get_entry_emt(): the EPT memory type (EMT) and IPAT Xen writes for one p2m entry.

Restated from xen/arch/x86/mm/p2m-ept.c at RELEASE-4.22.0 (d45d5687f144), lines 482-609;
the function is the same at RELEASE-4.19.0 (026c9fa29716) apart from two address
helpers (c674c77f69). Its callers are ept_set_entry() (line 936: a -1 answer is written as
EMT 7, MTRR_NUM_TYPES, "ept_handle_misconfig() will need to take care of this") and
resolve_misconfig() (lines 663 and 681: recompute after an EMT-7 mark; a -1 answer for a
superpage splits it one level and recomputes the halves).

The tests run in the function's order; the first that answers ends it:

1. mmio_ro_ranges overlaps the frames -> UC|IPAT if order 0 or fully inside, else -1.
2. not p2m_mmio_direct, no IOMMU, no cache-flush permission -> WB|IPAT.
3. special pages among the frames -> WB|IPAT if all are, else -1.
4. p2m_mmio_direct -> UC, IPAT clear.
5. grant (ro/rw) or foreign mapping -> WB|IPAT (8af4b47f06).
6. a pinned cache attribute range holds the gfns -> its type|IPAT, UC- becoming UC;
   a range overlapping only part of them -> -1.
7. guest MTRR type (the current vCPU's, else vCPU 0's, else WB) and host MTRR type of the
   mfn; -1 from either -> -1.
8. their combine (app/xen/mtrr.py `combine`), IPAT clear.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..kvm.era import Step
from ..x86.ept import MT_SHIFT, mt_mask, notation
from ..x86.memtype import MemType
from ..x86.mtrr import MtrrState
from . import mtrr as xmtrr
from .facts import Coverage, Domain, P2mType, Page, PinnedRange
from .versions import XenVersion

FN = "epte_get_entry_emt"
SRC = "xen/arch/x86/mm/p2m-ept.c"
MTRR_NUM_TYPES = 7
"""The invalid EMT Xen writes to force an EPT misconfiguration (reserved encoding 7)."""

RULES: tuple[tuple[str, str, str], ...] = (
    ("mmio_ro", "p2m-ept.c:495", "rangeset_overlaps_range(mmio_ro_ranges, mfn, mfn | (2^order - 1))"),
    ("no_passthrough", "p2m-ept.c:512", "type != p2m_mmio_direct && !is_iommu_enabled(d) && !cache_flush_permitted(d)"),
    ("special", "p2m-ept.c:527", "is_special_page() for any of the 2^order frames"),
    ("mmio_direct", "p2m-ept.c:538", "type == p2m_mmio_direct"),
    ("grant_foreign", "p2m-ept.c:541", "type is p2m_grant_map_ro/rw or p2m_map_foreign"),
    ("pinned", "p2m-ept.c:563", "hvm_get_mem_pinned_cacheattr(d, gfn, order) (hvm/mtrr.c:543)"),
    ("mtrr", "p2m-ept.c:572", "mtrr_get_type() on the vCPU's guest MTRRs and on the host's (hvm/mtrr.c:179)"),
    ("combine", "p2m-ept.c:580", "combine the guest and host MTRR types"),
)
"""(id, source line at RELEASE-4.22.0, condition) for each test, in the function's order."""

RULE_COMMITS = {"special": "ca24b2ffdb", "grant_foreign": "8af4b47f06", "no_passthrough": "c4e5cc2ccc"}


@dataclass(frozen=True, slots=True)
class EmtResult:
    """The EMT (None for -1: written as EMT 7, recomputed/split on misconfiguration)."""

    emt: MemType | None
    ipat: bool
    path: tuple[Step, ...]

    @property
    def split(self) -> bool:
        return self.emt is None

    @property
    def emt_field(self) -> int:
        """The value of EPT bits 5:3 as ept_set_entry() writes it."""
        return MTRR_NUM_TYPES if self.emt is None else int(self.emt)

    @property
    def mask(self) -> int:
        """EPT bits 6:3 (EMT and IPAT) of the leaf."""
        if self.emt is None:
            return MTRR_NUM_TYPES << MT_SHIFT | (1 << 6 if self.ipat else 0)
        return mt_mask(self.emt, self.ipat)

    @property
    def label(self) -> str:
        """Xen's ept dump notation: `WB!` = WB with IPAT, `??` = EMT 7 (needs recalc)."""
        return "??" if self.emt is None else notation(self.emt, self.ipat)

    @property
    def key(self) -> tuple[int, bool]:
        return self.emt_field, self.ipat


def _step(rid: str, held: bool | None, why: str = "") -> Step:
    line, cond = _RULE_TEXT[rid]
    return Step(rid, f"{FN} ({line})", cond, held, why, RULE_COMMITS.get(rid, ""))


_RULE_TEXT = {r: (line, cond) for r, line, cond in RULES}
_MISSED = {r: _step(r, False) for r in _RULE_TEXT}
_SKIPPED = {r: _step(r, None) for r in _RULE_TEXT}
_ORDER = tuple(_RULE_TEXT)


class _Path:
    """The steps so far; `hit` closes the path with the rest marked not reached."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def miss(self, rid: str, why: str = "") -> None:
        self.steps.append(_step(rid, False, why) if why else _MISSED[rid])

    def hit(self, rid: str, emt: MemType | None, ipat: bool, why: str) -> EmtResult:
        self.steps.append(_step(rid, True, why))
        rest = tuple(_SKIPPED[r] for r in _ORDER[len(self.steps):])
        return EmtResult(emt, ipat, (*self.steps, *rest))


def pinned_lookup(ranges: tuple[PinnedRange, ...], gfn: int, order: int) -> MemType | str | None:
    """hvm_get_mem_pinned_cacheattr(): the type of the range holding all 2^order gfns,
    "partial" (-EADDRNOTAVAIL) for a range overlapping only some, None (-ENXIO) for none.
    The list is walked in order and the first range that holds or overlaps answers."""
    first, last = gfn & ~((1 << order) - 1), gfn | ((1 << order) - 1)
    for r in ranges:
        if first >= r.start and last <= r.end:
            return r.type
        if first <= r.end and last >= r.start:
            return "partial"
    return None


def entry_emt(
    d: Domain, page: Page, guest_mtrr: MtrrState | None, version: XenVersion
) -> EmtResult:
    """The EMT and IPAT for `page` (validated by the caller: Domain/Page.validate).

    `guest_mtrr` is the MTRR state of the vCPU whose access triggers the computation
    (`current` if it belongs to the domain, else vCPU 0); None when the domain has no
    vCPU, which gives WB for the guest side.
    """
    p = _Path()
    order = page.order
    if page.mmio_ro is not Coverage.NONE:
        if order == 0 or page.mmio_ro is Coverage.ALL:
            return p.hit("mmio_ro", MemType.UC, True, "UC|IPAT: read-only MMIO (order 0 or fully inside)")
        return p.hit("mmio_ro", None, False, "-1: partly inside mmio_ro_ranges, split the superpage")
    p.miss("mmio_ro")
    if page.p2m_type is not P2mType.MMIO_DIRECT and not d.passthrough(version):
        return p.hit("no_passthrough", MemType.WB, True, "WB|IPAT: no IOMMU, no iomem/ioport"
                     + (" or PCI device" if version.cfp_counts_pdevs else "") + ": force WB")
    p.miss("no_passthrough")
    if page.special is not Coverage.NONE:
        if page.special is Coverage.ALL:
            return p.hit("special", MemType.WB, True, "WB|IPAT: Xen-owned special page(s)")
        return p.hit("special", None, False, "-1: special and ordinary frames mixed, split")
    p.miss("special")
    if page.p2m_type is P2mType.MMIO_DIRECT:
        return p.hit("mmio_direct", MemType.UC, False, "UC, IPAT clear: guest PAT can make it WC")
    p.miss("mmio_direct")
    if page.p2m_type.grant_or_foreign:
        return p.hit("grant_foreign", MemType.WB, True, f"WB|IPAT: {page.p2m_type.c_name}")
    p.miss("grant_foreign")
    pinned = pinned_lookup(d.pinned, page.gfn, order)
    if isinstance(pinned, MemType):
        pt = MemType.UC if pinned is MemType.UC_MINUS else pinned
        return p.hit("pinned", pt, True, f"{pt.label}|IPAT: pinned cache attribute {pinned.label}"
                     + (" (UC- becomes UC)" if pinned is MemType.UC_MINUS else ""))
    if pinned == "partial":
        return p.hit("pinned", None, False, "-1 (-EADDRNOTAVAIL): a pinned range covers part of it, split")
    p.miss("pinned")
    if guest_mtrr is None:
        g = xmtrr.XenLookup(MemType.WB, "no vCPU: WB")
    else:
        g = xmtrr.xen_mtrr_type(guest_mtrr, page.gfn << 12, order)
    h = page.host_mtrr
    if g.type is None or h is None:
        who = "guest" if g.type is None else "host"
        why = g.reason if g.type is None else "host MTRR types differ inside the superpage"
        return p.hit("mtrr", None, False, f"-1: {who} mtrr_get_type() -1 ({why}), split")
    p.miss("mtrr", f"guest {g.type.label} ({g.reason}), host {h.label}")
    t, why = xmtrr.combine(g.type, h)
    return p.hit("combine", t, False, f"{t.label}, IPAT clear: {why}")
