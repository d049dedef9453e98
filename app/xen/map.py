"""A Xen domain's guest-physical space as runs of one answer (what POST /api/v1/map draws).

The counterpart of app/kvm/memmap.py's `address_map` for Xen on VT-x with EPT. The memory
map's ranges stand for the p2m: a `ram` range is p2m_ram_rw, an `mmio` range
p2m_mmio_direct (a passed-through BAR), a hole has no p2m entry. Each range is split where
the guest MTRR lookup can change (app.kvm.mtrr.breakpoints, the SDM's and KVM's breakpoints:
Xen's mtrr_get_type() reads the same MSRs, so its answer can only change there too) and at
the edges of the domain's pinned cache attribute ranges; each run then carries the entry
epte_get_entry_emt() gives (xen/arch/x86/mm/p2m-ept.c, app.xen.emt), the effective type
for one guest PAT entry (app.xen.cd.effective: hardware CR0.CD, vmx_handle_cd's all-UC
PAT) and the guest's bare-metal expectation.

Page size: the largest order (1G, 2M, 4K) at which epte_get_entry_emt() gives a type for
the run's aligned blocks. A -1 answer is what makes ept_set_entry() write EMT 7 and
resolve_misconfig() split the superpage (p2m-ept.c:681), so the run shows the order the
entry ends up at after those splits. Whether the toolstack populated the p2m with
superpages at all (populate_physmap) is not modelled: this is the largest order the
memory types allow. Inside one run every aligned block of one order gets the same answer
(the run has one guest MTRR answer and one pinned range, or none, throughout), so one
computation per order decides, as page_runs does for KVM.

Per-frame facts (`frames`, POST /api/v1/map's `xen.frames`): GPA ranges with a p2m type
other than the memory map's (grant, foreign, mmio_direct on a ram range...), frames in
mmio_ro_ranges, special pages. The runs are split at their edges too, so inside a run each
fact holds for every frame or for none: a superpage entry that epte_get_entry_emt() would
answer -1 for (mmio_ro or special covering part of it) is shown at the order its
resolve_misconfig() splits end at, the largest order whose blocks lie on one side of every
edge. Foreign mappings are order 0 (ept_set_entry() asserts it). The mfn is taken equal
to the gfn (mmio_ro_ranges and special pages are mfn facts).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..kvm.mtrr import breakpoints
from ..kvm.ranges import check_map_ranges, first_uncovered
from ..kvm.scenario import MMIO, RAM, VcpuState, VmConfig
from ..kvm.svm import HOST_MTRR_DEFAULT
from ..x86.guest import expectation
from ..x86.memtype import MemType, MemTypeError, host_mtrr_type, located, relation
from ..x86.mtrr import sdm_lookup
from .cd import cd_view, effective
from .emt import EmtResult, entry_emt
from .facts import ORDERS, Coverage, Domain, P2mType, Page
from .mtrr import xen_mtrr_type
from .versions import XenVersion

UNMAPPED = "unmapped"
P2M_OF_KIND = {RAM: P2mType.RAM, MMIO: P2mType.MMIO_DIRECT}
"""The p2m type a memory-map range stands for."""
HOST_MTRR_OF_KIND = HOST_MTRR_DEFAULT
"""The host MTRR type of a range when the request gives none: host firmware's usual layout
(RAM WB, the PCI hole UC), the one assumption app.kvm.svm.HOST_MTRR_DEFAULT makes for AMD."""
_ORDER_BYTES = ((18, 1 << 30), (9, 1 << 21))


@dataclass(frozen=True, slots=True)
class FrameRange:
    """Per-frame facts over the GPAs [start, end): the p2m type (None: the memory map's
    range's, ram p2m_ram_rw / mmio p2m_mmio_direct), whether the frames are in
    mmio_ro_ranges, whether they are special pages (resolve's `xen` p2m_type, mmio_ro,
    special, for a range)."""

    start: int
    end: int
    p2m_type: P2mType | None = None
    mmio_ro: bool = False
    special: bool = False


FRAME_RANGE = "frame range"
"""What one xen.frames item is called, in the map's refusals and on the page's rows."""

FRAME_FLAGS = tuple(f.name for f in fields(FrameRange) if f.type in (bool, "bool"))
"""FrameRange's per-frame flags (mmio_ro, special): what a link's xen_frames item names
after its range (app.permalink) and the schema's XenFramesIn checkboxes are."""


def check_frames(frames: tuple[FrameRange, ...], vm: VmConfig, field: tuple = ("frames",),
                 ) -> tuple[FrameRange, ...]:
    """Refuse frame ranges that are unaligned, empty, overlapping, too many (the map's
    ranges' rules, check_map_ranges), or not all inside the memory map (a frame without a
    memslot has no p2m entry); sorted."""
    mapped = [(r.start, r.end) for r in vm.memory_map]

    def each(loc: tuple, start: int, end: int) -> None:
        if (hole := first_uncovered(start, end, mapped)) is not None:
            raise MemTypeError(loc, f"{hole:#x} is in no memory-map range",
                               "a frame outside the memory map has no p2m entry (the map's holes)")

    check_map_ranges([(f.start, f.end) for f in frames], field, FRAME_RANGE, "p2m entries map 4K frames",
                     "give each frame's facts once", each)
    return tuple(sorted(frames, key=lambda f: f.start))


@dataclass(frozen=True, slots=True)
class XenMapRun:
    """One run: [start, end) of one memory-map range with one answer. A hole has kind
    "unmapped", no p2m type and every answer None."""

    start: int
    end: int
    kind: str
    label: str
    p2m_type: str = ""
    guest_mtrr: MemType | None = None
    xen_mtrr: MemType | None = None
    emt: MemType | None = None
    ipat: bool = False
    rule: str = ""
    """The test of epte_get_entry_emt() that decided (app.xen.emt.RULES ids)."""
    effective: MemType | None = None
    expected: MemType | None = None
    relation: str = ""
    page_size: str = ""
    mmio_ro: bool = False
    """The frames are in mmio_ro_ranges (from `frames`)."""
    special: bool = False
    """The frames are special pages (from `frames`)."""


def _cuts(s: int, e: int, fits_order) -> list[tuple[int, int, int]]:
    """[s, e) split by the largest order usable (fits_order(order, addr) says whether an
    aligned block of that order at addr gets a type), as app.kvm.memmap.page_runs."""
    def fits(size: int) -> tuple[int, int]:
        return -(-s // size) * size, e // size * size

    (a1, b1), (a2, b2) = fits(1 << 30), fits(1 << 21)
    mid = 9 if a2 < b2 and fits_order(9, a2) else 0
    if a1 < b1 and fits_order(18, a1):
        cuts = [(s, a2, 0), (a2, a1, mid), (a1, b1, 18), (b1, b2, mid), (b2, e, 0)]
    elif a2 < b2:
        cuts = [(s, a2, 0), (a2, b2, mid), (b2, e, 0)]
    else:
        cuts = [(s, e, 0)]
    out: list[tuple[int, int, int]] = []
    for ps, pe, order in cuts:
        if ps >= pe:
            continue
        if out and out[-1][2] == order:
            out[-1] = (out[-1][0], pe, order)
        else:
            out.append((ps, pe, order))
    return out


def xen_map(v: XenVersion, d: Domain, vm: VmConfig, vcpu: VcpuState, pat_index: int = 0,
            host_mtrr: MemType | None = None, frames: tuple[FrameRange, ...] = ()) -> list[XenMapRun]:
    """Every range of `vm.memory_map` as runs (holes "unmapped"), for PAT entry `pat_index`.

    `host_mtrr` is the host MTRR type of every frame; None takes HOST_MTRR_OF_KIND by the
    range's kind. `frames` the per-frame facts (check_frames). Refusals: Domain.validate,
    the vCPU's, check_frames' (at "frames") and a host type that is not an MTRR type (at
    "host_mtrr").
    """
    d.validate(v)
    vm.validate()
    vcpu.validate(vm)
    if host_mtrr is not None:
        host_mtrr_type(host_mtrr)
    frames = check_frames(frames, vm)
    guest = vcpu.mtrr if d.has_vcpu else None
    cd = cd_view(d, vcpu.cr0_cd, vcpu.pat, vcpu.cr0_nw)
    top = 1 << vm.maxphyaddr
    pinned_edges = {a for r in d.pinned for a in (r.start << 12, (r.end + 1) << 12)}
    frame_edges = {a for f in frames for a in (f.start, f.end)}

    def frame_at(addr: int) -> FrameRange | None:
        return next((f for f in frames if f.start <= addr < f.end), None)
    runs: list[XenMapRun] = []
    cursor = 0

    def p2m_at(kind: str, f: FrameRange | None) -> P2mType:
        return f.p2m_type if f is not None and f.p2m_type is not None else P2M_OF_KIND[kind]

    def emt_at(kind: str, host: MemType, addr: int, order: int, f: FrameRange | None = None) -> EmtResult:
        gfn = (addr >> 12) & ~((1 << order) - 1)
        ro = Coverage.ALL if f is not None and f.mmio_ro else Coverage.NONE
        sp = Coverage.ALL if f is not None and f.special else Coverage.NONE
        return entry_emt(d, Page(gfn, gfn, order, p2m_at(kind, f), ro, sp, host_mtrr=host), guest, v)

    for r in sorted(vm.memory_map, key=lambda r: r.start):
        if r.start > cursor:
            runs.append(XenMapRun(cursor, r.start, UNMAPPED, "no memslot"))
        host = host_mtrr if host_mtrr is not None else HOST_MTRR_OF_KIND[r.kind]
        with located("vcpu", "mtrr"):
            pts = sorted(set(breakpoints(vcpu.mtrr, r.start, r.end, vm.maxphyaddr))
                         | {a for a in pinned_edges | frame_edges if r.start < a < r.end})
        for s, e in zip(pts, pts[1:], strict=False):
            look = sdm_lookup(vcpu.mtrr, s, vm.maxphyaddr)
            exp = expectation(look, vcpu.pat[pat_index], cd=vcpu.cr0_cd, nw=vcpu.cr0_nw, paging=vcpu.cr0_pg).type

            fr = frame_at(s)  # one frame range, or none, holds the whole run (split at their edges)
            p2m = p2m_at(r.kind, fr)

            def fits_order(order: int, addr: int, kind: str = r.kind, host: MemType = host,
                           fr: FrameRange | None = fr, p2m: P2mType = p2m) -> bool:
                if order and p2m is P2mType.FOREIGN:
                    return False  # ept_set_entry() asserts foreign entries are order 0
                return emt_at(kind, host, addr, order, fr).emt is not None

            for ps, pe, order in _cuts(s, e, fits_order):
                emt = emt_at(r.kind, host, ps, order, fr)
                assert emt.emt is not None  # order 0 never gives -1 here (coverage all or none, host type given)
                eff, _ = effective(emt, cd, pat_index, vcpu.cr0_pg)
                rel = relation(eff, exp) if eff is not None and exp is not None else "incomparable"
                xl = xen_mtrr_type(guest, ps, order).type if guest is not None else None
                rule = next(st.id for st in emt.path if st.held)
                run = XenMapRun(ps, pe, r.kind, r.label, p2m.c_name, look.type, xl, emt.emt,
                                emt.ipat, rule, eff, exp, rel, ORDERS[order], fr is not None and fr.mmio_ro,
                                fr is not None and fr.special)
                prev = runs[-1] if runs else None
                if prev is not None and prev.end == ps and replace(prev, start=ps, end=pe) == run:
                    runs[-1] = replace(prev, end=pe)
                else:
                    runs.append(run)
        cursor = max(cursor, r.end)
    if cursor < top:
        runs.append(XenMapRun(cursor, top, UNMAPPED, "no memslot"))
    return runs


__all__ = ["FRAME_FLAGS", "FRAME_RANGE", "HOST_MTRR_OF_KIND", "P2M_OF_KIND", "UNMAPPED", "FrameRange", "XenMapRun",
           "check_frames", "xen_map"]
