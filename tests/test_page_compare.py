"""The page's Compare list and the cross-system diff's groups opened in the controls (issue 14).

The Compare list is the server's (app/pages.py compare_sides): each option names what the
API and the link take (vs, vs_vendor, vs_type). The groups table's short dimension labels are
page data too (DIM_SHORT); which dimensions a diff has comes from its answer. POST
/page/diff-state takes a cross-system group's pattern: with a Xen kernel its Xen dimensions
become the resolve body's Xen facts and is_mmio the p2m type, and resolve then gives the
group's own answer (checked against the diff, not against a copy of the rule); with a KVM
kernel the Xen dimensions are returned as not applied, with the reason.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.api.schemas import DiffRequest
from app.kvm.eras import ERAS
from app.main import app
from app.pages import COMPARE_SIDES, DIM_SHORT, GLOSSARY, XEN_ERAS
from app.system_diff import DIMENSIONS
from app.xen.versions import SYSTEM_ID, XEN_VERSIONS

client = TestClient(app)


def post(path: str, body: dict, status: int = 200) -> dict:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    return r.json()


def test_compare_list_offers_every_era_on_intel_and_amd_and_every_xen_release():
    by = {}
    for o in COMPARE_SIDES:
        by.setdefault(o["system"], []).append(o)
    assert [o["value"] for o in by["kvm-intel"]] == list(ERAS)  # the value links write as `vs`
    assert [(o["vs"], o["vendor"]) for o in by["kvm-amd"]] == [(e, "amd") for e in ERAS]
    assert [o["vs"] for o in by["xen"]] == [SYSTEM_ID, *XEN_VERSIONS] == [e["id"] for e in XEN_ERAS]
    assert len({o["value"] for o in COMPARE_SIDES}) == len(COMPARE_SIDES)
    if "b_type" in DiffRequest.model_fields:
        assert [o["vs"] for o in by["kvm-tdx"]] == ["v6.16"]
    else:
        assert "kvm-tdx" not in by


def test_the_template_draws_the_compare_list_from_the_server():
    html = client.get("/?v=1&vs=v6.16&vs_vendor=amd").text
    for o in COMPARE_SIDES:
        assert (f'<option value="{o["value"]}" title="{o["title"]}" data-vs="{o["vs"]}" data-vendor="{o["vendor"]}" '
                f'data-type="{o["type"]}" data-system="{o["system"]}">') in html
    assert '"vs_vendor": "amd"' in html  # the initial state carries the link's second side


def test_every_dimension_has_a_short_label_with_its_expansion():
    assert set(DIM_SHORT) == {k for k, _ in DIMENSIONS}
    assert all(GLOSSARY.get(s) for s in DIM_SHORT.values())
    assert len(set(DIM_SHORT.values())) == len(DIM_SHORT)


@pytest.mark.parametrize(("a", "b"), [("xen", "v6.16"), ("xen-4.19", "v6.7")])
def test_a_xen_group_opened_gives_its_answer(a, b):
    """Every group of xen against KVM, opened from a scenario with other Xen facts: resolve
    under Xen then gives the group's entry and effective type. The dimensions Xen does not
    read (the answer's status) are not sent, as the page does."""
    d = post("/api/v1/diff", {"a": a, "b": b, "limit": 0})
    read = {x["name"] for x in d["dimensions"] if x["a"] == "read"}
    assert read == {"is_mmio", "cr0_cd", "guest_mtrr", "pat", "xen_iommu", "xen_io"}
    base = {"kernel": a, "gpa": "0x100000", "vcpu": {"cr0_cd": True}, "xen": {"order": 0, "io_resources": True}}
    assert d["groups"]
    for g in d["groups"]:
        pattern = {k: v for k, v in g["pattern"].items() if k in read}
        sc = post("/page/diff-state", {"scenario": base, "pattern": pattern})
        assert "unapplied" not in sc
        r = post("/api/v1/resolve", sc)
        assert r["ept"]["notation"] == g["entry_a"], (g["pattern"], r["ept"])
        assert {p["effective"] for p in r["pat"]} == {g["effective_a"]}, g["pattern"]
        if pattern["is_mmio"] != "*":
            assert sc["xen"]["p2m_type"] == ("mmio_direct" if pattern["is_mmio"] else "ram")
            assert "mmio" not in sc or sc["mmio"] is None
        if pattern["xen_iommu"] != "*":
            assert sc["xen"]["iommu"] is pattern["xen_iommu"]
        if pattern["xen_io"] == "*":
            assert sc["xen"]["io_resources"] is True  # kept from the scenario


def test_xen_dimensions_with_a_kvm_kernel_are_not_applied_and_said():
    sc = post("/page/diff-state", {"scenario": {"kernel": "v6.16", "gpa": "0x0"},
                                   "pattern": {"cr0_cd": True, "xen_iommu": True, "xen_io": "*"}})
    assert sc["vcpu"]["cr0_cd"] is True and "xen" not in sc
    assert sc["unapplied"] == [{"dimension": "xen_iommu", "value": True,
                                "why": "a Xen domain fact (xen.iommu): the page holds Xen facts with Era xen only"}]
    err = post("/page/diff-state", {"scenario": {"kernel": "xen", "gpa": "0x0"}, "pattern": {"xen_io": "1"}}, 422)
    assert err["errors"][0]["loc"] == ["body", "pattern", "xen_io"]


def test_an_amd_group_keeps_the_vendor():
    """A group of the diff AMD against an Intel era, opened on the AMD side: the vendor stays
    (diff-state used to refuse vm.vendor amd)."""
    d = post("/api/v1/diff", {"a": "v6.16", "a_vendor": "amd", "b": "v6.7", "limit": 0})
    g = d["groups"][0]
    read = {x["name"] for x in d["dimensions"] if x["a"] == "read"}
    sc = post("/page/diff-state", {"scenario": {"kernel": "v6.16", "vm": {"vendor": "amd"}, "gpa": "0x100000"},
                                   "pattern": {k: v for k, v in g["pattern"].items() if k in read}})
    assert sc["vm"]["vendor"] == "amd"
    r = post("/api/v1/resolve", sc)
    assert r["system"] == "kvm-amd"
    assert {p["effective"] for p in r["pat"]} == {g["effective_a"]}


def test_the_pinned_editor_row_is_the_api_schema():
    """The Xen facts' pinned row (app/pages.py _xen_fields): the types PinnedRangeIn takes,
    the most ranges XenDomainIn takes, and the map takes it (a domain fact)."""
    from app.api.schemas import XenDomainIn
    from app.pages import XEN_FIELDS
    from app.xen.facts import PINNED_MAX

    row = next(f for f in XEN_FIELDS if f["name"] == "pinned")
    assert row["kind"] == "ranges" and row["default"] == [] and row["map"] is True
    assert row["types"] == ["UC", "WC", "WT", "WP", "WB", "UC-"]
    assert row["max"] == PINNED_MAX == 64
    assert XenDomainIn.model_fields["pinned"].metadata[0].max_length == 64


def test_the_amd_host_inputs_are_the_knob_rows():
    from app.knobs import KNOBS
    from app.kvm.svm import HOST_MTRR_TYPES, HOST_PAT_DEFAULT
    from app.pages import AMD_FIELDS

    assert [f["param"] for f in AMD_FIELDS] == [k.param for k in KNOBS if k.owner == "amd"] == [
        "amd_host_pat", "amd_host_mtrr"]
    pat, mtrr = AMD_FIELDS
    assert (pat["name"], pat["kind"], pat["default"]) == ("host_pat", "hex", f"{HOST_PAT_DEFAULT:#018x}")
    assert (mtrr["name"], mtrr["kind"], mtrr["choices"], mtrr["default"]) == (
        "host_mtrr", "choice", list(HOST_MTRR_TYPES), None)
    assert post("/page/system", {"kernel": "v6.16", "vendor": "amd"})["amd"] is True
    assert post("/page/system", {"kernel": "v6.16"})["amd"] is False
    assert post("/page/system", {"kernel": "xen"})["amd"] is False


def test_diff_state_keeps_the_amd_host_side():
    sc = post("/page/diff-state", {"scenario": {"kernel": "v6.16", "vm": {"vendor": "amd"}, "gpa": "0x0",
                                                "amd": {"host_pat": "0x1", "host_mtrr": "UC"}},
                                   "pattern": {"cr0_cd": True}})
    assert sc["amd"] == {"host_pat": "0x0000000000000001", "host_mtrr": "UC"}
    assert sc["vm"]["vendor"] == "amd" and sc["vcpu"]["cr0_cd"] is True


@pytest.mark.parametrize("kernel", ["xen", "xen-4.19", "v6.7"])
@pytest.mark.parametrize("bad", ["bogus", "MMIO"])
def test_a_bad_is_mmio_value_is_refused_for_every_kernel(kernel, bad):
    # with a Xen kernel is_mmio becomes the p2m type; a value that is not a dimension value is
    # refused there too, never dropped
    out = post("/page/diff-state", {"scenario": {"kernel": kernel, "gpa": "0x1000"}, "pattern": {"is_mmio": bad}}, 422)
    assert out["errors"][0]["loc"] == ["body", "pattern", "is_mmio"]
    assert "true, false or '*'" in out["detail"] or "False, True or '*'" in out["detail"]


def test_an_mmio_group_opened_from_a_private_gpa_gives_the_shared_gpa():
    # a TD's host MMIO is shared only (resolve refuses private + mmio): the group's state is shared
    td = {"kernel": "v6.16", "vm": {"type": "tdx", "quirk_ignore_guest_pat": False}, "gpa": "0x1000", "private": True}
    out = post("/page/diff-state", {"scenario": td, "pattern": {"is_mmio": True}})
    assert (out["mmio"], out["private"]) == (True, False)
    ram = post("/page/diff-state", {"scenario": td, "pattern": {"is_mmio": False}})
    assert (ram["mmio"], ram["private"]) == (False, True)  # a RAM group keeps the private GPA


def test_a_bad_amd_host_side_is_refused_where_the_request_has_it():
    sc = {"kernel": "6.8", "vm": {"vendor": "amd"}, "amd": {"host_pat": "0x2"}, "gpa": "0x1000"}
    out = post("/page/diff-state", {"scenario": sc, "pattern": {}}, 422)
    assert out["errors"][0]["loc"] == ["body", "scenario", "amd", "host_pat"]
