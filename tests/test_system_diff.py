"""POST /api/v1/diff across systems (issue 14): a KVM era, KVM on AMD and Xen over their
joint state space.

Every expectation here is an oracle written from the docs, independently of
app/system_diff.py: the KVM eras' vmx_get_mt_mask() as tests/test_kvm_eras.py states it,
AMD from docs/systems/amd.md (host WB for RAM, UC for MMIO; the host x guest table;
hardware CR0.CD=1 with the quirk off is UC), Xen from docs/systems/xen.md
(epte_get_entry_emt()'s order for a 4K ram or mmio_direct entry; the guest's CR0.CD reaches
the hardware). The joint space is enumerated here too, and every row the API returns is
checked against the oracles, exhaustively.
"""

from __future__ import annotations

from itertools import product

import pytest

from app.render import WIDTH
from app.x86.memtype import MemType, relation
from tests.test_kvm_eras import DOC

pytestmark = pytest.mark.anyio

TYPES5 = ["UC", "WC", "WT", "WP", "WB"]
PAT6 = ["UC", "WC", "WT", "WP", "WB", "UC-"]
# the SDM's table (EPT or MTRR type row, PAT type column), IPAT clear
TABLE = {
    "UC": {"UC": "UC", "UC-": "UC", "WC": "WC", "WT": "UC", "WP": "UC", "WB": "UC"},
    "WC": {"UC": "UC", "UC-": "WC", "WC": "WC", "WT": "UC", "WP": "UC", "WB": "WC"},
    "WT": {"UC": "UC", "UC-": "UC", "WC": "WC", "WT": "WT", "WP": "WP", "WB": "WT"},
    "WP": {"UC": "UC", "UC-": "WC", "WC": "WC", "WT": "WT", "WP": "WP", "WB": "WP"},
    "WB": {"UC": "UC", "UC-": "UC", "WC": "WC", "WT": "WT", "WP": "WP", "WB": "WB"},
}
KVM_DIMS = ["is_mmio", "noncoherent_dma", "cr0_cd", "quirk_cd_nw_cleared", "quirk_ignore_guest_pat", "self_snoop"]
READS = {
    "kvm-intel": {*KVM_DIMS, "guest_mtrr", "pat"},
    "kvm-amd": {"is_mmio", "cr0_cd", "quirk_cd_nw_cleared", "guest_mtrr", "pat"},
    "xen": {"is_mmio", "cr0_cd", "guest_mtrr", "pat", "xen_iommu", "xen_io"},
}
ORDER = [*KVM_DIMS, "guest_mtrr", "pat", "xen_iommu", "xen_io"]
VALUES = {**{k: [False, True] for k in KVM_DIMS}, "guest_mtrr": TYPES5, "pat": PAT6, "xen_iommu": [False, True],
          "xen_io": [False, True]}
DEFAULT = {"quirk_cd_nw_cleared": True, "quirk_ignore_guest_pat": True, "self_snoop": True}


class Fault:  # what DOC's functions read, by attribute
    def __init__(self, st):
        self.__dict__.update(st)
        self.guest_mtrr = MemType.from_label(st["guest_mtrr"])


def intel(era: str, st):
    """(entry, effective) or None when the era cannot have the state."""
    if not st["quirk_ignore_guest_pat"] and (era != "v6.16" or not st["self_snoop"]):
        return None
    mt, ipat = DOC[era](Fault(st))
    eff = mt.label if ipat else TABLE[mt.label][st["pat"]]
    return mt.label + ("!" if ipat else ""), eff


def amd(series: tuple[int, int], st):
    if not st["quirk_ignore_guest_pat"] and series < (6, 16):
        return None
    host = "UC" if st["is_mmio"] else "WB"
    if st["cr0_cd"] and not st["quirk_cd_nw_cleared"]:
        return f"NPT: host {host}", "UC"
    return f"NPT: host {host}", TABLE[host][st["pat"]]  # the modelled table is the SDM's with host as the MTRR


def xen(st):
    if st["is_mmio"]:
        emt, ipat = "UC", False  # test 4, p2m_mmio_direct
    elif not st["xen_iommu"] and not st["xen_io"]:
        emt, ipat = "WB", True  # test 2
    else:
        emt, ipat = st["guest_mtrr"], False  # tests 7-8: guest type combined with host WB
    entry = emt + ("!" if ipat else "")
    if st["cr0_cd"]:
        return entry, "UC"  # the guest's CD is the hardware's
    return entry, emt if ipat else TABLE[emt][st["pat"]]


def oracle(spec):
    kind, arg = spec
    if kind == "kvm-intel":
        return lambda st: intel(arg, st)
    if kind == "kvm-amd":
        return lambda st: amd(arg, st)
    return xen


PAIRS = [
    ({"a": "v6.16", "b": "xen"}, ("kvm-intel", "v6.16"), ("xen", None)),
    ({"a": "v4.2", "b": "xen-4.19"}, ("kvm-intel", "v4.2"), ("xen", None)),
    ({"a": "xen", "b": "v6.7"}, ("xen", None), ("kvm-intel", "v6.7")),
    ({"a": "6.8", "a_vendor": "amd", "b": "v6.7"}, ("kvm-amd", (6, 8)), ("kvm-intel", "v6.7")),
    ({"a": "v6.11", "b": "4.14", "b_vendor": "amd"}, ("kvm-intel", "v6.11"), ("kvm-amd", (4, 14))),
    ({"a": "6.16", "a_vendor": "amd", "b": "xen"}, ("kvm-amd", (6, 16)), ("xen", None)),
    ({"a": "5.2", "a_vendor": "amd", "b": "6.19", "b_vendor": "amd"}, ("kvm-amd", (5, 2)), ("kvm-amd", (6, 19))),
    ({"a": "xen-4.19", "b": "xen-4.21"}, ("xen", None), ("xen", None)),
]


def brute(spec_a, spec_b):
    dims = [d for d in ORDER if d in READS[spec_a[0]] | READS[spec_b[0]]]
    fa, fb = oracle(spec_a), oracle(spec_b)
    rows, total, compared = {}, 0, 0
    comparable = "kvm-amd" not in (spec_a[0], spec_b[0])
    for vals in product(*(VALUES[d] for d in dims)):
        total += 1
        st = {"is_mmio": False, "noncoherent_dma": False, "cr0_cd": False, **DEFAULT, "guest_mtrr": "WB",
              "pat": "WB", "xen_iommu": False, "xen_io": False, **dict(zip(dims, vals, strict=True))}
        a, b = fa(st), fb(st)
        if a is None or b is None:
            continue
        compared += 1
        if a[1] != b[1] or (comparable and a[0] != b[0]):
            rows[tuple(st[d] for d in dims)] = (a, b)
    return dims, total, compared, rows


@pytest.mark.parametrize("body, spec_a, spec_b", PAIRS)
async def test_every_row_against_the_oracles(client, body, spec_a, spec_b):
    r = await client.post("/api/v1/diff", json={**body, "limit": 5000})
    assert r.status_code == 200, r.text
    j = r.json()
    dims, total, compared, want = brute(spec_a, spec_b)
    assert [d["name"] for d in j["dimensions"] if d["in_space"]] == dims
    assert (j["total_states"], j["compared"]) == (total, compared)
    assert j["truncated"] is False and len(j["rows"]) == len(want)
    counts = {"weaker": 0, "stronger": 0, "incomparable": 0, "same": 0}
    for row in j["rows"]:
        key = tuple(row["state"][d] for d in dims)
        (ea, xa), (eb, xb) = want[key]
        assert (row["entry_a"], row["effective_a"], row["entry_b"], row["effective_b"]) == (ea, xa, eb, xb), row
        cls = relation(MemType.from_label(xb), MemType.from_label(xa))
        assert row["classification"] == cls
        counts[cls] += 1
    assert j["counts"] == {"differ": len(want), "weaker": counts["weaker"], "stronger": counts["stronger"],
                           "incomparable": counts["incomparable"], "entry_only": counts["same"]}
    assert sum(g["count"] for g in j["groups"]) == len(want)


async def test_dimension_status_and_what_each_lacks(client):
    j = (await client.post("/api/v1/diff", json={"a": "v6.16", "b": "xen"})).json()
    status = {d["name"]: (d["a"], d["b"]) for d in j["dimensions"]}
    assert status == {
        "is_mmio": ("read", "read"), "noncoherent_dma": ("read", "absent"), "cr0_cd": ("read", "read"),
        "quirk_cd_nw_cleared": ("read", "absent"), "quirk_ignore_guest_pat": ("read", "absent"),
        "self_snoop": ("read", "not read"), "guest_mtrr": ("read", "read"), "pat": ("read", "read"),
        "xen_iommu": ("absent", "read"), "xen_io": ("absent", "read")}
    assert j["only_a"] == ["noncoherent_dma", "quirk_cd_nw_cleared", "quirk_ignore_guest_pat"]
    assert j["only_b"] == ["xen_iommu", "xen_io"]
    assert any(m.startswith("is_mmio: A kvm_is_mmio_pfn()") for m in j["mapping"])
    assert j["entries_comparable"] is True
    amd = (await client.post("/api/v1/diff", json={"a": "6.8", "a_vendor": "amd", "b": "v6.7"})).json()
    assert amd["only_a"] == [] and amd["only_b"] == [] and amd["entries_comparable"] is False
    assert {d["name"]: d["a"] for d in amd["dimensions"]}["noncoherent_dma"] == "not read"
    assert amd["a"]["system"] == "kvm-amd" and amd["a"]["svm"]["series"] == "6.8"


async def test_the_era_diff_is_unchanged_for_two_intel_kernels(client):
    plain = await client.post("/api/v1/diff", json={"a": "v4.2", "b": "v6.7"})
    spelled = await client.post("/api/v1/diff", json={"a": "v4.2", "b": "v6.7", "a_vendor": "intel"})
    assert plain.text == spelled.text and "kernel_a" in plain.json()


@pytest.mark.parametrize("body, loc", [
    ({"a": "xen", "a_vendor": "amd", "b": "v6.7"}, ["body", "a_vendor"]),
    ({"a": "v6.7", "b": "xen-4.19", "b_vendor": "amd"}, ["body", "b_vendor"]),
    ({"a": "4.13.9", "a_vendor": "amd", "b": "xen"}, ["body", "a"]),
    ({"a": "series-v3", "a_vendor": "amd", "b": "xen"}, ["body", "a"]),
    ({"a": "v6.7", "b": "xen-4.0"}, ["body", "b"]),
    ({"a": "v6.7", "b": "xen", "a_vendor": "arm"}, ["body", "a_vendor"]),
])
async def test_refusals_name_the_field(client, body, loc):
    r = await client.post("/api/v1/diff", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == loc, r.text


@pytest.mark.parametrize("body, _a, _b", PAIRS)
async def test_text_is_72_columns(client, body, _a, _b):
    t = (await client.post("/api/v1/diff?format=text", json=body)).text
    assert t.startswith("memtype-explorer: cross-system diff\n")
    for line in t.splitlines():
        assert len(line) <= WIDTH and line.isascii(), line
