"""What every kernel era module provides, and the pieces they share.

An era is data more than code: its `vmx_get_mt_mask()` is an ordered list of `Rule`s read
top to bottom exactly like the kernel's `if` chain (the first whose condition holds gives
the memtype), and its zap policy is a function over the state before and after an event.
The decision path returned to callers lists every rule with whether it held, so the page
can light up the branch taken and dim the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..x86.memtype import MemType, MemTypeError
from ..x86.mtrr import (
    FIXED_MSR_SLOT,
    FIXED_MSRS,
    MSR_MTRR_DEF_TYPE,
    MtrrState,
    var_msr_index,
)
from .scenario import CR0_CD, NONCOHERENT_DMA, Event, VcpuState, VmConfig
from .step import Step

Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Commit:
    sha: str
    subject: str


@dataclass(frozen=True, slots=True)
class Fault:
    """What vmx_get_mt_mask() can see when KVM builds a leaf SPTE for one page.

    `guest_mtrr` is the pre-6.11 KVM lookup for the page (kvm_mtrr_get_guest_memory_type);
    eras from 6.11 on never read it.
    """

    is_mmio: bool
    noncoherent_dma: bool
    cr0_cd: bool
    quirk_cd_nw_cleared: bool
    quirk_ignore_guest_pat: bool
    self_snoop: bool
    guest_mtrr: MemType = MemType.WB


@dataclass(frozen=True, slots=True)
class Rule:
    """One `if` of vmx_get_mt_mask(): the function it lives in, its condition, its result."""

    id: str
    function: str
    condition: str
    holds: Callable[[Fault], bool]
    result: Callable[[Fault], tuple[MemType, bool, str]]
    commit: str = ""


@dataclass(frozen=True, slots=True)
class MaskResult:
    memtype: MemType
    ipat: bool
    path: tuple[Step, ...]


def run_rules(rules: tuple[Rule, ...], f: Fault) -> MaskResult:
    steps: list[Step] = []
    found: tuple[MemType, bool] | None = None
    for r in rules:
        if found is not None:
            steps.append(Step(r.id, r.function, r.condition, None, "", r.commit))
            continue
        if r.holds(f):
            mt, ipat, why = r.result(f)
            found = (mt, ipat)
            steps.append(Step(r.id, r.function, r.condition, True, why, r.commit))
        else:
            steps.append(Step(r.id, r.function, r.condition, False, "", r.commit))
    assert found is not None, "the last rule of every era is unconditional"
    return MaskResult(found[0], found[1], tuple(steps))


def always(_: Fault) -> bool:
    return True


# -- zap plumbing --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZapInput:
    vm: VmConfig
    vcpu: VcpuState
    vm_after: VmConfig
    vcpu_after: VcpuState
    event: Event

    @property
    def everything(self) -> Range:
        """kvm_zap_gfn_range(kvm, 0, ~0): everything the guest can address."""
        return (0, 1 << self.vm.maxphyaddr)

    @property
    def cd_toggled(self) -> bool:
        return self.event.kind == CR0_CD and self.vcpu.cr0_cd != self.vcpu_after.cr0_cd

    @property
    def dma_transition(self) -> bool:
        return self.event.kind == NONCOHERENT_DMA and self.vm.noncoherent_dma != self.vm_after.noncoherent_dma


@dataclass(frozen=True, slots=True)
class ZapDecision:
    """The kvm_zap_gfn_range() calls one event makes, and the checks that led there."""

    calls: tuple[Range, ...]
    path: tuple[Step, ...]
    per_memslot: bool = False  # series-v3 patch 11 intersects each call with the memslots


class ZapTrail:
    """Collects the zap checks an era makes, in the kernel's order, for the audit trail."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.calls: list[Range] = []

    def check(self, id: str, function: str, condition: str, held: bool, result: str = "", commit: str = "") -> bool:
        self.steps.append(Step(id, function, condition, held, result if held else "", commit))
        return held

    def zap(self, r: Range) -> None:
        self.calls.append(r)

    def done(self, per_memslot: bool = False) -> ZapDecision:
        return ZapDecision(tuple(self.calls), tuple(self.steps), per_memslot)


def update_mtrr_range(msr: int, after: MtrrState, maxphyaddr: int, everything: Range) -> tuple[Range | None, str]:
    """The range update_mtrr() zaps for a write to `msr` (state read after the store).

    MTRRdefType: everything. A fixed MSR: its own window, or nothing when FE=0. A variable
    base or mask: the pair's range from its *new* value (valid or not); the old range is
    never zapped. Returns (range or None, why).
    """
    if msr == MSR_MTRR_DEF_TYPE:
        return everything, "MTRRdefType: zap everything"
    if msr in FIXED_MSR_SLOT:
        f = FIXED_MSRS[FIXED_MSR_SLOT[msr]]
        if not after.fixed_enabled:
            return None, "fixed MSR written while FE=0: nothing"
        return (f.start, f.end), f"fixed MSR: its own window [{f.start:#x}, {f.end:#x})"
    v = var_msr_index(msr)
    if v is None:
        raise MemTypeError("event.msr", f"{msr:#x} is not an MTRR MSR", "update_mtrr() handles MTRR MSRs only")
    s, e = after.pair(v[0]).kvm_range(maxphyaddr)
    if e <= s:
        return (s, s), f"variable pair {v[0]}: mask never written, end wraps below start: nothing zapped"
    return (s, e), f"variable pair {v[0]}: the new range [{s:#x}, {e:#x}) only"


def mtrr_write_zap(z: ZapInput, t: ZapTrail, gate: bool, gate_text: str, gate_commit: str, function: str = "update_mtrr") -> None:
    """update_mtrr() as in v4.2..v6.10 after a gate (nc-DMA; 'honors guest MTRRs' from 6.7)."""
    ev = z.event
    assert ev.msr is not None
    if not t.check("gate", function, gate_text, not gate, "return: no zap", gate_commit):
        after = z.vcpu_after.mtrr
        if t.check("disabled", function, "MTRRs disabled (E=0) and msr != MTRRdefType",
                   not after.enabled and ev.msr != MSR_MTRR_DEF_TYPE, "return: no zap"):
            return
        r, why = update_mtrr_range(ev.msr, after, z.vm.maxphyaddr, z.everything)
        t.check("range", "update_mtrr", "compute the zap range", True, why)
        if r is not None:
            t.zap(r)


@dataclass(frozen=True)
class Era:
    """A kernel era: identity, citations, the mt-mask rules and the zap policy."""

    id: str
    title: str
    kernels: str
    summary: str
    commits: tuple[Commit, ...]
    rules: tuple[Rule, ...]
    zap_policy: Callable[[ZapInput], ZapDecision]
    huge_page_check: Callable[[VmConfig], tuple[tuple[str, bool], ...]]
    notes: tuple[str, ...] = field(default=())

    @property
    def reads_guest_mtrrs(self) -> bool:
        """Whether vmx_get_mt_mask() consults kvm_mtrr_get_guest_memory_type() (before 6.11)."""
        return RULE_GUEST_MTRR in self.rules

    def check_vm(self, vm: VmConfig) -> None:
        """Refuse quirk settings this era (or this CPU under it) cannot have."""
        if not vm.quirk_ignore_guest_pat:
            raise MemTypeError(
                "vm.quirk_ignore_guest_pat",
                f"KVM_X86_QUIRK_IGNORE_GUEST_PAT cannot be turned off in era {self.id}: the quirk only exists from 6.16 (c9c1e20b4c7d)",
                "KVM_CAP_DISABLE_QUIRKS2 refuses unknown quirk bits (EINVAL)",
            )

    def mt_mask(self, f: Fault) -> MaskResult:
        return run_rules(self.rules, f)

    def zap(self, z: ZapInput) -> ZapDecision:
        return self.zap_policy(z)


# Commits cited by more than one era.
C_CD_FIX = Commit("b18d5431acc7", "KVM: x86: fix CR0.CD virtualization")
C_QUIRK = Commit("fb279950ba02", "KVM: vmx: obey KVM_QUIRK_CD_NW_CLEARED")
C_HELPERS = Commit("1affe455d66d", "KVM: x86/mmu: Add helpers to return if KVM honors guest MTRRs")
C_CD_ZAP = Commit("7a18c7c2b69a", "KVM: x86/mmu: Zap SPTEs when CR0.CD is toggled iff guest MTRRs are honored")
C_MTRR_ZAP = Commit("9a3768191d95", "KVM: x86/mmu: Zap SPTEs on MTRR update iff guest MTRRs are honored")
C_DMA_ZAP = Commit("362ff6dca541", "KVM: x86/mmu: Zap KVM TDP when noncoherent DMA assignment starts/stops")
C_DROP_IPAT = Commit("c9f65a3f2d92", "KVM: VMX: drop IPAT in memtype when CD=1 for KVM_X86_QUIRK_CD_NW_CLEARED")
C_NO_MTRR = Commit("0a7b73559b39", "KVM: VMX: Drop support for forcing UC memory when guest CR0.CD=1 / guest MTRR memtypes")
C_NO_CD = Commit("e1548088ff54", "KVM: x86: Drop support for emulating CR0.CD via EPT memtype")
C_SELFSNOOP = Commit("377b2f359d1f", "KVM: VMX: Always honor guest PAT on CPUs that support self-snoop")
C_REVERT = Commit("9d70f3fec144", "Revert \"KVM: VMX: Always honor guest PAT on CPUs that support self-snoop\"")
C_IGNORE_PAT = Commit("c9c1e20b4c7d", "KVM: x86: Introduce Intel specific quirk KVM_X86_QUIRK_IGNORE_GUEST_PAT")
C_HUGE_IFF = Commit("(L:20220715230016.3762909-5-seanjc)", "KVM: x86/mmu: Restrict mapping level based on guest MTRR iff they're used (6.0)")

UC, WB = MemType.UC, MemType.WB

# Rules shared by several eras, each as its kernel code reads.
RULE_MMIO = Rule(
    "mmio", "vmx_get_mt_mask", "is_mmio (kvm_is_mmio_pfn: host MMIO pfn)",
    lambda f: f.is_mmio, lambda f: (UC, False, "UC, IPAT clear: guest PAT can still make it WC"),
)


def rule_no_ncdma(condition: str = "!kvm_arch_has_noncoherent_dma(kvm)", commit: str = "") -> Rule:
    """No device can observe the CPU cache: force WB and ignore guest PAT."""
    return Rule("no-ncdma", "vmx_get_mt_mask", condition, lambda f: not f.noncoherent_dma,
                lambda f: (WB, True, "WB|IPAT: no non-coherent DMA, force WB"), commit)


RULE_GUEST_MTRR = Rule(
    "mtrr", "kvm_mtrr_get_guest_memory_type", "otherwise: the guest MTRR type, IPAT clear",
    always, lambda f: (f.guest_mtrr, False, f"guest MTRR type {f.guest_mtrr.label}, PAT combines"),
)


def no_zap_for_pat(t: ZapTrail) -> None:
    """No era zaps on a guest PAT write: PAT is not in EPT; the CPU reads it from the VMCS."""
    t.check("pat", "kvm_set_msr_common", "guest PAT lives in the VMCS, not in EPT", True, "no zap")


def cd_toggle_zap_all(z: ZapInput, t: ZapTrail, zap_if: bool, condition: str, commit: str = "") -> None:
    """kvm_post_set_cr0() (kvm_set_cr0() in 4.x): zap everything on a CR0.CD toggle if `zap_if`."""
    if t.check("toggle", "kvm_post_set_cr0", "CR0.CD changed", z.cd_toggled):
        if t.check("zap", "kvm_post_set_cr0", condition, zap_if, "zap everything", commit):
            t.zap(z.everything)
