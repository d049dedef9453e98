"""POST /api/v1/map for AMD (vm.vendor amd), TDX (vm.type tdx) and Xen (kernel xen...).

The expected types are tables restated here from docs/systems/{amd,tdx,xen}.md and the
sources they cite (the SDM's EPT x PAT table; the AMD host x guest table as modelled;
Xen's epte_get_entry_emt() order), not computed with the code under test.
"""

from __future__ import annotations

import pytest

from app.api.schemas import OVMF_MTRR

pytestmark = pytest.mark.anyio

RUN_KEYS = {"start", "end", "kind", "label", "guest_mtrr", "kvm_mtrr", "ept", "effective", "expected", "relation",
            "page_size"}
TYPES = ("UC", "WC", "WT", "WP", "WB", "UC-")
# encodings 0,1,4,5,6,7 for the PAT entries, in index order, for a PAT of all eight types
PAT_ENTRIES = ["UC", "WB", "UC", "WC", "WT", "WP", "UC-", "UC"]
"""A PAT holding every type (pat_hex writes it; PA0 is byte 0): UC, WB, UC, WC, WT,
WP, UC-, UC."""
POWER_ON = ["WB", "WT", "UC-", "UC", "WB", "WT", "UC-", "UC"]

# SDM vol 3A "memory type used for accesses" with EPT, IPAT clear: EPT type (row) x PAT
# type (column). UC- under a non-UC EPT type is UC, except WC EPT gives WC.
EPT_X_PAT = {
    "UC": {"UC": "UC", "UC-": "UC", "WC": "WC", "WT": "UC", "WP": "UC", "WB": "UC"},
    "WC": {"UC": "UC", "UC-": "WC", "WC": "WC", "WT": "UC", "WP": "UC", "WB": "WC"},
    "WT": {"UC": "UC", "UC-": "UC", "WC": "WC", "WT": "WT", "WP": "WP", "WB": "WT"},
    "WP": {"UC": "UC", "UC-": "WC", "WC": "WC", "WT": "WT", "WP": "WP", "WB": "WP"},
    "WB": {"UC": "UC", "UC-": "UC", "WC": "WC", "WT": "WT", "WP": "WP", "WB": "WB"},
}
# docs/systems/amd.md "Host type x guest PAT type, as modelled" (rows host, columns guest)
AMD_HOST_X_GUEST = {
    "UC": {"UC": "UC", "UC-": "UC", "WC": "WC", "WT": "UC", "WP": "UC", "WB": "UC"},
    "WB": {"UC": "UC", "UC-": "UC", "WC": "WC", "WT": "WT", "WP": "WP", "WB": "WB"},
}


def pat_hex(entries: list[str]) -> str:
    enc = {"UC": 0, "WC": 1, "WT": 4, "WP": 5, "WB": 6, "UC-": 7}
    return hex(sum(enc[t] << (8 * i) for i, t in enumerate(entries)))


assert pat_hex(POWER_ON) == "0x7040600070406"


async def post_map(client, body: dict, status: int = 200) -> dict:
    r = await client.post("/api/v1/map", json=body)
    assert r.status_code == status, r.text
    return r.json()


def run_at(j: dict, addr: int) -> dict:
    return next(r for r in j["runs"] if int(r["start"], 16) <= addr < int(r["end"], 16))


def check_cover(j: dict, maxphyaddr: int = 46) -> None:
    runs = j["runs"]
    assert runs[0]["start"] == "0x0" and int(runs[-1]["end"], 16) == 1 << maxphyaddr
    for a, b in zip(runs, runs[1:], strict=False):
        assert a["end"] == b["start"] and int(a["start"], 16) < int(a["end"], 16)
    for r in runs:
        assert set(r) >= RUN_KEYS, r
        if r["kind"] == "unmapped":
            assert (r["ept"], r["effective"], r["expected"], r["page_size"]) == (None, None, None, "")


BODIES = [
    ({"kernel": "v6.16"}, "kvm-intel"),
    ({"kernel": "6.8", "vm": {"vendor": "amd"}}, "kvm-amd"),
    ({"kernel": "6.16", "vm": {"type": "tdx"}}, "kvm-tdx"),
    ({"kernel": "xen"}, "xen"),
    ({"kernel": "xen-4.19", "xen": {"iommu": True}}, "xen"),
]


@pytest.mark.parametrize("body, system", BODIES)
async def test_every_system_has_the_run_shape(client, body, system):
    for maxphyaddr in (46, 52):
        b = {**body, "vm": {**body.get("vm", {}), "maxphyaddr": maxphyaddr}, "vcpu": {"mtrr": OVMF_MTRR}}
        j = await post_map(client, b)
        assert j["system"] == system
        check_cover(j, maxphyaddr)
        assert {"pat_index", "mtrr_ranges", "mtrr", "runs"} <= set(j)


# -- AMD ---------------------------------------------------------------------------------


@pytest.mark.parametrize("quirk", [True, False])
@pytest.mark.parametrize("cd", [False, True])
@pytest.mark.parametrize("pati", range(8))
async def test_amd_effective_per_pat_entry(client, pati, cd, quirk):
    """RAM: host WB, MMIO (the GPU BAR): host UC; the guest side is g_pat[pati] (6.8 follows
    the guest's PAT); hardware CR0.CD=1 (quirk off) makes everything UC."""
    body = {"kernel": "6.8", "vm": {"vendor": "amd", "quirk_cd_nw_cleared": quirk}, "pat_index": pati,
            "vcpu": {"pat": pat_hex(PAT_ENTRIES), "mtrr": OVMF_MTRR, "cr0_cd": cd}}
    j = await post_map(client, body)
    g = PAT_ENTRIES[pati]
    for addr, host in ((0x1000, "WB"), (0x100000000, "WB"), (0x800000000, "UC")):
        r = run_at(j, addr)
        want = "UC" if cd and not quirk else AMD_HOST_X_GUEST[host][g]
        assert r["effective"] == want, (addr, r)
        assert r["ept"] is None and r["kvm_mtrr"] is None
        assert r["npt"] == {"host_pat_index": 0, "pte_bits": "0x00", "host_pat_type": "WB", "host_mtrr": host,
                            "host_type": host, "gpat_type": g}


async def test_amd_before_4_14_runs_on_the_reset_gpat(client):
    """4.13 has no MSR_IA32_CR_PAT case in svm_set_msr(): g_pat stays the power-on PAT."""
    for pati in range(8):
        body = {"kernel": "4.13.9", "vm": {"vendor": "amd"}, "pat_index": pati,
                "vcpu": {"pat": pat_hex(PAT_ENTRIES)}}
        r = run_at(await post_map(client, body), 0x1000)
        assert r["npt"]["gpat_type"] == POWER_ON[pati]


async def test_amd_answer_members(client):
    j = await post_map(client, {"kernel": "v6.16", "vm": {"vendor": "amd"}})
    assert (j["vendor"], j["type"], j["kernel"], j["host_pat"]) == ("amd", "default", "v6.16", "0x0407050600070106")
    assert j["kernel_info"]["series"] == "6.16"
    assert any("NOT verified" in n for n in j["notes"])
    assert j["runs"][0]["expected"] == "UC"  # MTRRs disabled: the guest expects UC


# -- TDX ---------------------------------------------------------------------------------


async def test_tdx_runs_are_v6_16_with_the_quirk_off(client):
    mtrr = {**OVMF_MTRR, "def_type": "0xc06"}
    td = await post_map(client, {"kernel": "6.16", "vm": {"type": "tdx"}, "vcpu": {"mtrr": mtrr}, "pat_index": 3})
    intel = await post_map(client, {"kernel": "6.16", "vm": {"quirk_ignore_guest_pat": False},
                                    "vcpu": {"mtrr": mtrr}, "pat_index": 3})
    assert td["runs"] == intel["runs"]
    assert td["tdx_fixed"] == ["vm.quirk_ignore_guest_pat"]
    for r in td["runs"]:
        if r["kind"] == "ram":
            assert r["ept"]["notation"] == "WB"
        elif r["kind"] == "mmio":
            assert r["ept"]["notation"] == "UC"


async def test_tdx_fixes_mtrr_def_type_when_left_out(client):
    j = await post_map(client, {"kernel": "6.16", "vm": {"type": "tdx"}})
    assert j["tdx_fixed"] == ["vm.quirk_ignore_guest_pat", "vcpu.mtrr.def_type"]
    assert j["mtrr"]["enabled"] is True and j["mtrr"]["default"]["type"] == "WB"


@pytest.mark.parametrize("body, loc", [
    ({"kernel": "6.16", "vm": {"type": "tdx"}, "vcpu": {"cr0_cd": True}}, ["body", "vcpu", "cr0_cd"]),
    ({"kernel": "6.16", "vm": {"type": "tdx", "quirk_ignore_guest_pat": True}},
     ["body", "vm", "quirk_ignore_guest_pat"]),
    ({"kernel": "6.8", "vm": {"type": "tdx"}}, ["body", "vm", "type"]),
    ({"kernel": "6.16", "vm": {"type": "tdx", "vendor": "amd"}}, ["body", "vm", "type"]),
    ({"kernel": "6.16", "vm": {"type": "tdx"}, "vcpu": {"mtrr": {"def_type": "0x800"}}},
     ["body", "vcpu", "mtrr", "def_type"]),
    ({"kernel": "6.8", "vm": {"vendor": "amd", "quirk_ignore_guest_pat": False}},
     ["body", "vm", "quirk_ignore_guest_pat"]),
    ({"kernel": "series-v3", "vm": {"vendor": "amd"}}, ["body", "kernel"]),
    ({"kernel": "v6.16", "xen": {}}, ["body", "xen"]),
    ({"kernel": "xen", "vm": {"noncoherent_dma": True}}, ["body", "vm"]),
    ({"kernel": "xen", "vm": {"vendor": "amd"}}, ["body", "vm"]),  # a KVM setting, as nc-DMA (one Xen refusal)
    ({"kernel": "xen-4.0"}, ["body", "kernel"]),
    ({"kernel": "xen", "xen": {"pinned": [{"start": 0, "end": 15, "type": "UC"}]}},
     ["body", "xen", "pinned", 0, "type"]),
    ({"kernel": "xen", "xen": {"pci_devices": True}}, ["body", "xen", "pci_devices"]),
    ({"kernel": "xen", "xen": {"order": 9}}, ["body", "xen", "order"]),
    ({"kernel": "xen", "xen": {"host_mtrr": "mixed"}}, ["body", "xen", "host_mtrr"]),
])
async def test_refusals_name_the_field(client, body, loc):
    e = (await post_map(client, body, 422))["errors"][0]
    assert e["loc"] == loc, e


# -- Xen ---------------------------------------------------------------------------------

XEN_MTRR = {"def_type": "0xc06", "fixed": ["0x0606060606060606"] * 11,
            "variable": [{"base": "0x80000000", "mask": "0x3fff80000800"}]}
"""E, FE, default WB; fixed ranges all WB; 2 GiB-4 GiB UC (variable 0)."""


@pytest.mark.parametrize("pati", range(8))
async def test_xen_domain_without_passthrough_is_wb_ipat_but_mmio_direct_is_uc(client, pati):
    body = {"kernel": "xen", "pat_index": pati, "vcpu": {"pat": pat_hex(PAT_ENTRIES), "mtrr": XEN_MTRR}}
    j = await post_map(client, body)
    ram = run_at(j, 0x1000)
    assert (ram["ept"]["notation"], ram["ept"]["rule"], ram["effective"]) == ("WB!", "no_passthrough", "WB")
    assert ram["p2m_type"] == "p2m_ram_rw" and ram["kvm_mtrr"] is None
    bar = run_at(j, 0x800000000)
    assert (bar["ept"]["notation"], bar["ept"]["rule"], bar["p2m_type"]) == ("UC", "mmio_direct", "p2m_mmio_direct")
    assert bar["effective"] == EPT_X_PAT["UC"][PAT_ENTRIES[pati]]


@pytest.mark.parametrize("pati", range(8))
@pytest.mark.parametrize("host", ["UC", "WC", "WT", "WP", "WB"])
async def test_xen_iommu_domain_combines_guest_and_host_mtrrs(client, pati, host):
    """Xen's combine (docs/systems/xen.md table): equal stays, UC wins, WB yields, WT+WP=WP,
    other pairs (WC) UC; then the SDM EPT x PAT table, IPAT clear."""
    combine = {("WB", "UC"): "UC", ("WB", "WC"): "WC", ("WB", "WT"): "WT", ("WB", "WP"): "WP", ("WB", "WB"): "WB",
               ("UC", "UC"): "UC", ("UC", "WC"): "UC", ("UC", "WT"): "UC", ("UC", "WP"): "UC", ("UC", "WB"): "UC"}
    body = {"kernel": "xen", "pat_index": pati, "vcpu": {"pat": pat_hex(PAT_ENTRIES), "mtrr": XEN_MTRR},
            "xen": {"iommu": True, "host_mtrr": host}}
    j = await post_map(client, body)
    for addr, guest in ((0x100000000, "WB"), (0xFD000000, "UC")):
        r = run_at(j, addr)
        emt = combine[(guest, host)]
        assert (r["guest_mtrr"], r["xen_mtrr"]) == (guest, guest)
        assert (r["ept"]["memtype"], r["ept"]["ipat"], r["ept"]["rule"]) == (emt, False, "combine")
        assert r["effective"] == EPT_X_PAT[emt][PAT_ENTRIES[pati]]
    assert j["host_mtrr"] == host


async def test_xen_pinned_range_splits_a_run_and_wins(client):
    pinned = [{"start": 0x100100, "end": 0x1001FF, "type": "UC-"}]  # gfns: 1 MiB from 4 GiB + 1 MiB
    j = await post_map(client, {"kernel": "xen", "vcpu": {"mtrr": XEN_MTRR},
                                "xen": {"iommu": True, "pinned": pinned}})
    r = run_at(j, 0x100100000)
    assert (r["start"], r["end"]) == ("0x100100000", "0x100200000")
    assert (r["ept"]["notation"], r["ept"]["rule"], r["page_size"]) == ("UC!", "pinned", "4K")
    before, after = run_at(j, 0x1000FF000), run_at(j, 0x100200000)
    assert before["end"] == "0x100100000" and after["start"] == "0x100200000"
    assert before["ept"]["rule"] == after["ept"]["rule"] == "combine"


async def test_xen_page_size_follows_the_split_rule(client):
    """Below 1 MiB with FE set a 2M entry spans fixed sub-ranges: -1, split to 4K; the RAM
    above is 2M to 1 GiB, then 1G; without passthrough no MTRR is read and 1G fits too."""
    iommu = await post_map(client, {"kernel": "xen", "vcpu": {"mtrr": XEN_MTRR}, "xen": {"iommu": True}})
    assert run_at(iommu, 0x1000)["page_size"] == "4K"
    assert run_at(iommu, 0x100000)["page_size"] == "4K"  # [1M, 2M): no whole 2M block inside
    assert run_at(iommu, 0x200000)["page_size"] == "2M"
    assert run_at(iommu, 0x40000000)["page_size"] == "1G"
    assert run_at(iommu, 0x100000000)["page_size"] == "1G"


async def test_xen_cr0_cd(client):
    """Guest CD=1 reaches the hardware CR0: every access UC; vmx_handle_cd's all-UC PAT only
    for an IOMMU domain with I/O or PCI devices."""
    for xen, handle in (({"iommu": True, "pci_devices": True}, True), ({"iommu": True}, False), ({}, False)):
        j = await post_map(client, {"kernel": "xen", "vcpu": {"cr0_cd": True, "mtrr": XEN_MTRR}, "xen": xen})
        assert j["cr0_cd"]["hw_cr0_cd"] is True and j["cr0_cd"]["handle_cd"] is handle
        assert j["cr0_cd"]["vmcs_pat"] == ("0x0000000000000000" if handle else "0x0007040600070406")
        assert j["cr0_cd"]["cache_mode"] == ("no-fill" if handle else "normal")
        assert {r["effective"] for r in j["runs"] if r["kind"] != "unmapped"} == {"UC"}


async def test_xen_4_19_counts_no_pci_devices_for_cache_flush(client):
    """4.19: cache_flush_permitted() is iomem/ioports only, but an IOMMU domain still reads
    the MTRRs (test 2 needs no IOMMU *and* no cache flush permission)."""
    for kernel in ("xen-4.19", "xen-4.21"):
        j = await post_map(client, {"kernel": kernel, "vcpu": {"mtrr": XEN_MTRR},
                                    "xen": {"iommu": True, "pci_devices": True}})
        assert run_at(j, 0x1000)["ept"]["rule"] == "combine"
        assert j["version"]["id"] == kernel
