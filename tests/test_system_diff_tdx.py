"""A TDX VM as a side of the cross-system diff (POST /api/v1/diff `a_type`/`b_type` tdx,
issue 14).

The TD oracle here is written from docs/systems/tdx.md and the sources it cites, not from
app/system_diff.py: a shared GPA's EPT entry is vmx_get_mt_mask()'s with
IGNORE_GUEST_PAT forced off by tdx_vm_init(), so host MMIO is UC and RAM WB *without*
IPAT, the guest's PAT combining by the SDM's table; the TDX module fixes CR0.CD to 0, so
a state with CR0.CD=1 is one the TD cannot have. Nothing else (nc-DMA, the quirks,
self-snoop) changes a TD's answer. The other sides' oracles are tests/test_system_diff's.
Every state of the joint space is enumerated here and every row checked.
"""

from __future__ import annotations

from itertools import product

import pytest

from app.cli import main
from app.permalink import decode, encode, request_body
from app.render import WIDTH
from app.x86.memtype import MemType, relation
from tests.test_system_diff import ORDER, TABLE, VALUES, amd, intel, xen

pytestmark = pytest.mark.anyio

READS = {
    "kvm-intel": {"is_mmio", "noncoherent_dma", "cr0_cd", "quirk_cd_nw_cleared", "quirk_ignore_guest_pat",
                  "self_snoop", "guest_mtrr", "pat"},
    "kvm-amd": {"is_mmio", "cr0_cd", "quirk_cd_nw_cleared", "guest_mtrr", "pat"},
    "kvm-tdx": {"is_mmio", "guest_mtrr", "pat"},
    "xen": {"is_mmio", "cr0_cd", "guest_mtrr", "pat", "xen_iommu", "xen_io"},
}
CD_RULE = "the TDX module fixes CR0.CD to 0; setting it raises #VE (edk2 SecMain.c, citing the TDX spec)"


def tdx(st):
    """(entry, effective) of a TD's shared GPA, or None for a state a TD cannot have."""
    if st["cr0_cd"]:
        return None
    ept = "UC" if st["is_mmio"] else "WB"
    return ept, TABLE[ept][st["pat"]]


def oracle(spec):
    kind, arg = spec
    return {"kvm-intel": lambda st: intel(arg, st), "kvm-amd": lambda st: amd(arg, st), "kvm-tdx": tdx,
            "xen": xen}[kind]


PAIRS = [
    ({"a": "v6.16", "b": "6.16", "b_type": "tdx"}, ("kvm-intel", "v6.16"), ("kvm-tdx", None)),
    ({"a": "6.19", "a_type": "tdx", "b": "v6.7"}, ("kvm-tdx", None), ("kvm-intel", "v6.7")),
    ({"a": "v4.2", "b": "v6.16", "b_type": "tdx"}, ("kvm-intel", "v4.2"), ("kvm-tdx", None)),
    ({"a": "6.16", "a_type": "tdx", "b": "xen"}, ("kvm-tdx", None), ("xen", None)),
    ({"a": "xen-4.19", "b": "6.17", "b_type": "tdx"}, ("xen", None), ("kvm-tdx", None)),
    ({"a": "6.8", "a_vendor": "amd", "b": "6.16", "b_type": "tdx"}, ("kvm-amd", (6, 8)), ("kvm-tdx", None)),
    ({"a": "6.16", "a_type": "tdx", "b": "6.19", "b_type": "tdx"}, ("kvm-tdx", None), ("kvm-tdx", None)),
]


def brute(spec_a, spec_b):
    dims = [d for d in ORDER if d in READS[spec_a[0]] | READS[spec_b[0]]]
    fa, fb = oracle(spec_a), oracle(spec_b)
    rows, total, compared, skipped_cd = {}, 0, 0, 0
    comparable = "kvm-amd" not in (spec_a[0], spec_b[0])
    for vals in product(*(VALUES[d] for d in dims)):
        total += 1
        st = {"is_mmio": False, "noncoherent_dma": False, "cr0_cd": False, "quirk_cd_nw_cleared": True,
              "quirk_ignore_guest_pat": True, "self_snoop": True, "guest_mtrr": "WB", "pat": "WB",
              "xen_iommu": False, "xen_io": False, **dict(zip(dims, vals, strict=True))}
        a, b = fa(st), fb(st)
        if a is None or b is None:  # the API counts A's reason when both refuse
            skipped_cd += (spec_a if a is None else spec_b)[0] == "kvm-tdx" and st["cr0_cd"]
            continue
        compared += 1
        if a[1] != b[1] or (comparable and a[0] != b[0]):
            rows[tuple(st[d] for d in dims)] = (a, b)
    return dims, total, compared, rows, skipped_cd


@pytest.mark.parametrize("body, spec_a, spec_b", PAIRS)
async def test_every_row_against_the_oracles(client, body, spec_a, spec_b):
    r = await client.post("/api/v1/diff", json={**body, "limit": 5000})
    assert r.status_code == 200, r.text
    j = r.json()
    dims, total, compared, want, skipped_cd = brute(spec_a, spec_b)
    assert [d["name"] for d in j["dimensions"] if d["in_space"]] == dims
    assert (j["total_states"], j["compared"]) == (total, compared)
    assert j["skipped"].get(CD_RULE, 0) == skipped_cd
    assert j["truncated"] is False and len(j["rows"]) == len(want)
    for row in j["rows"]:
        (ea, xa), (eb, xb) = want[tuple(row["state"][d] for d in dims)]
        assert (row["entry_a"], row["effective_a"], row["entry_b"], row["effective_b"]) == (ea, xa, eb, xb), row
        assert row["classification"] == relation(MemType.from_label(xb), MemType.from_label(xa))
    assert j["counts"]["differ"] == len(want)
    assert sum(g["count"] for g in j["groups"]) == len(want)


async def test_figures_of_a_td_against_its_own_era():
    """Counted by hand from the oracles: v6.16 vs a 6.16 TD."""
    dims, total, compared, want, skipped_cd = brute(("kvm-intel", "v6.16"), ("kvm-tdx", None))
    # 2^6 booleans x 5 MTRR x 6 PAT = 1920; the TD refuses CR0.CD=1 (960), v6.16 refuses
    # the quirk off without self-snoop (a quarter: 480, of which 240 also have CR0.CD=1 and
    # count under A's reason): 1920 - 960 - 240 = 720 compared, 720 skipped for CR0.CD.
    assert (total, compared, skipped_cd) == (1920, 720, 720)
    # They differ only on RAM with the quirk on and no nc-DMA (v6.16 WB!, the TD WB with the
    # PAT deciding): CD_NW quirk x self-snoop x 5 MTRR x 6 PAT = 2 x 2 x 5 x 6 = 120.
    assert len(want) == 120
    assert sum(1 for (a, b) in want.values() if a[1] == b[1]) == 20  # PAT WB: entry only


async def test_dimension_status_fixed_and_not_read(client):
    j = (await client.post("/api/v1/diff", json={"a": "v6.16", "b": "6.16", "b_type": "tdx"})).json()
    status = {d["name"]: d["b"] for d in j["dimensions"]}
    assert status == {"is_mmio": "read", "noncoherent_dma": "not read", "cr0_cd": "fixed",
                      "quirk_cd_nw_cleared": "not read", "quirk_ignore_guest_pat": "not read",
                      "self_snoop": "not read", "guest_mtrr": "read", "pat": "read", "xen_iommu": "absent",
                      "xen_io": "absent"}
    cd = next(d for d in j["dimensions"] if d["name"] == "cr0_cd")
    assert cd["fixed_b"] is False and "fixed_a" not in cd
    assert all("fixed_a" not in d and ("fixed_b" not in d or d["name"] == "cr0_cd") for d in j["dimensions"])
    assert j["b"]["system"] == "kvm-tdx" and j["b"]["era"] == "v6.16" and j["b"]["kernel_info"]["era"] == "v6.16"
    assert j["only_a"] == [] and j["only_b"] == [] and j["entries_comparable"] is True
    assert any(m.startswith("cr0_cd: TDX v6.16 fixes it to 0") for m in j["mapping"])
    assert any(m.startswith("private GPA (TD):") for m in j["mapping"])
    assert j["permalink"].endswith("?v=1&view=diff&vs=6.16&vs_type=tdx")
    # no TD side: no fixed member, no private line (the answers before TDX was a side)
    x = (await client.post("/api/v1/diff", json={"a": "v6.16", "b": "xen"})).json()
    assert all("fixed_a" not in d and "fixed_b" not in d for d in x["dimensions"])
    assert not any(m.startswith("private GPA") for m in x["mapping"])


@pytest.mark.parametrize("body, loc, says", [
    ({"a": "6.15", "a_type": "tdx", "b": "v6.16"}, ["body", "a_type"], "no TDX VMs under '6.15'"),
    ({"a": "v6.11", "b": "v6.11", "b_type": "tdx"}, ["body", "b_type"], "no TDX VMs under 'v6.11'"),
    ({"a": "6.16", "a_type": "tdx", "a_vendor": "amd", "b": "v6.16"}, ["body", "a_type"],
     "a TDX VM needs an Intel CPU (a_vendor is amd)"),
    ({"a": "xen", "a_type": "tdx", "b": "v6.16"}, ["body", "a_type"], "tdx given with 'xen'"),
    ({"a": "v6.16", "b": "6.16", "b_type": "sev"}, ["body", "b_type"], ""),
])
async def test_refusals_name_the_field_and_rule(client, body, loc, says):
    r = await client.post("/api/v1/diff", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["loc"] == loc, r.text
    assert says in r.text


async def test_cli_diff_is_the_api_text(client, capsys):
    rc = main(["diff", "v6.16", "6.16", "--b-type", "tdx", "--base-url", "http://testserver"])
    out = capsys.readouterr().out
    assert rc == 0
    t = (await client.post("/api/v1/diff?format=text", json={"a": "v6.16", "b": "6.16", "b_type": "tdx"})).text
    assert out.rstrip("\n") == t.rstrip("\n")
    assert "Dimensions (read / not read / absent / fixed)" in t
    assert all(len(line) <= WIDTH and line.isascii() for line in t.splitlines())


@pytest.mark.parametrize("query, body", [
    ("v=1&view=diff&kernel=v6.7&vs=6.16&vs_type=tdx", {"a": "v6.7", "b": "6.16", "b_type": "tdx"}),
    ("v=1&view=diff&kernel=6.19&vs=xen&vmtype=tdx", {"a": "6.19", "b": "xen", "a_type": "tdx"}),
])
def test_links_round_trip(query, body):
    state = decode(query)
    assert encode(state) == query
    assert request_body(state) == body


async def test_permalink_endpoint_carries_vs_type(client):
    j = (await client.post("/api/v1/permalink", json={"kernel": "v6.16", "vs": "6.16", "vs_type": "tdx",
                                                      "view": "diff"})).json()
    assert j["query"] == "v=1&view=diff&vs=6.16&vs_type=tdx"
