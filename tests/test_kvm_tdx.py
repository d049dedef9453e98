"""TDX VMs (app.kvm.tdx): refusal rules and memory types, tables restated from tdx.c/vmx.c."""

from __future__ import annotations

import itertools

import pytest

from app.kvm.scenario import Cr0Write, MtrrWrite, NoncoherentDma, PatWrite, VcpuState, VmConfig
from app.kvm.tdx import (
    PRIVATE_UNVERIFIED,
    TDX_MTRR_DEF_TYPE,
    check_tdx_event,
    check_tdx_vcpu,
    check_tdx_vm,
    check_vm_kind,
    tdx_defaults,
    tdx_mt_mask,
    tdx_resolve,
)
from app.x86.memtype import MemType, MemTypeError
from app.x86.mtrr import MSR_MTRR_DEF_TYPE, MtrrState
from app.x86.pat import PAT_LINUX, PAT_POWER_ON, Pat

T = MemType
TD_VM = VmConfig(quirk_ignore_guest_pat=False)
TD_MTRR = MtrrState(def_type=0x806)

# (vendor, type, kernel) -> None (accepted) or the field named in the 422
KIND = {
    ("intel", "default", "4.2"): None,
    ("amd", "default", "6.19"): None,
    ("intel", "tdx", "6.16"): None,
    ("intel", "tdx", "6.19.10"): None,
    ("intel", "tdx", "v6.16"): None,
    ("intel", "tdx", "6.15"): "vm.type",
    ("intel", "tdx", "6.12.78"): "vm.type",  # the quirk backport brings no TDX
    ("intel", "tdx", "v6.11"): "vm.type",
    ("amd", "tdx", "6.16"): "vm.type",
    ("arm", "default", "6.16"): "vm.vendor",
    ("intel", "sev", "6.16"): "vm.type",
    ("intel", "tdx", "7.0"): "kernel",  # outside the modelled versions
}


@pytest.mark.parametrize("key", list(KIND))
def test_vm_kind(key):
    if KIND[key] is None:
        check_vm_kind(*key)
        return
    with pytest.raises(MemTypeError) as ei:
        check_vm_kind(*key)
    assert ei.value.field == KIND[key]
    assert ei.value.rule


def test_amd_tdx_rule_names_the_module():
    with pytest.raises(MemTypeError) as ei:
        check_vm_kind("amd", "tdx", "6.16")
    assert "kvm_intel" in ei.value.rule


def test_quirk_on_refused_off_accepted():
    with pytest.raises(MemTypeError) as ei:
        check_tdx_vm(VmConfig())
    assert ei.value.field == "vm.quirk_ignore_guest_pat"
    assert "tdx_vm_init" in ei.value.rule
    for nc, ss, cdnw in itertools.product((False, True), repeat=3):
        assert len(check_tdx_vm(VmConfig(quirk_ignore_guest_pat=False, noncoherent_dma=nc, self_snoop=ss,
                                          quirk_cd_nw_cleared=cdnw))) == 2


# MTRRdefType value -> accepted (E=1 and type WB; FE free)
DEF_TYPES = {0x806: True, 0xC06: True, 0x000: False, 0x006: False, 0x800: False, 0x801: False, 0xC00: False,
             0x804: False, 0x805: False}


@pytest.mark.parametrize("value", list(DEF_TYPES))
def test_vcpu_mtrr_def_type(value):
    vcpu = VcpuState(mtrr=MtrrState(def_type=value))
    if DEF_TYPES[value]:
        check_tdx_vcpu(vcpu)
    else:
        with pytest.raises(MemTypeError) as ei:
            check_tdx_vcpu(vcpu)
        assert ei.value.field == "vcpu.mtrr.def_type"


def test_vcpu_cd_refused():
    with pytest.raises(MemTypeError) as ei:
        check_tdx_vcpu(VcpuState(cr0_cd=True, mtrr=TD_MTRR))
    assert ei.value.field == "vcpu.cr0_cd"
    assert "#VE" in ei.value.rule


EVENTS = {
    Cr0Write(value=True): "event.value",
    Cr0Write(value=False): None,
    MtrrWrite(msr=MSR_MTRR_DEF_TYPE, value=0x800): "event.value",
    MtrrWrite(msr=MSR_MTRR_DEF_TYPE, value=0x006): "event.value",
    MtrrWrite(msr=MSR_MTRR_DEF_TYPE, value=0xC06): None,
    MtrrWrite(msr=0x200, value=0x80000006): None,  # a variable base: stored, never read
    PatWrite(value=PAT_LINUX): None,
    NoncoherentDma(value=True): None,
}


@pytest.mark.parametrize("ev", list(EVENTS))
def test_events(ev):
    if EVENTS[ev] is None:
        check_tdx_event(ev)
    else:
        with pytest.raises(MemTypeError) as ei:
            check_tdx_event(ev)
        assert ei.value.field == EVENTS[ev]


# (is_mmio, private) -> (EPT memtype, IPAT); the nc-DMA and self-snoop settings never matter
MASK = {(False, False): (T.WB, False), (True, False): (T.UC, False), (False, True): (T.WB, False)}


@pytest.mark.parametrize("key,nc,ss", [(k, nc, ss) for k in MASK for nc in (False, True) for ss in (False, True)])
def test_mt_mask(key, nc, ss):
    mt, ipat, why, path = tdx_mt_mask(VmConfig(quirk_ignore_guest_pat=False, noncoherent_dma=nc, self_snoop=ss),
                                      *key)
    assert (mt, ipat) == MASK[key]
    if key[1]:
        assert why == PRIVATE_UNVERIFIED and path is None
    else:
        assert path is not None
        assert [(s.id, s.held) for s in path.path] == (
            [("mmio", True), ("ignore-pat", None), ("honor-pat", None)] if key[0]
            else [("mmio", False), ("ignore-pat", False), ("honor-pat", True)])


def test_private_mmio_refused():
    with pytest.raises(MemTypeError) as ei:
        tdx_mt_mask(TD_VM, True, True)
    assert ei.value.field == "access.mmio"


# Effective types per guest PAT entry, written out: Linux PAT WB WC UC- UC WB WP UC- WT,
# power-on PAT WB WT UC- UC WB WT UC- UC.
EFFECTIVE = {
    ("linux", False): ["WB", "WC", "UC", "UC", "WB", "WP", "UC", "WT"],
    ("linux", True): ["UC", "WC", "UC", "UC", "UC", "UC", "UC", "UC"],
    ("power-on", False): ["WB", "WT", "UC", "UC", "WB", "WT", "UC", "UC"],
    ("power-on", True): ["UC", "UC", "UC", "UC", "UC", "UC", "UC", "UC"],
}
PATS = {"linux": PAT_LINUX, "power-on": PAT_POWER_ON}


@pytest.mark.parametrize("key,private", [(k, p) for k in EFFECTIVE for p in (False, True) if not (k[1] and p)])
def test_effective(key, private):
    pat, mmio = key
    r = tdx_resolve(TD_VM, VcpuState(pat=Pat.from_msr(PATS[pat]), mtrr=TD_MTRR), 0x100000, is_mmio=mmio,
                    private=private)
    assert [x.effective.label for x in r.rows] == EFFECTIVE[key]
    # the guest's own view (MTRRs WB, no ranges) is its PAT type: RAM matches exactly
    if not mmio:
        assert [x.relation for x in r.rows] == ["same"] * 8
    else:
        assert [x.relation for x in r.rows].count("stronger") == 4  # WB, WB and WP+WT (linux) or WT+WT


def test_defaults_pass_every_check():
    vm, vcpu = tdx_defaults(VmConfig(), VcpuState(cr0_cd=True, cr0_nw=True))
    assert (vm.quirk_ignore_guest_pat, vcpu.cr0_cd, vcpu.cr0_nw, vcpu.mtrr.def_type) == (False, False, False, 0x806)
    assert TDX_MTRR_DEF_TYPE == 0x806
    check_tdx_vm(vm)
    check_tdx_vcpu(vcpu)
    tdx_resolve(vm, vcpu, 0, is_mmio=False, private=True)


def test_resolve_refuses_before_computing():
    with pytest.raises(MemTypeError) as ei:
        tdx_resolve(VmConfig(), VcpuState(mtrr=TD_MTRR), 0, is_mmio=False, private=False)
    assert ei.value.field == "vm.quirk_ignore_guest_pat"
