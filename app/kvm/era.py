"""What every kernel era module provides, and the one engine that reads it.

An era is data: its `vmx_get_mt_mask()` is an ordered list of `Rule`s read top to bottom
exactly like the kernel's `if` chain (the first whose condition holds gives the memtype),
each naming the `Fault` inputs it reads; its zap policy (`ZapPolicy`) says, per event kind,
what the kernel zaps (`Zaps`: nothing, the written MTRR's range, everything, or series-v3's
fine-grained list) behind which check (`Gate`); its huge-page MTRR check is a list of
(kernels, `Gate`). Traits follow from the data: `reads` / `reads_guest_mtrrs` from the
rules, `quirks` (the KVM_X86_QUIRK_* the era's VMX code honours) from what they read. The
decision path returned to callers lists every check with whether it held, so the page can
light up the branch taken and dim the rest.

The kernel functions each piece models (read in sndrzt/linux-6.8 and KT0511/linux-6.16.1
for the merged code; the series-v3 patches in their posting):

- `Zaps.RANGE`: update_mtrr() (arch/x86/kvm/mtrr.c), called from kvm_mtrr_set_msr();
  its first `return` is the era's gate (6.8: `!kvm_mmu_honors_guest_mtrrs(kvm)`).
- CR0.CD toggles: kvm_post_set_cr0() (arch/x86/kvm/x86.c; kvm_set_cr0() in 4.x), 6.8:
  `(cr0 ^ old_cr0) & X86_CR0_CD && kvm_mmu_honors_guest_mtrrs() && !quirk(CD_NW_CLEARED)`.
- nc-DMA start/stop: kvm_noncoherent_dma_assignment_start_or_stop() (x86.c, from 6.7),
  called by kvm_arch_(un)register_noncoherent_dma() when the counter leaves or reaches 0;
  6.8 gates it on `__kvm_mmu_honors_guest_mtrrs(true)` (EPT on), 6.16.1 on
  `kvm_check_has_quirk(kvm, KVM_X86_QUIRK_IGNORE_GUEST_PAT)`.
- `Gate.NONCOHERENT_DMA`: kvm_arch_has_noncoherent_dma() (x86.c), which with EPT is
  kvm_mmu_honors_guest_mtrrs() (arch/x86/kvm/mmu.h, __kvm_mmu_honors_guest_mtrrs() in
  mmu/mmu.c: `vm_has_noncoherent_dma && shadow_memtype_mask`).
- `Quirk.IGNORE_GUEST_PAT`: vmx_ignore_guest_pat() (arch/x86/kvm/vmx/vmx.c, 6.16.1), and
  vmx_hardware_setup() dropping it from kvm_caps.supported_quirks without
  X86_FEATURE_SELFSNOOP (so KVM_CAP_DISABLE_QUIRKS2 cannot turn it off there).
- Huge pages: kvm_tdp_page_fault() (mmu/mmu.c) limits the level to an MTRR-consistent
  range while guest MTRRs may be used (6.8: `kvm_mmu_honors_guest_mtrrs(vcpu->kvm)`).

A new era is a module with its `Rule`s (each naming what it reads), a `ZapPolicy` and its
`HugePages`, registered in app/kvm/eras.py; tests/test_kvm_era_traits.py then checks it by
trait and refuses it until the zap oracle there has its rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import Enum

from ..x86.memtype import MemType, MemTypeError
from ..x86.mtrr import MSR_MTRR_DEF_TYPE, ONE_MIB
from .mtrr import kvm_disabled_type, update_mtrr_range, var_mtrr_range
from .scenario import (
    EVENT_KINDS,
    EVENT_TYPES,
    Cr0Write,
    Event,
    MtrrWrite,
    NoncoherentDma,
    VcpuState,
    VmConfig,
)
from .step import Step

Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Commit:
    sha: str
    subject: str


@dataclass(frozen=True, slots=True, kw_only=True)
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
    reads: frozenset[str] = frozenset()  # the `Fault` fields `holds` and `result` look at


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
    """One event and the states around it. What every era reads alike (the range an MTRR
    write names) is worked out once per input and kept on it (`_range`, not a field of
    the comparison), so the eras of one replay deciding on one input share it."""

    vm: VmConfig
    vcpu: VcpuState
    vm_after: VmConfig
    vcpu_after: VcpuState
    event: Event
    _range: tuple[Range | None, str] | None = field(default=None, init=False, compare=False, repr=False)
    _bare: tuple[Range | None, str] | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def everything(self) -> Range:
        """kvm_zap_gfn_range(kvm, 0, ~0): everything the guest can address."""
        return (0, 1 << self.vm.maxphyaddr)

    @property
    def written_range(self) -> tuple[Range | None, str]:
        """update_mtrr_range() of an MTRR write, with the state after it (computed once)."""
        r = self._range
        if r is None:
            ev = self.event
            assert isinstance(ev, MtrrWrite)
            r = update_mtrr_range(ev.msr, self.vcpu_after.mtrr, self.vm.maxphyaddr, self.everything)
            object.__setattr__(self, "_range", r)  # a cache: the input itself stays as it was
        return r

    def range_written(self, why: bool) -> tuple[Range | None, str]:
        """`written_range`, or with `why` False the range alone (reason ""), computed once."""
        if why or self._range is not None:
            return self.written_range
        r = self._bare
        if r is None:
            ev = self.event
            assert isinstance(ev, MtrrWrite)
            r = update_mtrr_range(ev.msr, self.vcpu_after.mtrr, self.vm.maxphyaddr, self.everything, why=False)
            object.__setattr__(self, "_bare", r)
        return r

    @property
    def cd_toggled(self) -> bool:
        return isinstance(self.event, Cr0Write) and self.vcpu.cr0_cd != self.vcpu_after.cr0_cd

    @property
    def dma_transition(self) -> bool:
        return isinstance(self.event, NoncoherentDma) and self.vm.noncoherent_dma != self.vm_after.noncoherent_dma


@dataclass(frozen=True, slots=True)
class ZapDecision:
    """The kvm_zap_gfn_range() calls one event makes, and the checks that led there."""

    calls: tuple[Range, ...]
    path: tuple[Step, ...]
    per_memslot: bool = False  # series-v3 patch 11 intersects each call with the memslots


class ZapTrail:
    """Collects the zap checks an era makes, in the kernel's order, for the audit trail."""

    audit = True
    """Whether the checks are kept (and their reasons worth writing): False for `CallTrail`."""
    __slots__ = ("steps", "calls")  # (one trail per decision: the replay makes one per new transition)

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


class CallTrail(ZapTrail):
    """A `ZapTrail` that keeps the calls and drops the checks: the same zap rules run
    (`decide` is the one implementation), only no `Step` is built. The replay engine
    needs the calls alone, for every event of every era (issue 9 §4)."""

    audit = False
    __slots__ = ()

    def check(self, id: str, function: str, condition: str, held: bool,  # noqa: ARG002 (ZapTrail's signature)
              result: str = "", commit: str = "") -> bool:  # noqa: ARG002
        return held


class Quirk(Enum):
    """A KVM_X86_QUIRK_* an era's VMX code can honour, by the `VmConfig`/`Fault` field that holds it."""

    CD_NW_CLEARED = "quirk_cd_nw_cleared"
    """KVM_X86_QUIRK_CD_NW_CLEARED: vmx_get_mt_mask()'s CR0.CD=1 branch (4.2 to 6.10)."""
    IGNORE_GUEST_PAT = "quirk_ignore_guest_pat"
    """KVM_X86_QUIRK_IGNORE_GUEST_PAT (6.16, c9c1e20b4c7d): vmx_ignore_guest_pat()."""


class Gate(Enum):
    """The check over the VM that lets a zap (or the huge-page MTRR check) happen."""

    ALWAYS = "always"
    NEVER = "never"
    NONCOHERENT_DMA = "noncoherent_dma"
    """kvm_arch_has_noncoherent_dma(); with EPT the same as kvm_mmu_honors_guest_mtrrs()."""
    NONCOHERENT_DMA_QUIRK_CD_OFF = "noncoherent_dma_quirk_cd_off"
    """The above && !kvm_check_has_quirk(kvm, KVM_X86_QUIRK_CD_NW_CLEARED)."""
    NO_SELF_SNOOP = "no_self_snoop"
    """kvm_mmu_may_ignore_guest_pat() in 6.11-rc1: EPT on && !X86_FEATURE_SELFSNOOP."""
    QUIRK_IGNORE_GUEST_PAT = "quirk_ignore_guest_pat"
    """kvm_check_has_quirk(kvm, KVM_X86_QUIRK_IGNORE_GUEST_PAT) (6.16)."""

    def holds(self, vm: VmConfig) -> bool:
        return _GATE_TESTS[self._value_](vm)


_GATE_TESTS: dict[str, Callable[[VmConfig], bool]] = {
    Gate.ALWAYS.value: lambda _: True,
    Gate.NEVER.value: lambda _: False,
    Gate.NONCOHERENT_DMA.value: lambda vm: vm.noncoherent_dma,
    Gate.NONCOHERENT_DMA_QUIRK_CD_OFF.value: lambda vm: vm.noncoherent_dma and not vm.quirk_cd_nw_cleared,
    Gate.NO_SELF_SNOOP.value: lambda vm: not vm.self_snoop,
    Gate.QUIRK_IGNORE_GUEST_PAT.value: lambda vm: vm.quirk_ignore_guest_pat,
}
"""What each `Gate` tests, by its value (looked up by value: a `match` over the members
costs a comparison per case, and the replay asks for every new transition)."""
assert set(_GATE_TESTS) == {g.value for g in Gate}, "every Gate has its test"


class Zaps(Enum):
    """What an event's code zaps when its gate lets it."""

    NOTHING = "nothing"
    RANGE = "range"                 # update_mtrr(): the range of the MSR written
    EVERYTHING = "everything"       # kvm_zap_gfn_range(kvm, 0, ~0)
    FINE_GRAINED = "fine-grained"   # series-v3 patch 10: the ranges whose type differs


@dataclass(frozen=True, slots=True)
class EventZap:
    """One era's reaction to one event kind, as its kernel code reads.

    `id`/`function`/`condition`/`commit` are the gate's check (for `Zaps.NOTHING` the one
    check saying why nothing happens); `trigger_commit` cites the change test (CR0.CD
    toggled, counter 0<->1) that comes first; `separate_gate` False: the change test is
    the only check (the zap is ungated). `defer_while_cd` (a commit): MTRR writes made
    while CR0.CD=1 do not zap (series-v3 patch 06); `detail_commit`: the fine-grained
    steps' citation; `per_memslot`: the calls are split by memslot (series-v3 patch 11).
    """

    zaps: Zaps
    id: str
    function: str
    condition: str
    gate: Gate = Gate.ALWAYS
    commit: str = ""
    trigger_commit: str = ""
    separate_gate: bool = True
    defer_while_cd: str = ""
    detail_commit: str = ""
    per_memslot: bool = False


PAT_NO_ZAP = EventZap(Zaps.NOTHING, "pat", "kvm_set_msr_common", "guest PAT lives in the VMCS, not in EPT")
"""No era zaps on a guest PAT write: PAT is not in EPT; the CPU reads it from the VMCS."""


_EVENT_CLASSES = frozenset(EVENT_TYPES.values())


@dataclass(frozen=True, slots=True)
class ZapPolicy:
    """An era's zaps, one `EventZap` per event kind (the API's four)."""

    cr0_cd: EventZap
    mtrr_write: EventZap
    noncoherent_dma: EventZap
    pat_write: EventZap = PAT_NO_ZAP
    memslot_commit: str = ""  # cites the per-memslot split, where an EventZap asks for it

    @property
    def quiet_kinds(self) -> frozenset[str]:
        """The event kinds (`Event.kind`) this policy never zaps on (`Zaps.NOTHING`): their
        decision has no calls whatever the state, so the replay needs no `decide()` for them."""
        return frozenset(k for k in EVENT_KINDS if getattr(self, k).zaps is Zaps.NOTHING)

    def for_event(self, ev: Event) -> EventZap:
        """The `EventZap` of the event's kind: the fields are named by `Event.kind`."""
        if type(ev) not in _EVENT_CLASSES:
            raise AssertionError(ev)
        return getattr(self, ev.kind)


def _mtrr_write(p: EventZap, z: ZapInput, t: ZapTrail, msr: int) -> None:
    """update_mtrr(): the gate, MTRRs disabled, then the range of the MSR written."""
    gate = p.gate.holds(z.vm)
    if p.defer_while_cd and t.check("cd1", p.function, "CR0.CD=1: MTRR-write zaps deferred to the CD toggle",
                                    z.vcpu.cr0_cd and gate, "return: no zap", p.defer_while_cd):
        return
    if t.check(p.id, p.function, p.condition, not gate, "return: no zap", p.commit):
        return
    after = z.vcpu_after.mtrr
    if t.check("disabled", p.function, "MTRRs disabled (E=0) and msr != MTRRdefType",
               not after.enabled and msr != MSR_MTRR_DEF_TYPE, "return: no zap"):
        return
    r, why = z.range_written(t.audit)
    t.check("range", "update_mtrr", "compute the zap range", True, why)
    if r is not None:
        t.zap(r)


def _fine_grained(p: EventZap, z: ZapInput, t: ZapTrail) -> None:
    """Series-v3 patch 10: zap only the ranges whose type differs from the default, when that suffices."""
    mtrr = z.vcpu.mtrr
    cd_type, cd_ipat = cd_memtype(z.vm.quirk_cd_nw_cleared)
    default = mtrr.default_type if mtrr.enabled else kvm_disabled_type(z.vm.guest_has_mtrr)
    fn, c = "kvm_post_set_cr0 -> fine-grained zap (v3 10/11)", p.detail_commit
    if t.check("all", fn, f"CD=1 type {cd_type.label}{'|IPAT' if cd_ipat else ''} != default type {default.label} "
               "or IPAT set", cd_type != default or cd_ipat, "zap everything", c):
        t.zap(z.everything)
        return
    if t.check("disabled", fn, "MTRRs disabled and default equals the CD=1 type", not mtrr.enabled,
               "nothing to zap", c):
        return
    fixed_differs = any(mtrr.fixed_type(i) != default for i in range(88))
    if t.check("fixed", fn, "any of the 88 fixed-range types differs from the default (FE not consulted)",
               fixed_differs, "queue [0, 1 MiB)", c):
        t.zap((0, ONE_MIB))
    for n, pair in enumerate(mtrr.variable):
        if pair.valid and pair.type != default:
            s, e = var_mtrr_range(pair, z.vm.maxphyaddr)
            t.check(f"var{n}", fn, f"valid variable range {n} has type {pair.type} != default", True,
                    f"queue [{s:#x}, {e:#x})", c)
            t.zap((s, e))


def cd_memtype(quirk: bool) -> tuple[MemType, bool]:
    """kvm_mtrr_get_cd_memory_type() (series-v3 patch 08) when MTRRs are honoured: quirk -> WB, else UC|IPAT."""
    return (MemType.WB, False) if quirk else (MemType.UC, True)


def _changed(p: EventZap, z: ZapInput, t: ZapTrail, id: str, function: str, condition: str, changed: bool) -> None:
    """A toggle or counter transition, then the gate, then what the policy zaps."""
    if not p.separate_gate:
        if t.check(id, function, condition, changed, "zap everything", p.trigger_commit):
            t.zap(z.everything)
        return
    if not t.check(id, function, condition, changed, "", p.trigger_commit):
        return
    fine = p.zaps is Zaps.FINE_GRAINED
    if t.check(p.id, p.function, p.condition, p.gate.holds(z.vm), "fine-grained zap" if fine else "zap everything",
               p.commit):
        if fine:
            _fine_grained(p, z, t)
        else:
            t.zap(z.everything)


def decide(policy: ZapPolicy, z: ZapInput, audit: bool = True) -> ZapDecision:
    """The kvm_zap_gfn_range() calls the era's code makes for one event, with its checks
    (`audit` False: the calls alone, `path` empty; see `CallTrail`)."""
    p = policy.for_event(z.event)
    t = ZapTrail() if audit else CallTrail()
    _checks(policy, p, z, t)
    return t.done(p.per_memslot)


def decide_calls(policy: ZapPolicy, z: ZapInput) -> list[Range]:
    """`decide(policy, z, audit=False).calls` as a list, without the decision around it:
    the same checks (`_checks`) on a `CallTrail`. The replay asks this for every new
    transition of every calls rule (issue 9 §4), and needs the calls alone."""
    t = CallTrail()
    _checks(policy, policy.for_event(z.event), z, t)
    return t.calls


def _checks(policy: ZapPolicy, p: EventZap, z: ZapInput, t: ZapTrail) -> None:
    """The checks of `p` (the policy's `EventZap` for the event) in the kernel's order, on `t`."""
    if p.zaps is Zaps.NOTHING:
        t.check(p.id, p.function, p.condition, True, "no zap", p.commit)
    else:
        match z.event:
            case MtrrWrite(msr=msr):
                _mtrr_write(p, z, t, msr)
            case Cr0Write():
                _changed(p, z, t, "toggle", "kvm_post_set_cr0", "CR0.CD changed", z.cd_toggled)
            case NoncoherentDma():
                _changed(p, z, t, "transition", "kvm_noncoherent_dma_assignment_start_or_stop",
                         "counter went 0->1 or 1->0", z.dma_transition)
    if p.per_memslot and t.calls:
        t.check("memslot", "kvm_zap_gfn_range (patch 11)", "split each queued range by memslot", True,
                "only the parts inside memslots are zapped", policy.memslot_commit)


HugePages = tuple[tuple[str, Gate], ...]
"""kvm_tdp_page_fault()'s MTRR consistency check: (kernels, when it applies), oldest first."""

NO_HUGE_PAGE_CHECK: HugePages = (("6.11+", Gate.NEVER),)

FAULT_FIELDS = frozenset(f.name for f in fields(Fault))


@dataclass(frozen=True)
class Era:
    """A kernel era: identity, citations, the mt-mask rules, the zap policy, the huge-page check."""

    id: str
    title: str
    kernels: str
    summary: str
    commits: tuple[Commit, ...]
    rules: tuple[Rule, ...]
    zap_policy: ZapPolicy
    huge_pages: HugePages
    notes: tuple[str, ...] = field(default=())

    @property
    def reads(self) -> frozenset[str]:
        """The `Fault` fields vmx_get_mt_mask() reads in this era (from its rules)."""
        return frozenset().union(*(r.reads for r in self.rules))

    @property
    def reads_guest_mtrrs(self) -> bool:
        """Whether vmx_get_mt_mask() consults kvm_mtrr_get_guest_memory_type() (before 6.11)."""
        return "guest_mtrr" in self.reads

    @property
    def quirks(self) -> frozenset[Quirk]:
        """The KVM_X86_QUIRK_* this era's VMX code honours (those its rules read)."""
        return frozenset(q for q in Quirk if q.value in self.reads)

    def check_vm(self, vm: VmConfig) -> None:
        """Refuse quirk settings this era (or this CPU under it) cannot have."""
        if vm.quirk_ignore_guest_pat:
            return
        if Quirk.IGNORE_GUEST_PAT not in self.quirks:
            raise MemTypeError(
                ("vm", "quirk_ignore_guest_pat"),
                f"KVM_X86_QUIRK_IGNORE_GUEST_PAT cannot be turned off in era {self.id}: "
                "the quirk only exists from 6.16 (c9c1e20b4c7d)",
                "KVM_CAP_DISABLE_QUIRKS2 refuses unknown quirk bits (EINVAL)",
            )
        if not vm.self_snoop:
            raise MemTypeError(
                ("vm", "quirk_ignore_guest_pat"),
                "KVM_X86_QUIRK_IGNORE_GUEST_PAT cannot be turned off on a CPU without self-snoop",
                "VMX drops the quirk from supported_quirks without X86_FEATURE_SELFSNOOP (c9c1e20b4c7d)",
            )

    def huge_page_check(self, vm: VmConfig) -> tuple[tuple[str, bool], ...]:
        """Whether kvm_tdp_page_fault() limits the level by guest MTRRs, per kernel range."""
        return tuple((kernels, gate.holds(vm)) for kernels, gate in self.huge_pages)

    def mt_mask(self, f: Fault) -> MaskResult:
        return run_rules(self.rules, f)

    def zap(self, z: ZapInput, audit: bool = True) -> ZapDecision:
        return decide(self.zap_policy, z, audit)

    def zap_calls(self, z: ZapInput) -> list[Range]:
        """`zap(z, audit=False).calls`, as a list (`decide_calls`)."""
        return decide_calls(self.zap_policy, z)


# Commits cited by more than one era.
C_CD_FIX = Commit("b18d5431acc7", "KVM: x86: fix CR0.CD virtualization")
C_QUIRK = Commit("fb279950ba02", "KVM: vmx: obey KVM_QUIRK_CD_NW_CLEARED")
C_HELPERS = Commit("1affe455d66d", "KVM: x86/mmu: Add helpers to return if KVM honors guest MTRRs")
C_CD_ZAP = Commit("7a18c7c2b69a", "KVM: x86/mmu: Zap SPTEs when CR0.CD is toggled iff guest MTRRs are honored")
C_MTRR_ZAP = Commit("9a3768191d95", "KVM: x86/mmu: Zap SPTEs on MTRR update iff guest MTRRs are honored")
C_DMA_ZAP = Commit("362ff6dca541", "KVM: x86/mmu: Zap KVM TDP when noncoherent DMA assignment starts/stops")
C_DROP_IPAT = Commit("c9f65a3f2d92", "KVM: VMX: drop IPAT in memtype when CD=1 for KVM_X86_QUIRK_CD_NW_CLEARED")
C_NO_MTRR = Commit("0a7b73559b39",
                   "KVM: VMX: Drop support for forcing UC memory when guest CR0.CD=1 / guest MTRR memtypes")
C_NO_CD = Commit("e1548088ff54", "KVM: x86: Drop support for emulating CR0.CD via EPT memtype")
C_SELFSNOOP = Commit("377b2f359d1f", "KVM: VMX: Always honor guest PAT on CPUs that support self-snoop")
C_REVERT = Commit("9d70f3fec144", "Revert \"KVM: VMX: Always honor guest PAT on CPUs that support self-snoop\"")
C_IGNORE_PAT = Commit("c9c1e20b4c7d", "KVM: x86: Introduce Intel specific quirk KVM_X86_QUIRK_IGNORE_GUEST_PAT")
C_HUGE_IFF = Commit("(L:20220715230016.3762909-5-seanjc)",
                    "KVM: x86/mmu: Restrict mapping level based on guest MTRR iff they're used (6.0)")

UC, WB = MemType.UC, MemType.WB

# Rules shared by several eras, each as its kernel code reads.
RULE_MMIO = Rule(
    "mmio", "vmx_get_mt_mask", "is_mmio (kvm_is_mmio_pfn: host MMIO pfn)",
    lambda f: f.is_mmio, lambda _: (UC, False, "UC, IPAT clear: guest PAT can still make it WC"),
    reads=frozenset({"is_mmio"}),
)


def rule_no_ncdma(condition: str = "!kvm_arch_has_noncoherent_dma(kvm)", commit: str = "") -> Rule:
    """No device can observe the CPU cache: force WB and ignore guest PAT."""
    return Rule("no-ncdma", "vmx_get_mt_mask", condition, lambda f: not f.noncoherent_dma,
                lambda _: (WB, True, "WB|IPAT: no non-coherent DMA, force WB"), commit,
                reads=frozenset({"noncoherent_dma"}))


RULE_GUEST_MTRR = Rule(
    "mtrr", "kvm_mtrr_get_guest_memory_type", "otherwise: the guest MTRR type, IPAT clear",
    always, lambda f: (f.guest_mtrr, False, f"guest MTRR type {f.guest_mtrr.label}, PAT combines"),
    reads=frozenset({"guest_mtrr"}),
)

RULE_HONOR_PAT = Rule("honor-pat", "vmx_get_mt_mask", "otherwise: WB, IPAT clear",
                      always, lambda _: (WB, False, "WB without IPAT: guest PAT decides"))
"""6.11 on: the last branch returns WB without IPAT, so the guest's PAT alone decides."""

# Zap checks shared by the eras from 6.11 on, which no longer virtualise guest MTRRs or CR0.CD.
MTRR_NOT_VIRTUALISED = EventZap(Zaps.NOTHING, "mtrr", "kvm_mtrr_set_msr", "MTRRs are only stored and returned",
                                commit=C_NO_MTRR.sha)
CD_NOT_VIRTUALISED = EventZap(Zaps.NOTHING, "cd", "kvm_post_set_cr0", "CR0.CD is not virtualised on VMX",
                              commit=C_NO_CD.sha)


def dma_zap_all(condition: str, gate: Gate, commit: str, trigger_commit: str = "") -> EventZap:
    """kvm_noncoherent_dma_assignment_start_or_stop(): zap everything on 0<->1 if the gate holds."""
    return EventZap(Zaps.EVERYTHING, "zap", "kvm_noncoherent_dma_assignment_start_or_stop", condition, gate,
                    commit, trigger_commit)


def cd_zap_all(condition: str, commit: str = "") -> EventZap:
    """kvm_post_set_cr0() (kvm_set_cr0() in 4.x): zap everything on a CR0.CD toggle while
    KVM honours guest MTRRs and the CD_NW_CLEARED quirk is off."""
    return EventZap(Zaps.EVERYTHING, "zap", "kvm_post_set_cr0", condition, Gate.NONCOHERENT_DMA_QUIRK_CD_OFF, commit)


def mtrr_range_zap(condition: str, commit: str = "", **kw) -> EventZap:
    """update_mtrr(): zap the written MSR's range while KVM honours guest MTRRs (nc-DMA)."""
    return EventZap(Zaps.RANGE, "gate", "update_mtrr", condition, Gate.NONCOHERENT_DMA, commit, **kw)
