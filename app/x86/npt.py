"""AMD nested page table (NPT) entries: the bits, and the host PAT entry they select.

AMD64 APM vol 2, "Nested Paging" (section 15.25; "Combining Memory Types, MTRRs" is
15.25.8 in the editions Xen's issue 88 cites): a nested page table entry has the
ordinary long-mode PTE format. Its PWT (bit 3), PCD (bit 4) and PAT bit (bit 7 in a
4 KiB PTE, bit 12 in a 2 MiB/1 GiB leaf, where bit 7 is PS) select an entry of the
*host* PAT, exactly as for a host page table (app.x86.pat, one definition of that rule).
There is no memory-type field and no IPAT bit: the type the guest finally gets is the
host's (host PAT entry combined with the host MTRRs) combined with the guest's own
(gPAT, VMCB `g_pat`, with the guest page tables). That combining table is not modelled
here, so nothing in this module names an effective memory type.

The entry format is exactly the long-mode one (APM vol 2 figures "4-Kbyte PTE-Long Mode"
and the PML4E/PDPE/PDE ones, as tandasat's "Hypervisor 101 in Rust", nested paging
structure entries, lists them). Bit names as the kernel spells them for its own PTEs
(arch/x86/kvm/mmu.h `PT_*_MASK`, `PT64_NX_MASK`; read in KT0511/linux-6.16.1 30b97c8a1).

On a host with SME active, KVM ORs the C-bit into every non-MMIO leaf (svm.c
`kvm_mmu_set_me_spte_mask(sme_me_mask, sme_me_mask)`, spte.c `make_spte`: `shadow_me_value`).
The C-bit sits among the address bits (its position is CPUID Fn8000_001F EBX[5:0]), so it
shows inside ADDR and `hpa`; nothing here knows where it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ept import EptField
from .memtype import LocLike, MemTypeError
from .paging import PageSize
from .pat import PAT_BIT_4K, PAT_BIT_LARGE, PCD_BIT, PWT_BIT, Pat, index_to_pte_bits, pte_bits_to_index

PRESENT = 1 << 0
WRITABLE = 1 << 1
USER = 1 << 2
PWT = 1 << PWT_BIT
PCD = 1 << PCD_BIT
ACCESSED = 1 << 5
DIRTY = 1 << 6
PAGE_SIZE = 1 << 7
GLOBAL = 1 << 8
NX = 1 << 63
ADDR_BITS = 52  # long-mode physical addresses are at most 52 bits


@dataclass(frozen=True, slots=True)
class NptEntry:
    """A nested page table entry at `level` (1 = PTE, 2 = PDE, 3 = PDPTE, 4/5 above)."""

    raw: int
    level: int = 1

    @classmethod
    def build(
        cls, hpa: int, level: int = 1, *, pat_index: int = 0, writable: bool = True, user: bool = True,
        accessed: bool = True, dirty: bool = False, nx: bool = False,
    ) -> NptEntry:
        """A present leaf mapping `hpa` at `level` (1 = 4K, 2 = 2M, 3 = 1G), selecting host PAT
        entry `pat_index` (app.x86.pat.index_to_pte_bits places the PAT bit for the size).

        KVM's own NPT leaves select entry 0 (spte.c comment at `shadow_memtype_mask = 0` in
        kvm_mmu_reset_all_pte_masks(), sndrzt/linux-6.8: "KVM uses PAT entry '0' to encode WB").
        """
        if level not in (1, 2, 3):
            raise MemTypeError("level", f"level {level} is not a leaf level",
                               "NPT leaves are level 1 (4K), 2 (2M) or 3 (1G)")
        size = 1 << (12 + 9 * (level - 1))
        raw = (hpa & ((1 << ADDR_BITS) - 1) & ~(size - 1)) | PRESENT | index_to_pte_bits(pat_index, level > 1)
        for flag, bit in ((writable, WRITABLE), (user, USER), (accessed, ACCESSED), (dirty, DIRTY), (nx, NX)):
            if flag:
                raw |= bit
        if level > 1:
            raw |= PAGE_SIZE
        return cls(raw, level)

    @classmethod
    def decode(cls, raw: int, level: int, field: LocLike = "spte") -> NptEntry:
        if not 0 <= raw < 1 << 64:
            raise MemTypeError(field, f"{raw:#x} does not fit in 64 bits", "NPT entries are 64 bits wide")
        if level not in (1, 2, 3, 4, 5):
            raise MemTypeError("level", f"level {level} is not a paging level", "x86 paging has levels 1 to 5")
        if level > 3 and raw & PRESENT and raw & PAGE_SIZE:
            raise MemTypeError("level", f"a present level-{level} entry with bit 7 (PS) set",
                               "PS is reserved above level 3: the largest page is 1 GiB")
        return cls(raw, level)

    @property
    def present(self) -> bool:
        return bool(self.raw & PRESENT)

    @property
    def leaf(self) -> bool:
        """A PTE, or a PDE/PDPTE with PS set; otherwise the entry points to a table."""
        return self.level == 1 or (self.level <= 3 and bool(self.raw & PAGE_SIZE))

    @property
    def large(self) -> bool:
        return self.level > 1 and self.leaf

    @property
    def pat_bit(self) -> int:
        """Where the PAT bit of this leaf is: 7 in a PTE, 12 in a large leaf."""
        return PAT_BIT_LARGE if self.large else PAT_BIT_4K

    @property
    def host_pat_index(self) -> int:
        """The host PAT entry the leaf selects: 4*PAT + 2*PCD + PWT."""
        return pte_bits_to_index(self.raw, self.large)

    @property
    def page_size(self) -> PageSize | None:
        return PageSize.of_level(self.level) if self.leaf else None

    @property
    def hpa(self) -> int:
        """The host-physical address of the page (leaf) or of the next table."""
        size = 1 << (12 + 9 * (self.level - 1)) if self.large else 1 << 12
        mask = ((1 << ADDR_BITS) - 1) & ~(size - 1)
        return self.raw & mask

    def permissions(self) -> str:
        """`r` when present, `w` RW, `x` unless NX, `u` US (the order of kvm_mmu_set_spte)."""
        r = self.raw
        if not r & PRESENT:
            return "----"
        return "r" + ("w" if r & WRITABLE else "-") + ("-" if r & NX else "x") + ("u" if r & USER else "-")

    def host_pat_type(self, host_pat: Pat) -> str:
        """The type of the selected host PAT entry: one input of the combination, not its result."""
        return host_pat[self.host_pat_index].label

    def fields(self) -> list[EptField]:
        r = self.raw
        out = [
            EptField("P", 0, 0, r & 1, "present"),
            EptField("RW", 1, 1, r >> 1 & 1, "writable"),
            EptField("US", 2, 2, r >> 2 & 1, "user (the TDP MMU sets it on every leaf: make_spte with ACC_ALL)"),
            EptField("PWT", 3, 3, r >> 3 & 1, "host PAT index bit 0"),
            EptField("PCD", 4, 4, r >> 4 & 1, "host PAT index bit 1"),
            EptField("A", 5, 5, r >> 5 & 1, "accessed"),
        ]
        if self.leaf:
            out.append(EptField("D", 6, 6, r >> 6 & 1, "dirty"))
        if self.level == 1:
            out.append(EptField("PAT", 7, 7, r >> 7 & 1, "host PAT index bit 2"))
        else:
            out.append(EptField("PS", 7, 7, r >> 7 & 1, "leaf maps a large page" if self.leaf
                                else "points to a table"))
        if self.leaf:
            out.append(EptField("G", 8, 8, r >> 8 & 1, "global"))
        if self.large:
            out.append(EptField("PAT", 12, 12, r >> 12 & 1, "host PAT index bit 2 (large leaf)"))
        lo = 21 + 9 * (self.level - 2) if self.large else 12
        out.append(EptField("ADDR", lo, 51, (r & ((1 << 52) - 1)) >> lo,
                            f"host-physical {'page' if self.leaf else 'table'} frame (with the C-bit on SME hosts)"))
        out.append(EptField("NX", 63, 63, r >> 63 & 1, "no execute"))
        return out
