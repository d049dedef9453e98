"""Replay a multi-vCPU trace of CR0/MTRR/PAT/nc-DMA events against one kernel era's EPT.

Why this exists: the 2023 review (docs/notes/review-thread.md §3 q4, q7, q8) asked how many
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
  (docs/notes/kernel-history.md §1). Pages are stored as runs, never one by one, so a 4 GiB guest costs
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

Speed (issue 9 §4): an event costs what it touches, not the whole layout.

* `replay_all` walks the trace once for every era (`_Walk`): vCPU states are interned (equal
  states share an id; an MTRR state is keyed by its MTRRdefType, its fixed MSRs' id and its
  pairs' ids, pairs interned one by one by index and fields, and what a write left as it
  was keeps its id by object, so a write hashes the one pair it changed), and a transition
  (VM config, state, event) -> (VM config, state) is worked out by `scenario.apply_event`
  once and then looked up, as is each era's `era.zap()` decision for it. A boot that
  drives every vCPU through the same writes pays for the first vCPU only.
* A new transition's objects (the pair, MTRR state and vCPU state `apply_event` makes, the
  `ZapInput` the eras decide on) and the call records are made through their slots
  (`app/frozen.maker`): the same classes, at half what a frozen dataclass's `__init__` costs.
* A zap over [a, b) that is not everything needs the faulting vCPU's layout inside [a, b)
  only: it is clipped from the whole layout when that is cached, else computed for the
  window alone (`ept_runs.Cells`/`Layouts`: the memslots and MTRR cut points inside it), and
  the EPT is compared and spliced in place inside the window (`ept_runs.window`/`splice`).
  An interned pair keeps its `Cells.pair_range` (its range, type and place in KVM's list),
  so a window's cells read the state's pairs from the walk, not from a memo keyed by every
  pair's fields again (`_Walk.cells`).
* Whole layouts (zap-alls, the end of the trace) are cached per (VM config, fingerprint),
  the fingerprint being (CR0.CD, MTRRs) for eras that read guest MTRRs and CR0.CD for the
  others (see `resolve.fault_for`).
* A new transition's zap decision is `era.zap_calls(...)`: the era's one set of zap
  rules run with a `CallTrail`, which keeps the calls and builds no audit steps and no
  decision object (a flat decision with one call is built without unpacking); an
  event kind the era never zaps on (`ZapPolicy.quiet_kinds`) needs no decision at all,
  and the range an MTRR write names is worked out once for all eras (`ZapInput`).
* A new transition's decisions are worked out once per calls rule, not once per era
  (`_rule_of`: what `era.decide` reads without an audit; `_calls_rule`: less what cannot
  change the calls for the vCPU's CR0.CD before the event); v4.2, v6.7 and series-v3 share
  their `update_mtrr()` calls when CR0.CD=0 (series-v3 defers only with CR0.CD=1, and its
  per-memslot split is the replay's), so such an MTRR write is decided once for six eras.
* A window's runs are shared by the eras whose run-key tables agree (`Layouts.table`: the
  key of every (is_mmio, guest MTRR type) for the state's CR0.CD), so v4.2, v6.7 and
  series-v3 with CR0.CD=0 compute a zap window's runs once (`_Walk.region`).
* Eras that start with equal EPTs share one until a transition parts them (a different
  decision, or a different run-key table for the refaulting state: `_parting`, which asks
  only the eras still following, and whether two eras' tables agree once per VM config and
  CR0.CD); only the first of them zaps, and one that parts takes over a copy of the EPT and
  counters.
* Decisions that differ in `per_memslot` alone part no eras: zapping [a, b) whole and
  zapping its per-memslot pieces leave the same EPT (it holds mapped pages only), so a
  flat decision holds the calls alone (`_flat`: the split is the era's own per event kind)
  and series-v3 shares v4.2's decisions and follows its EPT while CR0.CD=0, counting its
  own calls from the start (`counts_own`: an era whose `per_memslot` differs from the one
  it follows, in either order): v4.2's zap works every call out once in the views the two
  need (the whole call and its pieces: with one memslot in the window they are one set of
  figures, with several the call's are the pieces' sums) and each era counts its calls,
  duplicates (its own `last`) and records from them. At a real parting (CR0.CD=1:
  series-v3 defers MTRR zaps and has another run-key table) it takes over a copy of the
  EPT alone.
* Only the eras that may zap on an event's kind are visited for a new transition's
  decisions (`_plans`; all of them, in era order, when the VM config changes, so that the
  first refusal is still the one reported).
* The replay changes no process state (the cyclic collector runs as usual: a server's
  worker threads share it), so what it keeps is shaped for the collector: a replay keeps
  something for every new transition and state, and the collector's full passes rescan
  whatever is still tracked when it reaches the oldest generation. Keys are tuples of
  plain values (`_transition_key`, `_Walk._pair_id` and its pair ranges, a state's
  fingerprint tuple, which is its key as well), decisions are flat tuples (`_flat`) kept
  apart from the partings, and what a call refaulted is kept as a tuple: the collector
  stops tracking all of these in its first passes (it untracks a tuple of untracked items,
  one nesting level per pass), so of an adversarial event only its new state (a VcpuState,
  an MtrrState, the pairs and the new pair: 3.8 tracked objects per event, measured) stays
  tracked. Call records are built once for the eras that share them. That, and the trace's
  own two objects per event, is what the collector's passes still cost (bench/run.py
  prints its share): about a tenth of an adversarial event.
* Every table is bounded: TABLE_LIMIT states (then the walk starts its tables again from
  the vCPUs' current states), LAYOUT_CACHE / REGION_CACHE / WINDOW_CACHE entries (least
  recently used out), `ept_runs.MEMO_LIMIT` walk and key memos. None of this changes an
  answer: tests/test_kvm_replay_engine.py compares every field of every result with the
  previous, straightforward engine on random traces, also with every bound squeezed to 1.

`replay(era, trace)` is `replay_all` over one era; replaying several eras of one trace with
`replay_all` shares the walk (the vCPU states, the MTRR cells and runs of each zap window,
and EPTs while eras agree). bench/replay_hashes.py hashes full answers (API and core) over a
broad set of traces, so a speed change can be checked to change none.
"""

from __future__ import annotations

import itertools
import operator
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace

from ..frozen import maker
from ..x86.memtype import LocLike, MemTypeError
from ..x86.mtrr import MSR_MTRR_DEF_TYPE, MtrrState, VarMtrr, is_mtrr_msr
from ..x86.pat import MSR_IA32_PAT, Pat
from .boot import (
    EDK2_DEFAULT,
    FIRMWARE_PASSES,
    RESET_STATE,
    SOURCES,
    Machine,
    boot_steps,
    boot_vm,
    qemu_host_writes,
)
from .ept_runs import (
    Cells,
    Layouts,
    PairRange,
    Range,
    Run,
    agree,
    clip_sorted,
    decode_key,
    layout,
    pieces,
    splice,
    window,
)
from .era import Era, EventZap, ZapInput
from .layouts import DEF_TYPE_OFF, DEF_TYPE_ON, MsrWrite
from .scenario import (
    EVENT_KINDS,
    EVENT_TYPES,
    Cr0Write,
    Event,
    MtrrWrite,
    NoncoherentDma,
    PatWrite,
    VcpuState,
    VmConfig,
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


def _check_int(value: object, field_name: LocLike, lo: int, hi: int, what: str) -> int:
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
            raise MemTypeError("name", f"the name must be a string of at most {MAX_NAME} characters",
                               "names are labels")
        events = tuple(self.events)
        if len(events) > MAX_EVENTS:
            raise MemTypeError("events", f"{len(events)} events, more than {MAX_EVENTS}",
                               f"a trace holds at most {MAX_EVENTS} events")
        for i, te in enumerate(events):
            f = ("events", i)
            if not isinstance(te, TraceEvent):
                raise MemTypeError(f, f"{te!r} is not a TraceEvent", "events are TraceEvent(vcpu, event)")
            _check_int(te.vcpu, (*f, "vcpu"), 0, self.vcpus - 1, f"vCPU indices are 0..vcpus-1 (vcpus={self.vcpus})")
            if te.source not in SOURCES:
                raise MemTypeError((*f, "source"), f"unknown source {te.source!r}", f"one of {', '.join(SOURCES)}")
            match te.event:
                case MtrrWrite(msr=msr, value=value):
                    if not isinstance(msr, int) or not is_mtrr_msr(msr):
                        raise MemTypeError((*f, "event", "msr"), f"{msr!r} is not an MTRR MSR",
                                           "MTRR MSRs: 0x200-0x20f, 0x250, 0x258, 0x259, 0x268-0x26f, 0x2ff")
                    _check_int(value, (*f, "event", "value"), 0, (1 << 64) - 1, "MSRs are 64 bits wide")
                case PatWrite(value=value):
                    _check_int(value, (*f, "event", "value"), 0, (1 << 64) - 1, "MSRs are 64 bits wide")
                case Cr0Write() | NoncoherentDma():
                    pass
                case other:
                    kind = getattr(other, "kind", None)
                    if isinstance(kind, str):
                        raise MemTypeError((*f, "event", "kind"), f"unknown event kind {kind!r}",
                                           f"one of {', '.join(EVENT_KINDS)}")
                    raise MemTypeError((*f, "event"), f"{other!r} is not an Event",
                                       "events are scenario.Event: Cr0Write, MtrrWrite, NoncoherentDma or PatWrite")
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


_record = maker(ZapCallRecord)
"""ZapCallRecord(...) at half its cost (app/frozen.py): a replay builds up to 10,000 per era."""
_zap_input = maker(ZapInput)
"""ZapInput(...) (its two caches None, as its `__init__` leaves them) at a fraction of its
cost (app/frozen.py): one per new transition that some era may zap on."""


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
    return agree(x, y)


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

TABLE_LIMIT = 1 << 14
"""Distinct vCPU states (and so transitions) the replay remembers before it starts again."""
LAYOUT_CACHE = 64
"""Whole layouts (one per VM config and fingerprint) an era keeps, least recently used out."""
REGION_CACHE = 1024
"""Layout windows (run-key table, MTRR state, zap range) the eras of one replay share,
least recently used out."""
WINDOW_CACHE = 64
"""MTRR cell windows (MTRR state, range) the eras of one replay share, least recently used out."""


def _event_error(i: int, te: TraceEvent, err: MemTypeError) -> MemTypeError:
    """An error of event `i` (located relative to the event) as the trace's: under
    ("events", i), with the trace line it came from."""
    where = f" (line {te.line})" if te.line else ""
    return MemTypeError(("events", i, *err.loc), f"{err.message}{where}", err.rule)


def _lru_get(cache: OrderedDict, k: object, make: Callable[[], object], limit: int) -> object:
    """cache[k], made by `make()` when absent; at most `limit` entries, least recently used out."""
    r = cache.get(k)
    if r is None:
        r = cache[k] = make()
        if len(cache) > limit:
            cache.popitem(last=False)
    else:
        cache.move_to_end(k)
    return r


def _rule_of(p: EventZap) -> EventZap:
    """What decides the calls of an era's reaction to one event kind: `era.zap(z,
    audit=False)` (`era.decide` with a `CallTrail`) reads `zaps`, `gate`, `separate_gate`,
    `per_memslot` and whether `defer_while_cd` is set; the other fields name and cite the
    checks, which only the audit trail shows. Eras with equal rules make the same calls for
    the same input (v4.2's and v6.7's `update_mtrr()` rule differ only in citations), so a
    replay works each transition's calls out once per rule, not once per era."""
    return replace(p, id="", function="", condition="", commit="", trigger_commit="", detail_commit="",
                   defer_while_cd="deferred" if p.defer_while_cd else "")


def _calls_rule(p: EventZap, cd_before: bool) -> EventZap:
    """`_rule_of` less what cannot change the calls for a vCPU with CR0.CD=`cd_before`
    before its event: `decide` reads `per_memslot` only to add an audit step and to set
    the decision's flag (not its calls), and `defer_while_cd` only in its first check,
    which holds only when the vCPU had CR0.CD=1 (`_mtrr_write`). So series-v3's
    `update_mtrr()` rule makes v4.2's calls when CR0.CD=0, and one `era.zap` serves the
    three eras that honour guest MTRRs; each era's own `per_memslot` goes in its decision."""
    r = _rule_of(p)
    return replace(r, per_memslot=False, defer_while_cd=r.defer_while_cd if cd_before else "")


_EVENT_CLASSES = frozenset(EVENT_TYPES.values())
assert all({f.name for f in fields(c)} <= {"msr", "value", "cr0_nw"} for c in _EVENT_CLASSES), \
    "_transition_key reads every field of every event class"
assert [f.name for f in fields(VarMtrr)] == ["base", "mask", "mask_written"], "_Walk._pair_id reads every field"


def _transition_key(vid: int, sid: int, ev: Event) -> tuple:
    """The walk's key of a transition: (VM config, state, the event's kind and fields).

    Equal to keying on the event itself: the event classes are frozen dataclasses whose
    equality compares the class and the fields, every class has its own `kind`, and
    `msr`, `value` and `cr0_nw` are all their fields (a class lacking one has it as a
    ClassVar None; checked above at import). This key hashes in C (the dataclass
    `__hash__` is Python code), and a key of plain values is untracked by the cyclic
    collector after its first pass, where one holding the event object stayed tracked.
    An object of any other class keys as itself."""
    if type(ev) in _EVENT_CLASSES:
        return (vid, sid, ev.kind, ev.msr, ev.value, ev.cr0_nw)
    return (vid, sid, ev)


class _Walk:
    """The era-independent part of a replay: every vCPU's state after every event.

    States are interned (equal states get one id), and a transition (VM config, state id,
    event) -> (VM config, state id) is computed once by `scenario.apply_event` and then
    looked up, so a boot that drives every vCPU through the same writes pays for the first
    vCPU only. A transition gets a small integer id that the replay uses to memoise every
    era's zap decision. Tables hold at most TABLE_LIMIT states; past that they start again
    from the vCPUs' current states (`generation` counts the starts; ids change, answers do
    not)."""

    def __init__(self, trace: Trace) -> None:
        self.vms: list[VmConfig] = [trace.vm]
        self.vm_ids: dict[VmConfig, int] = {trace.vm: 0}
        self.cell_maker = Cells(trace.vm)
        self.tables: dict[tuple, int] = {}  # run-key tables (ept_runs.Layouts.table) -> id
        self.generation = -1
        self.reset([trace.initial] * trace.vcpus)

    def reset(self, current: list[VcpuState]) -> None:
        self.generation += 1
        self.states: list[VcpuState] = []
        self.sid_of: dict[tuple, int] = {}  # `fps` entries -> state id
        # MTRR states by value, hashed cheaply: by (MTRRdefType, the fixed MSRs' id, every
        # pair's id), pairs interned by index and fields. A write keeps the other objects
        # (the fixed tuple, the other seven pairs), so their ids are taken over from the
        # state before without hashing them again
        self.mtrr_ids: dict[tuple[int, ...], int] = {}
        self.mtrr_keys: list[tuple[int, ...]] = []  # per MTRR id: its key
        self.fixed_ids: dict[tuple[int, ...], int] = {}
        self.pair_ids: dict[tuple[int, int, int, bool], int] = {}
        self.pair_ranges: list[PairRange] = []  # per pair id: its `Cells.pair_range`
        self.pat_ids: dict[Pat, int] = {}
        self.pat_by_obj: dict[int, tuple[Pat, int]] = {}
        # per state: its layout's fingerprint for MTRR-reading eras (MTRRs, CD), for the
        # others (CD), its MTRRs' id, its PAT's id, CR0.NW and CR0.PG: all of the state, so
        # that this tuple is also its key in `sid_of`
        self.fps: list[tuple[int, int, int, int, bool, bool]] = []
        self.windows: OrderedDict[tuple, list] = OrderedDict()
        self.regions: OrderedDict[tuple, tuple[Run, ...]] = OrderedDict()
        self.trans: dict[tuple, int] = {}
        self.edges: list[tuple[int, int, int, int]] = []  # per transition: vm, state, vm after, state after
        self.cur = [self.intern(st) for st in current]

    def _pair_id(self, n: int, p: VarMtrr) -> int:
        """The id of a pair equal to `p` at index `n`. Keyed by the index and the tuple of
        its fields, which is what `VarMtrr`'s dataclass equality compares (the generated
        `__hash__` would build the same tuple in Python code); a key of plain ints is
        untracked by the cyclic collector after its first pass, where a (pair, id) entry per
        pair object stayed tracked. A new pair's `Cells.pair_range` is kept with its id
        (the index is in it: it orders KVM's list), so a window's cells take it from here
        (`cells`), not from a memo keyed by the pair's fields again."""
        ranges = self.pair_ranges
        new = len(ranges)
        pid = self.pair_ids.setdefault((n, p.base, p.mask, p.mask_written), new)  # (one hash)
        if pid == new:
            ranges.append(self.cell_maker.pair_range(n, p))
        return pid

    def _mtrr_id(self, mtrr: MtrrState, prev: MtrrState | None, prev_id: int) -> int:
        """The id of an MTRR state equal to `mtrr`; `prev` (id `prev_id`) one it was made
        from, whose fixed tuple and pairs it shares by object where a write left them."""
        fixed, var = mtrr.fixed, mtrr.variable
        key: list[int]
        if prev is not None and len(prev.variable) == len(var):
            key = list(self.mtrr_keys[prev_id])
            key[0] = mtrr.def_type
            if prev.fixed is not fixed:
                key[1] = self.fixed_ids.setdefault(fixed, len(self.fixed_ids))
            # (the pairs the write replaced, found in C: `compress` walks the 8 of them)
            for n in itertools.compress(range(len(var)), map(operator.is_not, var, prev.variable)):
                key[n + 2] = self._pair_id(n, var[n])
        else:
            key = [mtrr.def_type, self.fixed_ids.setdefault(fixed, len(self.fixed_ids)),
                   *[self._pair_id(n, p) for n, p in enumerate(var)]]
        k, keys = tuple(key), self.mtrr_keys
        new = len(keys)
        mid = self.mtrr_ids.setdefault(k, new)  # (one hash of the key, hit or miss)
        if mid == new:
            keys.append(k)
        return mid

    def intern(self, st: VcpuState, like: int | None = None) -> int:
        """The id of a state equal to `st`. `like` is the id of a state `st` was made from
        (the state before an event): what `st` shares with it by object (its MTRRs, its
        PAT, its fixed MSRs, its other variable pairs: `apply_event` keeps what a write
        does not change) keeps its id without being hashed again, so a write costs the part
        it changes."""
        mtrr, pat = st.mtrr, st.pat
        if like is None:
            mid = self._mtrr_id(mtrr, None, 0)
            pid = -1
        else:
            prev = self.states[like]
            _, _, mid, pid, _, _ = self.fps[like]
            if prev.mtrr is not mtrr:
                mid = self._mtrr_id(mtrr, prev.mtrr, mid)
            if prev.pat is not pat:
                pid = -1
        if pid < 0:
            seen = self.pat_by_obj.get(id(pat))
            if seen is None or seen[0] is not pat:
                seen = self.pat_by_obj[id(pat)] = (pat, self.pat_ids.setdefault(pat, len(self.pat_ids)))
            pid = seen[1]
        cd, states = st.cr0_cd, self.states
        fp = (mid << 1 | cd, int(cd), mid, pid, st.cr0_nw, st.cr0_pg)  # (all of the state: its key too)
        new = len(states)
        sid = self.sid_of.setdefault(fp, new)
        if sid == new:
            states.append(st)
            self.fps.append(fp)
        return sid

    def cells(self, sid: int | None, a: int, b: int) -> list:
        """The cells (`ept_runs.Cells`) of state `sid`'s MTRRs inside [a, b), or of the
        memslots alone for `sid` None; shared by every era of the replay (LRU cached).
        The pairs' ranges are the interned pairs' (`_pair_id`)."""
        if sid is None:
            return self.cell_maker.cells(None, a, b)
        mid = self.fps[sid][2]
        k = (mid, a, b)
        windows = self.windows
        r = windows.get(k)
        if r is None:
            pairs = map(self.pair_ranges.__getitem__, itertools.islice(self.mtrr_keys[mid], 2, None))
            r = windows[k] = self.cell_maker.cells(self.states[sid].mtrr, a, b, pairs)
            if len(windows) > WINDOW_CACHE:
                windows.popitem(last=False)
        else:
            windows.move_to_end(k)
        return r

    def region(self, table: int, sid: int, reads: bool, a: int, b: int, era: _EraReplay, vid: int) -> tuple[Run, ...]:
        """The runs state `sid` faults inside [a, b) under run-key table `table` (an id of a
        `Layouts.table`), with its MTRRs' cells if `reads` else the memslots': shared by
        every era with that table (LRU cached); `era` (one of those) makes them on VM
        config `vid`. A tuple: what a call refaulted is kept as one (`_EraReplay.zap`)."""
        k = (table, self.fps[sid][2] if reads else -1, a, b)
        regions = self.regions
        r = regions.get(k)
        if r is None:
            cells = self.cells(sid if reads else None, a, b)
            r = regions[k] = tuple(era._lay(vid).keyed(self.states[sid], cells))
            if len(regions) > REGION_CACHE:
                regions.popitem(last=False)
        else:
            regions.move_to_end(k)
        return r

    def step(self, i: int, te: TraceEvent, vid: int) -> int:
        """The transition id of event `i` from VM config `vid`; updates the vCPU's state."""
        v, ev = te.vcpu, te.event
        sid = self.cur[v]
        k = _transition_key(vid, sid, ev)
        edges = self.edges
        tid = self.trans.setdefault(k, len(edges))  # (one hash of the key, hit or miss)
        if tid < len(edges):  # a known transition
            self.cur[v] = edges[tid][3]
            return tid
        if len(self.states) >= TABLE_LIMIT:
            del self.trans[k]
            self.reset([self.states[s] for s in self.cur])
            sid, edges = self.cur[v], self.edges
            k = _transition_key(vid, sid, ev)
            tid = self.trans[k] = 0
        vm, before = self.vms[vid], self.states[sid]
        try:
            vm_after, after = apply_event(vm, before, ev)
        except MemTypeError as err:
            del self.trans[k]
            raise _event_error(i, te, err) from None
        if vm_after is vm:
            vid_after = vid
        else:
            known = self.vm_ids.get(vm_after)
            if known is None:
                known = self.vm_ids[vm_after] = len(self.vms)
                self.vms.append(vm_after)
            vid_after = known
        sid_after = self.cur[v] = self.intern(after, sid)
        edges.append((vid, sid, vid_after, sid_after))
        return tid

    def zap_input(self, tid: int, ev: Event) -> ZapInput:
        """What the eras decide transition `tid` on (made by `_zap_input`)."""
        vid, sid, vid_after, sid_after = self.edges[tid]
        vms, states = self.vms, self.states
        return _zap_input(vms[vid], states[sid], vms[vid_after], states[sid_after], ev)


class _EraReplay:
    """One era's EPT, counters and memos during a replay (see the module doc for the model)."""

    def __init__(self, era: Era, trace: Trace, walk: _Walk, rule_ids: dict[EventZap, int]) -> None:
        vm = trace.vm
        era.check_vm(vm)
        self.era, self.trace, self.walk = era, trace, walk
        self.reads = era.reads_guest_mtrrs
        self.fp_at = 0 if self.reads else 1  # which of `_Walk.fps` is this era's fingerprint
        self.quiet = era.zap_policy.quiet_kinds  # event kinds this era never zaps on
        # per event kind, the id of this era's rule in `rule_ids` (shared by the replay's eras:
        # an EventZap hashes its enums in Python, so the rules are hashed here, once)
        policy = era.zap_policy
        self.rules = {kind: rule_ids.setdefault(_rule_of(getattr(policy, kind)), len(rule_ids))
                      for kind in EVENT_KINDS}  # ZapPolicy names its EventZaps by Event.kind
        # ... and of its calls rule for a vCPU with CR0.CD 0 and 1 before the event (`_calls_rule`)
        self.call_rules: dict[str, tuple[int, int]] = {
            kind: (rule_ids.setdefault(_calls_rule(getattr(policy, kind), False), len(rule_ids)),
                   rule_ids.setdefault(_calls_rule(getattr(policy, kind), True), len(rule_ids)))
            for kind in EVENT_KINDS}
        self.per_memslot = {kind: getattr(policy, kind).per_memslot for kind in EVENT_KINDS}
        self.mapped = sorted((r.start, r.end) for r in vm.memory_map)
        self.lo, self.hi = (self.mapped[0][0], self.mapped[-1][1]) if self.mapped else (0, 0)
        # bisecting these finds what bisecting `mapped` by start / by end does
        # (memslots are disjoint and sorted), without a key call per probe
        self.starts, self.ends = [s for s, _ in self.mapped], [e for _, e in self.mapped]
        self.size = sum(e - s for s, e in self.mapped)  # bytes
        self.total = self.size >> 12
        self.lays: dict[int, Layouts] = {}
        self.layouts: OrderedDict[tuple, tuple[Run, ...]] = OrderedDict()
        self.tables: dict[tuple[int, bool], int] = {}  # (VM config, CR0.CD) -> walk table id
        self.tables_like: dict[int, bool] = {}  # VM config << 1 | CR0.CD -> `table_like` the era it follows
        self.ept: Sequence[Run] = self.full(0, walk.cur[0])
        self.zap_calls = self.empty_calls = self.zapped_pages = self.excess_pages = 0
        self.calls_cd = self.dups = 0
        self.by_source = dict.fromkeys(SOURCES, 0)
        self.records: list[tuple] = []  # ZapCallRecord fields, made into records at the end
        self.truncated = False
        self.last: dict[Range, tuple[Run, ...]] = {}
        # while following another era's EPT (`_replay_eras`): True when this era counts its
        # own calls there (it splits them per memslot where that era does not, or the
        # reverse; set by `_leaders`)
        self.counts_own = False

    _STATE = ("ept", "zap_calls", "empty_calls", "zapped_pages", "excess_pages", "calls_cd", "dups", "by_source",
              "records", "truncated", "last")
    """What a zap changes: an era that follows another's EPT (`_replay_eras`) takes it over
    (the EPT alone when it `counts_own`)."""

    def adopt(self, other: _EraReplay, copy: bool = True) -> None:
        """Take over `other`'s EPT and, unless this era counts its own calls
        (`counts_own`), its counters (copies of what a zap changes in place unless `copy`
        is False: at the end, when nothing changes any more)."""
        for name in self._STATE if not self.counts_own else ("ept",):
            v = getattr(other, name)
            if copy and type(v) in (list, dict):
                v = v.copy()  # (the runs inside are never changed in place)
            setattr(self, name, v)

    def restart(self) -> None:
        """The walk started its tables again: state ids, so fingerprints, changed meaning."""
        self.layouts.clear()

    def _lay(self, vid: int) -> Layouts:
        lay = self.lays.get(vid)
        if lay is None:
            lay = self.lays[vid] = Layouts(self.era, self.walk.vms[vid], self.walk.cell_maker)
        return lay

    def _runs(self, vid: int, sid: int, a: int, b: int) -> list[Run]:
        return self._lay(vid).keyed(self.walk.states[sid], self.walk.cells(sid if self.reads else None, a, b))

    def _fp(self, sid: int) -> int:
        return self.walk.fps[sid][self.fp_at]

    def full(self, vid: int, sid: int) -> tuple[Run, ...]:
        """The whole layout the vCPU state `sid` faults on VM config `vid` (cached)."""
        return _lru_get(self.layouts, (vid, self._fp(sid)),  # type: ignore[return-value]
                        lambda: tuple(self._runs(vid, sid, self.lo, self.hi)), LAYOUT_CACHE)

    def _table(self, vid: int, cd: bool) -> int:
        """The walk's id of this era's run-key table (`Layouts.table`) on VM config `vid`
        with CR0.CD=`cd`: eras with equal tables share their windows' runs."""
        t = self.tables.get((vid, cd))
        if t is None:
            tables = self.walk.tables
            t = self.tables[vid, cd] = tables.setdefault(self._lay(vid).table(cd), len(tables))
        return t

    def table_like(self, other: _EraReplay, vid: int, cd: int) -> bool:
        """Whether this era's run-key table on VM config `vid` with CR0.CD=`cd` is `other`'s
        (memoised: `_parting` asks it of every new transition)."""
        k = vid << 1 | cd
        r = self.tables_like.get(k)
        if r is None:
            r = self.tables_like[k] = self._table(vid, bool(cd)) == other._table(vid, bool(cd))
        return r

    def zap(self, i: int, te: TraceEvent, d: tuple, others: Sequence[tuple[_EraReplay, bool]] = ()) -> None:
        """Apply one decision (`_flat`) of event `i` to this era's EPT and count its calls,
        here and in `others`: eras that follow this EPT but count their own calls, each with
        its own `per_memslot` (`_replay_eras`).

        Zapping [a, b) whole and zapping its per-memslot pieces leave the same EPT (it holds
        mapped pages only, and every piece refaults its part of the same window), so the EPT
        is zapped once and each call is worked out in the views the counting eras need: the
        whole call (a, b) and/or its pieces, each as (start, end, bytes zapped, bytes whose
        entry did not change, what it left: a tuple of runs; for an empty call None), which
        `_count` counts. With one memslot inside [a, b) the piece is the call bar its ends;
        with several, the pieces are worked out and the call's figures are their sums.

        A window's runs come from the whole layout when it is cached, else from
        `_Walk.region` (computed for the window alone, shared by the eras with this run-key
        table); none when no memslot meets the call, whatever the state. Those look-ups, the
        memslot split and the EPT compare and splice are written out here: this runs for
        every zapping era at every zapping event (a few per cent of an adversarial event;
        tests/test_kvm_replay_engine.py holds it to the straightforward engine, field by
        field)."""
        vid, sid = d[0], d[1]  # (`_flat`)
        per_memslot = self.per_memslot[te.event.kind]
        split, whole = per_memslot, not per_memslot  # the views wanted
        for _, p in others:
            if p:
                split = True
            else:
                whole = True
        walk = self.walk
        cd = walk.states[sid].cr0_cd
        lo, hi, m, starts, ends = self.lo, self.hi, self.mapped, self.starts, self.ends
        wc: list[tuple] = []  # the whole calls
        pc: list[tuple] = []  # their per-memslot pieces
        for n in range(2, len(d), 2):
            a, b = d[n], d[n + 1]
            if b <= a:  # an empty call: one call in both views
                c = (a, b, 0, 0, None)
                if whole:
                    wc.append(c)
                if split:
                    pc.append(c)
                continue
            # the memslots inside [a, b): indices [si, sj) of `mapped`
            si, sj = bisect_right(ends, a), bisect_left(starts, b)
            every = a <= lo and b >= hi  # kvm_zap_gfn_range(0, ~0): every leaf goes
            region: Sequence[Run]
            if every:
                region = self.full(vid, sid)
            elif si >= sj:
                region = ()
            else:
                w = self.layouts.get((vid, walk.fps[sid][self.fp_at]))
                if w is not None:
                    region = clip_sorted(w, a, b)
                else:
                    t = self.tables.get((vid, cd))
                    region = walk.region(self._table(vid, cd) if t is None else t, sid, self.reads, a, b, self, vid)
            ept = self.ept
            at = None
            if split and sj - si > 1:
                zp = same = 0
                for s, e in m[si:sj]:
                    pa, pb = (a if a > s else s), (b if b < e else e)
                    piece = tuple(clip_sorted(region, pa, pb))
                    pz = 0
                    for rs, re_, _ in piece:
                        pz += re_ - rs
                    if pz:
                        pi, pj = window(ept, pa, pb)
                        ps = agree(ept[pi:pj], piece)
                    else:
                        ps = 0
                    zp += pz
                    same += ps
                    pc.append((pa, pb, pz, ps, piece))
            elif every:
                zp, same = self.size, agree(ept, region)
            else:
                zp = 0
                for s, e, _ in region:  # (a loop: a window holds a run or a few)
                    zp += e - s
                if zp:
                    at = window(ept, a, b)
                    same = agree(ept[at[0]:at[1]], region)  # pieces() only walks where both are
                else:
                    same = 0
            if every:
                self.ept = region  # (the vCPU refaults every leaf)
            elif same != zp:  # (a piece's unchanged bytes are at most its zapped bytes)
                if type(ept) is not list:
                    ept = self.ept = list(ept)
                splice(ept, a, b, region, at)
            # What a call left is kept as a tuple (see `_count`).
            if type(region) is not tuple:
                region = tuple(region)
            if whole:
                wc.append((a, b, zp, same, region))
            if split and sj - si == 1:  # one memslot: the piece left what the call did
                s, e = m[si]
                pc.append((a if a > s else s, b if b < e else e, zp, same, region))
        self._count(i, te, cd, pc if per_memslot else wc)
        for o, p in others:
            o._count(i, te, cd, pc if p else wc)

    def _count(self, i: int, te: TraceEvent, cd: bool, calls: Sequence[tuple]) -> None:
        """Count event `i`'s calls (`zap`'s views: (start, end, bytes zapped, bytes whose
        entry did not change, what the call left, or None for an empty call)) in this era's
        counters, records and `last`; the counters are summed in locals and stored once."""
        ev = te.event
        records, last = self.records, self.last
        calls_n = zapped = excess = dups = 0
        for a, b, zp, same, content in calls:
            if content is None:
                self.empty_calls += 1
                if len(records) < MAX_CALL_RECORDS:
                    records.append((i, te.vcpu, ev.kind, ev.msr, a, b, 0, 0, cd, False, True))
                else:
                    self.truncated = True
                continue
            zp >>= 12
            same >>= 12
            # Duplicate: this range was zapped before and nothing in it has changed since
            # (its entries are what that call left, and this call changes none of them).
            # What a call left is kept as a tuple (a list is compared element by element
            # all the same, but a tuple of run tuples is one the cyclic collector stops
            # tracking, where every kept list stayed on its rounds).
            dup = same == zp and last.get((a, b)) == content
            if len(last) >= MAX_CALL_RECORDS:
                last.clear()
            last[(a, b)] = content
            calls_n += 1
            zapped += zp
            excess += same
            dups += dup
            if len(records) < MAX_CALL_RECORDS:
                records.append((i, te.vcpu, ev.kind, ev.msr, a, b, zp, same, cd, dup, False))
            else:
                self.truncated = True
        if calls_n:
            self.zap_calls += calls_n
            self.by_source[te.source] += calls_n
            self.zapped_pages += zapped
            self.excess_pages += excess
            self.calls_cd += calls_n if cd else 0
            self.dups += dups

    def _records(self, made: dict[int, tuple[ZapCallRecord, ...]] | None) -> tuple[ZapCallRecord, ...]:
        if made is None:
            made = {}
        calls = made.get(id(self.records))
        if calls is None:
            calls = made[id(self.records)] = tuple([_record(*r) for r in self.records])
        return calls

    def result(self, vid: int, made: dict[int, tuple[ZapCallRecord, ...]] | None = None) -> ReplayResult:
        """The era's answer after the last event on VM config `vid`. `made`: call records
        already built, by the id of the list they were built from: an era that followed
        another to the end holds that era's very list (`adopt(copy=False)`), so equal
        records are built once (the list is alive, in both eras, while its id is used)."""
        walk, trace, total = self.walk, self.trace, self.total
        ept = self.ept
        per_vcpu: list[int] = []
        seen: dict[int, int] = {}
        for sid in walk.cur:
            fp = self._fp(sid)
            if fp not in seen:
                seen[fp] = total - (agree(ept, self.full(vid, sid)) >> 12)
            per_vcpu.append(seen[fp])
        states = [walk.states[sid] for sid in walk.cur]
        first = states[0]
        same_state = all((s.mtrr, s.cr0_cd, s.cr0_nw) == (first.mtrr, first.cr0_cd, first.cr0_nw) for s in states)
        stale_ranges = _diff_ranges(ept, self.full(vid, walk.cur[0]), MAX_STALE_RANGES)
        return ReplayResult(
            era=self.era.id, name=trace.name, vcpus=trace.vcpus, events=len(trace.events), mapped_pages=total,
            zap_calls=self.zap_calls, empty_calls=self.empty_calls, zapped_pages=self.zapped_pages,
            excess_pages=self.excess_pages, stale_pages=per_vcpu[0], calls_while_cd=self.calls_cd,
            duplicate_calls=self.dups, per_vcpu_stale=tuple(per_vcpu), vcpus_agree=same_state,
            stale_ranges=tuple(stale_ranges), calls=self._records(made),
            calls_truncated=self.truncated, calls_by_source=self.by_source,
        )


def _flat(calls: Sequence[Range], vid_after: int, sid_after: int) -> tuple | None:
    """A decision's calls as the replay keeps them: (VM after, state after, then every
    call's start and end), or None without calls. Flat, so that the cyclic collector stops
    tracking it (and the row holding it) at its first passes: it untracks a tuple of
    untracked items only, one nesting level per pass, and a replay keeps one row per
    transition. Two decisions' calls are equal exactly when their flat forms are (the first
    two fields have a fixed length). The decision's `per_memslot` is not in it: it is the
    era's own for the event's kind (`EventZap.per_memslot`, which `decide` returns), so
    eras with one calls rule share one flat decision whatever their split, and the zap
    reads the split from the era (`_EraReplay.per_memslot`)."""
    if not calls:
        return None
    if len(calls) == 1:  # (most decisions make one call: built directly, no chain to unpack)
        a, b = calls[0]
        return (vid_after, sid_after, a, b)
    return (vid_after, sid_after, *itertools.chain.from_iterable(calls))


Plan = tuple[tuple[int, tuple[int, ...]], ...]
"""A kind's plan for one CR0.CD before the event: per calls rule (`_calls_rule`), in era
order of first use, the era that asks it and the eras whose decision it is."""


def _plans(runs: Sequence[_EraReplay]) -> dict[str, tuple[Plan, Plan]]:
    """Per event kind, for CR0.CD 0 and 1 before the event, the eras that may zap on it
    (not in their `ZapPolicy.quiet_kinds`) grouped by calls rule (`Plan`): what `_decide`
    runs when the VM is unchanged, worked out once per replay so that a new transition
    asks each calls rule once and builds each flat decision once, with no table of its
    own."""
    out: dict[str, tuple[Plan, Plan]] = {}
    for kind in EVENT_KINDS:
        by_cd = []
        for cd in (0, 1):
            groups: dict[int, list[int]] = {}
            for k, r in enumerate(runs):
                if kind not in r.quiet:
                    groups.setdefault(r.call_rules[kind][cd], []).append(k)
            by_cd.append(tuple((ks[0], tuple(ks)) for ks in groups.values()))
        out[kind] = (by_cd[0], by_cd[1])
    return out


def _decide(runs: Sequence[_EraReplay], walk: _Walk, i: int, te: TraceEvent, tid: int,
            plans: dict[str, tuple[Plan, Plan]]) -> tuple | None:
    """Every era's zap decision for a new transition, in era order (a refusal names the
    first era that refuses): None for an era whose policy never zaps on the event's kind
    (`ZapPolicy.quiet_kinds`), else its calls with the VM and state after (`_flat`), or
    None when there are no calls. Eras with the same rule share one decision (`_rule_of`).
    The row is None when no era zaps.

    When the event leaves the VM config as it was, no era's `check_vm` can refuse (each
    passed on that config before), so only the eras of the kind's plan (`_plans`) are
    visited, and eras with one calls rule (`_calls_rule`) share one `era.zap_calls`;
    otherwise every era is, checking the new VM config in era order first."""
    vid, sid, vid_after, sid_after = walk.edges[tid]
    ev = te.event
    if vid_after == vid and type(ev) is not NoncoherentDma:  # the VM config is unchanged
        plan = plans[ev.kind][walk.states[sid].cr0_cd]
        if not plan:
            return None
        zin = walk.zap_input(tid, ev)
        out: list[tuple | None] | None = None
        for k, ks in plan:
            c = runs[k].era.zap_calls(zin)  # no audit steps, no decision
            if c:
                if out is None:
                    out = [None] * len(runs)
                d = _flat(c, vid_after, sid_after)
                for k in ks:
                    out[k] = d
        return None if out is None else tuple(out)
    made: dict[int, tuple | None] = {}
    z: ZapInput | None = None
    row: list[tuple | None] = []
    for r in runs:
        try:
            r.era.check_vm(walk.vms[vid_after])
        except MemTypeError as err:
            raise _event_error(i, te, err) from None
        if ev.kind in r.quiet:
            row.append(None)
            continue
        rule = r.rules[ev.kind]
        if rule not in made:
            if z is None:
                z = walk.zap_input(tid, ev)
            made[rule] = _flat(r.era.zap_calls(z), vid_after, sid_after)  # calls only
        row.append(made[rule])
    return tuple(row) if any(d is not None for d in row) else None


def _leaders(runs: Sequence[_EraReplay]) -> list[int]:
    """For every era, the first era (index) whose EPT it starts with: itself, or an
    earlier one with an equal initial EPT that it follows (see `_replay_eras`); a follower
    whose `per_memslot` differs from its leader's counts its own calls (`counts_own`)."""
    lead: list[int] = []
    for k, r in enumerate(runs):
        j = next((j for j in range(k) if lead[j] == j and runs[j].ept == r.ept), k)
        lead.append(j)
        r.counts_own = j != k and r.per_memslot != runs[j].per_memslot
    return lead


def _parting(runs: Sequence[_EraReplay], following: Sequence[tuple[int, int]], walk: _Walk,
             row: tuple) -> tuple[int, ...]:
    """The eras that a transition's decisions (`row`) part from the era they follow: other
    calls (`_flat`: a split per memslot is not in it), or the same calls refaulted with a
    different run-key table (`Layouts.table`). Equal calls and tables make equal EPTs
    (`_EraReplay.zap` reads nothing else of its era; an era that splits its calls
    otherwise counts its own, `_EraReplay.counts_own`). Only the eras that follow now
    (`following`: (era, the era it follows)) are asked: an era never follows again once
    parted, so the replay would skip them whenever this transition comes back."""
    out = []
    for k, j in following:
        d, dj = row[k], row[j]
        if d is None:
            if dj is not None:
                out.append(k)
        elif d is not dj and d != dj:
            out.append(k)
        else:
            if not runs[k].table_like(runs[j], d[0], walk.fps[d[1]][1]):  # (CR0.CD after, as an int)
                out.append(k)
    return tuple(out)


def _replay_eras(eras: Sequence[Era], trace: Trace) -> list[ReplayResult]:
    """Replay `trace` against several eras in one pass over the events: the vCPU states are
    worked out once (`_Walk`), every transition's decisions once (`_decide`), and every era
    applies its own decisions to its own EPT.

    Eras that start with equal EPTs share one until a transition parts them (`_parting`):
    while every decision and run-key table agrees, their zaps are the same work on the same
    EPT, so only the first of them does it; an era that parts takes over a copy of the EPT
    and counters at that event (`adopt`). (v4.2 and v6.7 differ only while CR0.CD=1.)

    An era whose `per_memslot` differs from the one it follows (series-v3 from v4.2) counts
    its own calls from the start (`counts_own`): the same calls split otherwise leave the
    same EPT, so it still follows; the zap of the era it follows works its calls out for it
    too, and at a parting it takes over the EPT alone."""
    walk = _Walk(trace)
    rule_ids: dict[EventZap, int] = {}
    runs = [_EraReplay(era, trace, walk, rule_ids) for era in eras]
    plans = _plans(runs)
    lead = _leaders(runs)  # whom each era follows at the start
    cur = list(lead)       # ... and now (itself once parted)
    following = [(k, j) for k, j in enumerate(lead) if j != k]  # (era, whom it follows) now
    # per era, the eras that follow its EPT now and count their own calls
    own: list[list[int]] = [[] for _ in runs]
    for k, j in following:
        if runs[k].counts_own:
            own[j].append(k)
    # per transition: every era's decision (`_flat`), or None when no era zaps, and who
    # parts; two lists, not one of pairs, for the collector (see `_flat`)
    rows: list[tuple | None] = []
    partings: list[tuple[int, ...]] = []
    gen = walk.generation
    vid = 0
    for i, te in enumerate(trace.events):
        tid = walk.step(i, te, vid)
        if walk.generation != gen:  # the walk started its tables again: new transition ids
            gen = walk.generation
            rows, partings = [], []
            for r in runs:
                r.restart()
        if tid == len(rows):
            row = _decide(runs, walk, i, te, tid, plans)
            rows.append(row)
            partings.append(() if row is None or not following else _parting(runs, following, walk, row))
        row = rows[tid]
        if row is not None:
            for k in partings[tid]:
                j = cur[k]
                if j != k:
                    runs[k].adopt(runs[j])
                    following.remove((k, j))
                    if runs[k].counts_own:
                        own[j].remove(k)
                    cur[k] = k
            for k, d in enumerate(row):
                if d is not None and cur[k] == k:
                    f = own[k]  # (their decisions are `d`'s calls too: `_parting`)
                    runs[k].zap(i, te, d, [(runs[g], runs[g].per_memslot[te.event.kind]) for g in f] if f else ())
        vid = walk.edges[tid][2]
    for k, j in enumerate(cur):
        if j != k:
            runs[k].adopt(runs[j], copy=False)
    made: dict[int, tuple[ZapCallRecord, ...]] = {}
    return [r.result(vid, made) for r in runs]


def replay(era: Era, trace: Trace) -> ReplayResult:
    """Replay `trace` in order against `era`'s memtype rules and zap policy (see module doc)."""
    return _replay_eras([era], trace)[0]


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
    """`replay` against several eras (default: the whole registry, oldest first), in one pass
    over the trace, so the era-independent work (the vCPU states) is done once."""
    if eras is None:
        from .eras import ERAS
        eras = ERAS.values()
    eras = list(eras)
    return {r.era: r for r in _replay_eras(eras, trace)}


# -- event builders and boot generators ---------------------------------------------------------


def events_from_writes(vcpu: int, writes: Iterable[MsrWrite], line: int = 0) -> list[TraceEvent]:
    """WRMSRs as events: IA32_PAT (0x277) becomes `pat_write`, MTRR MSRs `mtrr_write`."""
    out = []
    for msr, value in writes:
        if msr == MSR_IA32_PAT:
            out.append(TraceEvent(vcpu, PatWrite(value=value), line))
        elif is_mtrr_msr(msr):
            out.append(TraceEvent(vcpu, MtrrWrite(msr=msr, value=value), line))
        else:
            raise MemTypeError("msr", f"{msr:#x} is neither an MTRR MSR nor IA32_PAT",
                               "only these MSRs change memory typing")
    return out


def cr0_cd_event(vcpu: int, cd: bool) -> TraceEvent:
    """MOV to CR0 setting CD and clearing NW, as `AsmDisableCache()`/`AsmEnableCache()` (edk2)
    and Linux's `cache_disable()`/`cache_enable()` do."""
    return TraceEvent(vcpu, Cr0Write(value=cd, cr0_nw=False))


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
    out.append(TraceEvent(vcpu, MtrrWrite(msr=MSR_MTRR_DEF_TYPE, value=disable)))
    out += events_from_writes(vcpu, writes)
    out.append(TraceEvent(vcpu, MtrrWrite(msr=MSR_MTRR_DEF_TYPE, value=enable)))
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


NCDMA_VM = VmConfig(noncoherent_dma=True)
"""The generators' default VM: one with non-coherent DMA, where KVM honours guest MTRRs."""


def boot_trace(firmware: str, vcpus: int, vm: VmConfig = NCDMA_VM, linux: bool = True, *,
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


def ovmf_boot(vcpus: int, vm: VmConfig = NCDMA_VM, linux: bool = True, **kw) -> Trace:
    """An OVMF boot then a Linux guest: QEMU's host writes, edk2's MtrrLib passes, Linux's re-sync."""
    return boot_trace("ovmf", vcpus, vm, linux, **kw)


def seabios_boot(vcpus: int, vm: VmConfig = NCDMA_VM, linux: bool = True, **kw) -> Trace:
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
