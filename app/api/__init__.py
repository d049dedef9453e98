"""The JSON API under /api/v1: routers, schemas, problem details, limits.

    meta.py      GET  /kernels, /kernels/{id}, /presets, /presets/{name}
    scenario.py  POST /resolve, /zap, /map, /decode, /permalink (the page's address bar)
    diff.py      POST /diff
    replay.py    POST /replay, GET /replay/generators
    schemas.py   pydantic models (responses read the core's dataclasses: from_attributes)
    convert.py   request -> core;  hexpattern.py  schema regexes from app.x86's sets
    errors.py    RFC 9457;  common.py  declared error responses, text negotiation
    pool.py      CPU-bound routes off the event loop;  middleware.py  body cap, access log
"""

from __future__ import annotations

from fastapi import APIRouter

from . import diff, meta, replay, scenario

API_PREFIX = "/api/v1"


def build_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    router.include_router(meta.router)
    router.include_router(scenario.router)
    router.include_router(diff.router)
    router.include_router(replay.router)
    return router


__all__ = ["API_PREFIX", "build_router"]
