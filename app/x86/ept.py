"""EPT leaf entries and the effective memory type of a guest-physical access.

SDM "Memory Type Used for Translated Guest-Physical Addresses" (28.2.6.2 in the ~2016
edition, 29.3.7.2 in ~2023): with IPAT=1 the EPT type alone is used; with IPAT=0 the EPT
type takes the MTRR's place in the MTRR x PAT table. Guest and host MTRRs play no part.
"""

from __future__ import annotations

from dataclasses import dataclass

from .memtype import EPT_TYPES, LocLike, MemType, MemTypeError
from .paging import PageSize

T = MemType

# SDM "Effective Page-Level Memory Type for Pentium III and More Recent Processor Families"
# (Table 11-7 / 12-7), rows = MTRR (or EPT) type, columns = PAT type. Every cell is defined
# in editions from ~2009 on; the cells once marked implementation-defined are listed in
# FOOTNOTE_3. Written out cell by cell so a test can compare it with the docs' table.
COMBINE: dict[tuple[MemType, MemType], MemType] = {
    (T.UC, T.UC): T.UC, (T.UC, T.UC_MINUS): T.UC, (T.UC, T.WC): T.WC,
    (T.UC, T.WT): T.UC, (T.UC, T.WB): T.UC, (T.UC, T.WP): T.UC,
    (T.WC, T.UC): T.UC, (T.WC, T.UC_MINUS): T.WC, (T.WC, T.WC): T.WC,
    (T.WC, T.WT): T.UC, (T.WC, T.WB): T.WC, (T.WC, T.WP): T.UC,
    (T.WT, T.UC): T.UC, (T.WT, T.UC_MINUS): T.UC, (T.WT, T.WC): T.WC,
    (T.WT, T.WT): T.WT, (T.WT, T.WB): T.WT, (T.WT, T.WP): T.WP,
    (T.WB, T.UC): T.UC, (T.WB, T.UC_MINUS): T.UC, (T.WB, T.WC): T.WC,
    (T.WB, T.WT): T.WT, (T.WB, T.WB): T.WB, (T.WB, T.WP): T.WP,
    (T.WP, T.UC): T.UC, (T.WP, T.UC_MINUS): T.WC, (T.WP, T.WC): T.WC,
    (T.WP, T.WT): T.WT, (T.WP, T.WB): T.WP, (T.WP, T.WP): T.WP,
}

FOOTNOTE_3: frozenset[tuple[MemType, MemType]] = frozenset(
    {(T.WC, T.WT), (T.WC, T.WP), (T.WT, T.WP), (T.WP, T.UC_MINUS), (T.WP, T.WT)}
)
"""Cells undefined in the ~2008 edition, defined as shown from ~2009 on."""


def combine(mtrr: MemType, pat: MemType) -> MemType:
    """Effective type of an MTRR (or EPT) type with a PAT type (the 30-cell table)."""
    if mtrr == T.UC_MINUS:
        raise MemTypeError("mtrr", "UC- is not an MTRR or EPT type", "only PAT can select UC- (encoding 7)")
    return COMBINE[(mtrr, pat)]


def uc_snoop_note(mtrr: MemType, pat: MemType) -> str | None:
    """Footnotes 1 and 2: whether a UC result came from the MTRR/EPT side or from PAT."""
    if COMBINE[(mtrr, pat)] != T.UC:
        return None
    if mtrr == T.UC:
        return "UC from the MTRR/EPT type: the line was never cacheable, no snoop needed"
    return "UC from PAT: the CPU still snoops its caches in case of aliases"


def effective_type(ept_memtype: MemType, ipat: bool, pat: MemType) -> MemType:
    """Effective type of a guest access when the hardware CR0.CD is 0 (always so under KVM VMX)."""
    return ept_memtype if ipat else combine(ept_memtype, pat)


# -- the leaf entry --------------------------------------------------------------------

EPT_READ = 1 << 0
EPT_WRITE = 1 << 1
EPT_EXEC = 1 << 2
MT_SHIFT = 3
MT_MASK = 7 << MT_SHIFT
IPAT_BIT = 1 << 6
PAGE_SIZE_BIT = 1 << 7
ACCESSED_BIT = 1 << 8
DIRTY_BIT = 1 << 9


def mt_mask(memtype: MemType, ipat: bool) -> int:
    """The value vmx_get_mt_mask() returns: memtype << VMX_EPT_MT_EPTE_SHIFT | IPAT bit."""
    return int(memtype) << MT_SHIFT | (IPAT_BIT if ipat else 0)


def notation(memtype: MemType, ipat: bool) -> str:
    """Compact form for narrow tables, after Xen's EPT dump: `WB!` = WB with IPAT set."""
    return memtype.label + ("!" if ipat else "")


@dataclass(frozen=True, slots=True)
class EptField:
    """One named bit field of a leaf entry, for decoding and drawing."""

    name: str
    lo: int
    hi: int
    value: int
    meaning: str


@dataclass(frozen=True, slots=True)
class EptLeaf:
    """A leaf EPT entry (PTE, or PDE/PDPTE with bit 7 set)."""

    raw: int
    level: int = 1  # 1 = 4K PTE, 2 = 2M PDE, 3 = 1G PDPTE

    @classmethod
    def build(
        cls, hpa: int, memtype: MemType, ipat: bool, page_size: str = PageSize.SIZE_4K, *,
        rwx: int = 7, accessed: bool = True, dirty: bool = False,
    ) -> EptLeaf:
        size = PageSize(page_size)
        level = size.level
        raw = (hpa & ~(size.bytes - 1) & ((1 << 52) - 1)) | rwx | mt_mask(memtype, ipat)
        if level > 1:
            raw |= PAGE_SIZE_BIT
        if accessed:
            raw |= ACCESSED_BIT
        if dirty:
            raw |= DIRTY_BIT
        return cls(raw, level)

    @classmethod
    def decode(cls, raw: int, level: int | None = None, field: LocLike = "spte") -> EptLeaf:
        """A raw leaf as a tracepoint prints it; refuses what cannot be a leaf.

        Bit 7 (PS) marks a 2M/1G leaf in a PDE/PDPTE, so level 1 ignores it, and level 2 or 3
        without it is a non-leaf entry (whose bits 6:3 are reserved, SDM "EPT Paging
        Structures"). With PS set the level cannot be guessed (2M or 1G): it must be given.
        """
        if not 0 <= raw < 1 << 64:
            raise MemTypeError(field, f"{raw:#x} does not fit in 64 bits", "EPT entries are 64 bits wide")
        ps = bool(raw & PAGE_SIZE_BIT)
        if level is None:
            if ps:
                raise MemTypeError("level", "bit 7 (PS) is set: a 2M (level 2) or 1G (level 3) leaf; say which",
                                   "a large leaf's level is not encoded in the entry")
            level = 1
        if level not in (1, 2, 3):
            raise MemTypeError("level", f"level {level} is not a leaf level",
                               "EPT leaves are level 1 (4K), 2 (2M) or 3 (1G)")
        if level > 1 and not ps:
            raise MemTypeError("level", f"a level-{level} entry with bit 7 (PS) clear points to a table, not a page",
                               "only PDEs/PDPTEs with PS=1 are leaves")
        return cls(raw, level)

    @property
    def present(self) -> bool:
        return bool(self.raw & 7)

    @property
    def memtype_bits(self) -> int:
        return (self.raw & MT_MASK) >> MT_SHIFT

    @property
    def ipat(self) -> bool:
        return bool(self.raw & IPAT_BIT)

    @property
    def page_size(self) -> PageSize:
        return PageSize.of_level(self.level)

    def misconfig(self, exec_only_ok: bool = True) -> list[str]:
        """Why this leaf would cause an EPT misconfiguration (empty when fine).

        Only a present entry (any of R/W/X set) is checked by the CPU: a not-present one
        causes an EPT violation on access, never a misconfiguration.
        """
        if not self.present:
            return []
        errs = []
        mt = self.memtype_bits
        if mt not in EPT_TYPES:
            errs.append(f"memtype {mt} (bits 5:3) is reserved: EPT misconfiguration")
        xwr = self.raw & 7
        if xwr in (0b010, 0b110):
            errs.append(f"XWR={xwr:03b}: writable without readable is an EPT misconfiguration")
        if xwr == 0b100 and not exec_only_ok:
            errs.append("XWR=100: execute-only needs IA32_VMX_EPT_VPID_CAP bit 0")
        return errs

    def fields(self) -> list[EptField]:
        r = self.raw
        size = self.page_size.bytes
        addr_lo = size.bit_length() - 1
        mt = self.memtype_bits
        mt_name = MemType(mt).label if mt in EPT_TYPES else "reserved"
        out = [
            EptField("R", 0, 0, r & 1, "read access"),
            EptField("W", 1, 1, r >> 1 & 1, "write access"),
            EptField("X", 2, 2, r >> 2 & 1, "execute access (supervisor, with MBEC)"),
            EptField("MT", 3, 5, mt, f"EPT memory type {mt_name}"),
            EptField("IPAT", 6, 6, r >> 6 & 1, "ignore guest PAT" if r & IPAT_BIT else "guest PAT combines with MT"),
            EptField("PS", 7, 7, r >> 7 & 1, "leaf maps a large page" if r & PAGE_SIZE_BIT else "4 KiB leaf (PTE)"),
            EptField("A", 8, 8, r >> 8 & 1, "accessed (EPTP A/D enabled)"),
            EptField("D", 9, 9, r >> 9 & 1, "dirty (EPTP A/D enabled)"),
            EptField("XU", 10, 10, r >> 10 & 1, "user-mode execute (MBEC)"),
            EptField("ADDR", addr_lo, 51, (r & ((1 << 52) - 1)) >> addr_lo,
                     f"host-physical frame ({self.page_size} aligned)"),
            EptField("SVE", 63, 63, r >> 63 & 1, "suppress #VE"),
        ]
        return out
