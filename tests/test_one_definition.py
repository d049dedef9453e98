"""Issue 14 review: concepts written once and derived elsewhere (one definition per concept).

Each test pins where a rule's single definition is, by what the other places answer."""

from __future__ import annotations

from dataclasses import fields

import pytest

from app.api import schemas as s
from app.kvm.scenario import MemRange, VcpuState, VmConfig
from app.kvm.svm import SvmHost, check_amd_side
from app.pages import XEN_MMIO, split_xen_dims
from app.system_diff import (
    ABSENT,
    DIMENSIONS,
    FIXED,
    FIXED_VALUE,
    NOT_READ,
    READ,
    STATUS,
    WHY_NOT_READ,
    XEN,
    XEN_FACTS,
    is_era_pair,
)
from app.x86.memtype import MTRR_TYPE_NAMES, RULE_MTRR_NAMES, MemType, MemTypeError
from app.xen.facts import COVERAGES, HOST_MTRR_CHOICES, P2M_TYPES, PINNED_MAX, Page, XenFacts
from app.xen.map import xen_map
from app.xen.versions import get_version


def test_mtrr_type_names_are_the_mtrr_encodings():
    assert MTRR_TYPE_NAMES == ("UC", "WC", "WT", "WP", "WB")
    assert (*MTRR_TYPE_NAMES, "mixed") == HOST_MTRR_CHOICES
    assert RULE_MTRR_NAMES == "MTRR types are UC, WC, WT, WP, WB; only PAT can select UC- (encoding 7)"


def _refusal(fn) -> tuple[tuple, str, str]:
    with pytest.raises(MemTypeError) as e:
        fn()
    return e.value.loc, e.value.message, e.value.rule


def test_uc_minus_is_refused_alike_by_every_system():
    """AMD's host MTRR, a Xen p2m entry's and a Xen map's: the one refusal (app.x86.memtype)."""
    vm = VmConfig(memory_map=(MemRange(0, 1 << 20, "ram"),))
    got = [
        _refusal(lambda: SvmHost(host_mtrr="UC-").validate()),
        _refusal(lambda: Page(1, 1, host_mtrr=MemType.UC_MINUS).validate()),
        _refusal(lambda: xen_map(get_version("xen"), XenFacts().domain(), vm, VcpuState(),
                                 host_mtrr=MemType.UC_MINUS)),
    ]
    want = ("UC- is not an MTRR type", RULE_MTRR_NAMES)
    assert got == [(("host_mtrr",), *want), (("page", "host_mtrr"), *want), (("host_mtrr",), *want)]
    assert _refusal(lambda: SvmHost(host_mtrr="WX").validate()) == (
        ("host_mtrr",), "unknown host MTRR type 'WX'", RULE_MTRR_NAMES)


def _enum(model: type, member: str) -> list:
    prop = model.model_json_schema()["properties"][member]
    for alt in prop.get("anyOf", [prop]):
        if "enum" in alt:
            return alt["enum"]
    raise AssertionError(prop)


def test_xen_schema_lists_come_from_app_xen_facts():
    assert _enum(s.XenFramesIn, "p2m_type") == list(P2M_TYPES)
    assert _enum(s.XenIn, "p2m_type") == list(P2M_TYPES)
    assert _enum(s.XenIn, "mmio_ro") == _enum(s.XenIn, "special") == list(COVERAGES)
    assert _enum(s.XenIn, "host_mtrr") == list(HOST_MTRR_CHOICES)
    assert _enum(s.XenMapIn, "host_mtrr") == _enum(s.AmdHostIn, "host_mtrr") == list(MTRR_TYPE_NAMES)
    assert s.XenDomainIn.model_json_schema()["properties"]["pinned"]["maxItems"] == PINNED_MAX


def test_why_not_read_has_a_line_exactly_where_it_can_be_read():
    """mapping() asks why_not_read only for `not read` and `absent` dimensions: a line for a
    `read` one (as the TD's guest_mtrr had) is never shown."""
    askable = {(sys_, k) for sys_, st in STATUS.items() for k, v in st.items() if v in (NOT_READ, ABSENT)}
    assert set(WHY_NOT_READ) == askable


def test_fixed_values_are_the_fixed_statuses():
    assert {(sys_, k) for sys_, st in STATUS.items() for k, v in st.items() if v == FIXED} == set(FIXED_VALUE)


def test_page_xen_dims_are_the_diffs():
    """The page turns a group's Xen dimensions into the resolve body's `xen` members with the
    mapping answer() builds its Domain from (app.system_diff.XEN_FACTS)."""
    names = {k for k, _ in DIMENSIONS}
    assert set(XEN_FACTS) <= names and all(STATUS[XEN][k] == READ for k in XEN_FACTS)
    assert set(XEN_FACTS.values()) <= {f.name for f in fields(XenFacts)} & set(s.XenIn.model_fields)
    assert XEN_MMIO == {False: "ram", True: "mmio_direct"}
    assert split_xen_dims({"xen_iommu": True, "xen_io": "*", "pat": "WB"}) == ({"pat": "WB"}, {"iommu": True})


@pytest.mark.parametrize("pair, era_pair", [
    (("v6.7", "v6.16", "intel", "intel", "default", "default"), True),
    (("6.8", "v6.16", "intel", "intel", "default", "default"), True),
    (("v6.7", "xen"), False),
    (("xen-4.19", "v6.7"), False),
    (("6.8", "v6.7", "amd"), False),
    (("v6.7", "6.8", "intel", "amd"), False),
    (("6.16", "v6.7", "intel", "intel", "tdx"), False),
    (("v6.7", "6.16", "intel", "intel", "default", "tdx"), False),
])
def test_is_era_pair(pair, era_pair):
    assert is_era_pair(*pair) is era_pair


def test_amd_side_rule_in_each_interfaces_words():
    check_amd_side(False, {"vm.vendor": "intel"})
    check_amd_side(True, {"vm.vendor": "amd"})
    check_amd_side(True, {"a_vendor": "intel", "b_vendor": "amd"})
    assert _refusal(lambda: check_amd_side(True, {"vm.vendor": "intel"})) == (
        ("amd",), "AMD host facts given with vm.vendor intel", "amd needs vm.vendor amd")
    assert _refusal(lambda: check_amd_side(True, {"vm.vendor": None})) == (
        ("amd",), "AMD host facts given with a Xen kernel", "amd needs vm.vendor amd")
    assert _refusal(lambda: check_amd_side(True, {"--a-vendor": "intel", "--b-vendor": "intel"},
                                           "--amd-host-* options", "--amd-host-*")) == (
        ("amd",), "--amd-host-* options given without an AMD side", "--amd-host-* needs --a-vendor or --b-vendor amd")


def test_map_ranges_limit_is_one_for_both_lists():
    """A TD's private_ranges and Xen's frames: one bound (app.kvm.ranges.MAP_RANGES_MAX), one
    refusal, and the schema descriptions say the bound."""
    from app.kvm.ranges import MAP_RANGES_MAX
    from app.kvm.tdx import check_private_ranges
    from app.xen.map import FrameRange, check_frames

    props = s.MapRequest.model_json_schema()["properties"]
    assert f"at most {MAP_RANGES_MAX};" in props["private_ranges"]["description"]
    assert f"at most {MAP_RANGES_MAX}," in s.XenMapIn.model_json_schema()["properties"]["frames"]["description"]
    vm = VmConfig(memory_map=(MemRange(0, 1 << 30, "ram"),))
    pairs = tuple((n << 13, (n << 13) + 4096) for n in range(MAP_RANGES_MAX + 1))
    check_private_ranges(vm, pairs[:-1])
    check_frames(tuple(FrameRange(a, b) for a, b in pairs[:-1]), vm)
    rule = f"the map takes at most {MAP_RANGES_MAX} (each edge splits it)"
    assert _refusal(lambda: check_private_ranges(vm, pairs)) == (("private_ranges",), "65 private ranges given", rule)
    assert _refusal(lambda: check_frames(tuple(FrameRange(a, b) for a, b in pairs), vm)) == (
        ("frames",), "65 frame ranges given", rule)


def test_xen_reads_maxphyaddr_and_the_memory_map_only():
    """One test for the API (422 at vm) and the CLI (at kernel): app.xen.resolve.kvm_settings_given."""
    from app.xen.resolve import kvm_settings_given

    assert not kvm_settings_given(VmConfig(maxphyaddr=39, memory_map=(MemRange(0, 1 << 20, "ram"),)))
    for kvm in (VmConfig(vendor="amd"), VmConfig(vm_type="tdx"), VmConfig(noncoherent_dma=True),
                VmConfig(self_snoop=False), VmConfig(quirk_cd_nw_cleared=False)):
        assert kvm_settings_given(kvm), kvm


# -- one refusal on every path: real requests, not the names they are bound to --------------

from fastapi.testclient import TestClient  # noqa: E402

from app.main import app  # noqa: E402
from app.permalink import decode, decode_report  # noqa: E402

client = TestClient(app)


def _errors(path: str, body: dict) -> tuple[list, str, str]:
    r = client.post(path, json=body)
    assert r.status_code == 422, (path, r.text)
    e = r.json()["errors"][0]
    return tuple(e["loc"]), e["msg"], e.get("rule", "")


EVENT = {"kind": "cr0_cd", "value": True}
BY_PATH = {"/api/v1/resolve": {"gpa": "0x0"}, "/api/v1/zap": {"event": EVENT}, "/api/v1/map": {},
           "/api/v1/permalink": {"gpa": "0x0"}}


@pytest.mark.parametrize(("kernel", "extra", "loc", "link"), [
    ("v6.16", {"private_ranges": []}, ["body", "private_ranges"], "private_ranges=0x0-0x1000"),
    ("xen", {"private_ranges": []}, ["body", "private_ranges"], "kernel=xen&private_ranges=0x0-0x1000"),
    ("v6.16", {"xen": {"iommu": True}}, ["body", "xen"], "xen_iommu=1"),
    ("v6.16", {"xen": {"frames": []}}, ["body", "xen"], "xen_frames=0x0-0x1000"),
    ("v6.16", {"xen": {"pinned": []}}, ["body", "xen"], "xen_pinned=0x200-0x3ff:WC"),
    ("v6.16", {"amd": {"host_mtrr": "UC"}}, ["body", "amd"], "amd_host_mtrr=UC"),
    ("xen", {"vm": {"noncoherent_dma": True}}, ["body", "vm"], None),
])
def test_every_path_refuses_a_foreign_input_with_one_text(kernel, extra, loc, link):
    """An input of one system given for another: every endpoint that takes it (resolve, zap,
    map, permalink) refuses it at the same place with the same message and rule, and a link
    with it drops it with that message and rule (decode_report), rather than each path keep
    its own wording (issue 14 review: the Xen permalink once had its own private_ranges text)."""
    seen = set()
    for path, more in BY_PATH.items():
        if "private_ranges" in extra and path in ("/api/v1/resolve", "/api/v1/zap"):
            continue  # the map's input: resolve and zap have no such member
        if "frames" in extra.get("xen", {}) and path == "/api/v1/resolve":
            continue
        seen.add(_errors(path, {"kernel": kernel, "vcpu": {}, **more, **extra}))
    assert len(seen) == 1, seen
    ((got_loc, msg, rule),) = seen
    assert list(got_loc) == loc and msg and rule
    if link is not None:
        decode(f"v=1&{link}")  # syntax alone: decode reads it
        _, dropped = decode_report(f"v=1&{link}")
        assert [(d.message, d.rule) for d in dropped] == [(msg, rule)]


@pytest.mark.parametrize("name", [*MTRR_TYPE_NAMES, "UC-", "mixed"])
def test_host_mtrr_types_one_list_on_every_path(name):
    """The AMD host MTRR type of a frame: the link, the API and the map of Xen (xen.host_mtrr
    there also takes `mixed`) take the MTRR encodings' names (MTRR_TYPE_NAMES), no more."""
    ok = name in MTRR_TYPE_NAMES
    body = {"kernel": "v6.16", "vm": {"vendor": "amd"}, "vcpu": {}, "gpa": "0x0", "amd": {"host_mtrr": name}}
    assert (client.post("/api/v1/resolve", json=body).status_code == 200) is ok
    try:
        got = decode(f"v=1&vendor=amd&amd_host_mtrr={name}").amd.host_mtrr
    except MemTypeError as e:
        assert not ok and e.rule == f"one of {', '.join(MTRR_TYPE_NAMES)}"
    else:
        assert ok and got == name
    xen = {"kernel": "xen", "vcpu": {}, "xen": {"host_mtrr": name}}
    assert (client.post("/api/v1/map", json=xen).status_code == 200) is ok
    assert (name in HOST_MTRR_CHOICES) is (ok or name == "mixed")
