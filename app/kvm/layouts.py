"""Guest MTRR layouts that firmware and Linux program, as MSR writes and as states.

OVMF's layout is Sean Christopherson's description in the 2023 review
(L(ZG5VlRzJkcwo9Qju@google.com)): default WB; fixed 0-0x9FFFF WB and 0xA0000-0xFFFFF UC;
one variable range 0x80000000-0x100000000 UC (the 32-bit PCI hole). A Linux guest later adds
0x800000000-0x1000000000 UC (its 64-bit PCI hole). The SeaBIOS-like layout is our
assumption (the docs give none): WB below 640K, UC VGA window, WP option-ROM area, default
WB with the top 1 GiB below 4 GiB UC. Writes are listed in the order firmware issues them.
"""

from __future__ import annotations

from ..x86.memtype import MemType
from ..x86.mtrr import (
    FIXED_MSRS,
    MSR_MTRR_DEF_TYPE,
    MSR_MTRR_PHYSBASE0,
    MtrrState,
    range_to_pair,
)

WB_BYTES = 0x0606060606060606
UC_BYTES = 0x0
WP_BYTES = 0x0505050505050505

MsrWrite = tuple[int, int]

OVMF_FIXED = [WB_BYTES, WB_BYTES] + [UC_BYTES] * 9
"""OVMF's fixed ranges, in MSR order: WB 0-0x9FFFF, UC 0xA0000-0xFFFFF."""
SEABIOS_FIXED = [WB_BYTES, WB_BYTES, UC_BYTES] + [WP_BYTES] * 8
"""SeaBIOS's (RAM >= 1 MiB), in MSR order: WB below 640K, UC 0xA0000-0xBFFFF, WP 0xC0000-0xFFFFF."""


def _var_writes(n: int, start: int, size: int, t: MemType, maxphyaddr: int) -> list[MsrWrite]:
    pair = range_to_pair(start, size, t, maxphyaddr)
    return [(MSR_MTRR_PHYSBASE0 + 2 * n, pair.base), (MSR_MTRR_PHYSBASE0 + 2 * n + 1, pair.mask)]


def ovmf_writes(maxphyaddr: int = 46) -> list[MsrWrite]:
    """Fixed then variable MSRs, without the MTRRdefType disable/enable around them."""
    fixed = [(f.msr, v) for f, v in zip(FIXED_MSRS, OVMF_FIXED, strict=True)]
    return fixed + _var_writes(0, 0x80000000, 0x80000000, MemType.UC, maxphyaddr)


def seabios_writes(maxphyaddr: int = 46) -> list[MsrWrite]:
    fixed = [(f.msr, v) for f, v in zip(FIXED_MSRS, SEABIOS_FIXED, strict=True)]
    return fixed + _var_writes(0, 0xC0000000, 0x40000000, MemType.UC, maxphyaddr)


def linux_hole_writes(maxphyaddr: int = 46, pair: int = 1) -> list[MsrWrite]:
    """The variable pair a Linux guest adds for its 64-bit PCI hole (32 GiB at 32 GiB)."""
    return _var_writes(pair, 0x800000000, 0x800000000, MemType.UC, maxphyaddr)


DEF_TYPE_ON = 0xC06   # E | FE | WB
DEF_TYPE_OFF = 0x006  # E=0, default WB remembered


def state_from_writes(writes: list[MsrWrite], maxphyaddr: int, def_type: int = DEF_TYPE_ON) -> MtrrState:
    s = MtrrState()
    for msr, value in writes:
        s = s.write_msr(msr, value, maxphyaddr)
    return s.write_msr(MSR_MTRR_DEF_TYPE, def_type, maxphyaddr)


def ovmf_state(maxphyaddr: int = 46, linux: bool = False) -> MtrrState:
    w = ovmf_writes(maxphyaddr) + (linux_hole_writes(maxphyaddr) if linux else [])
    return state_from_writes(w, maxphyaddr)


def seabios_state(maxphyaddr: int = 46, linux: bool = False) -> MtrrState:
    w = seabios_writes(maxphyaddr) + (linux_hole_writes(maxphyaddr) if linux else [])
    return state_from_writes(w, maxphyaddr)


LAYOUTS = {
    "ovmf": ovmf_state,
    "seabios": seabios_state,
}
