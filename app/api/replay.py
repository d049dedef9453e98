"""POST /api/v1/replay: a trace replayed under each era -> per-era figures (app.kvm.replay).

A trace is one of: a boot generator (`ovmf`, `seabios`) with a vCPU count, explicit events,
or trace text. Limits: the body is capped by MEMTYPE_MAX_TRACE_BYTES (413 beyond), the
number of events by MEMTYPE_MAX_TRACE_EVENTS (422 beyond). Replaying is CPU work, so the
endpoint is a plain `def` run in the app's bounded pool (app/api/pool.py: @pooled).
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..kvm import replay as rp
from ..kvm.boot import Machine, events_by_source, parse_memory
from ..kvm.eras import ERAS, get_era
from ..kvm.trace_source import DEFAULT_VCPUS, check_one_source, make_trace
from ..x86.memtype import MemTypeError
from . import schemas as s
from .common import BUSY, ERRORS, json_response
from .convert import core_errors, to_event, to_vcpu, to_vm
from .errors import RuleViolation
from .pool import pooled

router = APIRouter(tags=["analysis"])



def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n")[0]


@router.get("/replay/generators", response_model=list[s.GeneratorOut], summary="Trace generators for replay")
async def generators() -> list[s.GeneratorOut]:
    return [s.GeneratorOut(name=n, description=_first_line(f.__doc__)) for n, f in rp.GENERATORS.items()]


_VCPU_IN_TEXT = re.compile(r"\bvcpu[\s_=:-]*(\d{1,4})|\bCPU (\d{1,4})/KVM", re.I)


def _check_work_budget(req: s.ReplayRequest, max_work: int) -> None:
    """Refuse (422 naming MEMTYPE_MAX_REPLAY_WORK) a replay whose work, (events + vCPUs) x
    eras, exceeds the budget, before any of it is done. Events: as given; for trace text
    its non-blank lines (an upper bound); for a generator, the boot's event count, known
    before it is built (replay.boot_event_count). vCPUs: as given, else the highest index
    named plus one.

    Why this measure: the engine's cost is per event and era (app/kvm/replay.py shares
    windows and EPTs, and a transition is decided once per kind), plus each vCPU's own
    state at the start and end; it does not grow with the vCPU count per event. Measured
    (bench/run.py replay_scaling, 2026-12-04): an adversarial 10,000-event trace costs
    0.36 s with 8 vCPUs and 0.45 s with 256; an OVMF boot of 128 vCPUs (20,000 events)
    0.2 s. The earlier events x eras x vCPUs counted a 192-vCPU OVMF boot as 35 million
    units and refused it, though it is a fraction of a second of work."""
    eras = len(req.kernels) if req.kernels else len(ERAS)
    if req.generator is not None:
        vcpus = req.vcpus or DEFAULT_VCPUS
        try:
            m = Machine(req.machine, parse_memory(req.memory) if req.memory is not None else 4 << 30,
                        req.maxphyaddr if req.maxphyaddr is not None else req.vm.maxphyaddr, req.aperture,
                        req.edk2).validate()
            events = rp.boot_event_count(req.generator, vcpus, m, linux=req.linux,
                                         qemu=req.qemu_host_writes is not False)
        except (MemTypeError, KeyError):
            return  # the endpoint names the bad option
        field = "vcpus"
    elif req.events is not None:
        events, field = len(req.events), "events"
        vcpus = req.vcpus or max((e.vcpu for e in req.events), default=0) + 1
    elif req.trace is not None:
        events, field = sum(1 for ln in req.trace.splitlines() if ln.strip()), "trace"
        vcpus = req.vcpus or max((int(a or b) for a, b in _VCPU_IN_TEXT.findall(req.trace)), default=0) + 1
    else:
        return  # the endpoint names the missing source
    work = (events + vcpus) * eras
    if work > max_work:
        what = f"({events} events + {vcpus} vCPUs) x {eras} eras = {work} units of work"
        raise RuleViolation(MemTypeError(field, what,
                                         f"at most {max_work} (MEMTYPE_MAX_REPLAY_WORK): fewer vCPUs, events or "
                                         "kernels"), ["body", field])


@router.post("/replay", response_model=s.ReplayResponse, responses={**ERRORS, **BUSY},
             summary="Replay a trace under each era")
@pooled
def replay_endpoint(req: s.ReplayRequest, request: Request) -> Response:
    """Give exactly one of `generator` (with `vcpus`, `linux`, `machine`, `memory`, `maxphyaddr`), `events` or
    `trace` (text). Every vCPU starts from `initial`; the EPT is the VM's. Returns, per era,
    the kvm_zap_gfn_range() calls, pages zapped, excess (zapped, unchanged) and stale pages
    at the end, calls made while CR0.CD=1 and duplicate calls (see app/kvm/replay.py for the
    model and its one assumption: the vCPU that caused a zap re-faults at once). An era that
    refuses the VM (a quirk it cannot turn off) gets `error` instead of figures."""
    settings = request.app.state.settings
    try:  # the request as a whole, not its generator member, is what is wrong
        check_one_source(generator=req.generator, events=req.events, text=req.trace)
    except MemTypeError as e:
        raise RuleViolation(e, ["body"]) from None
    _check_work_budget(req, settings.max_replay_work)
    max_events = settings.max_trace_events
    vm, map_loc = to_vm(req.vm)
    # the core names the request's members (initial, events[i], vcpus, ...); anything else
    # is a line of the trace text
    with core_errors(map_loc, at=["trace"], members=s.ReplayRequest.model_fields):
        vm.validate()  # refuses an empty memory map too
        initial = req.initial if req.initial is None or isinstance(req.initial, str) else \
            to_vcpu(req.initial, "initial").validate(vm, "initial")
        eras = [get_era(k, ("kernels", i)) for i, k in enumerate(req.kernels)] if req.kernels else list(ERAS.values())
        made = make_trace(
            vm, generator=req.generator, text=req.trace, vcpus=req.vcpus, linux=req.linux, machine=req.machine,
            events=None if req.events is None else [rp.TraceEvent(e.vcpu, to_event(e.event)) for e in req.events],
            memory=parse_memory(req.memory) if req.memory is not None else None, maxphyaddr=req.maxphyaddr,
            aperture=req.aperture, edk2=req.edk2, qemu_host_writes=req.qemu_host_writes, initial=initial, pid=req.pid,
            max_events=max_events)
        trace = made.trace
        refused: dict[str, str] = {}
        for era in eras:
            try:
                era.check_vm(vm)
            except MemTypeError as e:
                refused[era.id] = str(e)
        # one pass over the trace for every era that takes the VM (the vCPU states are shared)
        results = rp.replay_all(trace, [e for e in eras if e.id not in refused])
        out = [s.ReplayEraOut(kernel=e.id, error=refused[e.id]) if e.id in refused
               else s.ReplayEraOut.model_validate(results[e.id] if req.include_calls
                                                  else s.View(results[e.id], calls=None))
               for e in eras]
        final_vm, finals = rp.final_states(trace)
    by_source = events_by_source(te.source for te in trace.events)
    return json_response(s.ReplayResponse.model_validate({
        "name": trace.name, "vcpus": trace.vcpus, "events": len(trace.events), "events_by_source": by_source,
        "initial": made.initial, "qemu_host_writes": made.qemu_host_writes, "capture": made.imported,
        "final_state": {"noncoherent_dma": final_vm.noncoherent_dma, "vcpus": finals}, "eras": out}))
