"""The result cache (app/api/cache.py): keyed by the canonical request, so key order and
whitespace hit the same entry; JSON and text never mix; errors are not cached; a hit's
bytes equal a miss's; headers of a hit are not edited across hits; 0 turns it off."""

from __future__ import annotations

import json

import httpx
import pytest

from app.api.cache import ResultCacheMiddleware
from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.anyio

BODY = {"kernel": "v6.7", "gpa": "0xfee00000", "vm": {"noncoherent_dma": True}}


def make(size: int = 16):
    return create_app(Settings(public_url="http://t", result_cache_size=size)), None


async def test_canonical_key_hits_and_bytes_match():
    app, _ = make()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        a = await c.post("/api/v1/resolve", content=json.dumps(BODY), headers={"content-type": "application/json"})
        cache = next(m for m in _stack(app) if isinstance(m, ResultCacheMiddleware))
        assert (cache.hits, cache.misses) == (0, 1)
        reordered = json.dumps(dict(reversed(list(BODY.items()))), indent=2)
        b = await c.post("/api/v1/resolve", content=reordered, headers={"content-type": "application/json"})
        assert cache.hits == 1 and a.content == b.content and a.status_code == b.status_code == 200
        for _ in range(3):  # headers are not edited in place across hits (gzip adds Vary)
            h = await c.post("/api/v1/resolve", json=BODY, headers={"accept-encoding": "gzip"})
            assert h.headers.get("vary", "").count("Accept-Encoding") <= 1
            assert h.json() == a.json()
        t = await c.post("/api/v1/resolve?format=text", json=BODY)
        assert t.headers["content-type"].startswith("text/plain") and "Permalink" in t.text
        t2 = await c.post("/api/v1/resolve", json=BODY, headers={"accept": "text/plain"})
        assert t2.headers["content-type"].startswith("text/plain")
        j = await c.post("/api/v1/resolve", json=BODY)
        assert j.headers["content-type"] == "application/json"


async def test_errors_not_cached_and_bad_json_passes_through():
    app, _ = make()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for _ in range(2):
            r = await c.post("/api/v1/resolve", json={"kernel": "v9.9"})
            assert r.status_code == 422
        cache = next(m for m in _stack(app) if isinstance(m, ResultCacheMiddleware))
        assert cache.hits == 0 and len(cache._lru) == 0
        r = await c.post("/api/v1/resolve", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code in (400, 422)


async def test_lru_bound_and_off():
    app, _ = make(size=2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for gpa in ("0x1000", "0x2000", "0x3000"):
            assert (await c.post("/api/v1/resolve", json={**BODY, "gpa": gpa})).status_code == 200
        cache = next(m for m in _stack(app) if isinstance(m, ResultCacheMiddleware))
        assert len(cache._lru) == 2
    app, _ = make(size=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for _ in range(2):
            assert (await c.post("/api/v1/resolve", json=BODY)).status_code == 200
        cache = next(m for m in _stack(app) if isinstance(m, ResultCacheMiddleware))
        assert cache.hits == cache.misses == 0


def _stack(app):
    node = app.middleware_stack
    while node is not None:
        yield node
        node = getattr(node, "app", None)


async def test_permalink_and_register_views_are_kept():
    """The page's update cycle asks both in every batch; both are pure functions of the body
    (the permalink's base URL comes from settings), so a second ask is a hit, byte for byte."""
    app, _ = make()
    regs = {"maxphyaddr": "46", "pat": "0x0007040600070406",
            "mtrr": {"def_type": "0xc06", "fixed": ["0x0"] * 11, "variable": [{"base": "0x0", "mask": "0x0"}]}}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        cache = None
        for path, body in (("/api/v1/permalink", BODY), ("/page/registers", regs)):
            a = await c.post(path, json=body)
            cache = cache or next(m for m in _stack(app) if isinstance(m, ResultCacheMiddleware))
            hits = cache.hits
            b = await c.post(path, content=json.dumps(body, indent=1), headers={"content-type": "application/json"})
            assert a.status_code == b.status_code == 200 and a.content == b.content
            assert cache.hits == hits + 1, path
        assert (await c.post("/api/v1/permalink", json=BODY)).json()["url"].startswith("http://t/?")
        # the base URL is the configured one, not the request's Host (so a kept answer is
        # right for every client): a miss with another Host, then a hit, say the same
        other = {**BODY, "gpa": "0x1000"}
        for _ in range(2):
            r = await c.post("/api/v1/permalink", json=other, headers={"Host": "evil.example"})
            assert r.json()["url"].startswith("http://t/?"), r.text
