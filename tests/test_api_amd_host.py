"""AMD host PAT / host MTRR as inputs (`amd` in resolve, map, zap, diff; issue 14).

The oracle is written here from docs/systems/amd.md, not from app/kvm/svm.py: KVM's NPT
leaf selects host PAT entry 0; the host side is the host MTRR type x that entry by the
SDM's MTRR x PAT table; the guest's access then combines the host side (as the MTRR
column) with the g_pat entry by the same table. Exhaustive over host MTRR (5) x host PAT
entry 0 (6) for resolve, with the guest PAT holding all six types.
"""

from __future__ import annotations

import pytest

from app.cli import main
from app.permalink import decode, encode, request_body
from app.render import WIDTH

pytestmark = pytest.mark.anyio

# SDM MTRR x PAT (IPAT clear), row = MTRR type, column = PAT type
T = {
    "UC": {"UC": "UC", "UC-": "UC", "WC": "WC", "WT": "UC", "WP": "UC", "WB": "UC"},
    "WC": {"UC": "UC", "UC-": "WC", "WC": "WC", "WT": "UC", "WP": "UC", "WB": "WC"},
    "WT": {"UC": "UC", "UC-": "UC", "WC": "WC", "WT": "WT", "WP": "WP", "WB": "WT"},
    "WP": {"UC": "UC", "UC-": "WC", "WC": "WC", "WT": "WT", "WP": "WP", "WB": "WP"},
    "WB": {"UC": "UC", "UC-": "UC", "WC": "WC", "WT": "WT", "WP": "WP", "WB": "WB"},
}
ENC = {"UC": 0, "WC": 1, "WT": 4, "WP": 5, "WB": 6, "UC-": 7}
MTRR = ["UC", "WC", "WT", "WP", "WB"]
PAT6 = ["UC", "WC", "WT", "WP", "WB", "UC-"]
GUEST_PAT = ["WB", "WC", "WT", "WP", "UC", "UC-", "WB", "UC"]  # entry i's type
LINUX = "0x0407050600070106"


def pat_msr(types: list[str]) -> str:
    return f"{sum(ENC[t] << (8 * i) for i, t in enumerate(types)):#018x}"


def body(amd=None, **kw):
    b = {"kernel": "6.8", "vm": {"vendor": "amd"}, "gpa": "0x100000",
         "vcpu": {"pat": pat_msr(GUEST_PAT)}, **kw}
    if amd is not None:
        b["amd"] = amd
    return b


@pytest.mark.parametrize("host_mtrr", MTRR)
@pytest.mark.parametrize("entry0", PAT6)
async def test_resolve_every_host_mtrr_and_host_pat_entry(client, host_mtrr, entry0):
    host_pat = pat_msr([entry0, "WT", "UC-", "UC", "WB", "WT", "UC-", "UC"])
    r = await client.post("/api/v1/resolve", json=body({"host_pat": host_pat, "host_mtrr": host_mtrr}))
    assert r.status_code == 200, r.text
    j = r.json()
    host = T[host_mtrr][entry0]
    assert j["host"] == {"pat_index": 0, "pat_type": entry0, "mtrr": host_mtrr, "type": host,
                         **({"pat_msr": host_pat} if host_pat != LINUX else {})}
    assert [row["effective"] for row in j["pat"]] == [T[host][g] for g in GUEST_PAT]
    q = j["permalink"].split("?", 1)[1]
    assert q.endswith(f"&amd_host_pat={int(host_pat, 16):#x}&amd_host_mtrr={host_mtrr}")
    again = (await client.post("/api/v1/resolve", json=request_body(decode(q)))).json()
    assert again == j


async def test_defaults_given_are_the_answer_without_them(client):
    plain = await client.post("/api/v1/resolve", json=body())
    given = await client.post("/api/v1/resolve", json=body({"host_pat": LINUX}))
    empty = await client.post("/api/v1/resolve", json=body({}))
    assert plain.text == given.text == empty.text
    assert "pat_msr" not in plain.json()["host"] and "amd_host" not in plain.json()["permalink"]
    mmio = (await client.post("/api/v1/resolve", json=body(gpa="0x800000000"))).json()
    assert mmio["host"]["mtrr"] == "UC"  # by kind: the default map's GPU BAR


async def test_map_takes_the_host_facts(client):
    b = {"kernel": "6.19", "vm": {"vendor": "amd"}, "vcpu": {"pat": pat_msr(GUEST_PAT)}, "pat_index": 2}
    plain = (await client.post("/api/v1/map", json=b)).json()
    assert "host_mtrr" not in plain and plain["host_pat"] == LINUX
    j = (await client.post("/api/v1/map", json={**b, "amd": {"host_pat": pat_msr(["WC"] * 8),
                                                              "host_mtrr": "WT"}})).json()
    assert j["host_mtrr"] == "WT" and j["host_pat"] == pat_msr(["WC"] * 8)
    mapped = [r for r in j["runs"] if r["kind"] != "unmapped"]
    assert mapped and len(j["runs"]) == len(plain["runs"])
    for run in mapped:  # WT x WC = WC on the host side, whatever the kind; guest entry 2 is WT
        assert (run["npt"]["host_mtrr"], run["npt"]["host_pat_type"], run["npt"]["host_type"]) == ("WT", "WC", "WC")
        assert run["effective"] == T["WC"]["WT"] == "UC"
    kinds = {r["kind"]: r["npt"]["host_mtrr"] for r in plain["runs"] if r["npt"]}
    assert kinds == {"ram": "WB", "mmio": "UC"}


async def test_zap_takes_and_checks_them_without_changing_the_audit(client):
    ev = {"kind": "cr0_cd", "value": True}
    base = {"kernel": "6.5", "vm": {"vendor": "amd", "noncoherent_dma": True, "quirk_cd_nw_cleared": False},
            "event": ev}
    plain = (await client.post("/api/v1/zap", json=base)).json()
    given = (await client.post("/api/v1/zap", json={**base, "amd": {"host_mtrr": "UC"}})).json()
    assert given["permalink"].endswith("&amd_host_mtrr=UC")
    assert {**given, "permalink": ""} == {**plain, "permalink": ""}
    bad = await client.post("/api/v1/zap", json={**base, "amd": {"host_pat": "0x0000000000000300"}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "amd", "host_pat"]


@pytest.mark.parametrize("req, loc, says", [
    (body({"host_pat": "0x0000000000000002"}), ["body", "amd", "host_pat"], "PAT entry 0 has reserved type 2"),
    (body({"host_pat": "0x0300000000000006"}), ["body", "amd", "host_pat"], "PAT entry 7 has reserved type 3"),
    (body({"host_mtrr": "UC-"}), ["body", "amd", "host_mtrr"], ""),
    ({"kernel": "6.8", "gpa": "0x1000", "amd": {"host_mtrr": "WB"}}, ["body", "amd"],
     "AMD host facts given with vm.vendor intel"),
    ({"kernel": "6.16", "vm": {"type": "tdx"}, "gpa": "0x1000", "amd": {}}, ["body", "amd"],
     "AMD host facts given with vm.vendor intel"),
    ({"kernel": "xen", "gpa": "0x1000", "amd": {}}, ["body", "amd"], "AMD host facts given with a Xen kernel"),
])
async def test_refusals_name_the_field_and_rule(client, req, loc, says):
    for path in ("/api/v1/resolve", "/api/v1/permalink"):
        r = await client.post(path, json=req)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["errors"][0]["loc"] == loc, (path, r.text)
        assert says in r.text


async def test_diff_with_a_host(client):
    """KVM on AMD 6.8 against v6.7, host MTRR UC for every frame: the AMD side's RAM is UC
    (or WC where the guest PAT says WC), never weaker than the Intel side's."""
    b = {"a": "v6.7", "b": "6.8", "b_vendor": "amd", "amd": {"host_mtrr": "UC"}, "limit": 5000}
    j = (await client.post("/api/v1/diff", json=b)).json()
    assert j["b"]["host"] == f"host MTRR UC for every frame; host PAT {LINUX}, entry 0 WB"
    assert "host" not in j["a"]
    assert {d["name"]: d["b"] for d in j["dimensions"]}["is_mmio"] == "not read"  # one host MTRR for every frame
    assert "is_mmio: A kvm_is_mmio_pfn() of the host frame; B the host MTRR is UC for every frame " \
           "(amd.host_mtrr)" in j["mapping"]
    pat_only = (await client.post("/api/v1/diff", json={**b, "amd": {"host_pat": "0x0000000000000006"}})).json()
    assert {d["name"]: d["b"] for d in pat_only["dimensions"]}["is_mmio"] == "read"
    both = (await client.post("/api/v1/diff", json={"a": "5.2", "a_vendor": "amd", "b": "6.19", "b_vendor": "amd",
                                                    "amd": {"host_mtrr": "WC"}})).json()
    assert "is_mmio" not in [d["name"] for d in both["dimensions"] if d["in_space"]]
    assert "host (AMD, given): host MTRR UC for every frame; host PAT " + LINUX + ", entry 0 WB" in j["mapping"]
    for row in j["rows"]:
        assert row["entry_b"] == "NPT: host UC"
        st = row["state"]
        want = "UC" if st["cr0_cd"] and not st["quirk_cd_nw_cleared"] else T["UC"][st["pat"]]
        assert row["effective_b"] == want, row
    assert j["permalink"].endswith("?v=1&view=diff&kernel=v6.7&vs=6.8&vs_vendor=amd&amd_host_mtrr=UC")
    plain = (await client.post("/api/v1/diff", json={"a": "v6.7", "b": "6.8", "b_vendor": "amd"})).json()
    assert "host" not in plain["b"] and plain["counts"] != j["counts"]
    for pair in ({"a": "v6.7", "b": "xen"}, {"a": "v6.7", "b": "6.8"}):  # the same rule as the CLI's
        no_amd = await client.post("/api/v1/diff", json={**pair, "amd": {"host_mtrr": "UC"}})
        assert no_amd.status_code == 422 and no_amd.json()["errors"][0]["loc"] == ["body", "amd"]
        assert "amd needs a_vendor or b_vendor amd" in no_amd.text, no_amd.text


@pytest.mark.parametrize("sub, argv, api", [
    ("resolve", ["--kernel", "6.8", "--vendor", "amd", "--gpa", "0x100000", "--amd-host-pat", "0x1",
                 "--amd-host-mtrr", "WT"], "resolve"),
    ("zap", ["--kernel", "6.8", "--vendor", "amd", "--amd-host-mtrr", "WC", "--event", "cr0_cd",
             "--event-value", "1"], "zap"),
    ("diff", ["6.8", "v6.7", "--a-vendor", "amd", "--amd-host-mtrr", "WP"], "diff"),
])
async def test_cli_is_the_api_text(client, capsys, sub, argv, api):
    rc = main([sub, *argv, "--base-url", "http://testserver"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    lines = out.out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("Permalink"))
    link = "".join(line.strip() for line in lines[i + 1:] if line.startswith("  "))
    state = decode(link.split("?", 1)[1])
    r = await client.post(f"/api/v1/{api}?format=text", json=request_body(state))
    assert r.status_code == 200, r.text
    assert out.out.rstrip("\n") == r.text.rstrip("\n")
    assert all(len(line) <= WIDTH for line in lines)


@pytest.mark.parametrize("argv, says", [
    (["resolve", "--kernel", "6.8", "--amd-host-mtrr", "WB"],
     "amd: --amd-host-* options given with --vendor intel (--amd-host-* needs --vendor amd)"),
    (["zap", "--kernel", "xen", "--amd-host-mtrr", "WB", "--event", "cr0_cd", "--event-value", "1"],
     "amd: --amd-host-* options given with a Xen kernel (--amd-host-* needs --vendor amd)"),
    (["resolve", "--kernel", "6.8", "--vendor", "amd", "--amd-host-pat", "0x2"], "PAT entry 0 has reserved type 2"),
    (["diff", "v6.8", "xen", "--amd-host-mtrr", "WB"],
     "amd: --amd-host-* options given without an AMD side (--amd-host-* needs --a-vendor or --b-vendor amd)"),
])
def test_cli_refusals(capsys, argv, says):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and says in " ".join(err.split()), err


@pytest.mark.parametrize("query", [
    "v=1&kernel=6.8&vendor=amd&amd_host_pat=0x1&amd_host_mtrr=WT",
    "v=1&view=diff&kernel=6.8&vs=xen&vendor=amd&amd_host_mtrr=UC",
])
def test_links_round_trip(query):
    state = decode(query)
    assert encode(state) == query
