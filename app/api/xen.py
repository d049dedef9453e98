"""POST /api/v1/resolve with `kernel` "xen": the request's Xen facts into app.xen, the
resolution out as JSON or 72-column text. Thin: every rule lives in app/xen."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request
from fastapi.responses import Response

from ..kvm.memmap import mtrr_default, mtrr_ranges
from ..kvm.scenario import VmConfig
from ..x86.memtype import MemType, MemTypeError
from ..xen import Coverage, Domain, P2mType, Page, PinnedRange, get_version
from ..xen.cd import cd_view
from ..xen.map import xen_map
from ..xen.resolve import XenResolution, resolve_xen
from ..xen.text import render_xen
from . import schemas as s
from .common import text, wants_text
from .convert import core_errors, to_vcpu, to_vm
from .errors import RuleViolation
from .systems import MapLimits

KVM_ONLY = ("mmio", "host_page", "private")


def to_domain(x: s.XenDomainIn) -> Domain:
    return Domain(iommu_enabled=x.iommu, io_resources=x.io_resources, pci_devices=x.pci_devices,
                  pinned=tuple(PinnedRange(r.start, r.end, MemType.from_label(r.type)) for r in x.pinned),
                  has_vcpu=x.has_vcpu)


def to_xen(x: s.XenIn, gpa: int) -> tuple[Domain, Page]:
    gfn = (gpa >> 12) & ~((1 << x.order) - 1)
    d = to_domain(x)
    host = None if x.host_mtrr == "mixed" else MemType.from_label(x.host_mtrr)
    page = Page(gfn, gfn if x.mfn is None else x.mfn, x.order, P2mType(x.p2m_type), Coverage(x.mmio_ro),
                Coverage(x.special), host)
    return d, page


def resolution_json(kernel: str, gpa: int, r: XenResolution) -> dict:
    e = r.emt
    return {
        "kernel": kernel, "system": "xen",
        "version": {"id": r.version.id, "title": r.version.title, "releases": r.version.releases,
                    "tag": r.version.tag, "commit": r.version.commit},
        "gpa": f"{gpa:#x}", "gfn": f"{r.page.gfn:#x}", "mfn": f"{r.page.mfn:#x}", "order": r.page.order,
        "ept": {"memtype": e.emt.label if e.emt is not None else None, "emt_field": e.emt_field, "ipat": e.ipat,
                "mask": f"{e.mask:#04x}", "notation": e.label, "split": e.split,
                "leaf": s.LeafOut.model_validate(r.leaf).model_dump(mode="json")},
        "path": [s.StepOut.model_validate(st).model_dump(mode="json") for st in e.path],
        "cr0_cd": {"hw_cr0_cd": r.cd.hw_cr0_cd, "handle_cd": r.cd.handle_cd, "cache_mode": r.cd.cache_mode,
                   "vmcs_pat": r.cd.vmcs_pat.hex(),
                   "path": [s.StepOut.model_validate(st).model_dump(mode="json") for st in r.cd.path]},
        "guest_mtrr": s.LookupOut.model_validate(r.guest_mtrr).model_dump(mode="json"),
        "xen_mtrr": (None if r.xen_mtrr is None else
                     {"type": r.xen_mtrr.type.label if r.xen_mtrr.type is not None else None,
                      "reason": r.xen_mtrr.reason}),
        "mtrr_finding": r.mtrr_finding,
        "pat": [{"index": p.index, "pte_bits": f"{p.pte_bits:#04x}", "pte_flags": p.pte_flags,
                 "pat_type": p.pat_type.label, "pat_type_used": p.pat_type_used.label,
                 "effective": p.effective.label,
                 "guest_expected": p.guest_expected.label if p.guest_expected is not None else None,
                 "expected_reason": p.expected_reason, "relation": p.relation, "relation_reason": p.relation_reason}
                for p in r.pat_rows],
    }


def _kvm_vm(vm: VmConfig) -> None:
    if vm != VmConfig(maxphyaddr=vm.maxphyaddr, memory_map=vm.memory_map):
        raise RuleViolation(MemTypeError("vm", "KVM settings given with kernel xen",
                                         "only vm.maxphyaddr applies to Xen; domain facts go in xen"), ["body", "vm"])


@contextmanager
def _xen_loc() -> Iterator[None]:
    """app.xen names the domain and the p2m entry it validates; both come from `xen`."""
    try:
        yield
    except MemTypeError as e:
        if e.loc[:1] in (("domain",), ("page",)):
            raise RuleViolation(e, ["body", "xen", *e.loc[1:]]) from None
        if e.loc[:1] == ("host_mtrr",):
            raise RuleViolation(e, ["body", "xen", *e.loc]) from None
        raise


MAP_NOTES = (
    "ram ranges are p2m_ram_rw, mmio ranges p2m_mmio_direct, mfn = gfn; mmio_ro_ranges and special pages "
    "are per-frame facts (POST /api/v1/resolve with xen.mmio_ro, xen.special)",
    "page size: the largest order epte_get_entry_emt() gives a type for (a -1 answer splits the superpage); "
    "whether the toolstack populated superpages is not modelled",
)


def xen_map_answer(req: s.MapRequest, limits: MapLimits) -> s.XenMapResponse:
    """POST /api/v1/map with kernel xen: app.xen.map.xen_map over the memory map."""
    before, after = limits
    vm, map_loc = to_vm(req.vm, req.memory_map)
    _kvm_vm(vm)
    x = req.xen or s.XenMapIn()
    with core_errors(map_loc):
        version = get_version(req.kernel)
        vcpu = to_vcpu(req.vcpu)
        vcpu.validate(vm)
        before(vcpu, vm)
        d = to_domain(x)
        host = MemType.from_label(x.host_mtrr) if x.host_mtrr is not None else None
        with _xen_loc():
            runs = xen_map(version, d, vm, vcpu, req.pat_index, host)
        after(len(runs))
    return s.XenMapResponse.model_validate({
        "kernel": req.kernel, "version": version, "pat_index": req.pat_index, "host_mtrr": host,
        "cr0_cd": cd_view(d, vcpu.cr0_cd, vcpu.pat, vcpu.cr0_nw), "runs": runs,
        "mtrr_ranges": mtrr_ranges(vcpu, vm),
        "mtrr": {"enabled": vcpu.mtrr.enabled, "default": mtrr_default(vcpu, vm)}, "notes": list(MAP_NOTES)})


def xen_resolve(req: s.ResolveRequest, request: Request, fmt: str | None) -> Response:
    for name in KVM_ONLY:
        if getattr(req, name) is not None:
            raise RuleViolation(MemTypeError(name, f"{name} is a KVM input", 'with kernel "xen" give xen.p2m_type'),
                                ["body", name])
    vm, map_loc = to_vm(req.vm, req.memory_map)
    _kvm_vm(vm)
    with core_errors(map_loc):
        version = get_version(req.kernel)
        vcpu = to_vcpu(req.vcpu)
        if not 0 <= req.gpa < 1 << vm.maxphyaddr:
            raise MemTypeError("gpa", f"address {req.gpa:#x} is at or above 2^MAXPHYADDR",
                               f"MAXPHYADDR={vm.maxphyaddr}")
        d, page = to_xen(req.xen or s.XenIn(), req.gpa)
        with _xen_loc():
            res = resolve_xen(version, d, page, vcpu, vm.maxphyaddr)
    if wants_text(request, fmt):
        return text(render_xen(res))
    return Response(json.dumps(resolution_json(req.kernel, req.gpa, res)), media_type="application/json")
