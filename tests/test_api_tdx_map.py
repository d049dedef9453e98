"""POST /api/v1/map for a TD with `private_ranges` (issue 14).

Oracle, from docs/systems/tdx.md and the sources it cites (not from app/kvm/tdx.py): a
private GPA is in the Secure EPT, modelled as WB without IPAT (so the guest PAT decides,
like shared RAM), mapped with 4K pages only (tdx_gmem_private_max_mapping_level); a shared
GPA keeps the plain map's answer, and its page is the largest aligned 1G/2M/4K block that
stays inside the plain run, within the plain run's page size, and holds no private GPA
(hugepage_has_attrs: a huge page with mixed attributes is not mapped huge).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio

SIZES = {"1G": 1 << 30, "2M": 1 << 21, "4K": 1 << 12}
T_WB = {"UC": "UC", "UC-": "UC", "WC": "WC", "WT": "WT", "WP": "WP", "WB": "WB"}  # EPT WB row of the SDM table
BASE = {"kernel": "6.16", "vm": {"type": "tdx"}, "vcpu": {"pat": "0x0007010600070406"}, "pat_index": 2}
PRIV = [(0x100000, 0x40000000), (0x100000000, 0x100201000)]


def rng(pairs):
    return [{"start": f"{s:#x}", "end": f"{e:#x}"} for s, e in pairs]


async def test_the_hand_computed_map(client):
    j = (await client.post("/api/v1/map", json={**BASE, "private_ranges": rng(PRIV)})).json()
    got = [(r["start"], r["end"], r["kind"], r["page_size"], r.get("private", False)) for r in j["runs"]]
    assert got == [
        ("0x0", "0xa0000", "ram", "4K", False), ("0xa0000", "0xc0000", "ram", "4K", False),
        ("0xc0000", "0x100000", "ram", "4K", False), ("0x100000", "0x40000000", "ram", "4K", True),
        ("0x40000000", "0x80000000", "ram", "1G", False), ("0x80000000", "0xfd000000", "unmapped", "", False),
        ("0xfd000000", "0xfe000000", "ram", "2M", False), ("0xfe000000", "0x100000000", "unmapped", "", False),
        ("0x100000000", "0x100201000", "ram", "4K", True), ("0x100201000", "0x100400000", "ram", "4K", False),
        ("0x100400000", "0x140000000", "ram", "2M", False), ("0x140000000", "0x180000000", "ram", "1G", False),
        ("0x180000000", "0x800000000", "unmapped", "", False), ("0x800000000", "0x810000000", "mmio", "2M", False),
        ("0x810000000", "0x400000000000", "unmapped", "", False)]
    priv = [r for r in j["runs"] if r.get("private")]
    # PAT entry 2 of 0x0007010600070406 is UC- (7): WB without IPAT gives UC
    assert all(r["ept"]["notation"] == "WB" and r["ept"]["ipat"] is False and r["effective"] == "UC" for r in priv)
    assert any("Secure EPT, 4K pages" in n for n in j["notes"])


@pytest.mark.parametrize("pairs", [
    PRIV, [(0x1ff000, 0x201000)], [(0x0, 0x1000), (0x3fe00000, 0x40001000)], [(0x140000000, 0x180000000)],
    [(0xfd001000, 0xfd002000), (0x7ffff000, 0x80000000)],
])
async def test_every_run_against_the_oracle(client, pairs):
    plain = (await client.post("/api/v1/map", json=BASE)).json()["runs"]
    j = (await client.post("/api/v1/map", json={**BASE, "private_ranges": rng(pairs)})).json()
    runs = j["runs"]
    assert runs[0]["start"] == "0x0" and all(a["end"] == b["start"] for a, b in zip(runs, runs[1:], strict=False))

    def plain_at(a):
        return next(r for r in plain if int(r["start"], 16) <= a < int(r["end"], 16))

    def private_at(a):
        return any(s <= a < e for s, e in pairs)

    for r in runs:
        s, e = int(r["start"], 16), int(r["end"], 16)
        inner = range(-(-s // (1 << 21)) * (1 << 21), e, 1 << 21) if r["kind"] != "unmapped" else ()
        for a in (s, e - 0x1000, *inner):  # both ends and every 2M boundary inside
            p = plain_at(a)
            assert private_at(a) == bool(r.get("private")), (r, hex(a))
            assert (r["kind"], r["label"], r["guest_mtrr"], r["expected"]) == (
                p["kind"], p["label"], p["guest_mtrr"], p["expected"]), (r, hex(a))
            if r["kind"] == "unmapped":
                assert r["ept"] is None and r["page_size"] == ""
                continue
            if r.get("private"):
                assert r["page_size"] == "4K" and r["ept"]["notation"] == "WB"
                assert r["effective"] == T_WB["UC-"]
                continue
            assert (r["ept"], r["effective"], r["relation"]) == (p["ept"], p["effective"], p["relation"])
            # the largest block within the plain map's page size there that holds no private GPA
            want = next((name for name in ("1G", "2M") if SIZES[name] <= SIZES[p["page_size"]]
                         and not any(x < a // SIZES[name] * SIZES[name] + SIZES[name] and a // SIZES[name]
                                     * SIZES[name] < y for x, y in pairs)), "4K")
            assert r["page_size"] == want, (r, hex(a))


async def test_without_private_ranges_nothing_changes(client):
    plain = await client.post("/api/v1/map", json=BASE)
    empty = (await client.post("/api/v1/map", json={**BASE, "private_ranges": []})).json()
    assert all("private" not in r for r in plain.json()["runs"])
    assert empty["runs"] == plain.json()["runs"] and empty["notes"] != plain.json()["notes"]


@pytest.mark.parametrize("body, loc, says", [
    ({**BASE, "private_ranges": rng([(0x100, 0x2000)])}, ["body", "private_ranges", 0], "not 4K aligned"),
    ({**BASE, "private_ranges": rng([(0x2000, 0x1000)])}, ["body", "private_ranges", 0], "is empty"),
    ({**BASE, "private_ranges": rng([(0x0, 0x2000), (0x1000, 0x3000)])}, ["body", "private_ranges", 1],
     "overlaps private range 0"),
    ({**BASE, "private_ranges": rng([(0x7ffff000, 0x800001000)])}, ["body", "private_ranges", 0],
     "MMIO is only ever shared"),
    ({**BASE, "private_ranges": rng([(0x0, 1 << 49)])}, ["body", "private_ranges", 0], "above 2^MAXPHYADDR"),
    ({**BASE, "private_ranges": rng([(0x1000, 0x2000), (0x80000000, 0x80001000)])}, ["body", "private_ranges", 1],
     '"msg":"0x80000000 is in no memory-map range","type":"rule_violation","rule":"private GPAs are RAM only: a '
     'private fault without a memslot maps nothing (kvm_handle_noslot_fault exits with KVM_EXIT_MEMORY_FAULT)"'),
    ({**BASE, "private_ranges": rng([(0x7ffff000, 0x80001000)])}, ["body", "private_ranges", 0],
     '"msg":"0x80000000 is in no memory-map range"'),
    ({**BASE, "vm": {"type": "tdx", "memory_map": [{"start": "0x0", "end": "0x100000"}]},
      "private_ranges": rng([(0x0, 0x200000)])}, ["body", "private_ranges", 0], '"msg":"0x100000 is in no memory-map'),
    ({**BASE, "private_ranges": rng([(n << 12, (n + 1) << 12) for n in range(0, 130, 2)])}, ["body", "private_ranges"],
     "at most 64"),
    ({"kernel": "6.16", "private_ranges": []}, ["body", "private_ranges"], "only with vm.type tdx"),
    ({"kernel": "6.16", "vm": {"vendor": "amd"}, "private_ranges": []}, ["body", "private_ranges"], "vm.type tdx"),
    ({"kernel": "xen", "private_ranges": []}, ["body", "private_ranges"], "vm.type tdx"),
])
async def test_refusals(client, body, loc, says):
    r = await client.post("/api/v1/map", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == loc and says in r.text, r.text
