"""Boot traces that follow the code of QEMU, the firmware (OVMF or SeaBIOS) and Linux.

Why this exists: the 2023 cover letter counted `kvm_zap_gfn_range()` calls during boot on a
v6.4 host with non-coherent DMA and the CD/NW quirk on: OVMF 84 / 164 and SeaBIOS 50 / 98 at
8 / 16 vCPUs. In that era every write of MTRRdefType zaps the whole guest and every other
MTRR write made while MTRRdefType.E=0 zaps nothing, so each figure is the number of
MTRRdefType writes, and those come from three writers, each modelled here from its own code
(restated, not copied):

* **QEMU** (`qemu_host_writes`, source "qemu"): `kvm_put_msrs()` (target/i386/kvm/kvm.c)
  puts IA32_PAT, MTRRdefType, the 11 fixed and the 8 PHYSBASE/PHYSMASK pairs of every vCPU
  through KVM_SET_MSRS, once at machine init (full state) and once more at the first system
  reset. KVM handles them in `kvm_mtrr_set_msr()` -> `update_mtrr()` like a guest WRMSR; they
  never show in a `kvm_msr` trace. All values are the reset values (0, PAT power-on), so
  E stays 0: 2 zaps per vCPU (the two MTRRdefType writes). QEMU sets CR0 = 0x60000010 with
  KVM_SET_SREGS, which does not go through `kvm_post_set_cr0()`: no event.
* **OVMF** (`ovmf_boot`, source "firmware"), edk2 UefiCpuPkg MtrrLib (`MtrrSetAllMtrrs`,
  `MtrrSetMemoryAttribute`, their MtrrLibPreMtrrChange/MtrrLibPostMtrrChange bracket: CR0.CD=1,
  MTRRdefType with E cleared, the MSRs, MTRRdefType restored, CR0.CD=0), MpInitLib (APs get
  the BSP's MTRRs with `MtrrSetAllMtrrs`), OvmfPkg PlatformInitLib (`QemuInitializeRam`,
  `PlatformQemuUc32BaseInitialization`) and CpuDxe (`SetMtrrsFromBuffer` after a cache
  attribute change). BSP: PEI `MtrrSetAllMtrrs` (fixed all WB, default WB), then
  `MtrrSetMemoryAttribute` of 0xA0000-0xFFFFF UC and of [Uc32Base, 4 GiB) UC, then in DXE the
  64-bit PCI aperture UC: 4 passes. Each AP: PEI sync, DXE sync, DXE `SetMtrrsFromBuffer`:
  3 passes. 2 zaps a pass: 6N+2.
* **SeaBIOS** (`seabios_boot`), src/fw/mtrr.c `mtrr_setup()` at commit b9c6a960: MTRRdefType
  := 0, the fixed MSRs (WB below 640K, UC 0xA0000-0xBFFFF, WP 0xC0000-0xFFFFF), all 8 pairs
  zeroed, pair 0 UC from `pcimem_start` to 4 GiB, MTRRdefType := E|FE|WB. `wrmsr_smp()`
  records every write and src/fw/smp.c makes each AP replay the list once. No CR0.CD bracket
  (the mode switch has already cleared CD): 2N.
* **Linux** (`linux_events`, source "linux"): Linux programs no MTRR ranges at boot; it
  re-syncs every CPU to the BSP: `cache_bp_init()` on the BSP, then `cache_aps_init()` runs
  the rendezvous on every CPU (arch/x86/kernel/cpu/cacheinfo.c, 6.2 and later;
  `mtrr_bp_init()`/`mtrr_aps_init()` in mtrr/mtrr.c before, the same passes). Each pass:
  CR0.CD=1, MTRRdefType := 0 (`mtrr_disable()` clears E, FE and the type), the ranges that
  differ from the BSP's (none after firmware that programs all CPUs alike), IA32_PAT := Linux's
  PAT (`pat_cpu_init()`), MTRRdefType restored, CR0.CD=0: N+1 passes, 2N+2 zaps.

So 8 vCPUs: OVMF 16 + 50 + 18 = 84, SeaBIOS 16 + 16 + 18 = 50; 16 vCPUs: 164 and 98.

Every vCPU starts at RESET (`RESET_STATE`: CR0.CD=NW=1, MTRRs zero, PAT power-on). The first
thing firmware does on each CPU is enter protected mode with CD and NW clear (the edk2 reset
vector and AP trampoline, SeaBIOS's `transition32`); that is one CR0 event per vCPU.

Layouts by machine and RAM (`Machine`): QEMU splits RAM at 4 GiB: q35 keeps 2 GiB low when
RAM >= 2.75 GiB (0xB0000000, the MMCONFIG base), pc 3 GiB when RAM >= 3.5 GiB, else all RAM
is low. OVMF's Uc32Base: pc rounds [low RAM top, 4 GiB) down to one power of two ending at
4 GiB; q35 uses 2 GiB when low RAM <= 2 GiB, else PcdPciExpressBaseAddress (0xB0000000,
two pairs). SeaBIOS's `pcimem_start` (src/hw/pciinit.c): q35 0xC0000000 (after MMCONFIG);
pc 0x80000000 up to 2 GiB of low RAM, 0xC0000000 up to 3 GiB, else the low-RAM top. OVMF's 64-bit
aperture is "dynamic" (edk2 2022-11 and later, the default): 2^(pb-3) bytes at
2^pb - 2^(pb-3) for pb = MAXPHYADDR; or "classic": 32 GiB at 32 GiB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..x86.memtype import MemType, MemTypeError
from ..x86.mtrr import (
    DEF_TYPE_E,
    FIXED_MSRS,
    KVM_NR_VAR_MTRR,
    MSR_MTRR_DEF_TYPE,
    MSR_MTRR_PHYSBASE0,
    PHYSMASK_V,
    MtrrState,
    phys_mask,
    range_to_pair,
)
from ..x86.pat import MSR_IA32_PAT, PAT_POWER_ON, Pat
from .layouts import DEF_TYPE_ON, OVMF_FIXED, SEABIOS_FIXED, WB_BYTES, MsrWrite
from .scenario import RAM, Cr0Write, Event, MemRange, MtrrWrite, PatWrite, VcpuState, VmConfig

GiB = 1 << 30

QEMU, FIRMWARE, LINUX, TRACE = "qemu", "firmware", "linux", "trace"
SOURCES = (QEMU, FIRMWARE, LINUX, TRACE)

LINUX_PAT = 0x0407050600070106
"""Linux's PAT (arch/x86/mm/pat/memtype.c `pat_bp_init()`): WB WC UC- UC WB WP UC- WT."""

RESET_STATE = VcpuState(cr0_cd=True, cr0_nw=True, cr0_pg=False, pat=Pat.from_msr(PAT_POWER_ON), mtrr=MtrrState())
"""A vCPU after RESET/INIT (SDM vol. 3 "Initialization"): CR0 = 0x60000010, so CD=1 and NW=1;
MTRRs all zero (MTRRdefType.E=0: UC everywhere); IA32_PAT at its power-on value."""

INITIAL_STATES = {"reset": RESET_STATE, "running": VcpuState()}
"""The named initial states the API and CLI offer (`initial`): RESET, or a running guest
with caching on and MTRRs off."""

MEMORY_PATTERN = r"^[1-9][0-9]{0,6}[KMGT]$"
"""RAM written as QEMU's -m takes it with a unit: '4G', '512M' (one definition: the API's
JSON schema uses it too)."""
_UNITS = {"K": 10, "M": 20, "G": 30, "T": 40}


def parse_memory(value: int | str, field: str = "memory") -> int:
    """Bytes from an integer or a size such as '4G' (binary units, as QEMU's -m)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise MemTypeError(field, f"{value!r} is not a size", "bytes as an integer, or a size such as '4G'")
    if isinstance(value, int):
        return value
    if not re.fullmatch(MEMORY_PATTERN, value):
        raise MemTypeError(field, f"{value!r} is not a size", "digits then K, M, G or T, such as '4G' or '512M'")
    return int(value[:-1]) << _UNITS[value[-1]]


MACHINES = ("q35", "pc")
APERTURES = ("dynamic", "classic")


@dataclass(frozen=True, slots=True)
class Edk2:
    """What changed in OVMF's early boot across edk2 releases (tianocore/edk2, read at the
    commits named):

    * `reset_vector_cd`: the reset vector's SEC_DEFAULT_CR0 (UefiCpuPkg/ResetVector/Vtf0
      Ia16/Real16ToFlat32, included by OvmfPkg/ResetVector) was 0x40000023, so the BSP ran
      SEC and early PEI with CR0.CD=1 (NW cleared) until MtrrLib's first
      MtrrLibPostMtrrChange() enabled caching; e8aa4c6546ad (2023-08-21, "Cache Disable
      should not be set by default in CR0", first in edk2-stable202311) made it 0x23.
    * `sec_mtrr_setup`: OvmfPkg/Sec SecMain.c `SecMtrrSetup()` (ce4c76e46d, 2024-01-23, first
      in edk2-stable202402) sets MTRRdefType E=1, type WB once on the BSP before the LZMA
      decompress, with no CD bracket (one more MTRRdefType write, so one more zap in
      v4.2..v6.10); PEI's `PlatformQemuInitializeRam` then starts from that value.

    APs are alike in every release: INIT leaves CR0 = 0x60000010 and the AP trampoline
    (MpInitLib MpFuncs.nasm) only ORs in PE|MP; the first C code, ApWakeupFunction() ->
    RestoreVolatileRegisters(), loads the BSP's CR0 (caching on by then)."""

    reset_vector_cd: bool
    sec_mtrr_setup: bool


EDK2_RELEASES = {
    "2023-05": Edk2(reset_vector_cd=True, sec_mtrr_setup=False),
    "2023-11": Edk2(reset_vector_cd=False, sec_mtrr_setup=False),
    "2024-02": Edk2(reset_vector_cd=False, sec_mtrr_setup=True),
}
"""OVMF behaviour by the first edk2-stable release (YYYY-MM) that has it. "2023-05" stands for
every release before edk2-stable202311, the 2023 review's build (and Debian 12's 2022.11);
it is the default so that the cover letter's counts come out with no options."""
EDK2_DEFAULT = "2023-05"


@dataclass(frozen=True, slots=True)
class Machine:
    """The QEMU machine a boot runs on: type, RAM size in bytes, guest phys-bits."""

    machine: str = "q35"
    memory: int = 4 * GiB
    maxphyaddr: int = 46
    aperture: str = "dynamic"
    edk2: str = EDK2_DEFAULT

    def validate(self) -> Machine:
        if self.edk2 not in EDK2_RELEASES:
            raise MemTypeError("edk2", f"unknown edk2 release {self.edk2!r}", f"one of {', '.join(EDK2_RELEASES)}")
        if self.machine not in MACHINES:
            raise MemTypeError("machine", f"unknown machine {self.machine!r}", f"one of {', '.join(MACHINES)}")
        if isinstance(self.memory, bool) or not isinstance(self.memory, int) or not 16 << 20 <= self.memory <= 1 << 44:
            raise MemTypeError("memory", f"{self.memory!r} bytes", "guest RAM is 16 MiB..16 TiB")
        if self.memory % (1 << 20):
            raise MemTypeError("memory", f"{self.memory:#x} is not a whole number of MiB", "QEMU sizes RAM in MiB")
        if not 36 <= self.maxphyaddr <= 52:
            raise MemTypeError("maxphyaddr", f"MAXPHYADDR {self.maxphyaddr} is outside 36..52",
                               "CPUID.80000008H:EAX[7:0] is 36..52")
        if self.aperture not in APERTURES:
            raise MemTypeError("aperture", f"unknown aperture {self.aperture!r}", f"one of {', '.join(APERTURES)}")
        if self.high_ram_end() > 1 << self.maxphyaddr:
            raise MemTypeError("memory", f"RAM ends at {self.high_ram_end():#x}, above 2^MAXPHYADDR",
                               "RAM must be addressable")
        return self

    def low_ram(self) -> int:
        """RAM below 4 GiB (QEMU pc_q35_init / pc_init1 split)."""
        split, cut = (0xB0000000, 2 * GiB) if self.machine == "q35" else (0xE0000000, 3 * GiB)
        return cut if self.memory >= split else self.memory

    def high_ram_end(self) -> int:
        return 4 * GiB + (self.memory - self.low_ram()) if self.memory > self.low_ram() else self.low_ram()

    def memory_map(self) -> tuple[MemRange, ...]:
        """QEMU's RAM memslots: below 640K, the RAM-backed ROM area, the rest of low RAM, high RAM."""
        low = self.low_ram()
        out = [MemRange(0, 0xA0000, RAM, "low RAM"), MemRange(0xC0000, 0x100000, RAM, "option ROMs and BIOS"),
               MemRange(0x100000, low, RAM, "RAM below 4 GiB")]
        if self.memory > low:
            out.append(MemRange(4 * GiB, self.high_ram_end(), RAM, "RAM above 4 GiB"))
        return tuple(out)

    def ovmf_uc32_base(self) -> int:
        low = self.low_ram()
        if self.machine == "q35":
            return 2 * GiB if low <= 2 * GiB else 0xB0000000
        size = 1 << ((4 * GiB - low).bit_length() - 1)
        return 4 * GiB - size

    def seabios_pcimem_start(self) -> int:
        if self.machine == "q35":
            return 0xC0000000
        # pci_setup() starts from RamSize, SeaBIOS's RAM *below 4 GiB*, and
        # i440fx_mem_addr_setup() rounds it up to 2 GiB or 3 GiB when it is at most that; above
        # 3 GiB it stays RamSize itself (measured: pc 4G -> 3 GiB, pc 3328M -> 0xD0000000;
        # tests/data/firmware_msrs.json).
        low = self.low_ram()
        return 0x80000000 if low <= 2 * GiB else 0xC0000000 if low <= 3 * GiB else low

    def ovmf_aperture(self) -> tuple[int, int]:
        if self.aperture == "classic":
            return 32 * GiB, 32 * GiB
        size = 1 << (self.maxphyaddr - 3)
        return (1 << self.maxphyaddr) - size, size


def blocks(start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) as the fewest naturally aligned power-of-two blocks, low to high (what
    MtrrLib needs for a range with no subtractive trick: [0xB0000000, 4G) is two)."""
    out = []
    while start < end:
        size = start & -start if start else 1 << (end.bit_length() - 1)
        while start + size > end:
            size >>= 1
        out.append((start, size))
        start += size
    return out


def _pairs(ranges: list[tuple[int, int]], maxphyaddr: int, first: int = 0) -> list[MsrWrite]:
    out: list[MsrWrite] = []
    for n, (s, size) in enumerate(ranges, first):
        p = range_to_pair(s, size, MemType.UC, maxphyaddr)
        out += [(MSR_MTRR_PHYSBASE0 + 2 * n, p.base), (MSR_MTRR_PHYSBASE0 + 2 * n + 1, p.mask)]
    return out


def _all_pairs(set_pairs: list[MsrWrite]) -> list[MsrWrite]:
    """All 16 PHYSBASE/PHYSMASK MSRs in order, the set ones with their values, others 0."""
    vals = dict(set_pairs)
    return [(m, vals.get(m, 0)) for m in range(MSR_MTRR_PHYSBASE0, MSR_MTRR_PHYSBASE0 + 2 * KVM_NR_VAR_MTRR)]


def _fixed(values: list[int]) -> list[MsrWrite]:
    """The 11 fixed-range MSRs in MSR order with these values."""
    return [(f.msr, x) for f, x in zip(FIXED_MSRS, values, strict=True)]


# -- one CPU's passes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One event of a boot, before it is given its place in a trace."""

    vcpu: int
    event: Event
    source: str


def _cr0(v: int, cd: bool, source: str) -> Step:
    return Step(v, Cr0Write(value=cd, cr0_nw=False), source)


def _wr(v: int, msr: int, value: int, source: str) -> Step:
    if msr == MSR_IA32_PAT:
        return Step(v, PatWrite(value=value), source)
    return Step(v, MtrrWrite(msr=msr, value=value), source)


def mtrrlib_pass(v: int, deftype_before: int, writes: list[MsrWrite], deftype_after: int) -> list[Step]:
    """MtrrLibPreMtrrChange / the writes / MtrrLibPostMtrrChange on one CPU: CR0.CD=1,
    MTRRdefType with only E cleared (FE and the type kept), the MSRs, MTRRdefType, CR0.CD=0."""
    out = [_cr0(v, True, FIRMWARE), _wr(v, MSR_MTRR_DEF_TYPE, deftype_before & ~DEF_TYPE_E, FIRMWARE)]
    out += [_wr(v, m, x, FIRMWARE) for m, x in writes]
    out += [_wr(v, MSR_MTRR_DEF_TYPE, deftype_after, FIRMWARE), _cr0(v, False, FIRMWARE)]
    return out


def qemu_host_writes(vcpus: int) -> list[Step]:
    """QEMU's KVM_SET_MSRS at machine init and at reset, per vCPU (see the module doc)."""
    one = [(MSR_IA32_PAT, PAT_POWER_ON), (MSR_MTRR_DEF_TYPE, 0)] + _fixed([0] * len(FIXED_MSRS)) + _all_pairs([])
    return [_wr(v, m, x, QEMU) for _ in range(2) for v in range(vcpus) for m, x in one]


def ovmf_firmware(vcpus: int, m: Machine) -> list[Step]:
    """OVMF's passes, in boot order (module doc): BSP PEI x3, APs PEI, APs DXE, BSP DXE, APs DXE."""
    rel = EDK2_RELEASES[m.edk2]
    # The reset vector's CR0 on the BSP (CD kept or cleared, NW cleared); each AP's CR0 from
    # RestoreVolatileRegisters() (the BSP's, caching on) comes before its first pass.
    out: list[Step] = [Step(0, Cr0Write(value=rel.reset_vector_cd, cr0_nw=False), FIRMWARE)]
    out += [_cr0(v, False, FIRMWARE) for v in range(1, vcpus)]
    start = 0
    if rel.sec_mtrr_setup:                                          # SecMtrrSetup(): E=1, WB
        start = DEF_TYPE_E | MemType.WB
        out.append(_wr(0, MSR_MTRR_DEF_TYPE, start, FIRMWARE))
    hole32 = _pairs(blocks(m.ovmf_uc32_base(), 4 * GiB), m.maxphyaddr)
    aperture = _pairs([m.ovmf_aperture()], m.maxphyaddr, first=len(hole32) // 2)
    pei = _fixed(OVMF_FIXED) + _all_pairs(hole32)                   # what the BSP has after PEI
    final = _fixed(OVMF_FIXED) + _all_pairs(hole32 + aperture)      # ... and after DXE
    on = DEF_TYPE_ON
    out += mtrrlib_pass(0, start, _fixed([WB_BYTES] * len(FIXED_MSRS)) + _all_pairs([]), on)  # MtrrSetAllMtrrs
    out += mtrrlib_pass(0, on, _fixed(OVMF_FIXED)[2:], on)          # MtrrSetMemoryAttribute(640K-1M, UC)
    out += mtrrlib_pass(0, on, hole32, on)                          # MtrrSetMemoryAttribute(Uc32Base-4G, UC)
    for v in range(1, vcpus):                                       # CpuMpPei: APs take the BSP's MTRRs
        out += mtrrlib_pass(v, 0, pei, on)
    for v in range(1, vcpus):                                       # CpuDxe MpInitLibInitialize: again
        out += mtrrlib_pass(v, on, pei, on)
    out += mtrrlib_pass(0, on, aperture, on)                        # 64-bit aperture UC (DXE)
    for v in range(1, vcpus):                                       # CpuDxe SetMtrrsFromBuffer
        out += mtrrlib_pass(v, on, final, on)
    return out


def seabios_firmware(vcpus: int, m: Machine) -> list[Step]:
    """`mtrr_setup()` on the BSP, the recorded list replayed by each AP (module doc)."""
    start = m.seabios_pcimem_start()
    # mtrr_setup() writes pair 0 as base = pcimem_start | UC and mask = -(4G - pcimem_start)
    # within phys-bits, whatever the size: for a low-RAM top that is no power of two away
    # from 4 GiB (pc, 3328M: 0xD0000000) the mask has a hole (0xffd0000800 at 40 bits), which
    # the SDM's AND-match and KVM's var_mtrr_range() read differently.
    hole = [(MSR_MTRR_PHYSBASE0, start | MemType.UC),
            (MSR_MTRR_PHYSBASE0 + 1, (-(4 * GiB - start)) & phys_mask(m.maxphyaddr) | PHYSMASK_V)]
    seq = [(MSR_MTRR_DEF_TYPE, 0)] + _fixed(SEABIOS_FIXED) + _all_pairs([]) + hole \
        + [(MSR_MTRR_DEF_TYPE, DEF_TYPE_ON)]
    out: list[Step] = []
    for v in range(vcpus):
        out.append(_cr0(v, False, FIRMWARE))
        out += [_wr(v, msr, x, FIRMWARE) for msr, x in seq]
    return out


def linux_events(vcpus: int, deftype: int = DEF_TYPE_ON) -> list[Step]:
    """Linux's boot re-sync: `cache_bp_init()` on the BSP, then `cache_aps_init()` on every CPU."""
    out: list[Step] = []
    for v in [0] + list(range(vcpus)):
        out += [_cr0(v, True, LINUX), _wr(v, MSR_MTRR_DEF_TYPE, 0, LINUX), _wr(v, MSR_IA32_PAT, LINUX_PAT, LINUX),
                _wr(v, MSR_MTRR_DEF_TYPE, deftype, LINUX), _cr0(v, False, LINUX)]
    return out


FIRMWARE_PASSES = {"ovmf": ovmf_firmware, "seabios": seabios_firmware}


def boot_steps(firmware: str, vcpus: int, m: Machine, *, linux: bool = True, qemu: bool = True) -> list[Step]:
    """Every event of a boot in order: QEMU's host writes, the firmware's passes, Linux's."""
    m.validate()
    out = qemu_host_writes(vcpus) if qemu else []
    out += FIRMWARE_PASSES[firmware](vcpus, m)
    if linux:
        out += linux_events(vcpus)
    return out


def events_by_source(sources) -> dict[str, int]:
    """How many of these events each source made (every source listed, 0 when none)."""
    out = dict.fromkeys(SOURCES, 0)
    for src in sources:
        out[src] += 1
    return out


def boot_vm(vm: VmConfig, m: Machine, own_map: bool) -> VmConfig:
    """The VM a boot runs on: `vm`'s knobs, the machine's MAXPHYADDR and (unless the caller
    gave a memory map) the machine's RAM memslots."""
    if own_map:
        return replace(vm, maxphyaddr=m.maxphyaddr)
    return replace(vm, maxphyaddr=m.maxphyaddr, memory_map=m.memory_map())


__all__ = [
    "APERTURES", "EDK2_DEFAULT", "EDK2_RELEASES", "Edk2", "FIRMWARE", "INITIAL_STATES", "LINUX", "LINUX_PAT",
    "MACHINES", "Machine", "QEMU",
    "OVMF_FIXED", "RESET_STATE", "SEABIOS_FIXED", "SOURCES", "Step", "TRACE", "blocks", "boot_steps", "boot_vm",
    "events_by_source", "linux_events", "qemu_host_writes",
]
