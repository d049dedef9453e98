"""ZapPolicy's fields are named by event kind (for_event reads them by `Event.kind`), and
`quiet_kinds` are exactly the kinds whose decision has no calls in every era."""

from __future__ import annotations

from dataclasses import fields

import pytest

from app.kvm.era import CallTrail, ZapPolicy, Zaps
from app.kvm.eras import ERAS
from app.kvm.scenario import EVENT_KINDS, Cr0Write, MtrrWrite, NoncoherentDma, PatWrite

EVENTS = (Cr0Write(value=True), MtrrWrite(msr=0x2FF, value=0xC06), NoncoherentDma(value=True), PatWrite(value=0))


def test_policy_fields_are_the_event_kinds():
    names = {f.name for f in fields(ZapPolicy)}
    assert set(EVENT_KINDS) <= names
    assert names - set(EVENT_KINDS) == {"memslot_commit"}


@pytest.mark.parametrize("era", list(ERAS.values()), ids=list(ERAS))
@pytest.mark.parametrize("ev", EVENTS, ids=[e.kind for e in EVENTS])
def test_for_event_reads_the_field_of_the_kind(era, ev):
    assert era.zap_policy.for_event(ev) is getattr(era.zap_policy, ev.kind)


@pytest.mark.parametrize("era", list(ERAS.values()), ids=list(ERAS))
def test_quiet_kinds(era):
    p = era.zap_policy
    assert p.quiet_kinds == {k for k in EVENT_KINDS if getattr(p, k).zaps is Zaps.NOTHING}


def test_for_event_refuses_what_is_not_an_event():
    with pytest.raises(AssertionError):
        ERAS["v4.2"].zap_policy.for_event(object())  # type: ignore[arg-type]


def test_call_trail_keeps_calls_only():
    t = CallTrail()
    assert t.check("a", "f", "c", True, "r") is True
    assert t.check("b", "f", "c", False) is False
    t.zap((0, 1))
    d = t.done(True)
    assert (d.calls, d.path, d.per_memslot) == (((0, 1),), (), True)
