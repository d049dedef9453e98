"""AMD SVM with nested paging (NPT) under KVM: what reaches the hardware, per kernel version.

Read in the kernel mirrors (git trees fetched through the search tool; "4.2" is
mlpzaq9998/linux-4.2, "4.4" xiaojimmychen/linux-4.4, "4.10" pengdonglin137/linux-4.10.17,
"4.13" kinmax/linux-4.13.19 (its Makefile says 4.13.9), "4.14" bm16ton/linux-4.14_16ton,
"4.20" a4913994/linux-4.20, "5.2" wangliang-cs/linux-5.2.1,
"6.5" sndrzt/linux-6.5, "6.8" sndrzt/linux-6.8, "6.16" KT0511/linux-6.16.1 30b97c8a1,
"6.19" matankalina/linux-6.19.10-fork 483059de9):

- No memory type in NPT entries, in any version. 4.2-5.x: `svm_get_mt_mask()` returns 0
  (svm.c, 4.2 to 5.2); later SVM has no get_mt_mask at all (`KVM_X86_OP_OPTIONAL_RET0`,
  kvm-x86-ops.h 6.8/6.16/6.19), and `make_spte()` (mmu/spte.c) ORs in nothing: 6.8 gates the
  call on `shadow_memtype_mask`, which kvm_mmu_reset_all_pte_masks() sets to 0 for NPT with
  the comment that KVM uses PAT entry 0 to encode WB and relies on the host MTRRs; 6.19 calls
  it only if `kvm_x86_ops.get_mt_mask` exists. So every leaf selects *host* PAT entry 0
  (app.x86.npt, `NptEntry.build(pat_index=0)`).
- Guest PAT reaches the hardware through the VMCB `g_pat` (gPAT). `init_vmcb()` copies
  `vcpu->arch.pat` into it at vCPU creation and reset. Up to 4.10, `svm_set_msr()` has no
  MSR_IA32_CR_PAT case: guest writes land in vcpu->arch.pat only and the hardware keeps the
  reset value (the power-on PAT for a new vCPU); 4.13.9 still has no case. From 4.14
  (15038e147247 "KVM: SVM: obey guest PAT") the write also goes to g_pat.
- Nested SVM (modelled kernels, 6.19 included): `nested_vmcb02_compute_g_pat()` (svm/nested.c,
  6.8, 6.19) copies L1's g_pat into vmcb02 ("FIXME: merge g_pat from vmcb01 and vmcb12"), so
  L2 runs on L1's PAT and vmcb12.g_pat is ignored. KVM_X86_QUIRK_NESTED_SVM_SHARED_PAT (Jim
  Mattson's series, applied to kvm-x86 svm in May 2026, 822790ab0149) makes the separate gPAT
  possible when disabled; it is not in 6.19, so outside the modelled kernels.
- CR0: `svm_set_cr0()` (svm.c, 4.2 through 6.19, unchanged in substance) puts the guest CR0
  into the VMCB save area, clearing CD and NW when KVM_X86_QUIRK_CD_NW_CLEARED is on (the
  default). With the quirk off the real CR0.CD is the guest's, so caching really stops.
  6.16's api.rst documents the quirk as an AMD-only firmware workaround; 6.16 svm_hardware_setup()
  removes it from `inapplicable_quirks`, so it stays on by default on AMD.
- KVM_X86_QUIRK_IGNORE_GUEST_PAT (6.16+, c9c1e20b4c7d): inapplicable on AMD, disabled at VM
  creation (`kvm_arch_init_vm`: disabled_quirks = inapplicable & supported); api.rst: "also
  ignored on AMD platforms ... KVM always honors guest PAT".
- Guest MTRRs: only stored (kvm_mtrr_set_msr); the guest-MTRR lookup was only ever called
  from vmx_get_mt_mask(). They still limit huge pages up to 5.19: `tdp_page_fault()`
  (mmu.c 4.2, 5.2) calls check_hugepage_cache_consistency() on every fault, vendor-neutral;
  6.0+ gate it on shadow_memtype_mask (6.5 mmu.c) and 6.7+ on kvm_mmu_honors_guest_mtrrs()
  (6.8), both false on NPT.

Zaps (what each event makes KVM call, though no NPT entry depends on the event):
- MTRR write: `update_mtrr()` zaps when `tdp_enabled && kvm_arch_has_noncoherent_dma()` up to
  6.6 (mtrr.c 4.2, 6.5), so NPT VMs with non-coherent DMA do zap; from 6.7 (9a3768191d95) the
  gate is kvm_mmu_honors_guest_mtrrs() = nc-DMA && shadow_memtype_mask, false on NPT (6.8);
  from 6.11 MTRRs are only stored.
- CR0.CD toggle: kvm_set_cr0() (4.2) / kvm_post_set_cr0() (6.5) zap everything with nc-DMA and
  the quirk off; 6.7 (7a18c7c2b69a) adds the honors-guest-MTRRs gate (false on NPT; 6.8);
  6.11 (e1548088ff54) removes the zap (6.16, 6.19 have none).
- Non-coherent DMA start/stop: no hook before 6.7; 6.7 (362ff6dca541) zaps iff
  __kvm_mmu_honors_guest_mtrrs(true) (6.8: shadow_memtype_mask, 0 on NPT), 6.11 iff
  kvm_mmu_may_ignore_guest_pat() (shadow_memtype_mask again), 6.16 iff the VM has
  IGNORE_GUEST_PAT on (x86.c 6.16/6.19), which AMD VMs never have: never zaps on AMD.
- Guest PAT write: never (g_pat is in the VMCB, like the VMCS on Intel).

The combination itself (host side x guest side) is in `combine_guest_host`; read its caveat.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..x86.ept import combine
from ..x86.guest import Expectation, expectation, guest_pat_type
from ..x86.memtype import MTRR_TYPE_NAMES, MemType, MemTypeError, host_mtrr_type, located, relation, relation_reason
from ..x86.mtrr import sdm_lookup
from ..x86.npt import NptEntry
from ..x86.pat import PAT_LINUX, PAT_POWER_ON, Pat, index_to_pte_bits, pte_flags_text
from .era import (
    C_CD_ZAP,
    C_DMA_ZAP,
    C_IGNORE_PAT,
    C_MTRR_ZAP,
    C_NO_CD,
    C_NO_MTRR,
    Commit,
    EventZap,
    Gate,
    Step,
    ZapDecision,
    ZapInput,
    ZapPolicy,
    Zaps,
    cd_zap_all,
    decide,
    dma_zap_all,
    mtrr_range_zap,
)
from .memmap import UNMAPPED, page_runs
from .mtrr import breakpoints
from .scenario import MMIO, RAM, VcpuState, VmConfig
from .versions import resolve_kernel
from .vm_kinds import VENDOR_AMD

Series = tuple[int, int]

C_OBEY_PAT = Commit("15038e147247", "KVM: SVM: obey guest PAT")
C_SHARED_PAT = Commit("822790ab0149", "KVM: x86: Define KVM_X86_QUIRK_NESTED_SVM_SHARED_PAT (kvm-x86 svm, 2026)")

# Version boundaries, each the first series with the new behaviour (one definition each).
GPAT_OBEYED_FROM: Series = (4, 14)
"""First series whose svm_set_msr() writes g_pat (15038e147247): present in 4.14, absent in
4.2, 4.4, 4.10.17 and 4.13.9."""
HUGE_PAGE_GATE_FROM: Series = (6, 0)
"""The guest-MTRR huge-page check stops running on NPT (gated on shadow_memtype_mask)."""
HONORS_GATE_FROM: Series = (6, 7)
"""MTRR-write and CD-toggle zaps gated on kvm_mmu_honors_guest_mtrrs(); nc-DMA hook added."""
NO_CD_ZAP_FROM: Series = (6, 11)
"""The CR0.CD zap and guest-MTRR memtypes are gone (e1548088ff54, 0a7b73559b39)."""

ERA_FIRST: dict[str, Series] = {
    "v4.2": (4, 2), "v6.7": (6, 7), "v6.11-rc1": (6, 11), "v6.11": (6, 11), "v6.16": (6, 16),
}
"""An era id names its first release here (the eras split Intel behaviour, not AMD's)."""

HOST_PAT_DEFAULT = PAT_LINUX
"""The host's IA32_PAT when the caller gives none: a Linux host (entry 0 is WB either way)."""
HOST_MTRR_DEFAULT: dict[str, MemType] = {RAM: MemType.WB, MMIO: MemType.UC}
"""Host MTRR type by memory kind when the caller gives none: host firmware's usual layout
(RAM WB, the PCI hole UC). An assumption about the host, not read from any source."""

HOST_MTRR_TYPES = MTRR_TYPE_NAMES
"""The host MTRR types a question may give (MTRR encodings 0, 1, 4, 5, 6; UC- is PAT's only)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SvmHost:
    """The host side of AMD nested paging as a question gives it (the API's `amd` object,
    the links' `amd_host_pat` / `amd_host_mtrr` rows, the CLI's --amd-host-* options).

    The NPT leaf KVM builds selects host PAT entry 0 (make_spte sets no PAT/PCD/PWT), and the
    host MTRRs apply to the host frame behind the guest page; neither is in KVM's hands, so
    both are facts about the host, not rules. Defaults: HOST_PAT_DEFAULT (a Linux host) and
    HOST_MTRR_DEFAULT by the page's kind (RAM WB, MMIO UC).

    The host MTRRs are one type for the access's frames, not a layout: the model has no
    host-physical address for a guest page (no memslot -> HPA mapping), so a layout could
    only be read at a frame the caller names anyway; one type per question is what a layout
    would give there, and what Xen's `host_mtrr` already takes (app.xen.facts).
    """

    host_pat: int = HOST_PAT_DEFAULT
    """The host's IA32_PAT MSR value."""
    host_mtrr: str | None = None
    """An MTRR type (HOST_MTRR_TYPES) for the host frames; None: by the page's kind."""

    def pat(self) -> Pat:
        """The host PAT (a reserved type refused, naming `host_pat` and the entry)."""
        return Pat.from_msr(self.host_pat, "host_pat")

    def mtrr(self, kind: str) -> MemType:
        """The host MTRR type of a frame of `kind` (ram or mmio)."""
        if self.host_mtrr is None:
            return HOST_MTRR_DEFAULT[kind]
        return host_mtrr_type(self.host_mtrr)

    def validate(self) -> SvmHost:
        self.pat()
        self.mtrr(RAM)
        return self

    @property
    def is_default(self) -> bool:
        return self.host_pat == HOST_PAT_DEFAULT and self.host_mtrr is None

    def describe(self) -> str:
        """One line: what the host side was taken to be."""
        pat = self.pat()
        mtrr = (f"host MTRR {self.host_mtrr} for every frame" if self.host_mtrr is not None
                else "host MTRR WB for RAM, UC for MMIO")
        return f"{mtrr}; host PAT {self.host_pat:#018x}, entry 0 {pat[0].label}"


DEFAULT_HOST = SvmHost()
"""The host side when a question gives none."""


def check_amd_side(given: bool, vendors: dict[str, str | None], facts: str = "AMD host facts",
                   name: str = "amd") -> None:
    """AMD host facts (SvmHost) describe the host under KVM on AMD: given with no AMD side
    they would be silently unused, so they are refused at `amd`. `vendors`: each side's
    vendor by the name of the input that gives it (resolve's vm.vendor, diff's a_vendor and
    b_vendor, the CLI's --vendor), None for a Xen kernel (which has no vendor); `facts` and
    `name` the host facts as the caller's user writes them (the API's `amd`, the CLI's
    --amd-host-* options)."""
    if not given or VENDOR_AMD in vendors.values():
        return
    if len(vendors) == 1:
        ((vname, vendor),) = vendors.items()
        who = "with a Xen kernel" if vendor is None else f"with {vname} {vendor}"
    else:
        who = "without an AMD side"
    raise MemTypeError("amd", f"{facts} given {who}", f"{name} needs {' or '.join(vendors)} amd")


UNVERIFIED = (
    "guest x host combination NOT verified against AMD APM vol 2 (\"Nested Paging\", "
    "combining memory types; the table was not found through the search tool): modelled "
    "as the MTRR x PAT table with the host type in the MTRR column"
)


@dataclass(frozen=True, slots=True)
class SvmKernel:
    """A kernel as the AMD rules need it: its series, and what the version says."""

    asked: str
    series: Series
    era: str
    label: str
    notes: tuple[str, ...]

    @property
    def gpat_follows_guest(self) -> bool:
        return self.series >= GPAT_OBEYED_FROM

    @property
    def ignore_guest_pat_quirk_exists(self) -> bool:
        """The quirk bit is known (6.16+, or a stable kernel carrying the backport)."""
        return self.era == "v6.16"

    @property
    def huge_pages_follow_guest_mtrrs(self) -> bool:
        return self.series < HUGE_PAGE_GATE_FROM


def svm_kernel(asked: str, field: str = "kernel") -> SvmKernel:
    """An era id (taken as its first release, series-v3 refused) or a kernel version."""
    if asked == "series-v3":
        raise MemTypeError(field, "series-v3 is an unmerged VMX patch series",
                           "AMD results need a merged kernel: an era id other than series-v3, or a version")
    if asked in ERA_FIRST:
        series, era, label = ERA_FIRST[asked], asked, f"{asked} (as {ERA_FIRST[asked][0]}.{ERA_FIRST[asked][1]})"
        notes: tuple[str, ...] = (f"era id {asked} taken as its first release for AMD",)
    else:
        info = resolve_kernel(asked, field)
        assert info.series is not None and info.version is not None
        series, era, label, notes = info.series, info.era, info.version, ()
    return SvmKernel(asked, series, era, label, notes)


def check_svm_vm(kernel: SvmKernel, vm: VmConfig) -> tuple[str, ...]:
    """Refuse what an AMD VM under `kernel` cannot have; return notes on knobs without effect."""
    notes = []
    if not vm.quirk_ignore_guest_pat:
        if not kernel.ignore_guest_pat_quirk_exists:
            raise MemTypeError(
                ("vm", "quirk_ignore_guest_pat"),
                f"KVM_X86_QUIRK_IGNORE_GUEST_PAT cannot be turned off under {kernel.label}: the quirk only exists "
                f"from 6.16 ({C_IGNORE_PAT.sha})",
                "KVM_CAP_DISABLE_QUIRKS2 refuses unknown quirk bits (EINVAL)",
            )
        notes.append("KVM_X86_QUIRK_IGNORE_GUEST_PAT: already disabled on AMD at VM creation (inapplicable)")
    elif kernel.ignore_guest_pat_quirk_exists:
        notes.append("KVM_X86_QUIRK_IGNORE_GUEST_PAT is inapplicable on AMD: disabled at VM creation "
                     "(kvm_arch_init_vm), guest PAT always honoured")
    notes.append("vm.self_snoop has no effect on AMD: nothing in SVM or the NPT path reads X86_FEATURE_SELFSNOOP")
    return tuple(notes)


# -- what the hardware runs with --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HardwareCr0:
    cd: bool
    nw: bool
    why: str


def hardware_cr0(cd: bool, nw: bool, quirk_cd_nw_cleared: bool) -> HardwareCr0:
    """svm_set_cr0(): the VMCB CR0 (what the CPU uses in guest mode) for a guest CR0."""
    if quirk_cd_nw_cleared:
        return HardwareCr0(False, False, "KVM_X86_QUIRK_CD_NW_CLEARED on: svm_set_cr0() clears CD and NW in the VMCB")
    return HardwareCr0(cd, nw, "quirk off: the guest's CD and NW are loaded as they are")


@dataclass(frozen=True, slots=True)
class HardwareGpat:
    pat: Pat
    why: str


def hardware_gpat(kernel: SvmKernel, guest_pat: Pat, pat_at_reset: Pat | None = None) -> HardwareGpat:
    """The VMCB g_pat the CPU uses: the guest's PAT from 4.14, the reset-time copy before."""
    if kernel.gpat_follows_guest:
        return HardwareGpat(guest_pat, "svm_set_msr(MSR_IA32_CR_PAT) writes g_pat")  # the path step cites the commit
    reset = pat_at_reset if pat_at_reset is not None else Pat.from_msr(PAT_POWER_ON)
    return HardwareGpat(reset, "before 15038e147247 guest PAT writes stop in vcpu->arch.pat: g_pat keeps the "
                               "value init_vmcb() copied at vCPU creation or reset (power-on PAT unless given)")


# -- the combination --------------------------------------------------------------------


def host_type(npt: NptEntry, host_pat: Pat, host_mtrr: MemType) -> MemType:
    """The host side of a nested page: host MTRR x the host PAT entry the NPT leaf selects.

    The ordinary x86 MTRR x PAT combination (app.x86.ept.COMBINE), as on the host itself.
    """
    return combine(host_mtrr, host_pat[npt.host_pat_index])


def combine_guest_host(host: MemType, guest_pat: MemType) -> MemType:
    """The effective type of a guest access from the host side and the guest PAT type.

    UNVERIFIED (see UNVERIFIED): AMD APM vol 2 "Nested Paging" gives a table combining the
    guest and host types; it was not found. Modelled as the MTRR x PAT table with the host
    type in the MTRR's place: WB on the host side leaves the guest's choice (UC- as UC), which
    agrees with KVM's spte.c comment that it encodes WB via PAT entry 0 and relies on the
    host MTRRs, and with the secondary summary of the APM (CSDN "AMD64内存属性详解", APM
    3.41) that a guest decides its own types when NPT, hPAT and host MTRRs are all WB.
    Whether hPAT and gPAT combine first and the host MTRR last gives the same result whenever
    the selected hPAT entry is WB, which is all KVM ever selects; other hPAT types differ
    between those readings only where UC- meets a WC MTRR.
    """
    return combine(host, guest_pat)


# -- one page, all eight guest PAT entries ----------------------------------------------


@dataclass(frozen=True, slots=True)
class SvmRow:
    """One guest PAT entry: what the guest asked, what the hardware used, what resulted."""

    index: int
    pte_bits: int
    pte_flags: str
    guest_pat_type: MemType  # the guest's IA32_PAT entry (what it believes it selects)
    gpat_type: MemType  # the g_pat entry the CPU uses (WB with guest paging off)
    effective: MemType
    guest_expected: MemType | None
    expected_reason: str
    relation: str
    relation_reason: str


@dataclass(frozen=True, slots=True)
class SvmResult:
    kernel: SvmKernel
    npt: NptEntry
    host_pat_index: int
    host_pat_type: MemType
    host_mtrr: MemType
    host_type: MemType
    cr0: HardwareCr0
    gpat: HardwareGpat
    rows: tuple[SvmRow, ...]
    path: tuple[Step, ...]
    notes: tuple[str, ...]
    largest_page_by_guest_mtrrs: bool


def _effective(host: MemType, gpat_t: MemType, cr0: HardwareCr0) -> tuple[MemType, str]:
    if cr0.cd:
        return MemType.UC, "hardware CR0.CD=1: no-fill mode, effectively UC"
    eff = combine_guest_host(host, gpat_t)
    return eff, f"host {host.label} x gPAT {gpat_t.label} = {eff.label} (unverified table)"


def svm_resolve(
    kernel: SvmKernel, vm: VmConfig, vcpu: VcpuState, gpa: int, *, is_mmio: bool,
    host_mtrr: MemType | None = None, host_pat: Pat | None = None, pat_at_reset: Pat | None = None,
    host: SvmHost = DEFAULT_HOST,
) -> SvmResult:
    """Every guest PAT entry's effective type for one guest-physical page on AMD with NPT.

    The host side from `host` (SvmHost: the question's facts, or the defaults); `host_mtrr`
    / `host_pat`, when given, override it (the core's own tests ask with a MemType/Pat)."""
    notes = list(kernel.notes) + list(check_svm_vm(kernel, vm))
    vcpu.validate(vm)
    if not 0 <= gpa < 1 << vm.maxphyaddr:
        raise MemTypeError("gpa", f"address {gpa:#x} is at or above 2^MAXPHYADDR (MAXPHYADDR={vm.maxphyaddr})",
                           "guest-physical addresses are below 2^MAXPHYADDR")
    kind = MMIO if is_mmio else RAM
    h_mtrr = host_mtrr if host_mtrr is not None else host.mtrr(kind)
    host_mtrr_type(h_mtrr)
    h_pat = host_pat if host_pat is not None else host.pat()
    npt = NptEntry.build(gpa & ~0xFFF)
    ht = host_type(npt, h_pat, h_mtrr)
    cr0 = hardware_cr0(vcpu.cr0_cd, vcpu.cr0_nw, vm.quirk_cd_nw_cleared)
    gp = hardware_gpat(kernel, vcpu.pat, pat_at_reset)
    look = sdm_lookup(vcpu.mtrr, gpa, vm.maxphyaddr)
    rows = []
    for i in range(8):
        gt = guest_pat_type(gp.pat[i], vcpu.cr0_pg)
        eff, _ = _effective(ht, gt, cr0)
        exp: Expectation = expectation(look, vcpu.pat[i], cd=vcpu.cr0_cd, nw=vcpu.cr0_nw, paging=vcpu.cr0_pg,
                                       guest_has_mtrr=vm.guest_has_mtrr)
        rel = relation(eff, exp.type) if exp.type is not None else "incomparable"
        why = relation_reason(eff, exp.type) if exp.type is not None else exp.reason
        rows.append(SvmRow(i, index_to_pte_bits(i), pte_flags_text(i), vcpu.pat[i], gt, eff, exp.type, exp.reason,
                           rel, why))
    path = (
        Step("npt", "make_spte", "no get_mt_mask on SVM: no memtype bits, PAT/PCD/PWT clear", True,
             f"NPT leaf selects host PAT entry 0 ({h_pat[0].label})"),
        Step("host", "(hardware)", "host MTRR x host PAT entry", True,
             f"{h_mtrr.label} x {h_pat[0].label} = {ht.label}"),
        Step("cr0", "svm_set_cr0", "quirk(CD_NW_CLEARED)", vm.quirk_cd_nw_cleared, cr0.why),
        Step("gpat", "svm_set_msr", "MSR_IA32_CR_PAT reaches g_pat", kernel.gpat_follows_guest, gp.why,
             C_OBEY_PAT.sha),
        Step("combine", "(hardware)", "hardware CR0.CD=1" if cr0.cd else "host type x gPAT type", True,
             "no-fill: UC" if cr0.cd else UNVERIFIED),
    )
    if not vcpu.cr0_pg:
        notes.append("guest paging off: the CPU uses WB as the guest's PAT type")
    if vcpu.cr0_cd and not cr0.cd:
        notes.append("guest CR0.CD=1 is hidden from the CPU: the guest expects no-fill, gets the table's type")
    if kernel.huge_pages_follow_guest_mtrrs:
        notes.append("guest MTRRs still limit the NPT page size (tdp_page_fault's consistency check, to 5.19)")
    notes.append("guest MTRRs are stored only: no SVM path reads them for a memory type")
    return SvmResult(kernel, npt, npt.host_pat_index, h_pat[npt.host_pat_index], h_mtrr, ht, cr0, gp, tuple(rows),
                     path, tuple(notes), kernel.huge_pages_follow_guest_mtrrs)


# -- the guest-physical space as runs (POST /api/v1/map) ----------------------------------


@dataclass(frozen=True, slots=True)
class SvmMapRun:
    """One run of the AMD map: a stretch of one memslot with one answer throughout.

    The NPT side is what svm_resolve() reports for one page (`npt`, `host_*`), the guest side
    the SDM lookup of the guest MTRRs (stored only by KVM: no `kvm_mtrr`), and `effective`
    the type for guest PAT entry `pat_index` through the VMCB g_pat and CR0. A hole (no
    memslot) has kind "unmapped" and every answer None.
    """

    start: int
    end: int
    kind: str
    label: str
    guest_mtrr: MemType | None = None
    host_pat_index: int | None = None
    host_pat_type: MemType | None = None
    host_mtrr: MemType | None = None
    host_type: MemType | None = None
    gpat_type: MemType | None = None
    effective: MemType | None = None
    expected: MemType | None = None
    relation: str = ""
    page_size: str = ""


def svm_map(kernel: SvmKernel, vm: VmConfig, vcpu: VcpuState, pat_index: int = 0,
            host: SvmHost = DEFAULT_HOST) -> tuple[list[SvmMapRun], tuple[str, ...]]:
    """Every memslot of `vm` split where the guest's SDM lookup, KVM's MTRR lookup or the
    memory map changes (app.kvm.mtrr.breakpoints, as the Intel map), each run with the NPT
    leaf's host side and the effective type for PAT entry `pat_index`; holes as "unmapped".

    The page size is the largest the NPT fault path maps there: up to 5.19 tdp_page_fault()
    still caps it by the guest MTRRs' consistency (app.kvm.memmap.page_runs with the check
    on), from 6.0 nothing about memory types caps it on NPT (HUGE_PAGE_GATE_FROM). Returns
    (runs, notes); the refusals are svm_resolve()'s (check_svm_vm, vcpu.validate) and the
    host facts' (SvmHost.validate: a reserved host PAT type, UC- as an MTRR type).
    """
    notes = list(kernel.notes) + list(check_svm_vm(kernel, vm))
    vm.validate()
    vcpu.validate(vm)
    h_pat = host.pat()
    host.validate()
    npt_index = NptEntry.build(0).host_pat_index
    cr0 = hardware_cr0(vcpu.cr0_cd, vcpu.cr0_nw, vm.quirk_cd_nw_cleared)
    gt = guest_pat_type(hardware_gpat(kernel, vcpu.pat).pat[pat_index], vcpu.cr0_pg)
    top = 1 << vm.maxphyaddr
    runs: list[SvmMapRun] = []
    cursor = 0
    for r in sorted(vm.memory_map, key=lambda r: r.start):
        if r.start > cursor:
            runs.append(SvmMapRun(cursor, r.start, UNMAPPED, "no memslot"))
        h_mtrr = host.mtrr(r.kind)
        ht = combine(h_mtrr, h_pat[npt_index])
        eff, _ = _effective(ht, gt, cr0)
        with located("vcpu", "mtrr"):
            pts = breakpoints(vcpu.mtrr, r.start, r.end, vm.maxphyaddr)
        for s, e in zip(pts, pts[1:], strict=False):
            look = sdm_lookup(vcpu.mtrr, s, vm.maxphyaddr)
            exp = expectation(look, vcpu.pat[pat_index], cd=vcpu.cr0_cd, nw=vcpu.cr0_nw, paging=vcpu.cr0_pg,
                              guest_has_mtrr=vm.guest_has_mtrr).type
            rel = relation(eff, exp) if exp is not None else "incomparable"
            for ps, pe, size in page_runs(vcpu, vm, s, e, kernel.huge_pages_follow_guest_mtrrs):
                run = SvmMapRun(ps, pe, r.kind, r.label, look.type, npt_index, h_pat[npt_index], h_mtrr, ht, gt,
                                eff, exp, rel, str(size))
                prev = runs[-1] if runs else None
                if prev is not None and prev.end == ps and replace(prev, start=ps, end=pe) == run:
                    runs[-1] = replace(prev, end=pe)
                else:
                    runs.append(run)
        cursor = max(cursor, r.end)
    if cursor < top:
        runs.append(SvmMapRun(cursor, top, UNMAPPED, "no memslot"))
    return runs, tuple(notes)


# -- zaps -------------------------------------------------------------------------------

_NPT_GATE = "shadow_memtype_mask is 0 on NPT"


def svm_policy(kernel: SvmKernel) -> ZapPolicy:
    """The era engine's zap policy (app/kvm/era.py) for SVM at `kernel`: the same update_mtrr(),
    kvm_post_set_cr0() and nc-DMA hooks as on Intel, with the gates NPT gives them."""
    s = kernel.series
    if s < HONORS_GATE_FROM:
        mtrr = mtrr_range_zap("!tdp_enabled || !kvm_arch_has_noncoherent_dma(kvm)")
        cd = cd_zap_all("kvm_arch_has_noncoherent_dma(kvm) && !quirk(CD_NW_CLEARED)")
        dma = EventZap(Zaps.NOTHING, "hook", "kvm_arch_register_noncoherent_dma",
                       "no start/stop zap before 362ff6dca541", commit=C_DMA_ZAP.sha)
    else:
        cond = (f"__kvm_mmu_honors_guest_mtrrs(true) / kvm_mmu_may_ignore_guest_pat(): {_NPT_GATE}"
                if kernel.era != "v6.16" else "quirk(IGNORE_GUEST_PAT): disabled on AMD at VM creation")
        dma = dma_zap_all(cond, Gate.NEVER, C_IGNORE_PAT.sha if kernel.era == "v6.16" else C_DMA_ZAP.sha)
        if s < NO_CD_ZAP_FROM:
            mtrr = EventZap(Zaps.NOTHING, "gate", "update_mtrr", f"!kvm_mmu_honors_guest_mtrrs(kvm): {_NPT_GATE}",
                            commit=C_MTRR_ZAP.sha)
            cd = EventZap(Zaps.EVERYTHING, "zap", "kvm_post_set_cr0", f"kvm_mmu_honors_guest_mtrrs(kvm): {_NPT_GATE}",
                          Gate.NEVER, C_CD_ZAP.sha)
        else:
            mtrr = EventZap(Zaps.NOTHING, "mtrr", "kvm_mtrr_set_msr", "MTRRs are only stored and returned",
                            commit=C_NO_MTRR.sha)
            cd = EventZap(Zaps.NOTHING, "cd", "kvm_post_set_cr0", "no CR0.CD zap since e1548088ff54",
                          commit=C_NO_CD.sha)
    pat = EventZap(Zaps.NOTHING, "pat", "svm_set_msr", "guest PAT lives in the VMCB g_pat, not in NPT")
    return ZapPolicy(cr0_cd=cd, mtrr_write=mtrr, noncoherent_dma=dma, pat_write=pat)


def svm_zap(kernel: SvmKernel, z: ZapInput) -> ZapDecision:
    """The kvm_zap_gfn_range() calls KVM makes on AMD for one event, by kernel version.

    None is ever *needed*: an NPT leaf holds no memtype, so no event changes one (a CD toggle
    with the quirk off, or a PAT write from 4.14, takes effect at the next VMRUN through the
    VMCB). Every zapped page is excess.
    """
    return decide(svm_policy(kernel), z)


__all__ = [
    "C_OBEY_PAT", "C_SHARED_PAT", "DEFAULT_HOST", "HOST_MTRR_DEFAULT", "HOST_MTRR_TYPES", "HOST_PAT_DEFAULT",
    "HardwareCr0", "HardwareGpat", "SvmHost", "SvmKernel", "SvmMapRun", "SvmResult", "SvmRow", "UNVERIFIED",
    "check_amd_side", "check_svm_vm", "combine_guest_host", "hardware_cr0", "hardware_gpat", "host_type",
    "svm_kernel", "svm_map", "svm_policy", "svm_resolve", "svm_zap",
]
