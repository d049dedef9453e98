"""The HTML page at `/`: rendered from templates/index.html with the permalink's state.

The initial state is parsed from the query by app.permalink (so a link works without
JavaScript and in curl); the page's script then talks to /api/v1 only, and writes the
address bar from POST /api/v1/permalink (app.permalink is the only encoder). A permalink
that cannot be read still serves the page (200): the defaults, and a message naming the
parameter. Until the template exists a minimal placeholder is served.

A link with bad parameters keeps every readable one (app.permalink.decode_report): the
page draws that state and lists each dropped parameter with the reason, once. The short
form `/l/<token>` (app.permalink.short_path, derived from the state, nothing stored) is
redirected to the same page with the long query. Two small JSON helpers serve the script:
GET /page/link (the long and short links of a query, from MEMTYPE_PUBLIC_URL like every
permalink) and POST /page/mtrr-pair (a variable range's start and size as the PHYSBASE and
PHYSMASK values, refused unless a single pair can cover it: app.x86.mtrr.range_to_pair).

The VM's and vCPU's checkboxes and number inputs are the rows of app/knobs.py (KNOB_ROWS,
in the template's loop and the script's initial data).

The register encodings the page's editors need (type names, which codes PAT and MTRRs
accept, the fixed-range MSRs, the PAT presets) come from app.x86 through the template, so
the script holds no copy of them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from .api.common import base_url
from .api.convert import core_errors
from .api.errors import RuleViolation
from .api.schemas import Addr, EraOut
from .assets import AssetHasher
from .knobs import page_knobs
from .kvm.eras import ERAS
from .lru import Lru
from .permalink import (
    DEFAULT_KERNEL,
    LinkState,
    decode,
    decode_report,
    encode,
    event_json,
    request_body,
    scenario_json,
    short_path,
    short_query,
    url,
)
from .presets import PRESETS, START
from .x86.memtype import MTRR_TYPES, PAT_TYPES, MemType, MemTypeError, mtrr_type
from .x86.mtrr import FIXED_MSRS, PHYSMASK_V, range_to_pair
from .x86.pat import PAT_PRESETS

log = logging.getLogger("memtype.api")

REGISTERS = {
    "types": {str(int(t)): t.label for t in MemType},
    "pat_codes": sorted(PAT_TYPES),
    "mtrr_codes": sorted(MTRR_TYPES),
    "fixed_msrs": [{"msr": f.msr, "name": f.name, "start": f.start, "unit": f.unit} for f in FIXED_MSRS],
    "pat_presets": [{"name": n, "value": f"{v:#018x}"} for n, v in PAT_PRESETS.items()],
}
"""Architectural encodings for the page's register editors (not rules: no type is decided here)."""


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
    "CDNWq": "KVM_X86_QUIRK_CD_NW_CLEARED",
    "PATq": "KVM_X86_QUIRK_IGNORE_GUEST_PAT",
    "snoop": "host CPU has X86_FEATURE_SELFSNOOP",
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


def build_router(templates_dir: Path, assets: AssetHasher | None = None) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    # what every page shows whatever its state: computed once
    fixed = {
        "eras": [EraOut.model_validate(e).model_dump() for e in ERAS.values()],
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
            "initial": {"view": state.view, "kernel": state.kernel, "vs": state.vs, "request": request_body(state),
                        # the page needs the whole state whatever the view (request_body drops the
                        # address for zap and everything but the eras for diff)
                        "scenario": scenario_json(state.kernel, state.vm, state.vcpu, state.access),
                        "event": event_json(state.event) if state.event is not None else None,
                        "pati": state.pati, "default_kernel": DEFAULT_KERNEL},
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


def _requote(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(quote(k, safe=""), quote(v, safe=":,*-.")) for k, v in pairs]


def _violation(e: MemTypeError, loc: list) -> RuleViolation:
    return RuleViolation(e, loc)
