"""One scenario in, everything a reviewer asks about one address out.

The EPT entry the era's vmx_get_mt_mask() builds, the path it took, the page size the MTRR
consistency check allows, and for each of the 8 PAT entries the effective type next to what
the guest expects on bare metal.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..x86.ept import EptLeaf, effective_type, mt_mask
from ..x86.guest import expectation, guest_pat_type
from ..x86.memtype import MemType, MemTypeError, relation, relation_reason
from ..x86.mtrr import DISABLED, Lookup, sdm_lookup
from ..x86.paging import HUGE_PAGES, PageSize, smallest
from ..x86.pat import index_to_pte_bits, pte_flags_text
from .era import Era, Fault, MaskResult, Step
from .host_page import BOUNDARY_NOTES, HostMmio, HostPage, by_kernels, era_span, kvm_is_mmio_pfn
from .mtrr import kvm_lookup, largest_page, lookup_difference
from .scenario import Access, VcpuState, VmConfig, lookup_range
from .versions import MTRR_CPUID_TEST, KernelInfo
from .vm_kinds import VENDOR_INTEL

EXAMPLE_HPA_OFFSET = 0x2_0000_0000
"""The example leaf maps gpa to gpa + this (host addresses are the host's business)."""


@dataclass(frozen=True, slots=True)
class PatRow:
    index: int
    pte_bits: int
    pte_flags: str
    pat_type: MemType
    pat_type_used: MemType
    effective: MemType
    guest_expected: MemType | None
    expected_reason: str
    relation: str
    relation_reason: str


@dataclass(frozen=True, slots=True)
class PageSizeRow:
    """The page size the MTRR check allows, for one range of kernels of the era."""

    kernels: str
    mtrr_check: bool
    page_size: PageSize


@dataclass(frozen=True, slots=True)
class HostSide:
    """kvm_is_mmio_pfn() for the page: the host page, the version answered for, the checks,
    and the answer per kvm_is_mmio_pfn() form inside the era (an era id spans several)."""

    page: HostPage
    source: str
    answered_for: str
    mmio: HostMmio
    by_kernels: tuple[tuple[str, bool], ...]
    notes: tuple[str, ...]


def host_side(era: Era, page: HostPage, source: str, kernel: KernelInfo | None) -> HostSide:
    """The version's answer, or for an era id the newest kernels' answer in the era."""
    span = era_span(era.kernels)
    v: tuple[int, int] | None
    rows: tuple[tuple[str, bool], ...]
    if kernel is not None and kernel.series is not None:
        v = kernel.series
        label = kernel.version or f"{v[0]}.{v[1]}"
        rows = ((label, by_kernels(page, (v, v))[0][1]),)
    else:
        v = span[1] if span is not None else None
        rows = by_kernels(page, span)
        label = f"{v[0]}.{v[1]} (newest in {era.id})" if v is not None else f"{era.id} (as 5.2+)"
    res = kvm_is_mmio_pfn(page, v) if v is not None else kvm_is_mmio_pfn(page, (6, 19))
    notes: list[str] = []
    if len({m for _, m in rows}) > 1:
        notes.append("kvm_is_mmio_pfn() answers differ inside " + era.id + ": " + ", ".join(
            f"{k} {'MMIO' if m else 'not MMIO'}" for k, m in rows) + "; name a version to choose")
    if page.cls in ("reserved", "no_struct_page"):
        notes.extend(BOUNDARY_NOTES)
    if span is None:
        notes.append(f"{era.id} is unmerged: kvm_is_mmio_pfn() as in 5.2+")
    return HostSide(page, source, label, res, rows, tuple(notes))


@dataclass(frozen=True, slots=True)
class Resolution:
    era: Era
    gpa: int
    is_mmio: bool
    mmio_source: str
    memtype: MemType
    ipat: bool
    path: tuple[Step, ...]
    leaf: EptLeaf
    guest_mtrr: Lookup
    kvm_mtrr: Lookup | None
    mtrr_finding: str | None
    pat_rows: tuple[PatRow, ...]
    page_sizes: tuple[PageSizeRow, ...]
    slot_page_size: PageSize
    kernel: KernelInfo | None = None
    host: HostSide | None = None

    @property
    def page_size(self) -> PageSize:
        """The MTRR check's answer for the era, most conservative over its kernel ranges."""
        return smallest(*(p.page_size for p in self.page_sizes))

    @property
    def mask(self) -> int:
        return mt_mask(self.memtype, self.ipat)


def check(era: Era, vm: VmConfig, vcpu: VcpuState, access: Access | None = None) -> None:
    """Validate a scenario for an era; raises MemTypeError naming the field and the rule."""
    vm.validate()
    if vm.vendor != VENDOR_INTEL:  # the eras are vmx_get_mt_mask(): AMD is app.kvm.svm
        raise MemTypeError(("vm", "vendor"), f"the era {era.id} models kvm_intel (EPT), not {vm.vendor!r}",
                           "an AMD VM is answered by app.kvm.svm (POST /api/v1/resolve with vm.vendor amd)")
    era.check_vm(vm)
    vcpu.validate(vm)
    if access is not None:
        access.validate(vm)


_FAULT_VM = tuple(f.name for f in fields(Fault) if f.name in {g.name for g in fields(VmConfig)})
_FAULT_VCPU = tuple(f.name for f in fields(Fault) if f.name in {g.name for g in fields(VcpuState)})
"""The Fault fields copied by name from the VM and the vCPU: a knob vmx_get_mt_mask() reads
is a Fault field named like its VmConfig/VcpuState field (is_mmio and guest_mtrr are
computed here)."""


def fault_for(era: Era, vm: VmConfig, vcpu: VcpuState, gpa: int, is_mmio: bool, lookup: Lookup | None = None) -> Fault:
    """What vmx_get_mt_mask() sees for the page; `lookup` saves a second KVM MTRR lookup."""
    guest: MemType | None
    if not era.reads_guest_mtrrs:
        guest = MemType.WB  # never read by eras from 6.11 on
    else:
        guest = (lookup or kvm_lookup(vcpu.mtrr, gpa, vm.maxphyaddr, vm.guest_has_mtrr)).type
    assert guest is not None
    return Fault(is_mmio=is_mmio, guest_mtrr=guest, **{n: getattr(vm, n) for n in _FAULT_VM},
                 **{n: getattr(vcpu, n) for n in _FAULT_VCPU})


def mask_at(era: Era, vm: VmConfig, vcpu: VcpuState, gpa: int, is_mmio: bool) -> MaskResult:
    return era.mt_mask(fault_for(era, vm, vcpu, gpa, is_mmio))


def page_sizes(era: Era, vm: VmConfig, vcpu: VcpuState, gpa: int) -> tuple[PageSizeRow, ...]:
    mtrr_limit = largest_page(vcpu.mtrr, gpa, vm.maxphyaddr)
    return tuple(PageSizeRow(k, applies, mtrr_limit if applies else PageSize.SIZE_1G)
                 for k, applies in era.huge_page_check(vm))


def slot_page_size(vm: VmConfig, gpa: int) -> PageSize:
    """Largest aligned block around `gpa` inside its memslot (KVM never maps past a slot)."""
    r = lookup_range(vm.memory_map, gpa)
    if r is None:
        return PageSize.SIZE_4K
    for size in HUGE_PAGES:
        base = gpa & ~(size.bytes - 1)
        if r.start <= base and base + size.bytes <= r.end:
            return size
    return PageSize.SIZE_4K


def resolve(era: Era, vm: VmConfig, vcpu: VcpuState, access: Access, kernel: KernelInfo | None = None) -> Resolution:
    """`kernel` (from app.kvm.versions.resolve_kernel) makes version-exact what the era leaves
    open: kvm_is_mmio_pfn()'s form and the MTRR huge-page check (4.2-5.19 vs 6.0-6.6)."""
    check(era, vm, vcpu, access)
    gpa = access.gpa
    page, src = access.host_page_for(vm)
    host = None
    if page is None:
        is_mmio = bool(access.mmio)
    else:
        host = host_side(era, page, src, kernel)
        is_mmio = host.mmio.is_mmio
        src = f"{src}; kvm_is_mmio_pfn ({host.answered_for}): {host.mmio.why}"
    sdm = sdm_lookup(vcpu.mtrr, gpa, vm.maxphyaddr)
    kvm_any = kvm_lookup(vcpu.mtrr, gpa, vm.maxphyaddr, vm.guest_has_mtrr)
    if (kernel is not None and kernel.series is not None and kernel.series < MTRR_CPUID_TEST
            and kvm_any.source == DISABLED and not vm.guest_has_mtrr):
        kvm_any = Lookup(MemType.UC, DISABLED, f"MTRRs disabled: mtrr_disabled_type() gives UC in {kernel.version} "
                         "whatever the guest CPUID says (the CPUID test is from 4.4)")
    kvm = kvm_any if era.reads_guest_mtrrs else None
    m = era.mt_mask(fault_for(era, vm, vcpu, gpa, is_mmio, kvm))
    finding = lookup_difference(sdm, kvm_any)
    sizes = page_sizes(era, vm, vcpu, gpa)
    if kernel is not None and kernel.mtrr_huge_page_check_every_fault is not None:
        # a version inside 4.2-6.6: keep only the huge-page answer of its side of 6.0
        keep = "4.2-5.19" if kernel.mtrr_huge_page_check_every_fault else "6.0-6.6"
        sizes = tuple(p for p in sizes if p.kernels == keep) or sizes
    slot = slot_page_size(vm, gpa)
    leaf_size = smallest(*(p.page_size for p in sizes), slot)  # the leaf stays inside its memslot
    leaf = EptLeaf.build(gpa + EXAMPLE_HPA_OFFSET, m.memtype, m.ipat, leaf_size)
    rows = []
    for i, pat in enumerate(vcpu.pat.entries):
        used = guest_pat_type(pat, vcpu.cr0_pg)
        eff = effective_type(m.memtype, m.ipat, used)
        exp = expectation(sdm, pat, cd=vcpu.cr0_cd, nw=vcpu.cr0_nw, paging=vcpu.cr0_pg,
                          guest_has_mtrr=vm.guest_has_mtrr)
        if exp.type is None:
            rel, why = "incomparable", "the guest's own MTRR type is undefined, so it expects nothing definite"
        else:
            rel, why = relation(eff, exp.type), relation_reason(eff, exp.type)
        rows.append(PatRow(i, index_to_pte_bits(i), pte_flags_text(i), pat, used, eff, exp.type, exp.reason, rel, why))
    return Resolution(era, gpa, is_mmio, src, m.memtype, m.ipat, m.path, leaf, sdm, kvm, finding, tuple(rows), sizes,
                      slot,
                      kernel, host)
