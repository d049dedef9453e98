"""Boot generators against the writers' own code (app/kvm/boot.py) and the cover letter's counts.

Expected figures are derived here from the rules as the sources state them (one zap per
MTRRdefType write on v4.2..v6.6 with the quirk on; QEMU 2 writes of it per vCPU, OVMF 4
passes on the BSP and 3 per AP, SeaBIOS one list per CPU, Linux N+1 passes), not read
back from the implementation.
"""

from __future__ import annotations

from collections import Counter

import pytest

from app.kvm import replay as rp
from app.kvm.boot import (
    LINUX_PAT,
    RESET_STATE,
    Machine,
    blocks,
    boot_steps,
    parse_memory,
)
from app.kvm.eras import ERAS
from app.kvm.scenario import CR0_CD, MTRR_WRITE, Cr0Write, Event, VmConfig
from app.x86.memtype import MemTypeError
from app.x86.mtrr import MSR_MTRR_DEF_TYPE
from app.x86.pat import PAT_POWER_ON

GiB = 1 << 30


def expected(firmware: str, n: int) -> dict[str, int]:
    fw = 6 * n + 2 if firmware == "ovmf" else 2 * n
    return {"qemu": 2 * n, "firmware": fw, "linux": 2 * n + 2, "trace": 0}


@pytest.mark.parametrize("firmware, n, total",
                         [("ovmf", 8, 84), ("ovmf", 16, 164), ("seabios", 8, 50), ("seabios", 16, 98)])
def test_cover_letter_counts_per_source(firmware, n, total):
    r = rp.replay(ERAS["v4.2"], rp.GENERATORS[firmware](n))
    assert r.zap_calls == total
    assert r.calls_by_source == expected(firmware, n)


@pytest.mark.parametrize("firmware", ["ovmf", "seabios"])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_calls_are_the_mtrrdeftype_writes_per_source(firmware, n):
    t = rp.GENERATORS[firmware](n)
    defs = Counter(te.source for te in t.events if te.event.kind == MTRR_WRITE and te.event.msr == MSR_MTRR_DEF_TYPE)
    r = rp.replay(ERAS["v4.2"], t)
    assert dict(defs) == {k: v for k, v in expected(firmware, n).items() if v}
    assert r.calls_by_source == expected(firmware, n)


def test_quirk_off_adds_every_cd_toggle():
    vm = VmConfig(noncoherent_dma=True, quirk_cd_nw_cleared=False)
    t = rp.ovmf_boot(4, vm=vm)
    toggles, cd = 0, [RESET_STATE.cr0_cd] * 4
    for te in t.events:
        if te.event.kind == CR0_CD and te.event.value != cd[te.vcpu]:
            toggles += 1
            cd[te.vcpu] = te.event.value
    assert rp.replay(ERAS["v4.2"], t).zap_calls == 2 * 4 + 6 * 4 + 2 + 2 * 4 + 2 + toggles


def test_later_eras_never_zap_a_boot():
    t = rp.ovmf_boot(8)
    for era in ("v6.11-rc1", "v6.11", "v6.16"):
        assert rp.replay(ERAS[era], t).zap_calls == 0


@pytest.mark.parametrize("firmware", ["ovmf", "seabios"])
def test_final_state_and_start(firmware):
    t = rp.GENERATORS[firmware](4)
    assert t.initial == RESET_STATE and RESET_STATE.cr0_cd and RESET_STATE.cr0_nw
    assert RESET_STATE.pat.to_msr() == PAT_POWER_ON and RESET_STATE.mtrr.def_type == 0
    _, states = rp.final_states(t)
    assert all(s == states[0] for s in states)
    s = states[0]
    assert (s.cr0_cd, s.cr0_nw) == (False, False) and s.pat.to_msr() == LINUX_PAT
    assert s.mtrr.def_type == 0xC06
    fixed = [0x0606060606060606] * 2 + ([0] * 9 if firmware == "ovmf" else [0] + [0x0505050505050505] * 8)
    assert list(s.mtrr.fixed) == fixed


def test_qemu_writes_carry_no_cr0_event():
    steps = boot_steps("ovmf", 3, Machine())
    q = [st for st in steps if st.source == "qemu"]
    # IA32_PAT, MTRRdefType, 11 fixed, 16 variable, per vCPU, at init and at reset.
    assert len(q) == 2 * 3 * (1 + 1 + 11 + 16)
    assert not any(st.event.kind == CR0_CD for st in q)


@pytest.mark.parametrize("machine, mem, low, uc32, pcimem", [
    ("q35", 4 * GiB, 2 * GiB, 2 * GiB, 0xC0000000),
    ("q35", 0xB0000000, 2 * GiB, 2 * GiB, 0xC0000000),
    ("q35", 0xA0000000, 0xA0000000, 0xB0000000, 0xC0000000),
    ("q35", 1 * GiB, 1 * GiB, 2 * GiB, 0xC0000000),
    # SeaBIOS starts from the RAM below 4 GiB: pc 4G keeps 3G low -> UC from 3G; low RAM
    # above 3G is its own start (measured on SeaBIOS 1.16.2, tests/data/firmware_msrs.json).
    ("pc", 4 * GiB, 3 * GiB, 3 * GiB, 0xC0000000),
    ("pc", 0xE0000000, 3 * GiB, 3 * GiB, 0xC0000000),
    ("pc", 0xD0000000, 0xD0000000, 0xE0000000, 0xD0000000),
    ("pc", 3 * GiB, 3 * GiB, 3 * GiB, 0xC0000000),
    ("pc", 0xA0000000, 0xA0000000, 3 * GiB, 0xC0000000),
    ("pc", 1 * GiB, 1 * GiB, 2 * GiB, 0x80000000),
])
def test_layouts_by_machine_and_ram(machine, mem, low, uc32, pcimem):
    m = Machine(machine, mem).validate()
    assert m.low_ram() == low and m.ovmf_uc32_base() == uc32 and m.seabios_pcimem_start() == pcimem
    mm = m.memory_map()
    assert sum(r.end - r.start for r in mm) == mem - 0x20000  # the VGA window 0xA0000-0xBFFFF has no RAM slot


def test_apertures():
    assert Machine(maxphyaddr=46).ovmf_aperture() == ((1 << 46) - (1 << 43), 1 << 43)
    assert Machine(aperture="classic").ovmf_aperture() == (32 * GiB, 32 * GiB)


def test_blocks_exhaustive_small():
    for s in range(0, 64):
        for e in range(s, 65):
            b = blocks(s, e)
            assert sum(sz for _, sz in b) == e - s
            pos = s
            for st, sz in b:
                assert st == pos and sz & (sz - 1) == 0 and st % sz == 0
                pos += sz


def test_event_count_known_before_work_and_limit():
    for n in (1, 2, 7, 30):
        assert rp.boot_event_count("ovmf", n, Machine()) == len(rp.ovmf_boot(n).events)
    with pytest.raises(MemTypeError) as e:
        rp.ovmf_boot(1024, max_events=100_000)
    assert e.value.field == "vcpus" and "MEMTYPE_MAX_TRACE_EVENTS" in e.value.rule


@pytest.mark.parametrize("bad, field", [({"machine": "isapc"}, "machine"), ({"memory": 3}, "memory"),
                                        ({"aperture": "x"}, "aperture")])
def test_bad_machine_refused(bad, field):
    with pytest.raises(MemTypeError) as e:
        rp.ovmf_boot(2, **bad)
    assert e.value.field == field


def test_parse_memory():
    assert parse_memory("4G") == 4 * GiB and parse_memory("512M") == 512 << 20 and parse_memory(123) == 123
    for bad in ("4GB", "0G", "4g", True, 1.5):
        with pytest.raises(MemTypeError):
            parse_memory(bad)


# -- edk2 releases (boot.EDK2_RELEASES) ---------------------------------------------------------


def _bsp_first_cr0(edk2: str) -> Event:
    steps = boot_steps("ovmf", 2, Machine(edk2=edk2), qemu=False, linux=False)
    return next(st.event for st in steps if st.vcpu == 0 and st.event.kind == CR0_CD)


def test_reset_vector_cr0_by_edk2_release():
    # SEC_DEFAULT_CR0 0x40000023 before e8aa4c6546ad (CD kept, NW cleared), 0x23 after.
    assert _bsp_first_cr0("2023-05") == Cr0Write(value=True, cr0_nw=False)
    assert _bsp_first_cr0("2023-11") == Cr0Write(value=False, cr0_nw=False)
    assert _bsp_first_cr0("2024-02") == Cr0Write(value=False, cr0_nw=False)


def test_sec_mtrr_setup_adds_one_deftype_write_on_the_bsp():
    def deftype_writes(edk2: str) -> list[tuple[int, int]]:
        steps = boot_steps("ovmf", 3, Machine(edk2=edk2), qemu=False, linux=False)
        return [(st.vcpu, st.event.value) for st in steps if st.event.kind == MTRR_WRITE and st.event.msr == 0x2FF]
    old, new = deftype_writes("2023-11"), deftype_writes("2024-02")
    assert len(new) == len(old) + 1 == 6 * 3 + 2 + 1
    assert new[0] == (0, 0x806)          # SecMtrrSetup: E=1, type WB, no CD bracket
    assert new[1] == (0, 0x006)          # MtrrLibPreMtrrChange clears only E of 0x806
    assert old[1] == (0, 0xC06) and old[0] == (0, 0x000)


@pytest.mark.parametrize("edk2, calls", [("2023-05", 84), ("2023-11", 84), ("2024-02", 85)])
def test_cover_letter_count_by_edk2_release(edk2, calls):
    t = rp.boot_trace("ovmf", 8, VmConfig(noncoherent_dma=True), edk2=edk2)
    assert rp.replay(ERAS["v4.2"], t).zap_calls == calls


def test_unknown_edk2_release():
    with pytest.raises(MemTypeError) as e:
        Machine(edk2="2022-11").validate()
    assert e.value.field == "edk2" and "2023-05, 2023-11, 2024-02" in str(e.value)
