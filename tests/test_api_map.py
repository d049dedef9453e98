"""POST /api/v1/map: what the page's memory-map bar relies on, through httpx against the app.

The page draws one segment per run and interpolates addresses inside a run, so the runs
must be sorted, contiguous and cover [0, 2^MAXPHYADDR); it colours them by `effective`,
labels them with `page_size`, and draws `mtrr_ranges` over `mtrr.default` in their own lane.
"""

from __future__ import annotations

import pytest

from app.api.schemas import OVMF_MTRR

pytestmark = pytest.mark.anyio

NCDMA = {"noncoherent_dma": True}
LINUX_PAT = "0x0407050600070106"  # WB, WC, UC-, UC, WB, WP, UC-, WT


async def post_map(client, body: dict) -> dict:
    r = await client.post("/api/v1/map", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def run_at(j: dict, addr: int) -> dict:
    return next(r for r in j["runs"] if int(r["start"], 16) <= addr < int(r["end"], 16))


async def test_runs_cover_the_address_space_in_order(client):
    for maxphyaddr in (36, 46, 52):
        mask = ((1 << maxphyaddr) - 1) & ~(0x80000000 - 1) | 0x800  # 2 GiB at 2 GiB, for this MAXPHYADDR
        mtrr = {**OVMF_MTRR, "variable": [{"base": "0x80000000", "mask": hex(mask)}]}
        vm = {**NCDMA, "maxphyaddr": maxphyaddr}
        j = await post_map(client, {"kernel": "v6.7", "vm": vm, "vcpu": {"mtrr": mtrr}})
        runs = j["runs"]
        assert runs[0]["start"] == "0x0"
        assert int(runs[-1]["end"], 16) == 1 << maxphyaddr
        for a, b in zip(runs, runs[1:], strict=False):
            assert a["end"] == b["start"]
            assert int(a["start"], 16) < int(a["end"], 16)


async def test_ovmf_runs_with_nc_dma_follow_guest_mtrrs(client):
    j = await post_map(client, {"kernel": "v6.7", "vm": NCDMA, "vcpu": {"mtrr": OVMF_MTRR}})
    low = run_at(j, 0x1000)
    assert (low["kind"], low["guest_mtrr"], low["kvm_mtrr"]) == ("ram", "WB", "WB")
    assert low["ept"] == {"memtype": "WB", "ipat": False, "mask": "0x30", "notation": "WB"}
    rom = run_at(j, 0xC0000)  # fixed ranges 0xa0000-0xfffff are UC in OVMF
    assert rom["guest_mtrr"] == "UC" and rom["ept"]["notation"] == "UC"
    vram = run_at(j, 0xFD000000)  # RAM-backed BAR inside the UC variable range
    assert vram["kind"] == "ram" and vram["ept"]["mask"] == "0x00" and vram["effective"] == "UC"
    hole = run_at(j, 0xFE000000)
    assert hole["kind"] == "unmapped" and hole["ept"] is None and hole["effective"] is None
    assert hole["relation"] == "" and hole["page_size"] == ""
    assert j["mtrr_ranges"] == [
        {"start": "0x0", "end": "0xa0000", "type": "WB", "source": "fixed"},
        {"start": "0xa0000", "end": "0x100000", "type": "UC", "source": "fixed"},
        {"start": "0x80000000", "end": "0x100000000", "type": "UC", "source": "variable 0"},
    ]


async def test_page_size_per_run(client):
    j = await post_map(client, {"kernel": "v6.7", "vm": NCDMA, "vcpu": {"mtrr": OVMF_MTRR}})
    assert run_at(j, 0x1000)["page_size"] == "4K"  # below 1 MiB: fixed ranges, short memslots
    assert run_at(j, 0x40000000)["page_size"] == "1G"
    assert run_at(j, 0xFD000000)["page_size"] == "2M"  # a 16 MiB memslot holds no 1 GiB block


async def test_pat_index_selects_the_effective_column(client):
    base = {"kernel": "v6.7", "vm": NCDMA, "vcpu": {"pat": LINUX_PAT, "mtrr": OVMF_MTRR}}
    wb = await post_map(client, {**base, "pat_index": 0})
    wc = await post_map(client, {**base, "pat_index": 1})
    assert wb["pat_index"] == 0 and wc["pat_index"] == 1
    assert run_at(wb, 0x40000000)["effective"] == "WB"
    assert run_at(wc, 0x40000000)["effective"] == "WC"  # EPT WB, IPAT clear: the guest's WC applies
    assert run_at(wc, 0x40000000)["relation"] == "same"


async def test_stock_vm_ignores_guest_mtrrs_and_pat(client):
    j = await post_map(client, {"kernel": "v6.7", "vcpu": {"pat": LINUX_PAT, "mtrr": OVMF_MTRR}, "pat_index": 3})
    ram = run_at(j, 0x40000000)
    assert ram["ept"]["notation"] == "WB!" and ram["effective"] == "WB"
    assert ram["expected"] == "UC" and ram["relation"] == "weaker"  # guest mapped it UC (PA3)
    bar = run_at(j, 0x800000000)  # the assigned GPU BAR is host MMIO: UC, IPAT clear
    assert bar["kind"] == "mmio" and bar["ept"]["notation"] == "UC"


async def test_era_without_guest_mtrr_lookup_reports_no_kvm_type(client):
    j = await post_map(client, {"kernel": "v6.11", "vm": NCDMA, "vcpu": {"mtrr": OVMF_MTRR}})
    assert all(r["kvm_mtrr"] is None for r in j["runs"])
    assert run_at(j, 0xFD000000)["guest_mtrr"] == "UC"  # the guest's own view is still shown


async def test_mtrrs_disabled_give_no_ranges(client):
    j = await post_map(client, {"kernel": "v6.16"})
    assert j["mtrr_ranges"] == []
    assert run_at(j, 0x1000)["guest_mtrr"] == "UC"  # E=0: the guest expects UC everywhere
    top = hex(1 << 46)
    assert j["mtrr"] == {"enabled": False, "default": {"start": "0x0", "end": top, "type": "UC", "source": "disabled"}}


async def test_enabled_without_ranges_is_the_default_type_not_disabled(client):
    """E=1, FE=0, no variable pair (`/?v=1&kernel=v6.7&ncdma=1&deftype=0x806`): no range,
    yet the MTRRs are on and every address has the default type WB, as resolve says."""
    body = {"kernel": "v6.7", "vm": NCDMA, "vcpu": {"mtrr": {"def_type": "0x806"}}}
    j = await post_map(client, body)
    assert j["mtrr_ranges"] == []
    wb = {"start": "0x0", "end": hex(1 << 46), "type": "WB", "source": "default"}
    assert j["mtrr"] == {"enabled": True, "default": wb}
    r = await client.post("/api/v1/resolve", json={**body, "gpa": "0x1000"})
    assert r.json()["guest_mtrr"]["type"] == "WB" == run_at(j, 0x1000)["guest_mtrr"]


@pytest.mark.parametrize("def_type, enabled, type_, source", [
    ("0x0", False, "UC", "disabled"), ("0x6", False, "UC", "disabled"), ("0x406", False, "UC", "disabled"),
    ("0x800", True, "UC", "default"), ("0x801", True, "WC", "default"), ("0x804", True, "WT", "default"),
    ("0x805", True, "WP", "default"), ("0x806", True, "WB", "default"), ("0xc06", True, "WB", "default"),
])
async def test_mtrr_default_for_each_def_type(client, def_type, enabled, type_, source):
    j = await post_map(client, {"kernel": "v6.16", "vm": {"maxphyaddr": 40}, "vcpu": {"mtrr": {"def_type": def_type}}})
    assert j["mtrr"] == {"enabled": enabled, "default": {"start": "0x0", "end": "0x10000000000", "type": type_,
                                                         "source": source}}


async def test_custom_memory_map(client):
    mm = [{"start": "0x0", "end": "0x40000000", "kind": "ram"},
          {"start": "0xc0000000", "end": "0xc1000000", "kind": "mmio"}]
    j = await post_map(client, {"kernel": "v6.7", "vm": {"memory_map": mm}})
    kinds = [(r["start"], r["kind"]) for r in j["runs"]]
    assert kinds == [("0x0", "ram"), ("0x40000000", "unmapped"), ("0xc0000000", "mmio"), ("0xc1000000", "unmapped")]


@pytest.mark.parametrize("body, loc", [
    ({"kernel": "v6.7", "pat_index": 8}, ["body", "pat_index"]),
    ({"kernel": "v6.7", "pat_index": -1}, ["body", "pat_index"]),
    ({"kernel": "v6.7", "pat_index": True}, ["body", "pat_index"]),
    ({"kernel": "v9.9"}, ["body", "kernel"]),
    ({"kernel": "v6.7", "vm": {"quirk_ignore_guest_pat": False}}, ["body", "vm", "quirk_ignore_guest_pat"]),
    ({"kernel": "v6.7", "vm": {"maxphyaddr": 60}}, ["body", "vm", "maxphyaddr"]),
    ({"kernel": "v6.7", "vcpu": {"pat": "0x0007040600070402"}}, ["body", "vcpu", "pat"]),
    ({"kernel": "v6.7", "vcpu": {"cr0_nw": True}}, ["body", "vcpu", "cr0_nw"]),
    ({"kernel": "v6.7",
      "vcpu": {"mtrr": {"def_type": "0xc06", "variable": [{"base": "0x80000002", "mask": "0x3fff80000800"}]}}},
     ["body", "vcpu", "mtrr", "variable", 0, "base"]),
    ({"kernel": "v6.7", "gpa": "0x0"}, ["body", "gpa"]),
])
async def test_bad_input_is_a_422_problem_naming_the_field(client, body, loc):
    r = await client.post("/api/v1/map", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    j = r.json()
    assert j["status"] == 422 and j["errors"]
    assert any(e["loc"][:len(loc)] == loc for e in j["errors"]), j["errors"]


def _holey(n_pairs: int, holes: int, maxphyaddr: int = 46) -> dict:
    """n_pairs valid 4 KiB pairs whose masks have `holes` clear bits (13, 15, ...): 2^holes blocks each."""
    mask = ((1 << maxphyaddr) - 1) & ~0xFFF
    for i in range(holes):
        mask &= ~(1 << (13 + 2 * i))
    var = [{"base": hex(n << 24), "mask": hex(mask | 0x800)} for n in range(n_pairs)]
    return {"kernel": "v6.7", "vm": NCDMA, "vcpu": {"mtrr": {"def_type": "0xc06", "variable": var}}}


async def test_too_many_blocks_is_refused_before_building(client, monkeypatch):
    """8 pairs of 12 holes = 32768 SDM blocks: once 3.5 s and 11 MB, now an early 422: the map
    is never built (checked by behaviour, not by a timing)."""
    import app.api.scenario as api_scenario

    def no_build(*_a, **_kw):
        raise AssertionError("the map was built before the block count was checked")

    monkeypatch.setattr(api_scenario, "address_map", no_build)
    r = await client.post("/api/v1/map", json=_holey(8, 12))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    j = r.json()
    assert j["errors"][0]["loc"] == ["body", "vcpu", "mtrr", "variable"]
    assert "more than 1024 blocks" in j["errors"][0]["msg"] and "pair 0" in j["errors"][0]["msg"]
    assert "at most 1024 variable-range blocks" in j["errors"][0]["rule"]
    assert "vcpu.mtrr.variable" in j["detail"]
    # the limit is over all pairs: 8 x 256 blocks is refused at the pair that crosses it
    j = (await client.post("/api/v1/map", json=_holey(8, 8))).json()
    assert j["status"] == 422 and "pair 4" in j["errors"][0]["msg"]


async def test_block_limit_is_inclusive_and_bounds_the_answer(client):
    from app.api.scenario import MAX_MAP_BLOCKS, MAX_MAP_RUNS

    assert MAX_MAP_BLOCKS == 8 * 2 ** 7
    j = await post_map(client, _holey(8, 7))  # exactly 1024 blocks
    assert len([m for m in j["mtrr_ranges"] if m["source"].startswith("variable")]) == MAX_MAP_BLOCKS
    assert len(j["runs"]) <= MAX_MAP_RUNS
    # invalid pairs (V clear) and MTRRs disabled split nothing, whatever their masks
    body = _holey(8, 12)
    off = {**body, "vcpu": {"mtrr": {**body["vcpu"]["mtrr"], "def_type": "0x6"}}}
    assert (await client.post("/api/v1/map", json=off)).status_code == 200
    cleared = [{"base": p["base"], "mask": hex(int(p["mask"], 16) & ~0x800)} for p in body["vcpu"]["mtrr"]["variable"]]
    on = {**body, "vcpu": {"mtrr": {"def_type": "0xc06", "variable": cleared}}}
    assert (await client.post("/api/v1/map", json=on)).status_code == 200


async def test_run_limit_on_the_answer(client, monkeypatch):
    import app.api.scenario as sc

    body = {"kernel": "v6.7", "vm": NCDMA, "vcpu": {"mtrr": OVMF_MTRR}}
    n = len((await post_map(client, body))["runs"])
    monkeypatch.setattr(sc, "MAX_MAP_RUNS", n - 1)
    r = await client.post("/api/v1/map", json=body)
    assert r.status_code == 422, r.text
    e = r.json()["errors"][0]
    assert e["loc"] == ["body", "vcpu", "mtrr", "variable"] and f"{n} runs" in e["msg"] and e["rule"]
    monkeypatch.setattr(sc, "MAX_MAP_RUNS", n)
    assert (await client.post("/api/v1/map", json=body)).status_code == 200


async def test_block_count_waits_for_validation(client):
    """MAXPHYADDR and reserved mask bits are reported as such, not as a block count."""
    body = _holey(8, 12)
    r = await client.post("/api/v1/map", json={**body, "vm": {**NCDMA, "maxphyaddr": 60}})
    assert r.json()["errors"][0]["loc"] == ["body", "vm", "maxphyaddr"]
    bad = {**body, "vcpu": {"mtrr": {"def_type": "0xc06", "variable": [{"base": "0x0", "mask": "0x801"}]}}}
    r = await client.post("/api/v1/map", json=bad)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][:5] == ["body", "vcpu", "mtrr", "variable", 0]


async def test_map_names_the_kernel_asked(client):
    """A version string answers for its era and says so (kernel_info, as resolve and zap);
    an era id has no version."""
    by_version = (await client.post("/api/v1/map", json={"kernel": "6.12.78", "vm": NCDMA})).json()
    assert by_version["kernel"] == "v6.16"
    info = by_version["kernel_info"]
    assert (info["asked"], info["era"], info["version"]) == ("6.12.78", "v6.16", "6.12.78")
    by_era = (await client.post("/api/v1/map", json={"kernel": "v6.7", "vm": NCDMA})).json()
    assert (by_era["kernel_info"]["era"], by_era["kernel_info"]["version"]) == ("v6.7", None)
    bad = await client.post("/api/v1/map", json={"kernel": "6.99.1x", "vm": NCDMA})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "kernel"]
