"""TDX VMs (`vm.type` "tdx", KVM_X86_TDX_VM): fixed settings, refusals, the memory type.

Read in KT0511/linux-6.16.1 (30b97c8a1) and matankalina/linux-6.19.10-fork (483059de9):

- `tdx_vm_init()` (arch/x86/kvm/vmx/tdx.c) ORs KVM_X86_QUIRK_IGNORE_GUEST_PAT into the VM's
  `disabled_quirks`, whatever `supported_quirks` says, and quirks can only be disabled
  (KVM_CAP_DISABLE_QUIRKS2 ORs bits in, x86.c): a TD never ignores guest PAT.
- Shared GPAs go through the normal EPT and `vmx_get_mt_mask()` (vmx.c; main.c wires
  `.get_mt_mask = vmx_get_mt_mask` for VMX and TDX alike): host MMIO is UC, everything else
  WB *without* IPAT because vmx_ignore_guest_pat() needs the quirk, so guest PAT decides. That
  is the v6.16 era's rule list with the quirk off (app.kvm.v6_16; reused, not restated).
- Private GPAs live in the Secure EPT, built by the TDX module: `tdx_sept_set_private_spte()`
  hands only the pfn and level to TDH.MEM.PAGE.AUG, so KVM sets no memtype there. The module's
  choice (modelled as WB without IPAT, like the shared side) is NOT in the sources read.
- CR0.CD and the MTRRs are fixed by the TDX module: edk2 OvmfPkg/IntelTdx/Sec/SecMain.c
  (`SecMtrrSetup`, tianocore/edk2) says the TDX spec enforces the default MTRR type WB and
  CR0.CD=0, CR0.CD=1 giving an unexpected #VE; Linux guests agree (`kvm_init_platform()`,
  arch/x86/kernel/kvm.c 6.16: guest_force_mtrr_state(NULL, 0, WB) "for SEV-SNP and TDX").
  KVM cannot see a TD's CR0 (guest_state_protected). It still emulates the MTRR MSRs for a TD
  (`tdx_has_emulated_msr()` lists them, kvm_set_msr_common() stores them), and nothing reads
  them for a memory type (VMX ignores guest MTRRs since 6.11).
- Zaps: non-coherent DMA start/stop zaps only while the VM has IGNORE_GUEST_PAT on (6.16
  x86.c `kvm_noncoherent_dma_assignment_start_or_stop`), so never for a TD; MTRR writes are
  stored; no CR0.CD path exists.
- KVM_X86_TDX_VM (5) is offered only by kvm_intel (`vt_hardware_setup()`, main.c) from 6.16.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..x86.ept import effective_type
from ..x86.guest import expectation, guest_pat_type
from ..x86.memtype import LocLike, MemType, MemTypeError, as_loc, dotted, relation
from ..x86.mtrr import DEF_TYPE_E, MSR_MTRR_DEF_TYPE, sdm_lookup
from ..x86.paging import PageSize
from .era import C_IGNORE_PAT, Era, Fault, MaskResult
from .memmap import UNMAPPED, MapRun, address_map, page_runs
from .ranges import check_map_ranges, first_uncovered
from .scenario import CR0_CD, MMIO, MTRR_WRITE, Event, VcpuState, VmConfig
from .v6_16 import ERA as ERA_616
from .versions import resolve_kernel
from .vm_kinds import VENDOR_AMD, VENDOR_INTEL, VENDORS, VM_TYPE_TDX, VM_TYPES

TDX_FROM = (6, 16)
"""First release with KVM_X86_TDX_VM (the 6.16 merge window, TDX host support)."""
TDX_ERA = ERA_616.id
"""The era of every kernel with TDX VMs (6.16 and later)."""
TDX_MTRR_DEF_TYPE = DEF_TYPE_E | int(MemType.WB)
"""MTRRdefType as the TDX module fixes it: enabled, default type WB (edk2 SecMain.c)."""
RULE_CR0_CD = "the TDX module fixes CR0.CD to 0; setting it raises #VE (edk2 SecMain.c, citing the TDX spec)"
RULE_MTRR = f"the TDX module enforces MTRRs enabled, default WB ({TDX_MTRR_DEF_TYPE:#x}; edk2 SecMain.c)"
RULE_MMIO_SHARED = "private memory is guest_memfd RAM (kvm_gmem); MMIO is only ever shared"
PRIVATE_UNVERIFIED = ("private page: the Secure EPT memtype is the TDX module's; modelled as WB without "
                      "IPAT, not verified (KVM passes none: tdx_sept_set_private_spte)")


def _fixed_def_type(def_type: int) -> bool:
    """E=1 and default type WB (FE and the fixed/variable ranges are left to the guest)."""
    return def_type & (DEF_TYPE_E | 0xFF) == TDX_MTRR_DEF_TYPE


def check_vm_names(vendor: str, vm_type: str, vendor_loc: LocLike = ("vm", "vendor"),
                   type_loc: LocLike = ("vm", "type")) -> None:
    """Refuse a vendor or VM type that is not one of app.kvm.vm_kinds' names."""
    if vendor not in VENDORS:
        raise MemTypeError(vendor_loc, f"unknown vendor {vendor!r}", f"one of {', '.join(VENDORS)}")
    if vm_type not in VM_TYPES:
        raise MemTypeError(type_loc, f"unknown VM type {vm_type!r}", f"one of {', '.join(VM_TYPES)}")


def check_vm_kind(vendor: str, vm_type: str, kernel: str, field: str = "kernel", *,
                  vendor_loc: LocLike = ("vm", "vendor"), type_loc: LocLike = ("vm", "type")) -> None:
    """Refuse a vendor/type/kernel combination KVM_CREATE_VM would not accept.

    The locations default to the request's `vm` object; the cross-system diff passes its own
    members (`a_vendor`/`a_type`, app.system_diff.side): one rule, wherever it is asked."""
    check_vm_names(vendor, vm_type, vendor_loc, type_loc)
    if vm_type != VM_TYPE_TDX:
        return
    if vendor == VENDOR_AMD:
        raise MemTypeError(type_loc, f"a TDX VM needs an Intel CPU ({dotted(as_loc(vendor_loc))} is amd)",
                           "KVM_X86_TDX_VM is offered by kvm_intel only (vt_hardware_setup); "
                           "kvm_amd's KVM_CREATE_VM refuses it with EINVAL")
    info = resolve_kernel(kernel, field)
    ok = info.series >= TDX_FROM if info.series is not None else info.era == TDX_ERA
    if not ok:
        raise MemTypeError(type_loc, f"no TDX VMs under {kernel!r}",
                           "KVM_X86_TDX_VM first in 6.16 (era v6.16); older kernels refuse the type (EINVAL); "
                           "a 6.12 stable backport of the quirk does not bring TDX")
    assert vendor == VENDOR_INTEL


def check_tdx_vm(vm: VmConfig) -> tuple[str, ...]:
    """Refuse VM settings a TD cannot have; return notes on knobs without effect."""
    if vm.quirk_ignore_guest_pat:
        raise MemTypeError(("vm", "quirk_ignore_guest_pat"),
                           "KVM_X86_QUIRK_IGNORE_GUEST_PAT is always disabled for a TDX VM: set it to false",
                           f"tdx_vm_init() ORs the quirk into disabled_quirks ({C_IGNORE_PAT.sha}); "
                           "quirks cannot be re-enabled")
    return (
        "KVM_X86_QUIRK_CD_NW_CLEARED has no effect on Intel (inapplicable since 6.16); CR0 is the TDX module's",
        "vm.self_snoop does not matter: tdx_vm_init() disables IGNORE_GUEST_PAT without the self-snoop check",
    )


def check_tdx_vcpu(vcpu: VcpuState, field: str = "vcpu") -> None:
    """Refuse vCPU state the TDX module does not allow."""
    if vcpu.cr0_cd:
        raise MemTypeError((field, "cr0_cd"), "CR0.CD=1 in a TD", RULE_CR0_CD)
    if not _fixed_def_type(vcpu.mtrr.def_type):
        raise MemTypeError((field, "mtrr", "def_type"),
                           f"MTRRdefType {vcpu.mtrr.def_type:#x} is not enabled with default type WB", RULE_MTRR)


def check_tdx_event(ev: Event) -> None:
    """Refuse an event a TD cannot perform (or that would leave the fixed state)."""
    if ev.kind == CR0_CD and ev.value:
        raise MemTypeError(("event", "value"), "CR0.CD := 1 in a TD", RULE_CR0_CD)
    if ev.kind == MTRR_WRITE and ev.msr == MSR_MTRR_DEF_TYPE and not _fixed_def_type(int(ev.value)):
        raise MemTypeError(("event", "value"), f"MTRRdefType := {int(ev.value):#x} leaves enabled/WB", RULE_MTRR)


def tdx_defaults(vm: VmConfig, vcpu: VcpuState) -> tuple[VmConfig, VcpuState]:
    """The VM and vCPU with every field the TDX module or tdx_vm_init() fixes set to its value.

    For the API layer to apply to fields the request did not give (never over given ones:
    those go through the checks above and are refused when they differ).
    """
    mtrr = replace(vcpu.mtrr, def_type=(vcpu.mtrr.def_type & ~(DEF_TYPE_E | 0xFF)) | TDX_MTRR_DEF_TYPE)
    return replace(vm, quirk_ignore_guest_pat=False), replace(vcpu, cr0_cd=False, cr0_nw=False, mtrr=mtrr)


def tdx_mt_mask(vm: VmConfig, is_mmio: bool, private: bool) -> tuple[MemType, bool, str, MaskResult | None]:
    """(EPT memtype, IPAT, why, the v6.16 decision path or None for a private page)."""
    if private:
        if is_mmio:
            raise MemTypeError(("access", "mmio"), "a private GPA backed by host MMIO", RULE_MMIO_SHARED)
        return MemType.WB, False, PRIVATE_UNVERIFIED, None
    m = ERA_616.mt_mask(Fault(is_mmio=is_mmio, noncoherent_dma=vm.noncoherent_dma, cr0_cd=False,
                              quirk_cd_nw_cleared=False, quirk_ignore_guest_pat=False, self_snoop=vm.self_snoop))
    why = next(s.result for s in m.path if s.held)
    return m.memtype, m.ipat, why, m


@dataclass(frozen=True, slots=True)
class TdxRow:
    index: int
    pat_type: MemType
    effective: MemType
    guest_expected: MemType | None
    relation: str


@dataclass(frozen=True, slots=True)
class TdxResult:
    memtype: MemType
    ipat: bool
    why: str
    rows: tuple[TdxRow, ...]
    notes: tuple[str, ...]


def tdx_resolve(vm: VmConfig, vcpu: VcpuState, gpa: int, *, is_mmio: bool, private: bool) -> TdxResult:
    """All eight guest PAT entries' effective types for one page of a TD (checks first)."""
    notes = check_tdx_vm(vm)
    vcpu.validate(vm)
    check_tdx_vcpu(vcpu)
    mt, ipat, why, _ = tdx_mt_mask(vm, is_mmio, private)
    look = sdm_lookup(vcpu.mtrr, gpa, vm.maxphyaddr)
    rows = []
    for i in range(8):
        pat = guest_pat_type(vcpu.pat[i], vcpu.cr0_pg)
        eff = effective_type(mt, ipat, pat)
        exp = expectation(look, vcpu.pat[i], cd=False, paging=vcpu.cr0_pg, guest_has_mtrr=vm.guest_has_mtrr)
        rel = relation(eff, exp.type) if exp.type is not None else "incomparable"
        rows.append(TdxRow(i, vcpu.pat[i], eff, exp.type, rel))
    return TdxResult(mt, ipat, why, tuple(rows), notes)


PRIVATE_RANGE = "private range"
"""What one private_ranges item is called, in the map's refusals and on the page's rows."""

__all__ = [
    "PRIVATE_RANGE", "PRIVATE_UNVERIFIED",
    "RULE_CR0_CD", "TDX_ERA", "TDX_FROM", "TDX_MTRR_DEF_TYPE", "TdxResult", "TdxRow",
    "check_tdx_event", "check_tdx_vcpu", "check_tdx_vm", "check_vm_kind", "check_vm_names", "tdx_defaults",
    "tdx_mt_mask", "tdx_resolve", "tdx_zap_audit", "PRIVATE_PAGE_SIZE", "RULE_MMIO_SHARED", "RULE_PRIVATE_RAM",
    "TdxMapRun", "check_private_ranges", "tdx_map",
]


def tdx_zap_audit(era_id: str, vm: VmConfig, vcpu: VcpuState, event: Event):
    """A TD's zap audit: the TD's refusals (check_tdx_vm, check_tdx_vcpu, check_tdx_event),
    then the ordinary audit of the era (v6.16 with IGNORE_GUEST_PAT off: no TD event zaps
    anything it needs, see the module docstring). `vm`/`vcpu` with the TD's fixed fields
    already set where the caller left them out (tdx_defaults)."""
    from .eras import ERAS
    from .zap import audit

    check_tdx_vm(vm)
    vcpu.validate(vm)
    check_tdx_vcpu(vcpu)
    check_tdx_event(event)
    return audit(ERAS[era_id], vm, vcpu, event)


# -- the map with private GPAs (POST /api/v1/map `private_ranges`) -------------------------

PRIVATE_PAGE_SIZE = PageSize.SIZE_4K
"""The largest private mapping: tdx_gmem_private_max_mapping_level() returns PG_LEVEL_4K
(vmx/tdx.c 6.16; 6.19's tdx_gmem_max_mapping_level() the same for private pages)."""
RULE_ATTR_ALIGN = ("KVM_SET_MEMORY_ATTRIBUTES takes page-aligned address and size "
                   "(kvm_vm_ioctl_set_mem_attributes: -EINVAL)")


RULE_PRIVATE_RAM = ("private GPAs are RAM only: a private fault without a memslot maps nothing "
                    "(kvm_handle_noslot_fault exits with KVM_EXIT_MEMORY_FAULT)")


def check_private_ranges(vm: VmConfig, ranges: tuple[tuple[int, int], ...],
                         field: str = "private_ranges") -> tuple[tuple[int, int], ...]:
    """The GPA ranges whose memory attribute is private ([start, end) each), sorted; refused
    when KVM would not set them (kvm_vm_ioctl_set_mem_attributes: page aligned, not empty),
    when they overlap, or when they cover anything but RAM memslots: host MMIO is only ever
    shared, and a hole is private for KVM_SET_MEMORY_ATTRIBUTES (which asks for no memslot)
    but a private fault there maps nothing (kvm_mmu_faultin_pfn -> kvm_handle_noslot_fault,
    read in KT0511/linux-6.16.1 30b97c8a1), so the map has no private entry to show."""
    top = 1 << vm.maxphyaddr
    ram = [(r.start, r.end) for r in vm.memory_map if r.kind != MMIO]

    def each(f: tuple, start: int, end: int) -> None:
        if end > top:
            raise MemTypeError(f, f"{start:#x}-{end:#x} reaches above 2^MAXPHYADDR (MAXPHYADDR={vm.maxphyaddr})",
                               "guest-physical addresses are below 2^MAXPHYADDR")
        for r in vm.memory_map:
            if r.kind == MMIO and r.start < end and start < r.end:
                raise MemTypeError(f, f"covers the mmio range {r.start:#x}-{r.end:#x}", RULE_MMIO_SHARED)
        if (hole := first_uncovered(start, end, ram)) is not None:
            raise MemTypeError(f, f"{hole:#x} is in no memory-map range", RULE_PRIVATE_RAM)

    check_map_ranges(ranges, field, PRIVATE_RANGE, RULE_ATTR_ALIGN, "give each GPA once", each)
    return tuple(sorted(ranges))


@dataclass(frozen=True, slots=True)
class TdxMapRun(MapRun):
    """A run of a TD's map: the Intel run's members and whether its GPAs are private (None
    in a hole)."""

    private: bool | None = None


def _segments(start: int, end: int, private: tuple[tuple[int, int], ...]) -> list[tuple[int, int, bool]]:
    """[start, end) cut at the private ranges' edges, each piece with its attribute."""
    out, cursor = [], start
    for s, e in private:
        a, b = max(s, start), min(e, end)
        if a >= b:
            continue
        if cursor < a:
            out.append((cursor, a, False))
        out.append((a, b, True))
        cursor = b
    if cursor < end:
        out.append((cursor, end, False))
    return out


def tdx_map(era: Era, vm: VmConfig, vcpu: VcpuState, pat_index: int = 0,
            private: tuple[tuple[int, int], ...] = ()) -> list[TdxMapRun]:
    """The TD's map: the era's runs (shared GPAs, the normal EPT: vmx_get_mt_mask() with
    IGNORE_GUEST_PAT off) with the ranges in `private` (check_private_ranges first) as
    private runs: the Secure EPT, memtype modelled as tdx_mt_mask's (WB without IPAT,
    PRIVATE_UNVERIFIED), 4K pages (PRIVATE_PAGE_SIZE). A shared huge page never spans a
    private edge: KVM's max mapping level drops where a huge page's gfns have mixed
    attributes (hugepage_has_attrs(), KVM_LPAGE_MIXED_FLAG, mmu/mmu.c 6.16), so the shared
    pieces next to an edge are re-split by page size within the piece."""
    runs = address_map(era, vm, vcpu, pat_index)
    names = [f.name for f in fields(MapRun)]
    plain = [TdxMapRun(**{**{n: getattr(r, n) for n in names}, "private": None if r.kind == UNMAPPED else False})
             for r in runs]
    if not private:
        return plain
    pmt, pipat, _, _ = tdx_mt_mask(vm, False, True)
    peff = effective_type(pmt, pipat, guest_pat_type(vcpu.pat[pat_index], vcpu.cr0_pg))
    huge = any(applies for _, applies in era.huge_page_check(vm))
    out: list[TdxMapRun] = []

    def add(run: TdxMapRun) -> None:
        prev = out[-1] if out else None
        if prev is not None and prev.end == run.start and replace(prev, start=run.start, end=run.end) == run:
            out[-1] = replace(prev, end=run.end)
        else:
            out.append(run)

    for r in plain:
        pieces = _segments(r.start, r.end, private) if r.kind != UNMAPPED else [(r.start, r.end, False)]
        if len(pieces) == 1 and not pieces[0][2]:
            add(r)
            continue
        for s, e, is_private in pieces:
            if is_private:
                rel = relation(peff, r.expected) if r.expected is not None else "incomparable"
                add(replace(r, start=s, end=e, memtype=pmt, ipat=pipat, effective=peff, relation=rel,
                            page_size=str(PRIVATE_PAGE_SIZE), private=True))
                continue
            cap = PageSize(r.page_size).bytes
            for ps, pe, size in page_runs(vcpu, vm, s, e, huge):
                add(replace(r, start=ps, end=pe, page_size=str(size if size.bytes <= cap else PageSize(r.page_size))))
    return out
