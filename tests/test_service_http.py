"""Hardened HTTP: security headers, no inline script, gzip, HEAD, hashed static URLs with
immutable caching, links from MEMTYPE_PUBLIC_URL (never the Host header), and what
app.serve tells uvicorn (no server header, forwarded headers only from allowed IPs)."""

from __future__ import annotations

import gzip
import re

import httpx
import pytest

from app import serve
from app.main import create_app
from app.settings import Settings, get_settings

pytestmark = pytest.mark.anyio

RESOLVE = {"kernel": "v6.7", "gpa": "0x1000"}


async def test_security_headers_on_page_api_and_errors(client):
    for method, path, kw in (("GET", "/", {}), ("GET", "/healthz", {}), ("POST", "/api/v1/resolve", {"json": RESOLVE}),
                             ("POST", "/api/v1/resolve", {"json": {"kernel": 5}}), ("GET", "/nope", {})):
        r = await client.request(method, path, **kw)
        h = r.headers
        csp = h["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, path
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "no-referrer"
        assert "camera=()" in h["permissions-policy"]
        assert "server" not in h


async def test_page_has_no_inline_script_or_style(client):
    html = (await client.get("/")).text
    for m in re.finditer(r"<script\b([^>]*)>(.*?)</script>", html, re.S):
        attrs, body = m.groups()
        assert "src=" in attrs or 'type="application/json"' in attrs, attrs
        if "src=" in attrs:
            assert not body.strip()
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "inline style attribute"


async def test_docs_work_under_their_csp(client):
    r = await client.get("/docs")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    srcs = re.findall(r'<script src="([^"]+)"', r.text)
    assert any("swagger-ui-bundle.js" in s for s in srcs) and any("swagger-init.js" in s for s in srcs)
    assert re.search(r'<script type="application/json" id="swagger-config">\{.*"url": "/openapi.json"', r.text)
    for s in srcs + re.findall(r'<link rel="stylesheet" href="([^"]+)"', r.text):
        assert s.startswith("/assets/"), s
        a = await client.get(s)
        assert a.status_code == 200 and a.headers["cache-control"] == "public, max-age=31536000, immutable"


async def test_hashed_assets_are_immutable_and_page_is_no_cache(client):
    page = await client.get("/")
    assert page.headers["cache-control"] == "no-cache"
    urls = re.findall(r'(?:href|src)="(/assets/[0-9a-f]{16}/app\.(?:css|js))"', page.text)
    assert len(urls) == 2, urls
    for u in urls:
        r = await client.get(u)
        assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=31536000, immutable"
        plain = await client.get("/static/" + u.rsplit("/", 1)[1])
        assert plain.content == r.content and plain.headers["cache-control"] == "no-cache"
        # a hash that is not the file's own is a 404, never the current bytes
        wrong = u.replace(u.split("/")[2], "0" * 16)
        assert (await client.get(wrong)).status_code == 404
    assert (await client.get("/assets/0123456789abcdef/../settings.py")).status_code == 404
    assert (await client.get("/assets/app.js")).status_code == 404


async def test_gzip_for_text_but_not_tiny(client):
    r = await client.get("/openapi.json", headers={"accept-encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert r.json()["info"]["title"] == "memtype-explorer"  # httpx decoded it
    raw = await client.get("/", headers={"accept-encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip" and "vary" in raw.headers
    small = await client.get("/healthz", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in small.headers
    plain = await client.get("/openapi.json", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers


async def test_head_wherever_get(client, api_app):
    paths = ["/", "/healthz", "/docs", "/openapi.json", "/api/v1/kernels", "/static/app.css"]
    for route in api_app.routes:
        methods = getattr(route, "methods", None) or set()
        if "GET" in methods and "{" not in route.path and route.path not in paths:
            paths.append(route.path)
    for p in paths:
        g = await client.get(p)
        h = await client.head(p)
        assert h.status_code == g.status_code == 200, p
        assert h.content == b"", p
        assert h.headers["content-type"] == g.headers["content-type"], p
    assert (await client.head("/api/v1/resolve")).status_code == 405


def _app_with(monkeypatch, **env) -> httpx.AsyncClient:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    app = create_app(Settings())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://evil.example")


async def test_links_never_from_host_header(monkeypatch):
    monkeypatch.delenv("MEMTYPE_PUBLIC_URL", raising=False)
    async with _app_with(monkeypatch, MEMTYPE_HOST="127.0.0.1", MEMTYPE_PORT="8123") as c:
        r = await c.post("/api/v1/resolve", json=RESOLVE, headers={"host": "evil.example",
                                                                   "x-forwarded-host": "evil2.example"})
        assert r.json()["permalink"].startswith("http://127.0.0.1:8123/?v=1&")
        presets = (await c.get("/api/v1/presets")).text
        assert "evil" not in presets
    async with _app_with(monkeypatch, MEMTYPE_PUBLIC_URL="https://memtype.example.org/mt/") as c:
        r = await c.post("/api/v1/resolve", json=RESOLVE)
        assert r.json()["permalink"].startswith("https://memtype.example.org/mt/?v=1&")
        t = await c.post("/api/v1/resolve?format=text", json=RESOLVE)
        assert "https://memtype.example.org/mt/?v=1" in t.text and "evil" not in t.text


@pytest.mark.parametrize("bad", ["evil.example", "ftp://x", "https://a b", "https://x/?q=1"])
def test_public_url_must_be_a_base_url(bad):
    with pytest.raises(ValueError):
        Settings(public_url=bad)


def test_serve_hides_server_header_and_gates_forwarded(monkeypatch):
    calls = []
    monkeypatch.setattr(serve.uvicorn, "run", lambda *a, **kw: calls.append(kw))
    for name in ("MEMTYPE_FORWARDED_ALLOW_IPS",):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        serve.main()
        assert calls[-1]["server_header"] is False and calls[-1]["proxy_headers"] is False
        monkeypatch.setenv("MEMTYPE_FORWARDED_ALLOW_IPS", "10.0.0.5")
        get_settings.cache_clear()
        serve.main()
        assert calls[-1]["proxy_headers"] is True and calls[-1]["forwarded_allow_ips"] == "10.0.0.5"
    finally:
        get_settings.cache_clear()


def test_gzip_body_really_is_gzip(api_app):
    import asyncio

    async def go():
        transport = httpx.ASGITransport(app=api_app)
        async with (httpx.AsyncClient(transport=transport, base_url="http://testserver") as c,
                    c.stream("GET", "/openapi.json", headers={"accept-encoding": "gzip"}) as r):
            raw = b"".join([chunk async for chunk in r.aiter_raw()])
        return raw
    raw = asyncio.run(go())
    assert gzip.decompress(raw).startswith(b"{")


async def test_hashed_assets_from_memory_gzip_etag(client):
    """Hashed assets come from memory (app/assets.py): the same bytes and type as /static,
    gzip once when accepted, and a 304 for the ETag the client holds."""
    page = await client.get("/")
    for u in re.findall(r'(?:href|src)="(/assets/[0-9a-f]{16}/app\.(?:css|js))"', page.text):
        plain = await client.get("/static/" + u.rsplit("/", 1)[1], headers={"accept-encoding": "identity"})
        raw = await client.get(u, headers={"accept-encoding": "identity"})
        assert raw.content == plain.content and "content-encoding" not in raw.headers
        assert raw.headers["content-type"] == plain.headers["content-type"]
        gz = await client.get(u, headers={"accept-encoding": "gzip, br"})
        assert gz.headers["content-encoding"] == "gzip" and gz.content == plain.content  # httpx decoded it
        assert int(gz.headers["content-length"]) < len(plain.content)
        assert "accept-encoding" in gz.headers["vary"].lower()
        etag = raw.headers["etag"]
        assert etag == f'"{u.split("/")[2]}"'
        again = await client.get(u, headers={"if-none-match": f'W/{etag}, "other"'})
        assert again.status_code == 304 and again.content == b""
        assert (await client.get(u, headers={"if-none-match": '"0000000000000000"'})).status_code == 200
        assert (await client.post(u)).status_code == 405


def test_asset_change_on_disk_gets_a_new_url(tmp_path):
    """A file edited while the server runs (development) is re-read: new hash, old URL 404."""
    import os

    from app.assets import AssetHasher
    f = tmp_path / "x.css"
    f.write_text("a{}")
    h = AssetHasher(tmp_path)
    first = h.digest("x.css")
    assert h.asset("x.css").body == b"a{}"
    f.write_text("b{color:red}")
    os.utime(f, ns=(1, 1))
    assert h.digest("x.css") not in (None, first)
    assert h.asset("../x.css") is None and h.asset("missing.css") is None


async def test_rendered_page_cache_follows_query_and_assets(tmp_path):
    """GET / is served from the rendered-page cache (app/pages.py) on a repeat, and a changed
    asset on disk gives a page naming its new hashed URL (the cache key holds the digests)."""
    import os
    import shutil

    from app.main import create_app
    from app.settings import Settings

    root = tmp_path / "root"
    shutil.copytree(Settings().templates_dir, root / "templates")
    shutil.copytree(Settings().static_dir, root / "static")
    app = create_app(Settings(root=root))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        a, b = await c.get("/?v=1&kernel=v6.7"), await c.get("/?v=1&kernel=v6.7")
        assert a.text == b.text and b.headers["cache-control"] == "no-cache"
        other = await c.get("/?v=1&kernel=v4.2")
        assert other.text != a.text
        css = root / "static" / "app.css"
        css.write_text(css.read_text() + "\n/* changed */\n")
        os.utime(css, ns=(1, 1))
        c2 = await c.get("/?v=1&kernel=v6.7")
        old = re.search(r'href="(/assets/[0-9a-f]{16}/app\.css)"', a.text).group(1)
        new = re.search(r'href="(/assets/[0-9a-f]{16}/app\.css)"', c2.text).group(1)
        assert old != new and (await c.get(new)).status_code == 200 and (await c.get(old)).status_code == 404
