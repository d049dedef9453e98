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
from app.xen.resolve import XEN_VM_RULE
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


TD = {"kernel": "v6.16", "vm": {"type": "tdx", "quirk_ignore_guest_pat": False},
      "vcpu": {"mtrr": {"def_type": "0x806"}}, "gpa": "0x1000"}


@pytest.mark.parametrize(("b", "left_out"), [("v6.16", {"quirk_ignore_guest_pat"}),
                                             ("v6.7", {"quirk_ignore_guest_pat"})])
def test_every_td_group_opened_as_the_page_sends_it_gives_its_answer(b, left_out):
    """A TD against an Intel era, each group opened as the page does (every dimension but the
    ones the TD lacks): the dimensions the TD has but does not read are applied (nc-DMA,
    self-snoop: still the TD's state), the ones that would move a value the TD fixes are
    left out and said (its IGNORE_GUEST_PAT quirk), a guest MTRR type other than WB is a
    variable range over every address (the TD's MTRRdefType stays the fixed 0x806), and
    resolve takes the state and gives the group's entry and effective type (and expects what
    the group's guest MTRR type makes the guest expect)."""
    d = post("/api/v1/diff", {"a": "v6.16", "a_type": "tdx", "b": b, "limit": 0})
    status = {x["name"]: x["a"] for x in d["dimensions"]}
    assert status["noncoherent_dma"] == status["quirk_ignore_guest_pat"] == "not read"
    seen = set()
    for g in d["groups"]:
        pattern = {k: v for k, v in g["pattern"].items() if status[k] != "absent"}
        sc = post("/page/diff-state", {"scenario": TD, "pattern": pattern})
        unapplied = {u["dimension"]: u for u in sc.pop("unapplied", [])}
        for k in ("noncoherent_dma", "self_snoop"):
            if pattern.get(k, "*") != "*":
                assert sc["vm"][k] is pattern[k] and k not in unapplied
        if pattern.get("quirk_ignore_guest_pat") is True:
            assert sc["vm"]["quirk_ignore_guest_pat"] is False
            assert unapplied["quirk_ignore_guest_pat"]["why"].startswith(
                "KVM TDX VM (TD) fixes vm.quirk_ignore_guest_pat=false (KVM_X86_QUIRK_IGNORE_GUEST_PAT is always "
                "disabled for a TDX VM")
        if pattern.get("guest_mtrr", "*") != "*":
            assert sc["vcpu"]["mtrr"]["def_type"] == "0x806" and "guest_mtrr" not in unapplied
            t = {"UC": 0, "WC": 1, "WT": 4, "WP": 5, "WB": 6}[pattern["guest_mtrr"]]
            assert sc["vcpu"]["mtrr"].get("variable", []) == ([] if t == 6 else [
                {"base": f"{t:#x}", "mask": "0x800"}]), sc["vcpu"]["mtrr"]
        seen |= set(unapplied)
        r = post("/api/v1/resolve", sc)
        if pattern.get("guest_mtrr") == "UC" and pattern.get("pat") != "WC":  # UC MTRR: UC expected
            assert {p["guest_expected"] for p in r["pat"]} == {"UC"}, r["pat"]
        assert r["ept"]["notation"] == g["entry_a"], (g["pattern"], r["ept"])
        assert {p["effective"] for p in r["pat"]} == {g["effective_a"]}, g["pattern"]
    assert seen == left_out  # v6.16 reads no guest MTRR either: no group names one


def test_a_xen_group_leaves_out_only_what_xen_fixes():
    """Xen has self-snoop but does not read it, and fixes it (vm.self_snoop: KVM's setting):
    a group's self_snoop=0 is left out and said; is_mmio is still Xen's p2m type."""
    sc = post("/page/diff-state", {"scenario": {"kernel": "xen", "gpa": "0x1000"},
                                   "pattern": {"self_snoop": False, "is_mmio": True, "xen_iommu": True}})
    assert sc["vm"]["self_snoop"] is True and sc["xen"] == {"iommu": True, "p2m_type": "mmio_direct"}
    assert sc["unapplied"] == [{"dimension": "self_snoop", "value": False, "why":
                                "Xen HVM (EPT) fixes vm.self_snoop=true (KVM settings given with a Xen kernel (of the "
                                "VM's settings Xen reads only MAXPHYADDR and the memory map; a domain's facts are "
                                "given as Xen facts))"}]
    same = post("/page/diff-state", {"scenario": {"kernel": "xen", "gpa": "0x1000"}, "pattern": {"self_snoop": True}})
    assert "unapplied" not in same


def initial(query: str) -> dict:
    import json
    import re

    html = client.get(query).text
    return json.loads(re.search(r'id="initial-state">(.*?)</script>', html, re.S).group(1))


@pytest.mark.parametrize(("query", "kept", "dropped"), [
    ("vs=v4.2&vs_type=tdx", ("v4.2", "intel", "default"),
     [("vs_type", "tdx", "no TDX VMs under 'v4.2'", "KVM_X86_TDX_VM first in 6.16")]),
    ("vs=xen&vs_vendor=amd", ("xen", "intel", "default"),
     [("vs_vendor", "amd", "amd given with 'xen'", "Xen is modelled on VT-x with EPT")]),
    ("vs=v6.16&vs_vendor=amd&vs_type=tdx", ("v6.16", "amd", "default"),
     [("vs_type", "tdx", "a TDX VM needs an Intel CPU (vs_vendor is amd)", "KVM_X86_TDX_VM is offered by kvm_intel")]),
    ("vs=v6.16&vs_type=tdx", ("v6.16", "intel", "tdx"), []),
])
def test_a_compare_side_the_list_lacks_is_dropped_and_listed(query, kept, dropped):
    """A link's Compare side the page cannot offer: the parameter the diff refuses is dropped
    and listed with the reason (as decode_report lists a bad parameter), the rest kept."""
    data = initial(f"/?v=1&{query}")
    init = data["initial"]
    assert (init["vs"], init["vs_vendor"], init["vs_type"]) == kept
    assert any((o["vs"], o["vendor"], o["type"]) == kept for o in data["compare"])
    assert [(d["param"], d["value"], d["message"]) for d in data["dropped"]] == [x[:3] for x in dropped]
    assert all(d["rule"].startswith(x[3]) for d, x in zip(data["dropped"], dropped, strict=True))


@pytest.mark.parametrize(("body", "loc", "message"), [
    ({"vs": "v4.2", "vs_type": "tdx"}, "vs_type", "no TDX VMs under 'v4.2'"),
    ({"vs": "xen", "vs_vendor": "amd"}, "vs_vendor", "amd given with 'xen'"),
    ({"vs": "v6.16", "vs_vendor": "amd", "vs_type": "tdx"}, "vs_type",
     "a TDX VM needs an Intel CPU (vs_vendor is amd)"),
    ({"vs_type": "tdx", "kernel": "v6.7"}, "vs_type", "no TDX VMs under 'v6.7'"),
    ({"vs": "v4.2", "vs_vendor": "amd"}, "vs",
     "AMD v4.2 (as 4.2) ignores guest PAT writes (no g_pat update before 4.14)"),
])
@pytest.mark.parametrize("kernel", ["v6.16", "xen"])
def test_the_permalink_endpoint_refuses_the_compare_side_the_page_drops(body, loc, message, kernel):
    """POST /api/v1/permalink takes no second side the diff (app.system_diff.side) refuses:
    the same refusal, at vs / vs_vendor / vs_type, whatever the first side's system."""
    r = client.post("/api/v1/permalink", json={"kernel": kernel, "vcpu": {}, "gpa": "0x0", **body})
    assert r.status_code == 422, r.text
    assert [(e["loc"], e["msg"]) for e in r.json()["errors"]] == [(["body", loc], message)]
    ok = client.post("/api/v1/permalink", json={"kernel": kernel, "vcpu": {}, "gpa": "0x0", "vs": "v6.16",
                                                "vs_type": "tdx"})
    assert ok.status_code == 200 and ok.json()["query"].endswith("vs=v6.16&vs_type=tdx"), ok.text


def test_the_status_legend_is_the_diffs_one_definition():
    """Every status the diff's dimensions take has its text in the page's legend, `fixed` too
    (a TD's cr0_cd), written once (app.system_diff.STATUS_TEXT) for the API schema as well."""
    from typing import get_args

    from app.api.schemas import DimensionOut, SideStatus
    from app.system_diff import STATUS_TEXT

    assert set(STATUS_TEXT) == set(get_args(SideStatus)) == {"read", "not read", "absent", "fixed"}
    html = client.get("/?v=1&vs=v6.16&vs_type=tdx").text
    assert ('<p class="note" id="dims-legend" data-testid="dims-legend">read: the answer depends on it; not read: '
            "the system has it, its memory type does not; absent: the system has no such thing; fixed: the system "
            "allows one value, states with another are skipped.</p>") in html
    assert DimensionOut.model_fields["a"].description.startswith("read: the answer depends on it; not read: ")
    text = client.post("/api/v1/diff?format=text", json={"a": "v6.16", "b": "v6.16", "b_type": "tdx"}).text
    assert "fixed = the system allows one value, states with another are skipped" in " ".join(text.split())


def test_the_map_inputs_are_the_schemas_rows():
    from typing import get_args

    from app.api.schemas import XenFramesIn
    from app.kvm.ranges import MAP_RANGES_MAX
    from app.pages import MAP_INPUTS

    pr, xf = MAP_INPUTS["private_ranges"], MAP_INPUTS["xen_frames"]
    assert (pr["api"], pr["max"], xf["api"], xf["max"]) == ("private_ranges", MAP_RANGES_MAX, "xen.frames",
                                                             MAP_RANGES_MAX)
    assert xf["p2m_types"] == list(get_args(get_args(XenFramesIn.model_fields["p2m_type"].annotation)[0]))
    assert [f["name"] for f in xf["flags"]] == ["mmio_ro", "special"]


def test_the_map_rows_are_named_and_flagged_as_the_core_does():
    """One name per row (the map's refusals say it, the page's rows and add buttons too) and
    one list of frame flags (the core's FrameRange, the schema's checkboxes, the link's
    `:flag` words): each checked against what the others answer."""
    from app.api.schemas import XenFramesIn
    from app.pages import MAP_INPUTS
    from app.permalink import LinkState, decode, encode
    from app.xen.map import FRAME_FLAGS, FrameRange

    pr, xf = MAP_INPUTS["private_ranges"], MAP_INPUTS["xen_frames"]
    assert (pr["what"], xf["what"]) == ("private range", "frame range")
    many = [{"start": f"{n << 13:#x}", "end": f"{(n << 13) + 4096:#x}"} for n in range(pr["max"] + 1)]
    td = post("/api/v1/map", {"kernel": "v6.16", "vm": {"type": "tdx"}, "private_ranges": many}, 422)
    xen = post("/api/v1/map", {"kernel": "xen", "xen": {"frames": many}}, 422)
    assert td["errors"][0]["msg"] == f"{len(many)} {pr['what']}s given"
    assert xen["errors"][0]["msg"] == f"{len(many)} {xf['what']}s given"
    html = client.get("/?v=1").text
    assert f">+ add {pr['what']}</button>" in html and f">+ add {xf['what']}</button>" in html
    from markupsafe import escape

    from app.knobs import BY_PARAM  # the headings: the link rows' labels

    for m, param in ((pr, "private_ranges"), (xf, "xen_frames")):
        assert f'title="{escape(m["label"])}">{BY_PARAM[param].label} <span' in html
    schema_flags = [n for n, f in XenFramesIn.model_fields.items() if f.annotation is bool]
    assert list(FRAME_FLAGS) == schema_flags == [f["name"] for f in xf["flags"]]
    every = FrameRange(0x0, 0x1000, **{n: True for n in FRAME_FLAGS})
    q = encode(LinkState("xen", xen_frames=(every,)))
    assert q.endswith("xen_frames=0x0-0x1000:" + ":".join(FRAME_FLAGS))
    assert decode(q).xen_frames == (every,)


TD_LINK = {"kernel": "v6.16", "vm": {"type": "tdx", "quirk_ignore_guest_pat": False},
           "vcpu": {"mtrr": {"def_type": "0x806"}}}


def test_a_link_keeps_the_maps_private_ranges_and_xen_frames():
    """POST /api/v1/permalink takes the map's own inputs (the page's row editors), checks them
    as the map does, and the page's initial state gives them back as the map takes them."""
    q = post("/api/v1/permalink", {**TD_LINK, "private_ranges": [{"start": "0x100000", "end": "0x200000"},
                                                                 {"start": "0x0", "end": "0x1000"}]})["query"]
    assert q == "v=1&pat_quirk=0&vmtype=tdx&deftype=0x806&private_ranges=0x0-0x1000,0x100000-0x200000"
    assert initial(f"/?{q}")["initial"]["private_ranges"] == [{"start": "0x0", "end": "0x1000"},
                                                              {"start": "0x100000", "end": "0x200000"}]
    bad = post("/api/v1/permalink", {**TD_LINK, "private_ranges": [{"start": "0x800000000", "end": "0x800001000"}]},
               422)
    assert bad["errors"][0]["loc"] == ["body", "private_ranges", 0]
    assert bad["errors"][0]["msg"] == "covers the mmio range 0x800000000-0x810000000"
    kvm = post("/api/v1/permalink", {"kernel": "v6.16", "private_ranges": []}, 422)
    assert kvm["errors"][0]["msg"] == "private_ranges given for a VM that is not a TD"
    frames = [{"start": "0x100000", "end": "0x200000", "p2m_type": "grant_map_rw", "special": True}]
    q = post("/api/v1/permalink", {"kernel": "xen", "xen": {"frames": frames}})["query"]
    assert q == "v=1&kernel=xen&xen_frames=0x100000-0x200000:grant_map_rw:special"
    assert initial(f"/?{q}")["initial"]["xen_frames"] == frames
    hole = post("/api/v1/permalink", {"kernel": "xen", "xen": {"frames": [{"start": "0x80000000",
                                                                         "end": "0x80001000"}]}}, 422)
    assert hole["errors"][0]["loc"] == ["body", "xen", "frames", 0]
    assert hole["errors"][0]["msg"] == "0x80000000 is in no memory-map range"
    xen = post("/api/v1/permalink", {"kernel": "xen", "private_ranges": []}, 422)
    assert xen["errors"][0]["loc"] == ["body", "private_ranges"]


@pytest.mark.parametrize(("query", "why"), [
    ("vmtype=tdx&private_ranges=0x1000", "'0x1000' is not start-end"),
    ("vmtype=tdx&private_ranges=0x0-0xzz", "malformed hex '0xzz'"),
    ("kernel=xen&xen_frames=0x0-0x1000:ram:ram", "'0x0-0x1000:ram:ram' is not start-end[:p2m][:flag...]"),
    ("kernel=xen&xen_frames=0x0-0x1000:bogus", "'0x0-0x1000:bogus' is not start-end[:p2m][:flag...]"),
])
def test_a_bad_map_input_in_a_link_is_dropped_and_listed(query, why):
    """Each map input under the one system that takes it (a TD, Xen), so only its syntax drops
    it; the rule is the format's one text (the knob row's `rule`), whose example reads."""
    from app.knobs import BY_PARAM
    from app.permalink import decode

    data = initial(f"/?v=1&{query}")
    param = query.split("&")[1].split("=")[0]
    assert [(d["param"], d["message"]) for d in data["dropped"]] == [(param, why)]
    if " is not start-end" in why:  # the item's shape (a bad number names the hex rule)
        assert data["dropped"][0]["rule"] == BY_PARAM[param].rule
    example = BY_PARAM[param].values.removeprefix("e.g. ")
    assert getattr(decode(f"v=1&{query.split('&')[0]}&{param}={example}"), param)


KVM_WITH_XEN = ("KVM settings given with a Xen kernel", XEN_VM_RULE)
NOT_A_TD = ("private_ranges given for a VM that is not a TD", "private GPAs (Secure EPT) exist only with vm.type tdx")
NOT_XEN = ("Xen facts given with a KVM kernel", 'xen needs kernel "xen"')


@pytest.mark.parametrize(("query", "dropped"), [
    ("private_ranges=0x0-0x1000", [("private_ranges", "0x0-0x1000", *NOT_A_TD)]),
    ("kernel=xen&private_ranges=0x0-0x1000", [("private_ranges", "0x0-0x1000", *NOT_A_TD)]),
    ("vendor=amd&private_ranges=0x0-0x1000", [("private_ranges", "0x0-0x1000", *NOT_A_TD)]),
    ("kernel=v6.16&xen_frames=0x0-0x1000", [("xen_frames", "0x0-0x1000", *NOT_XEN)]),
    ("xen_pinned=0x200-0x3ff:WC", [("xen_pinned", "0x200-0x3ff:WC", *NOT_XEN)]),
    ("vmtype=tdx&xen_iommu=1&xen_frames=0x0-0x1000",
     [("xen_iommu", "1", *NOT_XEN), ("xen_frames", "0x0-0x1000", *NOT_XEN)]),
    ("private=1", [("private", "1", "private given for a VM that is not a TD", NOT_A_TD[1])]),
    ("amd_host_mtrr=UC", [("amd_host_mtrr", "UC", "AMD host facts given with vm.vendor intel",
                           "amd needs vm.vendor amd")]),
    ("vmtype=tdx&private_ranges=0x0-0x1000", []),
    ("kernel=xen&xen_frames=0x0-0x1000&xen_pinned=0x200-0x3ff:WC", []),
    # a Xen domain is no TD whatever vmtype the link says, and takes no KVM VM setting
    # (only MAXPHYADDR and the memory map): each dropped by the parameter that moves it
    ("kernel=xen&private=1&private_ranges=0x0-0x1000",
     [("private_ranges", "0x0-0x1000", *NOT_A_TD), ("private", "1", "private given for a VM that is not a TD",
                                                     NOT_A_TD[1])]),
    ("kernel=xen&ncdma=1&pat_quirk=0&maxphyaddr=40",
     [("ncdma", "1", *KVM_WITH_XEN), ("pat_quirk", "0", *KVM_WITH_XEN)]),
    ("kernel=xen&vendor=intel&ncdma=0&maxphyaddr=40", []),
])
def test_a_map_input_for_another_system_is_dropped_and_listed(query, dropped):
    """A link's input for a system the state is not (private GPAs without a TD, Xen facts and
    frames with a KVM kernel, AMD host facts without vendor amd) is dropped and listed with
    the refusal POST /api/v1/permalink gives it, not kept for the page to lose unsaid; the
    same input under its own system is kept."""
    data = initial(f"/?v=1&{query}")
    assert [(d["param"], d["value"], d["message"], d["rule"]) for d in data["dropped"]] == dropped
    init = data["initial"]
    assert ("private_ranges" in init) == ("vmtype=tdx&private_ranges" in query)
    assert ("xen_frames" in init) == ("kernel=xen&xen_frames" in query)
    body = {"kernel": "v6.16", "vcpu": {}, "gpa": "0x0"}
    for param, _, message, rule in dropped:  # the endpoint's refusal, word for word
        one = {"private_ranges": {"private_ranges": []}, "xen_frames": {"xen": {"frames": []}},
               "xen_pinned": {"xen": {"pinned": []}}, "xen_iommu": {"xen": {"iommu": True}},
               "private": {"private": True}, "amd_host_mtrr": {"amd": {"host_mtrr": "UC"}},
               "ncdma": {"vm": {"noncoherent_dma": True}},
               "pat_quirk": {"vm": {"quirk_ignore_guest_pat": False}}}[param]
        kernel = {"kernel": "xen"} if "kernel=xen" in query else {}
        r = client.post("/api/v1/permalink", json={**body, **one, **kernel})
        assert r.status_code == 422 and (r.json()["errors"][0]["msg"], r.json()["detail"].split(" (", 1)[1]) == (
            message, rule + ")"), r.text


def test_a_xen_link_with_vmtype_tdx_drops_the_td_inputs_too():
    """A Xen domain is no TD whatever vmtype the link says: its private inputs are dropped
    and listed (they were kept, as the vmtype made the check pass), then the vmtype itself."""
    data = initial("/?v=1&kernel=xen&vmtype=tdx&private=1&private_ranges=0x0-0x1000")
    assert [(d["param"], d["message"]) for d in data["dropped"]] == [
        ("private_ranges", NOT_A_TD[0]), ("private", "private given for a VM that is not a TD"),
        ("vmtype", KVM_WITH_XEN[0])]


def test_the_permalink_endpoint_refuses_an_amd_main_side_resolve_refuses():
    """POST /api/v1/permalink takes a scenario resolve accepts: an AMD VM under an era AMD has
    no kernel for (series-v3, a VMX patch series) gets resolve's 422, word for word."""
    body = {"kernel": "series-v3", "vm": {"vendor": "amd"}, "vcpu": {}, "gpa": "0x0"}
    p, r = client.post("/api/v1/permalink", json=body), client.post("/api/v1/resolve", json=body)
    assert p.status_code == r.status_code == 422
    assert p.json()["errors"] == r.json()["errors"], (p.text, r.text)
    assert client.post("/api/v1/permalink", json={**body, "kernel": "v6.16"}).status_code == 200


@pytest.mark.parametrize(("query", "vs", "dropped"), [
    ("kernel=v6.16&vs_vendor=amd", ("v6.16", "amd", "default"), []),
    ("kernel=v6.16&vs_type=tdx", ("v6.16", "intel", "tdx"), []),
    ("kernel=v4.2&vs_type=tdx", (None, "intel", "default"), ["vs_type"]),
])
def test_a_compare_vendor_or_type_without_vs_is_the_main_kernel(query, vs, dropped):
    """vs_vendor / vs_type with no vs name the main kernel as the second side (the diff of
    such a link is `vs or kernel`): the page offers that side rather than lose them."""
    data = initial(f"/?v=1&{query}")
    init = data["initial"]
    assert (init.get("vs"), init.get("vs_vendor", "intel"), init.get("vs_type", "default")) == vs, init
    assert [d["param"] for d in data["dropped"]] == dropped
