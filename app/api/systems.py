"""POST /api/v1/resolve and /zap for `vm.vendor` "amd" (app.kvm.svm) and `vm.type` "tdx"
(app.kvm.tdx): the request into the core, the answer out as JSON or 72-column text.

Thin, like app/api/xen.py: every rule lives in app.kvm.svm / app.kvm.tdx (the refusals
too: a MemTypeError there becomes the 422 naming the field). What is decided here is only
which of the core's answers a request asks for, and, for a TD, which of the fields the TDX
module fixes the request left to their TDX value (tdx_defaults: never over a given one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from fastapi import Request
from fastapi.responses import Response

from ..kvm.eras import ERAS
from ..kvm.memmap import mtrr_default, mtrr_ranges
from ..kvm.scenario import Access, Event, VcpuState, VmConfig
from ..kvm.scenario import check_private as core_check_private
from ..kvm.svm import (
    DEFAULT_HOST,
    HOST_PAT_DEFAULT,
    UNVERIFIED,
    SvmHost,
    SvmResult,
    check_amd_side,
    svm_kernel,
    svm_map,
    svm_resolve,
)
from ..kvm.tdx import (
    PRIVATE_UNVERIFIED,
    TdxResult,
    check_private_ranges,
    check_tdx_vcpu,
    check_tdx_vm,
    check_vm_kind,
    tdx_defaults,
    tdx_map,
    tdx_mt_mask,
    tdx_resolve,
    tdx_zap_audit,
)
from ..kvm.versions import KernelInfo, resolve_kernel
from ..kvm.vm_kinds import VM_TYPE_TDX, is_vmx_default
from ..kvm.zap import ZapAudit
from ..permalink import LinkState, url
from ..render import render_zap
from ..render_kinds import render_svm, render_svm_zap, render_tdx, svm_zap_view
from ..x86.memtype import MemTypeError, located
from . import schemas as s
from .common import base_url, json_response, text, wants_text
from .convert import Loc, core_errors, to_event, to_host_page, to_vcpu
from .errors import RuleViolation


def is_kind(vm: VmConfig) -> bool:
    """Not KVM on Intel with a default VM: answered here."""
    return not is_vmx_default(vm.vendor, vm.vm_type)


# -- AMD ---------------------------------------------------------------------------------


def svm_host(amd: s.AmdHostIn | None) -> SvmHost:
    """The request's `amd` as the core's SvmHost, checked there (errors at amd.<member>)."""
    if amd is None:
        return DEFAULT_HOST
    with located("amd"):
        return SvmHost(host_pat=amd.host_pat, host_mtrr=amd.host_mtrr).validate()


def check_amd_facts(req: s.ResolveRequest | s.ZapRequest | s.MapRequest | s.PermalinkRequest, vendor: str | None,
                    ) -> None:
    """`amd` only with vm.vendor amd (`vendor` None: a Xen kernel): app.kvm.svm.check_amd_side."""
    with core_errors():
        check_amd_side(req.amd is not None, {"vm.vendor": vendor})


def svm_view(res: SvmResult, vm: VmConfig, vcpu: VcpuState, access: Access, link: str,
             host: SvmHost = DEFAULT_HOST) -> s.SvmResolveResponse:
    _, source = access.host_page_for(vm)
    return s.SvmResolveResponse.model_validate(s.View(
        res, vendor=vm.vendor, type=vm.vm_type, gpa=access.gpa, is_mmio=access.is_mmio(vm), mmio_source=source,
        guest_cd=vcpu.cr0_cd, guest_nw=vcpu.cr0_nw, permalink=link,
        host_pat_msr=host.host_pat if host.host_pat != HOST_PAT_DEFAULT else None))


def _svm_resolve(req: s.ResolveRequest, request: Request, fmt: str | None, vm: VmConfig, map_loc: Loc) -> Response:
    with core_errors(map_loc):
        check_vm_kind(vm.vendor, vm.vm_type, req.kernel)
        kernel = svm_kernel(req.kernel)
        vm.validate()
        vcpu = to_vcpu(req.vcpu)
        access = Access(req.gpa, req.mmio, to_host_page(req.host_page)).validate(vm)
        host = svm_host(req.amd)
        res = svm_resolve(kernel, vm, vcpu, req.gpa, is_mmio=access.is_mmio(vm), host=host)
    link = url(LinkState(req.kernel.strip(), vm, vcpu, access, amd=host), base_url(request))
    if wants_text(request, fmt):
        return text(render_svm(res, vm, vcpu, access, link))
    return json_response(svm_view(res, vm, vcpu, access, link, host))


def _svm_zap(req: s.ZapRequest, ev: s.EventIn, request: Request, fmt: str | None, vm: VmConfig,
             map_loc: Loc) -> Response:
    with core_errors(map_loc):
        check_vm_kind(vm.vendor, vm.vm_type, req.kernel)
        kernel = svm_kernel(req.kernel)
        vcpu = to_vcpu(req.vcpu)
        event = to_event(ev)
        host = svm_host(req.amd)  # checked and carried by the link; no zap depends on the host side
        z = svm_zap_view(kernel, vm, vcpu, event)
    link = url(LinkState(req.kernel.strip(), vm, vcpu, event=event, view="zap", amd=host), base_url(request))
    if wants_text(request, fmt):
        return text(render_svm_zap(z, vm, vcpu, link))
    return json_response(s.SvmZapResponse.model_validate(s.View(z, vendor=vm.vendor, type=vm.vm_type,
                                                                  permalink=link)))


# -- TDX ---------------------------------------------------------------------------------


def tdx_state(req: s.Scenario, vm: VmConfig, vcpu: VcpuState) -> tuple[VmConfig, VcpuState, list[str]]:
    """The fields the TDX module (or tdx_vm_init) fixes, set to their value where the
    request left them out; given ones stay as given (the checks refuse them if they differ)."""
    fixed_vm, fixed_vcpu = tdx_defaults(vm, vcpu)
    applied = []
    if "quirk_ignore_guest_pat" not in req.vm.model_fields_set:
        vm = replace(vm, quirk_ignore_guest_pat=fixed_vm.quirk_ignore_guest_pat)
        applied.append("vm.quirk_ignore_guest_pat")
    if "mtrr" not in req.vcpu.model_fields_set or "def_type" not in req.vcpu.mtrr.model_fields_set:
        vcpu = replace(vcpu, mtrr=fixed_vcpu.mtrr)
        applied.append("vcpu.mtrr.def_type")
    return vm, vcpu, applied


@contextmanager
def _private_loc() -> Iterator[None]:
    """tdx_mt_mask names the access's mmio; in a resolve body the conflict is `private`."""
    try:
        yield
    except MemTypeError as e:
        if e.loc[:1] == ("access",):
            raise RuleViolation(MemTypeError("private", e.message, e.rule), ["body", "private"]) from None
        raise


def tdx_view(res: TdxResult, kernel: KernelInfo, vm: VmConfig, access: Access, private: bool,
             applied: list[str], path, link: str) -> s.TdxResolveResponse:
    _, source = access.host_page_for(vm)
    return s.TdxResolveResponse.model_validate(s.View(
        res, vendor=vm.vendor, type=vm.vm_type, kernel_info=kernel, gpa=access.gpa, is_mmio=access.is_mmio(vm),
        mmio_source=source, private=private, path=path if path is not None else [], tdx_fixed=applied,
        notes=[*res.notes, *([PRIVATE_UNVERIFIED] if private else [])], permalink=link))


def _tdx_resolve(req: s.ResolveRequest, request: Request, fmt: str | None, vm: VmConfig, map_loc: Loc) -> Response:
    private = bool(req.private)
    with core_errors(map_loc):
        check_vm_kind(vm.vendor, vm.vm_type, req.kernel)
        kernel = resolve_kernel(req.kernel)
        vm.validate()
        vm, vcpu, applied = tdx_state(req, vm, to_vcpu(req.vcpu))
        access = Access(req.gpa, req.mmio, to_host_page(req.host_page), req.private).validate(vm)
        is_mmio = access.is_mmio(vm)
        with _private_loc():
            res = tdx_resolve(vm, vcpu, req.gpa, is_mmio=is_mmio, private=private)
        path = tdx_mt_mask(vm, is_mmio, private)[3]
    link = url(LinkState(req.kernel.strip(), vm, vcpu, access), base_url(request))
    if wants_text(request, fmt):
        return text(render_tdx(res, kernel, vm, vcpu, access, private, applied, path, link))
    return json_response(tdx_view(res, kernel, vm, access, private, applied,
                                  path.path if path is not None else None, link))


def _tdx_zap(req: s.ZapRequest, ev: s.EventIn, request: Request, fmt: str | None, vm: VmConfig,
             map_loc: Loc) -> Response:
    """A TD's zaps are the v6.16 era's with IGNORE_GUEST_PAT off (app.kvm.tdx docstring), once
    the TD's refusals have passed: the ordinary zap audit answers."""
    with core_errors(map_loc):
        check_vm_kind(vm.vendor, vm.vm_type, req.kernel)
        kernel = resolve_kernel(req.kernel)
        vm.validate()
        vm, vcpu, _ = tdx_state(req, vm, to_vcpu(req.vcpu))
        event: Event = to_event(ev)
        a = tdx_zap_audit(kernel.era, vm, vcpu, event)
    return zap_answer(a, kernel, vm, vcpu, event, request, fmt)


def zap_answer(a: ZapAudit, kernel: KernelInfo, vm: VmConfig, vcpu: VcpuState, event: Event, request: Request,
               fmt: str | None) -> Response:
    """A zap audit's answer, JSON or 72-column text, with its permalink: one for the Intel
    eras (app/api/scenario.py) and for TDs."""
    link = url(LinkState(kernel.asked.strip() if kernel.version else kernel.era, vm, vcpu, event=event, view="zap"),
               base_url(request))
    if wants_text(request, fmt):
        return text(render_zap(a, vm, vcpu, link, kernel))
    return json_response(s.ZapResponse.model_validate(s.View(a, kernel_info=kernel, permalink=link)))


def check_private(req: s.ResolveRequest | s.PermalinkRequest, vm: VmConfig) -> None:
    """The core's rule (app.kvm.scenario.check_private), before the request is dispatched."""
    with core_errors():
        core_check_private(req.private, vm)


def kind_resolve(req: s.ResolveRequest, request: Request, fmt: str | None, vm: VmConfig, map_loc: Loc) -> Response:
    check_private(req, vm)
    if vm.vm_type == VM_TYPE_TDX:
        return _tdx_resolve(req, request, fmt, vm, map_loc)
    return _svm_resolve(req, request, fmt, vm, map_loc)


MapLimits = tuple[Callable[[VcpuState, VmConfig], None], Callable[[int], None]]
"""(before, after): the map's size checks (app/api/scenario.py), before any run is built and
on the number of runs."""


def kind_map(req: s.MapRequest, vm: VmConfig, map_loc: Loc, limits: MapLimits) -> s.AmdMapResponse | s.TdxMapResponse:
    """POST /api/v1/map for vm.vendor amd (app.kvm.svm.svm_map) or vm.type tdx (the v6.16
    era's map with IGNORE_GUEST_PAT off, after the TD's refusals: the same runs as Intel)."""
    before, after = limits
    with core_errors(map_loc):
        check_vm_kind(vm.vendor, vm.vm_type, req.kernel)
        vm.validate()
        if vm.vm_type == VM_TYPE_TDX:
            kernel = resolve_kernel(req.kernel)
            era = ERAS[kernel.era]
            vm, vcpu, applied = tdx_state(req, vm, to_vcpu(req.vcpu))
            notes = check_tdx_vm(vm)
            vcpu.validate(vm)
            check_tdx_vcpu(vcpu)
            private = check_private_ranges(vm, tuple((r.start, r.end) for r in req.private_ranges or ()))
            before(vcpu, vm)
            runs = tdx_map(era, vm, vcpu, req.pat_index, private)
            after(len(runs))
            return s.TdxMapResponse.model_validate({
                "system": s.SYSTEM_KVM_TDX, "kernel": era.id, "kernel_info": kernel, "pat_index": req.pat_index,
                "runs": runs, "mtrr_ranges": mtrr_ranges(vcpu, vm), "mtrr": _map_mtrr(vcpu, vm),
                "tdx_fixed": applied, "notes": [*notes, *(PRIVATE_MAP_NOTES if req.private_ranges is not None
                                                          else (SHARED_MAP_NOTE,))]})
        svm = svm_kernel(req.kernel)
        vcpu = to_vcpu(req.vcpu)
        vcpu.validate(vm)
        before(vcpu, vm)
        host = svm_host(req.amd)
        amd_runs, notes = svm_map(svm, vm, vcpu, req.pat_index, host)
        after(len(amd_runs))
    return s.AmdMapResponse.model_validate({
        "vendor": vm.vendor, "type": vm.vm_type, "kernel": svm.era, "kernel_info": svm, "pat_index": req.pat_index,
        "host_pat": host.host_pat, "host_mtrr": host.host_mtrr, "runs": amd_runs, "mtrr_ranges": mtrr_ranges(vcpu, vm),
        "mtrr": _map_mtrr(vcpu, vm), "notes": [*notes, UNVERIFIED]})


SHARED_MAP_NOTE = "shared GPAs: the normal EPT; private GPAs are in the Secure EPT (resolve with private: true)"
PRIVATE_MAP_NOTES = (
    "shared GPAs: the normal EPT; private_ranges: the Secure EPT, 4K pages (tdx_gmem_private_max_mapping_level), "
    "and no shared huge page spans a private edge (hugepage_has_attrs)",
    PRIVATE_UNVERIFIED,
)


def check_private_ranges_given(req: s.MapRequest | s.PermalinkRequest, vm: VmConfig) -> None:
    """private_ranges only for a TD: the core's rule (app.kvm.scenario.check_private)."""
    with core_errors():
        core_check_private(True if req.private_ranges is not None else None, vm, "private_ranges")


def _map_mtrr(vcpu: VcpuState, vm: VmConfig) -> dict:
    return {"enabled": vcpu.mtrr.enabled, "default": mtrr_default(vcpu, vm)}


def kind_zap(req: s.ZapRequest, ev: s.EventIn, request: Request, fmt: str | None, vm: VmConfig,
             map_loc: Loc) -> Response:
    if vm.vm_type == VM_TYPE_TDX:
        return _tdx_zap(req, ev, request, fmt, vm, map_loc)
    return _svm_zap(req, ev, request, fmt, vm, map_loc)
