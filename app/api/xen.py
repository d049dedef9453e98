"""POST /api/v1/resolve with `kernel` "xen": the request's Xen facts into app.xen, the
resolution out as JSON or 72-column text. Thin: every rule lives in app/xen."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request
from fastapi.responses import Response

from ..kvm.memmap import mtrr_default, mtrr_ranges
from ..kvm.scenario import Access, Event, VmConfig
from ..permalink import LinkState, url
from ..x86.memtype import MemType, MemTypeError
from ..xen import Passthrough, PinnedRange, XenFacts, get_version
from ..xen.cd import cd_view
from ..xen.events import PASSTHROUGH_ATTACH
from ..xen.facts import P2mType
from ..xen.map import FrameRange, check_frames, xen_map
from ..xen.resolve import check_no_kvm_settings, resolve_xen
from ..xen.text import render_xen, render_xen_zap
from ..xen.zap import xen_zap
from . import schemas as s
from .common import base_url, json_response, text, wants_text
from .convert import core_errors, to_event, to_vcpu, to_vm
from .errors import RuleViolation
from .systems import MapLimits, check_private, check_private_ranges_given

KVM_ONLY = ("mmio", "host_page", "private")


def to_facts(x: s.XenDomainIn | None) -> XenFacts:
    """The request's `xen` object as the core's XenFacts (what a permalink carries too); a
    member left out keeps XenFacts' default (host_mtrr: None, by kind / WB)."""
    if x is None:
        return XenFacts()
    given = {k: getattr(x, k) for k in x.model_fields_set if k not in ("pinned", "frames")}
    if "host_mtrr" in given and given["host_mtrr"] is None:
        del given["host_mtrr"]
    pinned = tuple(PinnedRange(r.start, r.end, MemType.from_label(r.type)) for r in x.pinned)
    return XenFacts(**given, pinned=pinned)


def _kvm_vm(vm: VmConfig) -> None:
    with core_errors():
        check_no_kvm_settings(vm)


@contextmanager
def _xen_loc() -> Iterator[None]:
    """app.xen names the domain and the p2m entry it validates; both come from `xen`."""
    try:
        yield
    except MemTypeError as e:
        if e.loc[:1] in (("domain",), ("page",)):
            raise RuleViolation(e, ["body", "xen", *e.loc[1:]]) from None
        if e.loc[:1] in (("host_mtrr",), ("frames",)):
            raise RuleViolation(e, ["body", "xen", *e.loc]) from None
        raise


MAP_NOTES = (
    "ram ranges are p2m_ram_rw, mmio ranges p2m_mmio_direct, mfn = gfn; mmio_ro_ranges and special pages "
    "are per-frame facts (POST /api/v1/resolve with xen.mmio_ro, xen.special)",
    "page size: the largest order epte_get_entry_emt() gives a type for (a -1 answer splits the superpage); "
    "whether the toolstack populated superpages is not modelled",
)


MAP_FRAME_NOTES = (
    "ram ranges are p2m_ram_rw, mmio ranges p2m_mmio_direct unless xen.frames gives a p2m type; mmio_ro and "
    "special per xen.frames (mfn = gfn); runs split at their edges, so a superpage -1 shows at the order its "
    "splits end at",
    MAP_NOTES[1],
)


def to_frames(x: s.XenMapIn | s.XenLinkIn | None) -> tuple[FrameRange, ...]:
    """The request's `xen.frames` as the core's FrameRange (checked by app.xen.map.check_frames)."""
    if x is None or not x.frames:
        return ()
    return tuple(FrameRange(f.start, f.end, P2mType(f.p2m_type) if f.p2m_type is not None else None, f.mmio_ro,
                            f.special) for f in x.frames)


def xen_map_answer(req: s.MapRequest, limits: MapLimits) -> s.XenMapResponse:
    """POST /api/v1/map with kernel xen: app.xen.map.xen_map over the memory map."""
    before, after = limits
    vm, map_loc = to_vm(req.vm, req.memory_map, kinds=True)  # vendor and type refused as KVM settings (_kvm_vm)
    _kvm_vm(vm)
    with core_errors(map_loc):
        version = get_version(req.kernel)
        vcpu = to_vcpu(req.vcpu)
        vcpu.validate(vm)
        before(vcpu, vm)
        facts = to_facts(req.xen)
        d, host = facts.domain(), facts.map_host_mtrr()
        frames = to_frames(req.xen)
        with _xen_loc():
            runs = xen_map(version, d, vm, vcpu, req.pat_index, host, frames)
        after(len(runs))
    return s.XenMapResponse.model_validate({
        "kernel": req.kernel, "version": version, "pat_index": req.pat_index, "host_mtrr": host,
        "cr0_cd": cd_view(d, vcpu.cr0_cd, vcpu.pat, vcpu.cr0_nw), "runs": runs,
        "mtrr_ranges": mtrr_ranges(vcpu, vm),
        "mtrr": {"enabled": vcpu.mtrr.enabled, "default": mtrr_default(vcpu, vm)},
        "notes": list(MAP_NOTES if not frames else MAP_FRAME_NOTES)})


def _event(e: s.Cr0CdEvent | s.MtrrWriteEvent | s.NoncoherentDmaEvent | s.PatWriteEvent | s.PassthroughEvent,
           ) -> Event | Passthrough:
    if isinstance(e, s.PassthroughEvent):
        return Passthrough(e.kind == PASSTHROUGH_ATTACH, e.resource)
    if isinstance(e, s.NoncoherentDmaEvent):
        raise MemTypeError(("event", "kind"), "noncoherent_dma is a KVM event",
                           "Xen's counterparts are passthrough_attach and passthrough_detach (io or pci)")
    return to_event(e)


def xen_zap_answer(req: s.ZapRequest, request: Request, fmt: str | None) -> Response:
    """POST /api/v1/zap with kernel xen: app.xen.zap.xen_zap over the memory map."""
    vm, map_loc = to_vm(req.vm, req.memory_map, kinds=True)  # vendor and type refused as KVM settings (_kvm_vm)
    _kvm_vm(vm)
    with core_errors(map_loc):
        version = get_version(req.kernel)
        vcpu = to_vcpu(req.vcpu)
        vcpu.validate(vm)
        event = _event(req.event)
        facts = to_facts(req.xen)
        frames = to_frames(req.xen)
        with _xen_loc():
            z = xen_zap(version, facts.domain(), vm, vcpu, event, facts.map_host_mtrr(), frames)
    link = url(LinkState(req.kernel, vm, vcpu, event=event, view="zap", xen=facts, xen_frames=frames),
               base_url(request))  # the link keeps the frames (app.permalink writes them in order)
    if wants_text(request, fmt):
        return text(render_xen_zap(z, link))
    return json_response(s.XenZapResponse.model_validate(s.View(z, kernel=req.kernel, permalink=link)))


def xen_resolve(req: s.ResolveRequest, request: Request, fmt: str | None) -> Response:
    for name in KVM_ONLY:
        if getattr(req, name) is not None:
            raise RuleViolation(MemTypeError(name, f"{name} is a KVM input", 'with kernel "xen" give xen.p2m_type'),
                                ["body", name])
    vm, map_loc = to_vm(req.vm, req.memory_map, kinds=True)  # vendor and type refused as KVM settings (_kvm_vm)
    _kvm_vm(vm)
    with core_errors(map_loc):
        version = get_version(req.kernel)
        vcpu = to_vcpu(req.vcpu)
        if not 0 <= req.gpa < 1 << vm.maxphyaddr:
            raise MemTypeError("gpa", f"address {req.gpa:#x} is at or above 2^MAXPHYADDR",
                               f"MAXPHYADDR={vm.maxphyaddr}")
        facts = to_facts(req.xen)
        with _xen_loc():
            res = resolve_xen(version, facts.domain(), facts.page(req.gpa), vcpu, vm.maxphyaddr)
    link = url(LinkState(req.kernel, vm, vcpu, Access(req.gpa), xen=facts), base_url(request))
    if wants_text(request, fmt):
        return text(render_xen(res, link))
    return json_response(s.XenResolveResponse.model_validate(s.View(res, kernel=req.kernel, gpa=req.gpa,
                                                                      permalink=link)))


def xen_permalink_state(req: s.PermalinkRequest, vs_ok) -> LinkState:
    """POST /api/v1/permalink with a Xen kernel: the state checked as resolve (and zap, for
    an event) would check it."""
    for name in KVM_ONLY[:2]:
        if getattr(req, name) is not None:
            raise RuleViolation(MemTypeError(name, f"{name} is a KVM input", 'with kernel "xen" give xen.p2m_type'),
                                ["body", name])
    check_private_ranges_given(req, VmConfig())  # the map's refusal (a Xen domain is no TD)
    check_private(req, VmConfig())  # resolve's (the link had dropped `private` silently)
    vm, map_loc = to_vm(req.vm, req.memory_map, kinds=True)  # vendor and type refused as KVM settings (_kvm_vm)
    _kvm_vm(vm)
    with core_errors(map_loc):
        version = get_version(req.kernel)
        vcpu = to_vcpu(req.vcpu).validate(vm)
        facts = to_facts(req.xen)
        with _xen_loc():
            facts.domain().validate(version)
            facts.page(req.gpa).validate()
            frames = check_frames(to_frames(req.xen), vm)  # the map's, checked as the map checks them
        event = _event(req.event) if req.event is not None else None
        vs_ok(req)
    return LinkState(req.kernel, vm, vcpu, Access(req.gpa), event, req.vs, req.view, req.pati, req.vs_vendor, facts,
                     vs_type=req.vs_type, xen_frames=frames)
