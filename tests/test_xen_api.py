"""POST /api/v1/resolve with kernel "xen": the minimal wiring of app/xen (issue 14)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio

OVMF_VCPU = {"pat": "0x0407050600070106",
             "mtrr": {"def_type": "0xc06", "variable": [{"base": "0x80000000", "mask": "0x3fff80000800"}]}}


async def post(client, body, status=200, **kw):
    r = await client.post("/api/v1/resolve", json=body, **kw)
    assert r.status_code == status, r.text
    return r


async def test_bar_in_a_passthrough_domain(client):
    body = {"kernel": "xen", "gpa": "0xfd000000", "vcpu": OVMF_VCPU,
            "xen": {"iommu": True, "pci_devices": True, "p2m_type": "mmio_direct"}}
    j = (await post(client, body)).json()
    assert (j["kernel"], j["system"], j["version"]["id"]) == ("xen", "xen", "xen-4.21")
    assert j["ept"] | {"leaf": None} == {"memtype": "UC", "emt_field": 0, "ipat": False, "mask": "0x00",
                                         "notation": "UC", "split": False, "leaf": None}
    assert j["ept"]["leaf"]["raw"] == "0x00000000fd000107"
    assert [st["id"] for st in j["path"] if st["held"]] == ["mmio_direct"]
    assert [p["effective"] for p in j["pat"]] == ["UC", "WC"] + ["UC"] * 6
    assert j["cr0_cd"]["handle_cd"] is True


async def test_defaults_plain_domain_ram_is_wb_ipat(client):
    j = (await post(client, {"kernel": "xen-4.19", "gpa": "0x100000"})).json()
    assert (j["version"]["id"], j["ept"]["notation"], j["ept"]["mask"]) == ("xen-4.19", "WB!", "0x70")


async def test_split_superpage(client):
    body = {"kernel": "xen", "gpa": "0x40123000", "xen": {"order": 9, "mmio_ro": "partial"}}
    j = (await post(client, body)).json()
    assert (j["gfn"], j["ept"]["notation"], j["ept"]["emt_field"], j["pat"]) == ("0x40000", "??", 7, [])
    assert j["ept"]["leaf"]["misconfig"] == ["memtype 7 (bits 5:3) is reserved: EPT misconfiguration"]


async def test_text(client):
    r = await post(client, {"kernel": "xen", "gpa": "0x1000"}, params={"format": "text"})
    assert r.headers["content-type"].startswith("text/plain")
    assert "  EPT entry    WB!  (EMT WB, IPAT 1, mask 0x70)\n" in r.text
    assert max(len(line) for line in r.text.splitlines()) <= 72


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({"kernel": "v6.7", "gpa": "0x1000", "xen": {}}, ["body", "xen"], ['kernel "xen"']),
        ({"kernel": "xen", "gpa": "0x1000", "mmio": True}, ["body", "mmio"], ["KVM input"]),
        ({"kernel": "xen", "gpa": "0x1000", "vm": {"noncoherent_dma": True}}, ["body", "vm"],
         ["MAXPHYADDR", "memory map"]),
        ({"kernel": "xen", "gpa": "0x1000", "xen": {"pci_devices": True}}, ["body", "xen", "pci_devices"],
         ["XEN_DOMCTL_CDF_iommu"]),
        ({"kernel": "xen", "gpa": "0x1000", "xen": {"pinned": [{"start": 0, "end": 9, "type": "UC"}]}},
         ["body", "xen", "pinned", 0, "type"], ["-EPERM"]),
        ({"kernel": "xen", "gpa": "0x1000", "xen": {"host_mtrr": "mixed"}}, ["body", "xen", "host_mtrr"],
         ["order > 0"]),
        ({"kernel": "xen", "gpa": "0x1000", "xen": {"mfn": 7, "order": 9}}, ["body", "xen", "mfn"], ["aligned"]),
        ({"kernel": "xen", "gpa": "0x1000", "vcpu": {"cr0_nw": True}}, ["body", "vcpu", "cr0_nw"], ["#GP"]),
    ],
)
async def test_refusals_name_the_field(client, body, loc, words):
    r = await post(client, body, status=422)
    j = r.json()
    assert j["errors"][0]["loc"] == loc
    for w in words:
        assert w in j["detail"], (w, j["detail"])
