"""POST /page/batch (app/page_batch.py): each part is its endpoint's own answer, byte for
byte (status and problem details included), in order; the batch itself is refused before
any part runs when it names an endpoint outside BATCH_PATHS or has too many parts."""

from __future__ import annotations

import json

import httpx
import pytest

from app.main import create_app
from app.page_batch import BATCH_PATHS, MAX_BATCH_PARTS
from app.settings import Settings

pytestmark = pytest.mark.anyio

OVMF = {"def_type": "0xc06", "fixed": ["0x0606060606060606"] * 2 + ["0x0"] * 9,
        "variable": [{"base": "0x80000000", "mask": "0x3fff80000800"}]}
SCENARIO = {"kernel": "v6.7", "vm": {"noncoherent_dma": True},
            "vcpu": {"cr0_cd": True, "pat": "0x0007040600070406", "mtrr": OVMF}}
PARTS = [
    ("permalink", {**SCENARIO, "gpa": "0xfd000000", "vs": "v4.2", "view": "resolve", "pati": 0}),
    ("registers", {"maxphyaddr": "46", "pat": "0x0007040600070406", "mtrr": OVMF}),
    ("resolve", {**SCENARIO, "gpa": "0xfd000000"}),
    ("map", {**SCENARIO, "pat_index": 0}),
    ("resolve", {**SCENARIO, "kernel": "v4.2", "gpa": "0xfd000000"}),
    ("zap", {**SCENARIO, "event": {"kind": "cr0_cd", "value": False}}),
    ("diff", {"a": "v6.7", "b": "v4.2", "limit": 0}),
    # refused by its endpoint: the part carries that endpoint's 422, the others are unaffected
    ("resolve", {**SCENARIO, "vcpu": {**SCENARIO["vcpu"], "cr0_cd": False, "cr0_nw": True}, "gpa": "0x0"}),
]


async def test_every_part_is_its_endpoints_answer(client):
    r = await client.post("/page/batch", json={"parts": [{"name": n, "body": b} for n, b in PARTS]})
    assert r.status_code == 200, r.text
    got = r.json()["parts"]
    assert len(got) == len(PARTS)
    for (name, body), part in zip(PARTS, got, strict=True):
        solo = await client.post(BATCH_PATHS[name], json=body)
        assert part["status"] == solo.status_code, name
        assert part["body"] == solo.json(), name
    assert [p["status"] for p in got] == [200] * 7 + [422]
    assert got[7]["body"]["errors"][0]["loc"][-1] == "cr0_nw"
    assert got[0]["body"]["query"].startswith("v=1&kernel=v6.7&vs=v4.2&ncdma=1&cd=1")
    assert got[2]["body"]["ept"]["mask"] == "0x30"  # the seed case: WB without IPAT


async def test_unknown_endpoint_is_refused_with_the_field(client):
    r = await client.post("/page/batch", json={"parts": [{"name": "resolve", "body": PARTS[2][1]},
                                                         {"name": "replay", "body": {}}]})
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["loc"] == ["body", "parts", 1, "name"]
    assert all(n in err["msg"] for n in BATCH_PATHS)


@pytest.mark.parametrize("n, status", [(0, 422), (1, 200), (MAX_BATCH_PARTS, 200), (MAX_BATCH_PARTS + 1, 422)])
async def test_part_count_limit(client, n, status):
    r = await client.post("/page/batch", json={"parts": [{"name": "diff", "body": {"a": "v4.2", "b": "v6.7",
                                                                                   "limit": 0}}] * n})
    assert r.status_code == status, r.text
    if status == 422:
        err = r.json()["errors"][0]
        assert err["loc"] == ["body", "parts"]
        assert str(MAX_BATCH_PARTS if n else 1) in err["msg"]
    else:
        assert [p["status"] for p in r.json()["parts"]] == [200] * n


async def test_malformed_body_part_is_refused(client):
    r = await client.post("/page/batch", json={"parts": [{"name": "resolve", "body": "not an object"}]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "parts", 0, "body"]


async def test_parts_are_served_under_the_root_path():
    """Behind a path prefix (MEMTYPE_ROOT_PATH) the parts go to the prefixed endpoints and the
    permalink is built from the same settings as a direct request's."""
    app = create_app(Settings(root_path="/mx", public_url="https://example.org/mx"))
    transport = httpx.ASGITransport(app=app, root_path="/mx")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.post("/mx/page/batch", json={"parts": [{"name": "permalink", "body": PARTS[0][1]},
                                                           {"name": "registers", "body": PARTS[1][1]}]})
        assert r.status_code == 200, r.text
        link, regs = r.json()["parts"]
        assert link["status"] == 200 and link["body"]["url"].startswith("https://example.org/mx/?v=1&")
        assert regs["status"] == 200 and regs["body"]["def_type"]["enabled"] is True
        solo = await c.post("/mx/api/v1/permalink", json=PARTS[0][1])
        assert json.loads(solo.content) == link["body"]


async def test_def_type_table_is_what_the_endpoint_writes(client):
    """The page's MTRRdefType table (REGISTERS["def_type_values"], used instead of a round
    trip when E, FE or the type is clicked): all 2 x 2 x 5 entries, each the value POST
    /page/mtrr-deftype answers."""
    from app.pages import REGISTERS
    from app.x86.memtype import MTRR_TYPES

    table = REGISTERS["def_type_values"]
    assert len(table) == 20
    for e in (False, True):
        for fe in (False, True):
            for t in sorted(MTRR_TYPES):
                r = await client.post("/page/mtrr-deftype", json={"enabled": e, "fixed_enabled": fe, "type": t})
                assert table[f"{int(e)}{int(fe)}{t}"] == r.json()["value"]
    assert table["116"] == "0xc06" and table["006"] == "0x6"


async def test_a_prefetch_batch_answers_the_same_parts_and_says_its_time(client):
    """A batch marked as the page's prefetch (X-Memtype-Prefetch: 1) runs its parts one at a
    time behind any other batch, but answers byte for byte what the unmarked batch answers;
    both say the time they took in a Server-Timing header (bench/run.py's page phases)."""
    body = {"parts": [{"name": n, "body": b} for n, b in PARTS]}
    plain = await client.post("/page/batch", json=body)
    ahead = await client.post("/page/batch", json=body, headers={"X-Memtype-Prefetch": "1"})
    assert plain.status_code == ahead.status_code == 200
    assert ahead.content == plain.content
    for r in (plain, ahead):
        name, _, dur = r.headers["server-timing"].partition(";dur=")
        assert name == "batch" and float(dur) >= 0
