"""POST /api/v1/resolve and /zap with `vm.type` "tdx" (issue 14): app.kvm.tdx wired in.

Expectations restated from docs/systems/tdx.md and the sources it cites, not computed with
the code under test: a TD never ignores guest PAT (tdx_vm_init() disables the quirk), so a
shared RAM page is WB without IPAT and guest PAT decides, MMIO is UC (vmx_get_mt_mask);
the TDX module fixes MTRRdefType to enabled/WB (0x806) and CR0.CD to 0 (edk2 SecMain.c);
KVM_X86_TDX_VM exists from 6.16 and only on kvm_intel. No TD event zaps: nc-DMA zaps only
with IGNORE_GUEST_PAT on, MTRRs are only stored, no CR0.CD zap since 6.11.
"""

from __future__ import annotations

import pytest

from app.render import WIDTH

pytestmark = pytest.mark.anyio

TD = {"type": "tdx"}


async def post(client, path, body, status=200, fmt=""):
    r = await client.post(path + fmt, json=body)
    assert r.status_code == status, r.text
    return r


async def test_shared_ram_page(client):
    j = (await post(client, "/api/v1/resolve", {"kernel": "6.16", "gpa": "0x1000", "vm": TD})).json()
    assert (j["system"], j["vendor"], j["type"], j["kernel"], j["private"]) == ("kvm-tdx", "intel", "tdx", "v6.16",
                                                                                 False)
    assert {k: j["ept"][k] for k in ("memtype", "ipat", "notation")} == {"memtype": "WB", "ipat": False,
                                                                        "notation": "WB"}
    assert [(s["id"], s["held"]) for s in j["path"]] == [("mmio", False), ("ignore-pat", False), ("honor-pat", True)]
    # power-on PAT WB WT UC- UC; MTRRs fixed to default WB: the guest expects its PAT type
    assert [p["effective"] for p in j["pat"]] == ["WB", "WT", "UC", "UC"] * 2
    assert [p["guest_expected"] for p in j["pat"]] == ["WB", "WT", "UC", "UC"] * 2
    assert [p["relation"] for p in j["pat"]] == ["same"] * 8
    assert j["tdx_fixed"] == ["vm.quirk_ignore_guest_pat", "vcpu.mtrr.def_type"]
    assert j["permalink"].endswith("/?v=1&kernel=6.16&pat_quirk=0&vmtype=tdx&deftype=0x806&gpa=0x1000")


async def test_shared_mmio_is_uc_and_private_ram_is_wb(client):
    j = (await post(client, "/api/v1/resolve", {"kernel": "6.19", "gpa": "0x800000000", "vm": TD})).json()
    assert (j["is_mmio"], j["ept"]["memtype"], j["ept"]["ipat"]) == (True, "UC", False)
    assert [p["effective"] for p in j["pat"]] == ["UC"] * 8
    j = (await post(client, "/api/v1/resolve", {"kernel": "6.19", "gpa": "0x1000", "vm": TD, "private": True})).json()
    assert (j["private"], j["ept"]["memtype"], j["ept"]["ipat"], j["path"]) == (True, "WB", False, [])
    assert any("Secure EPT" in n for n in j["notes"])


async def test_given_fixed_values_are_accepted(client):
    body = {"kernel": "v6.16", "gpa": 0, "vm": {**TD, "quirk_ignore_guest_pat": False},
            "vcpu": {"mtrr": {"def_type": "0xc06"}}}
    j = (await post(client, "/api/v1/resolve", body)).json()
    assert j["tdx_fixed"] == []


@pytest.mark.parametrize("body, loc", [
    ({"kernel": "6.15", "gpa": 0, "vm": TD}, ["body", "vm", "type"]),
    ({"kernel": "v6.11", "gpa": 0, "vm": TD}, ["body", "vm", "type"]),
    ({"kernel": "6.16", "gpa": 0, "vm": {**TD, "vendor": "amd"}}, ["body", "vm", "type"]),
    ({"kernel": "6.16", "gpa": 0, "vm": {**TD, "quirk_ignore_guest_pat": True}},
     ["body", "vm", "quirk_ignore_guest_pat"]),
    ({"kernel": "6.16", "gpa": 0, "vm": TD, "vcpu": {"cr0_cd": True}}, ["body", "vcpu", "cr0_cd"]),
    ({"kernel": "6.16", "gpa": 0, "vm": TD, "vcpu": {"mtrr": {"def_type": "0x0"}}},
     ["body", "vcpu", "mtrr", "def_type"]),
    ({"kernel": "6.16", "gpa": 0, "vm": TD, "mmio": True, "private": True}, ["body", "private"]),
    ({"kernel": "6.16", "gpa": 0, "private": False}, ["body", "private"]),
    ({"kernel": "6.16", "gpa": 0, "vm": {"type": "sev"}}, ["body", "vm", "type"]),
])
async def test_refusals_name_the_field_and_the_rule(client, body, loc):
    e = (await post(client, "/api/v1/resolve", body, 422)).json()["errors"][0]
    assert e["loc"] == loc
    if e["type"] == "rule_violation":
        assert e["rule"]


@pytest.mark.parametrize("event", [
    {"kind": "noncoherent_dma", "value": True},
    {"kind": "mtrr_write", "msr": "0x200", "value": "0x6"},
    {"kind": "cr0_cd", "value": False},
    {"kind": "pat_write", "value": "0x0407050600070106"},
])
async def test_td_events_never_zap(client, event):
    j = (await post(client, "/api/v1/zap", {"kernel": "6.16", "vm": TD, "event": event})).json()
    assert (j["kernel"], j["counts"]["zap_calls"], j["counts"]["stale_pages"]) == ("v6.16", 0, 0)


@pytest.mark.parametrize("event", [{"kind": "cr0_cd", "value": True},
                                   {"kind": "mtrr_write", "msr": "0x2ff", "value": "0x0"}])
async def test_td_refuses_events_leaving_the_fixed_state(client, event):
    e = (await post(client, "/api/v1/zap", {"kernel": "6.16", "vm": TD, "event": event}, 422)).json()["errors"][0]
    assert e["loc"] == ["body", "event", "value"]


@pytest.mark.parametrize("path, body", [
    ("/api/v1/resolve", {"kernel": "6.16", "gpa": "0x1000", "vm": TD}),
    ("/api/v1/resolve", {"kernel": "6.16", "gpa": "0x1000", "vm": TD, "private": True}),
    ("/api/v1/zap", {"kernel": "6.16", "vm": TD, "event": {"kind": "noncoherent_dma", "value": True}}),
])
async def test_text_is_72_columns_ascii(client, path, body):
    r = await post(client, path, body, fmt="?format=text")
    for line in r.text.splitlines():
        assert len(line) <= WIDTH and line.isascii(), line


async def test_map_answers_a_td(client):
    """POST /api/v1/map answers TDs since issue 14 (tests/test_api_sysmap.py has the rest)."""
    j = (await post(client, "/api/v1/map", {"kernel": "v6.16", "vm": TD})).json()
    assert j["system"] == "kvm-tdx"


async def test_private_gpa_travels_in_links(client):
    """A TD's private GPA is part of the link (param `private`, short `z`): the resolve
    answer's permalink and POST /api/v1/permalink carry it, and the link decodes to it."""
    from app.permalink import decode

    j = (await post(client, "/api/v1/resolve", {"kernel": "6.16", "gpa": "0x1000", "vm": TD, "private": True})).json()
    assert j["private"] is True and "private=1" in j["permalink"]
    assert decode(j["permalink"].split("?", 1)[1]).access.private is True
    link = (await post(client, "/api/v1/permalink", {"kernel": "v6.16", "gpa": "0x1000", "vm": TD,
                                                       "private": True})).json()
    assert "private=1" in link["query"]
    shared = (await post(client, "/api/v1/permalink", {"kernel": "v6.16", "gpa": "0x1000", "vm": TD})).json()
    assert "private" not in shared["query"]


@pytest.mark.parametrize("path", ["/api/v1/resolve", "/api/v1/permalink"])
async def test_private_for_a_vm_that_is_not_a_td_is_refused(client, path):
    e = (await post(client, path, {"kernel": "v6.16", "gpa": "0x1000", "private": False}, 422)).json()["errors"][0]
    assert e["loc"] == ["body", "private"] and "vm.type tdx" in e["rule"]


def test_cli_resolves_a_private_gpa(capsys):
    from app.cli import main

    assert main(["resolve", "--kernel", "6.16", "--vmtype", "tdx", "--gpa", "0x1000", "--private", "1"]) == 0
    out = capsys.readouterr().out
    assert "private" in out.lower() and "private=1" in out
    assert main(["resolve", "--kernel", "6.16", "--gpa", "0x1000", "--private", "1"]) != 0
    assert "vm.type tdx" in capsys.readouterr().err
