"""Permalinks: readable, stateless, one parameter per non-default setting plus v=1, and
decode(encode(state)) == state, so a link pasted in a thread reopens the same scenario.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import app.permalink as permalink_mod
from app.kvm.layouts import ovmf_state
from app.kvm.scenario import (
    Access,
    Cr0Write,
    MemRange,
    MtrrWrite,
    NoncoherentDma,
    PatWrite,
    VcpuState,
    VmConfig,
)
from app.permalink import LinkState, decode, encode, event_json, request_body, scenario_json, url
from app.presets import PRESETS
from app.x86.memtype import MemTypeError
from app.x86.mtrr import MtrrState, VarMtrr
from app.x86.pat import PAT_LINUX, Pat


def test_default_is_just_the_version():
    assert encode(LinkState()) == "v=1"
    assert url(LinkState(), "http://h:8000/") == "http://h:8000/?v=1"
    assert decode("") == LinkState() == decode("v=1")


def test_readable_names():
    s = LinkState("v6.7", VmConfig(noncoherent_dma=True), VcpuState(cr0_cd=True, pat=Pat.from_msr(PAT_LINUX),
                  mtrr=ovmf_state(46)), Access(0xFEE00000))
    assert encode(s) == "v=1&kernel=v6.7&ncdma=1&cd=1&pat=linux&mtrr=ovmf&gpa=0xfee00000"


def test_explicit_mtrrs_and_event():
    m = MtrrState(0xC06, (0x0606060606060606,) * 2 + (0,) * 9, (VarMtrr(0x80000000, 0x3FFF80000800),))
    s = LinkState("v6.7", VmConfig(noncoherent_dma=True, maxphyaddr=39), VcpuState(mtrr=m),
                  event=MtrrWrite(msr=0x2FF, value=0x806), view="zap")
    q = encode(s)
    assert "deftype=0xc06&fixed=WB*16,UC*72&var=0x80000000:0x3fff80000800" in q
    assert "event=mtrr_write&event_msr=0x2ff&event_value=0x806" in q
    assert decode(q) == s


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip(name):
    s = PRESETS[name].state
    assert decode(encode(s)) == s
    assert decode(url(s, "http://x").split("?", 1)[1]) == s


@pytest.mark.parametrize("query, field", [
    ("v=2", "v"), ("kernel=v9", "kernel"), ("vs=x", "vs"), ("view=list", "view"), ("ncdma=yes", "ncdma"),
    ("gpa=12", "gpa"), ("pat=0xzz", "pat"), ("pat=0x02", "pat"), ("mtrr=coreboot", "mtrr"),
    ("fixed=WB*16", "fixed"), ("fixed=XX*88", "fixed"), ("var=0x1000", "var"), ("map=0x0-0x1000:rom", "map"),
    ("event=cr4", "event"), ("event=mtrr_write&event_value=0x1", "event_msr"), ("event=cr0_cd", "event_value"),
    ("maxphyaddr=abc", "maxphyaddr"), ("mtrr=ovmf&maxphyaddr=99", "maxphyaddr"),
    # str.isdigit() is true for these, int() refuses '²' and accepts '٣' (Arabic-Indic 3): ASCII only
    ("maxphyaddr=%C2%B2", "maxphyaddr"), ("maxphyaddr=%D9%A3%D9%A6", "maxphyaddr"),
    ("maxphyaddr=4%EF%BC%96", "maxphyaddr"),
    ("maxphyaddr=1000", "maxphyaddr"), ("maxphyaddr=", "maxphyaddr"), ("maxphyaddr=46%0A", "maxphyaddr"),
    ("fixed=UC*%C2%B2", "fixed"), ("fixed=UC*%D9%A8%D9%A8", "fixed"), ("fixed=WB*16,UC*72%0A", "fixed"),
    ("fixed=WB*089", "fixed"), ("fixed=WB*0,UC*88", "fixed"),
    ("pati=8", "pati"), ("pati=%C2%B2", "pati"), ("pati=-1", "pati"), ("pati=", "pati"),
])
def test_bad_params_name_the_parameter(query, field):
    with pytest.raises(MemTypeError) as e:
        decode(query)
    assert e.value.field == field


def test_pati_is_the_page_only_parameter():
    s = LinkState("v6.7", pati=5)
    assert encode(s) == "v=1&kernel=v6.7&pati=5"
    assert decode("v=1&kernel=v6.7&pati=5") == s
    assert decode("pati=0") == LinkState() and encode(LinkState(pati=0)) == "v=1"
    assert request_body(s) == request_body(LinkState("v6.7"))  # the API bodies never carry it
    assert "pati" in permalink_mod.__doc__


def test_decimal_parameters_are_ascii_only():
    # no int()/isdigit() left in the decoder: every decimal goes through one ASCII-only check
    import ast

    with open(permalink_mod.__file__, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    calls = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    assert not calls & {"isdigit", "isnumeric", "isdecimal"}
    assert decode("maxphyaddr=040").vm.maxphyaddr == 40
    assert decode("fixed=WB*16,UC*72") == decode("fixed=WB*016,UC*72")


def test_unknown_params_are_ignored():
    assert decode("v=1&utm_source=lore&kernel=v6.7").kernel == "v6.7"


def test_request_body_by_view():
    s = PRESETS["ovmf"].state
    assert "gpa" in request_body(s) and "event" not in request_body(s)
    z = request_body(LinkState(s.kernel, s.vm, s.vcpu, event=s.event, view="zap"))
    assert "gpa" not in z and z["event"] == {"kind": "mtrr_write", "msr": "0x2ff", "value": "0x806"}
    assert request_body(LinkState("v4.2", vs="v6.7", view="diff")) == {"a": "v4.2", "b": "v6.7"}


bools = st.booleans()
types = st.sampled_from([0, 1, 4, 5, 6])


@st.composite
def states(draw):
    maxphy = draw(st.integers(36, 52))
    vm = VmConfig(noncoherent_dma=draw(bools), quirk_cd_nw_cleared=draw(bools), quirk_ignore_guest_pat=draw(bools),
                  self_snoop=draw(bools), guest_has_mtrr=draw(bools), maxphyaddr=maxphy,
                  memory_map=draw(st.sampled_from([VmConfig().memory_map,
                                                   (MemRange(0, 0x1000, "ram"), MemRange(0x2000, 0x5000, "mmio"))])))
    pat = Pat.from_msr(sum(draw(st.sampled_from([0, 1, 4, 5, 6, 7])) << (8 * i) for i in range(8)))
    fixed = tuple(sum(draw(types) << (8 * b) for b in range(8)) for _ in range(11))
    var = tuple(VarMtrr(draw(st.integers(0, (1 << maxphy) - 1)) & ~0xFFF | draw(types),
                        draw(st.integers(0, (1 << maxphy) - 1)) & ~0x7FF) for _ in range(draw(st.integers(0, 8))))
    mtrr = MtrrState(draw(st.sampled_from([0, 0x806, 0xC06, 0x400])), fixed, var)
    vcpu = VcpuState(cr0_cd=draw(bools), cr0_nw=draw(bools), cr0_pg=draw(bools), pat=pat, mtrr=mtrr)
    ev = draw(st.one_of(st.none(), st.builds(Cr0Write, value=bools, cr0_nw=st.one_of(st.none(), bools)),
                        st.builds(NoncoherentDma, value=bools),
                        st.builds(PatWrite, value=st.integers(0, (1 << 64) - 1)),
                        st.builds(MtrrWrite, msr=st.sampled_from([0x2FF, 0x200, 0x250]),
                                  value=st.integers(0, (1 << 64) - 1))))
    access = Access(draw(st.integers(0, (1 << maxphy) - 1)), draw(st.one_of(st.none(), bools)))
    return LinkState(draw(st.sampled_from(["v4.2", "v6.7", "v6.16"])), vm, vcpu, access, ev,
                     draw(st.one_of(st.none(), st.just("v6.11"))), draw(st.sampled_from(["resolve", "zap", "diff"])),
                     draw(st.integers(0, 7)))


@settings(max_examples=150, deadline=None)
@given(states())
def test_round_trip_any_state(s):
    q = encode(s)
    assert q.startswith("v=1") and " " not in q
    assert decode(q) == s


# -- the page at / never fails on a permalink ---------------------------------------------


def call(app, method: str, path: str, **kw) -> httpx.Response:
    """One request through the ASGI app, from a plain (sync) test: Hypothesis drives those
    more reliably than async ones."""
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.request(method, path, **kw)
    return asyncio.run(go())


INITIAL = re.compile(r'<script type="application/json" id="initial-state">(.*?)</script>', re.S)


def initial_state(html: str) -> dict:
    m = INITIAL.search(html)
    assert m, html[:500]
    return json.loads(m.group(1))


@pytest.mark.anyio
@pytest.mark.parametrize("query, field", [
    ("maxphyaddr=%C2%B2", "maxphyaddr"),
    ("fixed=UC*%C2%B2", "fixed"),
    ("v=1&kernel=v6.7&maxphyaddr=%D9%A3%D9%A6", "maxphyaddr"),
    ("pati=9", "pati"),
])
async def test_page_with_unicode_digits_shows_the_error(client, query, field):
    """The unreadable parameter is dropped and named (with the rule); the rest is kept."""
    r = await client.get("/?" + query)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    j = initial_state(r.text)
    assert j["error"] is None
    [d] = j["dropped"]
    assert d["param"] == field and d["message"] and d["rule"]
    assert j["initial"]["scenario"]["vm"]["maxphyaddr"] == 46  # the default for what was dropped
    if "kernel=v6.7" in query:
        assert j["initial"]["kernel"] == "v6.7"  # kept


@pytest.mark.anyio
async def test_page_passes_pati_and_the_register_encodings(client):
    j = initial_state((await client.get("/?v=1&kernel=v6.7&pati=3")).text)
    assert j["error"] is None and j["initial"]["pati"] == 3 and j["initial"]["kernel"] == "v6.7"
    reg = j["registers"]
    assert reg["types"] == {"0": "UC", "1": "WC", "4": "WT", "5": "WP", "6": "WB", "7": "UC-"}
    assert reg["pat_codes"] == [0, 1, 4, 5, 6, 7] and reg["mtrr_codes"] == [0, 1, 4, 5, 6]
    assert [f["msr"] for f in reg["fixed_msrs"]] == [0x250, 0x258, 0x259, *range(0x268, 0x270)]
    assert {p["name"]: p["value"] for p in reg["pat_presets"]}["linux"] == "0x0407050600070106"


# Every permalink parameter with a few good values: the decoder stops at the first bad
# parameter, so a fuzzed one is only reached when those checked before it pass.
GOOD = {
    "v": ["1"], "view": ["resolve", "zap", "diff"], "kernel": ["v6.7", "v4.2"], "vs": ["v6.11"],
    "ncdma": ["1"], "cdnw_quirk": ["0"], "pat_quirk": ["1"], "selfsnoop": ["0"], "guest_mtrr": ["1"],
    "maxphyaddr": ["46", "40"], "map": ["0x0-0x80000000:ram,0xfd000000-0xfe000000:mmio"], "cd": ["1"], "nw": ["0"],
    "pg": ["1"], "pat": ["linux", "0x0007040600070406"], "mtrr": ["ovmf", "seabios-linux"], "deftype": ["0xc06"],
    "fixed": ["WB*16,UC*72"], "var": ["0x80000000:0x3fff80000800"], "gpa": ["0xfd000000"], "mmio": ["0"],
    "event": ["cr0_cd", "mtrr_write", "pat_write"], "event_msr": ["0x2ff"], "event_value": ["0", "0x806"],
    "event_nw": ["1"], "pati": ["3"],
}
NAMES = list(GOOD)
PIECES = ["0", "1", "46", "²", "٣", "٦", "４", "𝟒", "¹", "0x", "0x10", "0xfd000000", "0xffffffffffffffff", "ff",
          "UC", "WB", "UC-", "*", "**", ",", ":", "-", "*88", "*²", "ram", "mmio", "v6.7", "v4.2", "zap", "diff",
          "ovmf", "ovmf-linux", "linux", "cr0_cd", "mtrr_write", "pat_write", "noncoherent_dma", "\n", " ", "%", "\x00"]
# decimal-looking text: ASCII digits mixed with Unicode ones, decimal ('٣', int() reads it) and
# digit-but-not-decimal ('²', str.isdigit() says yes, int() refuses)
UNICODE_DIGITS = [chr(c) for c in range(0x80, 0x20000) if chr(c).isdigit()]
digit_char = st.one_of(st.sampled_from("0123456789"), st.sampled_from(UNICODE_DIGITS))
digits = st.text(alphabet=digit_char, min_size=1, max_size=3)
runs = st.lists(st.tuples(st.sampled_from(["UC", "WB", "WC", "UC-", "XX", ""]), digits).map("*".join),
                min_size=1, max_size=4).map(",".join)
fuzz = st.one_of(st.text(max_size=12), digits, runs, st.lists(st.sampled_from(PIECES), max_size=6).map("".join))


def fuzz_for(name: str) -> st.SearchStrategy[str]:
    own = {"maxphyaddr": digits, "pati": digits, "fixed": runs}.get(name)  # the decimal parameters
    return st.one_of(own, fuzz) if own is not None else fuzz


@st.composite
def queries(draw) -> list[tuple[str, str]]:
    """Some parameters fuzzed, the others absent or good (in the decoder's order, so a
    fuzzed one is reached), plus stray and repeated parameters with arbitrary names."""
    bad = set(draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3)))
    pairs = []
    for name in NAMES:
        if name in bad:
            pairs.append((name, draw(fuzz_for(name))))
        elif draw(st.booleans()):
            pairs.append((name, draw(st.sampled_from(GOOD[name]))))
    pairs += draw(st.lists(st.tuples(st.one_of(st.sampled_from(NAMES), st.text(max_size=6)), fuzz), max_size=2))
    return pairs


@st.composite
def decimal_queries(draw) -> list[tuple[str, str]]:
    """Good parameters around one decimal parameter given ASCII and Unicode digits."""
    name = draw(st.sampled_from(["maxphyaddr", "pati", "fixed"]))
    pairs = [(n, draw(st.sampled_from(GOOD[n]))) for n in NAMES if n != name and n != "mtrr" and draw(st.booleans())]
    return [*pairs, (name, draw(runs if name == "fixed" else digits))]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["maxphyaddr", "pati", "fixed"]), st.one_of(digits, runs))
def test_decimal_parameters_fuzz(name, value):
    """The decimal parameters with ASCII and Unicode digits: a number, or a MemTypeError naming
    the parameter (str.isdigit() + int() raised ValueError for '²': a 500 on GET /)."""
    try:
        decode([(name, value)])
    except MemTypeError as e:
        assert e.field == name
    else:
        assert value.isascii()


@settings(max_examples=600, deadline=None)
@given(st.one_of(queries(), decimal_queries()))
def test_decode_fuzz_raises_only_memtype_errors(pairs):
    """decode() either returns a state or names the parameter; nothing else escapes."""
    for q in (urlencode(pairs), pairs):
        try:
            s = decode(q)
        except MemTypeError as e:
            assert e.field and e.message
        else:
            assert isinstance(s, LinkState)


@settings(max_examples=300, deadline=None)
@given(st.one_of(queries(), decimal_queries()))
def test_page_fuzz_never_500(api_app, pairs):
    """GET / with any query: the page (200), the state or the defaults plus a message naming
    the parameter; never a 500 nor the decoder-bug fallback."""
    r = call(api_app, "GET", "/?" + urlencode(pairs))
    assert r.status_code == 200, (pairs, r.text[:300])
    j = initial_state(r.text)
    if j["error"] is not None:
        assert j["error"]["field"] in NAMES, j["error"]  # named, not the decoder-bug fallback


# -- POST /api/v1/permalink: the page's encoder ----------------------------------------------


def page_body(s: LinkState) -> dict:
    """What static/app.js posts: a resolve body plus event, vs, view and pati."""
    body = scenario_json(s.kernel, s.vm, s.vcpu, s.access) | {"view": s.view, "pati": s.pati}
    if s.vs is not None:
        body["vs"] = s.vs
    if s.event is not None:
        body["event"] = event_json(s.event)
    return body


RICH = ("v=1&view=zap&kernel=v6.7&vs=v4.2&ncdma=1&cd=1&pat=linux&mtrr=ovmf&gpa=0xfd000000&event=cr0_cd&event_value=0"
        "&pati=1")


@pytest.mark.anyio
async def test_permalink_endpoint_writes_the_query(client):
    s = decode(RICH)
    r = await client.post("/api/v1/permalink", json=page_body(s))
    assert r.status_code == 200, r.text
    assert r.json() == {"query": RICH, "url": "http://testserver/?" + RICH}
    r = await client.post("/api/v1/permalink", json={"kernel": "v6.16"})
    assert r.json()["query"] == "v=1"


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(PRESETS))
async def test_permalink_endpoint_round_trips_presets(client, name):
    s = replace(PRESETS[name].state, vs=PRESETS[name].compare, pati=3)
    for state in (s, replace(s, view="zap") if s.event else replace(s, view="diff")):
        j = (await client.post("/api/v1/permalink", json=page_body(state))).json()
        assert j["query"] == encode(state) and decode(j["query"]) == state


@settings(max_examples=60, deadline=None)
@given(states())
def test_permalink_endpoint_is_encode(api_app, s):
    """For any state: the link is app.permalink's, for exactly the scenarios resolve validates
    (the era's own refusals, e.g. a quirk it cannot turn off, are resolve's answer to give)."""
    r = call(api_app, "POST", "/api/v1/permalink", json=page_body(s))
    try:
        s.vcpu.validate(s.vm.validate())
        s.access.validate(s.vm)
        valid = True
    except MemTypeError:
        valid = False
    assert r.status_code == (200 if valid else 422), r.text
    if valid:
        assert r.json()["query"] == encode(s) and decode(r.json()["query"]) == s


@pytest.mark.anyio
@pytest.mark.parametrize("body, loc", [
    ({"kernel": "v9"}, ["body", "kernel"]),
    ({"kernel": "v6.7", "vs": "v9"}, ["body", "vs"]),
    ({"kernel": "v6.7", "pati": 8}, ["body", "pati"]),
    ({"kernel": "v6.7", "pati": 1.0}, ["body", "pati"]),
    ({"kernel": "v6.7", "view": "list"}, ["body", "view"]),
    ({"kernel": "v6.7", "vcpu": {"pat": "0x02"}}, ["body", "vcpu", "pat"]),
    ({"kernel": "v6.7", "vcpu": {"mtrr": {"fixed": ["0x0"] * 5 + ["0x02"] + ["0x0"] * 5}}},
     ["body", "vcpu", "mtrr", "fixed", 5]),
    ({"kernel": "v6.7", "vcpu": {"cr0_nw": True}}, ["body", "vcpu", "cr0_nw"]),
    ({"kernel": "v6.7", "gpa": "0x400000000000"}, ["body", "gpa"]),
    ({"kernel": "v6.7", "vm": {"maxphyaddr": 60}}, ["body", "vm", "maxphyaddr"]),
])
async def test_permalink_endpoint_refuses_what_resolve_refuses(client, body, loc):
    r = await client.post("/api/v1/permalink", json=body)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["errors"][0]["loc"] == loc, r.json()


# -- decode_report: every readable parameter kept, the others named ------------------------

from app.permalink import Dropped, decode_report, short_path, short_query  # noqa: E402


def test_decode_report_keeps_the_readable_parameters():
    s, dropped = decode_report("v=1&kernel=v9.9&vs=v4.2&ncdma=1&cd=1&gpa=12&mtrr=ovmf")
    assert s == decode("v=1&vs=v4.2&ncdma=1&cd=1&mtrr=ovmf")
    assert [(d.param, d.value) for d in dropped] == [("kernel", "v9.9"), ("gpa", "12")]
    assert dropped[1] == Dropped("gpa", "12", "malformed hex '12'", "expected 0x followed by 1-16 hex digits")
    assert decode_report(RICH) == (decode(RICH), ())


def test_decode_report_drops_an_event_it_cannot_read():
    s, dropped = decode_report("v=1&cd=1&event=mtrr_write&event_value=0x806")
    assert s == decode("v=1&cd=1") and [(d.param, d.message) for d in dropped] == [("event", "event_msr: missing")]
    s, dropped = decode_report("v=1&event=cr0_cd&event_value=2")
    assert s.event is None and [d.param for d in dropped] == ["event_value", "event"]


def test_decode_report_a_layout_with_a_bad_maxphyaddr():
    """mtrr=ovmf needs MAXPHYADDR 36..52: the refused maxphyaddr goes, the layout stays."""
    s, dropped = decode_report("v=1&maxphyaddr=99&mtrr=ovmf")
    assert s == decode("v=1&mtrr=ovmf") and [d.param for d in dropped] == ["maxphyaddr"]


def test_decode_report_refuses_another_version():
    with pytest.raises(MemTypeError) as e:
        decode_report("v=2&kernel=v6.7")
    assert e.value.field == "v"


@settings(max_examples=300, deadline=None)
@given(st.one_of(queries(), decimal_queries()))
def test_decode_report_fuzz(pairs):
    """Whatever the query: a state whose link decodes to itself, and the dropped parameters
    are ones the query had; only another version is refused."""
    try:
        s, dropped = decode_report(pairs)
    except MemTypeError as e:
        assert e.field == "v"
        return
    assert decode(encode(s)) == s
    names = {k for k, _ in pairs}
    assert all(d.param in names and d.message for d in dropped)


# -- the short form ---------------------------------------------------------------------------

BASE = "https://memtype.example.org"


@pytest.mark.parametrize("name", list(PRESETS))
def test_short_form_round_trips_presets(name):
    p = PRESETS[name]
    s = replace(p.state, vs=p.compare)
    path = short_path(s)
    assert path.startswith("l/1~") and " " not in path
    assert decode(short_query(path[2:])) == s


def test_short_form_is_short_for_common_states():
    """The review's seed link, with the era pair, the event and a 27-character base, fits a
    72-column mail line; so do the presets without an event or explicit MTRR pairs under the
    default base (http://127.0.0.1:8000)."""
    p = PRESETS["review-seed"]
    seed = f"{BASE}/{short_path(replace(p.state, vs=p.compare))}"
    assert seed == f"{BASE}/l/1~kv6.7~sv4.2~n1~c1~rovmf~afd000000~ecd~u0" and len(seed) <= 72
    for name, p in PRESETS.items():
        s = replace(p.state, vs=p.compare, event=None)
        if s.vcpu.mtrr.variable and "mtrr=" not in encode(s):
            continue  # explicit PHYSBASE/PHYSMASK pairs: long in any form
        assert len(f"http://127.0.0.1:8000/{short_path(s)}") <= 72, name


@settings(max_examples=300, deadline=None)
@given(st.one_of(queries(), decimal_queries()))
def test_short_form_fuzz(pairs):
    try:
        s, _ = decode_report(pairs)
    except MemTypeError:
        return
    assert decode(short_query(short_path(s)[2:])) == s


@pytest.mark.anyio
async def test_short_link_redirects_to_the_long_query(client):
    p = PRESETS["review-seed"]
    s = replace(p.state, vs=p.compare)
    r = await client.get("/" + short_path(s))
    assert r.status_code == 303 and r.headers["location"] == "/?" + encode(s)
    r = await client.get("/l/1~kv9.9~n1")  # the page then drops what it cannot read
    assert r.headers["location"] == "/?v=1&kernel=v9.9&ncdma=1"
    j = initial_state((await client.get(r.headers["location"])).text)
    assert [d["param"] for d in j["dropped"]] == ["kernel"] and j["initial"]["scenario"]["vm"]["noncoherent_dma"]


@pytest.mark.anyio
async def test_page_link_uses_the_public_base_url():
    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings(public_url=BASE + "/"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://evil.example") as c:
        r = await c.get("/page/link?v=1&kernel=v6.7&gpa=0x1000", headers={"host": "evil.example"})
        assert r.json() == {"url": f"{BASE}/?v=1&kernel=v6.7&gpa=0x1000", "short": f"{BASE}/l/1~kv6.7~a1000"}
        r = await c.get("/page/link?v=1&kernel=v9")
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "kernel"]


@pytest.mark.anyio
@pytest.mark.parametrize("body, answer", [
    ({"start": "0xc0000000", "size": "0x40000000", "type": 0}, {"base": "0xc0000000", "mask": "0x3fffc0000800"}),
    ({"start": "0x80000000", "size": "0x80000000", "type": 6, "valid": False, "maxphyaddr": 39},
     {"base": "0x80000006", "mask": "0x7f80000000"}),
])
async def test_mtrr_pair_writes_the_registers(client, body, answer):
    r = await client.post("/page/mtrr-pair", json=body)
    assert r.status_code == 200 and r.json() == answer


@pytest.mark.anyio
@pytest.mark.parametrize("body, loc, words", [
    ({"index": 2, "start": "0xc0100000", "size": "0x40000000", "type": 0}, ["body", "vcpu", "mtrr", "variable", 2],
     "not a size-aligned power of two"),
    ({"index": 0, "start": "0xc0000000", "size": "0x30000000", "type": 0}, ["body", "vcpu", "mtrr", "variable", 0],
     "not a size-aligned power of two"),
    ({"index": 1, "start": "0xc0000000", "size": "0x40000000", "type": 2}, ["body", "vcpu", "mtrr", "variable", 1],
     "reserved"),
])
async def test_mtrr_pair_refuses_what_no_pair_covers(client, body, loc, words):
    r = await client.post("/page/mtrr-pair", json=body)
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["loc"] == loc and words in err["msg"] and err["rule"], err
