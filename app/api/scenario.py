"""POST endpoints over one scenario: resolve, zap, map, decode (one leaf, or a pasted trace)
and permalink."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..kvm.eras import ERAS, get_era
from ..kvm.memmap import address_map, mtrr_default, mtrr_ranges
from ..kvm.resolve import check, mask_at, resolve
from ..kvm.scenario import Access, VcpuState, VmConfig
from ..kvm.spte_trace import Scenario as SpteScenario
from ..kvm.spte_trace import SpteLine, SpteValue, check_size, decode_trace
from ..kvm.svm import svm_kernel
from ..kvm.tdx import check_private_ranges, check_vm_kind
from ..kvm.versions import resolve_kernel
from ..kvm.vm_kinds import VENDOR_AMD, VENDOR_INTEL, VM_TYPE_DEFAULT
from ..kvm.zap import audit
from ..permalink import LinkState, encode, url
from ..render import render_resolve
from ..system_diff import side
from ..x86.ept import EptLeaf, notation
from ..x86.memtype import MemType, MemTypeError
from ..x86.pat import Pat
from ..xen.versions import check_xen_side, is_xen
from . import schemas as s
from .common import BUSY, ERRORS, FormatParam, base_url, json_response, text, text_response, wants_text
from .convert import core_errors, leaf_notation, to_event, to_host_page, to_vcpu, to_vm
from .errors import RuleViolation
from .pool import pooled
from .systems import (
    check_amd_facts,
    check_private,
    check_private_ranges_given,
    is_kind,
    kind_map,
    kind_resolve,
    kind_zap,
    svm_host,
    zap_answer,
)
from .xen import xen_map_answer, xen_permalink_state, xen_resolve, xen_zap_answer

router = APIRouter(tags=["scenario"])


@router.post(
    "/resolve", response_model=s.ResolveResponse | s.SvmResolveResponse | s.TdxResolveResponse | s.XenResolveResponse,
    responses={**ERRORS, **BUSY, **text_response("The resolution (JSON), or its plain-text rendering")},
    summary="EPT entry, decision path and effective types for one address",
)
@pooled
def resolve_endpoint(req: s.ResolveRequest, request: Request, fmt: FormatParam = None) -> Response:
    """The EPT leaf the era's `vmx_get_mt_mask()` builds for `gpa` (memtype, IPAT, mask), the
    path through its rules, the guest's own MTRR lookup next to KVM's, the effective type for
    each of the 8 PAT entries against what the guest expects, and the largest page the MTRR
    consistency check allows. `kernel` is an era id or a version (`kernel_info` says which era
    and what the version changes inside it). is_mmio comes from `mmio` if given, else from
    kvm_is_mmio_pfn() on `host_page` or on the memory map's range, for that kernel
    (`host_page` in the response lists its checks). `Accept: text/plain` or `?format=text`
    returns the 72-column plain-text rendering. `kernel` "xen" answers with Xen's
    epte_get_entry_emt() instead, from the facts in `xen` (app/api/xen.py). `vm.vendor` "amd"
    answers with app.kvm.svm (the NPT entry's bits, the host side, gPAT and the CPU's CR0,
    per-PAT-entry effective vs expected); `vm.type` "tdx" with app.kvm.tdx (`private`: the
    GPA is private, in the Secure EPT), refusing what a TD cannot have (app/api/systems.py)."""
    if is_xen(req.kernel):
        check_amd_facts(req, None)
        return xen_resolve(req, request, fmt)
    with core_errors():
        check_xen_side(req.xen is not None, req.kernel)
    vm, map_loc = to_vm(req.vm, req.memory_map, kinds=True)
    check_private(req, vm)
    check_amd_facts(req, vm.vendor)
    if is_kind(vm):
        return kind_resolve(req, request, fmt, vm, map_loc)
    with core_errors(map_loc):
        kernel = resolve_kernel(req.kernel)
        era = ERAS[kernel.era]
        vcpu = to_vcpu(req.vcpu)
        access = Access(req.gpa, req.mmio, to_host_page(req.host_page))
        res = resolve(era, vm, vcpu, access, kernel)
    link = url(LinkState(req.kernel if kernel.version else era.id, vm, vcpu, access), base_url(request))
    if wants_text(request, fmt):
        return text(render_resolve(res, vm, vcpu, link))
    return json_response(s.ResolveResponse.model_validate(s.View(res, permalink=link)))


@router.post(
    "/zap", response_model=s.ZapResponse | s.SvmZapResponse | s.XenZapResponse,
    responses={**ERRORS, **BUSY, **text_response("The zap audit (JSON), or its plain-text rendering")},
    summary="What an era zaps for one event, against what needed a zap",
)
@pooled
def zap_endpoint(req: s.ZapRequest, request: Request, fmt: FormatParam = None) -> Response:
    """The state before the event (`vm`, `vcpu`, memory map) and the event: `cr0_cd`,
    `mtrr_write` (msr, value), `noncoherent_dma` or `pat_write`. Returns the era's
    kvm_zap_gfn_range() calls and the merged half-open ranges zapped, needed (mapped pages
    whose EPT entry changes), stale (needed, not zapped) and excess (zapped, not needed),
    with page counts, the zap path and the per-range entry changes. `vm.vendor` "amd":
    app.kvm.svm's zaps (no NPT entry holds a memtype: nothing is ever needed); `vm.type`
    "tdx": the audit of the TD (refusing events a TD cannot perform)."""
    if is_xen(req.kernel):
        check_amd_facts(req, None)
        return xen_zap_answer(req, request, fmt)
    with core_errors():
        check_xen_side(req.xen is not None, req.kernel)
    ev = req.event
    if isinstance(ev, s.PassthroughEvent):
        raise RuleViolation(MemTypeError(("event", "kind"), f"{ev.kind} is a Xen event",
                                         'passthrough events need kernel "xen"; KVM\'s is noncoherent_dma'),
                            ["body", "event", "kind"])
    vm, map_loc = to_vm(req.vm, req.memory_map, kinds=True)
    check_amd_facts(req, vm.vendor)
    if is_kind(vm):
        return kind_zap(req, ev, request, fmt, vm, map_loc)
    with core_errors(map_loc):
        kernel = resolve_kernel(req.kernel)
        era = ERAS[kernel.era]
        vcpu = to_vcpu(req.vcpu)
        event = to_event(ev)
        a = audit(era, vm, vcpu, event)
    return zap_answer(a, kernel, vm, vcpu, event, request, fmt)


MAX_MAP_BLOCKS = 1024
"""Most SDM blocks the variable pairs of a map request may split into (a PHYSMASK with k
holes inside MAXPHYADDR matches 2^k blocks; 8 pairs of 12 holes would be 32768 ranges)."""
MAX_MAP_RUNS = 2000
"""Most runs a map response carries (its MTRR ranges are bounded by MAX_MAP_BLOCKS + 88)."""
MAP_RULE = (f"the map shows at most {MAX_MAP_BLOCKS} variable-range blocks and {MAX_MAP_RUNS} runs "
            "(a PHYSMASK with k holes splits its range into 2^k blocks); POST /api/v1/resolve answers "
            "for any single address")


def _check_map_runs(n: int) -> None:
    if n > MAX_MAP_RUNS:
        raise MemTypeError(("vcpu", "mtrr", "variable"), f"the map splits into {n} runs", MAP_RULE)


def _check_map_size(vcpu: VcpuState, vm: VmConfig) -> None:
    """Refuse, before building anything, variable ranges that split into too many blocks."""
    m = vcpu.mtrr
    if not m.enabled:
        return  # MTRRs off: no variable range splits the map
    left = MAX_MAP_BLOCKS
    for n, pair in enumerate(m.variable):
        if not pair.valid:
            continue
        try:  # the core refuses a pair whose blocks exceed `limit` without listing them
            left -= len(pair.sdm_blocks(vm.maxphyaddr, limit=left))
        except MemTypeError:
            raise MemTypeError(("vcpu", "mtrr", "variable"),
                               f"the valid pairs' masks split their ranges into more than {MAX_MAP_BLOCKS} "
                               f"blocks (pair {n} reaches the limit)", MAP_RULE) from None


@router.post("/map", response_model=s.MapResponse | s.TdxMapResponse | s.AmdMapResponse | s.XenMapResponse,
             responses={**ERRORS, **BUSY}, summary="The guest-physical space as runs of one answer")
@pooled
def map_endpoint(req: s.MapRequest, _request: Request) -> Response:
    """Every memslot split where the SDM lookup, KVM's lookup or the memory map changes; each
    run with the EPT entry the era builds, the effective type for PAT entry `pat_index`, the
    guest's expectation and the page size; holes listed as `unmapped`. Also the guest's
    programmed MTRR ranges and `mtrr`: MTRRdefType.E and the range that holds where none of
    them does (the default type, or UC everywhere with E clear). Bounded: variable ranges
    whose masks split into more than MAX_MAP_BLOCKS (1024) blocks, or an answer above
    MAX_MAP_RUNS (2000) runs, are refused (422 at vcpu.mtrr.variable).

    `system` says which model answered; every answer has the same run members (start, end,
    kind, label, guest_mtrr, kvm_mtrr, ept, effective, expected, relation, page_size) and
    `mtrr_ranges`, `mtrr`, `pat_index`:

    - `kvm-intel` (default): MapResponse, `ept` the EPT memtype/IPAT of vmx_get_mt_mask().
    - `kvm-tdx` (vm.type tdx): TdxMapResponse, the v6.16 rules with IGNORE_GUEST_PAT off
      for the shared GPAs, plus `tdx_fixed` and `notes`; `private_ranges` (TDs only) marks
      the runs inside them `private` (the Secure EPT, 4K pages).
    - `kvm-amd` (vm.vendor amd): AmdMapResponse, `ept` and `kvm_mtrr` null, `npt` per run
      (host PAT index and the leaf's PWT/PCD/PAT bits, host PAT type, host MTRR, their
      combination, the gPAT type), plus `host_pat` and `notes`; the host facts from `amd`
      (host_pat, host_mtrr; defaults a Linux host PAT, host MTRR WB for ram, UC for mmio).
    - `xen` (kernel xen, xen-4.19, xen-4.21; domain facts in `xen`): XenMapResponse, `ept`
      Xen's EMT/IPAT with `emt_field` and the deciding `rule`, `kvm_mtrr` null, `xen_mtrr`
      and `p2m_type` per run, plus `version`, `host_mtrr`, `cr0_cd` and `notes`;
      `xen.frames` gives p2m types, mmio_ro and special pages per GPA range."""
    limits = (_check_map_size, _check_map_runs)
    if is_xen(req.kernel):
        check_amd_facts(req, None)
        check_private_ranges_given(req, VmConfig())
        return json_response(xen_map_answer(req, limits))
    with core_errors():
        check_xen_side(req.xen is not None, req.kernel)
    vm, map_loc = to_vm(req.vm, req.memory_map, kinds=True)
    check_amd_facts(req, vm.vendor)
    check_private_ranges_given(req, vm)
    if is_kind(vm):
        return json_response(kind_map(req, vm, map_loc, limits))
    with core_errors(map_loc):
        kernel = resolve_kernel(req.kernel)
        era = ERAS[kernel.era]
        vcpu = to_vcpu(req.vcpu)
        check(era, vm, vcpu)  # before counting blocks: MAXPHYADDR and the masks' reserved bits
        _check_map_size(vcpu, vm)
        runs = address_map(era, vm, vcpu, req.pat_index)
        ranges = mtrr_ranges(vcpu, vm)
        default = mtrr_default(vcpu, vm)
        _check_map_runs(len(runs))
    return json_response(s.MapResponse.model_validate(
        {"kernel": era.id, "kernel_info": kernel, "pat_index": req.pat_index, "runs": runs, "mtrr_ranges": ranges,
         "mtrr": {"enabled": vcpu.mtrr.enabled, "default": default}}))


@router.post("/permalink", response_model=s.PermalinkResponse, responses=ERRORS,
             summary="The permalink of a state of the page")
async def permalink_endpoint(req: s.PermalinkRequest, request: Request) -> Response:
    """The page's state (a resolve body plus `event`, `vs`, `view` and `pati`) as a permalink
    to `/`, written by app.permalink (the only encoder: the page asks here rather than keep a
    copy). The scenario must be one resolve accepts (422 otherwise, naming the field); the
    event is written as given (zap checks it). `kernel` (or `vs`) may name Xen (with the
    facts in `xen`); `vs_vendor` amd makes the diff's second side KVM on AMD, `vs_type` tdx a TDX VM."""
    def vs_ok(r: s.PermalinkRequest) -> None:
        # the diff's second side, refused as POST /api/v1/diff refuses it (app.system_diff.side):
        # the page keeps no side the diff would not take
        if r.vs is not None or r.vs_vendor != VENDOR_INTEL or r.vs_type != VM_TYPE_DEFAULT:
            side(r.vs if r.vs is not None else r.kernel, r.vs_vendor, "vs", r.vs_type)

    if is_xen(req.kernel):
        check_amd_facts(req, None)
        state = xen_permalink_state(req, vs_ok)
        return json_response(s.PermalinkResponse(query=encode(state), url=url(state, base_url(request))))
    with core_errors():
        check_xen_side(req.xen is not None, req.kernel)
    vm, map_loc = to_vm(req.vm, req.memory_map, kinds=True)
    check_private(req, vm)
    check_private_ranges_given(req, vm)
    check_amd_facts(req, vm.vendor)
    ev = req.event
    if isinstance(ev, s.PassthroughEvent):
        raise RuleViolation(MemTypeError(("event", "kind"), f"{ev.kind} is a Xen event",
                                         'passthrough events need kernel "xen"'), ["body", "event", "kind"])
    with core_errors(map_loc):
        era = get_era(req.kernel)
        check_vm_kind(vm.vendor, vm.vm_type, req.kernel)
        if vm.vendor == VENDOR_AMD:
            svm_kernel(req.kernel)  # as resolve: an era AMD has no kernel for (series-v3) is refused
        vs_ok(req)
        vcpu = to_vcpu(req.vcpu).validate(vm.validate())
        access = Access(req.gpa, req.mmio, to_host_page(req.host_page), req.private).validate(vm)
        event = to_event(ev) if ev is not None else None
        host = svm_host(req.amd)
        # the map's private GPAs, checked as the map checks them (a link keeps them)
        private = check_private_ranges(vm, tuple((r.start, r.end) for r in req.private_ranges or ()))
    state = LinkState(req.kernel.strip() if req.kernel not in ERAS else era.id, vm, vcpu, access, event, req.vs,
                      req.view, req.pati, req.vs_vendor, vs_type=req.vs_type, amd=host, private_ranges=private)
    return json_response(s.PermalinkResponse(query=encode(state), url=url(state, base_url(request))))


TRACE_LINE = re.compile(
    r"gfn\s+(?:0x)?(?P<gfn>[0-9a-fA-F]{1,16})\s+spte\s+(?:0x)?(?P<spte>[0-9a-fA-F]{1,16})"
    r"(?:\s+\([^)]*\))?\s+level\s+(?P<level>[0-9]{1,2})\b"
)


@router.post("/decode", response_model=s.DecodeResponse, responses={**ERRORS, **BUSY},
             summary="Decode a raw EPT leaf entry")
@pooled
def decode_endpoint(req: s.DecodeRequest, _request: Request) -> Response:
    """`spte` as `kvm_mmu_set_spte` prints it (hex, `0x` optional) or the whole trace `line`
    ("gfn %llx spte %llx (...) level %d at %llx"). Returns its fields, flags a reserved
    memtype (or XWR) of a present entry as an EPT misconfiguration, and says what each era
    would put there for the given scenario (`vm`, `vcpu`, `gpa`: default the line's gfn,
    else 0). The level comes from `level`, else from the line, else 1; an entry with bit 7
    (PS) set needs one (2M or 1G cannot be told apart), and level 2 or 3 with PS clear is
    not a leaf (422). The entry is read as EPT (an Intel host); a line from an AMD host
    prints an NPT entry, which POST /api/v1/decode/trace reads with `vendor: amd`."""
    gfn = None
    level = req.level
    level_loc: list[str | int] = ["level"]  # where the level came from
    if (req.spte is None) == (req.line is None):
        raise RuleViolation(MemTypeError("spte", "give exactly one of spte and line", "one leaf per request"),
                            ["body", "spte"])
    if req.line is not None:
        m = TRACE_LINE.search(req.line)
        if m is None:
            raise RuleViolation(MemTypeError("line", "no 'gfn <hex> spte <hex> ... level <n>' in the line",
                                             "kvm_mmu_set_spte prints 'gfn %llx spte %llx (%s) level %d at %llx'"),
                                ["body", "line"])
        gfn, raw = int(m["gfn"], 16), int(m["spte"], 16)
        if level is None:
            level, level_loc = int(m["level"]), ["line"]
        raw_loc: list[str | int] = ["line"]
    else:
        assert req.spte is not None
        raw, raw_loc = req.spte, ["spte"]
    try:
        leaf = EptLeaf.decode(raw, level, "spte")
    except MemTypeError as e:  # the level and the entry are where they were read from
        raise RuleViolation(e, ["body", *(level_loc if e.loc == ("level",) else raw_loc)]) from None
    level = leaf.level
    gpa = req.gpa if req.gpa is not None else (gfn << 12 if gfn is not None else 0)
    vm, map_loc = to_vm(req.vm)
    with core_errors(map_loc):
        vcpu = to_vcpu(req.vcpu).validate(vm.validate())
    with core_errors(map_loc, at=["line"] if req.gpa is None and gfn is not None else None):
        access = Access(gpa, req.mmio).validate(vm)  # the address is the line's gfn unless given
    with core_errors(map_loc):
        kernels = ([get_era(k, ("kernels", i)) for i, k in enumerate(req.kernels)] if req.kernels
                   else list(ERAS.values()))
    is_mmio = access.is_mmio(vm)
    eras: list[dict[str, object]] = []
    for era in kernels:
        try:
            era.check_vm(vm)
        except MemTypeError as e:
            eras.append({"kernel": era.id, "ept": None, "matches": None, "error": str(e)})
            continue
        mr = mask_at(era, vm, vcpu, gpa, is_mmio)
        eras.append({"kernel": era.id, "ept": mr,
                     "matches": (int(mr.memtype), mr.ipat) == (leaf.memtype_bits, leaf.ipat)})
    return json_response(s.DecodeResponse.model_validate(s.View(
        leaf, gfn=gfn, gpa=gpa, notation=leaf_notation(leaf.memtype_bits, leaf.ipat), eras=eras)))


def _spte_value_json(v: SpteValue, fields: bool) -> dict:
    mt = v.memtype
    return {
        "raw": f"{v.raw:#018x}", "kind": v.kind, "meaning": v.meaning, "present": v.present,
        "hpa": f"{v.hpa:#x}" if v.hpa is not None else None, "page_size": v.page_size,
        "permissions": v.permissions, "memtype": mt.label if mt is not None else None,
        "memtype_bits": v.memtype_bits, "ipat": v.ipat,
        # the core's compact form; a reserved type has no name, so it is spelled out
        "notation": (notation(mt, bool(v.ipat)) if mt is not None else f"reserved({v.memtype_bits})"
                     + ("!" if v.ipat else "")) if v.memtype_bits is not None else None,
        "host_pat_index": v.host_pat_index, "host_pat_type": v.host_pat_type,
        "misconfig": list(v.misconfig),
        "fields": [{"name": f.name, "lo": f.lo, "hi": f.hi, "value": f.value, "meaning": f.meaning}
                   for f in v.fields] if fields else [],
        "notes": list(v.notes),
    }


def _spte_line_json(e: SpteLine, fields: bool, ept: Callable[[MemType, bool], dict]) -> dict:
    def val(v: SpteValue | None) -> dict | None:
        return _spte_value_json(v, fields) if v is not None else None

    h = e.header
    return {
        "line": e.line, "tracepoint": e.tracepoint,
        "header": {"comm": h.comm, "pid": h.pid, "cpu": h.cpu, "ts": h.ts} if h is not None else None,
        "gfn": f"{e.gfn:#x}", "gpa": f"{e.gpa:#x}", "level": e.level, "page_size": e.page_size,
        "as_id": e.as_id, "pfn": f"{e.pfn:#x}" if e.pfn is not None else None, "flags": e.flags,
        "at": f"{e.at:#x}" if e.at is not None else None,
        "spte": val(e.spte), "old": val(e.old), "new": val(e.new), "change": e.change, "notes": list(e.notes),
        "eras": [{"kernel": a.era, "ept": ept(a.memtype, bool(a.ipat)) if a.memtype is not None else None,
                  "matches": a.matches, "error": a.error} for a in e.eras],
    }


@router.post("/decode/trace", response_model=s.DecodeTraceResponse, responses={**ERRORS, **BUSY},
             summary="Decode every SPTE line of a pasted trace")
@pooled
def decode_trace_endpoint(req: s.DecodeTraceRequest, _request: Request) -> Response:
    """Every `kvm_mmu_set_spte`, `kvm_tdp_mmu_spte_changed` (old and new) and
    `kvm_mmu_spte_requested` line of `trace`, in trace-cmd report, perf script or ftrace
    layout (app.kvm.spte_trace). On `vendor: intel` each SPTE is an EPT entry: memtype,
    IPAT, level and page size, gpa, permissions, and what each era's vmx_get_mt_mask()
    puts there for the scenario (`vm`, `vcpu`, `mmio`, `kernels`). On `vendor: amd` it is
    an NPT entry: P/RW/US/NX, PWT/PCD/PAT and the host PAT index they select; NPT entries
    carry no memory type, so there is no era comparison. A trace above MAX_TRACE_CHARS or
    MAX_TRACE_LINES is refused before any line is read; an SPTE line that does not have
    its tracepoint's format is refused naming the line (422 at trace)."""
    members = s.DecodeTraceRequest.model_fields  # any other location is inside the trace text
    with core_errors(at=["trace"], members=members):
        check_size(req.trace)  # before the scenario is even built: refused early, naming the limit
    vm, map_loc = to_vm(req.vm)
    with core_errors(map_loc, at=["trace"], members=members):
        scenario = None
        if req.vendor == "intel":
            vcpu = to_vcpu(req.vcpu).validate(vm.validate())
            kernels = ([get_era(k, ("kernels", i)) for i, k in enumerate(req.kernels)] if req.kernels
                       else list(ERAS.values()))
            scenario = SpteScenario(vm, vcpu, tuple(kernels), req.mmio)
        host_pat = Pat.from_msr(req.host_pat, "host_pat") if req.host_pat is not None else None
        d = decode_trace(req.trace, req.vendor, scenario, host_pat)
    ept_cache: dict[tuple[MemType, bool], dict] = {}

    def ept(mt: MemType, ipat: bool) -> dict:
        out = ept_cache.get((mt, ipat))
        if out is None:
            out = ept_cache[(mt, ipat)] = s.EptTypeOut.model_validate((mt, ipat)).model_dump()
        return out

    # Plain dicts in the shape of DecodeTraceResponse, not models: a full-size trace is
    # some 60,000 small objects, and building models for them took most of the request
    # (bench/spte_trace.py). The tests validate whole responses against the schema.
    body = {
        "vendor": d.vendor, "lines": d.lines, "ignored_lines": d.ignored_lines, "counts": d.counts,
        "kernels": [e.id for e in scenario.eras] if scenario is not None else [], "notes": list(d.notes),
        "entries": [_spte_line_json(e, req.fields, ept) for e in d.entries],
    }
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")
