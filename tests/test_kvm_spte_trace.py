"""Every SPTE line of a pasted trace (app/kvm/spte_trace.py, app/x86/npt.py).

Why: issue 9 §2. Users paste whole trace-cmd / perf / ftrace captures; each
kvm_mmu_set_spte, kvm_tdp_mmu_spte_changed and kvm_mmu_spte_requested line must be read in
the kernel's exact TP_printk format (arch/x86/kvm/mmu/mmutrace.h, 6.8 and 6.16.1), and on an
AMD host the SPTE is an NPT entry, not an EPT one (today's single-line decoder calls a
typical NPT leaf "WT"). Expected values are worked out bit by bit in the comments.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.kvm.eras import ERAS
from app.kvm.scenario import VcpuState, VmConfig
from app.kvm.spte_trace import (
    MAX_TRACE_CHARS,
    MAX_TRACE_LINES,
    SET_SPTE,
    SPTE_CHANGED,
    SPTE_REQUESTED,
    Scenario,
    decode_trace,
    decode_value,
    expected_flags,
)
from app.x86.memtype import MemType, MemTypeError
from app.x86.npt import NptEntry
from app.x86.pat import PAT_LINUX, PAT_POWER_ON, Pat

SC = Scenario(VmConfig(), VcpuState(), tuple(ERAS.values()))

# One kvm_mmu_set_spte payload, an EPT 4K leaf as 6.x builds it for RAM:
# 0x...e77 = R W X (7) | MT 6 (WB) << 3 | IPAT (0x40) | D (0x200) | bit 10 | bit 11 (MMU-present)
SET = "gfn fee00 spte 60000002fee00e77 (rwxu) level 1 at 10a5b1008"

# The header layouts of docs/notes/real-world.md §1, each with a real-format payload.
LAYOUTS = {
    "trace-cmd report, padded event": f"CPU 0/KVM-995362 [016] 55709.716256: kvm_mmu_set_spte:     {SET}",
    "trace-cmd report, unknown comm": f"<...>-43752 [001]  3615.602299: kvm_mmu_set_spte: {SET}",
    "ftrace, 5-char flags": f"qemu-system-x86-8397    [002] .....  1404.389373: kvm_mmu_set_spte: {SET}",
    "ftrace, 7-char flags": f"CPU 0/KVM-16856   [007] .......   380.398696: kvm_mmu_set_spte: {SET}",
    "ftrace, latency flags": f"CPU 1/KVM-16857   [003] d..1.   380.398697: kvm_mmu_set_spte: {SET}",
    "perf script": f"CPU 0/KVM 1821753 [015] 4831258.258053: kvmmmu:kvm_mmu_set_spte: {SET}",
    "perf script -F +pid": f"CPU 0/KVM 1821700/1821753 [015] 4831258.258053: kvmmmu:kvm_mmu_set_spte: {SET}",
    "ftrace, record-tgid": f"qemu-system-x86-32189   (  32187) [001] ..... 52597.708542: kvm_mmu_set_spte: {SET}",
    "bare tracepoint": f"kvm_mmu_set_spte: {SET}",
    "bare system:tracepoint": f"kvmmmu:kvm_mmu_set_spte: {SET}",
    "bare payload": SET,
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_header_layout(name):
    d = decode_trace(LAYOUTS[name] + "\n", "intel", SC)
    assert d.counts == {SET_SPTE: 1, SPTE_CHANGED: 0, SPTE_REQUESTED: 0}
    (e,) = d.entries
    assert (e.line, e.tracepoint, e.gfn, e.gpa, e.level, e.page_size) == (1, SET_SPTE, 0xFEE00, 0xFEE00000, 1, "4K")
    assert e.flags == "rwxu" and e.at == 0x10A5B1008
    v = e.spte
    assert (v.kind, v.memtype, v.ipat, v.permissions, v.hpa) == ("leaf", MemType.WB, True, "rwx", 0x2FEE00000)
    assert v.misconfig == () and e.notes == ()


def test_headers_keep_comm_pid_cpu_ts():
    hs = [decode_trace(LAYOUTS[k]).entries[0].header for k in
          ("trace-cmd report, padded event", "trace-cmd report, unknown comm", "ftrace, 5-char flags", "perf script")]
    assert [(h.comm, h.pid, h.cpu, h.ts) for h in hs] == [
        ("CPU 0/KVM", 995362, 16, "55709.716256"), ("<...>", 43752, 1, "3615.602299"),
        ("qemu-system-x86", 8397, 2, "1404.389373"), ("CPU 0/KVM", 1821753, 15, "4831258.258053")]
    assert decode_trace(LAYOUTS["bare payload"]).entries[0].header is None


def test_whole_trace_counts_and_other_lines():
    text = "\n".join([
        "cpus=4",
        "CPU 0/KVM-4711 [003] 812.000001: kvm_exit: vcpu 0 reason EPT_VIOLATION rip 0xfff0 info1 0x0 info2 0x0",
        "CPU 0/KVM-4711 [003] 812.000002: kvm_mmu_spte_requested: gfn 1234 pfn 56789 level 1",
        f"CPU 0/KVM-4711 [003] 812.000003: kvm_mmu_set_spte: {SET}",
        ("CPU 0/KVM-4711 [003] 812.000004: kvm_tdp_mmu_spte_changed: as id 0 gfn 100 level 1 "
         "old_spte 600000012345ef77 new_spte 5a0"),
        "CPU 0/KVM-4711 [003] 812.000005: kvm_entry: vcpu 0, rip 0xfff0",
        "",
    ])
    d = decode_trace(text, "intel", SC)
    assert (d.lines, d.ignored_lines) == (6, 3)  # cpus=, kvm_exit, kvm_entry
    assert d.counts == {SET_SPTE: 1, SPTE_CHANGED: 1, SPTE_REQUESTED: 1}
    assert [e.line for e in d.entries] == [3, 4, 5]


# -- kvm_tdp_mmu_spte_changed ---------------------------------------------------------------


def changed(old: str, new: str, level: int = 1, gfn: str = "100", as_id: int = 0, vendor: str = "intel"):
    line = f"kvm_tdp_mmu_spte_changed: as id {as_id} gfn {gfn} level {level} old_spte {old} new_spte {new}"
    (e,) = decode_trace(line, vendor, SC if vendor == "intel" else None).entries
    return e


@pytest.mark.parametrize("new, label", [
    ("5a0", "REMOVED_SPTE"),  # 6.8 spte.h
    ("80000000000005a0", "FROZEN_SPTE"),  # 6.16.1: SHADOW_NONPRESENT_VALUE (bit 63) | 0x5a0
])
def test_removed_spte(new, label):
    e = changed("600000012345ef77", new)
    assert e.old.kind == "leaf" and e.old.memtype == MemType.WB and e.old.ipat is True
    assert e.new.kind == "frozen" and not e.new.present and label in e.new.meaning
    assert e.change == "removed: leaf replaced by the frozen placeholder"
    # the era comparison is made against the old leaf (the new value has no memtype)
    assert {a.era: a.matches for a in e.eras}["v6.16"] is True


@pytest.mark.parametrize("new", ["0", "8000000000000000"])  # 6.8 and 6.16 SHADOW_NONPRESENT_VALUE
def test_zap(new):
    e = changed("600000012345ef77", new)
    assert e.new.kind == "not-present" and e.change == "zapped: leaf removed"


def test_install_2m_leaf_and_table_pointer():
    # 0xbf7 = RWX | WB<<3 | IPAT | PS (0x80) | A (0x100) | D (0x200) | bit 11
    e = changed("8000000000000000", "8600000123400bf7", level=2, gfn="200")
    assert e.change == "installed: a leaf" and e.page_size == "2M"
    assert (e.new.kind, e.new.page_size, e.new.hpa, e.new.memtype, e.new.ipat) == ("leaf", "2M", 0x123400000,
                                                                                    MemType.WB, True)
    # a level-4 EPT entry RWX | bit 11: a pointer to a level-3 table, bits 6:3 reserved there
    t = changed("0", "123456807", level=4, gfn="0")
    assert t.change == "installed: a table pointer" and t.new.kind == "table" and t.new.hpa == 0x123456000
    assert t.new.memtype_bits is None and t.eras == () and t.page_size is None


def test_leaf_memtype_change_and_split():
    e = changed("600000012345ef77", "600000012345ef47")  # MT 6 -> 0: WB! -> UC!
    assert e.change == "memtype WB! -> UC!"
    assert {a.era: a.matches for a in e.eras}["v6.16"] is False  # compared with the new leaf
    s = changed("8600000123400bf7", "8600000155555807", level=2, gfn="200")  # PS clear now: a table
    assert s.change == "huge page split into a table"


def test_mmio_spte_and_smm():
    e = changed("0", "3ff0000000006")  # EPT MMIO: W+X without R (VMX_EPT_MISCONFIG_WX_VALUE) + generation
    assert e.new.kind == "mmio" and not e.new.present and e.eras == ()
    s = changed("0", "600000012345ef77", as_id=1)
    assert s.as_id == 1 and "SMM" in s.notes[0]


# -- kvm_mmu_spte_requested -----------------------------------------------------------------


def test_spte_requested_has_no_memtype():
    (e,) = decode_trace("kvm_mmu_spte_requested: gfn 1234 pfn 56789 level 1", "intel", SC).entries
    assert (e.gfn, e.pfn, e.level, e.page_size, e.spte) == (0x1234, 0x56789, 1, "4K", None)
    assert "carries no memory type" in e.notes[0]
    assert len(e.eras) == len(ERAS) and all(a.matches is None and a.memtype is not None for a in e.eras)


def test_era_comparison_of_a_2m_request_uses_the_leaf_base():
    # goal level 2: the leaf KVM builds starts at gfn 0x200 (aligned down); the trace's gfn is
    # the faulting 4K page 0x3ff. Both are plain RAM, so every era answers alike either way;
    # an MMIO window at 0xa0000 (gfn 0xa0) inside the first 2M shows the alignment. (The
    # default map's VGA window is not is_mmio on 4.16+ kernels, so this VM has its own map.)
    from app.kvm.scenario import MMIO, RAM, MemRange
    sc = Scenario(VmConfig(memory_map=(MemRange(0, 0xA0000, RAM, "low RAM"), MemRange(0xA0000, 0xC0000, MMIO, "BAR"),
                                       MemRange(0xC0000, 0x80000000, RAM, "RAM"))), VcpuState(), SC.eras)
    (e,) = decode_trace("kvm_mmu_spte_requested: gfn a0 pfn 1000a0 level 1", "intel", sc).entries
    assert {(a.memtype, a.ipat) for a in e.eras} == {(MemType.UC, False)}  # is_mmio: UC, no IPAT, every era
    (e,) = decode_trace("kvm_mmu_spte_requested: gfn a0 pfn 1000a0 level 2", "intel", sc).entries
    assert {(a.memtype, a.ipat) for a in e.eras} != {(MemType.UC, False)}  # gfn 0: low RAM


# -- the era comparison ---------------------------------------------------------------------


def test_eras_default_scenario():
    (e,) = decode_trace(SET, "intel", SC).entries
    by = {a.era: a for a in e.eras}
    assert set(by) == set(ERAS)
    assert (by["v6.16"].memtype, by["v6.16"].ipat, by["v6.16"].matches) == (MemType.WB, True, True)
    assert (by["v6.11-rc1"].ipat, by["v6.11-rc1"].matches) == (False, False)  # self-snoop: WB, guest PAT honoured


def test_eras_refusing_the_scenario_and_subset():
    sc = Scenario(VmConfig(quirk_ignore_guest_pat=False), VcpuState(), (ERAS["v4.2"], ERAS["v6.16"]))
    (e,) = decode_trace(SET, "intel", sc).entries
    by = {a.era: a for a in e.eras}
    assert list(by) == ["v4.2", "v6.16"]
    assert by["v4.2"].error and by["v4.2"].matches is None and by["v4.2"].memtype is None
    assert (by["v6.16"].memtype, by["v6.16"].ipat, by["v6.16"].matches) == (MemType.WB, False, False)


def test_no_scenario_no_eras():
    (e,) = decode_trace(SET, "intel").entries
    assert e.eras == ()


def test_gfn_beyond_the_scenarios_maxphyaddr_names_the_line():
    sc = Scenario(VmConfig(maxphyaddr=36), VcpuState(), tuple(ERAS.values()))
    text = f"{SET}\nkvm_mmu_set_spte: gfn 1000000 spte 60000002fee00e77 (rwxu) level 1 at 1\n"  # gpa 2^36
    with pytest.raises(MemTypeError) as ei:
        decode_trace(text, "intel", sc)
    assert ei.value.field == "line 2" and "vm.maxphyaddr" in ei.value.rule


@pytest.mark.parametrize("mt", range(8))
@pytest.mark.parametrize("ipat", [0, 1])
def test_every_ept_memtype_field(mt, ipat):
    raw = 0x123456000 | 0x800 | ipat << 6 | mt << 3 | 7
    v = decode_value(raw, 1, "intel")
    assert (v.memtype_bits, v.ipat) == (mt, bool(ipat))
    if mt in (2, 3, 7):  # reserved in EPT leaves (SDM): a misconfiguration
        assert v.memtype is None and v.misconfig
    else:
        assert v.memtype == MemType(mt) and v.misconfig == ()


# -- AMD (NPT) -------------------------------------------------------------------------------

# An NPT 4K leaf as the TDP MMU builds it: P RW US | A (bit 5) | D (bit 6) | bit 11 | NX (63)
NPT_LEAF = 0x8000000101000867


def test_amd_leaf_has_no_memtype():
    line = f"CPU 0/KVM-4711 [003] 812.000001: kvm_mmu_set_spte: gfn 1000 spte {NPT_LEAF:x} (rw-u) level 1 at 1f3a2008"
    d = decode_trace(line, "amd", SC)  # the scenario is not used on AMD
    (e,) = d.entries
    v = e.spte
    assert (v.kind, v.permissions, v.hpa, v.page_size, v.host_pat_index) == ("leaf", "rw-u", 0x101000000, "4K", 0)
    assert v.memtype_bits is None and v.ipat is None and v.memtype is None
    assert e.eras == () and "no era" in d.notes[0]
    assert "no EPT memory type and no IPAT" in v.notes[0] and len(v.notes) == 1  # index 0: as KVM builds it
    assert e.notes == ()  # the printed flags fit the NPT reading
    names = [f.name for f in v.fields]
    assert names == ["P", "RW", "US", "PWT", "PCD", "A", "D", "PAT", "G", "ADDR", "NX"]


def test_intel_reading_of_an_npt_leaf_is_the_wt_bug_and_is_flagged():
    line = f"kvm_mmu_set_spte: gfn 1000 spte {NPT_LEAF:x} (rw-u) level 1 at 1f3a2008"
    (e,) = decode_trace(line, "intel").entries
    # A (bit 5) reads as memtype bit 2 and D (bit 6) as IPAT: "WT with IPAT"
    assert (e.spte.memtype, e.spte.ipat) == (MemType.WT, True)
    assert "(vendor: amd)" in e.notes[0]


def test_amd_reading_of_an_ept_leaf_is_flagged():
    # 0x...e77 read as NPT: P RW US | PCD (bit 4) | A | D, PWT and PAT bit 7 clear: host PAT
    # index 2, which KVM never builds on NPT, so the leaf cannot be KVM's NPT entry. The
    # printed flags cannot tell here: NX clear and US set print 'rwxu' on NPT too.
    (e,) = decode_trace(SET, "amd").entries
    assert e.spte.host_pat_index == 2 and "did not come from KVM" in e.spte.notes[1]
    assert not any("vendor" in n for n in e.notes)
    # 0x75 = R X | WB<<3 | IPAT on EPT ('r-xu'); on NPT P, RW clear, US set, NX clear: 'r-xu'
    (e,) = decode_trace("kvm_mmu_set_spte: gfn 1 spte 600000012345e075 (r-xu) level 1 at 1", "amd").entries
    assert not any("vendor" in n for n in e.notes)
    # 0x73: EPT would print 'rw-u' (X clear), NPT 'rwx-' (US clear): 'rwxu' fits neither
    (e,) = decode_trace("kvm_mmu_set_spte: gfn 1 spte 600000012345e073 (rwxu) level 1 at 1", "amd").entries
    assert any("either vendor" in n for n in e.notes)
    # an NPT leaf's 'rw-u' (NX set) read on AMD, fine; read on Intel, flagged (test above)


@pytest.mark.parametrize("pwt", [0, 1])
@pytest.mark.parametrize("pcd", [0, 1])
@pytest.mark.parametrize("pat", [0, 1])
@pytest.mark.parametrize("level", [1, 2, 3])
def test_npt_host_pat_index_exhaustive(pwt, pcd, pat, level):
    # PAT bit: 7 in a PTE, 12 in a 2M/1G leaf (where bit 7 is PS); index = 4*PAT + 2*PCD + PWT
    ps = 0x80 if level > 1 else 0
    pat_bit = 12 if level > 1 else 7
    raw = 0x40000000 | ps | pat << pat_bit | pcd << 4 | pwt << 3 | 0x867
    e = NptEntry.decode(raw, level)
    assert e.leaf and e.host_pat_index == 4 * pat + 2 * pcd + pwt
    v = decode_value(raw, level, "amd", Pat.from_msr(PAT_LINUX))
    linux = ["WB", "WC", "UC-", "UC", "WB", "WP", "UC-", "WT"]  # PAT_LINUX, entry by entry
    assert v.host_pat_type == linux[4 * pat + 2 * pcd + pwt]
    assert (len(v.notes) == 2) == (4 * pat + 2 * pcd + pwt != 0)  # nonzero: not from KVM's make_spte


def test_npt_large_leaf_and_table_and_host_pat():
    # 2M leaf: PS | PAT (bit 12) | PWT -> index 5; host PAT at power-on: PA5 = WT
    v = decode_value(0x80000001234010EF | 0x800, 2, "amd", Pat.from_msr(PAT_POWER_ON))
    assert (v.page_size, v.hpa, v.host_pat_index, v.host_pat_type) == ("2M", 0x123400000, 5, "WT")
    t = decode_value(0x123456807 & ~0x80, 3, "amd")
    assert t.kind == "table" and t.hpa == 0x123456000
    m = decode_value((1 << 51) | 0x1, 1, "amd")  # reserved bit 51 with P: KVM's NPT MMIO SPTE
    assert m.kind == "mmio"


def test_npt_spte_changed_removed():
    e = changed(f"{NPT_LEAF:x}", "80000000000005a0", vendor="amd")
    assert (e.old.kind, e.old.host_pat_index, e.new.kind) == ("leaf", 0, "frozen") and e.eras == ()


def test_expected_flags():
    # EPT: r = R, w = W, x = X, u = R; NPT: r always, w = RW, x = not NX, u = US
    assert [expected_flags(v, "intel") for v in (0, 1, 2, 4, 7)] == ["----", "r--u", "-w--", "--x-", "rwxu"]
    assert [expected_flags(v, "amd") for v in (0, 2, 4, 1 << 63)] == ["r-x-", "rwx-", "r-xu", "r---"]


# -- malformed lines name their line -------------------------------------------------------


@pytest.mark.parametrize("bad, words", [
    ("kvm_mmu_set_spte: gfn zz spte 1 (rwx) level 1 at 1", "cannot read the kvm_mmu_set_spte payload"),
    ("kvm_mmu_set_spte: gfn 1 spte 1 level 1 at 1", "cannot read"),  # no flags
    ("kvm_mmu_set_spte: gfn 1 spte 37 (rwxu) level 4 at 1", "not a leaf level"),
    ("kvm_mmu_set_spte: gfn 200 spte 837 (rwxu) level 2 at 1", "points to a table"),  # PS clear at level 2
    ("kvm_mmu_spte_requested: gfn 1 pfn 2 level 0", "not a leaf level"),
    ("kvm_tdp_mmu_spte_changed: as id 2 gfn 1 level 1 old_spte 0 new_spte 0", "as id 2"),
    ("kvm_tdp_mmu_spte_changed: as id 0 gfn 1 level 6 old_spte 0 new_spte 0", "not a paging level"),
    ("kvm_tdp_mmu_spte_changed: as id 0 gfn 0 level 4 old_spte 0 new_spte 8b7", "bit 7 (PS) set"),
    ("kvm_mmu_set_spte: gfn 10000000000 spte 37 (rwxu) level 1 at 1", "2^40"),
    ("CPU 0/KVM 1821753 [015] 4831258.258053: kvm:kvm_mmu_set_spte: " + SET, "kvmmmu tracepoint"),
    ("[003] 812.000001 kvm_mmu_set_spte gfn 1", "names an SPTE tracepoint"),
])
def test_malformed_lines_name_the_line(bad, words):
    text = f"cpus=2\n{LAYOUTS['perf script']}\n{bad}\n{SET}\n"
    with pytest.raises(MemTypeError) as ei:
        decode_trace(text, "intel", SC)
    assert ei.value.field == "line 3" and words in str(ei.value)


def test_lost_events_are_noted():
    d = decode_trace(f"{SET}\nCPU:3 [LOST 12 EVENTS]\n{SET}", "intel")
    assert len(d.entries) == 2
    assert d.notes == ("line 2: the tracer lost events here; SPTE changes between the lines around it are missing",)


def test_limits_are_refused_before_reading():
    ok = "x\n" * MAX_TRACE_LINES
    assert decode_trace(ok).lines == MAX_TRACE_LINES
    with pytest.raises(MemTypeError, match=f"MAX_TRACE_LINES \\({MAX_TRACE_LINES}\\)"):
        decode_trace(ok + "x")  # one line more; the bad payload after it is never read
    with pytest.raises(MemTypeError, match=f"MAX_TRACE_CHARS \\({MAX_TRACE_CHARS}\\)"):
        decode_trace("y" * (MAX_TRACE_CHARS + 1))
    with pytest.raises(MemTypeError, match="vendor"):
        decode_trace(SET, "arm")


@pytest.mark.parametrize("layout", ["ovmf", "seabios"])
@pytest.mark.parametrize("nc_dma", [False, True])
def test_era_answers_equal_the_resolver_page_by_page(layout, nc_dma):
    # The decoder keeps answers per (KVM MTRR lookup type, is_mmio); it must give what
    # resolve.mask_at gives for each page. Pages: every memory-map range's first and last
    # 4K, the fixed-range area in 4K steps, and the 32-bit PCI hole.
    from app.kvm.layouts import ovmf_state, seabios_state
    from app.kvm.resolve import mask_at
    from app.kvm.scenario import DEFAULT_MEMORY_MAP, Access

    mtrr = (ovmf_state if layout == "ovmf" else seabios_state)()
    vm, vcpu = VmConfig(noncoherent_dma=nc_dma), VcpuState(mtrr=mtrr)
    sc = Scenario(vm, vcpu, tuple(ERAS.values()))
    gfns = sorted({*range(0x100), *(r.start >> 12 for r in DEFAULT_MEMORY_MAP),
                   *((r.end >> 12) - 1 for r in DEFAULT_MEMORY_MAP), 0xC0000, 0xFEE00, 0xFFFFF})
    text = "\n".join(f"kvm_mmu_spte_requested: gfn {g:x} pfn {g:x} level 1" for g in gfns)
    d = decode_trace(text, "intel", sc)
    assert len(d.entries) == len(gfns)
    for e in d.entries:
        mmio = Access(e.gpa).is_mmio(vm)
        masks = [(era.id, mask_at(era, vm, vcpu, e.gpa, mmio)) for era in ERAS.values()]
        want = [(era_id, m.memtype, m.ipat) for era_id, m in masks]
        assert [(a.era, a.memtype, a.ipat) for a in e.eras] == want, hex(e.gfn)


# -- anything pasted: an answer or a MemTypeError naming the line, nothing else ------------

_hex = st.integers(0, (1 << 64) - 1).map(lambda v: f"{v:x}")
_small_hex = st.integers(0, (1 << 44) - 1).map(lambda v: f"{v:x}")
_lvl = st.integers(0, 99)
_flags = st.text("rwxu-X", min_size=0, max_size=5)
_payload = st.one_of(
    st.builds(lambda g, v, f, l: f"gfn {g} spte {v} ({f}) level {l} at 1", _small_hex, _hex, _flags, _lvl),
    st.builds(lambda a, g, l, o, n: f"as id {a} gfn {g} level {l} old_spte {o} new_spte {n}",
              st.integers(0, 999), _small_hex, _lvl, _hex, _hex),
    st.builds(lambda g, p, l: f"gfn {g} pfn {p} level {l}", _small_hex, _small_hex, _lvl),
    st.text(max_size=40),
)
_line = st.one_of(
    st.builds(lambda tp, p: f"CPU 0/KVM-1 [000] 1.000001: {tp}: {p}",
              st.sampled_from([SET_SPTE, SPTE_CHANGED, SPTE_REQUESTED, "kvm_exit"]), _payload),
    _payload, st.text(max_size=60),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_line, max_size=8), st.sampled_from(["intel", "amd"]),
       st.sampled_from([VmConfig(), VmConfig(maxphyaddr=36), VmConfig(quirk_ignore_guest_pat=False)]))
def test_any_paste_decodes_or_names_a_line(lines, vendor, vm):
    sc = Scenario(vm, VcpuState(), tuple(ERAS.values()))
    text = "\n".join(lines)
    try:
        d = decode_trace(text, vendor, sc)
    except MemTypeError as e:
        assert e.field.startswith("line ")
        return
    assert len(d.entries) == sum(d.counts.values())
    assert d.lines == len(text.split("\n")) - (text.endswith("\n") or text == "")
    for e in d.entries:
        assert 1 <= e.line <= d.lines


def test_line_numbers_count_newlines_only():
    # \x0b, \x1c and U+2028 are line breaks to str.splitlines(), not to an editor
    text = "a\x0bb\x1cc\u2028d\r\nkvm_mmu_set_spte: gfn zz\r\n"
    with pytest.raises(MemTypeError) as ei:
        decode_trace(text)
    assert ei.value.field == "line 2"
    d = decode_trace(f"{SET}\r\n\r\n{SET}\r\n")
    assert d.lines == 3 and [e.line for e in d.entries] == [1, 3]
