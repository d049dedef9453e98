"""`Accept: text/plain` and `?format=text` on resolve, zap and diff return the mail-ready
rendering (72 columns, ASCII, legend, era commits, permalink); JSON stays the default.
"""

from __future__ import annotations

import pytest

from app.kvm.eras import ERAS
from app.presets import PRESETS

pytestmark = pytest.mark.anyio

SEED = PRESETS["seed-v4.2"]
ZAP = {**{k: v for k, v in SEED.request().items() if k not in ("gpa", "mmio")}, "event": SEED.event()}
REQUESTS = [
    ("/api/v1/resolve", SEED.request(), "v4.2"),
    ("/api/v1/zap", ZAP, "v4.2"),
    ("/api/v1/diff", {"a": "v4.2", "b": "v6.7"}, "v6.7"),
]


def check(text: str, era: str) -> None:
    for line in text.splitlines():
        assert len(line) <= 72 and line.isascii() and "\t" not in line, line
    for c in ERAS[era].commits:
        assert c.sha in text
    assert "Legend:" in text
    assert "Permalink" in text and "http://testserver/?v=1" in text


@pytest.mark.parametrize("path, body, era", REQUESTS)
@pytest.mark.parametrize("how", ["accept", "query", "accept-q"])
async def test_text_rendering(client, path, body, era, how):
    if how == "accept":
        r = await client.post(path, json=body, headers={"accept": "text/plain"})
    elif how == "accept-q":
        r = await client.post(path, json=body, headers={"accept": "application/json;q=0.5, text/plain"})
    else:
        r = await client.post(path + "?format=text", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    check(r.text, era)


@pytest.mark.parametrize("path, body, era", REQUESTS)
@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/html,application/xhtml+xml,*/*;q=0.8",
                                    "text/plain;q=0.2, application/json"])
async def test_json_stays_default(client, path, body, era, accept):
    headers = {"accept": accept} if accept else {}
    r = await client.post(path, json=body, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"


async def test_format_json_beats_accept(client):
    r = await client.post("/api/v1/resolve?format=json", json=SEED.request(), headers={"accept": "text/plain"})
    assert r.headers["content-type"] == "application/json"


async def test_bad_format_is_422(client):
    r = await client.post("/api/v1/resolve?format=xml", json=SEED.request())
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "format"]


async def test_errors_stay_problem_json_with_text_accept(client):
    r = await client.post("/api/v1/resolve?format=text", json={**SEED.request(), "kernel": "v1"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


async def test_resolve_text_content(client):
    r = await client.post("/api/v1/resolve?format=text", json=SEED.request())
    t = r.text
    assert "EPT entry    WB!  (memtype WB, IPAT 1, mask 0x70)" in t
    assert "[x] cd" in t and "[-] mtrr" in t
    assert "kernel=v4.2&ncdma=1&cd=1&mtrr=ovmf&gpa=0x100000" in t.replace("\n  ", "")
