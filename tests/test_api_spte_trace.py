"""POST /api/v1/decode/trace: every SPTE line of a pasted trace (issue 9 §2).

The decoding itself is tested in tests/test_kvm_spte_trace.py; here: the JSON shapes, the
vendor switch, the era comparison's scenario, the limits (refused before work, naming the
limit) and errors naming the line (422 at body.trace, never a 500).
"""

from __future__ import annotations

import pytest

from app.api import schemas as s
from app.kvm.eras import ERAS
from app.kvm.spte_trace import MAX_TRACE_CHARS, MAX_TRACE_LINES

pytestmark = pytest.mark.anyio

URL = "/api/v1/decode/trace"
PROBLEM = "application/problem+json"

LINES = (
    "cpus=2",
    ("CPU 0/KVM-995362 [016] 55709.716256: kvm_mmu_set_spte:     gfn fee00 spte 60000002fee00e77 (rwxu) "
     "level 1 at 10a5b1008"),
    ("qemu-system-x86-8397    [002] .....  1404.389373: kvm_tdp_mmu_spte_changed: as id 0 gfn 100 level 1 "
     "old_spte 600000012345ef77 new_spte 5a0"),
    ("CPU 1/KVM-16856   [007] .......   380.398696: kvm_tdp_mmu_spte_changed: as id 0 gfn 200 level 2 "
     "old_spte 8000000000000000 new_spte 8600000123400bf7"),
    "CPU 1/KVM 1821753 [015] 4831258.258053: kvmmmu:kvm_mmu_spte_requested: gfn 1234 pfn 56789 level 1",
    "CPU 1/KVM 1821753 [015] 4831258.258054: kvm:kvm_exit: vcpu 1 reason EPT_VIOLATION rip 0xfff0",
)
TRACE = "\n".join(LINES)


async def post(client, body):
    r = await client.post(URL, json=body)
    assert r.status_code == 200, r.text
    return s.DecodeTraceResponse.model_validate(r.json()).model_dump()


async def problem(client, body, status=422):
    r = await client.post(URL, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    return r.json()


async def test_intel_trace(client):
    j = await post(client, {"trace": TRACE})
    assert (j["vendor"], j["lines"], j["ignored_lines"]) == ("intel", 6, 2)
    assert j["counts"] == {"kvm_mmu_set_spte": 1, "kvm_tdp_mmu_spte_changed": 2, "kvm_mmu_spte_requested": 1}
    assert j["kernels"] == list(ERAS) and j["notes"] == []
    set_, removed, installed, requested = j["entries"]
    assert [e["line"] for e in j["entries"]] == [2, 3, 4, 5]
    assert set_["header"] == {"comm": "CPU 0/KVM", "pid": 995362, "cpu": 16, "ts": "55709.716256"}
    assert (set_["gfn"], set_["gpa"], set_["page_size"], set_["flags"], set_["at"]) == (
        "0xfee00", "0xfee00000", "4K", "rwxu", "0x10a5b1008")
    v = set_["spte"]
    assert (v["raw"], v["kind"], v["memtype"], v["ipat"], v["notation"], v["permissions"], v["hpa"]) == (
        "0x60000002fee00e77", "leaf", "WB", True, "WB!", "rwx", "0x2fee00000")
    by = {e["kernel"]: e for e in set_["eras"]}
    assert by["v6.16"]["ept"]["notation"] == "WB!" and by["v6.16"]["matches"] is True
    assert by["v6.11-rc1"]["ept"]["notation"] == "WB" and by["v6.11-rc1"]["matches"] is False
    assert removed["old"]["kind"] == "leaf" and removed["new"]["kind"] == "frozen"
    assert removed["new"]["raw"] == "0x00000000000005a0" and "REMOVED_SPTE" in removed["new"]["meaning"]
    assert removed["change"].startswith("removed") and removed["spte"] is None
    assert installed["change"] == "installed: a leaf" and installed["page_size"] == "2M"
    assert installed["new"]["page_size"] == "2M" and installed["old"]["raw"] == "0x8000000000000000"
    assert requested["pfn"] == "0x56789" and requested["spte"] is None
    assert "no memory type" in requested["notes"][0]
    assert all(e["matches"] is None for e in requested["eras"])


async def test_amd_trace(client):
    body = {"trace": "CPU 0/KVM-4711 [003] 812.000001: kvm_mmu_set_spte: gfn 1000 spte 8000000101000867 (rw-u) "
                     "level 1 at 1f3a2008", "vendor": "amd", "host_pat": "0x0407050600070106"}
    j = await post(client, body)
    assert j["vendor"] == "amd" and j["kernels"] == [] and "no era" in j["notes"][0]
    (e,) = j["entries"]
    v = e["spte"]
    assert (v["memtype"], v["memtype_bits"], v["ipat"], v["notation"]) == (None, None, None, None)
    assert (v["host_pat_index"], v["host_pat_type"], v["permissions"]) == (0, "WB", "rw-u")
    assert "no EPT memory type" in v["notes"][0] and e["eras"] == []
    # the same line as Intel: the WT misreading, with the note pointing at the vendor
    j = await post(client, {"trace": body["trace"]})
    v = j["entries"][0]["spte"]
    assert (v["memtype"], v["ipat"]) == ("WT", True) and "(vendor: amd)" in j["entries"][0]["notes"][0]


async def test_kernels_subset_and_scenario(client):
    body = {"trace": TRACE, "kernels": ["v4.2", "v6.16"], "vm": {"quirk_ignore_guest_pat": False}}
    j = await post(client, body)
    assert j["kernels"] == ["v4.2", "v6.16"]
    by = {e["kernel"]: e for e in j["entries"][0]["eras"]}
    assert by["v4.2"]["error"] and by["v4.2"]["ept"] is None and by["v4.2"]["matches"] is None
    assert by["v6.16"]["ept"]["notation"] == "WB" and by["v6.16"]["matches"] is False


async def test_examples_in_schema_are_accepted(client):
    spec = (await client.get("/openapi.json")).json()
    assert URL in spec["paths"]
    for ex in spec["components"]["schemas"]["DecodeTraceRequest"]["examples"]:
        r = await client.post(URL, json=ex)
        assert r.status_code == 200, r.text


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("line, words", [
    ("kvm_mmu_set_spte: gfn zz spte 1 (rwx) level 1 at 1", "cannot read the kvm_mmu_set_spte payload"),
    ("kvm_tdp_mmu_spte_changed: as id 0 gfn 1 level 9 old_spte 0 new_spte 0", "level 9"),
    ("kvm_mmu_set_spte: gfn 200 spte 837 (rwxu) level 2 at 1", "points to a table"),
])
async def test_malformed_line_is_named(client, line, words):
    j = await problem(client, {"trace": f"{TRACE}\n{line}\n"})
    (err,) = j["errors"]
    assert err["loc"] == ["body", "trace"] and words in err["msg"]
    assert j["detail"].startswith("trace (line 7): ")


async def test_gfn_beyond_maxphyaddr_is_named(client):
    # gfn 0x1000000 is gpa 2^36: at 2^MAXPHYADDR for a 36-bit guest
    body = {"trace": "kvm_mmu_set_spte: gfn 1000000 spte 60000002fee00e77 (rwxu) level 1 at 1",
            "vm": {"maxphyaddr": 36}}
    j = await problem(client, body)
    assert j["errors"][0]["loc"] == ["body", "trace"] and "trace (line 1)" in j["detail"]
    assert "vm.maxphyaddr" in j["detail"]


async def test_limits_refused_naming_the_limit(client):
    j = await problem(client, {"trace": "x\n" * (MAX_TRACE_LINES + 1)})
    assert f"MAX_TRACE_LINES ({MAX_TRACE_LINES})" in j["detail"] and j["errors"][0]["loc"] == ["body", "trace"]
    j = await problem(client, {"trace": "y" * (MAX_TRACE_CHARS + 1)})
    assert str(MAX_TRACE_CHARS) in j["errors"][0]["msg"] and j["errors"][0]["loc"] == ["body", "trace"]


@pytest.mark.parametrize("body, loc", [
    ({"trace": "x", "vendor": "arm"}, ["body", "vendor"]),
    ({"trace": "x", "host_pat": "0x2"}, ["body", "host_pat"]),  # reserved PAT type 2
    ({"trace": "x", "kernels": []}, ["body", "kernels"]),
    ({"trace": "x", "kernels": ["v9.9-nope"]}, ["body", "kernels", 0]),
    ({"trace": 7}, ["body", "trace"]),
    ({}, ["body", "trace"]),
    ({"trace": "x", "vm": {"maxphyaddr": 30}}, ["body", "vm", "maxphyaddr"]),
])
async def test_request_errors(client, body, loc):
    j = await problem(client, body)
    assert j["errors"][0]["loc"][:len(loc)] == loc, j


async def test_single_leaf_decode_unchanged(client):
    r = await client.post("/api/v1/decode", json={"spte": "0x6000000080000e77"})
    assert r.status_code == 200 and r.json()["notation"] == "WB!"


async def test_fields_false_leaves_out_the_bit_lists(client):
    full = await post(client, {"trace": TRACE})
    bare = await post(client, {"trace": TRACE, "fields": False})
    vals = [e[k] for e in bare["entries"] for k in ("spte", "old", "new") if e[k] is not None]
    assert len(vals) == 5 and all(v["fields"] == [] for v in vals)
    for e in full["entries"]:  # everything else is the same answer
        for k in ("spte", "old", "new"):
            if e[k] is not None:
                e[k]["fields"] = []
    assert full == bare
