"""POST /api/v1/resolve and /zap with `vm.vendor` "amd" (issue 14): app.kvm.svm wired in.

Expectations restated by hand from docs/systems/amd.md and the sources it cites, not
computed with the code under test: KVM's NPT leaf sets P|RW|US|A (0x27) and selects host
PAT entry 0 (spte.c make_spte, no get_mt_mask on SVM); the host side of RAM is host MTRR
WB x the Linux host PAT entry 0 (WB); g_pat follows the guest's PAT writes from 4.14
(15038e147247), before that it keeps the power-on PAT; svm_set_cr0() clears CD/NW while
KVM_X86_QUIRK_CD_NW_CLEARED is on; with host side WB the effective type is the gPAT
type (UC- as UC), the modelled and unverified APM combination. Zaps: update_mtrr() zaps
everything on NPT with nc-DMA up to 6.6, and never from 6.7 (shadow_memtype_mask is 0).
"""

from __future__ import annotations

import pytest

from app.render import WIDTH

pytestmark = pytest.mark.anyio

POWER_ON = "0x0007040600070406"  # WB WT UC- UC WB WT UC- UC
WB_MTRRS = {"def_type": "0x806"}  # E=1, default WB: the guest expects its PAT type
MAP_PAGES = 524288 + 4096 + 524288 + 65536
"""4 KiB pages of the default map's memslots (schemas.MemoryMap's description): RAM 0-2 GiB
(with the VGA window inside), bochs VRAM 16 MiB at 0xfd000000, RAM 4-6 GiB, GPU BAR 256 MiB."""
MTRR_EVENT = {"kind": "mtrr_write", "msr": "0x2ff", "value": "0xc06"}


async def resolve(client, body, status=200, fmt=""):
    r = await client.post("/api/v1/resolve" + fmt, json=body)
    assert r.status_code == status, r.text
    return r


async def zap(client, body, status=200, fmt=""):
    r = await client.post("/api/v1/zap" + fmt, json=body)
    assert r.status_code == status, r.text
    return r


def amd(**vm):
    return {"vendor": "amd", **vm}


async def test_ram_page_default_guest(client):
    j = (await resolve(client, {"kernel": "6.8", "gpa": "0x1000", "vm": amd()})).json()
    assert (j["system"], j["vendor"], j["type"], j["kernel"]) == ("kvm-amd", "amd", "default", "v6.7")
    assert j["kernel_info"] == {"asked": "6.8", "series": "6.8", "era": "v6.7", "label": "6.8", "notes": []}
    assert (j["gpa"], j["is_mmio"]) == ("0x1000", False)
    n = j["npt"]
    assert (n["raw"], n["level"], n["page_size"], n["host_pat_index"], n["memtype"], n["ipat"]) == (
        "0x0000000000001027", 1, "4K", 0, None, None)
    assert {f["name"]: f["value"] for f in n["fields"]} == {
        "P": 1, "RW": 1, "US": 1, "PWT": 0, "PCD": 0, "A": 1, "D": 0, "PAT": 0, "G": 0, "ADDR": 1, "NX": 0}
    assert j["host"] == {"pat_index": 0, "pat_type": "WB", "mtrr": "WB", "type": "WB"}
    assert (j["gpat"]["value"], j["gpat"]["follows_guest"]) == (POWER_ON, True)
    assert (j["cr0"]["hw_cd"], j["cr0"]["hw_nw"]) == (False, False)
    assert [p["gpat_type"] for p in j["pat"]] == ["WB", "WT", "UC-", "UC"] * 2
    assert [p["effective"] for p in j["pat"]] == ["WB", "WT", "UC", "UC"] * 2
    # MTRRs disabled (def_type 0): the guest expects UC everywhere
    assert [p["guest_expected"] for p in j["pat"]] == ["UC"] * 8
    assert [p["relation"] for p in j["pat"]] == ["weaker", "weaker", "same", "same"] * 2
    assert [p["pte_bits"] for p in j["pat"]] == ["0x00", "0x08", "0x10", "0x18", "0x80", "0x88", "0x90", "0x98"]
    assert [(s["id"], s["held"]) for s in j["path"]] == [
        ("npt", True), ("host", True), ("cr0", True), ("gpat", True), ("combine", True)]
    assert j["largest_page_by_guest_mtrrs"] is False
    assert j["permalink"].endswith("/?v=1&kernel=6.8&vendor=amd&gpa=0x1000")


async def test_guest_pat_before_4_14_stays_at_power_on(client):
    body = {"kernel": "4.10", "gpa": "0x1000", "vm": amd(), "vcpu": {"pat": "0x0", "mtrr": WB_MTRRS}}
    j = (await resolve(client, body)).json()
    assert (j["gpat"]["value"], j["gpat"]["follows_guest"]) == (POWER_ON, False)
    assert [p["guest_pat_type"] for p in j["pat"]] == ["UC"] * 8
    assert [p["effective"] for p in j["pat"]] == ["WB", "WT", "UC", "UC"] * 2
    assert [p["relation"] for p in j["pat"]] == ["weaker", "weaker", "same", "same"] * 2
    assert [(s["id"], s["held"]) for s in j["path"]][3] == ("gpat", False)
    assert j["largest_page_by_guest_mtrrs"] is True  # tdp_page_fault's MTRR check, up to 5.19


@pytest.mark.parametrize("quirk, hw_cd, effective", [
    (True, False, ["WB", "WT", "UC", "UC"] * 2),  # the quirk hides CD from the CPU
    (False, True, ["UC"] * 8),  # the guest's CD reaches the CPU: no-fill
])
async def test_cr0_cd_and_the_quirk(client, quirk, hw_cd, effective):
    body = {"kernel": "6.16", "gpa": "0x1000", "vm": amd(quirk_cd_nw_cleared=quirk),
            "vcpu": {"cr0_cd": True, "mtrr": WB_MTRRS}}
    j = (await resolve(client, body)).json()
    assert (j["cr0"]["guest_cd"], j["cr0"]["hw_cd"]) == (True, hw_cd)
    assert [p["effective"] for p in j["pat"]] == effective
    assert [p["guest_expected"] for p in j["pat"]] == ["UC"] * 8  # CR0.CD=1: the guest expects UC


async def test_mmio_host_side_is_uc(client):
    j = (await resolve(client, {"kernel": "6.19", "gpa": "0x800000000", "vm": amd(),
                                "vcpu": {"mtrr": WB_MTRRS}})).json()
    assert j["is_mmio"] is True
    assert j["host"] == {"pat_index": 0, "pat_type": "WB", "mtrr": "UC", "type": "UC"}
    assert [p["effective"] for p in j["pat"]] == ["UC"] * 8
    assert [p["relation"] for p in j["pat"]] == ["stronger", "stronger", "same", "same"] * 2


@pytest.mark.parametrize("body, loc", [
    ({"kernel": "6.8", "gpa": 0, "vm": amd(quirk_ignore_guest_pat=False)}, ["body", "vm", "quirk_ignore_guest_pat"]),
    ({"kernel": "series-v3", "gpa": 0, "vm": amd()}, ["body", "kernel"]),
    ({"kernel": "6.8", "gpa": "0x400000000000", "vm": amd()}, ["body", "gpa"]),
    ({"kernel": "6.8", "gpa": 0, "vm": amd(), "vcpu": {"cr0_nw": True}}, ["body", "vcpu", "cr0_nw"]),
    ({"kernel": "6.8", "gpa": 0, "vm": amd(), "private": True}, ["body", "private"]),
    ({"kernel": "6.8", "gpa": 0, "vm": {"vendor": "arm"}}, ["body", "vm", "vendor"]),
])
async def test_refusals_name_the_field(client, body, loc):
    r = await resolve(client, body, 422)
    assert r.json()["errors"][0]["loc"] == loc


async def test_quirk_off_accepted_from_6_16_with_a_note(client):
    j = (await resolve(client, {"kernel": "6.16", "gpa": 0, "vm": amd(quirk_ignore_guest_pat=False)})).json()
    assert any("already disabled on AMD" in n for n in j["notes"])


# -- zap ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel, calls", [("4.2", 1), ("6.6", 1), ("6.7", 0), ("6.8", 0), ("6.11", 0), ("6.16", 0)])
async def test_mtrr_write_with_ncdma(client, kernel, calls):
    j = (await zap(client, {"kernel": kernel, "vm": amd(noncoherent_dma=True), "event": MTRR_EVENT})).json()
    assert j["system"] == "kvm-amd"
    assert j["counts"] == {"zap_calls": calls, "zapped_pages": MAP_PAGES * calls, "needed_pages": 0,
                           "stale_pages": 0, "excess_pages": MAP_PAGES * calls}
    assert j["calls"] == ([{"start": "0x0", "end": "0x400000000000", "pages": 1 << 34}] if calls else [])
    assert j["needed"] == [] and j["stale"] == []


@pytest.mark.parametrize("kernel, quirk, calls", [("5.2", False, 1), ("5.2", True, 0), ("6.7", False, 0),
                                                  ("6.19", False, 0)])
async def test_cd_toggle_with_ncdma(client, kernel, quirk, calls):
    body = {"kernel": kernel, "vm": amd(noncoherent_dma=True, quirk_cd_nw_cleared=quirk),
            "event": {"kind": "cr0_cd", "value": True}}
    j = (await zap(client, body)).json()
    assert j["counts"]["zap_calls"] == calls


async def test_ncdma_never_zaps_and_pat_write_never(client):
    for ev in ({"kind": "noncoherent_dma", "value": True}, {"kind": "pat_write", "value": "0x0407050600070106"}):
        for kernel in ("4.2", "6.7", "6.11", "6.16"):
            j = (await zap(client, {"kernel": kernel, "vm": amd(), "event": ev})).json()
            assert j["counts"]["zap_calls"] == 0, (kernel, ev)


async def test_zap_refuses_a_bad_event_naming_it(client):
    r = await zap(client, {"kernel": "6.8", "vm": amd(), "event": {"kind": "mtrr_write", "msr": "0x277",
                                                                     "value": "0x0"}}, 422)
    assert r.json()["errors"][0]["loc"] == ["body", "event", "msr"]


# -- text, other endpoints, Intel unchanged ----------------------------------------------


TEXT_BODIES = [
    ("/api/v1/resolve", {"kernel": "6.8", "gpa": "0x1000", "vm": amd()}),
    ("/api/v1/resolve", {"kernel": "4.2", "gpa": "0x40000000", "vm": amd(quirk_cd_nw_cleared=False),
                         "vcpu": {"cr0_cd": True, "cr0_nw": True, "pat": "0x0407050600070106"}}),
    ("/api/v1/zap", {"kernel": "6.6", "vm": amd(noncoherent_dma=True), "event": MTRR_EVENT}),
    ("/api/v1/zap", {"kernel": "6.16", "vm": amd(), "event": {"kind": "noncoherent_dma", "value": True}}),
]


@pytest.mark.parametrize("path, body", TEXT_BODIES)
async def test_text_is_72_columns_ascii(client, path, body):
    r = await client.post(path + "?format=text", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    for line in r.text.splitlines():
        assert len(line) <= WIDTH and line.isascii() and "\t" not in line, line


async def test_text_names_the_npt_entry_and_the_host_side(client):
    t = (await resolve(client, {"kernel": "6.8", "gpa": "0x1000", "vm": amd()}, fmt="?format=text")).text
    lines = t.splitlines()
    assert lines[0] == "memtype-explorer: AMD NPT memory type for guest-physical 0x1000"
    assert "  host side    host MTRR WB x host PAT[0] WB = WB" in lines
    assert "  0   0 0 0        WB     WB    WB         UC       weaker" in lines


@pytest.mark.parametrize("path, body, loc", [
    ("/api/v1/decode", {"spte": "0x6000000080000e77", "vm": amd()}, ["body", "vm", "vendor"]),
    # with Xen the vendor is one of the KVM settings Xen refuses (one refusal at vm, as nc-DMA)
    ("/api/v1/resolve", {"kernel": "xen", "gpa": 0, "vm": amd()}, ["body", "vm"]),
])
async def test_other_endpoints_refuse_amd(client, path, body, loc):
    r = await client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == loc


async def test_intel_spelled_out_is_byte_identical(client):
    base = {"kernel": "6.8", "gpa": "0xfd000000", "vcpu": {"cr0_cd": True}}
    for path, extra in (("/api/v1/resolve", {}), ("/api/v1/zap", {"event": MTRR_EVENT})):
        body = {k: v for k, v in base.items() if path.endswith("resolve") or k != "gpa"} | extra
        a = await client.post(path, json=body)
        b = await client.post(path, json={**body, "vm": {"vendor": "intel", "type": "default"}})
        assert a.status_code == 200 and a.content == b.content


async def test_permalink_carries_the_vendor(client):
    r = await client.post("/api/v1/permalink", json={"kernel": "6.8", "vm": amd(), "gpa": "0x1000"})
    assert r.status_code == 200, r.text
    assert r.json()["query"] == "v=1&kernel=6.8&vendor=amd&gpa=0x1000"
