"""The three sources of a replay trace (a boot generator, explicit events, trace text) and
the options they take, decided once for the API (`POST /api/v1/replay`) and the CLI
(`memtype-explorer replay`). Pure: plain values in, a `Trace` and how it was made out.

Why one function: the defaults are the substance here, and they differ by source. A real
vCPU starts at RESET, so generators and captures start there; a hand-written list of
events or plain-format text is a scenario that starts running. QEMU's own KVM_SET_MSRS
writes (machine init and reset, per vCPU) go through `kvm_mtrr_set_msr()` and zap in
v4.2..v6.10 but are in no kvm_msr trace: a generator adds them by default, a capture or an
event list only when asked (`qemu_host_writes`), and they are counted as source "qemu".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..x86.memtype import MemTypeError
from .boot import EDK2_DEFAULT, INITIAL_STATES
from .replay import MAX_EVENTS, Trace, TraceEvent, boot_trace, with_qemu_host_writes
from .scenario import VcpuState, VmConfig
from .trace_import import Imported, import_trace

DEFAULT_VCPUS = 8
"""vCPUs of a generated boot when none are asked for (the 2023 cover letter's first figure)."""


@dataclass(frozen=True)
class Made:
    """A trace and how it was made: the initial state's name ("reset", "running", "given"),
    whether QEMU's host writes were added, and, for text, how it was read."""

    trace: Trace
    initial: str
    qemu_host_writes: bool
    imported: Imported | None = None


def check_one_source(*, generator: object, events: object, text: object) -> None:
    """A replay has one trace: a generator, explicit events or trace text (the API checks
    this before its work budget, which counts the one source given)."""
    given = [n for n, v in (("generator", generator), ("events", events), ("trace", text)) if v is not None]
    if len(given) != 1:
        raise MemTypeError("generator", f"{len(given)} trace sources given ({', '.join(given) or 'none'})",
                           "give exactly one of generator, events and trace")


def make_trace(vm: VmConfig, *, generator: str | None = None, events: Sequence[TraceEvent] | None = None,
               text: str | None = None, vcpus: int | None = None, linux: bool = True, machine: str = "q35",
               memory: int | None = None, maxphyaddr: int | None = None, aperture: str = "dynamic",
               edk2: str = EDK2_DEFAULT,
               qemu_host_writes: bool | None = None, initial: str | VcpuState | None = None,
               pid: int | None = None, max_events: int = MAX_EVENTS, name: str = "") -> Made:
    """Exactly one of `generator`, `events`, `text`. `initial` is a name of
    `boot.INITIAL_STATES`, an explicit state, or None for the source's default."""
    check_one_source(generator=generator, events=events, text=text)
    if isinstance(initial, str):
        if initial not in INITIAL_STATES:
            raise MemTypeError("initial", f"unknown initial state {initial!r}", f"one of {', '.join(INITIAL_STATES)}")
        start: VcpuState | None = INITIAL_STATES[initial]
    else:
        start = initial
    if start is not None:
        start.validate(vm, "initial")
    if pid is not None and text is None:
        raise MemTypeError("pid", "pid chooses one VM of a capture", "give it with trace text only")
    qemu = qemu_host_writes if qemu_host_writes is not None else generator is not None
    imported = None
    if generator is not None:
        init_name = initial if isinstance(initial, str) else "given" if initial is not None else "reset"
        trace = boot_trace(generator, vcpus or DEFAULT_VCPUS, vm, linux, machine=machine, memory=memory,
                           maxphyaddr=maxphyaddr, aperture=aperture, edk2=edk2, qemu_host_writes=qemu,
                           initial=start or INITIAL_STATES["reset"], max_events=max_events)
    else:
        if events is not None:
            if len(events) > max_events:
                raise MemTypeError("events", f"{len(events)} events given",
                                   f"at most {max_events} (MEMTYPE_MAX_TRACE_EVENTS)")
            init_name = initial if isinstance(initial, str) else "given" if initial is not None else "running"
            n = vcpus or max((e.vcpu for e in events), default=0) + 1
            trace = Trace(vm, n, tuple(events), start or INITIAL_STATES["running"], name or "events")
        else:
            assert text is not None
            trace, imported = import_trace(text, vm, vcpus=vcpus, name=name or "trace", initial=start,
                                           max_events=max_events, pid=pid)
            init_name = initial if isinstance(initial, str) else imported.initial
        if qemu:
            trace = with_qemu_host_writes(trace, max_events)
    return Made(trace, init_name, qemu, imported)


__all__ = ["DEFAULT_VCPUS", "Made", "make_trace"]
