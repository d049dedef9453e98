"""Every endpoint through httpx against the ASGI app, and the seed case's numbers.

Why: the API is how scripts, the page and other teams use the resolver; the field names of
resolve and zap are a contract (issue 4), and the seed case (nc-DMA, quirk on, CR0.CD=1)
is the one the 2023 review argued about: v4.2 mask 0x70, v6.7 0x30, quirk off 0x40 in
both, host MMIO 0x00.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.api import schemas as s
from app.kvm.eras import ERAS
from app.permalink import decode
from app.presets import PRESETS

pytestmark = pytest.mark.anyio

SEED = {
    "vm": {"noncoherent_dma": True, "quirk_cd_nw_cleared": True},
    "vcpu": {"cr0_cd": True, "pat": "0x0007040600070406"},
    "gpa": "0x100000",
}
ISSUE_EXAMPLE = {
    "kernel": "v6.7",
    "vm": {"noncoherent_dma": True, "quirk_cd_nw_cleared": True, "quirk_ignore_guest_pat": True,
           "self_snoop": True, "guest_has_mtrr": True, "maxphyaddr": 46},
    "vcpu": {"cr0_cd": False, "cr0_nw": False, "pat": "0x0007040600070406",
             "mtrr": {"def_type": "0xc06", "fixed": ["0x0606060606060606"] * 2 + ["0x0"] * 9,
                      "variable": [{"base": "0x80000000", "mask": "0x3fff80000800"}]}},
    "gpa": "0xfee00000", "mmio": False,
}


async def resolve(client, body):
    r = await client.post("/api/v1/resolve", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    s.ResolveResponse.model_validate(r.json())
    return r.json()


async def test_healthz(client):
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


@pytest.mark.parametrize("kernel, mask, memtype, ipat", [("v4.2", "0x70", "WB", True), ("v6.7", "0x30", "WB", False)])
async def test_seed_case(client, kernel, mask, memtype, ipat):
    j = await resolve(client, {"kernel": kernel, **SEED})
    assert j["ept"]["mask"] == mask
    assert (j["ept"]["memtype"], j["ept"]["ipat"]) == (memtype, ipat)
    assert j["ept"]["notation"] == memtype + ("!" if ipat else "")
    cd_step = next(st for st in j["path"] if st["id"] == "cd")
    assert cd_step["held"] is True
    assert [st["held"] for st in j["path"]][-1] is None  # the MTRR rule is never reached


@pytest.mark.parametrize("kernel", ["v4.2", "v6.7"])
async def test_seed_case_quirk_off(client, kernel):
    body = {"kernel": kernel, **SEED, "vm": {"noncoherent_dma": True, "quirk_cd_nw_cleared": False}}
    j = await resolve(client, body)
    assert (j["ept"]["memtype"], j["ept"]["ipat"], j["ept"]["mask"]) == ("UC", True, "0x40")


@pytest.mark.parametrize("kernel", list(ERAS))
async def test_mmio_is_uc_without_ipat(client, kernel):
    j = await resolve(client, {"kernel": kernel, **SEED, "gpa": "0x800000000", "mmio": True})
    assert j["ept"]["mask"] == "0x00" and j["is_mmio"] is True


async def test_mmio_follows_memory_map(client):
    j = await resolve(client, {"kernel": "v6.7", "gpa": "0x800000000"})  # the GPU BAR memslot
    assert j["is_mmio"] is True and j["ept"]["mask"] == "0x00"
    j = await resolve(client, {"kernel": "v6.7", "gpa": 0x800000000, "memory_map": [
        {"start": "0x0", "end": "0x1000000000", "kind": "ram"}]})
    assert j["is_mmio"] is False


async def test_issue_example_shape(client):
    j = await resolve(client, ISSUE_EXAMPLE)
    assert j["ept"]["memtype"] in {"UC", "WC", "WT", "WP", "WB"} and j["ept"]["mask"].startswith("0x")
    assert j["guest_mtrr_type"] == "UC"  # 0xfee00000 is in OVMF's UC 32-bit hole
    assert j["kvm_mtrr_type"] == "UC"
    assert len(j["pat"]) == 8
    for i, row in enumerate(j["pat"]):
        assert row["index"] == i
        assert {"pte_bits", "pat_type", "effective", "guest_expected", "relation"} <= row.keys()
        assert row["relation"] in {"weaker", "stronger", "same", "incomparable"}
    assert all({"id", "function", "condition", "held", "result", "commit"} <= st.keys() for st in j["path"])
    assert j["page_size"] in {"4K", "2M", "1G"} and j["page_sizes"]
    assert j["ept"]["leaf"]["raw"].startswith("0x") and j["ept"]["leaf"]["fields"]
    assert j["era"]["id"] == "v6.7" and j["era"]["commits"]
    assert j["permalink"].startswith("http://testserver/?v=1&")


async def test_integer_and_hex_inputs_agree(client):
    as_int = {**ISSUE_EXAMPLE, "gpa": 0xFEE00000, "vcpu": {**ISSUE_EXAMPLE["vcpu"], "pat": 0x0007040600070406}}
    a = await resolve(client, ISSUE_EXAMPLE)
    b = await resolve(client, as_int)
    assert a == b


async def test_uc_minus_and_type_names(client):
    body = {"kernel": "v6.11", "vm": {"noncoherent_dma": True}, "vcpu": {"pat": "0x0407050600070106"},
            "gpa": "0x100000"}
    j = await resolve(client, body)
    assert [r["pat_type"] for r in j["pat"]] == ["WB", "WC", "UC-", "UC", "WB", "WP", "UC-", "WT"]
    assert j["kvm_mtrr_type"] is None and j["kvm_mtrr"] is None  # 6.11 never reads guest MTRRs


async def test_permalink_round_trips(client):
    j = await resolve(client, ISSUE_EXAMPLE)
    st = decode(j["permalink"].split("?", 1)[1])
    assert st.kernel == "v6.7" and st.access.gpa == 0xFEE00000 and st.vm.noncoherent_dma
    assert st.vcpu.mtrr.def_type == 0xC06 and st.access.mmio is False


async def test_kernels(client):
    r = await client.get("/api/v1/kernels")
    assert r.status_code == 200
    eras = r.json()
    assert [e["id"] for e in eras] == list(ERAS)
    for e in eras:
        s.EraOut.model_validate(e)
        assert e["title"] and e["kernels"] and e["summary"] and e["commits"]
        assert all(c["sha"] and c["subject"] for c in e["commits"])
    r = await client.get("/api/v1/kernels/v6.7")
    assert r.status_code == 200 and r.json()["id"] == "v6.7"


async def test_presets_are_valid_resolve_bodies(client):
    r = await client.get("/api/v1/presets")
    assert r.status_code == 200
    presets = {p["name"]: p for p in r.json()}
    assert set(presets) == set(PRESETS)
    for name in ("seed-v4.2", "seed-v6.7", "ovmf", "seabios", "linux-pat", "power-on", "gpu-passthrough",
                 "bochs-6.11-rc1"):
        assert name in presets
    for p in presets.values():
        assert p["description"] and p["permalink"].startswith("http://testserver/?v=1")
        await resolve(client, p["request"])
        if p["compare"]:
            assert p["compare"] in ERAS
        if p["event"]:
            body = {k: v for k, v in p["request"].items() if k not in ("gpa", "mmio", "host_page")}
            z = await client.post("/api/v1/zap", json={**body, "event": p["event"]})
            assert z.status_code == 200, z.text
    assert (await resolve(client, presets["seed-v4.2"]["request"]))["ept"]["mask"] == "0x70"
    assert (await resolve(client, presets["seed-v6.7"]["request"]))["ept"]["mask"] == "0x30"
    r = await client.get("/api/v1/presets/ovmf")
    assert r.status_code == 200 and r.json()["name"] == "ovmf"


async def test_ovmf_preset_says_what_guest_pat_does(client):
    """The VRAM gets UC in EPT with IPAT clear: guest PAT still combines (MTRR x PAT table),
    so PAT WC gives WC even over UC, and every other PAT type gives UC."""
    p = PRESETS["ovmf"]
    assert "whatever guest PAT says" not in p.description
    assert "IPAT clear" in p.description and "UC x WC = WC" in p.description
    j = await resolve(client, p.request())
    assert j["gpa"] == "0xfd000000" and j["is_mmio"] is False
    assert (j["ept"]["memtype"], j["ept"]["ipat"], j["ept"]["mask"]) == ("UC", False, "0x00")
    assert j["pat"][1]["pat_type"] == "WC" and j["pat"][1]["effective"] == "WC"  # Linux PA1
    others = {row["pat_type"]: row["effective"] for row in j["pat"] if row["pat_type"] != "WC"}
    assert others and set(others.values()) == {"UC"}, others


async def test_bochs_regression_preset(client):
    """6.11-rc1 honours guest PAT on a self-snoop CPU: bochs VRAM mapped UC- becomes UC."""
    body = PRESETS["bochs-6.11-rc1"].request()
    rc1 = await resolve(client, body)
    assert rc1["ept"]["notation"] == "WB"
    assert rc1["pat"][2]["pat_type"] == "UC-" and rc1["pat"][2]["effective"] == "UC"
    final = await resolve(client, {**body, "kernel": "v6.11"})
    assert final["ept"]["notation"] == "WB!" and final["pat"][2]["effective"] == "WB"


async def test_zap_contract(client):
    body = {"kernel": "v4.2", "vm": {"noncoherent_dma": True}, "vcpu": {"cr0_cd": True},
            "event": {"kind": "cr0_cd", "value": False}}
    r = await client.post("/api/v1/zap", json=body)
    assert r.status_code == 200, r.text
    s.ZapResponse.model_validate(r.json())
    j = r.json()
    for key in ("zapped", "needed", "stale", "excess"):
        assert isinstance(j[key], list)
        for rng in j[key]:
            assert rng["start"].startswith("0x") and int(rng["end"], 16) > int(rng["start"], 16)
            assert rng["pages"] == (int(rng["end"], 16) - int(rng["start"], 16)) >> 12
        starts = [int(x["start"], 16) for x in j[key]]
        assert starts == sorted(starts)
    # v4.2 with the quirk on: the CD toggle zaps nothing, so the WB|IPAT entries go stale.
    assert j["counts"]["zap_calls"] == 0 and j["stale"] == j["needed"] and j["needed"]
    assert j["changes"][0]["before"]["notation"] == "WB!"
    assert j["event"]["kind"] == "cr0_cd" and j["path"]


@pytest.mark.parametrize("event", [
    {"kind": "cr0_cd", "value": True, "cr0_nw": True},
    {"kind": "mtrr_write", "msr": "0x2ff", "value": "0x806"},
    {"kind": "mtrr_write", "msr": 0x200, "value": 0x80000000},
    {"kind": "noncoherent_dma", "value": False},
    {"kind": "pat_write", "value": "0x0407050600070106"},
])
async def test_zap_event_kinds(client, event):
    body = {"kernel": "v6.7", "vm": {"noncoherent_dma": True}, "vcpu": PRESETS["ovmf"].request()["vcpu"],
            "event": event}
    r = await client.post("/api/v1/zap", json=body)
    assert r.status_code == 200, r.text
    s.ZapResponse.model_validate(r.json())


async def test_zap_mtrr_write_v67_range(client):
    """v6.7 with nc-DMA: MTRRdefType zaps everything; the only mapped change is the fixed
    range flipping when FE goes off."""
    body = {"kernel": "v6.7", "vm": {"noncoherent_dma": True}, "vcpu": PRESETS["ovmf"].request()["vcpu"],
            "event": {"kind": "mtrr_write", "msr": "0x2ff", "value": "0x806"}}
    j = (await client.post("/api/v1/zap", json=body)).json()
    assert j["calls"] == [{"start": "0x0", "end": "0x400000000000", "pages": 1 << 34}]
    assert j["stale"] == [] and j["counts"]["excess_pages"] > 0


async def test_zap_top_level_memory_map(client):
    body = {"kernel": "v6.7", "vm": {"noncoherent_dma": True}, "vcpu": {"cr0_cd": True},
            "memory_map": [{"start": "0x0", "end": "0x80000000", "kind": "ram"},
                           {"start": "0xfd000000", "end": "0xfe000000", "kind": "mmio"}],
            "event": {"kind": "noncoherent_dma", "value": False}}
    j = (await client.post("/api/v1/zap", json=body)).json()
    assert j["zapped_mapped"] == [{"start": "0x0", "end": "0x80000000", "pages": 0x80000},
                                  {"start": "0xfd000000", "end": "0xfe000000", "pages": 0x1000}]


async def test_diff(client):
    r = await client.post("/api/v1/diff", json={"a": "v4.2", "b": "v6.7"})
    assert r.status_code == 200, r.text
    j = s.DiffResponse.model_validate(r.json()).model_dump()
    assert j["total_states"] == 1920 and j["compared"] + sum(j["skipped"].values()) == 1920
    assert j["counts"]["differ"] == len(j["rows"]) > 0
    assert sum(g["count"] for g in j["groups"]) == j["counts"]["differ"]
    row = j["rows"][0]
    assert row["ept_a"]["notation"] == "WB!" and row["ept_b"]["notation"] == "WB"
    assert row["state"]["cr0_cd"] is True and row["state"]["noncoherent_dma"] is True
    assert {r["classification"] for r in j["rows"]} <= {"weaker", "stronger", "incomparable", "same"}
    assert j["permalink"] == "http://testserver/?v=1&view=diff&kernel=v4.2&vs=v6.7"
    r = await client.post("/api/v1/diff", json={"a": "v4.2", "b": "v6.7", "limit": 3})
    assert len(r.json()["rows"]) == 3 and r.json()["truncated"] is True


async def test_diff_same_era_is_empty(client):
    j = (await client.post("/api/v1/diff", json={"a": "v6.11", "b": "v6.11"})).json()
    assert j["rows"] == [] and j["counts"]["differ"] == 0


async def test_decode_trace_line(client):
    line = ("CPU 0/KVM-1234 [003] 1234.5678: kvm_mmu_set_spte: gfn fee00 spte 60000002fee00e77 (rwxu)"
            " level 1 at 10a5b1008")
    r = await client.post("/api/v1/decode", json={"line": line})
    assert r.status_code == 200, r.text
    j = s.DecodeResponse.model_validate(r.json()).model_dump()
    assert (j["memtype"], j["ipat"], j["notation"], j["level"]) == ("WB", True, "WB!", 1)
    assert j["gfn"] == "0xfee00" and j["gpa"] == "0xfee00000" and not j["misconfigured"]
    fields = {f["name"]: f["value"] for f in j["fields"]}
    assert fields["MT"] == 6 and fields["IPAT"] == 1 and fields["R"] == 1
    by_era = {e["kernel"]: e for e in j["eras"]}
    assert set(by_era) == set(ERAS)
    assert by_era["v6.16"]["matches"] is True  # stock VM: WB|IPAT
    assert by_era["v6.11-rc1"]["matches"] is False  # self-snoop: WB without IPAT


@pytest.mark.parametrize("body, level, size", [
    ({"spte": "0xb7", "level": 2}, 2, "2M"),
    ({"spte": "0xb7", "level": 3}, 3, "1G"),
    ({"spte": "0xb7", "level": 1}, 1, "4K"),  # a PTE: bit 7 is ignored there
    ({"spte": "0x37"}, 1, "4K"),  # PS clear, no level: a PTE
    ({"line": "kvm_mmu_set_spte: gfn 40000 spte 6000000040000bb7 (rwx) level 2 at 1"}, 2, "2M"),  # the line's level
    ({"line": "kvm_mmu_set_spte: gfn 40000 spte 6000000040000bb7 (rwx) level 1 at 1", "level": 3}, 3, "1G"),
])
async def test_decode_levels(client, body, level, size):
    r = await client.post("/api/v1/decode", json=body)
    assert r.status_code == 200, r.text
    j = r.json()
    assert (j["level"], j["page_size"]) == (level, size)
    assert {f["name"]: f["value"] for f in j["fields"]}["PS"] == (1 if "b7" in str(body) else 0)


async def test_decode_not_present_is_no_misconfiguration(client):
    """XWR=000: the CPU never checks the rest (an access is an EPT violation), even memtype 7."""
    j = (await client.post("/api/v1/decode", json={"spte": "0x38"})).json()
    assert j["memtype_bits"] == 7 and j["memtype"] is None and j["notation"] == "reserved(7)"
    assert j["misconfig"] == [] and j["misconfigured"] is False
    j = (await client.post("/api/v1/decode", json={"spte": "0x3f"})).json()  # present: now it is
    assert j["misconfigured"] is True and "reserved" in j["misconfig"][0]
    j = (await client.post("/api/v1/decode", json={"spte": "0x7a"})).json()  # W without R, reserved type 7, IPAT
    assert j["notation"] == "reserved(7)!" and len(j["misconfig"]) == 2


async def test_notation_has_one_source():
    """The API's `WB!` is app.x86.ept.notation (no copy in the web layer)."""
    from app.api import convert, scenario
    from app.x86 import ept

    assert convert.notation is ept.notation and scenario.notation is ept.notation
    assert "def notation" not in Path(convert.__file__).read_text(encoding="utf-8")


async def test_decode_reserved_memtype_is_a_misconfiguration(client):
    j = (await client.post("/api/v1/decode", json={"spte": "600000008000be57"})).json()  # bits 5:3 = 2
    assert j["memtype"] is None and j["memtype_bits"] == 2 and j["misconfigured"] is True
    assert "EPT misconfiguration" in j["misconfig"][0]


async def test_decode_era_refusing_vm(client):
    body = {"spte": 0x30 | 7, "vm": {"quirk_ignore_guest_pat": False}, "kernels": ["v4.2", "v6.16"]}
    j = (await client.post("/api/v1/decode", json=body)).json()
    by = {e["kernel"]: e for e in j["eras"]}
    assert by["v4.2"]["error"] and by["v4.2"]["matches"] is None
    assert by["v6.16"]["matches"] is True  # quirk off on a self-snoop CPU: WB, IPAT clear


async def test_map(client):
    body = {k: v for k, v in PRESETS["ovmf"].request().items() if k not in ("gpa", "mmio")}
    r = await client.post("/api/v1/map", json={**body, "pat_index": 1})
    assert r.status_code == 200, r.text
    j = s.MapResponse.model_validate(r.json()).model_dump()
    assert j["runs"][0]["start"] == "0x0" and j["runs"][-1]["end"] == "0x400000000000"
    vram = next(x for x in j["runs"] if x["start"] == "0xfd000000")
    assert vram["ept"]["notation"] == "UC" and vram["effective"] == "WC"  # UC (EPT) x WC (PAT 1) = WC
    assert any(m["source"].startswith("variable 0") for m in j["mtrr_ranges"])


async def test_replay_generator(client):
    r = await client.post("/api/v1/replay", json={"generator": "ovmf", "vcpus": 8, "kernels": ["v4.2", "v6.11"]})
    assert r.status_code == 200, r.text
    j = s.ReplayResponse.model_validate(r.json()).model_dump()
    assert j["vcpus"] == 8 and j["events"] > 0
    by = {e["kernel"]: e for e in j["eras"]}
    # The cover letter's OVMF figure at 8 vCPUs: QEMU 2N + OVMF 6N+2 + Linux 2N+2 = 84.
    assert by["v4.2"]["zap_calls"] == 84
    assert by["v4.2"]["calls_by_source"] == {"qemu": 16, "firmware": 50, "linux": 18, "trace": 0}
    fs = j["final_state"]["vcpus"]
    assert len(fs) == 8 and all(v == fs[0] for v in fs)
    assert fs[0]["mtrr"]["def_type"] == "0xc06" and len(fs[0]["mtrr"]["fixed"]) == 11
    assert len(fs[0]["mtrr"]["variable"]) == 8 and fs[0]["pat"] == "0x407050600070106"
    assert fs[0]["cr0"] == "0x10"  # CD=0, NW=0 (PG is not modelled by a boot trace)
    assert by["v6.11"]["zap_calls"] == 0
    assert by["v4.2"]["calls"] is None


async def test_replay_events_and_text(client):
    events = [{"vcpu": 0, "event": {"kind": "cr0_cd", "value": True}},
              {"vcpu": 1, "event": {"kind": "mtrr_write", "msr": "0x2ff", "value": "0xc06"}},
              {"vcpu": 0, "event": {"kind": "cr0_cd", "value": False}}]
    r = await client.post("/api/v1/replay", json={"events": events, "include_calls": True, "kernels": ["v6.7"]})
    assert r.status_code == 200, r.text
    assert r.json()["vcpus"] == 2 and r.json()["eras"][0]["calls"] is not None
    text = "vcpu 0 cr0 cd=1\nvcpu 1 wrmsr 0x2ff 0x006  # E=0\nvcpu 0 cr0 cd=0 nw=0\nvm ncdma off\n"
    r = await client.post("/api/v1/replay", json={"trace": text, "kernels": ["v6.7"]})
    assert r.status_code == 200, r.text
    assert r.json()["events"] == 4 and r.json()["vcpus"] == 2
    r = await client.get("/api/v1/replay/generators")
    assert r.status_code == 200 and {g["name"] for g in r.json()} == {"ovmf", "seabios"}


async def test_openapi_has_examples_and_problem_json(client):
    spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    for name in ("ResolveRequest", "ZapRequest", "DiffRequest", "ReplayRequest", "DecodeRequest", "MapRequest",
                 "PermalinkRequest"):
        assert schemas[name].get("examples"), name
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method == "post":
                assert {"413", "422"} <= set(op["responses"]), path
                assert "application/problem+json" in op["responses"]["422"]["content"], path
                assert "application/json" not in op["responses"]["422"]["content"], path
    text_ops = [p for p, ops in spec["paths"].items()
                if "text/plain" in ops.get("post", {}).get("responses", {}).get("200", {}).get("content", {})]
    assert sorted(text_ops) == ["/api/v1/diff", "/api/v1/resolve", "/api/v1/zap"]


async def test_examples_in_schema_are_accepted(client):
    spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    for name, path in (("ResolveRequest", "resolve"), ("ZapRequest", "zap"), ("DiffRequest", "diff"),
                       ("ReplayRequest", "replay"), ("DecodeRequest", "decode"), ("MapRequest", "map"),
                       ("PermalinkRequest", "permalink")):
        for ex in schemas[name]["examples"]:
            r = await client.post(f"/api/v1/{path}", json=ex)
            assert r.status_code == 200, (name, r.text)


async def test_docs_offline(client):
    r = await client.get("/docs")
    assert r.status_code == 200
    html = r.text
    assert "swagger-ui-bundle.js" in html
    for host in ("cdn.jsdelivr.net", "fastapi.tiangolo.com", "unpkg.com", "http://", "https://"):
        assert host not in html, host
    js = await client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js")
    assert js.status_code == 200


async def test_page_route(client):
    r = await client.get("/?v=1&kernel=v6.7&ncdma=1&cd=1")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    r = await client.get("/?v=2")  # a bad permalink still serves the page
    assert r.status_code == 200


CAPTURE = (
    "qemu-system-x86 8390/8397 [002] 1404.389300: kvm:kvm_entry: vcpu 0, rip 0xfff0\n"
    "qemu-system-x86 8390/8397 [002] 1404.389373: kvm:kvm_cr: cr_write 0 = 0x60000011\n"
    "qemu-system-x86 8390/8397 [002] 1404.389380: kvm:kvm_cr: cr_write 0 = 0x11\n"
    "qemu-system-x86 8390/8397 [002] 1404.389391: kvm:kvm_msr: msr_write 2ff = 0x806\n"
    "qemu-system-x86 9000/9001 [003] 1404.389392: kvm:kvm_entry: vcpu 0, rip 0xfff0\n"
)


async def test_replay_capture_reports_how_it_was_read(client):
    r = await client.post("/api/v1/replay", json={"trace": CAPTURE, "pid": 8390, "kernels": ["v6.7"]})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["initial"] == "reset" and j["qemu_host_writes"] is False
    cap = j["capture"]
    assert cap["kind"] == "capture" and cap["layouts"] == ["perf"] and cap["pid"] == 8390 and cap["pids"] == [8390,
                                                                                                              9000]
    assert cap["threads"] == [{"tid": 8397, "pid": 8390, "comm": "qemu-system-x86", "vcpu": 0, "by": "kvm_entry",
                               "line": 1}]
    assert cap["skipped"]["lines of other VMs (PIDs 9000)"] == 1
    assert j["events"] == 2 and j["events_by_source"]["trace"] == 2  # CD 1->0 (from RESET), MTRRdefType
    r = await client.post("/api/v1/replay", json={"trace": CAPTURE, "kernels": ["v6.7"], "qemu_host_writes": True,
                                                  "pid": 8390})
    assert r.json()["events_by_source"]["qemu"] > 0 and r.json()["eras"][0]["calls_by_source"]["qemu"] > 0


@pytest.mark.parametrize("body, loc, words", [
    ({"trace": CAPTURE}, ["body", "pid"], "2 VMs"),
    ({"trace": CAPTURE, "pid": 1}, ["body", "pid"], "no KVM lines of PID 1"),
    ({"generator": "ovmf", "pid": 1}, ["body", "pid"], "trace text only"),
    ({"trace": CAPTURE.replace("1404.389380", "1404.389000"), "pid": 8390}, ["body", "trace"],
     "(line 3): timestamp goes back"),
    ({"trace": "qemu-system-x86-77 [001] 9.5: kvm_msr: msr_write 2ff = 0x0"}, ["body", "trace"], "(line 1): thread"),
])
async def test_replay_capture_errors_name_the_field(client, body, loc, words):
    r = await client.post("/api/v1/replay", json={**body, "kernels": ["v6.7"]})
    assert r.status_code == 422, r.text
    e = r.json()["errors"][0]
    assert e["loc"][:2] == loc and words in r.text


async def test_replay_generator_edk2_release(client):
    r = await client.post("/api/v1/replay", json={"generator": "ovmf", "vcpus": 8, "edk2": "2024-02",
                                                  "kernels": ["v4.2"]})
    assert r.status_code == 200 and r.json()["eras"][0]["zap_calls"] == 85
    r = await client.post("/api/v1/replay", json={"generator": "ovmf", "edk2": "2022-11"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "edk2"]
