"""Read a trace as users have it: a `trace-cmd report`, `perf script` or raw ftrace capture of
kvm:kvm_msr / kvm:kvm_cr (plus kvm_entry / kvm_exit), or the hand-written plain format
(app/kvm/trace_format.md). Pure: text in, `TraceEvent`s and a summary out, no I/O.

Why this is its own module: a capture is not a list of events. Its lines carry a thread, not a
vCPU; a system-wide capture holds several VMs; the tools print three header layouts; and what
KVM saw before the first line (RESET, QEMU's own KVM_SET_MSRS writes) is not in it. Every one
of those was a way to replay the wrong thing silently, so each is decided here, once, with an
error naming the line when the capture cannot say.

What the kernel prints (arch/x86/kvm/trace.h, read in kvm-x86/linux at aebed32e4985 and in the
6.8 tree; the formats are unchanged since 2.6.x except where noted):

* `kvm_msr`: ``msr_%s %x = 0x%llx%s`` (read/write, index in bare hex, `` (#GP)`` when the
  access faulted). Fired only for guest accesses (kvm_emulate_wrmsr and the emulator), after
  the write succeeded, or with (#GP) when it did not.
* `kvm_cr`: ``cr_%s %x = 0x%lx``. vmx.c `handle_cr` traces a write before checking it, so a
  CR0 write with NW=1 and CD=0 is in the trace although the guest got #GP: refused, not
  guessed away.
* `kvm_entry`: ``vcpu %u, rip 0x%lx%s`` (older kernels: ``vcpu %u``); `kvm_exit`:
  ``vcpu %u reason ...`` (kernels from about 5.10; older ones start with ``reason``);
  `kvm_page_fault`: ``vcpu %u rip ...``. These are the only lines carrying KVM's vCPU id
  (`vcpu->vcpu_id`; on x86 QEMU sets it to the APIC id), so a thread is mapped to a vCPU from
  them, whatever its name is: ``CPU N/KVM`` (QEMU with debug-threads), ``qemu-system-x86``
  (QEMU's default: every thread has the process name), ``<...>`` (trace-cmd without the comm),
  ``vcpuN`` (cloud-hypervisor), ``crosvm_vcpuN``, ``fc_vcpu N`` (Firecracker). Only when a
  thread has no such line does the name ``CPU N/KVM`` stand in (QEMU's cpu_index, equal to
  the vCPU id on a flat topology).

Header layouts (real examples in docs/notes/real-world.md §1):

* ftrace `trace` file and `trace-cmd report`: ``COMM-TID [CPU] FLAGS TIMESTAMP: EVENT: BODY``,
  where FLAGS (irqs-off, need-resched, hardirq/softirq, preempt depth, migrate-disable) is
  4 to 7 characters or absent (trace-cmd's default), and ``COMM-TID (TGID) [CPU]`` with the
  ftrace option record-tgid (``(-------)`` when unknown).
* `perf script`: ``COMM TID [CPU] TIMESTAMP: kvm:EVENT: BODY``; with ``-F +pid``:
  ``COMM PID/TID [CPU] ...``.

VMs: the number after the dash (ftrace, trace-cmd) or the lone number (perf) is a thread id.
A process id is known only from ``(TGID)`` or ``PID/TID``. Lines of different PIDs are
different VMs and are never merged into one EPT: with more than one, the caller names one
(`pid`) and the error lists them. Without PIDs, two threads claiming the same vCPU id are two
VMs (or a broken capture): refused, saying how to record one VM.

Order: timestamps must not go backwards (both tools print in time order; a capture pasted
together from per-CPU buffers does not). The first line that goes back is refused; it is
never re-sorted, because events on one timestamp could not be ordered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ..x86.memtype import MemTypeError
from ..x86.mtrr import is_mtrr_msr
from ..x86.pat import MSR_IA32_PAT
from .boot import INITIAL_STATES
from .replay import (
    CR0_CD_BIT,
    CR0_NW_BIT,
    MAX_EVENTS,
    MAX_VCPUS,
    Trace,
    TraceEvent,
    _check_int,
    events_from_writes,
)
from .scenario import Cr0Write, NoncoherentDma, VcpuState, VmConfig

MAX_LINE_LENGTH = 4096
DEFAULT_MAX_EVENTS = 100_000

# -- tracepoint headers ----------------------------------------------------------------------

_FTRACE = re.compile(
    r"^\s*(?P<comm>.+)-(?P<tid>\d+)\s+(?:\(\s*(?P<tgid>\d+|-+)\s*\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s:]{4,8})\s+)?(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s*(?P<body>.*?)\s*$"
)
_PERF = re.compile(
    r"^\s*(?P<comm>.+?)\s+(?:(?P<pid>\d+)/)?(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+"
    r"(?P<ts>\d+\.\d+):\s+(?:\d+\s+)?(?P<sys>\w+):(?P<event>\w+):\s*(?P<body>.*?)\s*$"
)
_VCPU_FIELD = re.compile(r"^vcpu (\d+)\b")
_QEMU_THREAD = re.compile(r"^CPU (\d+)/KVM$")
VCPU_ID_EVENTS = ("kvm_entry", "kvm_exit", "kvm_page_fault")
"""Tracepoints whose body starts with ``vcpu %u`` (KVM's vcpu_id): the thread -> vCPU facts."""
WRITE_EVENTS = ("kvm_msr", "kvm_cr")


@dataclass(frozen=True, slots=True)
class Header:
    """The header of one tracepoint line, whichever tool printed it."""

    layout: str           # "ftrace" (ftrace trace file, trace-cmd report) or "perf"
    comm: str
    tid: int
    pid: int | None       # the thread's process, when the capture recorded it
    cpu: int
    ts: int               # timestamp in picoseconds (ordering only)
    stamp: str            # the timestamp as printed
    system: str | None    # "kvm" for perf's "kvm:kvm_msr", None when the tool omits it
    event: str
    body: str


def _ts(text: str) -> int:
    sec, _, frac = text.partition(".")
    return int(sec) * 10**12 + int(frac[:12].ljust(12, "0"))


def parse_header(raw: str) -> Header | None:
    """The tracepoint header of `raw`, or None if it is not a tracepoint line. Shared by
    every reader of captures (replay import, SPTE decode)."""
    m = _FTRACE.match(raw)
    if m:
        tgid = m["tgid"]
        return Header("ftrace", m["comm"].strip(), int(m["tid"]), int(tgid) if tgid and tgid.isdigit() else None,
                      int(m["cpu"]), _ts(m["ts"]), m["ts"], None, m["event"], m["body"])
    m = _PERF.match(raw)
    if m:
        return Header("perf", m["comm"].strip(), int(m["tid"]), int(m["pid"]) if m["pid"] else None,
                      int(m["cpu"]), _ts(m["ts"]), m["ts"], m["sys"], m["event"], m["body"])
    return None


# -- payloads --------------------------------------------------------------------------------

_MSR_BODY = re.compile(
    r"^msr_(?P<rw>read|write)\s+(?:0x)?(?P<msr>[0-9a-fA-F]+)\s*=\s*(?P<val>0x[0-9a-fA-F]+)(?P<gp>\s*\(#GP\))?$"
)
_CR_BODY = re.compile(r"^cr_(?P<rw>read|write)\s+(?:0x)?(?P<cr>[0-9a-fA-F]+)\s*=\s*(?P<val>0x[0-9a-fA-F]+)$")
_REPORT_HEADER = re.compile(r"^(cpus=\d+|version\s*=\s*\S+|CPU \d+ is empty)$")
_LOST = re.compile(r"LOST\s+\d+\s+EVENTS", re.IGNORECASE)
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]{1,32}|[0-9]{1,40}")


def _num(tok: str, line: int, what: str) -> int:
    """Decimal or 0x-hex only: int(tok, 0) would also take 1_0, 0o17 and 0b1."""
    if not _NUMBER.fullmatch(tok):
        raise MemTypeError(f"line {line}", f"{what} {tok!r} is not a number (decimal or 0x-hex)",
                           "see app/kvm/trace_format.md")
    v = int(tok, 0)
    if not 0 <= v < 1 << 64:
        raise MemTypeError(f"line {line}", f"{what} {tok} does not fit in 64 bits", "registers are 64 bits wide")
    return v


def _vcpu_index(v: int, line: int) -> int:
    if v >= MAX_VCPUS:
        raise MemTypeError(f"line {line}", f"vCPU {v} is not below {MAX_VCPUS}",
                           f"a trace has at most {MAX_VCPUS} vCPUs")
    return v


# -- the summary -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Thread:
    """One host thread that ran a vCPU: how the capture named it and how its vCPU was found."""

    tid: int
    pid: int | None       # its process, where some line recorded it
    comm: str
    vcpu: int
    by: str       # "kvm_entry" / "kvm_exit" / "kvm_page_fault" (line `line`) or "name" (CPU N/KVM)
    line: int


@dataclass(frozen=True, slots=True)
class Imported:
    """What one text gave: the events, and how the capture was read (for the response)."""

    events: tuple[TraceEvent, ...]
    kind: str                       # "capture" (tracepoint lines), "plain" or "mixed"
    initial: str                    # "reset", "running" or "given"
    layouts: tuple[str, ...]        # header layouts seen ("ftrace", "perf")
    pid: int | None                 # the VM replayed (None: the capture records no PIDs)
    pids: tuple[int, ...]           # every PID with KVM lines in the capture
    threads: tuple[Thread, ...]
    skipped: dict[str, int] = field(default_factory=dict)


def _default_initial(kind: str) -> str:
    """A capture starts where a real vCPU starts, at RESET (CR0.CD=NW=1, MTRRs zero, PAT
    power-on): a capture recorded from VM start shows the firmware's first CR0 write
    clearing CD and NW. Plain-format text is a hand-written scenario; it starts running."""
    return "running" if kind == "plain" else "reset"


def import_text(text: str, *, max_events: int = DEFAULT_MAX_EVENTS, initial: VcpuState | None = None,
                pid: int | None = None) -> Imported:
    """Events from capture lines and/or plain-format lines (app/kvm/trace_format.md).

    `initial` None picks by kind (`_default_initial`); `pid` chooses one VM of a capture that
    recorded PIDs. Errors name the line ("line 7: ...") or the option (`pid`).
    """
    if not isinstance(text, str):
        raise MemTypeError("trace", "the trace must be text", "see app/kvm/trace_format.md")
    _check_int(max_events, "max_events", 1, MAX_EVENTS, f"at most {MAX_EVENTS} events")
    if pid is not None:
        _check_int(pid, "pid", 0, (1 << 31) - 1, "a process id")
    lines = text.splitlines()

    # Pass 1: headers, order, VMs and the thread -> vCPU facts, over the whole capture
    # (a thread's first kvm_msr may come before its first kvm_entry).
    headers: dict[int, Header] = {}
    plain = False
    last_ts: tuple[int, int] | None = None
    facts: dict[int, Thread] = {}     # by TID: thread ids are unique on the host
    pid_of: dict[int, int] = {}        # TID -> PID, where some line recorded it
    pids: dict[int, int] = {}
    for n, raw in enumerate(lines, 1):
        if len(raw) > MAX_LINE_LENGTH:
            raise MemTypeError(f"line {n}", f"line is longer than {MAX_LINE_LENGTH} characters", "one event per line")
        stripped = raw.strip()
        if not stripped or stripped.startswith("#") or _REPORT_HEADER.match(stripped):
            continue
        if _LOST.search(stripped):
            raise MemTypeError(f"line {n}", "the tracer lost events here, so the replay would be wrong",
                               "record again with a larger buffer (trace-cmd record -b, perf record -m)")
        h = parse_header(raw)
        if h is None:
            plain = True
            continue
        if h.system not in (None, "kvm"):
            continue
        headers[n] = h
        if last_ts is not None and h.ts < last_ts[0]:
            raise MemTypeError(f"line {n}", f"timestamp goes back (line {last_ts[1]} is later)",
                               "lines must be in time order, as trace-cmd report and perf script print them; "
                               "events on one timestamp cannot be re-ordered, so the capture is not re-sorted")
        last_ts = (h.ts, n)
        if h.event not in VCPU_ID_EVENTS + WRITE_EVENTS:
            continue
        if h.pid is not None:
            pids[h.pid] = pids.get(h.pid, 0) + 1
            pid_of.setdefault(h.tid, h.pid)
        if h.event in VCPU_ID_EVENTS and (vm_ := _VCPU_FIELD.match(h.body)):
            v = _vcpu_index(int(vm_.group(1)), n)
            old = facts.get(h.tid)
            if old is not None and old.vcpu != v:
                raise MemTypeError(f"line {n}", f"thread {h.tid} runs vCPU {v} here but vCPU {old.vcpu} at line "
                                   f"{old.line}", "one host thread runs one vCPU")
            if old is None:
                facts[h.tid] = Thread(h.tid, None, h.comm, v, h.event, n)
    for n, h in headers.items():
        if h.event in WRITE_EVENTS and h.tid not in facts and (q := _QEMU_THREAD.match(h.comm)):
            facts[h.tid] = Thread(h.tid, None, h.comm, _vcpu_index(int(q.group(1)), n), "name", n)

    chosen = _choose_vm(pids, pid)
    threads = {tid: replace(t, pid=pid_of.get(tid)) for tid, t in facts.items()
               if chosen is None or pid_of.get(tid) in (chosen, None)}
    by_vcpu: dict[int, Thread] = {}
    for t in sorted(threads.values(), key=lambda t: t.line):
        other = by_vcpu.get(t.vcpu)
        if other is not None:
            raise MemTypeError(f"line {t.line}", f"vCPU {t.vcpu} is run by thread {t.tid} here and by thread "
                               f"{other.tid} at line {other.line}: the capture holds more than one VM",
                               "record one VM (trace-cmd record -P <qemu pid>) or record PIDs "
                               "(perf script -F +pid; ftrace option record-tgid) and choose one with pid")
        by_vcpu[t.vcpu] = t

    kind = "mixed" if plain and headers else "plain" if plain or not headers else "capture"
    init_name = "given" if initial is not None else _default_initial(kind)
    start = initial if initial is not None else INITIAL_STATES[init_name]

    # Pass 2: the events, in line order.
    events: list[TraceEvent] = []
    skipped: dict[str, int] = {}
    cr0: dict[int, tuple[bool, bool]] = {}

    def skip(why: str) -> None:
        skipped[why] = skipped.get(why, 0) + 1

    def add(te: TraceEvent) -> None:
        if len(events) >= max_events:
            raise MemTypeError(f"line {te.line}", f"more than {max_events} events",
                               "raise max_events (MEMTYPE_MAX_TRACE_EVENTS) or cut the trace")
        events.append(te)

    def cr0_value(v: int, value: int, line: int) -> None:
        if value >> 32:
            raise MemTypeError(f"line {line}", f"CR0 value {value:#x} sets bits 63:32",
                               "CR0 bits 63:32 are reserved: MOV to CR0 raises #GP")
        cd, nw = bool(value & CR0_CD_BIT), bool(value & CR0_NW_BIT)
        if nw and not cd:
            raise MemTypeError(f"line {line}", f"CR0 value {value:#x} has NW=1 with CD=0",
                               "an invalid combination: MOV to CR0 raises #GP(0) (SDM cache control)")
        if cr0.get(v, (start.cr0_cd, start.cr0_nw)) != (cd, nw):
            cr0[v] = (cd, nw)
            add(TraceEvent(v, Cr0Write(value=cd, cr0_nw=nw), line))
        else:
            skip("CR0 writes leaving CD and NW as they were")

    for n, raw in enumerate(lines, 1):
        h = headers.get(n)
        if h is None:
            stripped = raw.strip()
            if (stripped and not stripped.startswith("#") and not _REPORT_HEADER.match(stripped)
                    and parse_header(raw) is None):
                _plain_line(stripped, n, start, cr0, add, cr0_value)
            continue
        if chosen is not None and (h.pid if h.pid is not None else pid_of.get(h.tid, chosen)) != chosen:
            skip(f"lines of other VMs (PIDs {', '.join(str(p) for p in sorted(pids) if p != chosen)})")
            continue
        if h.event not in WRITE_EVENTS:
            skip(f"{h.event} lines")
            continue
        # The vCPU is needed only for a line that becomes an event: a thread with no known
        # vCPU may still read MSRs or write other ones.
        if h.event == "kvm_msr":
            b = _MSR_BODY.match(h.body)
            if not b:
                raise MemTypeError(f"line {n}", f"cannot read kvm_msr payload {h.body!r}",
                                   "expected 'msr_write <hex msr> = 0x<hex value>' (TP_printk of kvm_msr)")
            msr = int(b["msr"], 16)
            if b["rw"] == "read":
                skip("MSR reads")
            elif b["gp"]:
                skip("MSR writes that faulted (#GP)")
            elif not (msr == MSR_IA32_PAT or is_mtrr_msr(msr)):
                skip("writes to other MSRs")
            else:
                for te in events_from_writes(_vcpu_of(h, n, threads), [(msr, _num(b["val"], n, "MSR value"))], n):
                    add(te)
        else:
            b = _CR_BODY.match(h.body)
            if not b:
                raise MemTypeError(f"line {n}", f"cannot read kvm_cr payload {h.body!r}",
                                   "expected 'cr_write <hex cr> = 0x<hex value>' (TP_printk of kvm_cr)")
            if b["rw"] == "read":
                skip("CR reads")
            elif int(b["cr"], 16) != 0:
                skip("writes to other CRs")
            else:
                cr0_value(_vcpu_of(h, n, threads), _num(b["val"], n, "CR0 value"), n)

    return Imported(tuple(events), kind, init_name, tuple(sorted({h.layout for h in headers.values()})),
                    chosen, tuple(sorted(pids)), tuple(sorted(threads.values(), key=lambda t: (t.vcpu, t.tid))),
                    skipped)


def _choose_vm(pids: dict[int, int], pid: int | None) -> int | None:
    """The one VM to replay: the only PID, or the one asked for."""
    if pid is not None:
        if not pids:
            raise MemTypeError("pid", f"pid {pid} given but the capture records no PIDs",
                               "record PIDs (perf script -F +pid; ftrace option record-tgid) or leave pid out "
                               "for a capture of one VM (trace-cmd record -P <qemu pid>)")
        if pid not in pids:
            raise MemTypeError("pid", f"no KVM lines of PID {pid}",
                               f"the capture has PIDs {', '.join(str(p) for p in sorted(pids))}")
        return pid
    if len(pids) > 1:
        listed = ", ".join(f"{p} ({c} lines)" for p, c in sorted(pids.items()))
        raise MemTypeError("pid", f"the capture holds {len(pids)} VMs (PIDs {listed})",
                           "one EPT per VM: choose one with pid; VMs are never merged")
    return next(iter(pids), None)


def _vcpu_of(h: Header, n: int, threads: dict[int, Thread]) -> int:
    t = threads.get(h.tid)
    if t is None:
        raise MemTypeError(f"line {n}", f"thread {h.comm!r} (TID {h.tid}) has no known vCPU",
                           "the vCPU comes from the 'vcpu N' of a kvm_entry/kvm_exit line of the same thread "
                           "(record with -e kvm:kvm_entry -e kvm:kvm_exit) or from a QEMU thread name 'CPU N/KVM' "
                           "(qemu -name ...,debug-threads=on)")
    return t.vcpu


def _plain_line(stripped: str, n: int, start: VcpuState, cr0: dict[int, tuple[bool, bool]], add, cr0_value) -> None:
    """One line of the plain format (app/kvm/trace_format.md)."""
    toks = stripped.split("#", 1)[0].split()
    low = [t.lower() for t in toks]

    def vcpu_index(tok: str) -> int:
        return _vcpu_index(_num(tok, n, "vCPU index"), n)

    if (len(low) == 3 and low[:2] == ["vm", "ncdma"]) or (len(low) == 4 and low[0] == "vcpu" and low[2] == "ncdma"):
        v = 0 if low[0] == "vm" else vcpu_index(toks[1])
        if low[-1] not in ("on", "off"):
            raise MemTypeError(f"line {n}", f"ncdma takes 'on' or 'off', not {toks[-1]!r}",
                               "see app/kvm/trace_format.md")
        add(TraceEvent(v, NoncoherentDma(value=low[-1] == "on"), n))
        return
    if len(low) < 3 or low[0] != "vcpu":
        raise MemTypeError(f"line {n}", f"unrecognised line {stripped[:80]!r}",
                           "expected 'vcpu N cr0 ...', 'vcpu N wrmsr MSR VALUE', 'vm ncdma on|off' or a kvm_msr/kvm_cr "
                           "tracepoint line")
    v = vcpu_index(toks[1])
    op = low[2]
    if op == "cr0" and len(low) >= 4 and "=" in low[3]:
        kv: dict[str, bool] = {}
        for tok in low[3:]:
            k, _, val = tok.partition("=")
            if k not in ("cd", "nw") or val not in ("0", "1") or k in kv:
                raise MemTypeError(f"line {n}", f"bad CR0 field {tok!r}",
                                   "write 'cr0 cd=0|1 [nw=0|1]' or 'cr0 <value>'")
            kv[k] = val == "1"
        if "cd" not in kv:
            raise MemTypeError(f"line {n}", "cr0 needs cd=0 or cd=1", "write 'cr0 cd=0|1 [nw=0|1]'")
        old_nw = cr0.get(v, (start.cr0_cd, start.cr0_nw))[1]
        nw = kv.get("nw", old_nw)
        if nw and not kv["cd"]:
            raise MemTypeError(f"line {n}", "CR0.NW=1 with CD=0", "an invalid combination: MOV to CR0 raises #GP(0)")
        cr0[v] = (kv["cd"], nw)
        add(TraceEvent(v, Cr0Write(value=kv["cd"], cr0_nw=kv.get("nw")), n))
    elif op == "cr0" and len(low) == 4:
        cr0_value(v, _num(toks[3], n, "CR0 value"), n)
    elif op == "wrmsr" and len(low) == 5:
        msr = _num(toks[3], n, "MSR number")
        if not (msr == MSR_IA32_PAT or is_mtrr_msr(msr)):
            raise MemTypeError(f"line {n}", f"MSR {msr:#x} is neither an MTRR MSR nor IA32_PAT (0x277)",
                               "MTRR MSRs: 0x200-0x20f, 0x250, 0x258, 0x259, 0x268-0x26f, 0x2ff")
        for te in events_from_writes(v, [(msr, _num(toks[4], n, "MSR value"))], n):
            add(te)
    else:
        raise MemTypeError(f"line {n}", f"unrecognised line {stripped[:80]!r}",
                           "expected 'vcpu N cr0 cd=0|1 [nw=0|1]', 'vcpu N cr0 VALUE', 'vcpu N wrmsr MSR VALUE' or "
                           "'vcpu N ncdma on|off'")


RUNNING = VcpuState()
"""The default start of parse_trace/trace_from_text: a vCPU already running (caching on)."""


def parse_trace(text: str, max_events: int = DEFAULT_MAX_EVENTS, initial: VcpuState = RUNNING) -> list[TraceEvent]:
    """The events of `text` from `initial` (default: running, the plain format's start)."""
    return list(import_text(text, max_events=max_events, initial=initial).events)


def import_trace(text: str, vm: VmConfig, *, vcpus: int | None = None, name: str = "",
                 initial: VcpuState | None = None, max_events: int = DEFAULT_MAX_EVENTS,
                 pid: int | None = None) -> tuple[Trace, Imported]:
    """`import_text` then `Trace`, starting every vCPU from the state `import_text` chose;
    `vcpus` defaults to the highest vCPU id seen plus one."""
    imp = import_text(text, max_events=max_events, initial=initial, pid=pid)
    start = initial if initial is not None else INITIAL_STATES[imp.initial]
    seen = [te.vcpu for te in imp.events] + [t.vcpu for t in imp.threads]
    n = vcpus if vcpus is not None else max(seen, default=0) + 1
    return Trace(vm, n, imp.events, start, name), imp


def trace_from_text(text: str, vm: VmConfig, vcpus: int | None = None, name: str = "",
                    initial: VcpuState = RUNNING, max_events: int = DEFAULT_MAX_EVENTS) -> Trace:
    """`import_trace` from an explicit `initial` (default: running)."""
    return import_trace(text, vm, vcpus=vcpus, name=name, initial=initial, max_events=max_events)[0]


__all__ = [
    "DEFAULT_MAX_EVENTS", "Header", "Imported", "Thread", "VCPU_ID_EVENTS", "WRITE_EVENTS", "import_text",
    "import_trace", "parse_header", "parse_trace", "trace_from_text",
]
