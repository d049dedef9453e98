"""The replay's fast paths give what the audited paths give (issue 9 §4).

* `era.zap(z, audit=False)` (the replay's decision: no audit steps, no reason strings)
  makes exactly the calls of `era.zap(z)`, for every era, every event kind, every MTRR
  MSR, every VM knob combination the zap gates read and before-states with CR0.CD 0/1
  and MTRRs off / on / fixed ranges on: exhaustive over that space.
* `update_mtrr_range(..., why=False)` gives the audited range.
* Eras with one run-key table (`Layouts.table`) turn the same cells into the same runs.
* `replay_all` over several eras (which share EPTs between eras until they part) equals
  `replay` era by era, and eras part where their decisions differ.
"""

from __future__ import annotations

import itertools

import pytest

from app.kvm import replay as rp
from app.kvm.ept_runs import Layouts
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
    runs = [rp._EraReplay(e, trace, walk, {}) for e in ERAS.values()]
    ids = list(ERAS)
    lead = rp._leaders(runs)
    plans = rp._plans(runs)
    # the MTRR-honouring eras start alike, and so do the eras from 6.11 on
    assert [ids[j] for j in lead] == ["v4.2", "v4.2", "v4.2", "v6.11-rc1", "v6.11-rc1", "v6.11-rc1"]
    first: dict[str, int] = {}
    vid, rows = 0, []
    for i, te in enumerate(trace.events):
        tid = walk.step(i, te, vid)
        if tid == len(rows):
            row = rp._decide(runs, walk, i, te, tid, plans)
            rows.append(() if row is None else rp._parting(runs, lead, walk, row))
        for k in rows[tid]:
            first.setdefault(ids[k], i)
        vid = walk.edges[tid][2]
    # MTRR writes get the same decisions in v4.2, series-v3 and v6.7 here, and with the
    # quirk on no era zaps on the CD toggles; at event 6 nc-DMA stops:
    # v6.7 and series-v3 zap everything (362ff6dca541), v4.2 has no such zap. The eras from
    # 6.11 on zap alike on it.
    assert first == {"series-v3": 6, "v6.7": 6}
