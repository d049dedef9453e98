"""POST /api/v1/zap with kernel xen (issue 14): Xen marks EPT entries EMT 7 and recomputes
them on the next access instead of zapping.

The expectations are the table of docs/systems/xen.md ("Events: EMT 7 instead of zaps" and
the gate of memory_type_changed()), restated here from xen/arch/x86/hvm/mtrr.c and
xen/include/xen/iocap.h at RELEASE-4.19.0 / RELEASE-4.22.0, not computed with the code.
"""

from __future__ import annotations

import itertools

import pytest

from app.render import WIDTH

pytestmark = pytest.mark.anyio

MTRR = {"def_type": "0xc06", "variable": [{"base": "0x80000000", "mask": "0x3fff80000800"}]}
"""E=1, FE=1, default WB, 2-4 GiB UC; fixed ranges all UC (omitted = 0)."""
DOMAINS = [{"iommu": i, "io_resources": io, "pci_devices": p}
           for i, io, p in itertools.product((False, True), repeat=3) if i or not p]
EVENTS = {
    "def_type change": {"kind": "mtrr_write", "msr": "0x2ff", "value": "0x806"},  # FE off
    "def_type same": {"kind": "mtrr_write", "msr": "0x2ff", "value": "0xc06"},
    "var base change": {"kind": "mtrr_write", "msr": "0x200", "value": "0xc0000000"},
    "fixed change": {"kind": "mtrr_write", "msr": "0x250", "value": "0x0606060606060606"},
    "pat": {"kind": "pat_write", "value": "0x0007040600070406"},
    "cd on": {"kind": "cr0_cd", "value": True},
    "io attach": {"kind": "passthrough_attach", "resource": "io"},
    "io detach": {"kind": "passthrough_detach", "resource": "io"},
    "pci attach": {"kind": "passthrough_attach", "resource": "pci"},
}
INVALIDATED = "invalidated, recomputed on next access"


def cache_flush_permitted(version: str, d: dict) -> bool:
    return d["io_resources"] or (version == "xen-4.21" and d["pci_devices"])


def gate(version: str, d: dict) -> bool:
    """memory_type_changed(): 4.19 (IOMMU or cache flush permission), 4.21 the latter only."""
    return (d["iommu"] or cache_flush_permitted(version, d)) if version == "xen-4.19" \
        else cache_flush_permitted(version, d)


def expected(version: str, d: dict, name: str) -> bool | None:
    """Whether the EPT is invalidated; None: the event is refused (422)."""
    if name in ("def_type change", "var base change", "fixed change"):  # values change with E (and FE) set
        return gate(version, d)
    if name in ("def_type same", "pat", "cd on"):
        return False
    if name == "io attach":  # iomem_permit_access: no IOMMU and no permission before
        return not d["iommu"] and not cache_flush_permitted(version, d) and gate(version, {**d, "io_resources": True})
    if name == "io detach":
        if not d["io_resources"]:
            return None
        after = {**d, "io_resources": False}
        return not d["iommu"] and not cache_flush_permitted(version, after) and gate(version, after)
    if name == "pci attach":
        return None if not d["iommu"] else False
    raise AssertionError(name)


async def zap(client, body, fmt=""):
    return await client.post("/api/v1/zap" + fmt, json=body)


@pytest.mark.parametrize("version", ["xen-4.19", "xen-4.21"])
@pytest.mark.parametrize("name", list(EVENTS))
async def test_invalidation_table(client, version, name):
    for d in DOMAINS:
        body = {"kernel": version, "vcpu": {"mtrr": MTRR}, "xen": d, "event": EVENTS[name]}
        r = await zap(client, body)
        want = expected(version, d, name)
        if want is None:
            assert r.status_code == 422, (d, r.text)
            assert r.json()["errors"][0]["loc"] == ["body", "event", "resource"], r.text
            continue
        assert r.status_code == 200, (d, r.text)
        j = r.json()
        assert j["ept"]["invalidated"] is want, (d, j["path"])
        assert j["ept"]["text"] == (INVALIDATED if want else "no EPT change")
        mapped = sum(x["pages"] for x in j["invalidated"])
        assert mapped == (1118208 if want else 0)  # every page of the default memory map
        c = j["counts"]
        if want:  # every mapped page is marked: nothing stale, the unchanged ones are excess
            assert c["stale_pages"] == 0
            assert c["invalidated_pages"] == c["needed_pages"] + c["excess_pages"]
        else:  # nothing marked: whatever changes is stale
            assert c["excess_pages"] == 0 and c["stale_pages"] == c["needed_pages"]
        t = (await zap(client, body, "?format=text")).text
        assert all(len(line) <= WIDTH and line.isascii() for line in t.splitlines()), t
        assert ("  EPT          " + j["ept"]["text"]) in t.splitlines()


async def test_iommu_only_domain_is_left_stale_from_4_21(client):
    """docs/systems/xen.md: 4.21's gate drops is_iommu_enabled(); an IOMMU domain without I/O
    reads the MTRRs (test 2 does not force WB|IPAT), so an MTRR write leaves its RAM stale."""
    ev = {"kind": "mtrr_write", "msr": "0x2ff", "value": "0x800"}  # E=1, default UC, FE off
    for version, stale in (("xen-4.19", False), ("xen-4.21", True)):
        j = (await zap(client, {"kernel": version, "vcpu": {"mtrr": MTRR}, "xen": {"iommu": True},
                                "event": ev})).json()
        assert (j["counts"]["stale_pages"] > 0) is stale
        ram = next(c for c in j["changes"] if c["start"] == "0x100000000")
        assert (ram["before"]["notation"], ram["after"]["notation"]) == ("WB", "UC")


async def test_losing_the_last_io_range_leaves_mtrr_entries_stale(client):
    """iomem_deny_access() calls memory_type_changed() with the gate already shut: entries
    computed from the MTRRs stay, though the domain is WB|IPAT again."""
    j = (await zap(client, {"kernel": "xen", "vcpu": {"mtrr": MTRR}, "xen": {"io_resources": True},
                            "event": {"kind": "passthrough_detach"}})).json()
    assert j["ept"]["invalidated"] is False
    assert j["path"][0]["held"] is True  # memory_type_changed() is called ...
    assert j["path"][1]["held"] is False  # ... and its gate is shut
    ram = next(c for c in j["changes"] if c["start"] == "0x100000000")
    assert (ram["before"]["notation"], ram["after"]["notation"]) == ("WB", "WB!")
    assert j["counts"]["stale_pages"] == j["counts"]["needed_pages"] > 0


@pytest.mark.parametrize("d, handle", [({"iommu": True, "pci_devices": True}, True),
                                        ({"iommu": True, "io_resources": True}, True),
                                        ({"iommu": True}, False), ({"io_resources": True}, False), ({}, False)])
async def test_cr0_cd_goes_through_vmx_handle_cd_not_the_ept(client, d, handle):
    j = (await zap(client, {"kernel": "xen", "vcpu": {"mtrr": MTRR}, "xen": d,
                            "event": {"kind": "cr0_cd", "value": True}})).json()
    assert j["ept"]["invalidated"] is False and j["changes"] == []
    assert j["cr0_cd_before"] == {"hw_cr0_cd": False, "handle_cd": handle, "cache_mode": "normal",
                                  "vmcs_pat": "0x0007040600070406"}
    assert j["cr0_cd_after"] == {"hw_cr0_cd": True, "handle_cd": handle,
                                 "cache_mode": "no-fill" if handle else "normal",
                                 "vmcs_pat": "0x0000000000000000" if handle else "0x0007040600070406"}
    assert j["path"][0]["held"] is handle


async def test_pat_write_in_no_fill_keeps_the_all_uc_pat(client):
    """hvm_set_guest_pat(): in no-fill mode the write only lands in pat_cr."""
    j = (await zap(client, {"kernel": "xen", "vcpu": {"cr0_cd": True, "mtrr": MTRR},
                            "xen": {"iommu": True, "pci_devices": True},
                            "event": {"kind": "pat_write", "value": "0x0606060606060606"}})).json()
    assert j["cr0_cd_after"]["vmcs_pat"] == "0x0000000000000000"
    assert "pat_cr" in j["path"][0]["result"]


@pytest.mark.parametrize("body, loc", [
    ({"kernel": "xen", "event": {"kind": "noncoherent_dma", "value": True}}, ["body", "event", "kind"]),
    ({"kernel": "v6.16", "event": {"kind": "passthrough_attach"}}, ["body", "event", "kind"]),
    ({"kernel": "v6.16", "xen": {}, "event": {"kind": "cr0_cd", "value": True}}, ["body", "xen"]),
    ({"kernel": "xen", "vm": {"quirk_cd_nw_cleared": False}, "event": {"kind": "cr0_cd", "value": True}},
     ["body", "vm"]),
    ({"kernel": "xen", "xen": {"has_vcpu": False}, "event": {"kind": "mtrr_write", "msr": "0x2ff", "value": 0}},
     ["body", "xen", "has_vcpu"]),
    ({"kernel": "xen", "event": {"kind": "mtrr_write", "msr": "0xfe", "value": 0}}, ["body", "event", "msr"]),
    ({"kernel": "xen", "event": {"kind": "passthrough_attach", "resource": "gpu"}},
     ["body", "event", "passthrough_attach", "resource"]),
])
async def test_refusals_name_the_field(client, body, loc):
    r = await zap(client, body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == loc, r.text
