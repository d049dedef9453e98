"""Pydantic request models -> core dataclasses, core results -> response models.

Nothing here decides anything about memory types: it only moves values between the JSON
shapes and app.x86 / app.kvm, and tells the error handler where in the request a core
location (e.g. ('vcpu', 'mtrr', 'variable', 0, 'base')) lives.

The many small rows of a resolution (path steps, leaf fields, PAT rows) are built with
`model_construct` (no re-validation: the values come straight from the core's typed
dataclasses); resolve is the hot endpoint. The tests validate every response against its
schema, and schemathesis checks them against the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Sequence
from contextlib import contextmanager

from ..kvm.era import Era, Step
from ..kvm.host_page import HostPage
from ..kvm.host_page import preset as host_preset
from ..kvm.ranges import Range
from ..kvm.resolve import HostSide, Resolution
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
from ..kvm.versions import KernelInfo
from ..kvm.zap import ZapAudit
from ..x86.ept import EptLeaf, mt_mask, notation
from ..x86.memtype import MemType, MemTypeError
from ..x86.mtrr import FIXED_MSRS, Lookup, MtrrState, VarMtrr
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
    return VmConfig(noncoherent_dma=vm.noncoherent_dma, quirk_cd_nw_cleared=vm.quirk_cd_nw_cleared,
                    quirk_ignore_guest_pat=vm.quirk_ignore_guest_pat, self_snoop=vm.self_snoop,
                    guest_has_mtrr=vm.guest_has_mtrr, maxphyaddr=vm.maxphyaddr, memory_map=mm), loc


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


_ERA_OUT: dict[str, s.EraOut] = {}


def era_out(era: Era) -> s.EraOut:
    """Cached per era id (eras are fixed; the model is never mutated)."""
    out = _ERA_OUT.get(era.id)
    if out is None:
        out = _ERA_OUT[era.id] = _era_out(era)
    return out


def _era_out(era: Era) -> s.EraOut:
    return s.EraOut(
        id=era.id, title=era.title, kernels=era.kernels, summary=era.summary,
        commits=[s.CommitOut(sha=c.sha, subject=c.subject) for c in era.commits],
        notes=list(era.notes), reads_guest_mtrrs=era.reads_guest_mtrrs,
    )


def step_out(st: Step) -> s.StepOut:
    return s.StepOut.model_construct(id=st.id, function=st.function, condition=st.condition, held=st.held, result=st.result,
                     commit=st.commit)


def lookup_out(lk: Lookup) -> s.LookupOut:
    return s.LookupOut.model_construct(type=lk.type.label if lk.type is not None else None, source=lk.source, reason=lk.reason)


def leaf_out(leaf: EptLeaf) -> s.LeafOut:
    return s.LeafOut.model_construct(
        raw=f"{leaf.raw:#018x}", page_size=leaf.page_size, level=leaf.level,  # type: ignore[arg-type]
        fields=[s.EptFieldOut.model_construct(name=f.name, lo=f.lo, hi=f.hi, value=f.value, meaning=f.meaning)
                for f in leaf.fields()],
        misconfig=leaf.misconfig(),
    )


def ept_type_out(mt: MemType, ipat: bool) -> s.EptTypeOut:
    return s.EptTypeOut.model_construct(memtype=mt.label, ipat=ipat, mask=f"{mt_mask(mt, ipat):#04x}",  # type: ignore[arg-type]
                        notation=notation(mt, ipat))


def range_out(r: Range) -> s.RangeOut:
    start, end = r
    return s.RangeOut.model_construct(start=f"{start:#x}", end=f"{end:#x}", pages=max(0, end - start) >> 12)


def kernel_out(k: KernelInfo) -> s.KernelOut:
    return s.KernelOut.model_construct(asked=k.asked, era=k.era, version=k.version, why=k.why, notes=list(k.notes))


def host_page_out(h: HostSide) -> s.HostPageOut:
    p = h.page
    return s.HostPageOut.model_construct(
        page_class=p.cls, preset=p.preset or None,
        host_memtype=p.host_memtype.label if p.host_memtype is not None else None,  # type: ignore[arg-type]
        hpa=f"{p.hpa:#x}" if p.hpa is not None else None, e820_ram=p.e820_ram, pat_enabled=p.pat_enabled,
        source=h.source, answered_for=h.answered_for, is_mmio=h.mmio.is_mmio, why=h.mmio.why,
        path=[step_out(c) for c in h.mmio.path],
        by_kernels=[s.MmioByKernelsOut.model_construct(kernels=k, is_mmio=m) for k, m in h.by_kernels],
        notes=list(h.notes),
    )


def resolution_out(r: Resolution, permalink: str) -> s.ResolveResponse:
    """Built with model_construct: every value comes typed from the core, so validating it
    again would only cost time (the response schema is still checked by the fuzz tests)."""
    assert r.kernel is not None, "the API always resolves with the kernel it was asked"
    return s.ResolveResponse.model_construct(
        kernel=r.era.id,
        kernel_info=kernel_out(r.kernel),
        host_page=host_page_out(r.host) if r.host is not None else None,
        era=era_out(r.era),
        gpa=f"{r.gpa:#x}",
        is_mmio=r.is_mmio,
        mmio_source=r.mmio_source,
        ept=s.EptOut.model_construct(memtype=r.memtype.label, ipat=r.ipat, mask=f"{r.mask:#04x}",  # type: ignore[arg-type]
                     notation=notation(r.memtype, r.ipat), leaf=leaf_out(r.leaf)),
        guest_mtrr_type=r.guest_mtrr.type.label if r.guest_mtrr.type is not None else None,  # type: ignore[arg-type]
        guest_mtrr=lookup_out(r.guest_mtrr),
        kvm_mtrr_type=r.kvm_mtrr.type.label if r.kvm_mtrr and r.kvm_mtrr.type is not None else None,  # type: ignore[arg-type]
        kvm_mtrr=lookup_out(r.kvm_mtrr) if r.kvm_mtrr else None,
        mtrr_finding=r.mtrr_finding,
        pat=[s.PatRowOut.model_construct(
            index=p.index, pte_bits=f"{p.pte_bits:#04x}", pte_flags=p.pte_flags,
            pat_type=p.pat_type.label,  # type: ignore[arg-type]
            pat_type_used=p.pat_type_used.label, effective=p.effective.label,  # type: ignore[arg-type]
            guest_expected=p.guest_expected.label if p.guest_expected is not None else None,  # type: ignore[arg-type]
            expected_reason=p.expected_reason, relation=p.relation, relation_reason=p.relation_reason,  # type: ignore[arg-type]
        ) for p in r.pat_rows],
        path=[step_out(st) for st in r.path],
        page_size=r.page_size,  # type: ignore[arg-type]
        page_sizes=[s.PageSizeOut.model_construct(kernels=p.kernels, mtrr_check=p.mtrr_check, page_size=p.page_size)  # type: ignore[arg-type]
                    for p in r.page_sizes],
        permalink=permalink,
    )


def event_out(ev: Event) -> s.EventOut:
    if isinstance(ev.value, bool):
        value: bool | str = ev.value
    else:
        value = f"{ev.value:#x}"
    return s.EventOut(kind=ev.kind, description=ev.describe(), msr=f"{ev.msr:#x}" if ev.msr is not None else None,
                      value=value, cr0_nw=ev.cr0_nw)


def audit_out(a: ZapAudit, permalink: str, kernel: KernelInfo) -> s.ZapResponse:
    return s.ZapResponse(
        kernel=a.era.id,
        kernel_info=kernel_out(kernel),
        era=era_out(a.era),
        event=event_out(a.event),
        calls=[range_out(r) for r in a.calls],
        zapped=[range_out(r) for r in a.zapped],
        zapped_mapped=[range_out(r) for r in a.zapped_mapped],
        needed=[range_out(r) for r in a.needed],
        stale=[range_out(r) for r in a.stale],
        excess=[range_out(r) for r in a.excess],
        counts=s.ZapCounts(**a.counts),
        path=[step_out(st) for st in a.path],
        changes=[s.ChangeOut(start=f"{c.start:#x}", end=f"{c.end:#x}", pages=(c.end - c.start) >> 12,
                             kind=c.kind, before=ept_type_out(*c.before), after=ept_type_out(*c.after))  # type: ignore[arg-type]
                 for c in a.changes],
        permalink=permalink,
    )
