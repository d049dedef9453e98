"""IA32_PAT (MSR 0x277): the 8 page-attribute entries and how a PTE selects one.

SDM "Page Attribute Table (PAT)" (11.12 in the ~2016 edition): PAn lives in bits 8n+2:8n
with bits 8n+7:8n+3 reserved; a PTE selects PA(4*PAT + 2*PCD + PWT), where PWT is bit 3,
PCD bit 4 and PAT bit 7 of a 4 KiB PTE or bit 12 of a 2 MiB/1 GiB (or 4 MiB) leaf.
"""

from __future__ import annotations

from dataclasses import dataclass

from .memtype import LocLike, MemType, MemTypeError, as_loc, pat_type

MSR_IA32_PAT = 0x277

PAT_POWER_ON = 0x0007040600070406
"""Reset value (SDM Table "IA32_PAT MSR after power-up or reset"); KVM's MSR_IA32_CR_PAT_DEFAULT."""
PAT_LINUX = 0x0407050600070106
"""Current Linux guest: WB, WC, UC-, UC, WB, WP, UC-, WT (PA1=WC, PA5=WP, PA7=WT; arch/x86/mm/pat)."""
PAT_LINUX_LEGACY = 0x0007010600070106
"""Older Linux and Xen PV layout: PA1 = PA5 = WC, the rest as at power-on."""

PAT_PRESETS: dict[str, int] = {
    "power-on": PAT_POWER_ON,
    "linux": PAT_LINUX,
    "linux-legacy": PAT_LINUX_LEGACY,
}

PWT_BIT = 3
PCD_BIT = 4
PAT_BIT_4K = 7
PAT_BIT_LARGE = 12


@dataclass(frozen=True, slots=True)
class Pat:
    """A validated IA32_PAT value."""

    entries: tuple[MemType, ...]

    @classmethod
    def from_msr(cls, value: int, field: LocLike = "pat") -> Pat:
        """Parse the 64-bit MSR; any reserved bit or encoding is refused (WRMSR #GP)."""
        if not 0 <= value < 1 << 64:
            raise MemTypeError(field, f"value {value:#x} does not fit in 64 bits", "IA32_PAT is a 64-bit MSR")
        entries = []
        for n in range(8):
            byte = (value >> (8 * n)) & 0xFF
            if byte not in (0, 1, 4, 5, 6, 7):
                raise MemTypeError(
                    field,
                    f"PAT entry {n} has reserved type {byte}",
                    "each PAT byte must be 0, 1, 4, 5, 6 or 7 (SDM 11.12.2); WRMSR raises #GP",
                )
            entries.append(pat_type(byte, (*as_loc(field), n)))
        return cls(tuple(entries))

    def to_msr(self) -> int:
        return sum(int(t) << (8 * n) for n, t in enumerate(self.entries))

    def __getitem__(self, index: int) -> MemType:
        return self.entries[index]

    def hex(self) -> str:
        return f"{self.to_msr():#018x}"


def pat_index(pwt: bool, pcd: bool, pat: bool) -> int:
    """The PAT entry a paging-structure leaf selects: 4*PAT + 2*PCD + PWT."""
    return (4 if pat else 0) | (2 if pcd else 0) | (1 if pwt else 0)


def pte_bits_to_index(pte: int, large: bool = False) -> int:
    """PAT index from a raw leaf entry; the PAT bit moves to bit 12 in 2M/1G leaves."""
    pat_bit = PAT_BIT_LARGE if large else PAT_BIT_4K
    return pat_index(bool(pte >> PWT_BIT & 1), bool(pte >> PCD_BIT & 1), bool(pte >> pat_bit & 1))


def index_to_pte_bits(index: int, large: bool = False) -> int:
    """The PWT/PCD/PAT bits a leaf needs to select `index` (the inverse of the above)."""
    if not 0 <= index < 8:
        raise MemTypeError("pat_index", f"PAT index {index} is outside 0..7", "PAT has 8 entries")
    pat_bit = PAT_BIT_LARGE if large else PAT_BIT_4K
    return ((index & 1) << PWT_BIT) | ((index >> 1 & 1) << PCD_BIT) | ((index >> 2 & 1) << pat_bit)


def pte_flags_text(index: int) -> str:
    """Human form of the selecting bits, e.g. 'PAT=1 PCD=0 PWT=1'."""
    return f"PAT={index >> 2 & 1} PCD={index >> 1 & 1} PWT={index & 1}"
