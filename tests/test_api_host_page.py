"""The host side of is_mmio and the kernel object through the API (issue 10, part 2)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.api import schemas as s
from app.kvm.host_page import PRESETS
from app.main import app
from app.permalink import decode

client = TestClient(app)


def post(body: dict, path: str = "/api/v1/resolve"):
    return client.post(path, json=body)


def test_kernel_info_for_a_version_and_an_era_id():
    j = post({"kernel": "6.12.78", "gpa": "0x1000"}).json()
    assert j["kernel"] == "v6.16"
    ki = j["kernel_info"]
    assert (ki["asked"], ki["era"], ki["version"]) == ("6.12.78", "v6.16", "6.12.78")
    assert "c9c1e20b4c7d" in ki["why"]
    j = post({"kernel": "v6.7", "gpa": "0x1000"}).json()
    assert j["kernel_info"] == {"asked": "v6.7", "era": "v6.7", "version": None, "why": "era id v6.7", "notes": []}
    s.ResolveResponse.model_validate(j)


def test_zap_answers_kernel_info():
    r = post({"kernel": "6.8.0-45-generic", "event": {"kind": "cr0_cd", "value": True}}, "/api/v1/zap")
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["kernel"] == "v6.7" and j["kernel_info"]["version"] == "6.8.0"
    assert any("suffix" in n for n in j["kernel_info"]["notes"])
    assert "kernel=6.8.0-45-generic" in j["permalink"]


@pytest.mark.parametrize("kernel,mmio,memtype", [("4.15", True, "UC"), ("4.16", False, "WB"), ("6.12.78", False, "WB")])
def test_default_map_vga_window(kernel, mmio, memtype):
    j = post({"kernel": kernel, "gpa": "0xa0000"}).json()
    assert j["is_mmio"] is mmio and j["ept"]["memtype"] == memtype
    hp = j["host_page"]
    assert hp["class"] == "reserved" and hp["preset"] == "vga_dev_mem" and hp["hpa"] == "0xa0000"
    assert hp["source"] == "memory map: legacy VGA window, host 0xa0000 (reserved, ISA: WB)"
    assert hp["answered_for"] == kernel and hp["by_kernels"] == [{"kernels": kernel, "is_mmio": mmio}]
    ids = [st["id"] for st in hp["path"]]
    assert ids == (["pfn_valid", "zero", "reserved", "no-pat-test"] if mmio else
                   ["pfn_valid", "zero", "reserved", "nopat", "pat"])


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset(name):
    j = post({"kernel": "v4.2", "gpa": "0x100000", "host_page": {"preset": name}}).json()
    hp = j["host_page"]
    assert hp["preset"] == name and hp["class"] == PRESETS[name].page.cls
    assert hp["answered_for"] == "6.6 (newest in v4.2)"
    assert j["is_mmio"] is hp["is_mmio"] is hp["by_kernels"][-1]["is_mmio"]
    assert f"host={name}" in j["permalink"]
    assert decode(j["permalink"].split("?", 1)[1]).access.host_page == PRESETS[name].page


def test_class_with_fields():
    body = {"kernel": "5.2", "gpa": "0x1000", "host_page": {"class": "no_struct_page", "e820_ram": True}}
    j = post(body).json()
    assert j["is_mmio"] is False and j["host_page"]["why"] == "no struct page but e820 RAM: not MMIO"
    j = post({**body, "kernel": "5.1.21"}).json()
    assert j["is_mmio"] is True and j["host_page"]["why"] == "no struct page: always MMIO before 5.2"
    j = post({"kernel": "v6.16", "gpa": "0x1000",
              "host_page": {"class": "reserved", "host_memtype": "WC", "hpa": "0xfd000000"}}).json()
    assert j["is_mmio"] is True and j["ept"]["notation"] == "UC"
    assert "host=reserved&host_mt=WC&host_hpa=0xfd000000" in j["permalink"]
    j = post({"kernel": "v6.16", "gpa": "0x1000", "host_page": {"class": "reserved", "host_memtype": "WB",
                                                               "pat_enabled": False}}).json()
    assert j["is_mmio"] is True and j["host_page"]["why"] == "reserved page and host PAT disabled: MMIO"


@pytest.mark.parametrize("host_page,loc", [
    ({"preset": "vfio_bar", "class": "ram"}, ["body", "host_page", "class"]),
    ({"preset": "vfio_bar", "e820_ram": False}, ["body", "host_page", "e820_ram"]),
    ({}, ["body", "host_page", "class"]),
    ({"class": "ram", "host_memtype": "WB"}, ["body", "host_page", "host_memtype"]),
    ({"class": "reserved", "e820_ram": True}, ["body", "host_page", "e820_ram"]),
    ({"class": "device"}, ["body", "host_page", "class"]),
    ({"preset": "gpu"}, ["body", "host_page", "preset"]),
    ({"class": "reserved", "host_memtype": "XX"}, ["body", "host_page", "host_memtype"]),
    ({"cls": "ram"}, ["body", "host_page", "cls"]),
])
def test_bad_host_page_is_a_422_naming_the_member(host_page, loc):
    r = post({"kernel": "v6.16", "gpa": "0x1000", "host_page": host_page})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == loc


def test_mmio_and_host_page_together_are_refused():
    r = post({"kernel": "v6.16", "gpa": "0x1000", "mmio": False, "host_page": {"preset": "vfio_bar"}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "host_page"]


def test_mmio_shorthand_still_overrides():
    j = post({"kernel": "v6.16", "gpa": "0xa0000", "mmio": True}).json()
    assert j["is_mmio"] is True and j["host_page"] is None and j["mmio_source"] == "given (mmio)"


def test_permalink_endpoint_keeps_version_and_host_page():
    r = post({"kernel": "6.12.78", "gpa": "0x1000", "host_page": {"preset": "dax_pmem"}}, "/api/v1/permalink")
    assert r.status_code == 200, r.text
    assert r.json()["query"] == "v=1&kernel=6.12.78&gpa=0x1000&host=dax_pmem"


def test_openapi_documents_versions_and_host_page():
    doc = client.get("/openapi.json").json()
    comp = doc["components"]["schemas"]
    kernel = comp["ResolveRequest"]["properties"]["kernel"]
    assert kernel["anyOf"][0]["enum"][0] == "v4.2" and "pattern" in kernel["anyOf"][1]
    assert "6.12.78" in kernel["description"]
    hp = comp["HostPageIn"]["properties"]
    assert set(hp) == {"preset", "class", "host_memtype", "hpa", "e820_ram", "pat_enabled"}
    assert "vga_dev_mem: legacy VGA window mapped from /dev/mem" in hp["preset"]["description"]
    out = comp["HostPageOut"]["properties"]
    assert "class" in out and "page_class" not in out
