"""Permalinks: readable, stateless, one parameter per non-default setting plus v=1, and
decode(encode(state)) == state, so a link pasted in a thread reopens the same scenario.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.kvm.layouts import ovmf_state
from app.kvm.scenario import CR0_CD, MTRR_WRITE, NONCOHERENT_DMA, PAT_WRITE, Access, Event, MemRange, VcpuState, VmConfig
from app.permalink import LinkState, decode, encode, request_body, url
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
                  event=Event(MTRR_WRITE, 0x806, 0x2FF), view="zap")
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
])
def test_bad_params_name_the_parameter(query, field):
    with pytest.raises(MemTypeError) as e:
        decode(query)
    assert e.value.field == field


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
    vm = VmConfig(draw(bools), draw(bools), draw(bools), draw(bools), draw(bools), maxphy,
                  draw(st.sampled_from([VmConfig().memory_map, (MemRange(0, 0x1000, "ram"), MemRange(0x2000, 0x5000, "mmio"))])))
    pat = Pat.from_msr(sum(draw(st.sampled_from([0, 1, 4, 5, 6, 7])) << (8 * i) for i in range(8)))
    fixed = tuple(sum(draw(types) << (8 * b) for b in range(8)) for _ in range(11))
    var = tuple(VarMtrr(draw(st.integers(0, (1 << maxphy) - 1)) & ~0xFFF | draw(types),
                        draw(st.integers(0, (1 << maxphy) - 1)) & ~0x7FF) for _ in range(draw(st.integers(0, 8))))
    mtrr = MtrrState(draw(st.sampled_from([0, 0x806, 0xC06, 0x400])), fixed, var)
    vcpu = VcpuState(draw(bools), draw(bools), draw(bools), pat, mtrr)
    ev = draw(st.one_of(st.none(), st.builds(Event, st.just(CR0_CD), bools, st.none(), st.one_of(st.none(), bools)),
                        st.builds(Event, st.just(NONCOHERENT_DMA), bools),
                        st.builds(Event, st.just(PAT_WRITE), st.integers(0, (1 << 64) - 1)),
                        st.builds(Event, st.just(MTRR_WRITE), st.integers(0, (1 << 64) - 1),
                                  st.sampled_from([0x2FF, 0x200, 0x250]))))
    access = Access(draw(st.integers(0, (1 << maxphy) - 1)), draw(st.one_of(st.none(), bools)))
    return LinkState(draw(st.sampled_from(["v4.2", "v6.7", "v6.16"])), vm, vcpu, access, ev,
                     draw(st.one_of(st.none(), st.just("v6.11"))), draw(st.sampled_from(["resolve", "zap", "diff"])))


@settings(max_examples=150, deadline=None)
@given(states())
def test_round_trip_any_state(s):
    q = encode(s)
    assert q.startswith("v=1") and " " not in q
    assert decode(q) == s
