"""Multi-vCPU trace replay against kernel eras (app/kvm/replay.py).

Why: the review (docs/notes/review-thread.md §3 q4, q7, q8) asks how many kvm_zap_gfn_range() calls a
firmware boot makes, how many are made while CR0.CD=1 or duplicate each other, and whether
stale SPTEs survive. Every expected figure below is derived in a comment from the rules in
docs/notes/kernel-history.md §1-§3, not read back from the code under test; where the docs give a
number (84 / 50 zap calls) the test says how the model's number relates to it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.kvm import replay as rp
from app.kvm.era import ZapInput
from app.kvm.eras import ERAS
from app.kvm.layouts import DEF_TYPE_OFF, DEF_TYPE_ON, linux_hole_writes, ovmf_state, ovmf_writes, seabios_state
from app.kvm.ranges import pages
from app.kvm.replay import (
    GENERATORS,
    Trace,
    TraceEvent,
    decode_key,
    events_from_writes,
    final_states,
    layout,
    mtrr_update_events,
    ovmf_boot,
    replay,
    replay_all,
    seabios_boot,
)
from app.kvm.scenario import (
    CR0_CD,
    DEFAULT_MEMORY_MAP,
    MMIO,
    MTRR_WRITE,
    PAT_WRITE,
    RAM,
    Cr0Write,
    MtrrWrite,
    NoncoherentDma,
    PatWrite,
    VcpuState,
    VmConfig,
)
from app.kvm.trace_import import parse_trace, trace_from_text
from app.kvm.zap import audit
from app.x86.memtype import MemType, MemTypeError
from app.x86.mtrr import FIXED_MSRS, MSR_MTRR_DEF_TYPE, var_msr_index

NC = VmConfig(noncoherent_dma=True)
RAM_PAGES = sum(r.end - r.start for r in DEFAULT_MEMORY_MAP if r.kind == RAM) >> 12
MMIO_PAGES = sum(r.end - r.start for r in DEFAULT_MEMORY_MAP if r.kind == MMIO) >> 12
ALL_PAGES = RAM_PAGES + MMIO_PAGES
# RAM pages whose final OVMF/SeaBIOS MTRR type is not WB: the VGA window and option-ROM
# area 0xA0000-0xFFFFF (fixed UC in OVMF; UC and WP in SeaBIOS) and the bochs VRAM BAR inside
# the UC 32-bit hole (0xFD000000-0xFE000000). The VGA window is a reserved host ISA page:
# not is_mmio from 4.16 (app.kvm.host_page), so the map's kind is RAM.
NON_WB_RAM = ((0x100000 - 0xA0000) + (0xFE000000 - 0xFD000000)) >> 12
DOC = Path(__file__).resolve().parents[1] / "app" / "kvm" / "trace_format.md"


def defs(trace: Trace) -> int:
    return sum(1 for te in trace.events if te.event.kind == MTRR_WRITE and te.event.msr == MSR_MTRR_DEF_TYPE)


def sanity() -> None:
    assert (RAM_PAGES, MMIO_PAGES) == (1052672, 65536)
    assert NON_WB_RAM == 4192


sanity()


# -- parser ------------------------------------------------------------------------------------

TRACE_CMD = """\
cpus=4
version = 6
CPU 2 is empty
       CPU 0/KVM-12345 [003]  1234.567890: kvm_msr:              msr_write 2ff = 0x6
       CPU 0/KVM-12345 [003]  1234.567891: kvm_msr:              msr_read 2ff = 0x6
       CPU 0/KVM-12345 [003]  1234.567892: kvm_exit:             reason MSR_WRITE rip 0xfff0 info 0 0
       CPU 0/KVM-12345 [003] d..1 1234.567893: kvm_msr:          msr_write 200 = 0x80000000
       CPU 0/KVM-12345 [003]  1234.567894: kvm_msr:              msr_write 10 = 0x1234
       CPU 0/KVM-12345 [003]  1234.567895: kvm_msr:              msr_write 201 = 0x3fff80000800 (#GP)
       CPU 3/KVM-12348 [001]  1234.567896: kvm_cr:               cr_write 0 = 0x60000011
       CPU 3/KVM-12348 [001]  1234.567897: kvm_cr:               cr_write 0 = 0x60000011
       CPU 3/KVM-12348 [001]  1234.567898: kvm_cr:               cr_write 4 = 0x20
       CPU 3/KVM-12348 [001]  1234.567899: kvm_cr:               cr_read 0 = 0x60000011
       CPU 3/KVM-12348 [001]  1234.567900: kvm_msr:              msr_write 277 = 0x7010600070106
       CPU 3/KVM-12348 [001]  1234.567901: kvm_cr:               cr_write 0 = 0x40000011
"""

PERF = """\
# ========
# captured on: today
# ========
CPU 1/KVM 4567 [001] 99.000001: kvm:kvm_cr: cr_write 0 = 0x60000011
CPU 1/KVM 4567 [001] 99.000002: kvm:kvm_msr: msr_write 2ff = 0xc06
CPU 1/KVM  4500/4567 [005]    99.000003: kvm:kvm_msr: msr_write 250 = 0x606060606060606
CPU 1/KVM 4567 [001] 99.000004: kvm:kvm_entry: vcpu 1
CPU 1/KVM 4567 [001] 99.000005: kvm:kvm_cr: cr_write 0 = 0x11
"""


def test_trace_cmd_report_lines():
    evs = parse_trace(TRACE_CMD)
    # Kept: defType 0x6, PHYSBASE0, the vCPU 3 CR0 change (CD=1,NW=1), PAT, then NW cleared.
    # Skipped: headers, msr_read, kvm_exit, MSR 0x10 (TSC), the (#GP) write, the repeated
    # CR0 value, CR4 and cr_read.
    assert [(e.vcpu, e.event.kind, e.line) for e in evs] == [
        (0, MTRR_WRITE, 4), (0, MTRR_WRITE, 7), (3, CR0_CD, 10), (3, PAT_WRITE, 14), (3, CR0_CD, 15),
    ]
    assert evs[0].event == MtrrWrite(msr=0x2FF, value=0x6)
    assert evs[1].event == MtrrWrite(msr=0x200, value=0x80000000)
    assert evs[2].event == Cr0Write(value=True, cr0_nw=True)
    assert evs[3].event == PatWrite(value=0x7010600070106)
    assert evs[4].event == Cr0Write(value=True, cr0_nw=False)


def test_perf_script_lines():
    evs = parse_trace(PERF)
    assert [(e.vcpu, e.event) for e in evs] == [
        (1, Cr0Write(value=True, cr0_nw=True)),
        (1, MtrrWrite(msr=0x2FF, value=0xC06)),
        (1, MtrrWrite(msr=0x250, value=0x606060606060606)),
        (1, Cr0Write(value=False, cr0_nw=False)),
    ]
    assert [e.line for e in evs] == [4, 5, 6, 8]


def test_plain_format_and_comments():
    text = """
    # a comment line
    vcpu 0 cr0 cd=1          # trailing comment
    vcpu 0 cr0 cd=0 nw=0
    VCPU 2 WRMSR 0x2FF 3078
    vcpu 2 wrmsr 0x277 0x0007040600070406
    vm ncdma on
    vcpu 5 ncdma off
    vcpu 1 cr0 0x80000011    # same CD/NW as the initial state: no event
    vcpu 1 cr0 0xC0000011    # CD=1
    """
    evs = parse_trace(text)
    assert [(e.vcpu, e.event) for e in evs] == [
        (0, Cr0Write(value=True)),
        (0, Cr0Write(value=False, cr0_nw=False)),
        (2, MtrrWrite(msr=0x2FF, value=0xC06)),
        (2, PatWrite(value=0x0007040600070406)),
        (0, NoncoherentDma(value=True)),
        (5, NoncoherentDma(value=False)),
        (1, Cr0Write(value=True, cr0_nw=False)),
    ]
    assert [e.line for e in evs] == [3, 4, 5, 6, 7, 8, 10]


def test_cr0_changes_tracked_from_initial_state():
    # From a RESET-like state (CD=1, NW=1) the same value is no change; clearing NW is one.
    init = VcpuState(cr0_cd=True, cr0_nw=True)
    evs = parse_trace("vcpu 0 cr0 0x60000010\nvcpu 0 cr0 0x40000010\nvcpu 0 cr0 0x40000011", initial=init)
    assert [e.event for e in evs] == [Cr0Write(value=True, cr0_nw=False)]


@pytest.mark.parametrize("text, line, words", [
    ("vcpu 0 cr0 cd=1\n\nvcpu 0 cr0 0x20000011", 3, "NW=1 with CD=0"),
    ("vcpu 0 cr0 cd=0 nw=1", 1, "NW=1 with CD=0"),
    ("# c\nCPU 0/KVM-1 [000] 1.0: kvm_cr: cr_write 0 = 0x20000000", 2, "NW=1 with CD=0"),
    ("vcpu 0 cr0 0x100000000", 1, "bits 63:32"),
    ("vcpu 0 cr0 cd=2", 1, "bad CR0 field"),
    ("vcpu 0 cr0 nw=0", 1, "needs cd="),
    ("vcpu 0 wrmsr 0x10 0x1", 1, "neither an MTRR MSR nor IA32_PAT"),
    ("vcpu 0 wrmsr 2ff 0x1", 1, "not a number"),
    ("vcpu 0 wrmsr 0x2ff 0x10000000000000000", 1, "64 bits"),
    ("vcpu 1024 cr0 cd=1", 1, "not below 1024"),
    ("vcpu 0 ncdma maybe", 1, "'on' or 'off'"),
    ("vcpu 0 jump 0x10", 1, "unrecognised line"),
    ("\n\n\n\n\n\nmov cr0, eax", 7, "unrecognised line"),
    ("qemu-system-x86-77 [001] 9.5: kvm_msr: msr_write 2ff = 0x0", 1, "(TID 77) has no known vCPU"),
    ("CPU 0/KVM-1 [000] 1.0: kvm_msr: msr_write 2ff", 1, "cannot read kvm_msr payload"),
    ("CPU 0/KVM-1 [000] 1.0: kvm_cr: cr_write zero", 1, "cannot read kvm_cr payload"),
    ("vcpu 0 cr0 cd=1\nCPU:3 [LOST 120 EVENTS]", 2, "lost events"),
    ("x" * 5000, 1, "longer than"),
])
def test_bad_lines_name_their_line(text, line, words):
    with pytest.raises(MemTypeError) as e:
        parse_trace(text)
    assert str(e.value).startswith(f"line {line}: ")
    assert e.value.field == f"line {line}"
    assert words in str(e.value)


def test_max_events():
    text = "\n".join(f"vcpu 0 cr0 cd={i % 2}" for i in range(6))
    assert len(parse_trace(text, max_events=6)) == 6
    with pytest.raises(MemTypeError, match=r"^line 6: more than 5 events"):
        parse_trace(text, max_events=5)
    with pytest.raises(MemTypeError):
        parse_trace(text, max_events=0)


def test_trace_format_doc_examples_parse():
    blocks = re.findall(r"```\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 3
    for b in blocks:
        assert parse_trace(b)
    yan = parse_trace(blocks[0])
    assert [e.event.kind for e in yan] == [CR0_CD, MTRR_WRITE, MTRR_WRITE, MTRR_WRITE, CR0_CD]
    boot = parse_trace(blocks[1])
    assert [e.event for e in boot[:3]] == [
        NoncoherentDma(value=True), Cr0Write(value=True, cr0_nw=True), Cr0Write(value=True, cr0_nw=False)]
    # The tracepoint block: one CR0 change on each vCPU; the (#GP) write is skipped.
    tp = parse_trace(blocks[2])
    assert [(e.vcpu, e.event.kind) for e in tp] == [(0, MTRR_WRITE), (0, CR0_CD), (1, CR0_CD)]


def test_trace_from_text_counts_vcpus():
    t = trace_from_text("vcpu 3 cr0 cd=1\nvcpu 1 cr0 cd=1", NC, name="x")
    assert t.vcpus == 4 and t.name == "x" and len(t.events) == 2
    with pytest.raises(MemTypeError) as e:
        trace_from_text("vcpu 3 cr0 cd=1", NC, vcpus=2)
    assert e.value.field == "events[0].vcpu"


# -- Trace validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("vcpus", [0, 1025, True, 2.0])
def test_trace_vcpu_count_bounded(vcpus):
    with pytest.raises(MemTypeError) as e:
        Trace(NC, vcpus, ())
    assert e.value.field == "vcpus"


@dataclass(frozen=True)
class Reboot:
    """An event of a kind the model does not have (the scenario types cannot spell one)."""

    kind: str = "reboot"


def test_trace_validates_events_by_index():
    ok = TraceEvent(0, Cr0Write(value=True))
    with pytest.raises(MemTypeError) as e:
        Trace(NC, 2, (ok,) * 12 + (TraceEvent(2, Cr0Write(value=True)),))
    assert e.value.field == "events[12].vcpu"
    with pytest.raises(MemTypeError) as e:
        Trace(NC, 2, (ok, TraceEvent(0, Reboot())))  # type: ignore[arg-type]
    assert e.value.field == "events[1].event.kind"
    with pytest.raises(MemTypeError) as e:
        Trace(NC, 2, (TraceEvent(0, MtrrWrite(msr=0x277, value=0)),))
    assert e.value.field == "events[0].event.msr"
    with pytest.raises(MemTypeError) as e:
        Trace(NC, 2, (TraceEvent(0, MtrrWrite(msr=0x2FF, value=-1)),))
    assert e.value.field == "events[0].event.value"
    with pytest.raises(MemTypeError) as e:
        Trace(NC, 2, ("vcpu 0 cr0 cd=1",))
    assert e.value.field == "events[0]"
    with pytest.raises(MemTypeError) as e:
        Trace(NC, 1, (), initial=VcpuState(cr0_nw=True))
    assert e.value.field == "initial.cr0_nw"
    with pytest.raises(MemTypeError) as e:
        Trace(replace(NC, maxphyaddr=20), 1, ())
    assert e.value.field == "vm.maxphyaddr"


def test_trace_event_count_bounded(monkeypatch):
    monkeypatch.setattr(rp, "MAX_EVENTS", 3)
    ev = TraceEvent(0, Cr0Write(value=True))
    Trace(NC, 1, (ev,) * 3)
    with pytest.raises(MemTypeError) as e:
        Trace(NC, 1, [ev] * 4)
    assert e.value.field == "events"


def test_trace_coerces_lists_and_is_hashable():
    t = Trace(NC, 1, [TraceEvent(0, Cr0Write(value=True))])
    assert isinstance(t.events, tuple)
    hash(t)


def test_replay_reports_invalid_writes_with_index_and_line():
    t = trace_from_text("vcpu 0 cr0 cd=1\nvcpu 0 wrmsr 0x2ff 0x3", NC)  # type 3 is reserved
    with pytest.raises(MemTypeError) as e:
        replay(ERAS["v6.7"], t)
    assert e.value.field == "events[1].value"
    assert "(line 2)" in str(e.value)
    with pytest.raises(MemTypeError) as e:
        final_states(t)
    assert e.value.field == "events[1].value"


def test_replay_refuses_quirk_settings_the_era_lacks():
    t = Trace(replace(NC, quirk_ignore_guest_pat=False), 1, ())
    with pytest.raises(MemTypeError) as e:
        replay(ERAS["v4.2"], t)
    assert e.value.field == "vm.quirk_ignore_guest_pat"
    assert replay(ERAS["v6.16"], t).zap_calls == 0


# -- generators ---------------------------------------------------------------------------------


def pass_kinds(n_writes: int) -> list[str]:
    return [CR0_CD, MTRR_WRITE] + [MTRR_WRITE] * n_writes + [MTRR_WRITE, CR0_CD]


def test_update_pass_shape():
    evs = mtrr_update_events(3, ovmf_writes())
    assert [e.event.kind for e in evs] == pass_kinds(13)
    assert {e.vcpu for e in evs} == {3}
    assert evs[0].event == Cr0Write(value=True, cr0_nw=False)
    assert evs[1].event == MtrrWrite(msr=0x2FF, value=DEF_TYPE_OFF)
    assert evs[-2].event == MtrrWrite(msr=0x2FF, value=DEF_TYPE_ON)
    assert evs[-1].event == Cr0Write(value=False, cr0_nw=False)
    assert [e.event.kind for e in mtrr_update_events(0, [], cache_disable=False)] == [MTRR_WRITE, MTRR_WRITE]
    assert events_from_writes(1, [(0x277, 6)]) == [TraceEvent(1, PatWrite(value=6))]
    with pytest.raises(MemTypeError):
        events_from_writes(1, [(0x10, 6)])


# -- replay: OVMF / SeaBIOS boots at 8 vCPUs, per era ------------------------------------------------


@pytest.fixture(scope="module")
def ovmf8():
    t = ovmf_boot(8)
    return t, replay_all(t)


@pytest.fixture(scope="module")
def seabios8():
    t = seabios_boot(8)
    return t, replay_all(t)


def test_post_611_eras_never_zap_a_boot(ovmf8, seabios8):
    # 6.11+: MTRR writes and CD toggles never zap; nc-DMA is present from the start, so its
    # 0->1 transition never happens inside the trace. Every page is WB without IPAT (guest
    # PAT decides) or UC for MMIO, before and after: nothing stale.
    for _, results in (ovmf8, seabios8):
        for era in ("v6.11-rc1", "v6.11", "v6.16"):
            r = results[era]
            assert (r.zap_calls, r.empty_calls, r.zapped_pages, r.stale_pages) == (0, 0, 0, 0)
            assert r.per_vcpu_stale == (0,) * 8 and r.vcpus_agree


# -- v4.2 zap-count formula on arbitrary MTRR traffic ---------------------------------------------


def formula_v42(trace: Trace) -> tuple[int, int]:
    """(zap calls, empty calls) per docs/notes/kernel-history.md §3 for v4.2..v6.6, nc-DMA on, quirk on.

    Each vCPU tracks its own E/FE and which PHYSMASKs were ever written. MTRRdefType: one
    call. A fixed MSR: a call iff E=1 and FE=1 after the write. A PHYSBASE/PHYSMASK: only if
    E=1; the range comes from the new base and mask: a mask never written is 0, so the end
    wraps below the start (4.15+): an empty call. CD toggles and PAT: nothing.
    """
    deftype = [trace.initial.mtrr.def_type] * trace.vcpus
    masks = [{n for n, p in enumerate(trace.initial.mtrr.variable) if p.mask_written}] * trace.vcpus
    masks = [set(m) for m in masks]
    calls = empty = 0
    for te in trace.events:
        ev, v = te.event, te.vcpu
        if ev.kind != MTRR_WRITE:
            continue
        if ev.msr == MSR_MTRR_DEF_TYPE:
            deftype[v] = ev.value
            calls += 1
            continue
        e, fe = bool(deftype[v] & 0x800), bool(deftype[v] & 0x400)
        var = var_msr_index(ev.msr)
        if var is None:
            calls += e and fe
            continue
        n, is_mask = var
        if is_mask:
            masks[v].add(n)
        if e:
            if n in masks[v]:
                calls += 1
            else:
                empty += 1
    return calls, empty


MTRR_OPS = st.one_of(
    st.tuples(st.just("cd"), st.booleans()),
    st.tuples(st.just("def"), st.sampled_from([0x0, 0x6, 0x806, 0xC06, 0x400, 0xC00])),
    st.tuples(st.just("fixed"), st.sampled_from([f.msr for f in FIXED_MSRS]), st.sampled_from([0, 0x0606060606060606])),
    st.tuples(st.just("base"), st.integers(0, 3), st.sampled_from([0x80000000, 0xC0000006, 0x800000000])),
    st.tuples(st.just("mask"), st.integers(0, 3),
              st.sampled_from([0x3FFF80000800, 0x3FFFC0000800, 0x3FF800000800, 0x0])),
)


def ops_to_events(ops) -> list[TraceEvent]:
    out = []
    for vcpu, op in ops:
        if op[0] == "cd":
            out.append(TraceEvent(vcpu, Cr0Write(value=op[1], cr0_nw=False)))
        elif op[0] == "def":
            out.append(TraceEvent(vcpu, MtrrWrite(msr=0x2FF, value=op[1])))
        elif op[0] == "fixed":
            out.append(TraceEvent(vcpu, MtrrWrite(msr=op[1], value=op[2])))
        else:
            msr = 0x200 + 2 * op[1] + (op[0] == "mask")
            out.append(TraceEvent(vcpu, MtrrWrite(msr=msr, value=op[2])))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), MTRR_OPS), max_size=40))
def test_v42_and_v67_call_formula_holds_for_any_mtrr_traffic(ops):
    t = Trace(NC, 2, tuple(ops_to_events(ops)))
    want = formula_v42(t)
    for era in ("v4.2", "v6.7"):
        r = replay(ERAS[era], t)
        assert (r.zap_calls, r.empty_calls) == want
        assert 0 <= r.excess_pages <= r.zapped_pages
        assert r.duplicate_calls <= r.zap_calls
        assert r.calls_while_cd <= r.zap_calls
        assert all(0 <= s <= r.mapped_pages for s in r.per_vcpu_stale)
    for era in ("v6.11", "v6.16"):
        assert replay(ERAS[era], t).zap_calls == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), MTRR_OPS), max_size=25))
def test_series_v3_never_zaps_mtrr_writes_while_cd(ops):
    t = Trace(NC, 2, tuple(ops_to_events(ops)))
    r = replay(ERAS["series-v3"], t)
    assert not any(c.kind == MTRR_WRITE and c.cd for c in r.calls)


def test_empty_call_for_a_pair_whose_mask_was_never_written():
    # MTRRs on (E=1), then PHYSBASE3 written with no PHYSMASK3 ever: KVM's range wraps, so
    # kvm_zap_gfn_range() sees end <= start (empty). Then the mask: a real call.
    text = "vcpu 0 wrmsr 0x2ff 0xc06\nvcpu 0 wrmsr 0x206 0x800000000\nvcpu 0 wrmsr 0x207 0x3ff800000800"
    r = replay(ERAS["v6.7"], trace_from_text(text, NC))
    assert (r.zap_calls, r.empty_calls) == (2, 1)
    assert [(c.empty, c.msr) for c in r.calls] == [(False, 0x2FF), (True, 0x206), (False, 0x207)]
    # The mask write zaps only its new range [32 GiB, 64 GiB), which holds the GPU BAR.
    assert r.calls[2].pages == (0x810000000 - 0x800000000) >> 12


# -- replay agrees with zap.audit on single events --------------------------------------------------

STATES = {
    "reset": VcpuState(),
    "ovmf": VcpuState(mtrr=ovmf_state(linux=True)),
    "ovmf-cd": VcpuState(cr0_cd=True, mtrr=ovmf_state()),
    "seabios": VcpuState(mtrr=seabios_state()),
}
EVENTS = {
    "cd1": Cr0Write(value=True), "cd0": Cr0Write(value=False), "off": MtrrWrite(msr=0x2FF, value=DEF_TYPE_OFF),
    "on": MtrrWrite(msr=0x2FF, value=DEF_TYPE_ON), "fix": MtrrWrite(msr=0x250, value=0),
    "base": MtrrWrite(msr=0x200, value=0x80000006), "hole": MtrrWrite(msr=0x203, value=linux_hole_writes()[1][1]),
    "dma1": NoncoherentDma(value=True), "dma0": NoncoherentDma(value=False), "pat": PatWrite(value=0x0007010600070106),
}


@pytest.mark.parametrize("era", list(ERAS))
@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize("ev", list(EVENTS))
@pytest.mark.parametrize("ncdma, quirk", [(True, True), (False, True), (True, False)])
def test_single_event_matches_zap_audit(era, state, ev, ncdma, quirk):
    # One event from a freshly faulted EPT is exactly what zap.audit reasons about: stale =
    # pages needing a new entry that no call zapped, excess = zapped pages that needed none.
    vm = replace(VmConfig(noncoherent_dma=ncdma), quirk_cd_nw_cleared=quirk)
    vcpu = STATES[state]
    a = audit(ERAS[era], vm, vcpu, EVENTS[ev])
    r = replay(ERAS[era], Trace(vm, 1, (TraceEvent(0, EVENTS[ev]),), initial=vcpu))
    assert r.stale_pages == pages(a.stale)
    assert r.excess_pages == pages(a.excess) + (r.zapped_pages - pages(a.zapped_mapped))
    calls = [c for c in a.calls if c[1] > c[0]]
    assert r.empty_calls == len(a.calls) - len(calls)
    if not ERAS[era].zap(ZapInput(vm, vcpu, a.vm_after, a.vcpu_after, EVENTS[ev])).per_memslot:
        assert r.zap_calls == len(calls)
        if sum(e - s for s, e in calls) == sum(e - s for s, e in a.zapped):  # calls do not overlap
            assert r.zapped_pages == pages(a.zapped_mapped)


# -- hand-made two-vCPU scenarios (docs/notes/review-thread.md §2 themes) -------------------------------------------

YAN = """
# Yan's 5 steps (L(ZHBloxxmY/EUyswL@yzhao56-desk.sh.intel.com)) on vCPU 0: a UC range
# (pair 0, the 32-bit hole that holds the VRAM BAR) is rewritten as WB while CD=1 and
# MTRRs are off. vCPU 1 keeps the old layout.
vcpu 0 cr0 cd=1
vcpu 0 wrmsr 0x2ff 0x006
vcpu 0 wrmsr 0x200 0x80000006
vcpu 0 wrmsr 0x2ff 0xc06
vcpu 0 cr0 cd=0
"""

SEAN = """
# One AP re-syncs its MTRRs (CD=1, disable, enable, CD=0) while vCPU 0 runs on: under the
# quirk the AP's CD=1 faults serve every vCPU (EPT is per VM, the memtype per fault).
vcpu 1 cr0 cd=1
vcpu 1 wrmsr 0x2ff 0x006
vcpu 1 wrmsr 0x2ff 0xc06
vcpu 1 cr0 cd=0
"""

OVMF_ON = VcpuState(mtrr=ovmf_state())
VRAM = (0xFE000000 - 0xFD000000) >> 12
ROM = (0x100000 - 0xA0000) >> 12  # VGA window (RAM: a reserved host ISA page) + option ROMs


def scenario(text: str) -> dict[str, rp.ReplayResult]:
    return replay_all(trace_from_text(text, NC, vcpus=2, initial=OVMF_ON))


def test_yan_five_steps():
    r = scenario(YAN)
    # v6.7 (patches 1-5, 7): MTRRdefType writes still zap while CD=1 (06 not merged), so
    # steps 2 and 4 refault everything as vCPU 0 sees it under CD=1: WB without IPAT. The
    # rewritten range ends WB, so it is *not* stale; what stays stale is every range whose
    # final type is not WB: the UC VGA and option-ROM window. "stale entries remain only where the
    # MTRR type != WB" (docs/notes/kernel-history.md §3). vCPU 1 still has the hole UC, so for it the VRAM
    # BAR is stale as well.
    v67 = r["v6.7"]
    assert v67.stale_pages == ROM and v67.stale_ranges == ((0xA0000, 0x100000),)
    assert v67.per_vcpu_stale == (ROM, ROM + VRAM)
    assert not v67.vcpus_agree
    assert v67.zap_calls == 2 and v67.calls_while_cd == 2
    # v4.2: the same zaps refault WB|IPAT and CD=0 does not zap: every RAM page is stale.
    assert r["v4.2"].stale_pages == RAM_PAGES
    # series-v3 (06 + 10): CD=1 zaps the non-WB ranges (fixed window, hole), the MTRR writes
    # under CD=1 do not zap, and CD=0 zaps the non-WB ranges of the *new* MTRRs (fixed
    # window only). The hole, faulted WB without IPAT under CD=1, is right for WB: clean.
    v3 = r["series-v3"]
    assert v3.stale_pages == 0 and v3.per_vcpu_stale == (0, VRAM)
    assert not any(c.kind == MTRR_WRITE for c in v3.calls)
    # Yan's point was against zapping only on CD toggles *without* the CD=1 zap: her stale
    # range needs the zap at step 1, which series-v3 makes (4 calls: fixed window in three
    # memslots + the VRAM BAR), then 3 at step 5 (fixed window only).
    assert [c.event for c in v3.calls] == [0] * 4 + [4] * 3
    for era in ("v6.11-rc1", "v6.11", "v6.16"):
        assert r[era].zap_calls == 0 and r[era].stale_pages == 0


def test_cd1_faults_on_one_vcpu_go_stale_for_all():
    r = scenario(SEAN)
    # v6.7: vCPU 1's MTRRdefType writes zap everything and vCPU 1 (CD=1) refaults WB; CD=0
    # does not zap. Both vCPUs (same MTRRs) now see WB where their MTRRs say UC.
    assert r["v6.7"].per_vcpu_stale == (ROM + VRAM, ROM + VRAM)
    assert r["v6.7"].vcpus_agree
    assert r["v4.2"].stale_pages == RAM_PAGES
    assert r["series-v3"].stale_pages == 0
    # The BSP never toggled CD, yet the stale entries are its problem too: the per-VM EPT.
    assert all(c.vcpu == 1 for c in r["v6.7"].calls)


def test_nc_dma_changes_the_vm_for_every_vcpu():
    # Start without nc-DMA: every RAM page WB|IPAT in every era. vCPU 1 then "attaches" an
    # nc-DMA device. 6.7+ zap everything on the 0->1 transition (362ff6dca541; 6.11 under
    # kvm_mmu_may_ignore_guest_pat(), 6.16 under the IGNORE_GUEST_PAT quirk, on by default)
    # and vCPU 1 refaults; v4.2 only counts, so the WB|IPAT entries stay although guest
    # MTRRs now apply (vCPU 0 and 1 both have the OVMF layout: WB, so only IPAT differs).
    t = trace_from_text("vcpu 1 ncdma on", VmConfig(), vcpus=2, initial=OVMF_ON)
    r = replay_all(t)
    assert r["v4.2"].zap_calls == 0 and r["v4.2"].stale_pages == RAM_PAGES
    for era in ("v6.7", "series-v3", "v6.11", "v6.16"):
        assert r[era].zap_calls == 1 and r[era].stale_pages == 0, era
        assert r[era].calls[0].vcpu == 1
    # 6.11-rc1 zaps only without self-snoop (the default CPU has it), and its entries do not
    # change: WB without IPAT before and after.
    assert r["v6.11-rc1"].zap_calls == 0 and r["v6.11-rc1"].stale_pages == 0


def test_per_memslot_pieces_outside_memory_are_not_calls():
    # A UC variable range at 8 GiB (no memslot there): series-v3's CD toggle queues it but
    # patch 11 finds no memslot piece, so no kvm_zap_gfn_range() call is made for it.
    mtrr = ovmf_state().write_msr(0x204, 0x200000000, 46).write_msr(0x205, 0x3FFFC0000800, 46)
    t = trace_from_text("vcpu 0 cr0 cd=1", NC, initial=VcpuState(mtrr=mtrr))
    r = replay(ERAS["series-v3"], t)
    assert [(c.start, c.end) for c in r.calls] == [
        (0, 0xA0000), (0xA0000, 0xC0000), (0xC0000, 0x100000), (0xFD000000, 0xFE000000)]


def test_duplicates_need_an_unchanged_range():
    # Two identical zap-alls while nothing changes in between: the second is a duplicate.
    # A zap-all that changes entries (CD=0 -> MTRR types after WB|IPAT) is not.
    text = ("vcpu 0 cr0 cd=1\nvcpu 0 wrmsr 0x2ff 0xc06\nvcpu 0 wrmsr 0x2ff 0xc06\nvcpu 0 cr0 cd=0\n"
            "vcpu 0 wrmsr 0x2ff 0xc06")
    r = replay(ERAS["v4.2"], trace_from_text(text, NC, initial=OVMF_ON))
    assert [c.duplicate for c in r.calls] == [False, True, False]
    assert [c.excess for c in r.calls] == [MMIO_PAGES, ALL_PAGES, MMIO_PAGES]


def test_duplicates_are_per_range():
    # v4.2, OVMF layout, E=1 FE=1: a fixed-MSR write zaps only its window [0, 512 KiB).
    # The first call over a range is never a duplicate, even when it changes nothing; a
    # repeat is, unless something (here a zap-all under CD=1 that refaulted WB|IPAT) changed
    # the range in between, even if the repeat itself then changes nothing.
    wb = "vcpu 0 wrmsr 0x250 0x0606060606060606"
    text = "\n".join([wb, wb, "vcpu 0 cr0 cd=1", "vcpu 0 wrmsr 0x2ff 0xc06", wb, wb])
    r = replay(ERAS["v4.2"], trace_from_text(text, NC, initial=OVMF_ON))
    assert [(c.start, c.end) for c in r.calls] == [(0, 0x80000)] * 2 + [(0, 1 << 46)] + [(0, 0x80000)] * 2
    assert [c.duplicate for c in r.calls] == [False, True, False, False, True]
    assert [c.excess == c.pages for c in r.calls] == [True, True, False, True, True]
    assert r.duplicate_calls == 2


def test_empty_memory_map_is_refused():
    with pytest.raises(MemTypeError, match="memory map is empty") as e:
        replay(ERAS["v6.7"], ovmf_boot(2, vm=replace(NC, memory_map=())))
    assert e.value.field == "memory_map"


def test_call_records_are_capped(monkeypatch):
    monkeypatch.setattr(rp, "MAX_CALL_RECORDS", 5)
    r = replay(ERAS["v4.2"], ovmf_boot(2))
    assert r.zap_calls == 2 * 2 + (6 * 2 + 2) + (2 * 2 + 2) and len(r.calls) == 5 and r.calls_truncated


def test_layout_runs_are_few_and_cover_the_map():
    for era in ERAS.values():
        runs = layout(era, NC, VcpuState(mtrr=ovmf_state(linux=True)))
        assert sum(e - s for s, e, _ in runs) >> 12 == ALL_PAGES
        assert len(runs) < 20
        assert all(a[1] <= b[0] for a, b in zip(runs, runs[1:], strict=False))
    runs = layout(ERAS["v6.7"], NC, VcpuState(mtrr=ovmf_state()))
    assert [decode_key(k) for s, e, k in runs if s == 0xFD000000] == [(MemType.UC, False)]


def test_speed_256_vcpus():
    # 256 vCPUs × ~23 (SeaBIOS) / ~57 (OVMF) events on the 4 GiB map; measured ~0.05-0.25 s
    # per era. The bound is loose on purpose: it catches a per-page implementation.
    for gen in ("seabios", "ovmf"):
        t = GENERATORS[gen](256)
        start = time.perf_counter()
        replay_all(t)
        assert time.perf_counter() - start < 15


@pytest.mark.parametrize("token", ["1_0", "0o17", "0b1", "0x_c06", "٣"])
def test_numbers_are_decimal_or_0x_hex_only(token):
    with pytest.raises(MemTypeError, match="line 1"):
        parse_trace(f"vcpu {token} cr0 cd=1\n")
