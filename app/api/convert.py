"""Pydantic request models -> core dataclasses.

Nothing here decides anything about memory types: it only moves values from the JSON
shapes into app.x86 / app.kvm, and tells the error handler where in the request a core
field name (e.g. 'mtrr.variable[0].base') lives. Responses need no converter: their
models are validated from the core's dataclasses (app/api/schemas.py, from_attributes).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ..kvm.host_page import HostPage
from ..kvm.host_page import preset as host_preset
from ..kvm.scenario import DEFAULT_MEMORY_MAP, Event, MemRange, VcpuState, VmConfig
from ..x86.ept import notation
from ..x86.memtype import EPT_TYPES, MemType, MemTypeError
from ..x86.mtrr import FIXED_MSRS, MtrrState, VarMtrr
from ..x86.pat import Pat
from . import schemas as s
from .errors import RuleViolation, field_loc

Loc = list[str | int]


def aliases(map_loc: Sequence[str | int] = ("vm", "memory_map"), event: Sequence[str | int] = ("event",)) -> dict:
    """How the core's short field names map onto a scenario request."""
    return {
        "mtrr": ["vcpu", "mtrr"],
        "pat": ["vcpu", "pat"],
        "msr": [*event, "msr"],
        "value": [*event, "value"],
        "event": list(event),
        "memory_map": list(map_loc),
        "era_a": ["a"],
        "era_b": ["b"],
    }


@contextmanager
def core_errors(alias: dict | None = None, prefix: Sequence[str | int] = ("body",)) -> Iterator[None]:
    """Re-raise the core's MemTypeError with its JSON location resolved."""
    try:
        yield
    except MemTypeError as e:
        raise RuleViolation(e, field_loc(e.field, alias or aliases(), prefix)) from None


# -- requests -> core ----------------------------------------------------------------------


def to_memory_map(ranges: list[s.MemRangeIn]) -> tuple[MemRange, ...]:
    return tuple(MemRange(r.start, r.end, r.kind, r.label) for r in ranges)


def to_vm(vm: s.VmIn, top_map: list[s.MemRangeIn] | None = None) -> tuple[VmConfig, Loc]:
    """The VmConfig, and where its memory map came from (for error locations)."""
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
    return VmConfig(vm.noncoherent_dma, vm.quirk_cd_nw_cleared, vm.quirk_ignore_guest_pat, vm.self_snoop,
                    vm.guest_has_mtrr, vm.maxphyaddr, mm), loc


def to_host_page(hp: s.HostPageIn | None) -> HostPage | None:
    """A preset alone, or a class with its fields (MemTypeError names the member)."""
    if hp is None:
        return None
    given = hp.model_fields_set
    if hp.preset is not None:
        extra = sorted(given - {"preset"})
        if extra:
            f = "class" if "page_class" in extra else extra[0]
            raise MemTypeError(f"host_page.{f}", "given together with preset",
                               "a preset names the whole page: give preset alone, or class with its fields")
        return host_preset(hp.preset)
    if hp.page_class is None:
        raise MemTypeError("host_page.class", "neither preset nor class given", "give one of them")
    mt = MemType.from_label(hp.host_memtype) if hp.host_memtype is not None else None
    return HostPage(hp.page_class, mt, hp.hpa, hp.e820_ram, hp.pat_enabled).validate()


def to_mtrr(m: s.MtrrIn) -> MtrrState:
    fixed = tuple(m.fixed) if m.fixed is not None else (0,) * len(FIXED_MSRS)
    return MtrrState(m.def_type, fixed, tuple(VarMtrr(p.base, p.mask) for p in m.variable))


def to_vcpu(v: s.VcpuIn, field: str = "vcpu") -> VcpuState:
    return VcpuState(v.cr0_cd, v.cr0_nw, v.cr0_pg, Pat.from_msr(v.pat, f"{field}.pat"), to_mtrr(v.mtrr))


def to_event(e: s.Cr0CdEvent | s.MtrrWriteEvent | s.NoncoherentDmaEvent | s.PatWriteEvent) -> Event:
    if isinstance(e, s.Cr0CdEvent):
        return Event(e.kind, e.value, None, e.cr0_nw)
    if isinstance(e, s.MtrrWriteEvent):
        return Event(e.kind, e.value, e.msr)
    return Event(e.kind, e.value)


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
