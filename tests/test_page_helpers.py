"""The page's JSON helpers (app/pages.py /page/*): the script asks these instead of keeping
copies of register layouts or the diff's state construction, so they answer exactly what
the core says. Exhaustive where the space is small (MTRRdefType, PAT bytes, diff groups).
"""

from __future__ import annotations

import pytest

from app.x86.memtype import MTRR_TYPES, PAT_TYPES, MemType
from app.x86.mtrr import FIXED_MSRS, MtrrState, VarMtrr, contiguous_size, is_mtrr_msr, msr_name
from app.x86.pat import PAT_LINUX, Pat

pytestmark = pytest.mark.anyio

OVMF = {"def_type": "0xc06", "fixed": ["0x0606060606060606"] * 2 + ["0x0"] * 9,
        "variable": [{"base": "0x80000000", "mask": "0x3fff80000800"}]}


async def post(client, path: str, body: dict, status: int = 200) -> dict:
    r = await client.post(path, json=body)
    assert r.status_code == status, r.text
    return r.json()


async def test_deftype_every_field_combination(client):
    """2 x 2 x 5 MTRRdefType values: written, then read back by /page/registers."""
    seen = set()
    for e in (False, True):
        for fe in (False, True):
            for t in sorted(MTRR_TYPES):
                v = (await post(client, "/page/mtrr-deftype", {"enabled": e, "fixed_enabled": fe, "type": t}))["value"]
                st = MtrrState(def_type=int(v, 16))
                assert (st.enabled, st.fixed_enabled, int(st.default_type)) == (e, fe, t)
                view = (await post(client, "/page/registers", {"mtrr": {"def_type": v}}))["def_type"]
                assert view == {"ok": True, "value": v, "enabled": e, "fixed_enabled": fe, "type": t, "type_ok": True}
                seen.add(v)
    assert len(seen) == 20 and "0x806" in seen and "0xc06" in seen and "0x0" in seen


@pytest.mark.parametrize("t", [2, 3, 7, 8, 255])
async def test_deftype_refuses_a_reserved_type(client, t):
    err = (await post(client, "/page/mtrr-deftype", {"enabled": True, "fixed_enabled": False, "type": t}, 422))
    assert err["errors"][0]["loc"] == ["body", "type"] and "reserved" in err["errors"][0]["msg"]


async def test_pat_value_every_byte_in_every_entry(client):
    for i in range(8):
        for code in range(9):
            entries = [6] * 8
            entries[i] = code
            if code in PAT_TYPES:
                v = (await post(client, "/page/pat-value", {"entries": entries}))["value"]
                assert Pat.from_msr(int(v, 16)).entries == tuple(MemType(c) for c in entries)
            else:
                err = await post(client, "/page/pat-value", {"entries": entries}, 422)
                assert err["errors"][0]["loc"] == ["body", "entries", i]


async def test_registers_reads_pat_entries_and_marks_reserved_bytes(client):
    pat = (await post(client, "/page/registers", {"pat": f"{PAT_LINUX:#x}"}))["pat"]
    assert pat["ok"] and pat["value"] == "0x0407050600070106"
    assert [e["code"] for e in pat["entries"]] == [6, 1, 7, 0, 6, 5, 7, 4] and all(e["ok"] for e in pat["entries"])
    bad = (await post(client, "/page/registers", {"pat": "0x0207040600070406"}))["pat"]
    assert [e["ok"] for e in bad["entries"]] == [True] * 7 + [False]
    assert (await post(client, "/page/registers", {"pat": "0xzz"}))["pat"] == {"ok": False, "value": "0xzz",
                                                                               "entries": []}


async def test_registers_reads_fixed_sub_ranges(client):
    fixed = (await post(client, "/page/registers", {"mtrr": OVMF}))["fixed"]
    assert len(fixed) == 11
    assert [c["type"] for c in fixed[0]["chips"]] == ["WB"] * 8
    assert fixed[2]["chips"][0] == {"start": "0xa0000", "end": "0xa4000", "code": 0, "type": "UC"}
    assert [(c["start"], c["end"]) for c in fixed[10]["chips"]][-1] == ("0xff000", "0x100000")
    for slot, f in enumerate(FIXED_MSRS):
        assert fixed[slot]["chips"][0]["start"] == f"{f.start:#x}" and fixed[slot]["chips"][-1]["end"] == f"{f.end:#x}"
    odd = (await post(client, "/page/registers", {"mtrr": {"fixed": ["0x0706050403020100", "x"]}}))["fixed"]
    assert [c["type"] for c in odd[0]["chips"]] == ["UC", "WC", None, None, "WT", "WP", "WB", None]  # 7 is PAT only
    assert odd[1] == {"ok": False, "value": "x", "chips": []}


@pytest.mark.parametrize("maxphy", [36, 40, 46, 52])
async def test_registers_reads_pairs_like_contiguous_size(client, maxphy):
    pairs = [(0x80000000, ((1 << maxphy) - 1) & ~(0x80000000 - 1) | 0x800),  # 2 GiB, V
             (0xC0000004, ((1 << maxphy) - 1) & ~(0x40000000 - 1)),  # 1 GiB WT, V clear
             (0x6, ((1 << maxphy) - 1) & ~0x3FFFFFFF & ~(1 << 31) | 0x800)]  # a hole at bit 31
    body = {"maxphyaddr": str(maxphy), "mtrr": {"variable": [{"base": hex(b), "mask": hex(m)} for b, m in pairs]}}
    rows = (await post(client, "/page/registers", body))["variable"]
    for (b, m), row in zip(pairs, rows, strict=True):
        p = VarMtrr(b, m)
        size = contiguous_size(p, maxphy)
        assert row == {"base_ok": True, "mask_ok": True, "start": hex(b & ~0xFFF), "type": p.type, "type_ok": True,
                       "valid": p.valid, "size": hex(size) if size else None, "note": "" if size else "mask has holes"}
    assert [r["size"] for r in rows] == ["0x80000000", "0x40000000", None]


async def test_registers_does_not_fix_up_a_bad_maxphyaddr(client):
    body = {"maxphyaddr": 99, "mtrr": {"variable": [{"base": "0x80000000", "mask": "0x3fff80000800"}]}}
    row = (await post(client, "/page/registers", body))["variable"][0]
    assert row["size"] is None and row["note"] == "MAXPHYADDR 99 is outside 36..52"
    row = (await post(client, "/page/registers", {**body, "maxphyaddr": "x"}))["variable"][0]
    assert row["note"] == "MAXPHYADDR is not a number"


async def test_pair_fields_set_type_and_v_only(client):
    for t in sorted(MTRR_TYPES):
        for valid in (False, True):
            a = await post(client, "/page/mtrr-pair-fields",
                           {"base": "0x80000006", "mask": "0xff80000800", "type": t, "valid": valid})
            assert a == {"base": hex(0x80000000 | t), "mask": hex(0xFF80000000 | (0x800 if valid else 0))}
    err = await post(client, "/page/mtrr-pair-fields",
                     {"index": 5, "base": "0x0", "mask": "0x0", "type": 2, "valid": True}, 422)
    assert err["errors"][0]["loc"] == ["body", "vcpu", "mtrr", "variable", 5, "type"]


async def test_msr_value_reads_every_mtrr_msr(client):
    body = {"msr": "0x0", "mtrr": OVMF}
    state = MtrrState(0xC06, (0x0606060606060606,) * 2 + (0,) * 9, (VarMtrr(0x80000000, 0x3FFF80000800),))
    asked = [m for m in range(0x1000) if is_mtrr_msr(m)]
    assert len(asked) == 28
    for m in asked:
        got = (await post(client, "/page/msr-value", {**body, "msr": hex(m)}))["value"]
        assert int(got, 16) == state.read_msr(m), msr_name(m)
    err = await post(client, "/page/msr-value", {**body, "msr": "0x277"}, 422)
    assert err["errors"][0]["loc"] == ["body", "msr"]
    bad = {**OVMF, "variable": [{"base": "0x80000000", "mask": "nope"}]}
    err = await post(client, "/page/msr-value", {"msr": "0x2ff", "mtrr": bad}, 422)
    assert err["errors"][0]["loc"] == ["body", "mtrr", "variable", 0, "mask"]


async def test_page_lists_the_mtrr_msrs_from_the_core(client):
    from app.pages import REGISTERS

    msrs = REGISTERS["mtrr_msrs"]
    assert [int(m["msr"], 16) for m in msrs][:2] == [0x2FF, 0x250]
    assert sorted(int(m["msr"], 16) for m in msrs) == [m for m in range(0x1000) if is_mtrr_msr(m)]
    assert all(m["name"] == msr_name(int(m["msr"], 16)) for m in msrs)


@pytest.mark.parametrize("a, b", [("v6.7", "v4.2"), ("v6.11", "v6.7"), ("v4.2", "v6.16")])
async def test_diff_state_reproduces_every_group(client, a, b):
    """Every group of the era diff, opened from an unrelated scenario (OVMF, Linux PAT, CD
    and NW set, a BAR address): resolve then gives the group's EPT entries in both eras."""
    d = await post(client, "/api/v1/diff", {"a": a, "b": b, "limit": 0})
    base = {"kernel": a, "gpa": "0x100000", "vm": {"noncoherent_dma": True},
            "vcpu": {"cr0_cd": True, "cr0_nw": True, "pat": f"{PAT_LINUX:#x}", "mtrr": OVMF}}
    assert d["groups"] and d["counts"]["differ"] == sum(g["count"] for g in d["groups"])
    for g in d["groups"]:
        sc = await post(client, "/page/diff-state", {"scenario": base, "pattern": g["pattern"]})
        for era, want in ((a, g["ept_a"]), (b, g["ept_b"])):
            r = await post(client, "/api/v1/resolve", {**sc, "kernel": era})
            assert r["ept"]["notation"] == want["notation"], (g["pattern"], era)
        p = g["pattern"]
        if p["cr0_cd"] is False:
            assert sc["vcpu"]["cr0_nw"] is False  # NW=1 needs CD=1
        if p["pat"] == "*":
            assert sc["vcpu"]["pat"] == f"{PAT_LINUX:#018x}"
        if p["guest_mtrr"] == "*":
            assert sc["vcpu"]["mtrr"]["variable"] == OVMF["variable"]
        assert sc["gpa"] == "0x100000"


async def test_diff_state_refuses_what_is_no_state(client):
    base = {"kernel": "v6.7", "gpa": "0x0"}
    for pattern, key in (({"foo": True}, "foo"), ({"pat": "XX"}, "pat"), ({"cr0_cd": "1"}, "cr0_cd"),
                         ({"guest_mtrr": "UC-"}, "guest_mtrr")):
        err = await post(client, "/page/diff-state", {"scenario": base, "pattern": pattern}, 422)
        assert err["errors"][0]["loc"] == ["body", "pattern", key], err


@pytest.mark.parametrize("body, loc", [
    ({"pat": "0x" + "0" * 100}, ["body", "pat"]),
    ({"maxphyaddr": "x" * 20}, ["body", "maxphyaddr", "int"]),  # then constrained-str
    ({"mtrr": {"fixed": ["0x0"] * 12}}, ["body", "mtrr", "fixed"]),
    ({"mtrr": {"variable": [{"base": "0x0", "mask": "0x0"}] * 9}}, ["body", "mtrr", "variable"]),
    ({"mtrr": {"variable": [{"base": "0x0", "mask": "0x0", "type": 6}]}}, ["body", "mtrr", "variable", 0, "type"]),
])
async def test_registers_refuses_oversized_or_unknown_input(client, body, loc):
    """Bounded before any work: the editors never hold more than 11 fixed MSRs, 8 pairs and
    short hex strings."""
    err = await post(client, "/page/registers", body, 422)
    assert err["errors"][0]["loc"] == loc, err
