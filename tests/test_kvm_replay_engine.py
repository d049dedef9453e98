"""The fast replay engine (app/kvm/replay.py `_Walk`/`_EraReplay`, app/kvm/ept_runs.py
`Layouts`) against a straightforward reference (issue 9 §4).

Why: the engine memoises transitions, zap decisions, whole layouts and layout windows,
and splices the EPT in place, so that an event costs what it touches. None of that may
change an answer. The reference below is the engine as it was before (one whole layout per
fingerprint, per-memslot `mtrr.segments`, the EPT rebuilt as a tuple at every zap), kept
here verbatim in behaviour and slow on purpose; every random trace must give exactly the
same `ReplayResult` (every field, every call record) in every era, also with the memo
bounds squeezed so that every cache is evicted and every table started again.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.kvm import ept_runs
from app.kvm import replay as rp
from app.kvm.boot import SOURCES
from app.kvm.era import ZapInput
from app.kvm.eras import ERAS
from app.kvm.layouts import ovmf_state, seabios_state
from app.kvm.mtrr import segments
from app.kvm.resolve import mask_at
from app.kvm.scenario import (
    MMIO,
    RAM,
    Cr0Write,
    MemRange,
    MtrrWrite,
    NoncoherentDma,
    PatWrite,
    VcpuState,
    VmConfig,
    apply_event,
)
from app.x86.memtype import MemTypeError
from app.x86.mtrr import FIXED_MSRS, MtrrState, VarMtrr

# -- the reference: the engine before issue 9 §4 ------------------------------------------


def ref_layout(era, vm, vcpu):
    runs = []
    for r in sorted(vm.memory_map, key=lambda m: m.start):
        is_mmio = r.kind == MMIO
        if era.reads_guest_mtrrs:
            segs = [(s, e) for s, e, _ in segments(vcpu.mtrr, r.start, r.end, vm.maxphyaddr, sdm=False,
                                                   guest_has_mtrr=vm.guest_has_mtrr)]
        else:
            segs = [(r.start, r.end)]
        for s, e in segs:
            m = mask_at(era, vm, vcpu, s, is_mmio)
            runs.append((s, e, ept_runs.key(m.memtype, m.ipat)))
    return ept_runs.merge_runs(runs)


def ref_agree(x, y):
    return sum(e - s for s, e, xk, yk in ept_runs.pieces(x, y) if xk == yk)


def ref_replay(era, trace):
    clip, merge_runs = ept_runs.clip, ept_runs.merge_runs
    vm = trace.vm
    era.check_vm(vm)
    reads = era.reads_guest_mtrrs
    mapped = sorted((r.start, r.end) for r in vm.memory_map)
    lo, hi = (mapped[0][0], mapped[-1][1]) if mapped else (0, 0)
    total = sum(e - s for s, e in mapped) >> 12
    vm_ids = {vm: 0}
    cache = {}

    def lay(v, vid, s):
        k = (vid, s.cr0_cd, s.mtrr if reads else None)
        if k not in cache:
            cache[k] = ref_layout(era, v, s)
        return cache[k]

    def slot_pieces(a, b):
        return [(max(a, s), min(b, e)) for s, e in mapped if max(a, s) < min(b, e)]

    states = [trace.initial] * trace.vcpus
    cur_vm, vid = vm, 0
    ept = lay(cur_vm, vid, states[0])
    zap_calls = empty_calls = zapped_pages = excess_pages = calls_cd = dups = 0
    by_source = dict.fromkeys(SOURCES, 0)
    records, truncated, last = [], False, {}
    for i, te in enumerate(trace.events):
        v, ev = te.vcpu, te.event
        before = states[v]
        try:
            vm_after, after = apply_event(cur_vm, before, ev)
            if vm_after is not cur_vm:
                era.check_vm(vm_after)
        except MemTypeError as err:
            raise rp._event_error(i, te, err) from None
        decision = era.zap(ZapInput(cur_vm, before, vm_after, after, ev))
        if vm_after is not cur_vm:
            vid = vm_ids.setdefault(vm_after, len(vm_ids))
            cur_vm = vm_after
        states[v] = after
        for a, b in decision.calls:
            if b <= a:
                empty_calls += 1
                if len(records) < rp.MAX_CALL_RECORDS:
                    records.append(rp.ZapCallRecord(i, v, ev.kind, ev.msr, a, b, 0, 0, after.cr0_cd, False, True))
                else:
                    truncated = True
                continue
            target = lay(cur_vm, vid, after)
            for pa, pb in (slot_pieces(a, b) if decision.per_memslot else [(a, b)]):
                if pa <= lo and pb >= hi:
                    zp, same, ept = total, ref_agree(ept, target) >> 12, target
                else:
                    mid_new = clip(target, pa, pb)
                    zp = sum(e - s for s, e, _ in mid_new) >> 12
                    same = ref_agree(clip(ept, pa, pb), mid_new) >> 12 if zp else 0
                    if same != zp:
                        ept = merge_runs(clip(ept, -1, pa) + mid_new + clip(ept, pb, 1 << 64))
                content = ept if (pa <= lo and pb >= hi) else tuple(clip(ept, pa, pb))
                dup = same == zp and last.get((pa, pb)) == content
                if len(last) >= rp.MAX_CALL_RECORDS:
                    last.clear()
                last[(pa, pb)] = content
                zap_calls += 1
                by_source[te.source] += 1
                zapped_pages += zp
                excess_pages += same
                calls_cd += after.cr0_cd
                dups += dup
                if len(records) < rp.MAX_CALL_RECORDS:
                    records.append(rp.ZapCallRecord(i, v, ev.kind, ev.msr, pa, pb, zp, same, after.cr0_cd, dup, False))
                else:
                    truncated = True
    per_vcpu = [total - (ref_agree(ept, lay(cur_vm, vid, s)) >> 12) for s in states]
    first = states[0]
    agree = all((s.mtrr, s.cr0_cd, s.cr0_nw) == (first.mtrr, first.cr0_cd, first.cr0_nw) for s in states)
    return rp.ReplayResult(
        era=era.id, name=trace.name, vcpus=trace.vcpus, events=len(trace.events), mapped_pages=total,
        zap_calls=zap_calls, empty_calls=empty_calls, zapped_pages=zapped_pages, excess_pages=excess_pages,
        stale_pages=per_vcpu[0], calls_while_cd=calls_cd, duplicate_calls=dups, per_vcpu_stale=tuple(per_vcpu),
        vcpus_agree=agree, stale_ranges=tuple(rp._diff_ranges(ept, lay(cur_vm, vid, first), rp.MAX_STALE_RANGES)),
        calls=tuple(records), calls_truncated=truncated, calls_by_source=by_source,
    )


# -- random inputs ------------------------------------------------------------------------------

MPA = 46
GiB = 1 << 30
# Addresses on a coarse grid (1 MiB .. 16 GiB) so that ranges, memslots and MTRR pairs meet.
ADDR = st.sampled_from([0, 0x80000, 0xA0000, 0xC0000, 0x100000, 0x400000, 0x80000000, 0xC0000000,
                        0xFD000000, 0xFE000000, GiB, 2 * GiB, 4 * GiB, 6 * GiB, 8 * GiB, 12 * GiB, 16 * GiB])
TYPES = st.sampled_from([0, 1, 4, 5, 6])
SIZES = st.sampled_from([1 << k for k in (12, 16, 20, 21, 24, 28, 30, 31, 32, 33, 34)])
FIXED_VALUES = st.sampled_from([0, 0x0606060606060606, 0x0505050505050505, 0x0000000006060606, 0x0104050600010406])
DEF_TYPES = st.sampled_from([0x0, 0x6, 0x806, 0xC06, 0xC00, 0x400, 0x805, 0xC01])


def _mask(size: int) -> int:
    return (((1 << MPA) - 1) & ~(size - 1)) | 0x800


@st.composite
def memory_maps(draw):
    pts = sorted(draw(st.sets(ADDR, min_size=2, max_size=10)))
    out = []
    for s, e in zip(pts, pts[1:], strict=False):
        if draw(st.booleans()) or not out:
            out.append(MemRange(s, e, draw(st.sampled_from([RAM, RAM, MMIO]))))
    return tuple(out)


@st.composite
def events(draw):
    kind = draw(st.sampled_from(["cd", "def", "fixed", "base", "mask", "mask", "pat", "dma"]))
    if kind == "cd":
        cd = draw(st.booleans())
        return Cr0Write(value=cd, cr0_nw=draw(st.booleans()) if cd else False)
    if kind == "def":
        return MtrrWrite(msr=0x2FF, value=draw(DEF_TYPES))
    if kind == "fixed":
        return MtrrWrite(msr=draw(st.sampled_from([f.msr for f in FIXED_MSRS])), value=draw(FIXED_VALUES))
    if kind == "base":
        return MtrrWrite(msr=0x200 + 2 * draw(st.integers(0, 7)), value=draw(ADDR) | draw(TYPES))
    if kind == "mask":
        return MtrrWrite(msr=0x201 + 2 * draw(st.integers(0, 7)), value=draw(st.sampled_from([0, _mask(draw(SIZES))])))
    if kind == "pat":
        return PatWrite(value=draw(st.sampled_from([0x0007040600070406, 0x0407050600070106])))
    return NoncoherentDma(value=draw(st.booleans()))


@st.composite
def mtrr_states(draw):
    pairs = tuple(VarMtrr(draw(ADDR) | draw(TYPES), _mask(draw(SIZES)) if draw(st.booleans()) else 0,
                          mask_written=draw(st.booleans()))
                  for _ in range(draw(st.integers(0, 8))))
    pairs = tuple(p if p.mask_written or p.mask == 0 else replace(p, mask_written=True) for p in pairs)
    return MtrrState(draw(DEF_TYPES), tuple(draw(FIXED_VALUES) for _ in range(11)), pairs)


@st.composite
def traces(draw):
    vm = VmConfig(noncoherent_dma=draw(st.booleans()), quirk_cd_nw_cleared=draw(st.booleans()),
                  self_snoop=draw(st.booleans()), guest_has_mtrr=draw(st.booleans()), maxphyaddr=MPA,
                  memory_map=draw(memory_maps()))
    n = draw(st.integers(1, 3))
    initial = VcpuState(mtrr=draw(st.sampled_from([MtrrState(), ovmf_state(), seabios_state()]) | mtrr_states()))
    evs = draw(st.lists(st.tuples(st.integers(0, n - 1), events()), max_size=40))
    # A biased op list repeats events, as boots do, so that the memos get hits.
    evs = evs + draw(st.lists(st.sampled_from(evs), max_size=20)) if evs else evs
    return rp.Trace(vm, n, tuple(rp.TraceEvent(v, e, 0, draw(st.sampled_from(SOURCES))) for v, e in evs), initial)


def _valid(trace):
    try:
        rp.final_states(trace)
    except MemTypeError:
        return False
    return True


# -- the properties -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(memory_maps(), mtrr_states(), st.booleans(), st.booleans(), st.booleans())
def test_layout_equals_the_per_memslot_segments_layout(mm, mtrr, cd, ncdma, has_mtrr):
    vm = VmConfig(noncoherent_dma=ncdma, maxphyaddr=MPA, memory_map=mm, guest_has_mtrr=has_mtrr)
    vcpu = VcpuState(cr0_cd=cd, mtrr=mtrr)
    for era in ERAS.values():
        whole = ept_runs.layout(era, vm, vcpu)
        assert whole == ref_layout(era, vm, vcpu)
        lay = ept_runs.Layouts(era, vm)
        for a, b in ((0, 0x100000), (0xA0000, 0xC1000), (GiB, 8 * GiB), (0x80000000, 0x100000000),
                     (3 * GiB, 3 * GiB + 0x1000)):
            assert lay.runs(vcpu, a, b) == ept_runs.clip(whole, a, b)
            cells = lay.cells.cells(mtrr if era.reads_guest_mtrrs else None, a, b)
            assert lay.keyed(vcpu, cells) == ept_runs.clip(whole, a, b)
            assert ept_runs.clip_sorted(whole, a, b) == ept_runs.clip(whole, a, b)


@settings(max_examples=400, deadline=None)
@given(traces())
def test_replay_equals_reference(trace):
    if not _valid(trace):
        with pytest.raises(MemTypeError) as e:
            rp.replay(ERAS["v6.7"], trace)
        with pytest.raises(MemTypeError) as ref:
            ref_replay(ERAS["v6.7"], trace)
        assert (e.value.field, e.value.message) == (ref.value.field, ref.value.message)
        return
    got = rp.replay_all(trace)
    for era in ERAS.values():
        want = ref_replay(era, trace)
        assert got[era.id] == want
        assert rp.replay(era, trace) == want


def _squeeze(mp: pytest.MonkeyPatch) -> None:
    """Every bound of the engine at its smallest: tables start again after 2 states, every
    cache and memo holds 1 entry, 3 call records (so `last` too) are kept."""
    mp.setattr(rp, "TABLE_LIMIT", 2)
    mp.setattr(rp, "LAYOUT_CACHE", 1)
    mp.setattr(rp, "REGION_CACHE", 1)
    mp.setattr(rp, "WINDOW_CACHE", 1)
    mp.setattr(ept_runs, "MEMO_LIMIT", 1)
    mp.setattr(rp, "MAX_CALL_RECORDS", 3)


@settings(max_examples=150, deadline=None)
@given(traces())
def test_replay_equals_reference_with_every_memo_squeezed(trace):
    if not _valid(trace):
        return
    mp = pytest.MonkeyPatch()
    try:
        _squeeze(mp)
        got = rp.replay_all(trace)
        for era in ERAS.values():
            assert got[era.id] == ref_replay(era, trace)
    finally:
        mp.undo()


@st.composite
def memslot_traces(draw):
    """MTRR writes (and a rare CR0.CD toggle) on a VM with non-coherent DMA and several
    memslots: series-v3 makes v4.2's calls split per memslot, and follows v4.2's EPT
    (or leads it) while counting its own calls, until a CD toggle parts them."""
    maps = memory_maps().filter(lambda mm: len(mm) >= 3)
    vm = VmConfig(noncoherent_dma=True, quirk_cd_nw_cleared=draw(st.booleans()), maxphyaddr=MPA,
                  memory_map=draw(maps))
    n = draw(st.integers(1, 3))
    initial = VcpuState(mtrr=draw(st.sampled_from([ovmf_state(), seabios_state()]) | mtrr_states()))
    kinds = st.sampled_from(["def", "fixed", "base", "mask", "mask", "wide"] * 4 + ["cd"])
    evs = []
    for kind in draw(st.lists(kinds, max_size=40)):
        if kind == "cd":
            ev = Cr0Write(value=draw(st.booleans()), cr0_nw=False)
        elif kind == "def":
            ev = MtrrWrite(msr=0x2FF, value=draw(DEF_TYPES))
        elif kind == "fixed":
            ev = MtrrWrite(msr=draw(st.sampled_from([f.msr for f in FIXED_MSRS])), value=draw(FIXED_VALUES))
        elif kind == "base":
            ev = MtrrWrite(msr=0x200 + 2 * draw(st.integers(0, 7)), value=draw(ADDR) | draw(TYPES))
        else:  # a mask; "wide": one that spans memslots
            size = draw(st.sampled_from([1 << 33, 1 << 34]) if kind == "wide" else SIZES)
            ev = MtrrWrite(msr=0x201 + 2 * draw(st.integers(0, 7)), value=_mask(size))
        evs.append(rp.TraceEvent(draw(st.integers(0, n - 1)), ev, 0, draw(st.sampled_from(SOURCES))))
    evs += draw(st.lists(st.sampled_from(evs), max_size=20)) if evs else []
    return rp.Trace(vm, n, tuple(evs), initial)


@settings(max_examples=250, deadline=None)
@given(memslot_traces() | traces(), st.lists(st.sampled_from(list(ERAS)), min_size=1, max_size=6, unique=True),
       st.booleans())
def test_replay_all_of_any_eras_in_any_order_equals_reference(trace, ids, squeeze):
    # Which era follows which EPT depends on the eras asked for and their order: series-v3
    # follows v4.2 (or v4.2 follows series-v3) differing in per_memslot, each counting its own
    # calls; every era's answer must still be the reference's, also with the call records'
    # bound (so `last`'s) squeezed and every memo evicted.
    if not _valid(trace):
        return
    mp = pytest.MonkeyPatch()
    try:
        if squeeze:
            _squeeze(mp)
        got = rp.replay_all(trace, [ERAS[e] for e in ids])
        assert list(got) == ids
        for e in ids:
            assert got[e] == ref_replay(ERAS[e], trace)
    finally:
        mp.undo()


def test_per_memslot_follower_counts_its_own_calls():
    # series-v3 with v4.2 (either order) answers what series-v3 alone does, on a trace whose
    # calls span several memslots (a 16 GiB mask from 0) and miss them all (a window in a gap).
    mm = (MemRange(0, 2 * GiB, RAM), MemRange(4 * GiB, 6 * GiB, RAM), MemRange(8 * GiB, 12 * GiB, MMIO))
    vm = VmConfig(noncoherent_dma=True, maxphyaddr=MPA, memory_map=mm)
    evs = [MtrrWrite(msr=0x200, value=6), MtrrWrite(msr=0x201, value=_mask(1 << 34)),
           MtrrWrite(msr=0x201, value=_mask(1 << 34)), MtrrWrite(msr=0x202, value=3 * GiB | 0),
           MtrrWrite(msr=0x203, value=_mask(1 << 28)), MtrrWrite(msr=0x203, value=_mask(1 << 28)),
           MtrrWrite(msr=0x200, value=0), MtrrWrite(msr=0x201, value=_mask(1 << 34))]
    trace = rp.Trace(vm, 2, tuple(rp.TraceEvent(i % 2, e) for i, e in enumerate(evs)), VcpuState(mtrr=ovmf_state()))
    alone = rp.replay(ERAS["series-v3"], trace)
    assert alone == ref_replay(ERAS["series-v3"], trace)
    assert alone.zap_calls > rp.replay(ERAS["v4.2"], trace).zap_calls
    for ids in (("v4.2", "series-v3"), ("series-v3", "v4.2"), ("v4.2", "v6.7", "series-v3")):
        got = rp.replay_all(trace, [ERAS[e] for e in ids])
        assert got["series-v3"] == alone
        assert got["v4.2"] == rp.replay(ERAS["v4.2"], trace)


def test_splice_keeps_runs_merged():
    runs = [(0, 10, 1), (10, 20, 2), (30, 40, 1)]
    ept_runs.splice(runs, 5, 35, [(5, 10, 1), (10, 20, 1), (30, 35, 1)])
    assert runs == [(0, 20, 1), (30, 40, 1)]
    ept_runs.splice(runs, 10, 20, [(10, 20, 3)])
    assert runs == [(0, 10, 1), (10, 20, 3), (30, 40, 1)]
    ept_runs.splice(runs, 0, 40, [(0, 20, 3), (30, 40, 3)])
    assert runs == [(0, 20, 3), (30, 40, 3)]


# -- bounds: the generator path obeys MEMTYPE_MAX_TRACE_EVENTS before it generates ---------------


def test_boot_generator_refused_before_generating(monkeypatch):
    # 1024 vCPUs of OVMF + Linux make 125 + 1023 * 157 = 160,736 events (boot_event_count
    # extrapolates from boots of 1 and 2 vCPUs): above the service's default limit of 100,000
    # (app/settings.py max_trace_events). Only the two small boots may be built.
    built = []
    real = rp.boot_steps

    def spy(firmware, vcpus, *a, **kw):
        built.append(vcpus)
        return real(firmware, vcpus, *a, **kw)

    monkeypatch.setattr(rp, "boot_steps", spy)
    assert rp.boot_event_count("ovmf", 1024, rp.Machine()) == 125 + 1023 * 157
    built.clear()
    for gen in ("ovmf", "seabios"):
        with pytest.raises(MemTypeError) as e:
            rp.boot_trace(gen, 1024, max_events=60_000)
        assert e.value.field == "vcpus"
        assert "MEMTYPE_MAX_TRACE_EVENTS" in e.value.rule and "60000" in e.value.rule
        assert "1024 vCPUs" in e.value.message
    assert set(built) == {1, 2}
    # At the limit exactly, the boot is made.
    n = rp.boot_event_count("seabios", 3, rp.Machine())
    assert len(rp.boot_trace("seabios", 3, max_events=n).events) == n
    with pytest.raises(MemTypeError):
        rp.boot_trace("seabios", 3, max_events=n - 1)


def test_adversarial_64_memslots_equals_reference():
    # Issue 9 §4's adversarial shape, small: 64 memslots (128 MiB every 256 MiB, every 8th
    # MMIO), MTRRs on with 8 valid pairs, every event a new PHYSBASE or PHYSMASK on 2 vCPUs.
    # Pair 0 starts at 0, so its mask writes zap windows that hold the fixed ranges too.
    mm = tuple(MemRange(i << 28, (i << 28) + (1 << 27), MMIO if i % 8 == 7 else RAM) for i in range(64))
    pairs = tuple(VarMtrr(k << 31, _mask(1 << 26)) for k in range(8))
    initial = VcpuState(mtrr=MtrrState(0xC06, (0x0606060606060606,) * 11, pairs))
    evs = []
    for i in range(48):
        n = (i * 5) % 8
        if i % 2:
            base = ((i * 2654435761) % (16 << 10)) << 20 | (0, 1, 4, 5, 6)[i % 5]
            evs.append(rp.TraceEvent(i % 2, MtrrWrite(msr=0x200 + 2 * n, value=base)))
        else:
            evs.append(rp.TraceEvent(i % 2, MtrrWrite(msr=0x201 + 2 * n, value=_mask(1 << (21 + i % 13)))))
    trace = rp.Trace(VmConfig(noncoherent_dma=True, memory_map=mm), 2, tuple(evs), initial)
    got = rp.replay_all(trace)
    for era in ERAS.values():
        want = ref_replay(era, trace)
        assert got[era.id] == want
    # Every write zaps its pair's new range in the eras that honour guest MTRRs.
    assert got["v4.2"].zap_calls == got["v6.7"].zap_calls == 48
    assert got["series-v3"].zap_calls > 48 and got["v6.16"].zap_calls == 0
