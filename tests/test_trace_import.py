"""Captures as users have them (app/kvm/trace_import.py): every header layout the tools print,
every vCPU thread naming, several VMs, order, RESET start, QEMU's host writes.

Lines are in the exact formats of arch/x86/kvm/trace.h (kvm_msr `msr_%s %x = 0x%llx%s`,
kvm_cr `cr_%s %x = 0x%lx`, kvm_entry `vcpu %u, rip 0x%lx%s`, kvm_exit `vcpu %u reason %s%s%s
rip 0x%lx info1 0x%016llx info2 0x%016llx intr_info 0x%08x error_code 0x%08x`) behind the
headers of trace-cmd report, perf script and the ftrace trace file (real examples in
docs/notes/real-world.md §1).
"""

from __future__ import annotations

import pytest

from app.kvm.boot import INITIAL_STATES, RESET_STATE
from app.kvm.eras import ERAS
from app.kvm.replay import replay
from app.kvm.scenario import CR0_CD, MTRR_WRITE, PAT_WRITE, Cr0Write, MtrrWrite, PatWrite, VcpuState, VmConfig
from app.kvm.trace_import import import_text, import_trace, parse_header
from app.kvm.trace_source import make_trace
from app.x86.memtype import MemTypeError

NC = VmConfig(noncoherent_dma=True)


def exit_(vcpu: int) -> str:
    return (f"vcpu {vcpu} reason MSR_WRITE rip 0xfff0 info1 0x0000000000000000 info2 0x0000000000000000 "
            "intr_info 0x00000000 error_code 0x00000000")


# QEMU's default thread names: every thread is "qemu-system-x86"; only kvm_entry/kvm_exit say
# which vCPU a TID runs. trace-cmd report layout, no flags column, padded event names.
QEMU_DEFAULT = f"""\
cpus=4
 qemu-system-x86-8397  [002]  1404.389300: kvm_entry:            vcpu 0, rip 0xfff0
 qemu-system-x86-8398  [001]  1404.389301: kvm_entry:            vcpu 1, rip 0xfff0
 qemu-system-x86-8397  [002]  1404.389373: kvm_cr:               cr_write 0 = 0x60000011
 qemu-system-x86-8397  [002]  1404.389380: kvm_cr:               cr_write 0 = 0x00000011
 qemu-system-x86-8398  [001]  1404.389390: kvm_exit:             {exit_(1)}
 qemu-system-x86-8398  [001]  1404.389391: kvm_msr:              msr_write 2ff = 0x806
 qemu-system-x86-8397  [002]  1404.389400: kvm_msr:              msr_write 277 = 0x407050600070106
 qemu-system-x86-8398  [001]  1404.389401: kvm_msr:              msr_read 2ff = 0x806
 qemu-system-x86-8398  [001]  1404.389402: kvm_msr:              msr_write 10 = 0x1234
 qemu-system-x86-8398  [001]  1404.389403: kvm_msr:              msr_write 201 = 0x3fff80000800 (#GP)
"""


def test_qemu_default_comm_mapped_from_kvm_entry():
    imp = import_text(QEMU_DEFAULT)
    assert imp.kind == "capture" and imp.layouts == ("ftrace",) and imp.initial == "reset"
    assert [(t.tid, t.vcpu, t.by, t.line) for t in imp.threads] == [(8397, 0, "kvm_entry", 2),
                                                                      (8398, 1, "kvm_entry", 3)]
    # RESET start: 0x60000011 (CD=1, NW=1) is no change; 0x11 clears both: one event.
    assert [(e.vcpu, e.event, e.line) for e in imp.events] == [
        (0, Cr0Write(value=False, cr0_nw=False), 5),
        (1, MtrrWrite(msr=0x2FF, value=0x806), 7),
        (0, PatWrite(value=0x407050600070106), 8),
    ]
    assert imp.skipped == {"CR0 writes leaving CD and NW as they were": 1, "kvm_entry lines": 2, "kvm_exit lines": 1,
                           "MSR reads": 1, "writes to other MSRs": 1, "MSR writes that faulted (#GP)": 1}
    assert imp.pid is None and imp.pids == ()


@pytest.mark.parametrize("comm", ["<...>", "vcpu0", "crosvm_vcpu0", "fc_vcpu 0", "qemu-kvm", "CPU 5/KVM"])
def test_every_vcpu_thread_name_maps_by_its_kvm_lines(comm):
    # The kvm_exit "vcpu 0" wins over a QEMU name "CPU 5/KVM" (QEMU's cpu_index is not
    # KVM's vcpu_id on every topology).
    text = (f"{comm}-43752 [001]  3615.602290: kvm_exit: {exit_(0)}\n"
            f"{comm}-43752 [001]  3615.602299: kvm_msr:              msr_write 2ff = 0xc06\n")
    imp = import_text(text, initial=VcpuState())
    assert [(e.vcpu, e.event) for e in imp.events] == [(0, MtrrWrite(msr=0x2FF, value=0xC06))]
    assert imp.threads[0].comm == comm and imp.threads[0].by == "kvm_exit"


def test_mapping_fact_may_come_after_the_write():
    # A capture started mid-run: the thread's first line is a kvm_msr; its kvm_entry follows.
    text = ("<...>-43752 [001]  3615.602299: kvm_msr: msr_write 2ff = 0xc06\n"
            "<...>-43752 [001]  3615.602310: kvm_entry: vcpu 3, rip 0xfff0\n")
    assert [e.vcpu for e in import_text(text).events] == [3]


def test_unknown_thread_is_refused_naming_the_line():
    text = ("qemu-system-x86-8397 [002]  1404.389300: kvm_entry: vcpu 0, rip 0xfff0\n"
            "qemu-system-x86-8399 [003]  1404.389373: kvm_msr: msr_write 2ff = 0xc06\n")
    with pytest.raises(MemTypeError) as e:
        import_text(text)
    assert e.value.field == "line 2" and "(TID 8399) has no known vCPU" in str(e.value)
    assert "kvm:kvm_entry" in str(e.value)


def test_qemu_thread_name_when_no_kvm_line():
    text = "CPU 2/KVM-16856   [007] .......   380.398696: kvm_msr: msr_write 2ff = 0x6\n"
    imp = import_text(text)
    assert [(e.vcpu, e.event) for e in imp.events] == [(2, MtrrWrite(msr=0x2FF, value=0x6))]
    assert imp.threads[0].by == "name"


@pytest.mark.parametrize("line, layout, comm, tid, pid, event", [
    # trace-cmd report, no flags (Vitaly Kuznetsov, kvm list 2019)
    ("           <...>-43752 [001]  3615.602299: kvm_msr:              msr_read ce = 0x0 (#GP)",
     "ftrace", "<...>", 43752, None, "kvm_msr"),
    # ftrace trace file, 5-char flags (Mathias Krause, 2023)
    ("qemu-system-x86-8397    [002] .....  1404.389373: kvm_cr: cr_write 0 = 0x80050033",
     "ftrace", "qemu-system-x86", 8397, None, "kvm_cr"),
    # 7-char flags (qemu-devel, 2025)
    ("CPU 0/KVM-16856   [007] .......   380.398696: kvm_msr: msr_write 3a = 0x40005",
     "ftrace", "CPU 0/KVM", 16856, None, "kvm_msr"),
    # trace-cmd latency flags (4 characters)
    ("       CPU 0/KVM-12345 [003] d..1 1234.567893: kvm_msr:          msr_write 200 = 0x80000000",
     "ftrace", "CPU 0/KVM", 12345, None, "kvm_msr"),
    # ftrace with options/record-tgid
    ("qemu-system-x86-8397  (   8390) [002] ..... 1404.389373: kvm_cr: cr_write 0 = 0x80050033",
     "ftrace", "qemu-system-x86", 8397, 8390, "kvm_cr"),
    ("qemu-system-x86-8397  (-------) [002] ..... 1404.389373: kvm_cr: cr_write 0 = 0x80050033",
     "ftrace", "qemu-system-x86", 8397, None, "kvm_cr"),
    # perf script default (TID only) and -F +pid
    ("CPU 0/KVM 1821753 [015] 4831258.258053: kvm:kvm_msr: msr_write 6e0 = 0x1",
     "perf", "CPU 0/KVM", 1821753, None, "kvm_msr"),
    ("qemu-system-x86  1821700/1821753 [015] 4831258.258053: kvm:kvm_entry: vcpu 0, rip 0xfff0",
     "perf", "qemu-system-x86", 1821753, 1821700, "kvm_entry"),
])
def test_header_layouts(line, layout, comm, tid, pid, event):
    h = parse_header(line)
    assert h is not None
    assert (h.layout, h.comm, h.tid, h.pid, h.event) == (layout, comm, tid, pid, event)


def test_comm_with_dash_and_digits():
    h = parse_header("kvm-pit/8397-8400 [000] 1.000000: kvm_entry: vcpu 0, rip 0x0")
    assert (h.comm, h.tid) == ("kvm-pit/8397", 8400)


def _perf(pid: int, tid: int, ts: str, body: str, comm: str = "qemu-system-x86") -> str:
    return f"{comm} {pid}/{tid} [001] {ts}: kvm:{body}\n"


TWO_VMS = (
    _perf(100, 101, "5.000001", "kvm_entry: vcpu 0, rip 0xfff0")
    + _perf(200, 201, "5.000002", "kvm_entry: vcpu 0, rip 0xfff0")
    + _perf(100, 101, "5.000003", "kvm_msr: msr_write 2ff = 0xc06")
    + _perf(200, 201, "5.000004", "kvm_msr: msr_write 2ff = 0x806")
    + _perf(200, 202, "5.000005", "kvm_entry: vcpu 1, rip 0xfff0")
    + _perf(200, 202, "5.000006", "kvm_msr: msr_write 277 = 0x7040600070406")
)


def test_several_vms_are_never_merged():
    with pytest.raises(MemTypeError) as e:
        import_text(TWO_VMS)
    assert e.value.field == "pid"
    assert "2 VMs (PIDs 100 (2 lines), 200 (4 lines))" in str(e.value) and "never merged" in str(e.value)


def test_pid_chooses_one_vm():
    a = import_text(TWO_VMS, pid=100)
    assert a.pid == 100 and a.pids == (100, 200)
    assert [(e.vcpu, e.event) for e in a.events] == [(0, MtrrWrite(msr=0x2FF, value=0xC06))]
    assert a.skipped["lines of other VMs (PIDs 200)"] == 4
    b = import_text(TWO_VMS, pid=200)
    assert [(e.vcpu, e.event.kind) for e in b.events] == [(0, MTRR_WRITE), (1, PAT_WRITE)]
    assert [(t.tid, t.pid, t.vcpu) for t in b.threads] == [(201, 200, 0), (202, 200, 1)]


@pytest.mark.parametrize("text, pid, words", [
    (TWO_VMS, 300, "no KVM lines of PID 300"),
    ("<...>-1 [000] 1.0: kvm_entry: vcpu 0, rip 0x0\n", 5, "records no PIDs"),
])
def test_bad_pid(text, pid, words):
    with pytest.raises(MemTypeError) as e:
        import_text(text, pid=pid)
    assert e.value.field == "pid" and words in str(e.value)


def test_two_vms_without_pids_are_refused():
    # trace-cmd report of a system-wide capture: two threads both run "vCPU 0".
    text = ("qemu-system-x86-101 [000] 5.000001: kvm_entry: vcpu 0, rip 0xfff0\n"
            "qemu-system-x86-201 [001] 5.000002: kvm_entry: vcpu 0, rip 0xfff0\n"
            "qemu-system-x86-101 [000] 5.000003: kvm_msr: msr_write 2ff = 0xc06\n")
    with pytest.raises(MemTypeError) as e:
        import_text(text)
    assert e.value.field == "line 2" and "more than one VM" in str(e.value) and "-P <qemu pid>" in str(e.value)


def test_one_thread_two_vcpus_is_refused():
    text = ("<...>-101 [000] 5.000001: kvm_entry: vcpu 0, rip 0xfff0\n"
            "<...>-101 [000] 5.000002: kvm_entry: vcpu 1, rip 0xfff0\n")
    with pytest.raises(MemTypeError) as e:
        import_text(text)
    assert e.value.field == "line 2" and "runs vCPU 1 here but vCPU 0 at line 1" in str(e.value)


def test_out_of_order_is_refused_with_the_first_line():
    text = ("CPU 0/KVM-1 [000] 5.000002: kvm_msr: msr_write 2ff = 0xc06\n"
            "CPU 0/KVM-1 [000] 5.000002: kvm_msr: msr_write 2ff = 0xc06\n"   # equal: fine
            "CPU 1/KVM-2 [001] 5.0000019: kvm_msr: msr_write 2ff = 0x806\n")  # 5.0000019 < 5.000002
    with pytest.raises(MemTypeError) as e:
        import_text(text)
    assert e.value.field == "line 3" and "timestamp goes back (line 2 is later)" in str(e.value)


def test_timestamps_compare_as_numbers_not_strings():
    text = ("CPU 0/KVM-1 [000] 9.999999: kvm_msr: msr_write 2ff = 0xc06\n"
            "CPU 0/KVM-1 [000] 10.000000: kvm_msr: msr_write 2ff = 0x806\n")
    assert len(import_text(text).events) == 2


def test_plain_text_starts_running_captures_at_reset():
    assert import_text("vcpu 0 cr0 cd=1").initial == "running"
    assert import_text(QEMU_DEFAULT).initial == "reset"
    mixed = "vm ncdma on\n" + QEMU_DEFAULT
    assert import_text(mixed).kind == "mixed" and import_text(mixed).initial == "reset"
    assert import_text(QEMU_DEFAULT, initial=VcpuState()).initial == "given"


def test_import_trace_starts_from_reset_and_counts_vcpus():
    trace, imp = import_trace(QEMU_DEFAULT, NC)
    assert trace.initial == RESET_STATE and trace.vcpus == 2


def test_reset_start_makes_the_firmware_cr0_write_an_event():
    # From "running" the same capture would show the 0x60000011 write as CD 0->1 and miss
    # nothing else; from RESET it is no change and the 0x11 write is the CD 1->0 toggle.
    running = import_text(QEMU_DEFAULT, initial=INITIAL_STATES["running"])
    assert [e.event for e in running.events if e.event.kind == CR0_CD] == [
        Cr0Write(value=True, cr0_nw=True), Cr0Write(value=False, cr0_nw=False)]


def test_qemu_host_writes_are_a_separate_source():
    made = make_trace(NC, text=QEMU_DEFAULT, qemu_host_writes=True)
    src = [te.source for te in made.trace.events]
    assert src.count("trace") == 3 and src.count("qemu") > 0 and src.index("trace") == src.count("qemu")
    assert made.qemu_host_writes and made.initial == "reset"
    plain = make_trace(NC, text=QEMU_DEFAULT)
    assert not plain.qemu_host_writes and {te.source for te in plain.trace.events} == {"trace"}
    # A zap per QEMU MTRRdefType write (v4.2..v6.10 zap on every MTRR write with nc-DMA).
    r_with = replay(ERAS["v6.7"], made.trace)
    r_without = replay(ERAS["v6.7"], plain.trace)
    assert r_with.calls_by_source["qemu"] > 0 and r_without.calls_by_source.get("qemu", 0) == 0


@pytest.mark.parametrize("kw, field", [
    ({"text": "vcpu 0 cr0 cd=1", "generator": "ovmf"}, "generator"),
    ({}, "generator"),
    ({"generator": "ovmf", "pid": 5}, "pid"),
    ({"text": "vcpu 0 cr0 cd=1", "initial": "booted"}, "initial"),
])
def test_make_trace_refuses(kw, field):
    with pytest.raises(MemTypeError) as e:
        make_trace(NC, **kw)
    assert e.value.field == field


def test_make_trace_defaults_by_source():
    assert make_trace(NC, generator="ovmf", vcpus=1).initial == "reset"
    assert make_trace(NC, generator="ovmf", vcpus=1).qemu_host_writes
    assert make_trace(NC, events=[]).initial == "running"
    assert make_trace(NC, text="vcpu 0 cr0 cd=1").initial == "running"
    assert make_trace(NC, text="vcpu 0 cr0 cd=1", initial="reset").initial == "reset"


# -- real captures (tests/data/README.md) --------------------------------------------------------

DATA = __import__("pathlib").Path(__file__).parent / "data"


def test_real_seabios_capture_with_qemu_thread_names():
    """SeaBIOS under KVM, ftrace trace file with record-tgid: each vCPU writes SeaBIOS's
    mtrr_setup() list once (the BSP, then the AP replaying it), exactly the generator's writes."""
    from app.kvm.boot import Machine, seabios_firmware

    text = (DATA / "capture-seabios-kvm-debug-threads.txt").read_text()
    imp = import_text(text)
    assert imp.kind == "capture" and imp.layouts == ("ftrace",) and len(imp.pids) == 1
    assert [(t.comm, t.vcpu, t.by) for t in imp.threads] == [("CPU 0/KVM", 0, "name"), ("CPU 1/KVM", 1, "name")]
    assert imp.skipped["writes to other MSRs"] >= 1 and imp.skipped["MSR reads"] >= 1
    model = [st for st in seabios_firmware(2, Machine("q35", 512 << 20, 40)) if st.event.kind != CR0_CD]
    assert [(e.vcpu, e.event) for e in imp.events] == [(st.vcpu, st.event) for st in model]


def test_real_capture_with_default_thread_names_is_refused_at_the_first_write():
    text = (DATA / "capture-seabios-kvm-default-names.txt").read_text()
    first = next(n for n, ln in enumerate(text.splitlines(), 1) if "msr_write 2ff" in ln)
    with pytest.raises(MemTypeError) as e:
        import_text(text)
    assert e.value.field == f"line {first}" and "debug-threads=on" in str(e.value)
