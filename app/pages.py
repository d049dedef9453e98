"""The HTML page at `/`: rendered from templates/index.html with the permalink's state.

The initial state is parsed from the query by app.permalink (so a link works without
JavaScript and in curl); the page's script then talks to /api/v1 only, and writes the
address bar from POST /api/v1/permalink (app.permalink is the only encoder). A permalink
that cannot be read still serves the page (200): the defaults, and a message naming the
parameter. Until the template exists a minimal placeholder is served.

The register encodings the page's editors need (type names, which codes PAT and MTRRs
accept, the fixed-range MSRs, the PAT presets) come from app.x86 through the template, so
the script holds no copy of them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from .api.convert import era_out
from .assets import AssetHasher
from .kvm.eras import ERAS
from .permalink import DEFAULT_KERNEL, LinkState, decode, event_json, request_body, scenario_json
from .presets import PRESETS
from .x86.memtype import MTRR_TYPES, PAT_TYPES, MemType, MemTypeError
from .x86.mtrr import FIXED_MSRS
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


def build_router(templates_dir: Path, assets: AssetHasher | None = None) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    templates = Jinja2Templates(directory=str(templates_dir)) if (templates_dir / "index.html").exists() else None
    if templates is not None:
        # {{ asset("app.css") }}: the content-hashed URL (app/assets.py), root_path not included
        templates.env.globals["asset"] = (assets.url if assets else lambda p, root="": f"{root}/static/{p}")

    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> Response:
        error = None
        try:
            state = decode(request.url.query)
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
            "eras": [era_out(e).model_dump() for e in ERAS.values()],
            "presets": [{"name": p.name, "title": p.title, "description": p.description, "compare": p.compare,
                         "request": p.request(), "event": p.event()} for p in PRESETS.values()],
            "state": state,
            "initial": {"view": state.view, "kernel": state.kernel, "vs": state.vs, "request": request_body(state),
                        # the page needs the whole state whatever the view (request_body drops the
                        # address for zap and everything but the eras for diff)
                        "scenario": scenario_json(state.kernel, state.vm, state.vcpu, state.access),
                        "event": event_json(state.event) if state.event is not None else None,
                        "pati": state.pati, "default_kernel": DEFAULT_KERNEL},
            "registers": REGISTERS,
            "error": error,
        }
        # no-cache: the page names the current content-hashed asset URLs, so it must be
        # revalidated on every load (the assets themselves are cached for a year)
        return templates.TemplateResponse(request, "index.html", context, headers={"cache-control": "no-cache"})

    return router
