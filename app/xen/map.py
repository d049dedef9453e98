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

Not from the map: mmio_ro_ranges and special pages (they are per-frame facts, given to
POST /api/v1/resolve in `xen`), and the mfn (taken equal to the gfn).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..kvm.mtrr import breakpoints
from ..kvm.scenario import MMIO, RAM, VcpuState, VmConfig
from ..x86.guest import expectation
from ..x86.memtype import MemType, MemTypeError, located, relation
from ..x86.mtrr import sdm_lookup
from .cd import cd_view, effective
from .emt import EmtResult, entry_emt
from .facts import ORDERS, Domain, P2mType, Page
from .mtrr import xen_mtrr_type
from .versions import XenVersion

UNMAPPED = "unmapped"
P2M_OF_KIND = {RAM: P2mType.RAM, MMIO: P2mType.MMIO_DIRECT}
"""The p2m type a memory-map range stands for."""
HOST_MTRR_OF_KIND: dict[str, MemType] = {RAM: MemType.WB, MMIO: MemType.UC}
"""The host MTRR type of a range when the request gives none: host firmware's usual layout
(RAM WB, the PCI hole UC), the same assumption app.kvm.svm.HOST_MTRR_DEFAULT makes."""
_ORDER_BYTES = ((18, 1 << 30), (9, 1 << 21))


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
            host_mtrr: MemType | None = None) -> list[XenMapRun]:
    """Every range of `vm.memory_map` as runs (holes "unmapped"), for PAT entry `pat_index`.

    `host_mtrr` is the host MTRR type of every frame; None takes HOST_MTRR_OF_KIND by the
    range's kind. Refusals: Domain.validate, the vCPU's, and a host type that is not an
    MTRR type (at "host_mtrr").
    """
    d.validate(v)
    vm.validate()
    vcpu.validate(vm)
    if host_mtrr is not None and host_mtrr is MemType.UC_MINUS:
        raise MemTypeError("host_mtrr", "UC- is not an MTRR type", "MTRR types are UC, WC, WT, WP, WB")
    guest = vcpu.mtrr if d.has_vcpu else None
    cd = cd_view(d, vcpu.cr0_cd, vcpu.pat, vcpu.cr0_nw)
    top = 1 << vm.maxphyaddr
    pinned_edges = {a for r in d.pinned for a in (r.start << 12, (r.end + 1) << 12)}
    runs: list[XenMapRun] = []
    cursor = 0

    def emt_at(kind: str, host: MemType, addr: int, order: int) -> EmtResult:
        gfn = (addr >> 12) & ~((1 << order) - 1)
        return entry_emt(d, Page(gfn, gfn, order, P2M_OF_KIND[kind], host_mtrr=host), guest, v)

    for r in sorted(vm.memory_map, key=lambda r: r.start):
        if r.start > cursor:
            runs.append(XenMapRun(cursor, r.start, UNMAPPED, "no memslot"))
        host = host_mtrr if host_mtrr is not None else HOST_MTRR_OF_KIND[r.kind]
        with located("vcpu", "mtrr"):
            pts = sorted(set(breakpoints(vcpu.mtrr, r.start, r.end, vm.maxphyaddr))
                         | {a for a in pinned_edges if r.start < a < r.end})
        for s, e in zip(pts, pts[1:], strict=False):
            look = sdm_lookup(vcpu.mtrr, s, vm.maxphyaddr)
            exp = expectation(look, vcpu.pat[pat_index], cd=vcpu.cr0_cd, nw=vcpu.cr0_nw, paging=vcpu.cr0_pg).type

            def fits_order(order: int, addr: int, kind: str = r.kind, host: MemType = host) -> bool:
                return emt_at(kind, host, addr, order).emt is not None

            for ps, pe, order in _cuts(s, e, fits_order):
                emt = emt_at(r.kind, host, ps, order)
                assert emt.emt is not None  # order 0 never gives -1 here (no mmio_ro/special, host type given)
                eff, _ = effective(emt, cd, pat_index, vcpu.cr0_pg)
                rel = relation(eff, exp) if eff is not None and exp is not None else "incomparable"
                xl = xen_mtrr_type(guest, ps, order).type if guest is not None else None
                rule = next(st.id for st in emt.path if st.held)
                run = XenMapRun(ps, pe, r.kind, r.label, P2M_OF_KIND[r.kind].c_name, look.type, xl, emt.emt,
                                emt.ipat, rule, eff, exp, rel, ORDERS[order])
                prev = runs[-1] if runs else None
                if prev is not None and prev.end == ps and replace(prev, start=ps, end=pe) == run:
                    runs[-1] = replace(prev, end=pe)
                else:
                    runs.append(run)
        cursor = max(cursor, r.end)
    if cursor < top:
        runs.append(XenMapRun(cursor, top, UNMAPPED, "no memslot"))
    return runs


__all__ = ["HOST_MTRR_OF_KIND", "P2M_OF_KIND", "UNMAPPED", "XenMapRun", "xen_map"]
