"""CPU-bound routes never run on the event loop (issue 11, "static checks").

resolve, zap, map, decode (one leaf, and a pasted trace), diff and replay compute in
pure Python; each is a plain `def` handed to the app's bounded WorkPool by @pooled
(app/api/pool.py), so /healthz answers while they run (tests/test_service_pool.py) and a
full pool says 503. The cheap routes (GET lists, permalink) stay `async def`.
"""

from __future__ import annotations

import inspect

import pytest
from fastapi.routing import APIRoute

from app.api import API_PREFIX, diff, meta, replay, scenario

POOLED = {"/api/v1/resolve", "/api/v1/zap", "/api/v1/map", "/api/v1/decode", "/api/v1/decode/trace",
          "/api/v1/diff", "/api/v1/replay"}


def routes() -> dict[str, APIRoute]:
    """Every route of the API's routers (app/api/__init__.py includes these four)."""
    return {API_PREFIX + r.path: r for m in (meta, scenario, diff, replay) for r in m.router.routes
            if isinstance(r, APIRoute)}


@pytest.mark.parametrize("path", sorted(POOLED))
def test_cpu_bound_route_is_a_plain_def_in_the_pool(path):
    r = routes()[path]
    inner = getattr(r.endpoint, "__wrapped__", None)
    assert inner is not None and inspect.iscoroutinefunction(r.endpoint), f"{path} is not @pooled"
    assert not inspect.iscoroutinefunction(inner), f"{path} computes inside an async def"
    assert "503" in {str(k) for k in r.responses}, f"{path} does not declare the pool's 503"


def test_every_other_route_is_async_and_cheap():
    others = {p for p, r in routes().items() if getattr(r.endpoint, "__wrapped__", None) is None}
    assert others == set(routes()) - POOLED
    assert all(inspect.iscoroutinefunction(routes()[p].endpoint) for p in others)
    assert others == {"/api/v1/kernels", "/api/v1/kernels/{kernel_id}", "/api/v1/presets", "/api/v1/presets/{name}",
                      "/api/v1/permalink", "/api/v1/replay/generators"}
