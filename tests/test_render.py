"""The plain-text renderings fit a mail reply: <= 72 columns, ASCII, no tabs, self-contained.

Why: reviewers paste these into kvm@vger threads; 72 columns survive two levels of "> "
quoting under the usual 76-column limit, and each table carries its own header and legend
so it can be quoted piecewise. The footer names the era's commits and the permalink.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import product

import pytest

from app.analysis import diff_by_id
from app.kvm.eras import ERAS
from app.kvm.resolve import resolve
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
from app.kvm.zap import audit
from app.permalink import LinkState, url
from app.presets import PRESETS
from app.render import WIDTH, permalink_lines, render_diff, render_resolve, render_zap
from app.x86.mtrr import MtrrState, VarMtrr
from app.x86.pat import PAT_LINUX

BASE = "http://memtype.example:8000"


def check_text(text: str, eras, link: str) -> None:
    lines = text.split("\n")
    assert text.endswith("\n")
    for n, line in enumerate(lines, 1):
        assert len(line) <= WIDTH, f"line {n} is {len(line)} columns: {line!r}"
        assert len("> > " + line) <= 76
        assert line.isascii() and "\t" not in line, f"line {n}: {line!r}"
        assert line == line.rstrip(), f"line {n} has trailing spaces: {line!r}"
    for era in eras:
        assert f"Era {era.id}" in text
        for c in era.commits:
            assert c.sha in text
    joined = "".join(x.strip() for x in text.split("Permalink")[1].split("\n")[1:] if x.startswith("  "))
    assert joined == link
    assert "Legend:" in text


def scenario_cases():
    for p in PRESETS.values():
        for era in ERAS.values():
            st = replace(p.state, kernel=era.id)
            try:
                era.check_vm(st.vm)
            except Exception:
                continue
            yield pytest.param(era, st, id=f"{p.name}-{era.id}")


@pytest.mark.parametrize("era, st", list(scenario_cases()))
def test_resolve_text(era, st):
    res = resolve(era, st.vm, st.vcpu, st.access)
    link = url(replace(st, event=None), BASE)
    text = render_resolve(res, st.vm, st.vcpu, link)
    check_text(text, [era], link)
    assert f"{res.mask:#04x}" in text
    assert f"EPT entry    {res.memtype.label}{'!' if res.ipat else ''} " in text
    assert "Decision path" in text and "Effective type per guest PAT entry" in text


def test_resolve_text_notation():
    st = PRESETS["seed-v4.2"].state
    res = resolve(ERAS["v4.2"], st.vm, st.vcpu, st.access)
    text = render_resolve(res, st.vm, st.vcpu, url(st, BASE))
    assert "EPT entry    WB!" in text and "mask 0x70" in text
    assert "WB! = WB with IPAT" in text.replace("\n    ", " ")


EVENTS = [Cr0Write(value=False), Cr0Write(value=True), MtrrWrite(msr=0x2FF, value=0x806),
          MtrrWrite(msr=0x201, value=0x3FFF80000800), NoncoherentDma(value=False), NoncoherentDma(value=True),
          PatWrite(value=PAT_LINUX)]


@pytest.mark.parametrize("era, ev", list(product(ERAS.values(), EVENTS)),
                         ids=lambda x: getattr(x, "id", None) or x.kind)
def test_zap_text(era, ev):
    st = PRESETS["seed-v4.2"].state
    a = audit(era, st.vm, st.vcpu, ev)
    link = url(LinkState(era.id, st.vm, st.vcpu, event=ev, view="zap"), BASE)
    text = render_zap(a, st.vm, st.vcpu, link)
    check_text(text, [era], link)
    assert "stale" in text and "excess" in text and "Zap path" in text


@pytest.mark.parametrize("a, b", [("v4.2", "v6.7"), ("v6.11-rc1", "v6.11"), ("v6.7", "v6.16"), ("v6.16", "v6.16"),
                                  ("series-v3", "v6.11-rc1")])
def test_diff_text(a, b):
    d = diff_by_id(a, b)
    link = url(LinkState(a, vs=b, view="diff"), BASE)
    text = render_diff(d, link)
    check_text(text, [ERAS[a], ERAS[b]], link)
    assert f"era diff {a} -> {b}" in text
    assert f"{d.counts['differ']} differ" in text.replace("\n  ", " ")


def test_long_permalink_wraps_and_rejoins():
    pairs = tuple(VarMtrr(0x1000000 * (i + 1) | 6, 0x3FFFFF000800) for i in range(8))
    mm = tuple(MemRange(i * 0x100000, (i + 1) * 0x100000, "ram") for i in range(20))
    vm = VmConfig(noncoherent_dma=True, memory_map=mm)
    vcpu = VcpuState(mtrr=MtrrState(0xC06, (0x0606060606060606,) * 11, pairs))
    link = url(LinkState("v6.7", vm, vcpu, Access(0x1234000)), BASE)
    assert len(link) > 3 * WIDTH
    lines = permalink_lines(link)
    assert all(len(x) <= WIDTH for x in lines)
    assert "".join(x.strip() for x in lines[1:]) == link
    res = resolve(ERAS["v6.7"], vm, vcpu, Access(0x1234000))
    check_text(render_resolve(res, vm, vcpu, link), [ERAS["v6.7"]], link)


def test_short_permalink_on_one_line():
    link = url(LinkState(), BASE)
    assert permalink_lines(link) == ["Permalink:", "  " + link]
