"""One scenario in, everything a reviewer asks about one address out.

The EPT entry the era's vmx_get_mt_mask() builds, the path it took, the page size the MTRR
consistency check allows, and for each of the 8 PAT entries the effective type next to what
the guest expects on bare metal.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..x86.ept import EptLeaf, effective_type, mt_mask
from ..x86.guest import expectation, guest_pat_type
from ..x86.memtype import MemType, relation, relation_reason
from ..x86.mtrr import HUGE_PAGES, Lookup, kvm_lookup, largest_page, lookup_difference, sdm_lookup, smallest
from ..x86.pat import index_to_pte_bits, pte_flags_text
from .era import Era, Fault, MaskResult, Step
from .scenario import Access, VcpuState, VmConfig, lookup_range

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
class PageSize:
    kernels: str
    mtrr_check: bool
    page_size: str


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
    page_sizes: tuple[PageSize, ...]
    slot_page_size: str

    @property
    def page_size(self) -> str:
        """The MTRR check's answer for the era, most conservative over its kernel ranges."""
        return smallest(*(p.page_size for p in self.page_sizes))

    @property
    def mask(self) -> int:
        return mt_mask(self.memtype, self.ipat)


def check(era: Era, vm: VmConfig, vcpu: VcpuState, access: Access | None = None) -> None:
    """Validate a scenario for an era; raises MemTypeError naming the field and the rule."""
    vm.validate()
    era.check_vm(vm)
    vcpu.validate(vm)
    if access is not None:
        access.validate(vm)


def fault_for(era: Era, vm: VmConfig, vcpu: VcpuState, gpa: int, is_mmio: bool, lookup: Lookup | None = None) -> Fault:
    """What vmx_get_mt_mask() sees for the page; `lookup` saves a second KVM MTRR lookup."""
    if not era.reads_guest_mtrrs:
        guest = MemType.WB  # never read by eras from 6.11 on
    else:
        guest = (lookup or kvm_lookup(vcpu.mtrr, gpa, vm.maxphyaddr, vm.guest_has_mtrr)).type
    assert guest is not None
    return Fault(is_mmio, vm.noncoherent_dma, vcpu.cr0_cd, vm.quirk_cd_nw_cleared, vm.quirk_ignore_guest_pat, vm.self_snoop, guest)


def mask_at(era: Era, vm: VmConfig, vcpu: VcpuState, gpa: int, is_mmio: bool) -> MaskResult:
    return era.mt_mask(fault_for(era, vm, vcpu, gpa, is_mmio))


def page_sizes(era: Era, vm: VmConfig, vcpu: VcpuState, gpa: int) -> tuple[PageSize, ...]:
    mtrr_limit = largest_page(vcpu.mtrr, gpa, vm.maxphyaddr)
    return tuple(PageSize(k, applies, mtrr_limit if applies else "1G") for k, applies in era.huge_page_check(vm))


def slot_page_size(vm: VmConfig, gpa: int) -> str:
    """Largest aligned block around `gpa` inside its memslot (KVM never maps past a slot)."""
    r = lookup_range(vm.memory_map, gpa)
    if r is None:
        return "4K"
    for size, name in HUGE_PAGES:
        base = gpa & ~(size - 1)
        if r.start <= base and base + size <= r.end:
            return name
    return "4K"


def resolve(era: Era, vm: VmConfig, vcpu: VcpuState, access: Access) -> Resolution:
    check(era, vm, vcpu, access)
    gpa = access.gpa
    is_mmio = access.is_mmio(vm)
    if access.mmio is not None:
        src = "given"
    else:
        r = lookup_range(vm.memory_map, gpa)
        src = f"memory map: {r.kind} ({r.label})" if r else "not in the memory map: treated as RAM"
    sdm = sdm_lookup(vcpu.mtrr, gpa, vm.maxphyaddr)
    kvm_any = kvm_lookup(vcpu.mtrr, gpa, vm.maxphyaddr, vm.guest_has_mtrr)
    kvm = kvm_any if era.reads_guest_mtrrs else None
    m = era.mt_mask(fault_for(era, vm, vcpu, gpa, is_mmio, kvm))
    finding = lookup_difference(sdm, kvm_any)
    sizes = page_sizes(era, vm, vcpu, gpa)
    slot = slot_page_size(vm, gpa)
    leaf_size = smallest(*(p.page_size for p in sizes), slot)  # the leaf stays inside its memslot
    leaf = EptLeaf.build(gpa + EXAMPLE_HPA_OFFSET, m.memtype, m.ipat, leaf_size)
    rows = []
    for i, pat in enumerate(vcpu.pat.entries):
        used = guest_pat_type(pat, vcpu.cr0_pg)
        eff = effective_type(m.memtype, m.ipat, used)
        exp = expectation(sdm, pat, cd=vcpu.cr0_cd, nw=vcpu.cr0_nw, paging=vcpu.cr0_pg, guest_has_mtrr=vm.guest_has_mtrr)
        if exp.type is None:
            rel, why = "incomparable", "the guest's own MTRR type is undefined, so it expects nothing definite"
        else:
            rel, why = relation(eff, exp.type), relation_reason(eff, exp.type)
        rows.append(PatRow(i, index_to_pte_bits(i), pte_flags_text(i), pat, used, eff, exp.type, exp.reason, rel, why))
    return Resolution(era, gpa, is_mmio, src, m.memtype, m.ipat, m.path, leaf, sdm, kvm, finding, tuple(rows), sizes, slot)
