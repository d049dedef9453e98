"""The replay's fast paths give what the audited paths give (issue 9 §4).

* `era.zap(z, audit=False)` and `era.zap_calls(z)` (the replay's decision: no audit steps,
  no reason strings, no decision object) make exactly the calls of `era.zap(z)`, for every
  era, every event kind, every MTRR MSR, every VM knob combination the zap gates read and
  before-states with CR0.CD 0/1 and MTRRs off / on / fixed ranges on: exhaustive over that
  space.
* `update_mtrr_range(..., why=False)` gives the audited range.
* Eras with one run-key table (`Layouts.table`) turn the same cells into the same runs.
* `replay_all` over several eras (which share EPTs between eras until they part) equals
  `replay` era by era, and eras part where their decisions differ.
* The walk's keys (`_transition_key`, `_Walk._pair_id`) are equal exactly when the events
  (pairs) are; a flat decision (`_flat`) is equal exactly when the decision's calls are
  and gives them back (the split it leaves out is the era's own per kind); `_decide`
  through the plans (`_plans`) makes every era's straightforward decision; the pair-range
  memo of `Cells` gives what a fresh `Cells` gives; a memslot piece that takes a window's
  runs whole gets what clipping gives.
"""

from __future__ import annotations

import itertools
import random

import pytest

from app.kvm import replay as rp
from app.kvm.ept_runs import Cells, Layouts, clip_sorted
from app.kvm.era import ZapInput
from app.kvm.eras import ERAS
from app.kvm.layouts import ovmf_state, seabios_state
from app.kvm.mtrr import update_mtrr_range
from app.kvm.scenario import Cr0Write, MtrrWrite, NoncoherentDma, PatWrite, VcpuState, VmConfig, apply_event
from app.x86.memtype import MemTypeError
from app.x86.mtrr import MtrrState, VarMtrr, mtrr_msrs

MPA = 46


def _mask(size: int) -> int:
    return (((1 << MPA) - 1) & ~(size - 1)) | 0x800


MTRRS = {
    "reset": MtrrState(),
    "ovmf": ovmf_state(),
    "seabios": seabios_state(),
    "on-no-fe": MtrrState(0x806, (0x0606060606060606,) * 11, (VarMtrr(0x80000000, _mask(1 << 31)),)),
    "unwritten-mask": MtrrState(0xC06, (0,) * 11, (VarMtrr(0x6, 0, mask_written=False),)),
}
VALUES = {  # per MSR kind: values that keep E/FE, clear them, or make a pair (in)valid
    "def": (0x0, 0x6, 0x806, 0xC06, 0xC00),
    "fixed": (0x0, 0x0606060606060606),
    "base": (0x0, 0x80000006, 0x100000000),
    "mask": (0x0, _mask(1 << 30), _mask(1 << 21)),
}


def _kind(msr: int) -> str:
    if msr == 0x2FF:
        return "def"
    if 0x200 <= msr < 0x210:
        return "mask" if msr & 1 else "base"
    return "fixed"


def _events():
    for msr in mtrr_msrs():
        for v in VALUES[_kind(msr)]:
            yield MtrrWrite(msr=msr, value=v)
    for cd, nw in ((True, False), (True, True), (False, False), (True, None)):
        yield Cr0Write(value=cd, cr0_nw=nw)
    yield NoncoherentDma(value=True)
    yield NoncoherentDma(value=False)
    yield PatWrite(value=0x0007040600070406)


VMS = [VmConfig(noncoherent_dma=n, quirk_cd_nw_cleared=q, self_snoop=s, guest_has_mtrr=g, quirk_ignore_guest_pat=i)
       for n, q, s, g, i in itertools.product((False, True), repeat=5) if i or s]


def _inputs():
    for vm in VMS:
        for cd in (False, True):
            for name, mtrr in MTRRS.items():
                before = VcpuState(cr0_cd=cd, mtrr=mtrr)
                for ev in _events():
                    try:
                        vm_after, after = apply_event(vm, before, ev)
                    except MemTypeError:
                        continue
                    yield name, ZapInput(vm, before, vm_after, after, ev)


def test_unaudited_decisions_make_the_audited_calls():
    n = 0
    for era in ERAS.values():
        for name, z in _inputs():
            audited = era.zap(z)
            fast = era.zap(ZapInput(z.vm, z.vcpu, z.vm_after, z.vcpu_after, z.event), audit=False)
            assert (fast.calls, fast.per_memslot) == (audited.calls, audited.per_memslot), (era.id, name, z.event)
            assert fast.path == ()
            calls = era.zap_calls(ZapInput(z.vm, z.vcpu, z.vm_after, z.vcpu_after, z.event))
            assert tuple(calls) == audited.calls, (era.id, name, z.event)
            n += 1
    # every era x 24 VMs (32 knob combinations less the 8 with the PAT quirk off and no
    # self-snoop, which no era can have) x CD 0/1 x 5 MTRR states x 82 events (75 MTRR
    # writes: 5 MTRRdefType, 11 fixed x 2, 8 bases x 3, 8 masks x 3; 4 CR0, 2 nc-DMA, 1 PAT)
    assert n == len(ERAS) * 24 * 2 * 5 * 82


@pytest.mark.parametrize("name", list(MTRRS))
def test_update_mtrr_range_without_reasons(name):
    for msr in mtrr_msrs():
        for v in VALUES[_kind(msr)]:
            try:
                after = MTRRS[name].write_msr(msr, v, MPA)
            except MemTypeError:
                continue
            everything = (0, 1 << MPA)
            audited = update_mtrr_range(msr, after, MPA, everything)
            assert update_mtrr_range(msr, after, MPA, everything, why=False) == (audited[0], "")


def test_equal_tables_give_equal_runs():
    windows = ((0, 1 << MPA), (0, 0x100000), (0xA0000, 0xC1000), (1 << 30, 8 << 30), (0x80000000, 0x100000000))
    for vm in VMS:
        for cd in (False, True):
            for mtrr in MTRRS.values():
                vcpu = VcpuState(cr0_cd=cd, mtrr=mtrr)
                lays = [Layouts(e, vm) for e in ERAS.values()]
                for x, y in itertools.combinations(lays, 2):
                    if x.table(cd) != y.table(cd):
                        continue
                    for a, b in windows:
                        assert x.runs(vcpu, a, b) == y.runs(vcpu, a, b), (x.era.id, y.era.id, vm, cd)


def _parting_trace() -> rp.Trace:
    """Two running vCPUs with OVMF's MTRRs and nc-DMA, the quirk on: MTRR writes, a CR0.CD
    bracket on vCPU 1, nc-DMA stopping and starting again."""
    ev = [MtrrWrite(msr=0x201, value=_mask(1 << 30)), MtrrWrite(msr=0x200, value=0x40000000),
          MtrrWrite(msr=0x2FF, value=0xC06), Cr0Write(value=True, cr0_nw=False), MtrrWrite(msr=0x203, value=0),
          Cr0Write(value=False, cr0_nw=False), NoncoherentDma(value=False), MtrrWrite(msr=0x200, value=0x6),
          NoncoherentDma(value=True), MtrrWrite(msr=0x2FF, value=0x806)]
    events = tuple(rp.TraceEvent(n % 2, e) for n, e in enumerate(ev))
    return rp.Trace(VmConfig(noncoherent_dma=True), 2, events * 3, VcpuState(mtrr=ovmf_state()))


def test_replay_all_equals_replay_era_by_era():
    import bench.run as br

    for trace in (_parting_trace(), br._adversarial_trace(300, vcpus=3), rp.ovmf_boot(3), rp.seabios_boot(2)):
        got = rp.replay_all(trace)
        for era in ERAS.values():
            assert got[era.id] == rp.replay(era, trace), (trace.name, era.id)


def test_eras_share_then_part():
    trace = _parting_trace()
    walk = rp._Walk(trace)
    rule_ids: dict = {}  # (shared by the eras, as in `_replay_eras`)
    runs = [rp._EraReplay(e, trace, walk, rule_ids) for e in ERAS.values()]
    ids = list(ERAS)
    lead = rp._leaders(runs)
    plans = rp._plans(runs)
    # the MTRR-honouring eras start alike, and so do the eras from 6.11 on
    assert [ids[j] for j in lead] == ["v4.2", "v4.2", "v4.2", "v6.11-rc1", "v6.11-rc1", "v6.11-rc1"]
    # series-v3 splits its calls by memslot (patch 11) where v4.2 does not: it counts its own
    assert [ids[k] for k, r in enumerate(runs) if r.counts_own] == ["series-v3"]
    first: dict[str, int] = {}
    at_start = [(k, j) for k, j in enumerate(lead) if j != k]
    following = list(at_start)
    vid, rows = 0, []
    for i, te in enumerate(trace.events):
        tid = walk.step(i, te, vid)
        if tid == len(rows):
            row = rp._decide(runs, walk, i, te, tid, plans)
            rows.append(() if row is None else rp._parting(runs, following, walk, row))
            # against every era as the one it started with: what parts now includes the above
            assert row is None or set(rows[-1]) <= set(rp._parting(runs, at_start, walk, row))
            assert all(k in dict(following) for k in rows[-1]), "an era that parted is not listed again"
        for k in rows[tid]:  # (a transition that comes back lists who parted at it then)
            first.setdefault(ids[k], i)
            if (k, lead[k]) in following:
                following.remove((k, lead[k]))
        vid = walk.edges[tid][2]
    # MTRR writes with CR0.CD=0 get the same calls in v4.2, series-v3 and v6.7 here; series-v3
    # splits them by memslot, which leaves the same EPT, so it follows v4.2 until event 3:
    # CR0.CD=1 on vCPU 1, where series-v3 zaps (patch 06) and v4.2 does not; at event 6
    # nc-DMA stops: v6.7 zaps everything (362ff6dca541), v4.2 has no such zap, and of the
    # eras from 6.11 on v6.11 and v6.16 zap where 6.11-rc1 does not.
    # (The eras share one rule-id table, as in `_replay_eras`: with a table per era the ids
    # collided, and eras took one another's decisions.)
    assert first == {"series-v3": 3, "v6.7": 6, "v6.11": 6, "v6.16": 6}


# -- the walk's keys, flat decisions, plans, memos ------------------------------------------------


def _random_events(rnd: random.Random, n: int) -> list:
    """Events drawn from few values, so that equal ones (also as other objects, and an int
    for a bool) come up often, of every class (equal values in different classes too)."""
    out = []
    for _ in range(n):
        v = rnd.choice((0, 1, True, False, 6))
        out.append(rnd.choice((
            MtrrWrite(msr=rnd.choice((0x200, 0x201, 0x2FF)), value=v),
            Cr0Write(value=v, cr0_nw=rnd.choice((None, False, True))),
            NoncoherentDma(value=v),
            PatWrite(value=v),
        )))
    return out


def test_transition_keys_equal_exactly_when_events_are():
    rnd = random.Random(9)
    evs = _random_events(rnd, 300)
    for x, y in itertools.product(evs[:120], evs[:120]):
        kx, ky = rp._transition_key(1, 2, x), rp._transition_key(1, 2, y)
        assert (kx == ky) == (x == y), (x, y)
        if x == y:
            assert hash(kx) == hash(ky)
    assert rp._transition_key(0, 1, evs[0]) != rp._transition_key(0, 2, evs[0])
    assert rp._transition_key(0, 1, evs[0]) != rp._transition_key(1, 1, evs[0])


def test_pair_ids_equal_exactly_when_pairs_are():
    rnd = random.Random(4)
    trace = rp.Trace(VmConfig(), 1, ())
    walk = rp._Walk(trace)
    pairs = [VarMtrr(rnd.choice((0, 6, 0x80000006)), rnd.choice((0, _mask(1 << 30))), rnd.choice((True, False, 1)))
             for _ in range(200)]
    ids = [walk._pair_id(3, p) for p in pairs]
    for (p, i), (q, j) in itertools.product(zip(pairs, ids, strict=True), zip(pairs, ids, strict=True)):
        assert (i == j) == (p == q), (p, q)


def test_flat_decisions_keep_calls_and_equality():
    decisions = []
    for era in ERAS.values():
        for n, (_, z) in enumerate(_inputs()):
            d = era.zap(z, audit=False)
            # the split a flat decision leaves out is the era's own for the event's kind
            assert d.per_memslot == getattr(era.zap_policy, z.event.kind).per_memslot, (era.id, z.event)
            if n % 7 == 0:  # a sample of every era's inputs
                decisions.append((d, n % 3, n % 5))
    flats = [rp._flat(d.calls, v, s) for d, v, s in decisions]
    for (d, v, s), f in zip(decisions, flats, strict=True):
        if not d.calls:
            assert f is None
            continue
        assert f[:2] == (v, s)
        assert tuple(zip(f[2::2], f[3::2], strict=True)) == d.calls
    sample = [(d, v, s, f) for (d, v, s), f in zip(decisions, flats, strict=True) if f is not None][:300]
    for (d, v, s, f), (e, w, t, g) in itertools.product(sample, sample):
        assert (f == g) == ((d.calls, v, s) == (e.calls, w, t))


def _straight_decisions(runs, walk, tid, ev):
    """Every era's decision worked out on its own: None for a quiet kind or no calls."""
    vid, sid, vid_after, sid_after = walk.edges[tid]
    z = ZapInput(walk.vms[vid], walk.states[sid], walk.vms[vid_after], walk.states[sid_after], ev)
    row = tuple(None if ev.kind in r.quiet else rp._flat(r.era.zap(z).calls, vid_after, sid_after) for r in runs)
    return row if any(d is not None for d in row) else None


@pytest.mark.parametrize("seed", range(3))
def test_planned_decisions_equal_every_eras_own(seed):
    import bench.run as br

    for trace in (br._adversarial_trace(150, vcpus=3, seed=seed), _parting_trace(), rp.seabios_boot(2)):
        walk = rp._Walk(trace)
        rule_ids: dict = {}  # (shared by the eras, as in `_replay_eras`)
        runs = [rp._EraReplay(e, trace, walk, rule_ids) for e in ERAS.values()]
        plans = rp._plans(runs)
        vid, seen = 0, 0
        for i, te in enumerate(trace.events):
            tid = walk.step(i, te, vid)
            if tid == seen:
                seen += 1
                assert rp._decide(runs, walk, i, te, tid, plans) == _straight_decisions(runs, walk, tid, te.event)
            vid = walk.edges[tid][2]


def test_pair_range_memo_equals_a_fresh_cells():
    import bench.run as br

    trace = br._adversarial_trace(400, vcpus=2, seed=5)
    vm, states = trace.vm, [trace.initial] * 2
    warm = Cells(vm)
    rnd = random.Random(2)
    for te in trace.events:
        vm, states[te.vcpu] = apply_event(vm, states[te.vcpu], te.event)
        a = rnd.randrange(0, 64 << 28, 1 << 20)
        b = a + (1 << rnd.randrange(12, 31))
        m = states[te.vcpu].mtrr
        # (the types: a lookup's reason is that of the first state whose walk had its key)
        assert [(s, e, lk.type) for s, e, lk in warm.mtrr_types(m, a, b)] == \
            [(s, e, lk.type) for s, e, lk in Cells(vm).mtrr_types(m, a, b)]


def test_a_piece_holding_every_run_of_its_window_is_the_window():
    """What `_EraReplay.zap` relies on for per-memslot pieces: runs that all lie inside a
    piece are what clipping them to the piece gives."""
    rnd = random.Random(7)
    for _ in range(2000):
        cuts = sorted(rnd.sample(range(0, 200), rnd.randrange(0, 9) * 2))
        runs = [(s, e, rnd.randrange(3)) for s, e in zip(cuts[::2], cuts[1::2], strict=True)]
        pa = rnd.randrange(0, 200)
        pb = rnd.randrange(pa, 201)
        inside = not runs or (runs[0][0] >= pa and runs[-1][1] <= pb)
        if inside:
            assert clip_sorted(runs, pa, pb) == runs
