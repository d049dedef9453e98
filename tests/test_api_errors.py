"""Bad input -> 422 problem details naming the field and the rule; limits -> 413; never 500.

Why: issue 4 lists the error classes a user will hit (reserved PAT/MTRR types, unknown era,
addresses above MAXPHYADDR, MAXPHYADDR out of range, CR0.NW without CD, malformed hex,
more variable MTRRs than VCNT, a quirk the era or CPU cannot turn off); each must say
where and why, as RFC 9457 application/problem+json, so a script can point at the field.
"""

from __future__ import annotations

import pytest

from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"
BASE = {"kernel": "v6.7", "gpa": "0x100000"}


def mtrr(**kw):
    return {"vcpu": {"mtrr": kw}}


async def problem(client, path, body, status=422):
    r = await client.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    j = r.json()
    assert {"type", "title", "status", "detail", "instance", "errors"} <= j.keys()
    assert j["status"] == status and j["instance"] == path
    return j


# (case, body overrides, JSON location, words the detail must contain: field and rule)
CASES = [
    ("reserved PAT type", {"vcpu": {"pat": "0x0007040602070406"}}, ["body", "vcpu", "pat"],
     ["vcpu.pat", "PAT entry 3 has reserved type 2", "#GP"]),
    ("reserved PAT type, integer", {"vcpu": {"pat": 0x0303}}, ["body", "vcpu", "pat"],
     ["vcpu.pat", "PAT entry 0 has reserved type 3"]),
    ("reserved MTRR default type", mtrr(def_type="0xc07"), ["body", "vcpu", "mtrr", "def_type"],
     ["vcpu.mtrr.def_type", "reserved type 7", "#GP"]),
    ("reserved fixed MTRR type", mtrr(fixed=["0x0"] * 5 + ["0x0000000300000000"] + ["0x0"] * 5),
     ["body", "vcpu", "mtrr", "fixed", 5], ["vcpu.mtrr.fixed[5]", "reserved MTRR type 3"]),
    ("reserved variable MTRR type", mtrr(def_type="0xc06", variable=[{"base": "0x80000002", "mask": "0x3fff80000800"}]),
     ["body", "vcpu", "mtrr", "variable", 0, "base"], ["vcpu.mtrr.variable[0].base", "reserved type 2"]),
    ("unknown era", {"kernel": "v5.99"}, ["body", "kernel"], ["kernel", "unknown kernel era 'v5.99'", "v6.7"]),
    ("address at 2^MAXPHYADDR", {"gpa": "0x400000000000"}, ["body", "gpa"],
     ["gpa", "at or above 2^MAXPHYADDR", "MAXPHYADDR=46"]),
    ("address above 2^MAXPHYADDR, small MAXPHYADDR", {"gpa": 1 << 40, "vm": {"maxphyaddr": 39}}, ["body", "gpa"],
     ["gpa", "MAXPHYADDR=39"]),
    ("MAXPHYADDR above 52", {"vm": {"maxphyaddr": 53}}, ["body", "vm", "maxphyaddr"],
     ["vm.maxphyaddr", "outside 36..52", "CPUID.80000008H"]),
    ("MAXPHYADDR below 36", {"vm": {"maxphyaddr": 35}}, ["body", "vm", "maxphyaddr"], ["vm.maxphyaddr", "36..52"]),
    ("CR0.NW=1 with CD=0", {"vcpu": {"cr0_cd": False, "cr0_nw": True}}, ["body", "vcpu", "cr0_nw"],
     ["vcpu.cr0_nw", "CR0.NW=1 with CR0.CD=0", "#GP"]),
    ("malformed hex", {"gpa": "0xfee0000g"}, ["body", "gpa"], ["gpa", "malformed hex",
                                                               "0x followed by 1-16 hex digits"]),
    ("hex without 0x", {"vcpu": {"pat": "0007040600070406"}}, ["body", "vcpu", "pat"], ["vcpu.pat", "malformed hex"]),
    ("hex too long", {"gpa": "0x00000000000000001"}, ["body", "gpa"], ["gpa", "malformed hex"]),
    ("malformed hex in a variable MTRR", mtrr(variable=[{"base": "0x8000_0000", "mask": "0x800"}]),
     ["body", "vcpu", "mtrr", "variable", 0, "base"], ["vcpu.mtrr.variable[0].base", "malformed hex"]),
    ("more variable MTRRs than VCNT", mtrr(variable=[{"base": 0, "mask": 0}] * 9), ["body", "vcpu", "mtrr", "variable"],
     ["vcpu.mtrr.variable", "9 variable ranges", "VCNT"]),
    ("quirk the era cannot turn off", {"vm": {"quirk_ignore_guest_pat": False}}, ["body", "vm",
                                                                                  "quirk_ignore_guest_pat"],
     ["vm.quirk_ignore_guest_pat", "cannot be turned off in era v6.7", "EINVAL"]),
    ("quirk the CPU cannot turn off", {"kernel": "v6.16", "vm": {"quirk_ignore_guest_pat": False, "self_snoop": False}},
     ["body", "vm", "quirk_ignore_guest_pat"], ["vm.quirk_ignore_guest_pat", "without self-snoop", "SELFSNOOP"]),
    ("fixed MTRRs not 11", mtrr(fixed=["0x0"] * 10), ["body", "vcpu", "mtrr", "fixed"], ["vcpu.mtrr.fixed", "11"]),
    ("PHYSBASE above MAXPHYADDR", mtrr(variable=[{"base": 1 << 47, "mask": "0x800"}]),
     ["body", "vcpu", "mtrr", "variable", 0, "base"], ["vcpu.mtrr.variable[0].base", "MAXPHYADDR"]),
    ("PHYSMASK reserved bits", mtrr(variable=[{"base": 0, "mask": "0x801"}]),
     ["body", "vcpu", "mtrr", "variable", 0, "mask"], ["vcpu.mtrr.variable[0].mask", "reserved bits 10:0"]),
    ("0 is not a boolean", {"vm": {"noncoherent_dma": 0}}, ["body", "vm", "noncoherent_dma"],
     ["vm.noncoherent_dma", "boolean"]),
    ("a string is not a boolean", {"mmio": "true"}, ["body", "mmio"], ["mmio"]),
    ("true is not a number", {"gpa": True}, ["body", "gpa"], ["gpa", "not a boolean"]),
    ("negative address", {"gpa": -1}, ["body", "gpa"], ["gpa", "64 bits"]),
    ("address beyond 64 bits", {"gpa": 1 << 64}, ["body", "gpa"], ["gpa", "64 bits"]),
    ("unknown member", {"vm": {"noncoherent_dma": True, "ncdma": True}}, ["body", "vm", "ncdma"], ["vm.ncdma",
                                                                                                   "Extra"]),
    ("memory map overlap", {"memory_map": [{"start": 0, "end": 0x2000}, {"start": 0x1000, "end": 0x3000}]},
     ["body", "memory_map", 1], ["memory_map[1]", "overlaps"]),
    ("memory map given twice", {"memory_map": [], "vm": {"memory_map": []}}, ["body", "memory_map"],
     ["memory_map", "one place"]),
    ("memory map above MAXPHYADDR", {"vm": {"memory_map": [{"start": 0, "end": 1 << 47}]}},
     ["body", "vm", "memory_map", 0, "end"], ["vm.memory_map[0].end", "MAXPHYADDR"]),
    ("memory map kind", {"memory_map": [{"start": 0, "end": 0x1000, "kind": "rom"}]},
     ["body", "memory_map", 0, "kind"], ["memory_map[0].kind"]),
]


@pytest.mark.parametrize("case, override, loc, words", CASES, ids=[c[0] for c in CASES])
async def test_resolve_error_classes(client, case, override, loc, words):
    j = await problem(client, "/api/v1/resolve", {**BASE, **override})
    assert j["errors"][0]["loc"] == loc
    for w in words:
        assert w in j["detail"], (w, j["detail"])


ZAP_BASE = {"kernel": "v6.7", "vm": {"noncoherent_dma": True}}
ZAP_CASES = [
    ("CD=0 with NW=1", {"kind": "cr0_cd", "value": False, "cr0_nw": True}, ["body", "event", "cr0_nw"], ["CR0.NW=1"]),
    ("not an MTRR MSR", {"kind": "mtrr_write", "msr": "0x277", "value": "0x0"}, ["body", "event", "msr"],
     ["event.msr", "pat_write"]),
    ("reserved MTRR write", {"kind": "mtrr_write", "msr": "0x2ff", "value": "0xc02"}, ["body", "event", "value"],
     ["event.value", "reserved type 2"]),
    ("fixed MSR reserved type", {"kind": "mtrr_write", "msr": "0x250", "value": "0x0707070707070707"},
     ["body", "event", "value"], ["event.value", "reserved MTRR type 7"]),
    ("PHYSMASK above MAXPHYADDR", {"kind": "mtrr_write", "msr": "0x201", "value": "0xffff80000800"},
     ["body", "event", "value"], ["event.value", "MAXPHYADDR"]),
    ("reserved PAT write", {"kind": "pat_write", "value": "0x0007040600070402"}, ["body", "event", "value"],
     ["event.value", "PAT entry 0 has reserved type 2"]),
    ("malformed MSR", {"kind": "mtrr_write", "msr": "2ff", "value": "0x0"}, ["body", "event", "mtrr_write", "msr"],
     ["malformed hex"]),
    ("unknown event kind", {"kind": "cr4_pge", "value": True}, ["body", "event"], ["event", "cr0_cd"]),
    ("a 0 is not a boolean event value", {"kind": "noncoherent_dma", "value": 0},
     ["body", "event", "noncoherent_dma", "value"], ["boolean"]),
]


@pytest.mark.parametrize("case, event, loc, words", ZAP_CASES, ids=[c[0] for c in ZAP_CASES])
async def test_zap_error_classes(client, case, event, loc, words):
    j = await problem(client, "/api/v1/zap", {**ZAP_BASE, "event": event})
    assert j["errors"][0]["loc"] == loc
    for w in words:
        assert w in j["detail"], (w, j["detail"])


async def test_zap_refuses_quirk_and_era(client):
    j = await problem(client, "/api/v1/zap", {"kernel": "v6.11", "vm": {"quirk_ignore_guest_pat": False},
                                              "event": {"kind": "noncoherent_dma", "value": True}})
    assert j["errors"][0]["loc"] == ["body", "vm", "quirk_ignore_guest_pat"]
    j = await problem(client, "/api/v1/zap", {"kernel": "nope", "event": {"kind": "noncoherent_dma", "value": True}})
    assert j["errors"][0]["loc"] == ["body", "kernel"]


@pytest.mark.parametrize("body, loc, word", [
    ({"a": "v4.2", "b": "v7"}, ["body", "b"], "unknown kernel era 'v7'"),
    ({"a": "x", "b": "v6.7"}, ["body", "a"], "unknown kernel era 'x'"),
    ({"a": "v4.2", "b": "v6.7", "limit": -1}, ["body", "limit"], "greater than or equal to 0"),
    ({"a": "v4.2", "b": "v6.7", "limit": True}, ["body", "limit"], "integer"),
    ({"a": "v4.2", "b": "v6.7", "limit": 3.0}, ["body", "limit"], "integer"),
])
async def test_diff_errors(client, body, loc, word):
    j = await problem(client, "/api/v1/diff", body)
    assert j["errors"][0]["loc"] == loc and word in j["detail"]


@pytest.mark.parametrize("body, loc, word", [
    ({}, ["body", "spte"], "exactly one of spte and line"),
    ({"spte": "0x7", "line": "gfn 1 spte 7 level 1"}, ["body", "spte"], "exactly one"),
    ({"line": "hello"}, ["body", "line"], "gfn"),
    ({"spte": "xyz"}, ["body", "spte"], "malformed hex"),
    ({"line": "gfn 1 spte 7 (rwx) level 4 at 0"}, ["body", "line"], "not a leaf level"),
    ({"spte": 7, "gpa": 1 << 46}, ["body", "gpa"], "2^MAXPHYADDR"),
    ({"line": "gfn fffffffff spte 7 level 1"}, ["body", "line"], "2^MAXPHYADDR"),
    ({"spte": 7, "kernels": ["v9"]}, ["body", "kernels", 0], "unknown kernel era"),
    ({"spte": 7, "vcpu": {"pat": "0x2"}}, ["body", "vcpu", "pat"], "reserved type 2"),
    # the level (app.x86.ept.EptLeaf.decode): PS set cannot say 2M or 1G; PS clear above level 1 is a table
    ({"spte": "0xb7"}, ["body", "level"], "bit 7 (PS) is set"),
    ({"spte": "0x77", "level": 2}, ["body", "level"], "points to a table"),
    ({"spte": "0x77", "level": 3}, ["body", "level"], "points to a table"),
    ({"line": "gfn 1 spte 77 (rwx) level 2 at 0"}, ["body", "line"], "points to a table"),
    ({"line": "gfn 1 spte b7 (rwx) level 0 at 0"}, ["body", "line"], "not a leaf level"),
    ({"spte": "0xb7", "level": 4}, ["body", "level"], "less than or equal to 3"),
    ({"spte": "0xb7", "level": 2.0}, ["body", "level"], "integer"),
    ({"spte": 7, "kernels": []}, ["body", "kernels"], "at least 1"),
])
async def test_decode_errors(client, body, loc, word):
    j = await problem(client, "/api/v1/decode", body)
    assert j["errors"][0]["loc"] == loc and word in j["detail"], j


@pytest.mark.parametrize("body, loc, word", [
    ({}, ["body"], "exactly one of generator, events and trace"),
    ({"generator": "ovmf", "trace": ""}, ["body"], "exactly one"),
    ({"generator": "coreboot"}, ["body", "generator"], "ovmf"),
    ({"generator": "ovmf", "vcpus": 0}, ["body", "vcpus"], "greater than or equal to 1"),
    ({"generator": "ovmf", "vm": {"memory_map": []}}, ["body", "vm", "memory_map"], "a VM needs at least one memslot"),
    ({"generator": "ovmf", "kernels": []}, ["body", "kernels"], "at least 1"),
    ({"generator": "ovmf", "vcpus": 2.0}, ["body", "vcpus"], "integer"),
    ({"trace": "vcpu 0 frobnicate\n"}, ["body", "trace"], "line 1"),
    ({"events": [{"vcpu": 0, "event": {"kind": "mtrr_write", "msr": "0x2ff", "value": "0xc03"}}]},
     ["body", "events", 0, "value"], "reserved type 3"),
    ({"events": [{"vcpu": 5, "event": {"kind": "cr0_cd", "value": True}}], "vcpus": 2},
     ["body", "events", 0, "vcpu"], "0..vcpus-1"),
    ({"generator": "ovmf", "initial": {"cr0_nw": True}}, ["body", "initial", "cr0_nw"], "CR0.NW=1"),
])
async def test_replay_errors(client, body, loc, word):
    j = await problem(client, "/api/v1/replay", body)
    assert word in j["detail"], j
    assert j["errors"][0]["loc"] == loc, j


async def test_replay_event_limit():
    import httpx

    app = create_app(Settings(max_trace_events=3))
    events = [{"vcpu": 0, "event": {"kind": "cr0_cd", "value": bool(i % 2)}} for i in range(4)]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post("/api/v1/replay", json={"events": events})
        assert r.status_code == 422 and "MEMTYPE_MAX_TRACE_EVENTS" in r.json()["detail"]
        text = "".join(f"vcpu 0 cr0 cd={i % 2}\n" for i in range(1, 6))
        r = await c.post("/api/v1/replay", json={"trace": text})
        assert r.status_code == 422 and "more than 3 events" in r.json()["detail"]


async def test_body_limit_413():
    import httpx

    app = create_app(Settings(max_body_bytes=2000, max_trace_bytes=5000))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        big = {**BASE, "vm": {"memory_map": [{"start": 0, "end": 4096, "label": "x" * 100}] * 30}}
        r = await c.post("/api/v1/resolve", json=big)
        assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
        assert r.json()["status"] == 413 and "2000 bytes" in r.json()["detail"]

        async def chunks():  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b" " * 500

        r = await c.post("/api/v1/resolve", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
        # the replay endpoint has the larger trace limit
        r = await c.post("/api/v1/replay", json={"trace": "# comment\n" * 300})
        assert r.status_code != 413
        r = await c.post("/api/v1/replay", json={"trace": "# comment\n" * 600})
        assert r.status_code == 413
        r = await c.post("/api/v1/resolve", json=BASE)
        assert r.status_code == 200


async def test_not_json_and_bad_encoding(client):
    r = await client.post("/api/v1/resolve", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    r = await client.post("/api/v1/resolve", content=b'{"kernel": "v6.7", "gpa": 1}\xff',
                          headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and r.headers["content-type"] == PROBLEM
    r = await client.post("/api/v1/resolve", content=b"[]", headers={"content-type": "application/json"})
    assert r.status_code == 422


async def test_404_and_405_are_problems(client):
    r = await client.get("/api/v1/kernels/v1.0")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM and "v6.7" in r.json()["detail"]
    r = await client.get("/api/v1/presets/nope")
    assert r.status_code == 404
    r = await client.get("/api/v1/resolve")
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM and r.headers["allow"] == "POST"


NASTY = [
    {"kernel": "v6.7", "gpa": 0, "vcpu": {"mtrr": {"def_type": "0xc06", "variable": [{"base": 0, "mask": "0x800"}]}}},
    {"kernel": "v4.2", "gpa": 0, "vm": {"noncoherent_dma": True, "maxphyaddr": 52},
     "vcpu": {"mtrr": {"def_type": "0xc06", "variable": [{"base": "0xfffffffff000", "mask": "0xfffffffff800"}]}}},
    {"kernel": "v6.7", "gpa": 0, "vm": {"noncoherent_dma": True},
     "vcpu": {"mtrr": {"def_type": "0xc06", "variable": [{"base": 0, "mask": "0x2aaaaaaaa800"}]}}},
    {"kernel": "series-v3", "gpa": "0xfffff", "vm": {"noncoherent_dma": True, "guest_has_mtrr": False},
     "vcpu": {"cr0_pg": False, "mtrr": {"def_type": "0x406", "fixed": ["0x0101010101010101"] * 11}}},
    {"kernel": "v6.7", "gpa": 0, "vm": {"noncoherent_dma": True, "memory_map": []}},
    {"kernel": "v6.7", "gpa": 0, "vm": {"noncoherent_dma": True}, "vcpu": {"mtrr": {"def_type": "0xc06", "variable": [
        {"base": "0xe0000001", "mask": "0x3ffff0000800"}, {"base": "0xe0000006", "mask": "0x3fffe0000800"},
        {"base": "0xe0000000", "mask": "0x3ffff8000800"}]}}},
]


@pytest.mark.parametrize("body", NASTY)
async def test_edge_scenarios_never_500(client, body):
    for path in ("/api/v1/resolve", "/api/v1/map"):
        b = body if path.endswith("resolve") else {k: v for k, v in body.items() if k != "gpa"}
        r = await client.post(path, json=b)
        assert r.status_code in (200, 422), r.text
        if r.status_code == 422:
            assert r.headers["content-type"] == PROBLEM
    for ev in ({"kind": "cr0_cd", "value": True}, {"kind": "mtrr_write", "msr": "0x201", "value": "0x800"},
               {"kind": "mtrr_write", "msr": "0x2ff", "value": "0x0"}, {"kind": "noncoherent_dma", "value": False}):
        for kernel in ("v4.2", "series-v3", "v6.7", "v6.16"):
            b = {k: v for k, v in body.items() if k != "gpa"} | {"kernel": kernel, "event": ev}
            r = await client.post("/api/v1/zap", json=b)
            assert r.status_code in (200, 422), r.text


async def test_unexpected_exception_is_a_logged_problem_500(caplog):
    """The catch-all is a last resort (the fuzz test asserts no input reaches it)."""
    import httpx

    app = create_app()

    @app.get("/boom")
    async def boom():
        raise RuntimeError("kaboom")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://t") as c:
        with caplog.at_level("ERROR", logger="memtype.api"):
            r = await c.get("/boom")
    assert r.status_code == 500 and r.headers["content-type"] == PROBLEM
    assert "kaboom" not in r.text  # no internals leak
    assert any("unhandled error" in rec.message for rec in caplog.records)


async def test_access_log_is_one_json_line(caplog):
    import json
    import logging

    import httpx

    app = create_app()
    log = logging.getLogger("memtype.access")
    log.addHandler(caplog.handler)
    try:
        log.setLevel(logging.INFO)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            await c.get("/healthz")
    finally:
        log.removeHandler(caplog.handler)
        log.setLevel(logging.WARNING)
    lines = [json.loads(r.message) for r in caplog.records if r.name == "memtype.access"]
    assert lines and lines[-1]["path"] == "/healthz" and lines[-1]["status"] == 200 and lines[-1]["method"] == "GET"


# Strict models: an integral float is not an integer (JSON Schema would say it is).
FLOATS = [
    ("/api/v1/resolve", {**BASE, "gpa": 4096.0}, ["body", "gpa"]),
    ("/api/v1/resolve", {**BASE, "vm": {"maxphyaddr": 46.0}}, ["body", "vm", "maxphyaddr"]),
    ("/api/v1/resolve", {**BASE, "vcpu": {"pat": float(0x0007040600070406)}}, ["body", "vcpu", "pat"]),
    ("/api/v1/resolve", {**BASE, **mtrr(def_type=3078.0)}, ["body", "vcpu", "mtrr", "def_type"]),
    ("/api/v1/resolve", {**BASE, **mtrr(def_type="0xc06", variable=[{"base": 0.0, "mask": "0x3fff80000800"}])},
     ["body", "vcpu", "mtrr", "variable", 0, "base"]),
    ("/api/v1/resolve", {**BASE, "vm": {"memory_map": [{"start": 0, "end": 4096.0}]}}, ["body", "vm", "memory_map", 0,
                                                                                        "end"]),
    ("/api/v1/zap", {"kernel": "v6.7", "event": {"kind": "mtrr_write", "msr": 767.0, "value": "0x806"}},
     ["body", "event", "mtrr_write", "msr"]),
    ("/api/v1/map", {"kernel": "v6.7", "pat_index": 1.0}, ["body", "pat_index"]),
    ("/api/v1/decode", {"spte": 7.0}, ["body", "spte"]),
    ("/api/v1/replay", {"events": [{"vcpu": 0.0, "event": {"kind": "cr0_cd", "value": True}}]}, ["body", "events", 0,
                                                                                                 "vcpu"]),
    ("/api/v1/replay", {"generator": "ovmf", "maxphyaddr": 46.0}, ["body", "maxphyaddr"]),
]


@pytest.mark.parametrize("path, body, loc", FLOATS)
async def test_integral_floats_are_refused(client, path, body, loc):
    j = await problem(client, path, body)
    assert any(e["loc"][:len(loc)] == loc for e in j["errors"]), j["errors"]
    assert j["errors"][0]["type"] in ("hex_type", "int_type"), j["errors"]


async def test_integers_still_accepted(client):
    r = await client.post("/api/v1/resolve", json={**BASE, "gpa": 4096, "vm": {"maxphyaddr": 46},
                                                   "vcpu": {"pat": 0x0007040600070406}})
    assert r.status_code == 200, r.text
    r = await client.post("/api/v1/map", json={"kernel": "v6.7", "pat_index": 1})
    assert r.status_code == 200, r.text


async def test_omitted_kernels_mean_all_eras(client):
    from app.kvm.eras import ERAS

    j = (await client.post("/api/v1/decode", json={"spte": 7})).json()
    assert [e["kernel"] for e in j["eras"]] == list(ERAS)
    j = (await client.post("/api/v1/decode", json={"spte": 7, "kernels": ["v6.7"]})).json()
    assert [e["kernel"] for e in j["eras"]] == ["v6.7"]


def test_core_errors_places_core_locations_in_the_request():
    """The core's tuple location goes under "body" as is; only the memory map (top level or
    in vm) and a text field's lines are re-rooted (no alias table, no parsing of names)."""
    from app.api.convert import core_errors
    from app.api.errors import RuleViolation
    from app.x86.memtype import MemTypeError

    def loc(err, **kw):
        with pytest.raises(RuleViolation) as e, core_errors(**kw):
            raise err
        return e.value.loc

    deep = ("vcpu", "mtrr", "variable", 0, "base")
    assert loc(MemTypeError(deep, "m")) == ["body", *deep]
    assert loc(MemTypeError(("memory_map", 1), "m")) == ["body", "vm", "memory_map", 1]
    assert loc(MemTypeError(("memory_map", 1), "m"), map_loc=["memory_map"]) == ["body", "memory_map", 1]
    assert loc(MemTypeError("line 7", "m"), at=["trace"], members={"vcpus"}) == ["body", "trace"]
    assert loc(MemTypeError("vcpus", "m"), at=["trace"], members={"vcpus"}) == ["body", "vcpus"]
    assert loc(MemTypeError("gpa", "m"), at=["line"]) == ["body", "line"]
