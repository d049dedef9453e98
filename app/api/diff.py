"""POST /api/v1/diff: two eras over the whole finite state space (cached per era pair)."""

from __future__ import annotations

from functools import lru_cache

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..analysis import diff_by_id, group_rows
from ..kvm.scenario import VmConfig
from ..kvm.svm import check_amd_side
from ..kvm.versions import resolve_kernel
from ..permalink import LinkState, url
from ..render import render_diff
from ..render_kinds import render_system_diff
from ..system_diff import Side, diff_by_sides, is_era_pair, side
from . import schemas as s
from .common import BUSY, ERRORS, FormatParam, base_url, json_response, text, text_response, wants_text
from .convert import core_errors
from .pool import pooled
from .systems import svm_host

router = APIRouter(tags=["analysis"])


@lru_cache(maxsize=128)
def _diff_body(a: str, b: str, limit: int) -> s.DiffResponse:
    """The response without its permalink; the diff itself is cached in app.analysis."""
    d = diff_by_id(a, b)
    return s.DiffResponse.model_validate(s.View(
        d, kernel_a=resolve_kernel(a), kernel_b=resolve_kernel(b), groups=group_rows(d.rows), rows=d.rows[:limit],
        truncated=len(d.rows) > limit, permalink=""))


def _system_diff(req: s.DiffRequest, request: Request, fmt: str | None) -> Response:
    """A side is Xen, KVM on AMD or a TDX VM: app.system_diff over the joint space."""
    with core_errors():
        host = svm_host(req.amd)
        a, b = side(req.a, req.a_vendor, "a", req.a_type, host), side(req.b, req.b_vendor, "b", req.b_type, host)
        d = diff_by_sides(a, b)
    link = url(LinkState(req.a, VmConfig(vendor=req.a_vendor, vm_type=req.a_type), vs=req.b, view="diff",
                         vs_vendor=req.b_vendor, vs_type=req.b_type, amd=host), base_url(request))
    if wants_text(request, fmt):
        return text(render_system_diff(d, link))
    return json_response(_system_body(a, b, req.limit).model_copy(update={"permalink": link}))


@lru_cache(maxsize=128)
def _system_body(a: Side, b: Side, limit: int) -> s.SystemDiffResponse:
    """The response without its permalink (the diff itself is cached in app.system_diff)."""
    d = diff_by_sides(a, b)
    return s.SystemDiffResponse.model_validate(s.View(
        d, a=_side(a), b=_side(b), groups=d.groups(), rows=d.rows[:limit], truncated=len(d.rows) > limit,
        permalink=""))


def _side(sd: Side) -> s.View:
    return s.View(sd, kernel_info=resolve_kernel(sd.asked) if sd.era is not None else None)


@router.post(
    "/diff", response_model=s.DiffResponse | s.SystemDiffResponse,
    responses={**ERRORS, **BUSY, **text_response("The era diff (JSON), or its plain-text rendering")},
    summary="Where two eras give different EPT entries, classified",
)
@pooled
def diff_endpoint(req: s.DiffRequest, request: Request, fmt: FormatParam = None) -> Response:
    """Every state vmx_get_mt_mask() can see (is_mmio, nc-DMA, CR0.CD, both quirks,
    self-snoop, KVM's guest MTRR type, the access's PAT type: 1920 in all) under both eras;
    rows where the EPT entry or the effective type differs, each classified as B's effective
    type relative to A's (weaker, stronger, incomparable, or same = EPT entry only), plus
    the rows grouped with '*' for dimensions that do not matter. States an era cannot have
    are skipped and counted.

    `a` or `b` naming Xen (xen, xen-4.19, xen-4.21), or `a_vendor`/`b_vendor` amd (KVM on
    AMD, a kernel from 4.14), or `a_type`/`b_type` tdx (a TDX VM: Intel, a kernel from
    6.16; refused otherwise at a_type/b_type), gives the cross-system diff (SystemDiffResponse,
    app/system_diff.py): the joint space of every dimension either side reads (the eight
    above plus Xen's xen_iommu and xen_io), each side's status per dimension (read, not
    read, absent, fixed), `only_a`/`only_b`, how the shared ones map, and what is not
    compared. `amd` gives the host side of every AMD side (host PAT, host MTRR; one host)."""
    with core_errors():  # an AMD side makes the pair a cross-system one
        check_amd_side(req.amd is not None, {"a_vendor": req.a_vendor, "b_vendor": req.b_vendor})
    if not is_era_pair(req.a, req.b, req.a_vendor, req.b_vendor, req.a_type, req.b_type):
        return _system_diff(req, request, fmt)
    with core_errors():
        ka, kb = resolve_kernel(req.a, "a"), resolve_kernel(req.b, "b")
    link = url(LinkState(req.a, vs=req.b, view="diff"), base_url(request))
    if wants_text(request, fmt):
        return text(render_diff(diff_by_id(ka.era, kb.era), link, kernels=(ka, kb)))
    return json_response(_diff_body(ka.era, kb.era, req.limit).model_copy(
        update={"permalink": link, "kernel_a": s.KernelOut.model_validate(ka),
                "kernel_b": s.KernelOut.model_validate(kb)}))
