"""Guest MTRRs: state, validation, and the two lookups reviewers need side by side.

`sdm_lookup` answers what the architecture says (SDM "MTRR Precedences", 11.11.4.1 in the
~2016 edition): that is what the guest expects on bare metal. `kvm_lookup` re-implements,
in our own code, what `kvm_mtrr_get_guest_memory_type()` in arch/x86/kvm/mtrr.c did from
v4.15 to v6.10 (the guest type KVM put into EPT entries), including its walk order over a
list sorted by descending raw PHYSBASE and its WB answer for overlaps the SDM leaves
undefined. `kvm_range_consistent` models `kvm_mtrr_check_gfn_range_consistency()`, which
decides whether a 2 MiB or 1 GiB EPT page may be used. Where the two lookups disagree,
`lookup_difference` says why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .memtype import MTRR_TYPES, MemType, MemTypeError, mtrr_type

MSR_MTRRCAP = 0xFE
MSR_MTRR_DEF_TYPE = 0x2FF
MSR_MTRR_PHYSBASE0 = 0x200
KVM_NR_VAR_MTRR = 8
KVM_MTRRCAP = 0x500 | KVM_NR_VAR_MTRR
"""What KVM returns for IA32_MTRRCAP: VCNT=8, FIX (bit 8) and WC (bit 10), no SMRR."""

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


def var_msr_index(msr: int) -> tuple[int, bool] | None:
    """(pair n, is_mask) for PHYSBASEn/PHYSMASKn MSRs, None otherwise."""
    if MSR_MTRR_PHYSBASE0 <= msr < MSR_MTRR_PHYSBASE0 + 2 * KVM_NR_VAR_MTRR:
        off = msr - MSR_MTRR_PHYSBASE0
        return off // 2, bool(off & 1)
    return None


def is_mtrr_msr(msr: int) -> bool:
    return msr == MSR_MTRR_DEF_TYPE or msr in FIXED_MSR_SLOT or var_msr_index(msr) is not None


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

    def kvm_range(self, maxphyaddr: int) -> tuple[int, int]:
        """[start, end) as KVM's var_mtrr_range() computes it (may wrap: end <= start).

        KVM takes start from PHYSBASE without masking and treats the pair as one contiguous
        range up to the next boundary of the mask; a written mask has the bits above
        MAXPHYADDR filled in (set_var_mtrr_msr), a never-written one is 0 so `end` wraps.
        """
        start = self.base & ~(PAGE - 1) & _U64
        mask = self.mask
        if self.mask_written:
            mask |= _U64 & ~((1 << maxphyaddr) - 1)
        mask &= ~(PAGE - 1)
        end = ((start | (~mask & _U64)) + 1) & _U64
        return start, end

    def sdm_blocks(self, maxphyaddr: int, limit: int = 4096, field: str = "mtrr.variable") -> list[tuple[int, int]]:
        """The address blocks this pair matches per the SDM (several if the mask has holes)."""
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
    def validate(self, maxphyaddr: int, field: str = "mtrr", vcnt: int = KVM_NR_VAR_MTRR) -> MtrrState:
        check_def_type(self.def_type, f"{field}.def_type")
        if len(self.fixed) != len(FIXED_MSRS):
            raise MemTypeError(f"{field}.fixed", f"{len(self.fixed)} values given", "there are 11 fixed-range MSRs")
        for slot, value in enumerate(self.fixed):
            check_fixed(value, f"{field}.fixed[{slot}]")
        if len(self.variable) > vcnt:
            raise MemTypeError(
                f"{field}.variable",
                f"{len(self.variable)} variable ranges given, more than VCNT={vcnt}",
                "KVM reports IA32_MTRRCAP.VCNT = 8",
            )
        for n, pair in enumerate(self.variable):
            check_physbase(pair.base, maxphyaddr, f"{field}.variable[{n}].base")
            check_physmask(pair.mask, maxphyaddr, f"{field}.variable[{n}].mask")
        return self

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
        raise MemTypeError("msr", f"{msr:#x} is not an MTRR MSR", "MTRR MSRs: 0x200-0x20f, 0x250, 0x258, 0x259, 0x268-0x26f, 0x2ff")

    def write_msr(self, msr: int, value: int, maxphyaddr: int, field: str = "value") -> MtrrState:
        """The state after WRMSR(msr, value); invalid values raise (the guest gets #GP)."""
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
            raise MemTypeError("msr", f"{msr:#x} is not an MTRR MSR", "MTRR MSRs: 0x200-0x20f, 0x250, 0x258, 0x259, 0x268-0x26f, 0x2ff")
        n, is_mask = v
        pairs = [self.pair(i) for i in range(max(len(self.variable), n + 1))]
        if is_mask:
            pairs[n] = replace(pairs[n], mask=check_physmask(value, maxphyaddr, field), mask_written=True)
        else:
            pairs[n] = replace(pairs[n], base=check_physbase(value, maxphyaddr, field))
        return replace(self, variable=tuple(pairs))


def _reserved_above(value: int, maxphyaddr: int) -> bool:
    return value >> maxphyaddr != 0


def check_def_type(value: int, field: str) -> int:
    if value & ~DEF_TYPE_VALID_BITS:
        raise MemTypeError(field, f"{value:#x} sets reserved bits", "MTRRdefType bits 9:8 and 63:12 are reserved (#GP)")
    mtrr_type(value & 0xFF, field)
    return value


def check_fixed(value: int, field: str) -> int:
    if not 0 <= value <= _U64:
        raise MemTypeError(field, f"{value:#x} does not fit in 64 bits", "MSRs are 64 bits wide")
    for b, t in enumerate(fixed_bytes(value)):
        if t not in MTRR_TYPES:
            raise MemTypeError(field, f"byte {b} has reserved MTRR type {t}", "fixed-range types must be 0, 1, 4, 5 or 6 (#GP)")
    return value


def check_physbase(value: int, maxphyaddr: int, field: str) -> int:
    mtrr_type(value & 0xFF, field)
    if value & 0xF00:
        raise MemTypeError(field, f"{value:#x} sets reserved bits 11:8", "PHYSBASE bits 11:8 are reserved (#GP)")
    if _reserved_above(value, maxphyaddr):
        raise MemTypeError(field, f"{value:#x} sets bits at or above MAXPHYADDR={maxphyaddr}", "PHYSBASE bits above MAXPHYADDR-1 are reserved (#GP)")
    return value


def check_physmask(value: int, maxphyaddr: int, field: str) -> int:
    if value & 0x7FF:
        raise MemTypeError(field, f"{value:#x} sets reserved bits 10:0", "PHYSMASK bits 10:0 are reserved (#GP)")
    if _reserved_above(value, maxphyaddr):
        raise MemTypeError(field, f"{value:#x} sets bits at or above MAXPHYADDR={maxphyaddr}", "PHYSMASK bits above MAXPHYADDR-1 are reserved (#GP)")
    return value


def range_to_pair(start: int, size: int, type_: MemType, maxphyaddr: int) -> VarMtrr:
    """The conventional PHYSBASE/PHYSMASK for a power-of-two, size-aligned range."""
    if size < PAGE or size & (size - 1) or start % size:
        raise MemTypeError("mtrr.variable", f"range {start:#x}+{size:#x} is not a size-aligned power of two >= 4 KiB", "a single MTRR pair covers a naturally aligned power-of-two block")
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


def kvm_var_order(state: MtrrState) -> list[int]:
    """Valid pairs in KVM's list order: descending raw PHYSBASE (type byte included).

    set_var_mtrr_msr() inserts a range before the first listed one whose raw base is not
    larger; with pairs written in index order, equal bases end up higher index first.
    """
    valid = [n for n, p in enumerate(state.variable) if p.valid]
    return sorted(valid, key=lambda n: (state.variable[n].base, n), reverse=True)


def kvm_disabled_type(guest_has_mtrr: bool) -> MemType:
    """mtrr_disabled_type(): UC if the guest CPUID has MTRR, else WB (v4.15+)."""
    return MemType.UC if guest_has_mtrr else MemType.WB


@dataclass(slots=True)
class _KvmWalk:
    """What KVM's mtrr_iter yields over [start, end): types in walk order + partial_map."""

    types: list[tuple[MemType, str]]
    partial_map: bool
    disabled: bool


def _kvm_walk(state: MtrrState, start: int, end: int, maxphyaddr: int) -> _KvmWalk:
    if not state.enabled:
        return _KvmWalk([], False, True)
    out: list[tuple[MemType, str]] = []
    if state.fixed_enabled and start < ONE_MIB:
        i = fixed_index(start)
        while True:
            out.append((state.fixed_type(i), f"fixed {i}"))
            if FIXED_RANGES[i].end >= end:
                return _KvmWalk(out, False, False)
            i += 1
            if i == len(FIXED_RANGES):
                break
    start_max = start
    partial = False
    for n in kvm_var_order(state):
        s, e = state.variable[n].kvm_range(maxphyaddr)
        if s >= end or e <= start:
            continue
        partial |= start_max < s
        start_max = max(start_max, e)
        out.append((MemType(state.variable[n].type), f"variable {n}"))
    partial |= start_max < end
    return _KvmWalk(out, partial, False)


def kvm_lookup(state: MtrrState, addr: int, maxphyaddr: int, guest_has_mtrr: bool = True) -> Lookup:
    """kvm_mtrr_get_guest_memory_type() (v4.15..v6.10) for the 4 KiB page holding `addr`."""
    page = addr & ~(PAGE - 1)
    walk = _kvm_walk(state, page, page + PAGE, maxphyaddr)
    if walk.disabled:
        t = kvm_disabled_type(guest_has_mtrr)
        why = "guest CPUID has MTRR" if guest_has_mtrr else "guest CPUID lacks MTRR"
        return Lookup(t, DISABLED, f"MTRRs disabled and {why}: mtrr_disabled_type() gives {t.label}")
    cur: MemType | None = None
    seen: list[str] = []
    for t, where in walk.types:
        seen.append(where)
        if cur is None:
            cur = t
            continue
        if t == cur:
            continue
        if t == MemType.UC:
            return Lookup(MemType.UC, VARIABLE, f"walk {', '.join(seen)}: next type UC returns UC")
        if {t, cur} == {MemType.WT, MemType.WB}:
            cur = MemType.WT
            continue
        return Lookup(
            MemType.WB,
            UNDEFINED,
            f"walk {', '.join(seen)}: {cur.label} then {t.label} is not a defined overlap; KVM returns WB",
        )
    if cur is None:
        return Lookup(state.default_type, DEFAULT, "no MTRR covers the page: default type")
    src = FIXED if walk.types[0][1].startswith("fixed") else VARIABLE
    return Lookup(cur, src, f"walk {', '.join(seen)}")


def kvm_range_consistent(state: MtrrState, start: int, end: int, maxphyaddr: int) -> bool:
    """kvm_mtrr_check_gfn_range_consistency(): may [start, end) share one huge EPT page?

    False as soon as two walked types differ; true when MTRRs are off, when the walk saw no
    gap (partial_map is computed assuming ascending order, so several ranges can report a
    false gap: conservative) or nothing matched; else true iff the type equals the default.
    """
    walk = _kvm_walk(state, start, end, maxphyaddr)
    types = {t for t, _ in walk.types}
    if len(types) > 1:
        return False
    if walk.disabled or not walk.partial_map or not types:
        return True
    return types.pop() == state.default_type


def lookup_difference(sdm: Lookup, kvm: Lookup) -> str | None:
    """Why the SDM's answer and KVM's differ for one address, or None when they agree."""
    if sdm.type == kvm.type:
        return None
    s = sdm.type.label if sdm.type is not None else "undefined"  # UC is 0, so test for None
    assert kvm.type is not None
    return f"SDM says {s} ({sdm.reason}); KVM uses {kvm.type.label} ({kvm.reason})"


# -- whole ranges ----------------------------------------------------------------------


def _breakpoints(state: MtrrState, start: int, end: int, maxphyaddr: int, sdm: bool) -> list[int]:
    pts = {start, end}
    if state.enabled:
        if state.fixed_enabled:
            for r in FIXED_RANGES:
                pts.update((r.start, r.end))
            pts.add(ONE_MIB)
        for n, p in enumerate(state.variable):
            if not p.valid:
                continue
            if sdm:
                for s, e in p.sdm_blocks(maxphyaddr, field=f"vcpu.mtrr.variable[{n}].mask"):
                    pts.update((s, e))
            else:
                s, e = p.kvm_range(maxphyaddr)
                pts.add(s)
                if e > s:
                    pts.add(e)
    return sorted(x for x in pts if start <= x <= end)


def segments(
    state: MtrrState, start: int, end: int, maxphyaddr: int, *, sdm: bool, guest_has_mtrr: bool = True
) -> list[tuple[int, int, Lookup]]:
    """Split [start, end) into maximal runs of one MTRR answer (SDM's or KVM's)."""
    out: list[tuple[int, int, Lookup]] = []
    pts = _breakpoints(state, start, end, maxphyaddr, sdm)
    for s, e in zip(pts, pts[1:]):
        lk = sdm_lookup(state, s, maxphyaddr) if sdm else kvm_lookup(state, s, maxphyaddr, guest_has_mtrr)
        if out and out[-1][1] == s and out[-1][2].type == lk.type and out[-1][2].source == lk.source:
            out[-1] = (out[-1][0], e, out[-1][2])
        else:
            out.append((s, e, lk))
    return out


def breakpoints(state: MtrrState, start: int, end: int, maxphyaddr: int) -> list[int]:
    """Every address in [start, end] where either lookup may change (both kinds merged)."""
    return sorted(set(_breakpoints(state, start, end, maxphyaddr, True)) | set(_breakpoints(state, start, end, maxphyaddr, False)))


PAGE_ORDER = ("4K", "2M", "1G")
HUGE_PAGES = ((1 << 30, "1G"), (1 << 21, "2M"))
"""EPT huge-page sizes, largest first, as kvm_tdp_page_fault() tries them."""


def smallest(*sizes: str) -> str:
    """The most conservative of several page-size answers."""
    return min(sizes, key=PAGE_ORDER.index)


def largest_page(state: MtrrState, addr: int, maxphyaddr: int) -> str:
    """Largest EPT page the MTRR check allows at `addr`: tries 1G, then 2M (kvm_tdp_page_fault)."""
    for size, name in HUGE_PAGES:
        base = addr & ~(size - 1)
        if base + size <= 1 << maxphyaddr and kvm_range_consistent(state, base, base + size, maxphyaddr):
            return name
    return "4K"
