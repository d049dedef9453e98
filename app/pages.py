"""The HTML page at `/`: rendered from templates/index.html with the permalink's state.

The initial state is parsed from the query by app.permalink (so a link works without
JavaScript and in curl); the page's script then talks to /api/v1 only (one POST /page/batch
per update carries its requests to those endpoints), and writes the
address bar from POST /api/v1/permalink (app.permalink is the only encoder). A permalink
that cannot be read still serves the page (200): the defaults, and a message naming the
parameter. Until the template exists a minimal placeholder is served.

A link with bad parameters keeps every readable one (app.permalink.decode_report): the
page draws that state and lists each dropped parameter with the reason, once. The short
form `/l/<token>` (app.permalink.short_path, derived from the state, nothing stored) is
redirected to the same page with the long query. Small JSON helpers serve the script, so
it computes no register or typing rule of its own (issue 11, "no rule in JavaScript"):

  GET  /page/link              the long and short links of a query (MEMTYPE_PUBLIC_URL)
  POST /page/registers         raw PAT/MTRR values -> what the editors show (PAT entries,
                               E/FE/default type, fixed sub-ranges, each pair's start,
                               size, type and V), malformed fields marked, none fixed up
  POST /page/pat-value         8 PAT entries -> IA32_PAT (app.x86.pat.Pat)
  POST /page/mtrr-deftype      E, FE, type -> MTRRdefType (app.x86.mtrr.def_type_value)
  POST /page/mtrr-pair         start + size -> PHYSBASE/PHYSMASK, refused unless a single
                               pair covers it (app.x86.mtrr.range_to_pair)
  POST /page/mtrr-pair-fields  a raw pair with type and V set (app.x86.mtrr.with_fields)
  POST /page/msr-value         one MTRR MSR's value in the editors' state (read_msr)
  POST /page/diff-state        the scenario moved into a diff group (app.analysis.apply_pattern);
                               a cross-system group's Xen dimensions set the Xen facts (with
                               a Xen kernel; else listed as `unapplied`), is_mmio the p2m type;
                               a dimension that would move a value the system fixes is left
                               out and listed as `unapplied` with the system's reason
  POST /page/system            which system a kernel/vendor/type names (KVM on Intel or AMD,
                               a TD, Xen), the panels' titles for it, and which controls it
                               fixes: found by asking POST /api/v1/resolve (system_view)
  POST /page/batch             several of the page's POST requests in one round trip, each
                               answered by its own endpoint (app/page_batch.py)

The script reuses a batch's answer only for the byte-identical request body it answered
(the answers are pure functions of the request). When idle after a redraw it asks
POST /page/batch ahead for the states one click away (each visible boolean knob control of
KNOB_ROWS flipped), one batch in flight, at most 16 per idle period, each marked with the
request header X-Memtype-Prefetch: 1; an input stops it and a change aborts the batch in
flight unless it is the one that change needs (static/app.js prefetchNeighbours).

The VM's and vCPU's checkboxes and number inputs are the rows of app/knobs.py (KNOB_ROWS,
in the template's loop and the script's initial data).

The Compare list (compare_sides: KVM eras on Intel and AMD, TDX VMs, Xen releases), the
diffs' short dimension labels (DIM_SHORT), the Xen facts' inputs (XEN_FIELDS, with the
pinned ranges' editor), AMD's host side (AMD_FIELDS, the knob rows of owner amd), the map's
own inputs (MAP_INPUTS: a TD's private_ranges, Xen's xen.frames) and the dimension statuses'
texts (app.system_diff.STATUS_TEXT) are page data written here from the API schemas and the
core; which dimensions a diff has, and each side's status, come from the diff's answer. A
link's Compare side the list does not offer loses the parameter the diff refuses, listed
like the parameters decode_report drops (offered_compare).

The register encodings the page's editors need (type names, which codes PAT and MTRRs
accept, the fixed-range MSRs, every MTRR MSR and its name, the PTE bits selecting each
PAT entry, the PAT presets) come from app.x86 through the template, so the script holds
no copy of them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from json import loads as json_loads
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from . import page_batch
from .analysis import ANY, apply_pattern
from .api.common import base_url
from .api.convert import core_errors, to_host_page, to_vcpu, to_vm
from .api.errors import RuleViolation
from .api.scenario import resolve_endpoint
from .api.schemas import (
    Addr,
    DiffRequest,
    EraOut,
    Hex64,
    MapRequest,
    PinnedRangeIn,
    ResolveRequest,
    XenFramesIn,
    XenIn,
    XenMapIn,
)
from .api.systems import svm_host
from .assets import AssetHasher
from .knobs import BY_PARAM, KNOBS, Knob, page_knobs
from .kvm.eras import ERAS
from .kvm.ranges import MAP_RANGES_MAX
from .kvm.scenario import Access, VmConfig
from .kvm.tdx import PRIVATE_RANGE, check_vm_kind
from .kvm.vm_kinds import VENDOR_AMD, VENDOR_INTEL, VM_TYPE_DEFAULT, VM_TYPE_TDX
from .lru import Lru
from .permalink import (
    DEFAULT_KERNEL,
    Dropped,
    LinkState,
    amd_json,
    decode,
    decode_report,
    encode,
    event_json,
    map_inputs_json,
    request_body,
    scenario_json,
    short_path,
    short_query,
    url,
    xen_json,
)
from .presets import PRESETS, START
from .system_diff import STATUS_TEXT, XEN_FACTS, XEN_P2M, side
from .x86.memtype import MTRR_TYPES, PAT_TYPES, MemType, MemTypeError, located, mtrr_type, pat_type
from .x86.mtrr import (
    DEF_TYPE_E,
    FIXED_MSRS,
    PHYSMASK_V,
    MtrrState,
    VarMtrr,
    contiguous_size,
    def_type_value,
    fixed_bytes,
    msr_name,
    mtrr_msrs,
    physbase_address,
    range_to_pair,
    with_fields,
)
from .x86.pat import PAT_PRESETS, Pat, pte_flags_text
from .xen.facts import PINNED_TYPES
from .xen.map import FRAME_RANGE
from .xen.versions import NEWEST, SYSTEM_ID, XEN_VERSIONS, is_xen

log = logging.getLogger("memtype.api")

REGISTERS = {
    "types": {str(int(t)): t.label for t in MemType},
    "pat_codes": sorted(PAT_TYPES),
    "mtrr_codes": sorted(MTRR_TYPES),
    "fixed_msrs": [{"msr": f.msr, "name": f.name, "start": f.start, "unit": f.unit} for f in FIXED_MSRS],
    "pat_presets": [{"name": n, "value": f"{v:#018x}"} for n, v in PAT_PRESETS.items()],
    "mtrr_msrs": [{"msr": f"{m:#x}", "name": msr_name(m)} for m in mtrr_msrs()],
    # the PTE bits selecting each PAT entry, as app.x86.pat writes them ("PAT=1 PCD=0 PWT=1"
    # and its three digits "101")
    "pat_entries": [{"index": i, "flags": pte_flags_text(i), "bits": "".join(f[-1] for f in pte_flags_text(i).split())}
                    for i in range(8)],
}
"""Architectural encodings for the page's register editors (not rules: no type is decided here)."""
REGISTERS["def_type_values"] = {f"{int(e)}{int(fe)}{t}": f"{def_type_value(e, fe, t):#x}"
                                for e in (False, True) for fe in (False, True) for t in sorted(MTRR_TYPES)}
"""MTRRdefType for every E, FE and MTRR type the editor offers (app.x86.mtrr.def_type_value,
as POST /page/mtrr-deftype writes it), keyed "<E><FE><type>": 20 values, so a click on E or
FE redraws without a round trip first."""


GLOSSARY = {
    "nc-DMA": "non-coherent DMA: an assigned device's DMA does not snoop the CPU caches (kvm_arch_has_noncoherent_dma)",
    "ncDMA": "non-coherent DMA: an assigned device's DMA does not snoop the CPU caches",
    "IPAT": "Ignore PAT: EPT entry bit 6; when set the EPT type alone decides and guest PAT is ignored",
    "EPT": "Extended Page Tables: the second-level (guest-physical to host-physical) page tables of VT-x",
    "MTRR": "Memory Type Range Registers: the guest's per-physical-range memory types",
    "PAT": "Page Attribute Table (IA32_PAT, MSR 0x277): the guest's per-mapping memory types",
    "E": "MTRRdefType.E (bit 11): MTRRs enabled; clear means every address is UC",
    "FE": "MTRRdefType.FE (bit 10): fixed-range MTRRs (below 1 MiB) enabled",
    "CD": "CR0.CD (bit 30): cache disable",
    "NW": "CR0.NW (bit 29): not write-through",
    "PG": "CR0.PG (bit 31): paging enabled",
    "WB": "write-back: fully cached",
    "WT": "write-through: reads cached, writes go to memory",
    "WP": "write-protected: reads cached, writes go to memory and invalidate cached lines",
    "WC": "write-combining: uncached, writes buffered and combined",
    "UC": "uncacheable: strongly ordered, never cached",
    "UC-": "UC minus: uncacheable, but an MTRR WC type can turn it into WC (PAT only)",
    "gpa": "guest-physical address",
    "MMIO": "memory-mapped I/O: the host page is not RAM (is_mmio)",
    "mmio": "is_mmio: the host page is memory-mapped I/O, not RAM",
    "CDNWq": "KVM_X86_QUIRK_CD_NW_CLEARED",
    "PATq": "KVM_X86_QUIRK_IGNORE_GUEST_PAT",
    "snoop": "host CPU has X86_FEATURE_SELFSNOOP",
    "iommu": "Xen: is_iommu_enabled(d), the domain has an IOMMU",
    "io": "Xen: the domain holds iomem/ioport ranges (with an IOMMU also: PCI devices)",
}
"""Expansions for the page's <abbr title> (prose, not rules)."""
REGISTERS["glossary"] = GLOSSARY

KNOB_ROWS = page_knobs()
"""The scenario knob table (app/knobs.py) as the template's controls and the script's
readState/writeState read it; passed in the page's initial data."""


PAGE_ASSETS = ("app.css", "app.js")  # the hashed URLs index.html names (asset(...))
PAGE_CACHE_SIZE = 256  # rendered pages kept (~30 KiB each)


def _start_state() -> LinkState:
    p = PRESETS[START]
    return replace(p.state, vs=p.compare)


def _preset_query(p) -> str:
    """The permalink query of a loaded preset (view and pati aside): the page compares its
    address bar with these to say which preset is active."""
    return encode(replace(p.state, vs=p.compare, view="resolve", pati=0))


class VarPairIn(BaseModel):
    """A variable range as the page's editor shows it: start, size, type and V."""

    model_config = ConfigDict(extra="forbid")
    index: int = Field(0, ge=0, le=255, description="the pair's index (for the error's location)")
    start: Addr
    size: Addr
    type: int = Field(ge=0, le=255)
    valid: bool = True
    maxphyaddr: int = Field(46, ge=36, le=52)


_HEX = TypeAdapter(Hex64)
Text = Field(max_length=64)


def _hex_or_none(text: str) -> int | None:
    """A register value as the API reads it (Hex64), or None: the editors show what they can."""
    try:
        return _HEX.validate_python(text)
    except ValidationError:
        return None


class RawPair(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: str = Text
    mask: str = Text


class RawMtrr(BaseModel):
    """The MTRR MSRs as the editor's raw fields hold them (text, perhaps malformed)."""

    model_config = ConfigDict(extra="forbid")
    def_type: str = Field("0x0", max_length=64)
    fixed: list[str] = Field(default_factory=list, max_length=len(FIXED_MSRS))
    variable: list[RawPair] = Field(default_factory=list, max_length=8)


class RegistersIn(BaseModel):
    """The register editors' raw values: IA32_PAT, the MTRR MSRs, and MAXPHYADDR as typed."""

    model_config = ConfigDict(extra="forbid")
    maxphyaddr: int | Annotated[str, Field(max_length=8)] | None = None
    pat: str = Field("", max_length=64)
    mtrr: RawMtrr = Field(default_factory=RawMtrr)


class PatEntriesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entries: list[int] = Field(min_length=8, max_length=8)


class DefTypeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool
    fixed_enabled: bool
    type: int = Field(ge=0, le=255)


class PairFieldsIn(BaseModel):
    """A raw PHYSBASE/PHYSMASK pair and the type and V the editor sets on it."""

    model_config = ConfigDict(extra="forbid")
    index: int = Field(0, ge=0, le=7)
    base: Hex64
    mask: Hex64
    type: int = Field(ge=0, le=255)
    valid: bool


class MsrValueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    msr: Hex64
    mtrr: RawMtrr


class DiffStateIn(BaseModel):
    """The page's scenario and a diff group's pattern (`*` = keep)."""

    model_config = ConfigDict(extra="forbid")
    scenario: ResolveRequest
    pattern: dict[str, bool | str] = Field(max_length=16)


def _maxphyaddr(value: int | str | None) -> tuple[int | None, str]:
    """MAXPHYADDR as the page holds it, if VmConfig accepts it; else None and the reason."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        return None, "MAXPHYADDR is not a number"
    try:
        VmConfig(maxphyaddr=value, memory_map=()).validate()
    except MemTypeError as e:
        if e.field == "vm.maxphyaddr":
            return None, e.message
    return value, ""


def _type_name(code: int, allowed: frozenset[int]) -> str | None:
    return MemType(code).label if code in allowed else None


def register_views(req: RegistersIn) -> dict:
    """What the editors show for raw register values: each field decoded by app.x86 (the
    layouts the core validates), each malformed one marked, none fixed up."""
    maxphy, why = _maxphyaddr(req.maxphyaddr)
    pat = _hex_or_none(req.pat)
    pat_view = {"ok": pat is not None, "value": f"{pat:#018x}" if pat is not None else req.pat, "entries": []}
    if pat is not None:
        pat_view["entries"] = [{"code": c, "ok": c in PAT_TYPES} for c in fixed_bytes(pat)]
    dt = _hex_or_none(req.mtrr.def_type)
    dt_view: dict = {"ok": dt is not None, "value": f"{dt:#x}" if dt is not None else req.mtrr.def_type}
    if dt is not None:
        st = MtrrState(def_type=dt)
        dt_view |= {"enabled": st.enabled, "fixed_enabled": st.fixed_enabled, "type": dt & 0xFF,
                    "type_ok": dt & 0xFF in MTRR_TYPES}
    fixed = []
    for slot, text in enumerate(req.mtrr.fixed):
        v = _hex_or_none(text)
        f = FIXED_MSRS[slot]
        fixed.append({"ok": v is not None, "value": f"{v:#018x}" if v is not None else text, "chips": [
            {"start": f"{f.start + b * f.unit:#x}", "end": f"{f.start + (b + 1) * f.unit:#x}", "code": c,
             "type": _type_name(c, MTRR_TYPES)} for b, c in enumerate(fixed_bytes(v if v is not None else 0))]
            if v is not None else []})
    variable = []
    for p in req.mtrr.variable:
        base, mask = _hex_or_none(p.base), _hex_or_none(p.mask)
        row: dict = {"base_ok": base is not None, "mask_ok": mask is not None}
        if base is not None:
            pair = VarMtrr(base, 0)
            row |= {"start": f"{physbase_address(pair):#x}", "type": pair.type, "type_ok": pair.type in MTRR_TYPES}
        if mask is not None:
            row["valid"] = VarMtrr(0, mask).valid
            size = contiguous_size(VarMtrr(0, mask), maxphy) if maxphy is not None else None
            row["size"] = f"{size:#x}" if size is not None else None
            row["note"] = why if maxphy is None else "" if size is not None else "mask has holes"
        variable.append(row)
    return {"pat": pat_view, "def_type": dt_view, "fixed": fixed, "variable": variable}


# -- the systems (issue 14): which one a kernel/vendor/type names, and what it fixes ----------

SYSTEM_PANELS = {
    "kvm-intel": {"title": "KVM on Intel VT-x (EPT)", "path": "vmx_get_mt_mask()", "entry": "EPT leaf entry",
                  "eff": "effective = EPT type (IPAT: alone; else x PAT); expected = the guest's bare-metal "
                         "MTRR x PAT (CD=1: UC)"},
    "kvm-amd": {"title": "KVM on AMD SVM (NPT)", "path": "make_spte(), svm_set_cr0(), g_pat",
                "entry": "NPT leaf entry: PWT/PCD/PAT select a host PAT entry (no memtype bits)",
                "eff": "effective = the host side (host MTRR x the host PAT entry the NPT leaf selects) "
                       "combined with the guest's gPAT type, under the CPU's CR0; expected = the guest's "
                       "bare-metal MTRR x PAT"},
    "kvm-tdx": {"title": "KVM TDX VM (TD)", "path": "vmx_get_mt_mask() for a TD",
                "entry": "EPT entry: shared GPAs in the normal EPT, private ones in the Secure EPT",
                "eff": "effective = EPT type x guest PAT (a TD never sets IPAT); expected = the guest's "
                       "bare-metal MTRR x PAT (MTRRs and CR0.CD fixed by the TDX module)"},
    "xen": {"title": "Xen HVM (EPT)", "path": "epte_get_entry_emt()", "entry": "EPT leaf entry (EMT)",
            "eff": "effective = EMT (IPAT: alone; else x PAT); expected = the guest's bare-metal MTRR x PAT"},
}
"""The panels' titles per system, keyed by the `system` a resolve answer names (prose only:
the answer itself comes from the API; an Intel answer names none: kvm-intel)."""

XEN_ERAS = [{"id": SYSTEM_ID, "title": f"Xen, the newest modelled release ({NEWEST.title})",
             "kernels": f"newest: {NEWEST.id}"},
            *({"id": v.id, "title": v.title, "kernels": v.releases} for v in XEN_VERSIONS.values())]
"""The Era list's Xen entries (app/xen/versions.py): the system id and each modelled release."""


def _xen_fields() -> list[dict]:
    """The Xen facts the resolve request takes (schemas XenIn), as the page's inputs: a
    checkbox per flag, a select per closed set, a text field for a frame number. `map`: the
    map request takes it too (XenMapIn: the domain's facts, not the one entry's)."""
    out = []
    for name, f in XenIn.model_fields.items():
        ann = f.annotation
        if get_origin(ann) is Literal:
            out.append({"name": name, "kind": "choice", "choices": list(get_args(ann)), "default": f.default,
                        "label": f.description or name.replace("_", " ")})
        elif ann is bool:
            out.append({"name": name, "kind": "bool", "default": f.default, "label": f.description or name})
        elif name == "mfn":
            out.append({"name": name, "kind": "hex", "default": None, "label": f.description or name})
        elif name == "pinned":  # a list of gfn ranges with a type each (PinnedRangeIn)
            types = get_args(PinnedRangeIn.model_fields["type"].annotation)
            out.append({"name": name, "kind": "ranges", "default": [], "label": f.description or name,
                        "types": [t for t in types if MemType.from_label(t) in PINNED_TYPES],
                        "max": next(m.max_length for m in f.metadata if hasattr(m, "max_length"))})
    for row in out:
        row["map"] = row["name"] in XenMapIn.model_fields
    return out


XEN_FIELDS = _xen_fields()


def _literal_choices(ann: Any) -> list[str]:
    """The names of a Literal annotation, or of the Literal in an optional one."""
    if get_origin(ann) is Literal:
        return list(get_args(ann))
    return next((list(get_args(a)) for a in get_args(ann) if get_origin(a) is Literal), [])


def _map_inputs() -> dict[str, dict]:
    """The map's own inputs (POST /api/v1/map takes them, resolve does not), as the page's row
    editors: a TD's private GPA ranges (MapRequest.private_ranges, GpaRangeIn rows) and Xen's
    per-frame facts (XenMapIn.frames: XenFramesIn rows, a p2m type select, empty = the
    memory map range's, and a checkbox per flag). Their limits, and what one row is called
    (`what`: the rows' labels and the add button say it as the map's refusals do), are the core's."""
    frame = XenFramesIn.model_fields
    return {
        "private_ranges": {"name": "private_ranges", "api": "private_ranges", "max": MAP_RANGES_MAX,
                           "what": PRIVATE_RANGE, "heading": BY_PARAM["private_ranges"].label,
                           "label": MapRequest.model_fields["private_ranges"].description or "private_ranges"},
        "xen_frames": {"name": "frames", "api": "xen.frames", "max": MAP_RANGES_MAX, "what": FRAME_RANGE,
                       "heading": BY_PARAM["xen_frames"].label,
                       "label": XenMapIn.model_fields["frames"].description or "frames",
                       "p2m_types": _literal_choices(frame["p2m_type"].annotation),
                       "p2m_label": frame["p2m_type"].description or "p2m_type",
                       "flags": [{"name": n, "label": f.description or n}
                                 for n, f in frame.items() if f.annotation is bool]},
    }


MAP_INPUTS = _map_inputs()


def _amd_fields() -> list[dict]:
    """AMD's host side as the page's inputs: the knob rows of owner `amd` (app/knobs.py; the
    API's `amd` member, AmdHostIn): a hex field for the host PAT, a select for the host MTRR
    type (empty = by the page's kind, the API's default)."""
    return [{"name": k.api_leaf, "param": k.param, "kind": "choice" if k.choices else k.kind,
             "choices": list(k.choices or ()), "default": f"{k.default:#018x}" if k.kind == "hex" else k.default,
             "label": k.label, "help": k.help} for k in KNOBS if k.owner == "amd"]


AMD_FIELDS = _amd_fields()


def compare_sides() -> list[dict]:
    """The Compare list (issue 14): every KVM era on Intel (the option's value is the era id,
    as links write `vs`), the same eras under KVM on AMD (`vs_vendor` amd), TDX VMs where
    KVM_CREATE_VM takes the type (app.kvm.tdx.check_vm_kind; only once the diff takes
    `b_type`), Xen's system id and releases. `value` is the page's own key for the option;
    vs, vendor and type are what the API and the link take. Nothing here is a memory-type
    rule: an AMD era the cross-system diff refuses (before 4.14) is offered, and the refusal
    is the API's."""
    intel = [{"value": e.id, "vs": e.id, "vendor": VENDOR_INTEL, "type": VM_TYPE_DEFAULT, "system": "kvm-intel",
              "group": "KVM on Intel (EPT)", "label": f"{e.id} ({e.kernels})", "title": e.title} for e in ERAS.values()]
    amd = [{**o, "value": f"amd:{o['vs']}", "vendor": VENDOR_AMD, "system": "kvm-amd", "group": "KVM on AMD (NPT)",
            "label": f"AMD {o['label']}"} for o in intel]
    tdx = []
    if "b_type" in DiffRequest.model_fields:
        for o in intel:
            try:
                check_vm_kind(VENDOR_INTEL, VM_TYPE_TDX, o["vs"])
            except MemTypeError:
                continue
            tdx.append({**o, "value": f"tdx:{o['vs']}", "type": VM_TYPE_TDX, "system": "kvm-tdx",
                        "group": "KVM TDX VM", "label": f"TDX {o['label']}"})
    xen = [{"value": e["id"], "vs": e["id"], "vendor": VENDOR_INTEL, "type": VM_TYPE_DEFAULT, "system": "xen",
            "group": "Xen (EPT)", "label": f"{e['id']} ({e['kernels']})", "title": e["title"]} for e in XEN_ERAS]
    return [*intel, *amd, *tdx, *xen]


COMPARE_SIDES = compare_sides()


def offered_compare(state: LinkState, dropped: tuple[Dropped, ...]) -> tuple[LinkState, tuple[Dropped, ...]]:
    """A link's Compare side (vs, vs_vendor, vs_type) as the Compare list offers it: a side
    the list lacks loses the parameter the cross-system diff's side() refuses, listed with
    its reason like every parameter decode_report drops (a TDX VM under an old kernel keeps
    its Intel era; Xen named with vendor amd keeps Xen); one it does not refuse loses vs."""
    out = list(dropped)
    implicit = state.vs is None and (state.vs_vendor != VENDOR_INTEL or state.vs_type != VM_TYPE_DEFAULT)
    if implicit:
        # vs_vendor / vs_type alone: the second side is the main kernel (permalink.request_body
        # diffs `vs or kernel`), which the Compare list names by its era; the page would
        # otherwise show no Compare side and lose them unsaid
        state = replace(state, vs=state.kernel)
    offered = {(o["vs"], o["vendor"], o["type"]) for o in COMPARE_SIDES}
    while state.vs is not None and (state.vs, state.vs_vendor, state.vs_type) not in offered:
        vs = state.vs
        try:
            side(vs, state.vs_vendor, "vs", state.vs_type)
        except MemTypeError as e:
            if e.field == "vs_vendor":
                out.append(Dropped(e.field, state.vs_vendor, e.message, e.rule))
                state = replace(state, vs_vendor=VENDOR_INTEL)
                continue
            if e.field == "vs_type":
                out.append(Dropped(e.field, state.vs_type, e.message, e.rule))
                state = replace(state, vs_type=VM_TYPE_DEFAULT)
                continue
        out.append(Dropped("vs", vs, "is no side of the page's Compare list", ""))
        state = replace(state, vs=None, vs_vendor=VENDOR_INTEL, vs_type=VM_TYPE_DEFAULT)
    if implicit and (state.vs, state.vs_vendor, state.vs_type) == (state.kernel, VENDOR_INTEL, VM_TYPE_DEFAULT):
        state = replace(state, vs=None)  # what was dropped left the main side itself: no Compare side
    return state, tuple(out)

DIM_SHORT = {"is_mmio": "mmio", "noncoherent_dma": "ncDMA", "cr0_cd": "CD", "quirk_cd_nw_cleared": "CDNWq",
             "quirk_ignore_guest_pat": "PATq", "self_snoop": "snoop", "guest_mtrr": "MTRR", "pat": "PAT",
             "xen_iommu": "iommu", "xen_io": "io"}
"""Short column labels of the diffs' dimensions (app.analysis.DIMENSIONS and the
cross-system diff's joint space, app.system_diff.DIMENSIONS): prose for the groups table,
each expanded in GLOSSARY. Which dimensions a diff has, and their order, come from its answer."""

XEN_MMIO = {mmio: t.value for mmio, t in XEN_P2M.items()}
"""is_mmio under Xen: the p2m type app.system_diff.answer gives the entry (XenIn.p2m_type)."""


def _probe_values(k: Knob) -> tuple:
    """The values a control is tried with (samples, not rules: the API decides)."""
    if k.choices:
        return k.choices
    if k.kind == "bool":
        return (True, False)
    if k.kind == "opt_bool":
        return (None, True, False)
    if k.param == "deftype":  # E off, and E on with WB (the register's two families)
        return ("0x0", f"{DEF_TYPE_E | int(MemType.WB):#x}")
    return ()


PROBED = tuple(k for k in KNOBS if k.control and k.owner in ("vm", "vcpu", "access") and _probe_values(k))


def _control_values(k: Knob, value: object) -> dict[str, object]:
    """The value as each control of the row holds it (MTRRdefType: E and the type select)."""
    if k.param == "deftype":
        dt = MtrrState(def_type=int(str(value), 16))
        return {"mtrr-e": dt.enabled, "mtrr-deftype": str(int(dt.default_type))}
    assert k.control is not None
    return {k.control: value}


def _with(body: dict, api: str, value: object) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in body.items()}
    *parents, leaf = api.split(".")
    at = out
    for p in parents:
        at[p] = dict(at.get(p) or {})
        at = at[p]
    if value is not None:
        at[leaf] = value
    return out


def _ask(request: Request, body: dict) -> tuple[dict | None, dict | None]:
    """POST /api/v1/resolve in-process: (answer, None) or (None, the refusal)."""
    try:
        req = ResolveRequest.model_validate(body)
        r = resolve_endpoint.__wrapped__(req, request, "json")  # type: ignore[attr-defined]
    except RuleViolation as e:
        return None, {"field": ".".join(str(p) for p in e.loc[1:]) or e.err.field, "message": e.err.message,
                      "rule": e.err.rule}
    except ValidationError as e:
        it = e.errors()[0]
        return None, {"field": ".".join(str(p) for p in it["loc"]), "message": it["msg"], "rule": ""}
    return json_loads(bytes(r.body)), None


def system_view(request: Request, kernel: str, vendor: str, vm_type: str) -> dict:
    """Which system (kernel, vendor, type) names and which controls it fixes, found by asking
    the resolve endpoint, the one place that decides: a control is fixed when the system
    refuses a value KVM on Intel (the default kernel) accepts and accepts exactly one; the
    refusal is its reason. Also whether it takes the Xen facts, `private` and AMD's host side
    (`xen`, `private`, `amd`: the page sends each only to a side that takes it)."""
    kind_vm: dict[str, str] = {}
    if not is_xen(kernel):
        kind_vm = {n: v for n, v, d in (("vendor", vendor, VmConfig().vendor), ("type", vm_type, VmConfig().vm_type))
                   if v != d}
    base: dict[str, Any] = {"kernel": kernel, "vm": kind_vm, "vcpu": {}, "gpa": "0x0"}
    answer, error = _ask(request, base)
    if answer is None:
        return {"system": None, "error": error, "fixed": [], "xen": False, "private": False, "amd": False}
    system = answer.get("system", "kvm-intel")
    reference = {**base, "kernel": DEFAULT_KERNEL, "vm": {}}
    fixed = []
    for k in PROBED if system != "kvm-intel" else ():
        assert k.api is not None and k.api_leaf is not None
        refused, accepted = None, []
        for v in _probe_values(k):
            if k.api in ("vm.vendor", "vm.type") and not is_xen(kernel) and v == kind_vm.get(k.api_leaf):
                accepted.append(v)
                continue
            ok, err = _ask(request, _with(base, k.api, v))
            if ok is not None:
                accepted.append(v)
            elif _ask(request, _with(reference, k.api, v))[0] is not None:
                refused = refused or err
        if refused and len(accepted) == 1:
            value = accepted[0]
            fixed.append({"param": k.param, "api": k.api, "value": value, "controls": _control_values(k, value),
                          "reason": f"{refused['message']} ({refused['rule']})" if refused["rule"]
                          else refused["message"]})
    takes = {name: _ask(request, {**base, name: value})[0] is not None
             for name, value in (("xen", {}), ("private", True), ("amd", {}))}
    return {"system": system, "error": None, "panels": SYSTEM_PANELS.get(system, SYSTEM_PANELS["kvm-intel"]),
            "fixed": fixed, "notes": answer.get("notes", []), **takes}


class SystemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kernel: str = Field(max_length=64)
    vendor: str = Field("intel", max_length=16)
    type: str = Field("default", max_length=16)


def build_router(templates_dir: Path, assets: AssetHasher | None = None) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    router.include_router(page_batch.build_router())  # POST /page/batch: one round trip per update
    # what every page shows whatever its state: computed once
    fixed = {
        "eras": [EraOut.model_validate(e).model_dump() for e in ERAS.values()],
        "xen_eras": XEN_ERAS,
        "xen_fields": XEN_FIELDS,
        "amd_fields": AMD_FIELDS,
        "map_inputs": MAP_INPUTS,
        "compare_sides": COMPARE_SIDES,
        "compare_groups": list(dict.fromkeys(o["group"] for o in COMPARE_SIDES)),
        "dim_short": DIM_SHORT,
        "dim_status": STATUS_TEXT,
        "presets": [{"name": p.name, "title": p.title, "description": p.description, "compare": p.compare,
                     "request": p.request(), "event": p.event(), "query": _preset_query(p)}
                    for p in PRESETS.values()],
    }
    rendered: Lru[bytes] = Lru(PAGE_CACHE_SIZE)
    templates = Jinja2Templates(directory=str(templates_dir)) if (templates_dir / "index.html").exists() else None
    if templates is not None:
        # {{ asset("app.css") }}: the content-hashed URL (app/assets.py), root_path not included
        templates.env.globals["asset"] = (assets.url if assets else lambda p, root="": f"{root}/static/{p}")

    @router.get("/l/{token:path}")
    async def short_link(token: str, request: Request) -> Response:
        """The short form: the same page under its long query (relative, so no Host is echoed)."""
        root = request.scope.get("root_path", "").rstrip("/")
        query = "&".join(f"{k}={v}" for k, v in _requote(short_query(token)))
        return RedirectResponse(f"{root}/?{query}", status_code=303)

    @router.get("/page/link")
    async def page_link(request: Request) -> Response:
        """The long and the short link of a permalink query, built from the public base URL."""
        try:
            state = decode(request.url.query)
        except MemTypeError as e:
            raise _violation(e, ["query", e.field]) from None
        base = base_url(request)
        return JSONResponse({"url": url(state, base), "short": f"{base}/{short_path(state)}"})

    @router.post("/page/mtrr-pair")
    def mtrr_pair(req: VarPairIn) -> Response:
        """PHYSBASE/PHYSMASK for a naturally aligned power-of-two range (the editor's start and
        size), or 422 naming the pair and the rule: no silent rounding of an unaligned start."""
        loc = ("vcpu", "mtrr", "variable", req.index)
        with core_errors():
            mtrr_type(req.type, loc)
            try:
                pair = range_to_pair(req.start, req.size, MemType(req.type), req.maxphyaddr)
            except MemTypeError as e:
                raise MemTypeError(loc, e.message, e.rule) from None
        mask = pair.mask if req.valid else pair.mask & ~PHYSMASK_V
        return JSONResponse({"base": f"{pair.base:#x}", "mask": f"{mask:#x}"})

    @router.post("/page/registers")
    def registers(req: RegistersIn) -> Response:
        """The register editors' views of raw values (register_views): PAT entries, E, FE and
        the default type, fixed-range sub-ranges, each pair's start, size, type and V."""
        return JSONResponse(register_views(req))

    @router.post("/page/pat-value")
    def pat_value(req: PatEntriesIn) -> Response:
        """IA32_PAT from its 8 entries (app.x86.pat.Pat), or 422 naming the reserved entry."""
        with core_errors():
            pat = Pat(tuple(pat_type(c, ("entries", i)) for i, c in enumerate(req.entries)))
        return JSONResponse({"value": pat.hex()})

    @router.post("/page/mtrr-deftype")
    def mtrr_deftype(req: DefTypeIn) -> Response:
        """MTRRdefType from E, FE and the default type (app.x86.mtrr.def_type_value)."""
        with core_errors():
            mtrr_type(req.type, "type")
        return JSONResponse({"value": f"{def_type_value(req.enabled, req.fixed_enabled, req.type):#x}"})

    @router.post("/page/mtrr-pair-fields")
    def mtrr_pair_fields(req: PairFieldsIn) -> Response:
        """A raw pair with the editor's type and V set (app.x86.mtrr.with_fields): the address
        bits stay as they are, whatever they hold (resolve names what is wrong with them)."""
        with core_errors():
            mtrr_type(req.type, ("vcpu", "mtrr", "variable", req.index, "type"))
        pair = with_fields(VarMtrr(req.base, req.mask), req.type, req.valid)
        return JSONResponse({"base": f"{pair.base:#x}", "mask": f"{pair.mask:#x}"})

    @router.post("/page/msr-value")
    def msr_value(req: MsrValueIn) -> Response:
        """The value an MTRR MSR holds in the editor's state (MtrrState.read_msr): what a
        zap event's "current" button fills in. 422 names a malformed field."""
        def need(text: str, loc: list) -> int:
            v = _hex_or_none(text)
            if v is None:
                raise RuleViolation(MemTypeError("mtrr", f"malformed value {text!r}",
                                                 "expected 0x followed by 1-16 hex digits"), ["body", "mtrr", *loc])
            return v
        m = req.mtrr
        if len(m.fixed) != len(FIXED_MSRS):
            raise RuleViolation(MemTypeError(("mtrr", "fixed"), f"{len(m.fixed)} values given",
                                             "there are 11 fixed-range MSRs"), ["body", "mtrr", "fixed"])
        pairs = tuple(VarMtrr(need(p.base, ["variable", n, "base"]), need(p.mask, ["variable", n, "mask"]))
                      for n, p in enumerate(m.variable))
        state = MtrrState(def_type=need(m.def_type, ["def_type"]),
                          fixed=tuple(need(t, ["fixed", i]) for i, t in enumerate(m.fixed)), variable=pairs)
        with core_errors():
            value = state.read_msr(req.msr)
        return JSONResponse({"value": f"{value:#x}"})

    systems: Lru[dict] = Lru(PAGE_CACHE_SIZE)

    def system_of(request: Request, kernel: str, vendor: str, vm_type: str) -> dict:
        """system_view, cached (it asks resolve a few dozen times, and depends on nothing else)."""
        key = (kernel, vendor, vm_type, request.scope.get("root_path", ""))
        view = systems.get(key)
        if view is None:
            view = system_view(request, kernel.strip(), vendor, vm_type)
            systems.put(key, view)
        return view

    @router.post("/page/diff-state")
    def diff_state(req: DiffStateIn, request: Request) -> Response:
        """The page's scenario moved into a diff group (app.analysis.apply_pattern): the resolve
        body the controls then show, as app.permalink writes it. A dimension that would move a
        control the scenario's system fixes (system_view: a TD's MTRRdefType and IGNORE_GUEST_PAT,
        Xen's self-snoop) is not applied but listed in `unapplied` with the system's reason."""
        sc = req.scenario
        vm, _ = to_vm(sc.vm, sc.memory_map, kinds=True)  # KVM on AMD, a TD: the system the page shows stays
        with core_errors(), located("scenario"):  # the scenario's own parts sit under `scenario`
            vcpu = to_vcpu(sc.vcpu)
            access = Access(gpa=sc.gpa, mmio=sc.mmio, host_page=to_host_page(sc.host_page), private=sc.private)
        pattern, xen = split_xen_dims(req.pattern)
        if is_xen(sc.kernel) and (mmio := bool_dim(pattern, "is_mmio")) is not None:
            del pattern["is_mmio"]
            xen["p2m_type"] = XEN_MMIO[mmio]  # Xen's is_mmio is the p2m type (its mmio is fixed)
        view = system_of(request, sc.kernel, vm.vendor, vm.vm_type)
        with core_errors():
            held = fixed_dims(sc.kernel, view, pattern, vm, vcpu, access)
            vm, vcpu, access = apply_pattern({k: v for k, v in pattern.items() if k not in held}, vm, vcpu, access)
        if access.mmio and access.private and pattern.get("is_mmio") is True:
            # a group of host-MMIO states holds shared GPAs only (a TD's MMIO is never private:
            # app.system_diff's kvm-tdx mapping, scenario.check_private): the state moved
            # into the group is the shared one
            access = replace(access, private=False)
        body = scenario_json(sc.kernel, vm, vcpu, access)
        if xen:
            if is_xen(sc.kernel):
                base = sc.xen.model_dump(exclude_defaults=True) if sc.xen is not None else {}
                body["xen"] = {**base, **xen}
            else:
                body["unapplied"] = [{"dimension": d, "value": req.pattern[d],
                                      "why": f"a Xen domain fact (xen.{f}): the page holds Xen facts with Era xen only"}
                                     for d, f in XEN_FACTS.items() if f in xen]
        elif sc.xen is not None:
            body["xen"] = sc.xen.model_dump(exclude_defaults=True)
        if held:
            body["unapplied"] = [*body.get("unapplied", []), *held.values()]
        if sc.amd is not None:  # AMD's host side stays (its refusals at scenario.amd)
            with core_errors(), located("scenario"):
                amd = amd_json(svm_host(sc.amd))
            if amd:
                body["amd"] = amd
        return JSONResponse(body)

    @router.post("/page/system")
    def system(req: SystemIn, request: Request) -> Response:
        """system_view for the page's kernel, vendor and type (cached: system_of)."""
        view = system_of(request, req.kernel, req.vendor, req.type)
        return JSONResponse({"key": [req.kernel, req.vendor, req.type], **view})

    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> Response:
        # The page is a pure function of its query, the root path and the assets it names:
        # a repeat is served from the cache (bench/run.py soak: rendering was the costliest
        # GET under load).
        key = (request.url.query, request.scope.get("root_path", ""),
               *(assets.digest(p) if assets else None for p in PAGE_ASSETS))
        if (body := rendered.get(key)) is not None:
            return HTMLResponse(body, headers={"cache-control": "no-cache"})
        error = None
        dropped: tuple = ()
        try:
            # no query at all: the first screen is the START preset (with its compare era);
            # any link, even `/?v=1`, means exactly what it says; a bad parameter is dropped
            # (and listed) and every readable one kept
            if request.url.query:
                state, dropped = decode_report(request.url.query)
                state, dropped = offered_compare(state, dropped)
            else:
                state = _start_state()
        except MemTypeError as e:
            state, error = LinkState(), {"field": e.field, "message": e.message, "rule": e.rule}
        except ValueError:  # a decoder bug, not the reader's: still serve the page (tests fuzz for it)
            log.exception("permalink decode failed for %r", request.url.query[:200])
            state, error = LinkState(), {"field": "permalink", "message": "could not be read", "rule": ""}
        if templates is None:
            return HTMLResponse(
                "<!doctype html><html lang=en><meta charset=utf-8><title>memtype-explorer</title>"
                "<h1>memtype-explorer</h1><p>The page is not installed. See <a href=/docs>/docs</a> "
                "and <a href=/api/v1/kernels>/api/v1/kernels</a>.</p></html>"
            )
        context = {
            **fixed,
            "state": state,
            "initial": {"view": state.view, "kernel": state.kernel, "vs": state.vs, "vs_vendor": state.vs_vendor,
                        "vs_type": state.vs_type, "request": request_body(state),
                        # the page needs the whole state whatever the view (request_body drops the
                        # address for zap and everything but the eras for diff)
                        "scenario": _page_scenario(state),
                        "event": event_json(state.event) if state.event is not None else None,
                        "pati": state.pati, "default_kernel": DEFAULT_KERNEL, **map_inputs_json(state)},
            "registers": REGISTERS,
            "knobs": KNOB_ROWS,
            "error": error,
            "dropped": [{"param": d.param, "value": d.value, "message": d.message, "rule": d.rule} for d in dropped],
        }
        # no-cache: the page names the current content-hashed asset URLs, so it must be
        # revalidated on every load (the assets themselves are cached for a year)
        resp = templates.TemplateResponse(request, "index.html", context, headers={"cache-control": "no-cache"})
        rendered.put(key, bytes(resp.body))
        return resp

    return router


def split_xen_dims(pattern: dict[str, bool | str]) -> tuple[dict[str, bool | str], dict[str, bool | str]]:
    """A diff group's pattern as (the era diff's dimensions, for app.analysis.apply_pattern;
    the Xen facts the cross-system diff's Xen dimensions fix, for the resolve body's `xen`)."""
    rest = {k: v for k, v in pattern.items() if k not in XEN_FACTS}
    xen: dict[str, bool | str] = {}
    for d, f in XEN_FACTS.items():
        if (v := bool_dim(pattern, d)) is not None:
            xen[f] = v
    return rest, xen


def fixed_dims(kernel: str, view: dict, pattern: dict[str, bool | str], vm: VmConfig, vcpu: Any,
               access: Access) -> dict[str, dict]:
    """The dimensions of a diff group's pattern the page's system cannot take: those whose
    value (app.analysis.apply_pattern, the one construction of a group's state) would move a
    control the system fixes (system_view's `fixed`: the value it accepts) to another value.
    Which fields a dimension sets is found by applying it, not listed here: a TD's
    IGNORE_GUEST_PAT quirk is off (tdx_vm_init()), Xen's self_snoop is fixed (a TD's
    guest_mtrr is a variable range, so its fixed MTRRdefType stays: apply_pattern). Keyed
    by dimension: {dimension, value, why}."""
    fixed = view.get("fixed") or []
    if not fixed:
        return {}
    base = scenario_json(kernel, vm, vcpu, access)
    title = (view.get("panels") or {}).get("title") or view.get("system") or kernel
    out: dict[str, dict] = {}
    for d, v in pattern.items():
        if v == ANY:
            continue
        one = scenario_json(kernel, *apply_pattern({d: v}, vm, vcpu, access))
        for f in fixed:
            now = _at(one, f["api"])
            if now != _at(base, f["api"]) and now != f["value"]:
                value = "auto" if f["value"] is None else str(f["value"]).lower() if isinstance(f["value"], bool) \
                    else str(f["value"])
                out[d] = {"dimension": d, "value": v, "why": f"{title} fixes {f['api']}={value} ({f['reason']})"}
                break
    return out


def _at(body: dict, api: str) -> object:
    """The value at a dotted API path of a resolve body (None where absent)."""
    at: object = body
    for p in api.split("."):
        if not isinstance(at, dict):
            return None
        at = at.get(p)
    return at


def bool_dim(pattern: dict[str, bool | str], d: str) -> bool | None:
    """A yes/no dimension of a diff group's pattern: its value, or None for '*' (absent);
    anything else refused at pattern.<d> (never dropped)."""
    v = pattern.get(d, ANY)
    if v == ANY:
        return None
    if not isinstance(v, bool):
        raise RuleViolation(MemTypeError(("pattern", d), f"{v!r} is no value of this dimension",
                                         "true, false or '*'"), ["body", "pattern", d])
    return v


def _page_scenario(state: LinkState) -> dict:
    """The whole scenario the controls show, the Xen facts with a Xen kernel."""
    body = scenario_json(state.kernel, state.vm, state.vcpu, state.access)
    if is_xen(state.kernel):
        body["xen"] = xen_json(state.xen)
    if amd := amd_json(state.amd):
        body["amd"] = amd
    return body


def _requote(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(quote(k, safe=""), quote(v, safe=":,*-.")) for k, v in pairs]


def _violation(e: MemTypeError, loc: list) -> RuleViolation:
    return RuleViolation(e, loc)
