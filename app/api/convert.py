"""Pydantic request models -> core dataclasses.

Nothing here decides anything about memory types: it only moves values from the JSON
shapes into app.x86 / app.kvm, and tells the error handler where in the request a core
location (e.g. ('vcpu', 'mtrr', 'variable', 0, 'base')) lives. Responses need no converter: their
models are validated from the core's dataclasses (app/api/schemas.py, from_attributes).
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Sequence
from contextlib import contextmanager

from ..knobs import rows as knob_rows
from ..kvm.host_page import HostPage
from ..kvm.host_page import preset as host_preset
from ..kvm.scenario import (
    DEFAULT_MEMORY_MAP,
    Cr0Write,
    Event,
    MemRange,
    MtrrWrite,
    NoncoherentDma,
    PatWrite,
    VcpuState,
    VmConfig,
)
from ..kvm.vm_kinds import VENDOR_INTEL, VM_TYPE_DEFAULT
from ..x86.ept import notation
from ..x86.memtype import EPT_TYPES, MemType, MemTypeError
from ..x86.mtrr import FIXED_MSRS, MtrrState, VarMtrr
from ..x86.pat import Pat
from . import schemas as s
from .errors import RuleViolation

Loc = list[str | int]


@contextmanager
def core_errors(map_loc: Sequence[str | int] = ("vm", "memory_map"), at: Sequence[str | int] | None = None,
                members: Container[str] | None = None) -> Iterator[None]:
    """Re-raise the core's MemTypeError at its place in the request (a RuleViolation).

    The core's locations name the parts of a scenario (vm, vcpu, event, gpa, kernels[i],
    ...), which are the request's members, so the JSON location is the core's under
    "body". Two requests differ from the core's shape, and say so here: the memory map sits
    wherever `to_vm` found it (`map_loc`); and a block that reads a text field (`at`, e.g.
    the trace) puts there every error whose location is not one of the request's
    `members` (a line of the text; all of them when `members` is None).
    """
    try:
        yield
    except MemTypeError as e:
        loc = e.loc
        if loc[:1] == ("memory_map",):
            loc = (*map_loc, *loc[1:])
        if at is not None and (members is None or not loc or loc[0] not in members):
            loc = tuple(at)
        raise RuleViolation(e, ["body", *loc]) from None


# -- requests -> core ----------------------------------------------------------------------


def to_memory_map(ranges: list[s.MemRangeIn]) -> tuple[MemRange, ...]:
    return tuple(MemRange(r.start, r.end, r.kind, r.label) for r in ranges)


VM_KNOBS = knob_rows("vm")


def to_vm(vm: s.VmIn, top_map: list[s.MemRangeIn] | None = None, kinds: bool = False) -> tuple[VmConfig, Loc]:
    """The VmConfig, and where its memory map came from (for error locations).

    `kinds`: the endpoint answers for every `vm.vendor` and `vm.type` (resolve, zap,
    permalink); the others answer for KVM on Intel with a default VM only and refuse the rest
    (422 at vm.vendor or vm.type) rather than answer an Intel question instead.
    """
    if not kinds:
        for name, value, default in (("vendor", vm.vendor, VENDOR_INTEL), ("type", vm.type, VM_TYPE_DEFAULT)):
            if value != default:
                raise RuleViolation(MemTypeError(("vm", name), f"vm.{name} {value!r} is not answered here",
                                                 f"this endpoint models KVM on Intel with a default VM; "
                                                 f"POST /api/v1/resolve and /zap answer vm.{name} {value!r}"),
                                    ["body", "vm", name])
    if vm.memory_map is not None and top_map is not None:
        raise RuleViolation(MemTypeError("memory_map", "given both at the top level and in vm",
                                         "give memory_map in one place"), ["body", "memory_map"])
    loc: Loc
    if top_map is not None:
        mm, loc = to_memory_map(top_map), ["memory_map"]
    elif vm.memory_map is not None:
        mm, loc = to_memory_map(vm.memory_map), ["vm", "memory_map"]
    else:
        mm, loc = DEFAULT_MEMORY_MAP, ["vm", "memory_map"]
    # every VM knob but the memory map is copied by the knob table's names (app/knobs.py:
    # core attribute <- API member), so a new knob needs no line here
    plain = {k.attr: getattr(vm, k.api.split(".")[-1]) for k in VM_KNOBS
             if k.attr is not None and k.api is not None and k.attr != "memory_map"}
    return VmConfig(**plain, memory_map=mm), loc


def to_host_page(hp: s.HostPageIn | None) -> HostPage | None:
    """A preset alone, or a class with its fields (MemTypeError names the member)."""
    if hp is None:
        return None
    given = hp.model_fields_set
    if hp.preset is not None:
        extra = sorted(given - {"preset"})
        if extra:
            f = "class" if "page_class" in extra else extra[0]
            raise MemTypeError(("host_page", f), "given together with preset",
                               "a preset names the whole page: give preset alone, or class with its fields")
        return host_preset(hp.preset)
    if hp.page_class is None:
        raise MemTypeError(("host_page", "class"), "neither preset nor class given", "give one of them")
    mt = MemType.from_label(hp.host_memtype) if hp.host_memtype is not None else None
    return HostPage(hp.page_class, mt, hp.hpa, hp.e820_ram, hp.pat_enabled).validate()


def to_mtrr(m: s.MtrrIn) -> MtrrState:
    fixed = tuple(m.fixed) if m.fixed is not None else (0,) * len(FIXED_MSRS)
    return MtrrState(m.def_type, fixed, tuple(VarMtrr(p.base, p.mask) for p in m.variable))


def to_vcpu(v: s.VcpuIn, field: str = "vcpu") -> VcpuState:
    return VcpuState(cr0_cd=v.cr0_cd, cr0_nw=v.cr0_nw, cr0_pg=v.cr0_pg, pat=Pat.from_msr(v.pat, (field, "pat")),
                     mtrr=to_mtrr(v.mtrr))


def to_event(e: s.Cr0CdEvent | s.MtrrWriteEvent | s.NoncoherentDmaEvent | s.PatWriteEvent) -> Event:
    match e:
        case s.Cr0CdEvent():
            return Cr0Write(value=e.value, cr0_nw=e.cr0_nw)
        case s.MtrrWriteEvent():
            return MtrrWrite(msr=e.msr, value=e.value)
        case s.NoncoherentDmaEvent():
            return NoncoherentDma(value=e.value)
    return PatWrite(value=e.value)


# -- core -> responses ---------------------------------------------------------------------
#
# The response models read the core's dataclasses themselves (app/api/schemas.py,
# from_attributes); what is left here is the one member the routes spell out.


def leaf_notation(memtype_bits: int, ipat: bool) -> str:
    """The core's compact form of an EPT leaf's type; a reserved type has no name, so it
    is spelled out: `reserved(7)!`."""
    if memtype_bits in EPT_TYPES:
        return notation(MemType(memtype_bits), ipat)
    return f"reserved({memtype_bits})" + ("!" if ipat else "")
