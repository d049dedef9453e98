"""Zap audit: what an era's code zaps for one event, against what *needed* a zap.

A range needs a zap when some page in a mapped range (memslot) would get a different
(memtype, IPAT) after the event than the leaf built before it holds. Stale = needed but
not zapped: the old memtype survives, a correctness bug. Excess = zapped (inside memslots)
but not needed: wasted work and refaults. Ranges are half-open, sorted and merged.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..x86.memtype import located
from .ept_runs import clip, decode_key, layout, pieces
from .era import Era, Step, ZapInput
from .ranges import Range, intersect, merge, pages, subtract
from .resolve import check
from .scenario import Event, VcpuState, VmConfig, apply_event


@dataclass(frozen=True, slots=True)
class Change:
    """A run of mapped pages whose EPT entry changes: (memtype, IPAT) before -> after."""

    start: int
    end: int
    kind: str
    before: tuple
    after: tuple


@dataclass(frozen=True, slots=True)
class ZapAudit:
    era: Era
    event: Event
    vm_after: VmConfig
    vcpu_after: VcpuState
    calls: tuple[Range, ...]
    zapped: tuple[Range, ...]
    needed: tuple[Range, ...]
    stale: tuple[Range, ...]
    excess: tuple[Range, ...]
    changes: tuple[Change, ...]
    path: tuple[Step, ...]

    @property
    def counts(self) -> dict[str, int]:
        return {
            "zap_calls": len(self.calls),
            "zapped_pages": pages(self.zapped_mapped),
            "needed_pages": pages(self.needed),
            "stale_pages": pages(self.stale),
            "excess_pages": pages(self.excess),
        }

    @property
    def zapped_mapped(self) -> list[Range]:
        return intersect(self.zapped, [(r.start, r.end) for r in self.vm_after.memory_map])


def entry_changes(era: Era, vm_a: VmConfig, vcpu_a: VcpuState, vm_b: VmConfig, vcpu_b: VcpuState) -> list[Change]:
    """Mapped runs whose leaf (memtype, IPAT) differs between two states of the same VM."""
    before, after = layout(era, vm_a, vcpu_a), layout(era, vm_b, vcpu_b)
    out: list[Change] = []
    for r in sorted(vm_a.memory_map, key=lambda m: m.start):
        for s, e, ka, kb in pieces(clip(before, r.start, r.end), clip(after, r.start, r.end)):
            if ka == kb:
                continue
            ba, bb = decode_key(ka), decode_key(kb)
            if out and out[-1].end == s and (out[-1].before, out[-1].after) == (ba, bb):
                out[-1] = Change(out[-1].start, e, r.kind, ba, bb)
            else:
                out.append(Change(s, e, r.kind, ba, bb))
    return out


def audit(era: Era, vm: VmConfig, vcpu: VcpuState, event: Event) -> ZapAudit:
    check(era, vm, vcpu)
    with located("event"):
        vm_after, vcpu_after = apply_event(vm, vcpu, event)
    era.check_vm(vm_after)
    with located("event"):
        decision = era.zap(ZapInput(vm, vcpu, vm_after, vcpu_after, event))
    mapped = [(r.start, r.end) for r in vm.memory_map]
    zapped = merge(decision.calls)
    if decision.per_memslot:
        zapped = intersect(zapped, mapped)
    changes = entry_changes(era, vm, vcpu, vm_after, vcpu_after)
    needed = merge((c.start, c.end) for c in changes)
    stale = subtract(needed, zapped)
    excess = subtract(intersect(zapped, mapped), needed)
    return ZapAudit(era, event, vm_after, vcpu_after, decision.calls, tuple(zapped), tuple(needed),
                    tuple(stale), tuple(excess), tuple(changes), decision.path)
