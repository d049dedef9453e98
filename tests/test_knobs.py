"""The knob table (app/knobs.py) against what it claims to define.

Why: the permalink codec, the CLI options, the page's controls and its state code are
derived from the table, so a row that disagrees with the core dataclasses, the request
schema, the parser or the rendered page would be a silent gap. Each test below reads the
other side (dataclass fields, the pydantic models, argparse, the rendered HTML) and never
the table's own derived copies.
"""

from __future__ import annotations

import re
import typing
from dataclasses import fields
from html.parser import HTMLParser

import pytest
from pydantic import BaseModel

from app import permalink
from app.api import schemas
from app.cli import build_parser
from app.knobs import GENERIC_KINDS, KINDS, KNOBS, OWNERS, Knob
from app.kvm.era import Fault
from app.kvm.host_page import HostPage
from app.kvm.scenario import EVENT_TYPES, Access, VcpuState, VmConfig
from app.kvm.svm import SvmHost
from app.permalink import LinkState, decode, encode, short_path, short_query
from app.xen.facts import XenFacts

pytestmark = pytest.mark.anyio

# What other tools depend on, written out once more as the oracle (a changed or dropped name
# breaks old links, scripts and API clients): permalink parameter -> (short code, CLI flag).
FROZEN = {
    "view": ("w", None), "kernel": ("k", "--kernel"), "vs": ("s", None), "ncdma": ("n", "--ncdma"),
    "cdnw_quirk": ("q", "--cdnw-quirk"), "pat_quirk": ("i", "--pat-quirk"), "selfsnoop": ("o", "--selfsnoop"),
    "guest_mtrr": ("g", "--guest-mtrr"), "maxphyaddr": ("x", "--maxphyaddr"), "map": ("m", "--map"),
    "cd": ("c", "--cd"), "nw": ("N", "--nw"), "pg": ("P", "--pg"), "pat": ("p", "--pat"), "mtrr": ("r", "--mtrr"),
    "deftype": ("d", "--deftype"), "fixed": ("f", "--fixed"), "var": ("V", "--var"), "gpa": ("a", "--gpa"),
    "mmio": ("M", "--mmio"), "private": ("z", "--private"), "host": (None, "--host"), "host_mt": (None, "--host-mt"),
    "host_hpa": (None, "--host-hpa"), "host_e820": (None, "--host-e820"), "host_pat": (None, "--host-pat"),
    "event": ("e", "--event"),
    "event_msr": ("E", "--event-msr"), "event_value": ("u", "--event-value"), "event_nw": ("W", "--event-nw"),
    "pati": ("t", None),
}
FROZEN_API = {  # permalink parameter -> API request field (the page's and the API's names)
    "ncdma": "vm.noncoherent_dma", "cdnw_quirk": "vm.quirk_cd_nw_cleared", "pat_quirk": "vm.quirk_ignore_guest_pat",
    "selfsnoop": "vm.self_snoop", "guest_mtrr": "vm.guest_has_mtrr", "maxphyaddr": "vm.maxphyaddr",
    "map": "vm.memory_map", "cd": "vcpu.cr0_cd", "nw": "vcpu.cr0_nw", "pg": "vcpu.cr0_pg", "pat": "vcpu.pat",
    "gpa": "gpa", "mmio": "mmio", "kernel": "kernel",
}
FROZEN_CONTROLS = {  # page element ids the browser tests and users' bookmarklets use
    "ncdma": "ncdma", "cdnw_quirk": "cdnw_quirk", "pat_quirk": "pat_quirk", "selfsnoop": "selfsnoop",
    "guest_mtrr": "guest_mtrr", "maxphyaddr": "maxphyaddr", "cd": "cr0_cd", "nw": "cr0_nw", "pg": "cr0_pg",
    "gpa": "gpa", "mmio": "mmio", "kernel": "kernel", "vs": "vs", "pati": "pati", "pat": "pat-raw",
}
NO_PAGE_EDITOR = {"view", "map", "mtrr", "fixed", "var", "host", "host_mt", "host_hpa", "host_e820", "host_pat",
                  "vs_vendor", "vs_type", "amd_host_pat", "amd_host_mtrr", "xen_iommu", "xen_io", "xen_pci",
                  "xen_vcpu", "xen_pinned",
                  "xen_p2m", "xen_order", "xen_mfn", "xen_mmio_ro", "xen_special", "xen_host_mtrr",
                  "private_ranges", "xen_frames"}
"""Rows the page has no control of their own for (the view follows the panels, the map and
the host page come from the link, the MTRR layout is a preset button, fixed and variable
ranges are editor tables)."""

OWNER_CLASS = {"vm": VmConfig, "vcpu": VcpuState, "access": Access, "host_page": HostPage,
               "link": LinkState, "xen": XenFacts, "amd": SvmHost}


def test_the_names_other_tools_use_are_kept():
    """A new row adds names; none of these may change or go."""
    assert FROZEN.items() <= {k.param: (k.short, k.cli) for k in KNOBS}.items()
    assert FROZEN_API.items() <= {k.param: k.api for k in KNOBS}.items()
    assert FROZEN_CONTROLS.items() <= {k.param: k.control for k in KNOBS}.items()
    assert {p: c for p, (c, _) in FROZEN.items() if c}.items() <= permalink.SHORT_CODES.items()


def test_rows_are_well_formed():
    assert len({k.param for k in KNOBS}) == len(KNOBS)
    assert all(k.owner in OWNERS and k.kind in KINDS for k in KNOBS)
    for k in KNOBS:
        assert k.part_of is None or k.part_of in {r.param for r in KNOBS if r.part_of is None}, k.param
        if k.kind == "dec":
            assert k.bounds and k.rule, k.param
        if k.abbr:
            assert k.abbr in k.label, k.param
        if k.cli:
            assert k.cli == "--" + k.param.replace("_", "-"), k.param


@pytest.mark.parametrize("cls, owner", [(VmConfig, "vm"), (VcpuState, "vcpu"), (Access, "access"),
                                        (HostPage, "host_page"), (XenFacts, "xen")])
def test_every_core_field_has_a_row(cls, owner):
    """A new VmConfig/VcpuState field without a row would be unreachable from a link, the CLI
    and the page. HostPage's `preset` is the `host` row's other spelling."""
    have = {k.attr.split(".")[0] for k in KNOBS if k.owner == owner and k.attr}
    if owner == "access" and any(k.owner == "host_page" for k in KNOBS):
        have.add("host_page")  # its fields are rows of their own
    want = {f.name for f in fields(cls)} - ({"preset"} if cls is HostPage else set())
    assert want == have, (want - have, have - want)


def test_rows_name_real_attributes_and_read_their_defaults_there():
    for k in KNOBS:
        assert k.attr is not None, k.param
        head = k.attr.split(".")[0]
        if k.owner == "event":  # a union of typed events: each of them answers the attribute
            assert all(hasattr(t, head) for t in EVENT_TYPES.values()), k.param
        else:
            assert head in {f.name for f in fields(OWNER_CLASS[k.owner])}, k.param
    d = LinkState()
    for k in KNOBS:
        if k.owner in ("vm", "vcpu", "access", "xen", "amd"):
            assert k.default == k.get(getattr(d, k.owner)), k.param
        elif k.owner == "link":
            assert k.default == k.get(d), k.param
    assert {k.param: k.default for k in KNOBS if k.owner == "host_page"} == {
        "host": None, "host_mt": None, "host_hpa": None, "host_e820": False, "host_pat": True}


def test_fault_reads_vm_and_vcpu_fields_by_name():
    """app.kvm.resolve.fault_for copies every Fault field but is_mmio and guest_mtrr from the
    VmConfig or VcpuState field of the same name (so an mt_mask knob is a Fault field)."""
    core = {f.name for f in fields(VmConfig)} | {f.name for f in fields(VcpuState)}
    assert {f.name for f in fields(Fault)} - {"is_mmio", "guest_mtrr"} <= core


def _members(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, Annotated)."""
    out: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in typing.get_args(annotation):
        out.extend(_members(arg))
    return out


def _has_field(models: list[type[BaseModel]], path: list[str]) -> bool:
    head, *rest = path
    for m in models:
        for name, f in m.model_fields.items():
            if head in (name, f.alias) and (not rest or _has_field(_members(f.annotation), rest)):
                return True
    return False


@pytest.mark.parametrize("k", KNOBS, ids=lambda k: k.param)
def test_api_field_is_in_the_request_schema(k: Knob):
    """POST /api/v1/permalink takes the page's whole state: every row's field is in it, and
    the scenario rows are in resolve's body too."""
    assert k.api is not None
    path = k.api.split(".")
    assert _has_field([schemas.PermalinkRequest], path), k.api
    if k.owner in ("vm", "vcpu", "access", "host_page") or k.param == "kernel":
        assert _has_field([schemas.ResolveRequest], path), k.api
    if k.owner == "event":
        assert _has_field([schemas.ZapRequest], path), k.api


def test_vm_request_members_are_the_vm_rows_with_the_core_defaults():
    """VmIn is built from the VM rows (app/api/schemas.py): its members are exactly those
    rows' API names in the table's order, each default is VmConfig's, a closed set of
    values is refused by name, and a member left at its default is dropped from an echoed
    body only where the row says so."""
    vm_rows = [k for k in KNOBS if k.owner == "vm"]
    assert list(schemas.VmIn.model_fields) == [k.api.split(".")[-1] for k in vm_rows if k.api]
    core = VmConfig()
    body = schemas.VmIn()
    for k in vm_rows:
        name = k.api.split(".")[-1] if k.api else ""
        if k.attr == "memory_map":
            assert getattr(body, name) is None  # omitted: the core's DEFAULT_MEMORY_MAP (app.api.convert.to_vm)
        else:
            assert getattr(body, name) == getattr(core, k.attr or ""), k.param
    dumped = body.model_dump()
    assert {k.api.split(".")[-1] for k in vm_rows if not k.echo_default and k.api}.isdisjoint(dumped)
    assert {k.api.split(".")[-1] for k in vm_rows if k.echo_default and k.api} <= set(dumped)
    for k in vm_rows:
        if k.choices:
            name = k.api.split(".")[-1] if k.api else ""
            for value in k.choices:
                assert getattr(schemas.VmIn.model_validate({name: value}), name) == value
            with pytest.raises(ValueError, match=name):
                schemas.VmIn.model_validate({name: "nosuch"})


# -- the permalink: each row round-trips ---------------------------------------------------

EXAMPLES = {
    "view": "view=zap", "kernel": "kernel=v6.7", "vs": "vs=v4.2",
    "map": "map=0x0-0x80000000:ram,0xfd000000-0xfe000000:mmio",
    "pat": "pat=linux", "mtrr": "mtrr=seabios-linux", "deftype": "deftype=0xc06", "fixed": "fixed=WB*16,UC*72",
    "var": "var=0x80000000:0x3fff80000800", "host": "host=vga_dev_mem",
    "host_mt": "host=reserved&host_mt=WC", "host_hpa": "host=reserved&host_hpa=0xa0000",
    "host_e820": "host=no_struct_page&host_e820=1", "host_pat": "host=reserved&host_pat=0",
    "event": "event=noncoherent_dma&event_value=1", "event_msr": "event=mtrr_write&event_msr=0x2ff&event_value=0x806",
    "event_value": "event=pat_write&event_value=0x0007040600070406",
    "event_nw": "event=cr0_cd&event_value=1&event_nw=1",
    "vendor": "vendor=amd", "vmtype": "vmtype=tdx", "vs_vendor": "vs_vendor=amd", "vs_type": "vs_type=tdx",
    "xen_pinned": "xen_pinned=0x100-0x1ff:WC,0x300-0x3ff:UC-", "xen_p2m": "xen_p2m=grant_map_ro",
    "xen_mmio_ro": "xen_mmio_ro=partial", "xen_special": "xen_special=all", "xen_host_mtrr": "xen_host_mtrr=mixed",
    "amd_host_mtrr": "amd_host_mtrr=WT",
    "private_ranges": "private_ranges=0x0-0xa0000,0x100000-0x200000",
    "xen_frames": "xen_frames=0x100000-0x200000:grant_map_rw:special,0x300000-0x301000:mmio_ro",
}
"""A non-default query for each row of a named codec (the plain rows' values are made from
their kind below)."""


def _plain_example(k: Knob) -> str:
    if k.kind == "bool":
        return f"{k.param}={0 if k.default else 1}"
    if k.kind == "opt_bool":
        return f"{k.param}=1"
    if k.kind == "hex":
        return f"{k.param}=0x1000"
    assert k.kind == "dec" and k.bounds
    lo, hi = k.page_range or k.bounds
    return f"{k.param}={lo + 1 if lo + 1 != k.default else lo}"


def test_every_row_has_an_example():
    assert set(EXAMPLES) == {k.param for k in KNOBS if k.kind not in GENERIC_KINDS or k.part_of}


@pytest.mark.parametrize("k", KNOBS, ids=lambda k: k.param)
def test_permalink_round_trips(k: Knob):
    query = "v=1&" + (EXAMPLES.get(k.param) or _plain_example(k))
    state = decode(query)
    assert state != LinkState(), k.param
    text = encode(state)
    assert re.search(rf"(^|&){k.param}=", text), (k.param, text)
    assert decode(text) == state
    assert sorted(text.split("&")) == sorted(query.split("&")), "the link writes exactly what it read"
    assert decode(short_query(short_path(state)[2:])) == state


@pytest.mark.parametrize("k", [k for k in KNOBS if k.generic], ids=lambda k: k.param)
def test_plain_rows_refuse_bad_values_naming_the_parameter(k: Knob):
    from app.x86.memtype import MemTypeError

    with pytest.raises(MemTypeError) as e:
        decode(f"v=1&{k.param}=zz")
    assert e.value.field == k.param


def test_plain_rows_set_the_core_field():
    for k in KNOBS:
        if k.generic and k.owner in ("vm", "vcpu", "access"):
            state = decode("v=1&" + _plain_example(k))
            changed = [f.name for f in fields(OWNER_CLASS[k.owner])
                       if getattr(getattr(state, k.owner), f.name) != getattr(getattr(LinkState(), k.owner), f.name)]
            assert changed == [k.attr], k.param


def test_scenario_json_has_every_plain_field():
    body = permalink.scenario_json("v6.16", VmConfig(), VcpuState(), Access(gpa=0x1000, mmio=True))
    for k in KNOBS:
        if k.generic and k.owner in ("vm", "vcpu", "access"):
            if k.owner == "access" and k.get(Access(gpa=0x1000, mmio=True)) is None:
                assert k.api not in body, k.param  # an access fact not given is left out (private)
                continue
            node = body
            for part in k.api.split("."):
                node = node[part]
            assert node == permalink._json(k, k.get(getattr(decode("v=1&gpa=0x1000&mmio=1"), k.owner))), k.param


# -- the CLI -------------------------------------------------------------------------------


def _options(sub: str) -> set[str]:
    ap = build_parser()
    [action] = [a for a in ap._actions if a.dest == "command"]
    return {s for a in action.choices[sub]._actions for s in a.option_strings}


@pytest.mark.parametrize("k", [k for k in KNOBS if k.cli], ids=lambda k: k.param)
def test_cli_flag_is_in_the_parser(k: Knob):
    resolve, zap = _options("resolve"), _options("zap")
    if k.owner == "event":
        assert k.cli in zap and k.cli not in resolve
    elif k.owner == "host_page":
        assert k.cli in resolve and k.cli not in zap
    else:
        assert k.cli in resolve and k.cli in zap


@pytest.mark.parametrize("k", [k for k in KNOBS if k.cli], ids=lambda k: k.param)
def test_cli_flags_reach_the_link(k: Knob):
    """Each flag lands in the state the CLI decodes (so in the permalink it prints); the
    resolver's rules are its own tests' business."""
    from app.cli import _state

    pairs = [p.split("=", 1) for p in (EXAMPLES.get(k.param) or _plain_example(k)).split("&")]
    sub = "zap" if k.owner == "event" else "resolve"
    argv = [a for name, value in pairs for a in (f"--{name.replace('_', '-')}", value)]
    args = build_parser().parse_args([sub, *argv])
    text = encode(_state(args, sub))
    assert all(f"{name}={value}" in text.split("&") for name, value in pairs), (k.param, text)


def test_a_cli_flag_resolves(capsys):
    from app.cli import main

    assert main(["resolve", "--kernel", "v6.7", "--ncdma", "1", "--cd", "1", "--host", "vga_dev_mem",
                 "--gpa", "0xa0000"]) == 0
    out = capsys.readouterr().out.splitlines()
    i = out.index("Permalink (one URL: join the lines without spaces):")
    link = "".join(line.strip() for line in out[i + 1:i + 3])
    assert link.endswith("?v=1&kernel=v6.7&ncdma=1&cd=1&gpa=0xa0000&host=vga_dev_mem")


# -- the page ----------------------------------------------------------------------------


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.errs: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.by_id[a["id"]] = {"tag": tag, **a}
        if "data-err" in a:
            self.errs.add(a["data-err"] or "")


async def test_page_renders_a_control_per_row(client):
    r = await client.get("/?v=1&kernel=v6.7&ncdma=1")
    assert r.status_code == 200
    page = _Elements()
    page.feed(r.text)
    assert {k.param for k in KNOBS if not k.control} == NO_PAGE_EDITOR
    for k in KNOBS:
        if not k.control:
            continue
        assert k.control in page.by_id, k.param
        el = page.by_id[k.control]
        if k.owner in ("vm", "vcpu") and k.kind in ("bool", "dec"):  # drawn by the template's loop
            assert el["tag"] == "input" and el["type"] == ("checkbox" if k.kind == "bool" else "number"), k.param
            assert el["name"] == k.api_leaf and k.api in page.errs, k.param
        if k.choices:  # vendor, vmtype: a select of the row's values
            assert el["tag"] == "select" and el["name"] == k.api_leaf and k.api in page.errs, k.param
    assert page.by_id["maxphyaddr"]["min"] == "36" and page.by_id["maxphyaddr"]["max"] == "52"


async def test_page_initial_data_carries_the_table(client):
    import json

    r = await client.get("/")
    m = re.search(r'<script type="application/json" id="initial-state">(.*?)</script>', r.text, re.S)
    assert m is not None
    rows = json.loads(m.group(1))["knobs"]
    assert [(k["param"], k["api"], k["control"], k["kind"]) for k in rows] == [
        (k.param, k.api, k.control, k.kind) for k in KNOBS]
    assert {"ncdma": False, "cdnw_quirk": True, "pat_quirk": True, "selfsnoop": True, "guest_mtrr": True,
            "maxphyaddr": 46}.items() <= {k["param"]: k["default"] for k in rows if k["owner"] == "vm"}.items()
