"""app/frozen.maker builds what the class's own __init__ builds, and refuses what it cannot."""

from __future__ import annotations

import dataclasses

import pytest

from app.frozen import maker
from app.kvm.era import ZapInput
from app.kvm.replay import ZapCallRecord
from app.kvm.scenario import MtrrWrite, VcpuState, VmConfig, _vcpu_state
from app.x86.mtrr import MtrrState, VarMtrr, new_mtrr_state, new_var_mtrr
from app.x86.pat import Pat


def _same(a: object, b: object) -> None:
    assert type(a) is type(b)
    assert a == b and hash(a) == hash(b) if type(a).__hash__ else a == b
    for f in dataclasses.fields(a):  # type: ignore[arg-type]
        assert getattr(a, f.name) is getattr(b, f.name) or getattr(a, f.name) == getattr(b, f.name)


def test_record_as_init_builds_it():
    vals = (3, 1, "mtrr_write", 0x201, 0x1000, 0x9000, 8, 2, True, False, False)
    _same(maker(ZapCallRecord)(*vals), ZapCallRecord(*vals))


def test_the_write_path_objects_as_init_builds_them():
    p = VarMtrr(0x80000006, 0xFFF0000800, True)
    _same(new_var_mtrr(0x80000006, 0xFFF0000800, True), p)
    m = MtrrState(0xC06, (0x06060606,) * 11, (p, VarMtrr(0, 0, False)))
    _same(new_mtrr_state(0xC06, (0x06060606,) * 11, (p, VarMtrr(0, 0, False))), m)
    pat = Pat.from_msr(0x0007040600070406)
    _same(_vcpu_state(True, False, True, pat, m), VcpuState(cr0_cd=True, cr0_nw=False, cr0_pg=True, pat=pat, mtrr=m))


def test_fields_init_does_not_take_get_their_default():
    vm, st, ev = VmConfig(), VcpuState(), MtrrWrite(msr=0x2FF, value=0xC06)
    made = maker(ZapInput)(vm, st, vm, st, ev)
    _same(made, ZapInput(vm, st, vm, st, ev))
    assert made._range is None and made._bare is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.vm = vm  # type: ignore[misc]  (still frozen)


def test_refuses_what_it_cannot_build_exactly():
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        a: int
        b: list = dataclasses.field(default_factory=list, init=False)

    for cls in (NoSlots, NotFrozen, PostInit, Factory):
        with pytest.raises(TypeError):
            maker(cls)
