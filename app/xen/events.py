"""What Xen does to EPT entries when the guest or the toolstack changes state.

Xen does not zap EPT entries for memory-type changes. `memory_type_changed(d)`
(xen/arch/x86/hvm/mtrr.c:789 at RELEASE-4.22.0, :779 at RELEASE-4.19.0) calls
`p2m_memory_type_changed()` -> `ept_memory_type_changed()` (p2m-ept.c:1228), which runs
`ept_invalidate_emt_subtree()` over the *root* table only: every present entry there gets
EMT 7 (MTRR_NUM_TYPES, reserved, so the next walk through it is an EPT misconfiguration).
`resolve_misconfig()` (p2m-ept.c:623), from the misconfiguration exit or from the next
ept_set_entry() on that gfn, pushes the mark one level down per intermediate entry and
recomputes with epte_get_entry_emt() a whole 4K leaf table (512 entries) or one superpage
(splitting it when the answer is -1). Hence: "invalidated, recomputed on next access",
for the whole domain, at the cost of one exit per 2 MiB touched.

Who calls memory_type_changed(), and when it does anything:

- guest MTRR writes (hvm/mtrr.c): MTRRdefType when E, FE or the default type change
  (:406); a fixed-range MSR when its value changes while E and FE are set (:429); a
  PHYSBASE/PHYSMASK when its value changes while E is set (:473).
- iomem/ioport grants and revocations (xen/include/xen/iocap.h:18/:35 and the ioport twins
  in asm/iocap.h), only for a domain without an IOMMU whose cache-flush permission flips.
- its own gate: 4.19-4.20 `(is_iommu_enabled(d) || cache_flush_permitted(d))`; 4.21 on
  `cache_flush_permitted(d)` only (2d779cabdd).

Guest PAT writes and CR0.CD toggles never touch EPT (hvm_set_guest_pat(), vmx_handle_cd()).
Assigning a PCI device needs an IOMMU-enabled domain, whose EMT already follows the MTRR
path, and calls no memory_type_changed().
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..kvm.era import Step
from ..kvm.scenario import CR0_CD, MTRR_WRITE, PAT_WRITE, Event, VcpuState, VmConfig, apply_event
from ..x86.memtype import MemTypeError, located
from ..x86.mtrr import FIXED_MSR_SLOT, MSR_MTRR_DEF_TYPE, MtrrState, var_msr_index
from .cd import handle_cd_applies
from .emt import EmtResult, entry_emt
from .facts import Domain, Page
from .versions import XenVersion

PASSTHROUGH_ATTACH = "passthrough_attach"
PASSTHROUGH_DETACH = "passthrough_detach"
GUEST_EVENTS = (MTRR_WRITE, PAT_WRITE, CR0_CD)
"""Guest events, as app.kvm.scenario.Event (the same kinds and fields as for KVM)."""
EVENT_KINDS = (*GUEST_EVENTS, PASSTHROUGH_ATTACH, PASSTHROUGH_DETACH)
IO = "io"
"""The domain's first iomem/ioport range granted, or its last one revoked."""
PCI = "pci"
"""A PCI device assigned or deassigned."""

INVALIDATED = "invalidated, recomputed on next access"
NO_CHANGE = "no EPT change"

OK = "ok"
STALE = "stale"
EXCESS = "excess"
"""Verdicts for the page asked about: the EMT changes and was not invalidated (stale), or
was invalidated although it does not change (excess: one misconfiguration exit wasted)."""


@dataclass(frozen=True, slots=True)
class Passthrough:
    """A toolstack event: an I/O resource or PCI device given to or taken from the domain."""

    attach: bool
    resource: str = IO

    @property
    def kind(self) -> str:
        return PASSTHROUGH_ATTACH if self.attach else PASSTHROUGH_DETACH

    def describe(self) -> str:
        what = "an iomem/ioport range" if self.resource == IO else "a PCI device"
        return f"{what} {'given to' if self.attach else 'taken from'} the domain"


@dataclass(frozen=True, slots=True)
class EventAnswer:
    kind: str
    invalidated: bool
    text: str
    scope: str
    flush: bool
    path: tuple[Step, ...]
    before: EmtResult
    after: EmtResult
    verdict: str


SCOPE = ("whole domain: root-level entries marked EMT 7 (ept_invalidate_emt_subtree); "
         "resolve_misconfig() recomputes a 4K leaf table or a superpage per exit")


def memory_type_changed(v: XenVersion, d: Domain) -> tuple[bool, bool, list[Step]]:
    """(EMT invalidation done, cache flush done, steps) for memory_type_changed(d)."""
    line = "hvm/mtrr.c:" + ("779" if v.mtc_gate_iommu else "789")
    cfp = d.cache_flush_permitted(v)
    if v.mtc_gate_iommu:
        gate = (d.iommu_enabled or cfp) and d.has_vcpu
        cond = "(is_iommu_enabled(d) || cache_flush_permitted(d)) && d->vcpu[0]"
    else:
        gate, cond = cfp and d.has_vcpu, "cache_flush_permitted(d) && d->vcpu[0] (2d779cabdd)"
    steps = [Step("mtc_gate", f"memory_type_changed ({line})", cond, gate,
                  "p2m_memory_type_changed(): mark EMT 7" if gate else "")]
    if not gate:
        return False, False, steps
    if v.flush_needs_no_selfsnoop:
        flush = d.running and (not d.self_snoop or (d.iommu_enabled and not d.iommu_snoop))
        fcond = "creation_finished && (!self-snoop || (IOMMU && !iommu_snoop))"
    else:
        flush, fcond = True, "always, after the EMT marking"
    steps.append(Step("flush", f"memory_type_changed ({line})", fcond, flush,
                      "flush_all(): write back and invalidate every CPU's caches" if flush else ""))
    return True, flush, steps


def _mtrr_write(before: VcpuState, ev: Event, maxphyaddr: int) -> tuple[VcpuState, bool, list[Step]]:
    with located("event"):  # apply_event names the event's members; the event is ours to name
        vcpu_after = apply_event(VmConfig(maxphyaddr=maxphyaddr), before, ev)[1]
    after: MtrrState = vcpu_after.mtrr
    assert ev.msr is not None  # apply_event refused it otherwise
    before_m = before.mtrr
    if ev.msr == MSR_MTRR_DEF_TYPE:
        fn, line = "mtrr_def_type_msr_set", "hvm/mtrr.c:380"
        old = (before_m.enabled, before_m.fixed_enabled, before_m.default_type)
        calls = old != (after.enabled, after.fixed_enabled, after.default_type)
        cond = "E, FE or the default type changed"
    elif ev.msr in FIXED_MSR_SLOT:
        fn, line = "mtrr_fix_range_msr_set", "hvm/mtrr.c:412"
        slot = FIXED_MSR_SLOT[ev.msr]
        calls = before_m.fixed[slot] != ev.value and after.enabled and after.fixed_enabled
        cond = "value changed && E && FE"
    else:
        assert var_msr_index(ev.msr) is not None  # write_msr refused anything else
        fn, line = "mtrr_var_range_msr_set", "hvm/mtrr.c:435"
        calls = before_m.read_msr(ev.msr) != ev.value and after.enabled
        cond = "value changed && E"
    step = Step("mtrr_msr", f"{fn} ({line})", cond, calls, "memory_type_changed(d)" if calls else "")
    return vcpu_after, calls, [step]


def _io_change(v: XenVersion, d: Domain, ev: Passthrough) -> tuple[Domain, bool, list[Step]]:
    attach = ev.attach
    if ev.resource == PCI:
        if not d.iommu_enabled:
            raise MemTypeError(("event", "resource"), "PCI device assignment to a domain without an IOMMU",
                               "device assignment needs a domain created with XEN_DOMCTL_CDF_iommu")
        if not attach and not d.pci_devices:
            raise MemTypeError(("event", "resource"), "no PCI device to deassign", "domain.pci_devices is false")
        after = replace(d, pci_devices=attach or d.pci_devices)
        step = Step("assign", "assign_device (drivers/passthrough/pci.c)", "calls memory_type_changed()", False,
                    "")
        return after, False, [step]
    if ev.resource != IO:
        raise MemTypeError(("event", "resource"), f"{ev.resource!r}", "resource is 'io' (iomem/ioport range) or 'pci'")
    if attach:
        after = replace(d, io_resources=True)
        calls = not d.iommu_enabled and not d.cache_flush_permitted(v)
        fn = "iomem_permit_access (xen/iocap.h:18)"
        cond = "!is_iommu_enabled(d) && !cache_flush_permitted(d) before the grant"
    else:
        if not d.io_resources:
            raise MemTypeError(("event", "resource"), "no iomem/ioport range to revoke", "domain.io_resources is false")
        after = replace(d, io_resources=False)
        calls = not d.iommu_enabled and not after.cache_flush_permitted(v)
        fn = "iomem_deny_access (xen/iocap.h:35)"
        cond = "!is_iommu_enabled(d) && !cache_flush_permitted(d) after the revocation"
    return after, calls, [Step("iocap", fn, cond, calls, "memory_type_changed(d)" if calls else "")]


@dataclass(frozen=True, slots=True)
class EventEffect:
    """What an event does to the domain as a whole (no page involved): the state after it,
    whether memory_type_changed() marked the EPT (EMT 7 at the root), the cache flush, and
    the code path."""

    kind: str
    domain_after: Domain
    vcpu_after: VcpuState
    invalidated: bool
    flush: bool
    path: tuple[Step, ...]

    @property
    def text(self) -> str:
        return INVALIDATED if self.invalidated else NO_CHANGE

    @property
    def scope(self) -> str:
        return SCOPE if self.invalidated else ""


def event_effect(v: XenVersion, d: Domain, vcpu: VcpuState, ev: Event | Passthrough,
                 maxphyaddr: int = 46) -> EventEffect:
    """The domain-wide part of event_answer(): validated inputs, the state after `ev` and what
    Xen runs for it (hvm/mtrr.c MSR handlers, iocap.h, hvm_set_guest_pat, hvm_set_cr0)."""
    if ev.kind not in EVENT_KINDS:
        raise MemTypeError(("event", "kind"), f"{ev.kind!r}", f"Xen events: {', '.join(EVENT_KINDS)}")
    d.validate(v)
    vcpu.validate(VmConfig(maxphyaddr=maxphyaddr))
    d_after, vcpu_after = d, vcpu
    calls = False
    steps: list[Step] = []
    if isinstance(ev, Passthrough):
        d_after, calls, steps = _io_change(v, d, ev)
        d_after.validate(v, "domain (after the event)")
    elif ev.kind == MTRR_WRITE:
        if not d.has_vcpu:
            raise MemTypeError(("domain", "has_vcpu"), "an MTRR write without a vCPU", "a vCPU writes its own MTRRs")
        vcpu_after, calls, steps = _mtrr_write(vcpu, ev, maxphyaddr)
    elif ev.kind == PAT_WRITE:
        with located("event"):
            vcpu_after = apply_event(VmConfig(maxphyaddr=maxphyaddr), vcpu, ev)[1]
        no_fill = vcpu.cr0_cd and handle_cd_applies(d)
        steps = [Step("pat", "hvm_set_guest_pat (hvm.c:333)", "guest PAT lives in GUEST_PAT (VMCS), not in EPT", True,
                      "saved in pat_cr, loaded at CR0.CD=0 (no-fill)" if no_fill else "vmx_set_guest_pat(): GUEST_PAT")]
    else:
        with located("event"):
            vcpu_after = apply_event(VmConfig(maxphyaddr=maxphyaddr), vcpu, ev)[1]
        applies = handle_cd_applies(d)
        steps = [Step("handle_cd", "hvm_set_cr0 (hvm.c:2388)",
                      "CD toggled && IOMMU && (iomem || ioports || PCI devices)",
                      applies and bool(ev.value) != vcpu.cr0_cd,
                      "vmx_handle_cd(): PAT swap, no EPT change" if applies else ""),
                 Step("emt", "epte_get_entry_emt", "reads CR0.CD", False, "")]
    invalidated, flush = False, False
    if calls:
        invalidated, flush, more = memory_type_changed(v, d_after)
        steps += more
    return EventEffect(ev.kind, d_after, vcpu_after, invalidated, flush, tuple(steps))


def verdict(changes: bool, invalidated: bool) -> str:
    """stale: the EMT changes and nothing was invalidated; excess: invalidated, unchanged."""
    return STALE if changes and not invalidated else EXCESS if invalidated and not changes else OK


def event_answer(
    v: XenVersion, d: Domain, page: Page, vcpu: VcpuState, ev: Event | Passthrough, maxphyaddr: int = 46
) -> EventAnswer:
    """What `ev` does to EPT, and whether the page's entry is left stale.

    `vcpu` is the vCPU that performs a guest event (its MTRRs are the ones Xen reads);
    VcpuState's defaults are hvm_vcpu_cacheattr_init()'s: MTRRs zero (disabled), PAT at
    its power-on value.
    """
    if ev.kind not in EVENT_KINDS:
        raise MemTypeError(("event", "kind"), f"{ev.kind!r}", f"Xen events: {', '.join(EVENT_KINDS)}")
    d.validate(v)
    page.validate()
    fx = event_effect(v, d, vcpu, ev, maxphyaddr)
    before = entry_emt(d, page, vcpu.mtrr if d.has_vcpu else None, v)
    after = entry_emt(fx.domain_after, page, fx.vcpu_after.mtrr if d.has_vcpu else None, v)
    return EventAnswer(ev.kind, fx.invalidated, fx.text, fx.scope, fx.flush, fx.path, before, after,
                       verdict(before.key != after.key, fx.invalidated))
