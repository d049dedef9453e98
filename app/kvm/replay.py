"""Replay a multi-vCPU trace of CR0/MTRR/PAT/nc-DMA events against one kernel era's EPT.

Why this exists: the 2023 review (review-thread.md §3 q4, q7, q8) asked how many
`kvm_zap_gfn_range()` calls a firmware boot makes with N vCPUs, how many duplicate each
other, how many happen while CR0.CD=1, and whether stale SPTEs survive. `zap.audit` answers
that for one event on one vCPU; a boot is thousands of events on many vCPUs sharing one EPT,
so the answer depends on order and on which vCPU faults a page back in.

The model (everything pure; frozen dataclasses in and out, no I/O):

* EPT is per VM, guest state is per vCPU. Every vCPU has its own CR0, PAT and MTRRs, all
  starting from `Trace.initial`; non-coherent DMA is a VM property (`VmConfig`), so an nc-DMA
  event changes it for every vCPU.
* The EPT holds, for every mapped page (the ranges of `VmConfig.memory_map`, i.e. memslots),
  the (memtype, IPAT) that `vmx_get_mt_mask()` returned when the page was last faulted: KVM
  computes it only in `make_spte()` (`set_spte()` in 4.x), so a leaf keeps it until zapped
  (kernel-history.md §1). Pages are stored as runs, never one by one, so a 4 GiB guest costs
  a few dozen runs.
* At the start every mapped page is faulted by vCPU 0 with its initial state.
* For each event: the state after comes from `scenario.apply_event`; the era's zap policy
  (`update_mtrr()`, `kvm_post_set_cr0()`, `kvm_noncoherent_dma_assignment_start_or_stop()`
  as the era module models them) lists the `kvm_zap_gfn_range()` calls; a call whose end is
  not above its start is an *empty call* (KVM returns at once; 4.15+ for a PHYSMASK never
  written). Other calls zap the mapped pages they cover; with `per_memslot` (series-v3 patch
  11) each call is first split at memslot boundaries and every non-empty piece is one call.
* **Assumption: the vCPU that caused a zap touches the memory next.** Zapped pages are
  re-faulted at once by the event's vCPU with its post-event state. Real KVM re-faults lazily,
  when some vCPU touches the page, so for a page nobody touches before the next zap this
  over-counts refaults; but it is the only order-free choice and it is the one the reviewers
  reason with ("the CD=1 period faults WB|IPAT entries that survive CD=0").
* Excess pages: zapped pages whose entry already equals what the event's vCPU computes now
  (the zap bought nothing for them). Duplicate call: a call over a range that an earlier
  call zapped, when no entry in that range has changed since that earlier call (this call
  included: it refaults exactly what is there). In a sequential trace this is the analogue
  of patch 09 dropping an identical range that is still queued. A call over a range never
  zapped before is not a duplicate even if it changes nothing (that is only excess).
* At the end: stale pages are mapped pages whose entry differs from what vCPU 0's final
  state computes (and `per_vcpu_stale` the same against every vCPU's final state).

Speed: the (memtype, IPAT) layout a vCPU state produces depends only on the VM config, CR0.CD
and, for eras that read them, the MTRRs (see `resolve.fault_for`); it is cached per such
fingerprint (`ept_runs.layout`, shared with the zap audit), and compared run by
run. 256 vCPUs × ~30 events on a 4 GiB guest take a fraction of a second per era.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence

from ..x86.memtype import MemTypeError
from ..x86.mtrr import MSR_MTRR_DEF_TYPE, is_mtrr_msr
from ..x86.pat import MSR_IA32_PAT
from .era import Era, ZapInput
from .ept_runs import Range, Run, clip, decode_key, layout, merge_runs, pieces
from .boot import EDK2_DEFAULT, FIRMWARE_PASSES, RESET_STATE, SOURCES, Machine, boot_steps, boot_vm, qemu_host_writes
from .layouts import DEF_TYPE_OFF, DEF_TYPE_ON, MsrWrite
from .scenario import (
    CR0_CD, EVENT_KINDS, MTRR_WRITE, NONCOHERENT_DMA, PAT_WRITE, Event, VcpuState, VmConfig,
    apply_event,
)

MAX_VCPUS = 1024
MAX_EVENTS = 200_000
MAX_CALL_RECORDS = 10_000
MAX_STALE_RANGES = 1_000
MAX_NAME = 200

CR0_PG_BIT = 1 << 31
CR0_CD_BIT = 1 << 30
CR0_NW_BIT = 1 << 29
CR0_ET_BIT = 1 << 4


def modelled_cr0(st: VcpuState) -> int:
    """CR0 as far as the model knows it: CD, NW and PG from the state, ET (always 1 on
    processors with VMX); every other bit is not tracked and reads 0."""
    return CR0_PG_BIT * st.cr0_pg | CR0_CD_BIT * st.cr0_cd | CR0_NW_BIT * st.cr0_nw | CR0_ET_BIT



# -- the trace -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One event on one vCPU. For a VM-wide nc-DMA event `vcpu` is the vCPU that re-faults
    what the event zaps. `line` is the source line when the event came from `trace_import`
    (0 otherwise); it only improves error messages. `source` says who made the write:
    "trace" (a guest event from a capture or a list), or for generated boots "qemu" (host
    KVM_SET_MSRS), "firmware" or "linux" (`boot.SOURCES`)."""

    vcpu: int
    event: Event
    line: int = 0
    source: str = "trace"


def _check_int(value: object, field_name: str, lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MemTypeError(field_name, f"{value!r} is not an integer", what)
    if not lo <= value <= hi:
        raise MemTypeError(field_name, f"{value} is outside {lo}..{hi}", what)
    return value


@dataclass(frozen=True)
class Trace:
    """A VM, how many vCPUs it has, and the events in the order KVM saw them.

    Every vCPU starts from `initial` (its own copy of CR0, PAT and MTRRs). Construction checks
    the shape (bounded sizes, vCPU indices, event kinds and MSR numbers); whether each write is
    one the guest could make (reserved bits, NW=1 with CD=0) is checked by `replay`, which
    reports the event index and the source line.
    """

    vm: VmConfig
    vcpus: int
    events: tuple[TraceEvent, ...]
    initial: VcpuState = VcpuState()
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.vm, VmConfig):
            raise MemTypeError("vm", "not a VmConfig", "a trace runs on one VM")
        self.vm.validate()
        _check_int(self.vcpus, "vcpus", 1, MAX_VCPUS, f"a trace has 1..{MAX_VCPUS} vCPUs")
        if not isinstance(self.initial, VcpuState):
            raise MemTypeError("initial", "not a VcpuState", "every vCPU starts from one VcpuState")
        self.initial.validate(self.vm, "initial")
        if not isinstance(self.name, str) or len(self.name) > MAX_NAME:
            raise MemTypeError("name", f"the name must be a string of at most {MAX_NAME} characters", "names are labels")
        events = tuple(self.events)
        if len(events) > MAX_EVENTS:
            raise MemTypeError("events", f"{len(events)} events, more than {MAX_EVENTS}", f"a trace holds at most {MAX_EVENTS} events")
        for i, te in enumerate(events):
            f = f"events[{i}]"
            if not isinstance(te, TraceEvent):
                raise MemTypeError(f, f"{te!r} is not a TraceEvent", "events are TraceEvent(vcpu, event)")
            _check_int(te.vcpu, f"{f}.vcpu", 0, self.vcpus - 1, f"vCPU indices are 0..vcpus-1 (vcpus={self.vcpus})")
            if te.source not in SOURCES:
                raise MemTypeError(f"{f}.source", f"unknown source {te.source!r}", f"one of {', '.join(SOURCES)}")
            ev = te.event
            if not isinstance(ev, Event):
                raise MemTypeError(f"{f}.event", f"{ev!r} is not an Event", "events are scenario.Event")
            if ev.kind not in EVENT_KINDS:
                raise MemTypeError(f"{f}.event.kind", f"unknown event kind {ev.kind!r}", f"one of {', '.join(EVENT_KINDS)}")
            if ev.kind == MTRR_WRITE and (not isinstance(ev.msr, int) or not is_mtrr_msr(ev.msr)):
                raise MemTypeError(f"{f}.event.msr", f"{ev.msr!r} is not an MTRR MSR",
                                   "MTRR MSRs: 0x200-0x20f, 0x250, 0x258, 0x259, 0x268-0x26f, 0x2ff")
            if ev.kind in (MTRR_WRITE, PAT_WRITE):
                _check_int(ev.value, f"{f}.event.value", 0, (1 << 64) - 1, "MSRs are 64 bits wide")
        object.__setattr__(self, "events", events)


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZapCallRecord:
    """One `kvm_zap_gfn_range()` call (or one per-memslot piece of it)."""

    event: int          # index into Trace.events
    vcpu: int
    kind: str           # the event kind that made the call
    msr: int | None
    start: int
    end: int
    pages: int          # mapped pages zapped
    excess: int         # of those, pages whose entry did not change
    cd: bool            # the calling vCPU had CR0.CD=1 (state after the event)
    duplicate: bool
    empty: bool         # end <= start: KVM returns without zapping


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What one era did with one trace.

    `zap_calls` counts non-empty `kvm_zap_gfn_range()` calls (per-memslot pieces for
    series-v3), `empty_calls` those with end <= start. `zapped_pages` sums the mapped pages of
    every call (a page zapped twice counts twice: that is work done), `excess_pages` the part
    of them whose entry did not change. `calls_while_cd` counts calls made while the calling
    vCPU had CR0.CD=1 after its event (`kvm_post_set_cr0()` runs after the new CR0 is in
    place, so the zap of a 0->1 toggle counts). `duplicate_calls`: see the module docstring.
    `stale_pages` is against vCPU 0's final state, `per_vcpu_stale` against each vCPU's;
    `stale_ranges` lists vCPU 0's stale runs (at most 1000). `calls` holds the first 10000
    call records; `calls_truncated` says whether more were made.
    """

    era: str
    name: str
    vcpus: int
    events: int
    mapped_pages: int
    zap_calls: int
    empty_calls: int
    zapped_pages: int
    excess_pages: int
    stale_pages: int
    calls_while_cd: int
    duplicate_calls: int
    per_vcpu_stale: tuple[int, ...]
    vcpus_agree: bool
    stale_ranges: tuple[Range, ...]
    calls: tuple[ZapCallRecord, ...]
    calls_truncated: bool
    calls_by_source: dict[str, int] = field(default_factory=dict)


# -- EPT runs ---------------------------------------------------------------------------------


def _agree(x: Sequence[Run], y: Sequence[Run]) -> int:
    """Bytes where two run lists over the same address set hold the same key."""
    return sum(e - s for s, e, xk, yk in pieces(x, y) if xk == yk)


def _diff_ranges(x: Sequence[Run], y: Sequence[Run], limit: int) -> list[Range]:
    out: list[Range] = []
    for s, e, xk, yk in pieces(x, y):
        if xk == yk:
            continue
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], e)
        elif len(out) == limit:
            break
        else:
            out.append((s, e))
    return out


# -- replay ----------------------------------------------------------------------------------


def _event_error(i: int, te: TraceEvent, err: MemTypeError) -> MemTypeError:
    sub = err.field[len("event"):] if err.field.startswith("event") else "." + err.field
    where = f" (line {te.line})" if te.line else ""
    return MemTypeError(f"events[{i}]{sub}", f"{err.message}{where}", err.rule)


def replay(era: Era, trace: Trace) -> ReplayResult:
    """Replay `trace` in order against `era`'s memtype rules and zap policy (see module doc)."""
    vm = trace.vm
    era.check_vm(vm)
    reads = era.reads_guest_mtrrs
    mapped = sorted((r.start, r.end) for r in vm.memory_map)
    lo, hi = (mapped[0][0], mapped[-1][1]) if mapped else (0, 0)
    total = sum(e - s for s, e in mapped) >> 12

    vm_ids: dict[VmConfig, int] = {vm: 0}
    cache: dict[tuple, tuple[Run, ...]] = {}

    def lay(v: VmConfig, vid: int, st: VcpuState) -> tuple[Run, ...]:
        k = (vid, st.cr0_cd, st.mtrr if reads else None)
        r = cache.get(k)
        if r is None:
            r = cache[k] = layout(era, v, st)
        return r

    def pieces(a: int, b: int) -> list[Range]:
        return [(max(a, s), min(b, e)) for s, e in mapped if max(a, s) < min(b, e)]

    states = [trace.initial] * trace.vcpus
    cur_vm, vid = vm, 0
    ept: tuple[Run, ...] = lay(cur_vm, vid, states[0])

    zap_calls = empty_calls = zapped_pages = excess_pages = calls_cd = dups = 0
    by_source = dict.fromkeys(SOURCES, 0)
    records: list[ZapCallRecord] = []
    truncated = False
    last: dict[Range, tuple[Run, ...]] = {}

    for i, te in enumerate(trace.events):
        v, ev = te.vcpu, te.event
        before = states[v]
        try:
            vm_after, after = apply_event(cur_vm, before, ev)
            if vm_after is not cur_vm:
                era.check_vm(vm_after)
        except MemTypeError as err:
            raise _event_error(i, te, err) from None
        decision = era.zap(ZapInput(cur_vm, before, vm_after, after, ev))
        if vm_after is not cur_vm:
            vid = vm_ids.setdefault(vm_after, len(vm_ids))
            cur_vm = vm_after
        states[v] = after
        if not decision.calls:
            continue
        target: tuple[Run, ...] | None = None
        for a, b in decision.calls:
            if b <= a:
                empty_calls += 1
                if len(records) < MAX_CALL_RECORDS:
                    records.append(ZapCallRecord(i, v, ev.kind, ev.msr, a, b, 0, 0, after.cr0_cd, False, True))
                else:
                    truncated = True
                continue
            for pa, pb in (pieces(a, b) if decision.per_memslot else [(a, b)]):
                if target is None:
                    target = lay(cur_vm, vid, after)
                if pa <= lo and pb >= hi:
                    # kvm_zap_gfn_range(0, ~0): every leaf goes, the vCPU refaults all of them.
                    zp = total
                    same = total if ept is target else _agree(ept, target) >> 12
                    ept = target
                else:
                    mid_new = clip(target, pa, pb)
                    zp = sum(e - s for s, e, _ in mid_new) >> 12
                    same = _agree(clip(ept, pa, pb), mid_new) >> 12 if zp else 0
                    if same != zp:
                        new = merge_runs(clip(ept, -1, pa) + mid_new + clip(ept, pb, 1 << 64))
                        ept = target if new == target else new
                # Duplicate: this range was zapped before and nothing in it has changed since
                # (its entries are what that call left, and this call changes none of them).
                content = ept if (pa <= lo and pb >= hi) else tuple(clip(ept, pa, pb))
                dup = same == zp and last.get((pa, pb)) == content
                if len(last) >= MAX_CALL_RECORDS:
                    last.clear()
                last[(pa, pb)] = content
                zap_calls += 1
                by_source[te.source] += 1
                zapped_pages += zp
                excess_pages += same
                calls_cd += after.cr0_cd
                dups += dup
                if len(records) < MAX_CALL_RECORDS:
                    records.append(ZapCallRecord(i, v, ev.kind, ev.msr, pa, pb, zp, same, after.cr0_cd, dup, False))
                else:
                    truncated = True

    per_vcpu: list[int] = []
    seen: dict[int, int] = {}
    for st in states:
        t = lay(cur_vm, vid, st)
        if id(t) not in seen:
            seen[id(t)] = total - (_agree(ept, t) >> 12)
        per_vcpu.append(seen[id(t)])
    first = states[0]
    agree = all((s.mtrr, s.cr0_cd, s.cr0_nw) == (first.mtrr, first.cr0_cd, first.cr0_nw) for s in states)
    stale_ranges = _diff_ranges(ept, lay(cur_vm, vid, first), MAX_STALE_RANGES)

    return ReplayResult(
        era=era.id, name=trace.name, vcpus=trace.vcpus, events=len(trace.events), mapped_pages=total,
        zap_calls=zap_calls, empty_calls=empty_calls, zapped_pages=zapped_pages, excess_pages=excess_pages,
        stale_pages=per_vcpu[0], calls_while_cd=calls_cd, duplicate_calls=dups, per_vcpu_stale=tuple(per_vcpu),
        vcpus_agree=agree, stale_ranges=tuple(stale_ranges), calls=tuple(records), calls_truncated=truncated,
        calls_by_source=by_source,
    )


def final_states(trace: Trace) -> tuple[VmConfig, tuple[VcpuState, ...]]:
    """The VM config and every vCPU's state after the whole trace (no EPT, no era)."""
    vm, states = trace.vm, [trace.initial] * trace.vcpus
    for i, te in enumerate(trace.events):
        try:
            vm, states[te.vcpu] = apply_event(vm, states[te.vcpu], te.event)
        except MemTypeError as err:
            raise _event_error(i, te, err) from None
    return vm, tuple(states)


def replay_all(trace: Trace, eras: Iterable[Era] | None = None) -> dict[str, ReplayResult]:
    """`replay` against several eras (default: the whole registry, oldest first)."""
    if eras is None:
        from .eras import ERAS
        eras = ERAS.values()
    return {e.id: replay(e, trace) for e in eras}


# -- event builders and boot generators ---------------------------------------------------------


def events_from_writes(vcpu: int, writes: Iterable[MsrWrite], line: int = 0) -> list[TraceEvent]:
    """WRMSRs as events: IA32_PAT (0x277) becomes `pat_write`, MTRR MSRs `mtrr_write`."""
    out = []
    for msr, value in writes:
        if msr == MSR_IA32_PAT:
            out.append(TraceEvent(vcpu, Event(PAT_WRITE, value), line))
        elif is_mtrr_msr(msr):
            out.append(TraceEvent(vcpu, Event(MTRR_WRITE, value, msr), line))
        else:
            raise MemTypeError("msr", f"{msr:#x} is neither an MTRR MSR nor IA32_PAT", "only these MSRs change memory typing")
    return out


def cr0_cd_event(vcpu: int, cd: bool) -> TraceEvent:
    """MOV to CR0 setting CD and clearing NW, as `AsmDisableCache()`/`AsmEnableCache()` (edk2)
    and Linux's `cache_disable()`/`cache_enable()` do."""
    return TraceEvent(vcpu, Event(CR0_CD, cd, cr0_nw=False))


def mtrr_update_events(vcpu: int, writes: Iterable[MsrWrite], *, cache_disable: bool = True,
                       disable: int = DEF_TYPE_OFF, enable: int = DEF_TYPE_ON) -> list[TraceEvent]:
    """One disable/program/enable pass on one CPU (SDM "MTRR considerations in MP systems").

    CR0.CD=1 (if `cache_disable`), MTRRdefType := `disable` (E=0), the MSR writes,
    MTRRdefType := `enable`, CR0.CD=0. This is edk2 MtrrLib's MtrrLibPreMtrrChange() /
    MtrrLibPostMtrrChange() bracket and Linux's cache_disable()/mtrr_disable() ...
    mtrr_enable()/cache_enable() (arch/x86/kernel/cpu/cacheinfo.c, mtrr/generic.c).
    MtrrLib's disable keeps FE and the type (it clears only E); Linux clears E and FE and keeps
    the type, which is `DEF_TYPE_OFF`. Every era gates fixed/variable zaps on E, not FE, so
    the choice changes no count.
    """
    out = [cr0_cd_event(vcpu, True)] if cache_disable else []
    out.append(TraceEvent(vcpu, Event(MTRR_WRITE, disable, MSR_MTRR_DEF_TYPE)))
    out += events_from_writes(vcpu, writes)
    out.append(TraceEvent(vcpu, Event(MTRR_WRITE, enable, MSR_MTRR_DEF_TYPE)))
    if cache_disable:
        out.append(cr0_cd_event(vcpu, False))
    return out


def _steps_to_events(steps) -> tuple[TraceEvent, ...]:
    return tuple(TraceEvent(st.vcpu, st.event, 0, st.source) for st in steps)


def boot_event_count(firmware: str, vcpus: int, m: Machine, *, linux: bool = True, qemu: bool = True) -> int:
    """How many events `boot_trace` would make, known before making them: every writer's
    event count is affine in the vCPU count (a fixed BSP part plus the same per vCPU), so
    two small boots give it exactly. The service refuses a boot above its event limit
    with this number, before any work."""
    c1, c2 = (len(boot_steps(firmware, n, m, linux=linux, qemu=qemu)) for n in (1, 2))
    return c1 + (vcpus - 1) * (c2 - c1)


def boot_trace(firmware: str, vcpus: int, vm: VmConfig = VmConfig(noncoherent_dma=True), linux: bool = True, *,
               machine: str = "q35", memory: int | None = None, maxphyaddr: int | None = None,
               aperture: str = "dynamic", edk2: str = EDK2_DEFAULT, qemu_host_writes: bool = True,
               initial: VcpuState = RESET_STATE, max_events: int = MAX_EVENTS) -> Trace:
    """A boot of `firmware` ("ovmf" or "seabios") then (with `linux`) a Linux guest, as QEMU,
    the firmware and Linux write the registers: see app/kvm/boot.py for each writer's code.

    `memory` (bytes) also sets the memslots to the machine's RAM layout; without it the VM
    keeps its own memory map and the firmware's layout assumes 4 GiB. `maxphyaddr` defaults
    to the VM's. Every vCPU starts from `initial` (RESET by default)."""
    _check_int(vcpus, "vcpus", 1, MAX_VCPUS, f"a trace has 1..{MAX_VCPUS} vCPUs")
    if firmware not in FIRMWARE_PASSES:
        raise MemTypeError("generator", f"unknown generator {firmware!r}", f"one of {', '.join(FIRMWARE_PASSES)}")
    m = Machine(machine, memory if memory is not None else 4 << 30,
                maxphyaddr if maxphyaddr is not None else vm.maxphyaddr, aperture, edk2).validate()
    n = boot_event_count(firmware, vcpus, m, linux=linux, qemu=qemu_host_writes)
    if n > max_events:
        raise MemTypeError("vcpus", f"this boot makes {n} events on {vcpus} vCPUs",
                           f"at most {max_events} events (MEMTYPE_MAX_TRACE_EVENTS): use fewer vCPUs")
    steps = boot_steps(firmware, vcpus, m, linux=linux, qemu=qemu_host_writes)
    parts = [firmware, str(vcpus)] + (["linux"] if linux else [])
    return Trace(boot_vm(vm, m, memory is None), vcpus, _steps_to_events(steps), initial, "-".join(parts))


def ovmf_boot(vcpus: int, vm: VmConfig = VmConfig(noncoherent_dma=True), linux: bool = True, **kw) -> Trace:
    """An OVMF boot then a Linux guest: QEMU's host writes, edk2's MtrrLib passes, Linux's re-sync."""
    return boot_trace("ovmf", vcpus, vm, linux, **kw)


def seabios_boot(vcpus: int, vm: VmConfig = VmConfig(noncoherent_dma=True), linux: bool = True, **kw) -> Trace:
    """A SeaBIOS boot then a Linux guest: QEMU's host writes, mtrr_setup() replayed per CPU, Linux's re-sync."""
    return boot_trace("seabios", vcpus, vm, linux, **kw)


def with_qemu_host_writes(trace: Trace, max_events: int = MAX_EVENTS) -> Trace:
    """`trace` preceded by QEMU's host writes (boot.qemu_host_writes) for each of its vCPUs:
    what KVM saw before the guest's first instruction but no kvm_msr trace shows."""
    pre = _steps_to_events(qemu_host_writes(trace.vcpus))
    if len(pre) + len(trace.events) > max_events:
        raise MemTypeError("qemu_host_writes", f"{len(pre)} host writes + {len(trace.events)} events",
                           f"at most {max_events} events (MEMTYPE_MAX_TRACE_EVENTS)")
    return replace(trace, events=pre + trace.events)


GENERATORS: dict[str, Callable[..., Trace]] = {
    "ovmf": ovmf_boot,
    "seabios": seabios_boot,
}


__all__ = [
    "GENERATORS", "MAX_EVENTS", "MAX_VCPUS", "ReplayResult", "Trace", "TraceEvent", "ZapCallRecord",
    "boot_event_count", "boot_trace", "cr0_cd_event", "decode_key", "events_from_writes", "final_states", "layout",
    "modelled_cr0", "mtrr_update_events", "ovmf_boot", "with_qemu_host_writes",
    "replay", "replay_all", "seabios_boot",
]
