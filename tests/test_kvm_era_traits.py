"""Era properties that follow from an era's traits, and the zap policies against an oracle.

Every test here is parametrized over the whole registry (`ERAS`), so an era added later
is checked by trait without anyone listing it: what its rules say they read is exactly
what changes its memtype, `reads_guest_mtrrs` and `quirks` behave as the kernel code
they stand for, and the zap oracle below must have a row for it.

The oracle (`ZAP_ORACLE`) is written from the kernel sources, independently of the era
modules' data, one row per (era, event kind): given the VM's knobs and the vCPU's CR0.CD
before the event, does the era's code zap nothing, the written MTRR's range, everything,
or (series-v3 patch 10) some ranges? Sources read:

- 4.15 arch/x86/kvm/mtrr.c update_mtrr(): `if (!tdp_enabled ||
  !kvm_arch_has_noncoherent_dma(vcpu->kvm)) return;`; x86.c kvm_set_cr0() (4.x) and
  kvm_post_set_cr0() (5.x): zap 0..~0 iff CD toggled && kvm_arch_has_noncoherent_dma()
  && !kvm_check_has_quirk(KVM_X86_QUIRK_CD_NW_CLEARED); kvm_arch_register_noncoherent_dma()
  only counts (no zap) before 6.7.
- 6.8 (sndrzt/linux-6.8): update_mtrr() returns unless kvm_mmu_honors_guest_mtrrs();
  kvm_post_set_cr0() as above with kvm_mmu_honors_guest_mtrrs();
  kvm_noncoherent_dma_assignment_start_or_stop() zaps 0..~0 iff
  __kvm_mmu_honors_guest_mtrrs(true), i.e. with EPT, on every 0<->1 transition.
- 6.11-rc1 (377b2f359d1f): the nc-DMA zap iff kvm_mmu_may_ignore_guest_pat(), EPT on
  and no X86_FEATURE_SELFSNOOP; 6.11 (9d70f3fec144 reverts it): EPT on. From 6.11
  (0a7b73559b39, e1548088ff54) MTRR writes and CR0.CD toggles zap nothing on VMX.
- 6.16.1 (KT0511/linux-6.16.1) x86.c kvm_noncoherent_dma_assignment_start_or_stop():
  zap 0..~0 iff kvm_check_has_quirk(kvm, KVM_X86_QUIRK_IGNORE_GUEST_PAT); vmx.c
  vmx_hardware_setup() drops the quirk from supported_quirks without SELFSNOOP.
- Series v3 (L:20230616023101.7019-1-yan.y.zhao@intel.com): patch 06 skips MTRR-write
  zaps while CR0.CD=1 and zaps on every CD toggle while MTRRs are honoured (the quirk no
  longer consulted); patch 10 zaps everything when the CD=1 type (quirk: WB, else UC|IPAT)
  differs from the default type, else only the differing ranges; patch 05 (nc-DMA) as 6.8.
"""

from __future__ import annotations

import itertools
from dataclasses import fields, replace
from typing import NamedTuple

import pytest

from app.kvm.era import FAULT_FIELDS, Fault, Quirk
from app.kvm.eras import ERAS
from app.kvm.scenario import (
    EVENT_KINDS,
    Cr0Write,
    MtrrWrite,
    NoncoherentDma,
    PatWrite,
    VcpuState,
    VmConfig,
)
from app.kvm.zap import audit
from app.x86.memtype import MemType, MemTypeError
from app.x86.mtrr import MtrrState, range_to_pair

ALL_ERAS = pytest.mark.parametrize("era", list(ERAS.values()), ids=list(ERAS))
MTRR_TYPES = (MemType.UC, MemType.WC, MemType.WT, MemType.WP, MemType.WB)
BOOLS = [f.name for f in fields(Fault) if f.name != "guest_mtrr"]
FAULTS = [Fault(**dict(zip(BOOLS, bits, strict=True)), guest_mtrr=mt)
          for bits in itertools.product((False, True), repeat=len(BOOLS)) for mt in MTRR_TYPES]


def _mask(era, f: Fault) -> tuple[MemType, bool]:
    m = era.mt_mask(f)
    return m.memtype, m.ipat


def _flips(f: Fault, name: str) -> list[Fault]:
    if name == "guest_mtrr":
        return [replace(f, guest_mtrr=mt) for mt in MTRR_TYPES if mt != f.guest_mtrr]
    return [replace(f, **{name: not getattr(f, name)})]


# -- traits -----------------------------------------------------------------------------


def test_bool_fault_fields_are_the_ones_enumerated():
    assert {*BOOLS, "guest_mtrr"} == FAULT_FIELDS and len(FAULTS) == 2 ** 6 * 5


@ALL_ERAS
def test_mt_mask_depends_on_exactly_the_fields_its_rules_read(era):
    assert era.reads <= FAULT_FIELDS
    matters = set()
    for f in FAULTS:
        base = _mask(era, f)
        for name in FAULT_FIELDS:
            if any(_mask(era, g) != base for g in _flips(f, name)):
                matters.add(name)
    assert matters == era.reads


@ALL_ERAS
def test_reads_guest_mtrrs_means_the_guest_type_comes_through(era):
    """Before 6.11 (kvm_mtrr_get_guest_memory_type() in vmx_get_mt_mask()): with nc-DMA,
    CR0.CD=0 and RAM the EPT type is the guest MTRR type without IPAT; from 6.11 RAM is
    always WB."""
    for f in FAULTS:
        if f.is_mmio:
            continue
        got = _mask(era, f)
        if era.reads_guest_mtrrs and f.noncoherent_dma and not f.cr0_cd:
            assert got == (f.guest_mtrr, False), f
        if not era.reads_guest_mtrrs:
            assert got[0] == MemType.WB, f


@ALL_ERAS
def test_huge_page_mtrr_check_only_while_guest_mtrrs_are_read(era):
    """kvm_tdp_page_fault() limits the level by guest MTRRs only while they may be used."""
    for nc in (False, True):
        rows = era.huge_page_check(VmConfig(noncoherent_dma=nc))
        assert rows and all(kernels for kernels, _ in rows)
        if not era.reads_guest_mtrrs:
            assert not any(applies for _, applies in rows)
        elif nc:
            assert rows[-1][1], "with nc-DMA the newest kernels of the era check"


@ALL_ERAS
def test_quirk_ignore_guest_pat_can_be_turned_off_only_where_it_exists(era):
    off_snoop = VmConfig(quirk_ignore_guest_pat=False, self_snoop=True)
    off_no_snoop = VmConfig(quirk_ignore_guest_pat=False, self_snoop=False)
    if Quirk.IGNORE_GUEST_PAT in era.quirks:
        era.check_vm(off_snoop)
        with pytest.raises(MemTypeError, match="self-snoop") as e:
            era.check_vm(off_no_snoop)
    else:
        with pytest.raises(MemTypeError, match="6.16") as e:
            era.check_vm(off_snoop)
    assert e.value.field == "vm.quirk_ignore_guest_pat"
    era.check_vm(VmConfig())


@ALL_ERAS
def test_quirks_are_the_quirk_fields_the_rules_read(era):
    assert {q.value for q in era.quirks} == era.reads & {q.value for q in Quirk}
    cd_matters = any(_mask(era, f) != _mask(era, replace(f, quirk_cd_nw_cleared=not f.quirk_cd_nw_cleared))
                     for f in FAULTS)
    assert cd_matters == (Quirk.CD_NW_CLEARED in era.quirks)


WB_UC_HOLE = MtrrState(def_type=0x806, variable=(range_to_pair(0x80000000, 0x80000000, MemType.UC, 46),))
EVENTS = {
    "cd1": Cr0Write(value=True), "cd0": Cr0Write(value=False),
    "mask": MtrrWrite(msr=0x201, value=(((1 << 46) - 1) & ~((1 << 30) - 1)) | 0x800),
    "deftype": MtrrWrite(msr=0x2FF, value=0xC06),
    "dma1": NoncoherentDma(value=True), "dma0": NoncoherentDma(value=False),
    "pat": PatWrite(value=0x0007010600070106),
}


@ALL_ERAS
@pytest.mark.parametrize("quirk", list(Quirk))
def test_zaps_ignore_quirks_the_era_does_not_honour(era, quirk):
    """A quirk the era's VMX code does not honour changes none of its zaps."""
    if quirk in era.quirks:
        pytest.skip("honoured here")
    for nc, cd, (name, ev) in itertools.product((False, True), (False, True), EVENTS.items()):
        vm = VmConfig(noncoherent_dma=nc)
        vcpu = VcpuState(cr0_cd=cd, mtrr=WB_UC_HOLE)
        vm_flipped = replace(vm, **{quirk.value: not getattr(vm, quirk.value)})
        try:
            era.check_vm(vm_flipped)
        except MemTypeError:
            continue
        if isinstance(ev, NoncoherentDma) and ev.value == nc:
            continue
        a, b = audit(era, vm, vcpu, ev), audit(era, vm_flipped, vcpu, ev)
        assert a.calls == b.calls, (name, nc, cd)


@ALL_ERAS
def test_mtrr_and_cd_events_need_no_zap_where_guest_mtrrs_are_not_read(era):
    """From 6.11 neither guest MTRRs nor CR0.CD reach the EPT type: nothing to re-type."""
    if era.reads_guest_mtrrs:
        pytest.skip("reads guest MTRRs")
    for nc, cd, name in itertools.product((False, True), (False, True), ("cd1", "cd0", "mask", "deftype")):
        a = audit(era, VmConfig(noncoherent_dma=nc), VcpuState(cr0_cd=cd, mtrr=WB_UC_HOLE), EVENTS[name])
        assert a.calls == () and a.needed == (), (name, nc, cd)


# -- the zap oracle --------------------------------------------------------------------

NOTHING, RANGE, EVERYTHING, RANGES = "nothing", "range", "everything", "ranges"


class G(NamedTuple):
    """The inputs the kernels' zap checks look at."""

    ncdma: bool        # kvm_arch_has_noncoherent_dma() (with EPT: honours guest MTRRs)
    cd_quirk: bool     # KVM_X86_QUIRK_CD_NW_CLEARED on
    pat_quirk: bool    # KVM_X86_QUIRK_IGNORE_GUEST_PAT on
    self_snoop: bool   # X86_FEATURE_SELFSNOOP
    cd: bool           # the vCPU's CR0.CD before the event


def _v3_cd(g: G) -> str:
    if not g.ncdma:
        return NOTHING
    return RANGES if g.cd_quirk else EVERYTHING  # CD=1 type WB (== default WB) or UC|IPAT


ZAP_ORACLE = {
    # era          event              outcome
    ("v4.2", "mtrr_write"): lambda g: RANGE if g.ncdma else NOTHING,
    ("v4.2", "cr0_cd"): lambda g: EVERYTHING if g.ncdma and not g.cd_quirk else NOTHING,
    ("v4.2", "noncoherent_dma"): lambda _: NOTHING,
    ("v4.2", "pat_write"): lambda _: NOTHING,
    ("series-v3", "mtrr_write"): lambda g: RANGE if g.ncdma and not g.cd else NOTHING,
    ("series-v3", "cr0_cd"): _v3_cd,
    ("series-v3", "noncoherent_dma"): lambda _: EVERYTHING,
    ("series-v3", "pat_write"): lambda _: NOTHING,
    ("v6.7", "mtrr_write"): lambda g: RANGE if g.ncdma else NOTHING,
    ("v6.7", "cr0_cd"): lambda g: EVERYTHING if g.ncdma and not g.cd_quirk else NOTHING,
    ("v6.7", "noncoherent_dma"): lambda _: EVERYTHING,
    ("v6.7", "pat_write"): lambda _: NOTHING,
    ("v6.11-rc1", "mtrr_write"): lambda _: NOTHING,
    ("v6.11-rc1", "cr0_cd"): lambda _: NOTHING,
    ("v6.11-rc1", "noncoherent_dma"): lambda g: EVERYTHING if not g.self_snoop else NOTHING,
    ("v6.11-rc1", "pat_write"): lambda _: NOTHING,
    ("v6.11", "mtrr_write"): lambda _: NOTHING,
    ("v6.11", "cr0_cd"): lambda _: NOTHING,
    ("v6.11", "noncoherent_dma"): lambda _: EVERYTHING,
    ("v6.11", "pat_write"): lambda _: NOTHING,
    ("v6.16", "mtrr_write"): lambda _: NOTHING,
    ("v6.16", "cr0_cd"): lambda _: NOTHING,
    ("v6.16", "noncoherent_dma"): lambda g: EVERYTHING if g.pat_quirk else NOTHING,
    ("v6.16", "pat_write"): lambda _: NOTHING,
}
QUIRK_OFF_ALLOWED = {"v6.16"}  # KVM_X86_QUIRK_IGNORE_GUEST_PAT exists (c9c1e20b4c7d), needs SELFSNOOP

EVERYTHING_RANGE = (0, 1 << 46)
NEW_PAIR0_RANGE = (0x80000000, 0xC0000000)  # pair 0's base with the 1 GiB mask EVENTS["mask"] writes


def test_oracle_covers_every_era_and_event_kind():
    assert set(ZAP_ORACLE) == {(e, k) for e in ERAS for k in EVENT_KINDS}


def _event(kind: str, g: G):
    match kind:
        case "mtrr_write":
            return EVENTS["mask"]
        case "cr0_cd":
            return Cr0Write(value=not g.cd)
        case "noncoherent_dma":
            return NoncoherentDma(value=not g.ncdma)
    return EVENTS["pat"]


def _outcome(calls: tuple) -> str:
    if calls == ():
        return NOTHING
    if calls == (EVERYTHING_RANGE,):
        return EVERYTHING
    if calls == (NEW_PAIR0_RANGE,):
        return RANGE
    assert EVERYTHING_RANGE not in calls, calls
    return RANGES


@pytest.mark.parametrize(("era_id", "kind"), sorted(ZAP_ORACLE))
def test_zap_policy_matches_the_oracle(era_id, kind):
    era = ERAS[era_id]
    seen = set()
    for g in map(G._make, itertools.product((False, True), repeat=len(G._fields))):
        vm = VmConfig(noncoherent_dma=g.ncdma, quirk_cd_nw_cleared=g.cd_quirk, quirk_ignore_guest_pat=g.pat_quirk,
                      self_snoop=g.self_snoop)
        vcpu = VcpuState(cr0_cd=g.cd, mtrr=WB_UC_HOLE)
        if not g.pat_quirk and not (era_id in QUIRK_OFF_ALLOWED and g.self_snoop):
            with pytest.raises(MemTypeError):
                audit(era, vm, vcpu, _event(kind, g))
            continue
        got = _outcome(audit(era, vm, vcpu, _event(kind, g)).calls)
        assert got == ZAP_ORACLE[(era_id, kind)](g), g
        seen.add(got)
    assert seen  # at least one allowed configuration
