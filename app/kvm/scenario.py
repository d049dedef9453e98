"""The inputs of a question: a VM, one vCPU's state, the access, and events on them.

Plain frozen dataclasses; the API layer converts JSON into these and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, TypeAlias

from ..frozen import maker
from ..x86.guest import check_cr0
from ..x86.memtype import LocLike, MemTypeError, as_loc
from ..x86.mtrr import (
    FIXED_MSRS,
    MSR_MTRR_DEF_TYPE,
    MSR_MTRRCAP,
    MtrrState,
    is_mtrr_msr,
    msr_name,
)
from ..x86.pat import MSR_IA32_PAT, PAT_POWER_ON, Pat
from .host_page import NEWEST, RANGE_KIND_PAGE, HostPage, kvm_is_mmio_pfn
from .host_page import PRESETS as HOST_PAGES
from .vm_kinds import VENDOR_INTEL, VENDORS, VM_TYPE_DEFAULT, VM_TYPE_TDX, VM_TYPES

RAM = "ram"
MMIO = "mmio"


@dataclass(frozen=True, slots=True)
class MemRange:
    """A guest-physical range backed by a memslot: host RAM, or host MMIO (a device BAR).

    `host_page` (optional) says what the host pages behind it are (app.kvm.host_page), so
    resolve can follow kvm_is_mmio_pfn() per kernel version; `kind` is then the newest
    kernels' answer, which the map, zap and replay views use.
    """

    start: int
    end: int
    kind: str = RAM
    label: str = ""
    host_page: HostPage | None = None


DEFAULT_MEMORY_MAP: tuple[MemRange, ...] = (
    MemRange(0x0, 0xA0000, RAM, "low RAM"),
    MemRange(0xA0000, 0xC0000, RAM, "legacy VGA window, host 0xa0000 (reserved, ISA: WB)",
             HOST_PAGES["vga_dev_mem"].page),
    MemRange(0xC0000, 0x100000, RAM, "option ROMs and BIOS (RAM-backed)"),
    MemRange(0x100000, 0x80000000, RAM, "RAM below the 32-bit PCI hole"),
    MemRange(0xFD000000, 0xFE000000, RAM, "bochs-display VRAM BAR (host RAM, so not is_mmio)"),
    MemRange(0x100000000, 0x180000000, RAM, "RAM above 4 GiB"),
    MemRange(0x800000000, 0x810000000, MMIO, "assigned GPU BAR in the 64-bit PCI hole"),
)
"""A q35-like 4 GiB guest with one assigned GPU: what `memory_map` defaults to.

Emulated MMIO (IOAPIC, LAPIC) has no memslot and so no EPT leaf; only host-MMIO memslots
(assigned device BARs) get `is_mmio` leaves. QEMU's VGA/bochs VRAM is host RAM. The legacy
VGA window is the host's own 0xa0000-0xbffff mapped in (dosemu2-style, from /dev/mem):
reserved pages with a struct page in the PAT-untracked ISA range, so kvm_is_mmio_pfn()
calls them MMIO only up to 4.15 (app.kvm.host_page); its kind is the 4.16+ answer, RAM.
"""


def lookup_range(memory_map: tuple[MemRange, ...], gpa: int) -> MemRange | None:
    for r in memory_map:
        if r.start <= gpa < r.end:
            return r
    return None


def check_memory_map(memory_map: tuple[MemRange, ...], maxphyaddr: int, field: LocLike = "memory_map") -> None:
    if not memory_map:
        raise MemTypeError(field, "the memory map is empty", "a VM needs at least one memslot")
    prev_end = -1
    for i, r in sorted(enumerate(memory_map), key=lambda ir: ir[1].start):
        f = (*as_loc(field), i)
        if r.kind not in (RAM, MMIO):
            raise MemTypeError((*f, "kind"), f"kind {r.kind!r} is neither 'ram' nor 'mmio'",
                               "memory map ranges are RAM or MMIO memslots")
        if r.start % 0x1000 or r.end % 0x1000 or r.start >= r.end:
            raise MemTypeError(f, f"[{r.start:#x}, {r.end:#x}) is not a non-empty 4 KiB aligned range",
                               "memslots are page granular")
        if r.end > 1 << maxphyaddr:
            raise MemTypeError((*f, "end"), f"{r.end:#x} is above 2^MAXPHYADDR", f"MAXPHYADDR={maxphyaddr}")
        if r.host_page is not None:
            newest = MMIO if kvm_is_mmio_pfn(r.host_page.validate((*f, "host_page")), NEWEST).is_mmio else RAM
            if r.kind != newest:
                raise MemTypeError((*f, "kind"),
                                   f"kind {r.kind!r} disagrees with its host page ({newest} in the newest kernels)",
                                   "a range with a host page has the newest kernels' kvm_is_mmio_pfn() answer "
                                   "as its kind")
        if r.start < prev_end:
            raise MemTypeError(f, f"[{r.start:#x}, {r.end:#x}) overlaps another range", "memslots do not overlap")
        prev_end = r.end


MAXPHYADDR_MIN, MAXPHYADDR_MAX = 36, 52
"""CPUID.80000008H:EAX[7:0], the guest's physical-address width, on Intel 64."""


def knob(default: Any, **row: Any) -> Any:
    """A VmConfig field declared with its knob row: the names the input has outside the
    core (API member `name` if not the field's, permalink parameter and short code, CLI
    flag, page control and label, help; app/knobs.py makes its `Knob` from `row`). Inert
    data for the shells: no rule here reads it."""
    return field(default=default, metadata={"knob": row})


_MAXPHY = f"{MAXPHYADDR_MIN}..{MAXPHYADDR_MAX}"


@dataclass(frozen=True, slots=True, kw_only=True)
class VmConfig:
    """Per-VM facts KVM consults. Defaults: what a stock QEMU VM on a recent Intel CPU has.

    Each field carries its knob row (`knob`): how the API, permalinks, the CLI and the page
    name it. A new VM input is one field here plus the rule that reads it.
    """

    noncoherent_dma: bool = knob(
        False, param="ncdma", short="n", cli="--ncdma", kind="bool", control="ncdma",
        label="non-coherent DMA (nc-DMA)", abbr="nc-DMA", key="n",
        help="VM has non-coherent DMA (kvm_arch_has_noncoherent_dma)")
    quirk_cd_nw_cleared: bool = knob(
        True, param="cdnw_quirk", short="q", cli="--cdnw-quirk", kind="bool", control="cdnw_quirk",
        label="quirk CD_NW_CLEARED", wide=True, key="q", help="KVM_X86_QUIRK_CD_NW_CLEARED on")
    quirk_ignore_guest_pat: bool = knob(
        True, param="pat_quirk", short="i", cli="--pat-quirk", kind="bool", control="pat_quirk",
        label="quirk IGNORE_GUEST_PAT", wide=True,
        help="KVM_X86_QUIRK_IGNORE_GUEST_PAT on (the quirk exists from 6.16; off before it is refused)")
    self_snoop: bool = knob(
        True, param="selfsnoop", short="o", cli="--selfsnoop", kind="bool", control="selfsnoop",
        label="self-snoop", help="host CPU has X86_FEATURE_SELFSNOOP")
    guest_has_mtrr: bool = knob(
        True, param="guest_mtrr", short="g", cli="--guest-mtrr", kind="bool", control="guest_mtrr",
        label="guest has MTRRs (CPUID)", wide=True, help="guest CPUID reports MTRRs")
    maxphyaddr: int = knob(
        46, param="maxphyaddr", short="x", cli="--maxphyaddr", kind="dec", control="maxphyaddr",
        label="MAXPHYADDR", help="guest MAXPHYADDR", values=_MAXPHY,
        # any 1-3 digit number reads: the range is a rule, checked by validate() below
        bounds=(0, 999), rule=f"MAXPHYADDR is {_MAXPHY}", page_range=(MAXPHYADDR_MIN, MAXPHYADDR_MAX))
    memory_map: tuple[MemRange, ...] = knob(
        DEFAULT_MEMORY_MAP, param="map", short="m", cli="--map", label="memory map",
        help="memory map, comma-separated start-end:kind (kind ram or mmio)",
        values="e.g. 0x0-0x80000000:ram,0xfd000000-0xfe000000:mmio")
    vendor: str = knob(
        VENDOR_INTEL, param="vendor", short="y", cli="--vendor", control="vendor", label="CPU vendor",
        help="the host CPU's KVM module: intel (EPT) or amd (SVM with NPT, app.kvm.svm)",
        choices=VENDORS, echo_default=False)
    """`vm.vendor` (app.kvm.vm_kinds.VENDORS): kvm_intel (EPT) or kvm_amd (NPT, app.kvm.svm)."""
    vm_type: str = knob(
        VM_TYPE_DEFAULT, name="type", param="vmtype", short="T", cli="--vmtype", control="vmtype",
        label="VM type",
        help="the KVM_CREATE_VM type: default, or tdx (Intel, 6.16 and later; app.kvm.tdx)",
        choices=VM_TYPES, echo_default=False)
    """`vm.type` (app.kvm.vm_kinds.VM_TYPES): the KVM_CREATE_VM type; "tdx" is app.kvm.tdx."""

    def validate(self) -> VmConfig:
        if self.vendor not in VENDORS:
            raise MemTypeError(("vm", "vendor"), f"unknown vendor {self.vendor!r}", f"one of {', '.join(VENDORS)}")
        if self.vm_type not in VM_TYPES:
            raise MemTypeError(("vm", "type"), f"unknown VM type {self.vm_type!r}", f"one of {', '.join(VM_TYPES)}")
        if not MAXPHYADDR_MIN <= self.maxphyaddr <= MAXPHYADDR_MAX:
            raise MemTypeError(("vm", "maxphyaddr"),
                               f"MAXPHYADDR {self.maxphyaddr} is outside {MAXPHYADDR_MIN}..{MAXPHYADDR_MAX}",
                               f"CPUID.80000008H:EAX[7:0] is {MAXPHYADDR_MIN}..{MAXPHYADDR_MAX} on Intel 64")
        check_memory_map(self.memory_map, self.maxphyaddr)
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class VcpuState:
    """One vCPU's guest-visible state that memory typing depends on (rows of app/knobs.py)."""

    cr0_cd: bool = False
    cr0_nw: bool = False
    cr0_pg: bool = True
    pat: Pat = field(default_factory=lambda: Pat.from_msr(PAT_POWER_ON))
    mtrr: MtrrState = field(default_factory=MtrrState)

    def validate(self, vm: VmConfig, field: LocLike = "vcpu") -> VcpuState:
        check_cr0(self.cr0_cd, self.cr0_nw, field)
        self.mtrr.validate(vm.maxphyaddr, (*as_loc(field), "mtrr"))
        return self


def check_private(private: bool | None, vm: VmConfig, field: str = "private") -> None:
    """Only a TD has private GPAs (the Secure EPT the TDX module builds): saying private or
    shared for any other VM (a Xen domain too: its `vm` is no TD) is refused rather than
    ignored. `field` the input that says it: an address's `private`, or the map's
    `private_ranges` (POST /api/v1/map, POST /api/v1/permalink, a link's)."""
    if private is not None and vm.vm_type != VM_TYPE_TDX:
        raise MemTypeError(field, f"{field} given for a VM that is not a TD",
                           "private GPAs (Secure EPT) exist only with vm.type tdx")


@dataclass(frozen=True, slots=True)
class Access:
    """The address under study; `mmio` None means: follow `host_page`, else the memory map
    (RAM if unmapped). `mmio` is the overriding shorthand for is_mmio itself."""

    gpa: int = 0
    mmio: bool | None = None
    host_page: HostPage | None = None
    private: bool | None = None
    """A TD's GPA is private (the Secure EPT, app.kvm.tdx); None: not said (shared). Only a
    TD has private GPAs: the API refuses it for any other VM (app/api/systems.py)."""

    def validate(self, vm: VmConfig) -> Access:
        if not 0 <= self.gpa < 1 << vm.maxphyaddr:
            raise MemTypeError("gpa", f"address {self.gpa:#x} is at or above 2^MAXPHYADDR (MAXPHYADDR={vm.maxphyaddr})",
                               "guest-physical addresses are below 2^MAXPHYADDR")
        if self.host_page is not None:
            if self.mmio is not None:
                raise MemTypeError("host_page", "given together with mmio",
                                   "mmio forces is_mmio; host_page lets kvm_is_mmio_pfn() decide: give one")
            self.host_page.validate()
        check_private(self.private, vm)
        return self

    def host_page_for(self, vm: VmConfig) -> tuple[HostPage | None, str]:
        """The host page kvm_is_mmio_pfn() looks at, and where it came from (None: mmio forced)."""
        if self.mmio is not None:
            return None, "given (mmio)"
        if self.host_page is not None:
            preset = f" {self.host_page.preset}" if self.host_page.preset else ""
            return self.host_page, f"given (host_page{preset})"
        r = lookup_range(vm.memory_map, self.gpa)
        if r is None:
            return HOST_PAGES["guest_ram"].page, "not in the memory map: treated as RAM"
        if r.host_page is not None:
            return r.host_page, f"memory map: {r.label or r.kind}"
        name = RANGE_KIND_PAGE[r.kind]
        return HOST_PAGES[name].page, f"memory map: {r.kind} ({r.label}), read as {name}" if r.label \
            else f"memory map: {r.kind}, read as {name}"

    def is_mmio(self, vm: VmConfig) -> bool:
        """The newest kernels' answer (resolve follows the version: app.kvm.resolve)."""
        if self.mmio is not None:
            return self.mmio
        if self.host_page is not None:
            return kvm_is_mmio_pfn(self.host_page, NEWEST).is_mmio
        r = lookup_range(vm.memory_map, self.gpa)
        return r is not None and r.kind == MMIO


# -- events ------------------------------------------------------------------------------
#
# One small frozen dataclass per kind, mirroring the API's discriminated union
# (app/api/schemas.py EventIn: the same field names, `kind` the discriminator). `Event` is
# their union; code dispatches on it with `match`. Every class answers `kind`, `value`,
# `msr` and `cr0_nw` (None where the kind has no such field), as the API's EventOut reads.

CR0_CD = "cr0_cd"
MTRR_WRITE = "mtrr_write"
NONCOHERENT_DMA = "noncoherent_dma"
PAT_WRITE = "pat_write"


@dataclass(frozen=True, slots=True)
class Cr0Write:
    """MOV to CR0 setting CD to `value`; `cr0_nw` the NW written with it (None: unchanged)."""

    value: bool
    cr0_nw: bool | None = None
    kind: ClassVar[str] = CR0_CD
    msr: ClassVar[None] = None

    def describe(self) -> str:
        return f"CR0.CD := {int(bool(self.value))}"


@dataclass(frozen=True, slots=True)
class MtrrWrite:
    """WRMSR to an MTRR MSR (or the read-only MTRRcap, which apply_event refuses)."""

    msr: int
    value: int
    kind: ClassVar[str] = MTRR_WRITE
    cr0_nw: ClassVar[None] = None

    def describe(self) -> str:
        return f"WRMSR {msr_name(self.msr)} ({self.msr:#x}) := {int(self.value):#x}"


@dataclass(frozen=True, slots=True)
class NoncoherentDma:
    """The VM's non-coherent DMA counter leaves 0 (`value` True: 0->1) or returns to it."""

    value: bool
    kind: ClassVar[str] = NONCOHERENT_DMA
    msr: ClassVar[None] = None
    cr0_nw: ClassVar[None] = None

    def describe(self) -> str:
        return "non-coherent DMA " + ("starts (counter 0->1)" if self.value else "stops (counter 1->0)")


@dataclass(frozen=True, slots=True)
class PatWrite:
    """WRMSR IA32_PAT := `value`."""

    value: int
    kind: ClassVar[str] = PAT_WRITE
    msr: ClassVar[None] = None
    cr0_nw: ClassVar[None] = None

    def describe(self) -> str:
        return f"WRMSR IA32_PAT := {int(self.value):#018x}"


Event: TypeAlias = Cr0Write | MtrrWrite | NoncoherentDma | PatWrite
"""A guest or VMM action on one vCPU (or, for non-coherent DMA, on the VM)."""

EVENT_TYPES: dict[str, type[Cr0Write] | type[MtrrWrite] | type[NoncoherentDma] | type[PatWrite]] = {
    c.kind: c for c in (Cr0Write, MtrrWrite, NoncoherentDma, PatWrite)
}
EVENT_KINDS = tuple(EVENT_TYPES)


_VCPU_FIELDS = ("cr0_cd", "cr0_nw", "cr0_pg", "pat", "mtrr")
assert tuple(f.name for f in fields(VcpuState)) == _VCPU_FIELDS, "apply_event passes every VcpuState field in order"
_vcpu_state = maker(VcpuState)
"""`VcpuState(...)` with every field given in `_VCPU_FIELDS` order, at half what its
keyword `__init__` costs (app/frozen.py): for `apply_event`, which a replay calls once per
new transition."""


def apply_event(vm: VmConfig, vcpu: VcpuState, ev: Event) -> tuple[VmConfig, VcpuState]:
    """The state after the event; an event the guest cannot perform raises MemTypeError
    located relative to the event ("value", "msr", ...): the caller names the event.

    The state after is built field by field (`_vcpu_state`, every field of `_VCPU_FIELDS`),
    not by `dataclasses.replace`, which costs several times more, nor by the class's own
    keyword `__init__`, which costs twice as much: a replay makes one per new transition
    (issue 9 §4). What the event does not change is the same object as before (the
    replay's interning relies on that)."""
    match ev:  # (MTRR writes first: most events of a boot or a trace are)
        case MtrrWrite(msr=msr, value=value):
            if msr is None or not (is_mtrr_msr(msr) or msr == MSR_MTRRCAP):
                raise MemTypeError(
                    "msr",
                    ("no MSR given for an mtrr_write event" if msr is None else f"{msr:#x} is not a writable MTRR MSR")
                    + (" (IA32_PAT is 0x277: use a pat_write event)" if msr == MSR_IA32_PAT else ""),
                    "MTRR MSRs: 0x200-0x20f, 0x250, 0x258, 0x259, 0x268-0x26f, 0x2ff",
                )
            mtrr = vcpu.mtrr.write_msr(msr, int(value), vm.maxphyaddr, "value")
            return vm, _vcpu_state(vcpu.cr0_cd, vcpu.cr0_nw, vcpu.cr0_pg, vcpu.pat, mtrr)
        case Cr0Write(value=cd, cr0_nw=nw_given):
            nw = vcpu.cr0_nw if nw_given is None else nw_given
            check_cr0(bool(cd), nw, ())
            return vm, _vcpu_state(bool(cd), nw, vcpu.cr0_pg, vcpu.pat, vcpu.mtrr)
        case NoncoherentDma(value=on):
            return replace(vm, noncoherent_dma=bool(on)), vcpu
        case PatWrite(value=value):
            pat = Pat.from_msr(int(value), "value")
            return vm, _vcpu_state(vcpu.cr0_cd, vcpu.cr0_nw, vcpu.cr0_pg, pat, vcpu.mtrr)
    raise MemTypeError("kind", f"unknown event kind {getattr(ev, 'kind', ev)!r}",
                       f"one of {', '.join(EVENT_KINDS)}")


__all__ = [
    "Access", "CR0_CD", "Cr0Write", "DEFAULT_MEMORY_MAP", "EVENT_KINDS", "EVENT_TYPES", "Event", "FIXED_MSRS",
    "MAXPHYADDR_MAX", "MAXPHYADDR_MIN", "MMIO", "MSR_MTRR_DEF_TYPE", "MTRR_WRITE", "MemRange", "MtrrWrite",
    "NONCOHERENT_DMA", "NoncoherentDma",
    "PAT_WRITE", "PatWrite", "RAM", "VcpuState", "VmConfig", "apply_event", "lookup_range",
]
