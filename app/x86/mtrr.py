"""Guest MTRRs as the SDM defines them: register layouts, WRMSR checks, the type lookup.

The MSRs (IA32_MTRRCAP, MTRRdefType, the 11 fixed-range MSRs, PHYSBASEn/PHYSMASKn), the
bits WRMSR refuses with #GP (SDM "MTRR Considerations", 11.11.2 in the ~2016 edition),
and `sdm_lookup`, the architecture's precedence rules (11.11.4.1 "MTRR Precedences"):
what the guest expects on bare metal. The state holds raw MSR values as the guest wrote
them; VCNT and MTRRcap are the values KVM reports, since this register file is a vCPU's.

What KVM itself does with these registers (its sorted list of variable ranges, its
var_mtrr_range(), its lookup and huge-page check, the range update_mtrr() zaps) is in
app/kvm/mtrr.py, after arch/x86/kvm/mtrr.c.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from ..frozen import maker
from .memtype import MTRR_TYPES, LocLike, MemType, MemTypeError, as_loc, located, mtrr_type

MSR_MTRRCAP = 0xFE
MSR_MTRR_DEF_TYPE = 0x2FF
MSR_MTRR_PHYSBASE0 = 0x200
KVM_NR_VAR_MTRR = 8
KVM_MTRRCAP = 0x500 | KVM_NR_VAR_MTRR
"""What KVM returns for IA32_MTRRCAP: VCNT=8, FIX (bit 8) and WC (bit 10), no SMRR."""
MTRR_MSRS_RULE = "MTRR MSRs: 0x200-0x20f, 0x250, 0x258, 0x259, 0x268-0x26f, 0x2ff"

DEF_TYPE_FE = 1 << 10
DEF_TYPE_E = 1 << 11
DEF_TYPE_VALID_BITS = 0xCFF
PHYSMASK_V = 1 << 11
ONE_MIB = 0x100000
PAGE = 0x1000

_U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class FixedMsr:
    """One fixed-range MSR: 8 sub-ranges of `unit` bytes from `start`."""

    msr: int
    name: str
    start: int
    unit: int

    @property
    def end(self) -> int:
        return self.start + 8 * self.unit


FIXED_MSRS: tuple[FixedMsr, ...] = (
    FixedMsr(0x250, "MTRRfix64K_00000", 0x00000, 0x10000),
    FixedMsr(0x258, "MTRRfix16K_80000", 0x80000, 0x4000),
    FixedMsr(0x259, "MTRRfix16K_A0000", 0xA0000, 0x4000),
    *(FixedMsr(0x268 + k, f"MTRRfix4K_{0xC0000 + k * 0x8000:05X}", 0xC0000 + k * 0x8000, 0x1000) for k in range(8)),
)
FIXED_MSR_SLOT: dict[int, int] = {f.msr: i for i, f in enumerate(FIXED_MSRS)}


@dataclass(frozen=True, slots=True)
class FixedRange:
    """One of the 88 fixed sub-ranges; `index` is KVM's flat fixed_ranges[] index."""

    index: int
    start: int
    end: int
    msr: int
    byte: int


FIXED_RANGES: tuple[FixedRange, ...] = tuple(
    FixedRange(slot * 8 + b, f.start + b * f.unit, f.start + (b + 1) * f.unit, f.msr, b)
    for slot, f in enumerate(FIXED_MSRS)
    for b in range(8)
)


def fixed_index(addr: int) -> int:
    """Flat index (0..87) of the fixed sub-range holding `addr` (< 1 MiB)."""
    if not 0 <= addr < ONE_MIB:
        raise ValueError(f"{addr:#x} is not below 1 MiB")
    if addr < 0x80000:
        return addr >> 16
    if addr < 0xC0000:
        return 8 + ((addr - 0x80000) >> 14)
    return 24 + ((addr - 0xC0000) >> 12)


_VAR_MSR_END = MSR_MTRR_PHYSBASE0 + 2 * KVM_NR_VAR_MTRR
"""PHYSBASE0 .. PHYSMASK7 are [MSR_MTRR_PHYSBASE0, _VAR_MSR_END)."""


def var_msr_index(msr: int) -> tuple[int, bool] | None:
    """(pair n, is_mask) for PHYSBASEn/PHYSMASKn MSRs, None otherwise."""
    if MSR_MTRR_PHYSBASE0 <= msr < _VAR_MSR_END:
        off = msr - MSR_MTRR_PHYSBASE0
        return off // 2, bool(off & 1)
    return None


def is_mtrr_msr(msr: int) -> bool:
    # (the variable MSRs' bounds compared here, not through var_msr_index: every write asks)
    return msr == MSR_MTRR_DEF_TYPE or msr in FIXED_MSR_SLOT or MSR_MTRR_PHYSBASE0 <= msr < _VAR_MSR_END


def msr_name(msr: int) -> str:
    if msr == MSR_MTRR_DEF_TYPE:
        return "MTRRdefType"
    if msr in FIXED_MSR_SLOT:
        return FIXED_MSRS[FIXED_MSR_SLOT[msr]].name
    v = var_msr_index(msr)
    if v is not None:
        return f"MTRRphys{'Mask' if v[1] else 'Base'}{v[0]}"
    if msr == MSR_MTRRCAP:
        return "MTRRcap"
    if msr == 0x277:
        return "PAT"
    return f"MSR {msr:#x}"


def phys_mask(maxphyaddr: int) -> int:
    """Bits MAXPHYADDR-1:12, the address bits a PHYSBASE/PHYSMASK pair may use."""
    return ((1 << maxphyaddr) - 1) & ~(PAGE - 1)


@dataclass(frozen=True, slots=True)
class VarMtrr:
    """A PHYSBASEn/PHYSMASKn pair as raw MSR values.

    `mask_written` is False for a pair whose mask MSR was never written: KVM then holds 0
    (not the reserved-bit-filled value a write stores), which matters for the zap range.
    """

    base: int = 0
    mask: int = 0
    mask_written: bool = True

    @property
    def type(self) -> int:
        return self.base & 0xFF

    @property
    def valid(self) -> bool:
        return bool(self.mask & PHYSMASK_V)

    def sdm_matches(self, addr: int, maxphyaddr: int) -> bool:
        """SDM match: V set and (addr & mask) == (base & mask) over bits MAXPHYADDR-1:12."""
        m = self.mask & phys_mask(maxphyaddr)
        return self.valid and (addr & m) == (self.base & m)

    def sdm_blocks(self, maxphyaddr: int, limit: int = 4096,
                   field: LocLike = ("mtrr", "variable")) -> list[tuple[int, int]]:
        """The address blocks this pair matches per the SDM (several if the mask has holes);
        more than `limit` is refused at `field`."""
        m = self.mask & phys_mask(maxphyaddr)
        top = 1 << maxphyaddr
        if m == 0:
            return [(0, top)]
        low = (m & -m).bit_length() - 1  # lowest set mask bit: block size 2**low
        size = 1 << low
        free = [b for b in range(low, maxphyaddr) if not m >> b & 1]
        if 1 << len(free) > limit:
            raise MemTypeError(
                field,
                f"mask {self.mask:#x} has holes that split the range into {1 << len(free)} blocks",
                f"at most {limit} blocks can be mapped",
            )
        fixed_bits = self.base & m
        blocks = []
        for combo in range(1 << len(free)):
            a = fixed_bits
            for i, b in enumerate(free):
                if combo >> i & 1:
                    a |= 1 << b
            blocks.append((a, a + size))
        return sorted(blocks)


@dataclass(frozen=True, slots=True)
class MtrrState:
    """One vCPU's guest MTRR MSRs (raw values, as the guest wrote them)."""

    def_type: int = 0
    fixed: tuple[int, ...] = (0,) * 11
    variable: tuple[VarMtrr, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.def_type & DEF_TYPE_E)

    @property
    def fixed_enabled(self) -> bool:
        return bool(self.def_type & DEF_TYPE_FE)

    @property
    def default_type(self) -> MemType:
        return MemType(self.def_type & 0xFF)

    def fixed_type(self, index: int) -> MemType:
        return MemType(self.fixed[index // 8] >> (8 * (index % 8)) & 0xFF)

    def pair(self, n: int) -> VarMtrr:
        return self.variable[n] if n < len(self.variable) else VarMtrr(0, 0, mask_written=False)

    # -- validation: what WRMSR would #GP on (SDM 11.11.2; kvm_mtrr_valid()) ----------
    def validate(self, maxphyaddr: int, field: LocLike = "mtrr", vcnt: int = KVM_NR_VAR_MTRR) -> MtrrState:
        """Refuse what WRMSR would #GP on; locations are relative to this state, under `field`."""
        with located(*as_loc(field)):
            self._check(maxphyaddr, vcnt)
        return self

    def _check(self, maxphyaddr: int, vcnt: int) -> None:
        check_def_type(self.def_type, "def_type")
        if len(self.fixed) != len(FIXED_MSRS):
            raise MemTypeError("fixed", f"{len(self.fixed)} values given", "there are 11 fixed-range MSRs")
        for slot, value in enumerate(self.fixed):
            check_fixed(value, ("fixed", slot))
        if len(self.variable) > vcnt:
            raise MemTypeError(
                "variable",
                f"{len(self.variable)} variable ranges given, more than VCNT={vcnt}",
                "KVM reports IA32_MTRRCAP.VCNT = 8",
            )
        for n, pair in enumerate(self.variable):
            check_physbase(pair.base, maxphyaddr, ("variable", n, "base"))
            check_physmask(pair.mask, maxphyaddr, ("variable", n, "mask"))

    # -- writes, as KVM stores them -----------------------------------------------------
    def read_msr(self, msr: int) -> int:
        if msr == MSR_MTRRCAP:
            return KVM_MTRRCAP
        if msr == MSR_MTRR_DEF_TYPE:
            return self.def_type
        if msr in FIXED_MSR_SLOT:
            return self.fixed[FIXED_MSR_SLOT[msr]]
        v = var_msr_index(msr)
        if v is not None:
            pair = self.pair(v[0])
            return pair.mask if v[1] else pair.base
        raise MemTypeError("msr", f"{msr:#x} is not an MTRR MSR", MTRR_MSRS_RULE)

    def write_msr(self, msr: int, value: int, maxphyaddr: int, field: LocLike = "value") -> MtrrState:
        """The state after WRMSR(msr, value); invalid values raise (the guest gets #GP) at
        `field`, a bad MSR number at "msr" (locations relative to the write)."""
        if msr == MSR_MTRRCAP:
            raise MemTypeError("msr", "IA32_MTRRCAP is read-only", "WRMSR to MSR 0xfe raises #GP")
        if not 0 <= value <= _U64:
            raise MemTypeError(field, f"{value:#x} does not fit in 64 bits", "MSRs are 64 bits wide")
        if msr == MSR_MTRR_DEF_TYPE:
            return replace(self, def_type=check_def_type(value, field))
        if msr in FIXED_MSR_SLOT:
            slot = FIXED_MSR_SLOT[msr]
            fixed = list(self.fixed)
            fixed[slot] = check_fixed(value, field)
            return replace(self, fixed=tuple(fixed))
        v = var_msr_index(msr)
        if v is None:
            raise MemTypeError("msr", f"{msr:#x} is not an MTRR MSR", MTRR_MSRS_RULE)
        n, is_mask = v
        # (built directly, not by dataclasses.replace, and by `new_var_mtrr`/`new_mtrr_state`:
        # a replay makes one per new transition)
        pairs = list(self.variable)
        while len(pairs) <= n:
            pairs.append(VarMtrr(0, 0, mask_written=False))
        p = pairs[n]
        if is_mask:
            pairs[n] = new_var_mtrr(p.base, check_physmask(value, maxphyaddr, field), True)
        else:
            pairs[n] = new_var_mtrr(check_physbase(value, maxphyaddr, field), p.mask, p.mask_written)
        return new_mtrr_state(self.def_type, self.fixed, tuple(pairs))


new_var_mtrr = maker(VarMtrr)
"""`VarMtrr(base, mask, mask_written)` at half its cost (app/frozen.py): a replay makes one
per new transition that writes a pair."""
new_mtrr_state = maker(MtrrState)
"""`MtrrState(def_type, fixed, variable)` at half its cost (app/frozen.py), as above."""


def _reserved_above(value: int, maxphyaddr: int) -> bool:
    return value >> maxphyaddr != 0


def check_def_type(value: int, field: LocLike) -> int:
    if value & ~DEF_TYPE_VALID_BITS:
        raise MemTypeError(field, f"{value:#x} sets reserved bits",
                           "MTRRdefType bits 9:8 and 63:12 are reserved (#GP)")
    mtrr_type(value & 0xFF, field)
    return value


def check_fixed(value: int, field: LocLike) -> int:
    if not 0 <= value <= _U64:
        raise MemTypeError(field, f"{value:#x} does not fit in 64 bits", "MSRs are 64 bits wide")
    for b, t in enumerate(fixed_bytes(value)):
        if t not in MTRR_TYPES:
            raise MemTypeError(field, f"byte {b} has reserved MTRR type {t}",
                               "fixed-range types must be 0, 1, 4, 5 or 6 (#GP)")
    return value


def check_physbase(value: int, maxphyaddr: int, field: LocLike) -> int:
    mtrr_type(value & 0xFF, field)
    if value & 0xF00:
        raise MemTypeError(field, f"{value:#x} sets reserved bits 11:8", "PHYSBASE bits 11:8 are reserved (#GP)")
    if _reserved_above(value, maxphyaddr):
        raise MemTypeError(field, f"{value:#x} sets bits at or above MAXPHYADDR={maxphyaddr}",
                           "PHYSBASE bits above MAXPHYADDR-1 are reserved (#GP)")
    return value


def check_physmask(value: int, maxphyaddr: int, field: LocLike) -> int:
    if value & 0x7FF:
        raise MemTypeError(field, f"{value:#x} sets reserved bits 10:0", "PHYSMASK bits 10:0 are reserved (#GP)")
    if _reserved_above(value, maxphyaddr):
        raise MemTypeError(field, f"{value:#x} sets bits at or above MAXPHYADDR={maxphyaddr}",
                           "PHYSMASK bits above MAXPHYADDR-1 are reserved (#GP)")
    return value


def range_to_pair(start: int, size: int, type_: MemType, maxphyaddr: int) -> VarMtrr:
    """The conventional PHYSBASE/PHYSMASK for a power-of-two, size-aligned range."""
    if size < PAGE or size & (size - 1) or start % size:
        raise MemTypeError(("mtrr", "variable"),
                           f"range {start:#x}+{size:#x} is not a size-aligned power of two >= 4 KiB",
                           "a single MTRR pair covers a naturally aligned power-of-two block")
    mask = phys_mask(maxphyaddr) & ~(size - 1)
    return VarMtrr(start | int(type_), mask | PHYSMASK_V)


def contiguous_size(pair: VarMtrr, maxphyaddr: int) -> int | None:
    """Size of the block when the mask is hole-free (the intended use), else None."""
    m = pair.mask & phys_mask(maxphyaddr)
    if m == 0:
        return 1 << maxphyaddr
    size = m & -m
    return size if (m | (size - 1)) == (1 << maxphyaddr) - 1 else None


# -- register fields, for editors (SDM vol. 3A "MTRR Feature Identification" and "Variable
# Range MTRRs": the layouts the checks above validate) ---------------------------------

def def_type_value(enabled: bool, fixed_enabled: bool, type_: int) -> int:
    """MTRRdefType from its fields: type in bits 7:0, FE bit 10, E bit 11 (not validated)."""
    return type_ & 0xFF | (DEF_TYPE_FE if fixed_enabled else 0) | (DEF_TYPE_E if enabled else 0)


def with_fields(pair: VarMtrr, type_: int, valid: bool) -> VarMtrr:
    """The pair with PHYSBASE.Type (bits 7:0) and PHYSMASK.V (bit 11) replaced, the address
    bits kept as they are (not validated)."""
    mask = pair.mask | PHYSMASK_V if valid else pair.mask & ~PHYSMASK_V
    return replace(pair, base=pair.base & ~0xFF | type_ & 0xFF, mask=mask)


def physbase_address(pair: VarMtrr) -> int:
    """PHYSBASE's address field: the raw value without bits 11:0 (type and reserved)."""
    return pair.base & ~(PAGE - 1)


def fixed_bytes(value: int) -> tuple[int, ...]:
    """The 8 type bytes of a fixed-range MSR, sub-range 0 (lowest address) first."""
    return tuple(value >> (8 * b) & 0xFF for b in range(8))


def mtrr_msrs() -> tuple[int, ...]:
    """Every MTRR MSR a guest may write (is_mtrr_msr), MTRRdefType first, then the fixed
    MSRs, then PHYSBASE0, PHYSMASK0, ... PHYSMASK7."""
    var = tuple(m for m in range(MSR_MTRR_PHYSBASE0, MSR_MTRR_PHYSBASE0 + 2 * KVM_NR_VAR_MTRR) if is_mtrr_msr(m))
    return (MSR_MTRR_DEF_TYPE, *(f.msr for f in FIXED_MSRS), *var)


# -- lookups ---------------------------------------------------------------------------

DISABLED = "disabled"
FIXED = "fixed"
VARIABLE = "variable"
DEFAULT = "default"
UNDEFINED = "undefined"


@dataclass(frozen=True, slots=True)
class Lookup:
    """The MTRR type of one address (None when the SDM leaves it undefined) and why."""

    type: MemType | None
    source: str
    reason: str
    matches: tuple[int, ...] = field(default=())


def sdm_lookup(state: MtrrState, addr: int, maxphyaddr: int) -> Lookup:
    """The SDM's precedence rules: E=0 -> UC; fixed below 1 MiB with FE; then variables."""
    if not state.enabled:
        return Lookup(MemType.UC, DISABLED, "MTRRs disabled (MTRRdefType.E=0): UC")
    if state.fixed_enabled and addr < ONE_MIB:
        i = fixed_index(addr)
        r = FIXED_RANGES[i]
        return Lookup(state.fixed_type(i), FIXED, f"fixed range {i} ({msr_name(r.msr)} byte {r.byte})")
    matched = tuple(n for n, p in enumerate(state.variable) if p.sdm_matches(addr, maxphyaddr))
    types = {state.variable[n].type for n in matched}
    if not matched:
        return Lookup(state.default_type, DEFAULT, "no variable range matches: default type")
    if len(types) == 1:
        return Lookup(MemType(types.pop()), VARIABLE, _matched_text(matched), matched)
    if MemType.UC in types:
        return Lookup(MemType.UC, VARIABLE, _matched_text(matched) + "; UC wins an overlap", matched)
    if types == {MemType.WT, MemType.WB}:
        return Lookup(MemType.WT, VARIABLE, _matched_text(matched) + "; WT wins over WB", matched)
    names = "+".join(MemType(t).label for t in sorted(types))
    return Lookup(None, UNDEFINED, _matched_text(matched) + f"; overlap {names} is undefined in the SDM", matched)


def _matched_text(matched: Iterable[int]) -> str:
    return "variable range " + ", ".join(str(n) for n in matched) + " matches"


# -- whole ranges ----------------------------------------------------------------------


def fixed_breakpoints(state: MtrrState) -> set[int]:
    """The fixed sub-ranges' edges and 1 MiB while E and FE are set: where the fixed ranges
    can change the answer (the SDM's lookup and KVM's read them alike)."""
    if not (state.enabled and state.fixed_enabled):
        return set()
    pts = {ONE_MIB}
    for r in FIXED_RANGES:
        pts.update((r.start, r.end))
    return pts


def sdm_breakpoints(state: MtrrState, start: int, end: int, maxphyaddr: int) -> list[int]:
    """Every address in [start, end] where the SDM's answer may change (a mask with too many
    holes is refused at ("variable", n, "mask"), relative to the state)."""
    pts = {start, end} | fixed_breakpoints(state)
    if state.enabled:
        for n, p in enumerate(state.variable):
            if p.valid:
                for s, e in p.sdm_blocks(maxphyaddr, field=("variable", n, "mask")):
                    pts.update((s, e))
    return sorted(x for x in pts if start <= x <= end)


Segment = tuple[int, int, Lookup]


def runs_of(pts: list[int], look: Callable[[int], Lookup]) -> list[Segment]:
    """Cut at sorted breakpoints, look each piece up at its start, merge equal neighbours."""
    out: list[Segment] = []
    for s, e in zip(pts, pts[1:], strict=False):
        lk = look(s)
        if out and out[-1][1] == s and out[-1][2].type == lk.type and out[-1][2].source == lk.source:
            out[-1] = (out[-1][0], e, out[-1][2])
        else:
            out.append((s, e, lk))
    return out


def sdm_segments(state: MtrrState, start: int, end: int, maxphyaddr: int) -> list[Segment]:
    """Split [start, end) into maximal runs of one SDM answer."""
    return runs_of(sdm_breakpoints(state, start, end, maxphyaddr), lambda a: sdm_lookup(state, a, maxphyaddr))
