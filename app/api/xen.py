"""POST /api/v1/resolve with `kernel` "xen": the request's Xen facts into app.xen, the
resolution out as JSON or 72-column text. Thin: every rule lives in app/xen."""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.responses import Response

from ..kvm.scenario import VmConfig
from ..x86.memtype import MemType, MemTypeError
from ..xen import Coverage, Domain, P2mType, Page, PinnedRange, get_version
from ..xen.resolve import XenResolution, resolve_xen
from ..xen.text import render_xen
from . import schemas as s
from .common import text, wants_text
from .convert import core_errors, to_vcpu, to_vm
from .errors import RuleViolation

KVM_ONLY = ("mmio", "host_page", "private")


def to_xen(x: s.XenIn, gpa: int) -> tuple[Domain, Page]:
    gfn = (gpa >> 12) & ~((1 << x.order) - 1)
    d = Domain(iommu_enabled=x.iommu, io_resources=x.io_resources, pci_devices=x.pci_devices,
               pinned=tuple(PinnedRange(r.start, r.end, MemType.from_label(r.type)) for r in x.pinned),
               has_vcpu=x.has_vcpu)
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


def xen_resolve(req: s.ResolveRequest, request: Request, fmt: str | None) -> Response:
    for name in KVM_ONLY:
        if getattr(req, name) is not None:
            raise RuleViolation(MemTypeError(name, f"{name} is a KVM input", 'with kernel "xen" give xen.p2m_type'),
                                ["body", name])
    vm, map_loc = to_vm(req.vm, req.memory_map)
    if vm != VmConfig(maxphyaddr=vm.maxphyaddr, memory_map=vm.memory_map):
        raise RuleViolation(MemTypeError("vm", "KVM settings given with kernel xen",
                                         "only vm.maxphyaddr applies to Xen; domain facts go in xen"), ["body", "vm"])
    with core_errors(map_loc):
        version = get_version(req.kernel)
        vcpu = to_vcpu(req.vcpu)
        if not 0 <= req.gpa < 1 << vm.maxphyaddr:
            raise MemTypeError("gpa", f"address {req.gpa:#x} is at or above 2^MAXPHYADDR",
                               f"MAXPHYADDR={vm.maxphyaddr}")
        d, page = to_xen(req.xen or s.XenIn(), req.gpa)
        try:
            res = resolve_xen(version, d, page, vcpu, vm.maxphyaddr)
        except MemTypeError as e:
            # app.xen names the domain and the p2m entry it validates; both come from `xen`
            if e.loc[:1] in (("domain",), ("page",)):
                raise RuleViolation(e, ["body", "xen", *e.loc[1:]]) from None
            raise
    if wants_text(request, fmt):
        return text(render_xen(res))
    return Response(json.dumps(resolution_json(req.kernel, req.gpa, res)), media_type="application/json")
