"""Xen's answer to guest and toolstack events: EMT-7 invalidation, or nothing.

Tables written from xen/arch/x86/hvm/mtrr.c (mtrr_*_msr_set, memory_type_changed),
xen/include/xen/iocap.h (iomem_permit/deny_access) and hvm.c/vmx.c (PAT, CR0.CD) at
RELEASE-4.19.0 and RELEASE-4.22.0, independently of app/xen/events.py.
"""

import itertools
from dataclasses import dataclass

import pytest

from app.kvm.scenario import Cr0Write, MtrrWrite, NoncoherentDma, PatWrite, VcpuState
from app.x86.memtype import MemType, MemTypeError
from app.x86.mtrr import MtrrState
from app.x86.pat import PAT_LINUX, Pat
from app.xen import XEN_VERSIONS, Domain, Page, Passthrough, event_answer
from app.xen.events import EXCESS, INVALIDATED, NO_CHANGE, OK, STALE, memory_type_changed

V419, V421 = XEN_VERSIONS["xen-4.19"], XEN_VERSIONS["xen-4.21"]
KINDS = {
    "plain": (False, False, False),
    "iommu": (True, False, False),
    "io": (False, True, False),
    "iommu+io": (True, True, False),
    "iommu+pci": (True, False, True),
}
# memory_type_changed() reaches p2m_memory_type_changed(): 4.19 (iommu || iomem/ioport);
# 4.21 cache_flush_permitted only (iomem/ioport, or PCI devices).
GATE = {
    "xen-4.19": {"plain": False, "iommu": True, "io": True, "iommu+io": True, "iommu+pci": True},
    "xen-4.21": {"plain": False, "iommu": False, "io": True, "iommu+io": True, "iommu+pci": True},
}
PAGE = Page(0x40000, 0x80000)  # RAM, host MTRR WB
WB_DEFAULT = MtrrState(def_type=0x806)


def domain(kind, **kw):
    iommu, io, pci = KINDS[kind]
    return Domain(iommu_enabled=iommu, io_resources=io, pci_devices=pci, **kw)


@pytest.mark.parametrize(("version", "kind"), list(itertools.product(XEN_VERSIONS, KINDS)))
def test_memory_type_changed_gate(version, kind):
    done, _, steps = memory_type_changed(XEN_VERSIONS[version], domain(kind))
    assert done is GATE[version][kind]
    assert steps[0].function.startswith("memory_type_changed (hvm/mtrr.c:")


# (msr, value, state before, memory_type_changed() called)
MTRR_WRITES = [
    (0x2FF, 0x800, WB_DEFAULT, True),                    # default type WB -> UC
    (0x2FF, 0x806, WB_DEFAULT, False),                   # the same value again
    (0x2FF, 0x000, WB_DEFAULT, True),                    # E cleared
    (0x250, 0x0606060606060606, WB_DEFAULT, False),      # fixed MSR while FE=0
    (0x250, 0x0606060606060606, MtrrState(def_type=0xC06), True),   # fixed MSR with E, FE
    (0x250, 0, MtrrState(def_type=0xC06), False),        # fixed MSR unchanged (0 -> 0)
    (0x200, 0x40000006, WB_DEFAULT, True),               # PHYSBASE0 with E
    (0x200, 0x40000006, MtrrState(def_type=0x006), False),  # PHYSBASE0 with E=0
    (0x201, 0, WB_DEFAULT, False),                       # PHYSMASK0 unchanged
]


@pytest.mark.parametrize(("version", "kind", "write"),
                         list(itertools.product(XEN_VERSIONS, KINDS, range(len(MTRR_WRITES)))))
def test_mtrr_write(version, kind, write):
    msr, value, before, calls = MTRR_WRITES[write]
    v = XEN_VERSIONS[version]
    a = event_answer(v, domain(kind), PAGE, VcpuState(mtrr=before), MtrrWrite(msr=msr, value=value))
    assert a.path[0].held is calls
    assert a.invalidated is (calls and GATE[version][kind])
    assert a.text == (INVALIDATED if a.invalidated else NO_CHANGE)


# Default type WB -> UC for RAM (host WB): (invalidated, verdict) per version and domain.
DEF_TYPE_TO_UC = {
    ("xen-4.19", "plain"): (False, OK), ("xen-4.19", "iommu"): (True, OK),
    ("xen-4.19", "io"): (True, OK), ("xen-4.19", "iommu+io"): (True, OK),
    ("xen-4.19", "iommu+pci"): (True, OK),
    ("xen-4.21", "plain"): (False, OK), ("xen-4.21", "iommu"): (False, STALE),
    ("xen-4.21", "io"): (True, OK), ("xen-4.21", "iommu+io"): (True, OK),
    ("xen-4.21", "iommu+pci"): (True, OK),
}


def test_default_type_change_stale_only_for_iommu_without_io_from_4_21():
    for (version, kind), want in DEF_TYPE_TO_UC.items():
        a = event_answer(XEN_VERSIONS[version], domain(kind), PAGE, VcpuState(mtrr=WB_DEFAULT),
                         MtrrWrite(msr=0x2FF, value=0x800))
        assert (a.invalidated, a.verdict) == want, (version, kind)
        if kind != "plain":
            assert (a.before.label, a.after.label) == ("WB", "UC")
        else:
            assert (a.before.label, a.after.label) == ("WB!", "WB!")


def test_invalidation_of_an_unchanged_page_is_excess():
    # PHYSBASE0 written with E set, but the pair's mask is still 0 (V clear): no type changes
    a = event_answer(V421, domain("io"), PAGE, VcpuState(mtrr=WB_DEFAULT), MtrrWrite(msr=0x200, value=0x40000000))
    assert (a.invalidated, a.verdict) == (True, EXCESS)
    assert "root-level entries marked EMT 7" in a.scope


@pytest.mark.parametrize(
    ("version", "self_snoop", "iommu", "iommu_snoop", "running", "flush"),
    [
        ("xen-4.19", True, False, True, True, True),
        ("xen-4.19", True, False, True, False, True),
        ("xen-4.21", True, False, True, True, False),
        ("xen-4.21", False, False, True, True, True),
        ("xen-4.21", True, True, False, True, True),
        ("xen-4.21", True, True, True, True, False),
        ("xen-4.21", False, False, True, False, False),
    ],
)
def test_cache_flush(version, self_snoop, iommu, iommu_snoop, running, flush):
    d = Domain(iommu_enabled=iommu, io_resources=True, self_snoop=self_snoop, iommu_snoop=iommu_snoop,
               running=running)
    assert memory_type_changed(XEN_VERSIONS[version], d)[:2] == (True, flush)


# (kind, event, resource) -> (memory_type_changed called and invalidating, verdict), both versions
PASSTHROUGH = {
    ("plain", "passthrough_attach", "io"): (True, OK),      # WB|IPAT -> WB: recomputed
    ("iommu", "passthrough_attach", "io"): (False, OK),     # already on the MTRR path
    ("io", "passthrough_attach", "io"): (False, OK),        # permission did not flip
    ("iommu", "passthrough_attach", "pci"): (False, OK),
    ("iommu+io", "passthrough_attach", "pci"): (False, OK),
    ("io", "passthrough_detach", "io"): (False, STALE),     # called, but its gate is shut
    ("iommu+io", "passthrough_detach", "io"): (False, OK),
    ("iommu+pci", "passthrough_detach", "pci"): (False, OK),
}


@pytest.mark.parametrize(("version", "case"), list(itertools.product(XEN_VERSIONS, PASSTHROUGH)))
def test_passthrough_events(version, case):
    kind, kind_ev, resource = case
    a = event_answer(XEN_VERSIONS[version], domain(kind), PAGE, VcpuState(mtrr=WB_DEFAULT),
                     Passthrough(kind_ev == "passthrough_attach", resource))
    assert (a.invalidated, a.verdict) == PASSTHROUGH[case]


def test_detach_calls_memory_type_changed_which_does_nothing():
    a = event_answer(V421, domain("io"), PAGE, VcpuState(mtrr=WB_DEFAULT), Passthrough(False))
    assert [(s.id, s.held) for s in a.path] == [("iocap", True), ("mtc_gate", False)]
    assert (a.before.label, a.after.label) == ("WB", "WB!")


def test_pci_needs_an_iommu():
    with pytest.raises(MemTypeError) as e:
        event_answer(V421, domain("io"), PAGE, VcpuState(), Passthrough(True, "pci"))
    assert e.value.field == "event.resource" and "XEN_DOMCTL_CDF_iommu" in e.value.rule


@pytest.mark.parametrize(("version", "kind", "cd"), list(itertools.product(XEN_VERSIONS, KINDS, (False, True))))
def test_pat_and_cd_never_touch_ept(version, kind, cd):
    v = XEN_VERSIONS[version]
    vcpu = VcpuState(mtrr=WB_DEFAULT, pat=Pat.from_msr(PAT_LINUX), cr0_cd=cd)
    pat = event_answer(v, domain(kind), PAGE, vcpu, PatWrite(value=0x0007040600070406))
    cd_ev = event_answer(v, domain(kind), PAGE, vcpu, Cr0Write(value=not cd))
    for a in (pat, cd_ev):
        assert (a.invalidated, a.verdict, a.text, a.before, a.after) == (False, OK, NO_CHANGE, a.before, a.before)
    handle_cd = kind in ("iommu+io", "iommu+pci")
    assert cd_ev.path[0].held is handle_cd
    assert ("saved in pat_cr" in pat.path[0].result) is (handle_cd and cd)


@dataclass(frozen=True)
class UnknownEvent:
    """A kind no system has: the typed events cannot express one."""

    kind: str = "zap"
    value: int = 0


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (UnknownEvent(), "event.kind"),
        (NoncoherentDma(value=True), "event.kind"),       # KVM's, not Xen's
        (MtrrWrite(msr=None, value=0x806), "event.msr"),  # type: ignore[arg-type]
        (MtrrWrite(msr=0x2FF, value=0x100), "event.value"),   # reserved bits
        (PatWrite(value=0x02), "event.value"),
        (Cr0Write(value=False, cr0_nw=True), "event.cr0_nw"),
        (Passthrough(False), "event.resource"),               # nothing to revoke
        (Passthrough(True, "irq"), "event.resource"),
    ],
)
def test_event_refusals(event, field):
    with pytest.raises(MemTypeError) as e:
        event_answer(V421, domain("plain"), PAGE, VcpuState(), event)
    assert e.value.field == field


def test_mtrr_write_needs_a_vcpu():
    with pytest.raises(MemTypeError) as e:
        event_answer(V421, Domain(has_vcpu=False), PAGE, VcpuState(), MtrrWrite(msr=0x2FF, value=0x806))
    assert e.value.field == "domain.has_vcpu"


def test_initial_vcpu_mtrrs_are_disabled_so_passthrough_ram_starts_uc():
    """hvm_vcpu_cacheattr_init() zeroes the MTRRs: before the firmware enables them, RAM of
    a passthrough domain gets UC (guest UC x host WB); the firmware's MTRRdefType write
    recomputes it (in 4.21 only with cache-flush permission)."""
    a = event_answer(V421, domain("iommu+pci"), PAGE, VcpuState(), MtrrWrite(msr=0x2FF, value=0xC06))
    assert (a.before.emt, a.after.emt, a.invalidated) == (MemType.UC, MemType.WB, True)
