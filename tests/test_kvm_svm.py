"""AMD SVM/NPT (app.kvm.svm): tables written from the kernel sources read, not from the code.

Each expectation below is restated by hand from svm.c / spte.c / mtrr.c / x86.c as
docs/systems/amd.md cites them; the guest x host table is the modelled (unverified) rule.
"""

from __future__ import annotations

import itertools

import pytest

from app.kvm.era import ZapInput
from app.kvm.scenario import Cr0Write, MtrrWrite, NoncoherentDma, PatWrite, VcpuState, VmConfig, apply_event
from app.kvm.svm import (
    UNVERIFIED,
    check_svm_vm,
    combine_guest_host,
    hardware_cr0,
    svm_kernel,
    svm_resolve,
    svm_zap,
)
from app.x86.memtype import MemType, MemTypeError
from app.x86.mtrr import MSR_MTRR_DEF_TYPE, MtrrState
from app.x86.npt import NptEntry
from app.x86.pat import PAT_LINUX, PAT_POWER_ON, Pat

T = MemType
WB_MTRRS = MtrrState(def_type=0x806)  # E=1, default WB, no ranges: the guest expects its PAT type
LINUX = Pat.from_msr(PAT_LINUX)
POWER_ON = Pat.from_msr(PAT_POWER_ON)


def pat_of(*types: MemType) -> Pat:
    return Pat.from_msr(sum(int(t) << (8 * n) for n, t in enumerate(types)))


# entries 0..7: UC, UC-, WC, WT, WP, WB, then WB, WB
SIX = pat_of(T.UC, T.UC_MINUS, T.WC, T.WT, T.WP, T.WB, T.WB, T.WB)


# -- the NPT leaf KVM builds --------------------------------------------------------------

def test_kvm_leaf_selects_host_pat_entry_0_exact_bits():
    # P|RW|US|A = 0x27; PS (0x80) on large leaves; PWT/PCD/PAT all clear.
    assert NptEntry.build(0x12345000).raw == 0x12345027
    assert NptEntry.build(0x40000000, 2).raw == 0x400000A7
    assert NptEntry.build(0xC0000000, 3).raw == 0xC00000A7
    for level in (1, 2, 3):
        assert NptEntry.build(0x40000000, level).host_pat_index == 0


BITS_4K = {0: 0x00, 1: 0x08, 2: 0x10, 3: 0x18, 4: 0x80, 5: 0x88, 6: 0x90, 7: 0x98}
BITS_LARGE = {0: 0x0000, 1: 0x0008, 2: 0x0010, 3: 0x0018, 4: 0x1000, 5: 0x1008, 6: 0x1010, 7: 0x1018}


@pytest.mark.parametrize("index,level", list(itertools.product(range(8), (1, 2, 3))))
def test_leaf_pat_bits_every_index_and_level(index, level):
    e = NptEntry.build(0x40000000, level, pat_index=index)
    base = 0x40000027 | (0x80 if level > 1 else 0)
    assert e.raw == base | (BITS_4K if level == 1 else BITS_LARGE)[index]
    assert e.host_pat_index == index
    assert NptEntry.decode(e.raw, level).host_pat_index == index


def test_leaf_refuses_level_4():
    with pytest.raises(MemTypeError) as ei:
        NptEntry.build(0, 4)
    assert ei.value.field == "level"


# -- the combination (hPAT entry 0 = WB, as KVM selects) ----------------------------------

GUESTS = (T.UC, T.UC_MINUS, T.WC, T.WT, T.WP, T.WB)
# rows: host MTRR type; columns in GUESTS order. Written out by hand (modelled rule).
HOST_X_GUEST = {
    T.UC: (T.UC, T.UC, T.WC, T.UC, T.UC, T.UC),
    T.WC: (T.UC, T.WC, T.WC, T.UC, T.UC, T.WC),
    T.WT: (T.UC, T.UC, T.WC, T.WT, T.WP, T.WT),
    T.WP: (T.UC, T.WC, T.WC, T.WT, T.WP, T.WP),
    T.WB: (T.UC, T.UC, T.WC, T.WT, T.WP, T.WB),
}


@pytest.mark.parametrize("host", list(HOST_X_GUEST))
def test_effective_all_30_cells_through_resolve(host):
    vcpu = VcpuState(pat=SIX, mtrr=WB_MTRRS)
    r = svm_resolve(svm_kernel("6.8"), VmConfig(), vcpu, 0x100000, is_mmio=False, host_mtrr=host)
    assert r.host_pat_index == 0 and r.host_pat_type == T.WB and r.host_type == host
    got = tuple(row.effective for row in r.rows[:6])
    assert got == HOST_X_GUEST[host]
    for g, want in zip(GUESTS, HOST_X_GUEST[host], strict=True):
        assert combine_guest_host(host, g) == want


def test_host_pat_entry_0_not_wb_makes_the_host_side():
    # a host whose PAT entry 0 is UC: MTRR x PAT UC is UC for every MTRR type
    host_pat = pat_of(T.UC, T.WC, T.UC_MINUS, T.UC, T.WB, T.WP, T.UC_MINUS, T.WT)
    for mtrr in (T.UC, T.WC, T.WT, T.WP, T.WB):
        r = svm_resolve(svm_kernel("6.19"), VmConfig(), VcpuState(pat=LINUX, mtrr=WB_MTRRS), 0x1000,
                        is_mmio=False, host_mtrr=mtrr, host_pat=host_pat)
        assert (r.host_pat_type, r.host_type) == (T.UC, T.UC)
        assert [x.effective.label for x in r.rows] == ["UC", "WC", "UC", "UC", "UC", "UC", "UC", "UC"]


def test_host_mtrr_uc_minus_refused():
    with pytest.raises(MemTypeError) as ei:
        svm_resolve(svm_kernel("6.8"), VmConfig(), VcpuState(), 0x1000, is_mmio=False, host_mtrr=T.UC_MINUS)
    assert ei.value.field == "host_mtrr"


def test_defaults_ram_wb_mmio_uc_linux_guest():
    k, vcpu = svm_kernel("6.8"), VcpuState(pat=LINUX, mtrr=WB_MTRRS)
    ram = svm_resolve(k, VmConfig(), vcpu, 0x100000, is_mmio=False)
    mmio = svm_resolve(k, VmConfig(), vcpu, 0x800000000, is_mmio=True)
    # Linux PAT: WB WC UC- UC WB WP UC- WT
    assert [r.effective.label for r in ram.rows] == ["WB", "WC", "UC", "UC", "WB", "WP", "UC", "WT"]
    assert [r.effective.label for r in mmio.rows] == ["UC", "WC", "UC", "UC", "UC", "UC", "UC", "UC"]
    assert [r.relation for r in ram.rows] == ["same"] * 8
    assert [r.relation for r in mmio.rows] == ["stronger", "same", "same", "same", "stronger", "stronger",
                                               "same", "stronger"]
    assert ram.npt.raw == 0x100027
    assert [s.id for s in ram.path] == ["npt", "host", "cr0", "gpat", "combine"]
    assert ram.path[-1].result == UNVERIFIED


# -- CR0.CD/NW: svm_set_cr0() -------------------------------------------------------------

CR0_TABLE = {
    # (guest cd, guest nw, quirk) -> hardware (cd, nw)
    (False, False, True): (False, False), (True, False, True): (False, False), (True, True, True): (False, False),
    (False, False, False): (False, False), (True, False, False): (True, False), (True, True, False): (True, True),
}


@pytest.mark.parametrize("key", list(CR0_TABLE))
def test_hardware_cr0_table(key):
    cd, nw, quirk = key
    hw = hardware_cr0(cd, nw, quirk)
    assert (hw.cd, hw.nw) == CR0_TABLE[key]


@pytest.mark.parametrize("cd,nw,quirk", [k for k in CR0_TABLE])
def test_cd_effective_and_relation(cd, nw, quirk):
    vcpu = VcpuState(cr0_cd=cd, cr0_nw=nw, pat=LINUX, mtrr=WB_MTRRS)
    r = svm_resolve(svm_kernel("6.16"), VmConfig(quirk_cd_nw_cleared=quirk), vcpu, 0x100000, is_mmio=False)
    if cd and not quirk:
        assert [x.effective for x in r.rows] == [T.UC] * 8
        assert [x.relation for x in r.rows] == ["same"] * 8
    elif cd:  # the guest asked for no-fill, the CPU caches per the table
        assert [x.effective.label for x in r.rows] == ["WB", "WC", "UC", "UC", "WB", "WP", "UC", "WT"]
        assert [x.relation for x in r.rows] == ["weaker", "weaker", "same", "same", "weaker", "weaker",
                                                "same", "weaker"]
    else:
        assert [x.relation for x in r.rows] == ["same"] * 8


def test_nw_without_cd_refused():
    with pytest.raises(MemTypeError) as ei:
        svm_resolve(svm_kernel("6.8"), VmConfig(), VcpuState(cr0_nw=True), 0x1000, is_mmio=False)
    assert ei.value.field == "vcpu.cr0_nw"


# -- gPAT per version ---------------------------------------------------------------------

GPAT_FOLLOWS = {"4.2": False, "4.4": False, "4.10": False, "4.11": False, "4.13.9": False, "4.14": True,
                "4.20": True, "5.2": True, "6.8": True, "6.16": True, "6.19": True,
                "v4.2": False, "v6.7": True, "v6.16": True}


@pytest.mark.parametrize("asked", list(GPAT_FOLLOWS))
def test_gpat_by_version(asked):
    k = svm_kernel(asked)
    assert k.gpat_follows_guest is GPAT_FOLLOWS[asked]
    r = svm_resolve(k, VmConfig(), VcpuState(pat=LINUX, mtrr=WB_MTRRS), 0x100000, is_mmio=False)
    want = ["WB", "WC", "UC-", "UC", "WB", "WP", "UC-", "WT"] if GPAT_FOLLOWS[asked] else \
           ["WB", "WT", "UC-", "UC", "WB", "WT", "UC-", "UC"]
    assert [x.gpat_type.label for x in r.rows] == want
    assert [x.guest_pat_type.label for x in r.rows] == ["WB", "WC", "UC-", "UC", "WB", "WP", "UC-", "WT"]


def test_old_gpat_makes_guest_wc_into_wt():
    r = svm_resolve(svm_kernel("4.4"), VmConfig(), VcpuState(pat=LINUX, mtrr=WB_MTRRS), 0x100000, is_mmio=False)
    assert (r.rows[1].effective, r.rows[1].guest_expected, r.rows[1].relation) == (T.WT, T.WC, "incomparable")
    assert (r.rows[7].effective, r.rows[7].relation) == (T.UC, "stronger")


@pytest.mark.parametrize("asked", ["series-v3", "4.1", "7.0", "six"])
def test_unmodelled_kernels_refused(asked):
    with pytest.raises(MemTypeError) as ei:
        svm_kernel(asked)
    assert ei.value.field == "kernel"


def test_paging_off_uses_wb():
    r = svm_resolve(svm_kernel("6.8"), VmConfig(), VcpuState(cr0_pg=False, pat=LINUX, mtrr=WB_MTRRS), 0x800000000,
                    is_mmio=True)
    assert [x.gpat_type for x in r.rows] == [T.WB] * 8
    assert [x.effective for x in r.rows] == [T.UC] * 8


# -- quirks on AMD ------------------------------------------------------------------------

@pytest.mark.parametrize("asked,ok", [("6.8", False), ("6.15", False), ("6.12.77", False), ("6.12.78", True),
                                      ("6.16", True), ("6.19", True)])
def test_ignore_guest_pat_off(asked, ok):
    vm = VmConfig(quirk_ignore_guest_pat=False)
    if ok:
        assert any("already disabled on AMD" in n for n in check_svm_vm(svm_kernel(asked), vm))
    else:
        with pytest.raises(MemTypeError) as ei:
            check_svm_vm(svm_kernel(asked), vm)
        assert ei.value.field == "vm.quirk_ignore_guest_pat"


@pytest.mark.parametrize("asked,limited", [("4.2", True), ("5.19", True), ("6.0", False), ("6.8", False),
                                           ("6.19", False)])
def test_huge_pages_follow_guest_mtrrs(asked, limited):
    assert svm_kernel(asked).huge_pages_follow_guest_mtrrs is limited


# -- zaps ---------------------------------------------------------------------------------

VERSIONS = ("4.2", "5.2", "6.6", "6.7", "6.10", "6.11", "6.15", "6.16", "6.19")
EVENTS = {
    "mtrr": MtrrWrite(msr=MSR_MTRR_DEF_TYPE, value=0xC06),
    "cd": Cr0Write(value=True),
    "ncdma": NoncoherentDma(value=True),
    "pat": PatWrite(value=PAT_LINUX),
}
# Where AMD zaps at all (everything, one call), restated from update_mtrr() / kvm_post_set_cr0():
ZAPS = {(v, "mtrr", True, q) for v in ("4.2", "5.2", "6.6") for q in (True, False)} | \
       {(v, "cd", True, False) for v in ("4.2", "5.2", "6.6")}


CASES = [c for c in itertools.product(VERSIONS, EVENTS, (False, True), (True, False)) if not (c[1] == "ncdma" and c[2])]
"""Every version x event x nc-DMA x quirk, except a start event with the counter already at 1."""


@pytest.mark.parametrize("v,ev,ncdma,quirk", CASES)
def test_zap_table(v, ev, ncdma, quirk):
    vm = VmConfig(noncoherent_dma=ncdma, quirk_cd_nw_cleared=quirk)
    vcpu = VcpuState(mtrr=WB_MTRRS)
    vm2, vcpu2 = apply_event(vm, vcpu, EVENTS[ev])
    d = svm_zap(svm_kernel(v), ZapInput(vm, vcpu, vm2, vcpu2, EVENTS[ev]))
    want = ((0, 1 << 46),) if (v, ev, ncdma, quirk) in ZAPS else ()
    assert d.calls == want


def test_zap_counts_exact():
    n = 0
    assert len(CASES) == 9 * (4 * 4 - 2)
    for v, ev, ncdma, quirk in CASES:
        vm = VmConfig(noncoherent_dma=ncdma, quirk_cd_nw_cleared=quirk)
        vcpu = VcpuState(mtrr=WB_MTRRS)
        vm2, vcpu2 = apply_event(vm, vcpu, EVENTS[ev])
        n += len(svm_zap(svm_kernel(v), ZapInput(vm, vcpu, vm2, vcpu2, EVENTS[ev])).calls)
    assert n == 9  # 3 versions x (2 MTRR cases + 1 CD case)


def test_ncdma_zap_path_names_the_gate():
    vm, vcpu = VmConfig(), VcpuState()
    ev = EVENTS["ncdma"]
    vm2, vcpu2 = apply_event(vm, vcpu, ev)
    d616 = svm_zap(svm_kernel("6.16"), ZapInput(vm, vcpu, vm2, vcpu2, ev))
    d68 = svm_zap(svm_kernel("6.8"), ZapInput(vm, vcpu, vm2, vcpu2, ev))
    assert [(s.id, s.held) for s in d616.path] == [("transition", True), ("zap", False)]
    assert "disabled on AMD" in d616.path[1].condition
    assert "shadow_memtype_mask is 0 on NPT" in d68.path[1].condition
