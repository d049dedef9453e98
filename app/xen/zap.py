"""One event over a whole Xen domain: what Xen does to its EPT, and which entries it leaves
stale (the Xen counterpart of app/kvm/zap.py's audit, for POST /api/v1/zap).

Xen does not zap for memory-type changes. memory_type_changed() marks the root table's
entries with EMT 7 (ept_memory_type_changed -> ept_invalidate_emt_subtree,
xen/arch/x86/mm/p2m-ept.c), and resolve_misconfig() recomputes each entry with
epte_get_entry_emt() on the next access (the EPT misconfiguration exit,
ept_handle_misconfig): "invalidated, recomputed on next access", for every mapped gfn at
once. Whether that happens is app.xen.events.event_effect (the MSR handlers' conditions and
memory_type_changed()'s gate).

The audit compares the map before and after the event (app.xen.map.xen_map, so the same
p2m reading: ram ranges p2m_ram_rw, mmio ranges p2m_mmio_direct). A mapped range whose
EMT or IPAT changes is *needed*; with no invalidation it is *stale* (the old EMT survives
until something else rewrites the entry); an invalidated range whose EMT does not change
is *excess* (one misconfiguration exit per leaf table or superpage, for nothing). CR0.CD
and PAT writes never touch the EPT: what they change is GUEST_PAT and the hardware CR0.CD
(vmx_handle_cd in xen/arch/x86/hvm/vmx/vmx.c: all-UC PAT and no-fill for an IOMMU domain
with I/O or PCI devices), shown as the CR0.CD view before and after.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..kvm.ranges import Range, merge, subtract
from ..kvm.scenario import Event, VcpuState, VmConfig
from ..kvm.step import Step
from ..x86.memtype import MemType
from .cd import CdView, cd_view
from .events import EventEffect, Passthrough, event_effect
from .facts import Domain
from .map import UNMAPPED, FrameRange, XenMapRun, xen_map
from .versions import XenVersion


@dataclass(frozen=True, slots=True)
class XenChange:
    """A mapped range whose entry changes: its kind and the (EMT, IPAT) before and after."""

    start: int
    end: int
    kind: str
    before: tuple[MemType | None, bool]
    after: tuple[MemType | None, bool]


@dataclass(frozen=True, slots=True)
class XenZap:
    version: XenVersion
    event: Event | Passthrough
    effect: EventEffect
    cd_before: CdView
    cd_after: CdView
    mapped: tuple[Range, ...]
    """Every mapped range (what an invalidation marks)."""
    changes: tuple[XenChange, ...]
    notes: tuple[str, ...]

    @property
    def invalidated(self) -> tuple[Range, ...]:
        return self.mapped if self.effect.invalidated else ()

    @property
    def needed(self) -> tuple[Range, ...]:
        return tuple(merge((c.start, c.end) for c in self.changes))

    @property
    def stale(self) -> tuple[Range, ...]:
        return () if self.effect.invalidated else self.needed

    @property
    def excess(self) -> tuple[Range, ...]:
        return tuple(subtract(self.invalidated, self.needed))

    @property
    def path(self) -> tuple[Step, ...]:
        return self.effect.path


def _changes(before: list[XenMapRun], after: list[XenMapRun]) -> list[XenChange]:
    """Walk both run lists together (they cover the same space; the mapped ranges are the
    same, only the split points may differ) and keep the pieces whose entry changes."""
    out: list[XenChange] = []
    i = j = 0
    while i < len(before) and j < len(after):
        a, b = before[i], after[j]
        s, e = max(a.start, b.start), min(a.end, b.end)
        if s < e and a.kind != UNMAPPED and (a.emt, a.ipat) != (b.emt, b.ipat):
            prev = out[-1] if out else None
            if prev is not None and prev.end == s and (prev.before, prev.after, prev.kind) == (
                    (a.emt, a.ipat), (b.emt, b.ipat), a.kind):
                out[-1] = XenChange(prev.start, e, a.kind, prev.before, prev.after)
            else:
                out.append(XenChange(s, e, a.kind, (a.emt, a.ipat), (b.emt, b.ipat)))
        if a.end <= b.end:
            i += 1
        else:
            j += 1
    return out


FRAMES_NOTE = ("frames: their p2m types, mmio_ro and special hold before and after (no event here changes "
               "them); epte_get_entry_emt() answers mmio_ro, special, grant and foreign frames before the "
               "pinned and MTRR tests, so an MTRR or pinned change leaves their EMT alone (excess if invalidated)")


def xen_zap(v: XenVersion, d: Domain, vm: VmConfig, vcpu: VcpuState, ev: Event | Passthrough,
            host_mtrr: MemType | None = None, frames: tuple[FrameRange, ...] = ()) -> XenZap:
    """The event's effect on the domain's EPT, audited over every mapped range of `vm`, the
    per-frame facts `frames` (app.xen.map.check_frames, as the map takes them) on both
    sides: the events change domain facts and vCPU registers, never a p2m type."""
    fx = event_effect(v, d, vcpu, ev, vm.maxphyaddr)
    before = xen_map(v, d, vm, vcpu, 0, host_mtrr, frames)
    after = xen_map(v, fx.domain_after, vm, fx.vcpu_after, 0, host_mtrr, frames)
    mapped = tuple(merge((r.start, r.end) for r in vm.memory_map))
    notes = [FRAMES_NOTE] if frames else []
    if ev.kind in ("cr0_cd", "pat_write"):
        notes.append("no EPT entry changes: CR0.CD and PAT reach the CPU through GUEST_CR0 and GUEST_PAT "
                     "(see cr0_cd before and after)")
    cd_b = cd_view(d, vcpu.cr0_cd, vcpu.pat, vcpu.cr0_nw)
    after_v = fx.vcpu_after
    # While vmx_handle_cd's no-fill mode is on a PAT write only lands in pat_cr (hvm_set_guest_pat):
    # GUEST_PAT keeps the all-UC PAT, which cd_view gives for CD=1 in such a domain anyway.
    cd_a = cd_view(fx.domain_after, after_v.cr0_cd, after_v.pat, after_v.cr0_nw)
    return XenZap(v, ev, fx, cd_b, cd_a, mapped, tuple(_changes(before, after)), tuple(notes))


__all__ = ["FRAMES_NOTE", "XenChange", "XenZap", "xen_zap"]
