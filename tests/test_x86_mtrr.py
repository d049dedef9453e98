"""Guest MTRRs: validation, the SDM lookup, KVM's pre-6.11 lookup and huge-page check.

Why: the tool's whole comparison rests on two lookups that must each be right on their own
terms. `sdm_lookup` is what a guest expects on bare metal (docs/notes/sdm-rules.md §3); `kvm_lookup`
and `kvm_range_consistent` are what KVM v4.15..v6.10 actually did (docs/notes/kernel-history.md §2),
including its descending list order and WB-for-undefined quirks. Expected values here are
re-stated from those two docs (small reference models and typed-out tables), never taken
from the code under test.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.kvm.mtrr import (
    breakpoints,
    kvm_lookup,
    kvm_range_consistent,
    largest_page,
    lookup_difference,
    segments,
)
from app.x86.memtype import MemType, MemTypeError
from app.x86.mtrr import (
    DEFAULT,
    DISABLED,
    FIXED,
    FIXED_RANGES,
    KVM_MTRRCAP,
    UNDEFINED,
    VARIABLE,
    MtrrState,
    VarMtrr,
    contiguous_size,
    fixed_index,
    is_mtrr_msr,
    msr_name,
    phys_mask,
    range_to_pair,
    sdm_lookup,
)

UC, WC, WT, WP, WB = MemType.UC, MemType.WC, MemType.WT, MemType.WP, MemType.WB
TYPES = [UC, WC, WT, WP, WB]
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
E_BIT, FE_BIT, V_BIT = 1 << 11, 1 << 10, 1 << 11
MP = 36  # MAXPHYADDR used where the value does not matter


def pair(start: int, size: int, t: int, maxphy: int = MP, valid: bool = True) -> VarMtrr:
    """PHYSBASE/PHYSMASK for a size-aligned power-of-two block, built from the SDM text."""
    mask = ((1 << maxphy) - 1) & ~(size - 1) & ~0xFFF
    return VarMtrr(start | int(t), mask | (V_BIT if valid else 0))


def state(default: int, *variable: VarMtrr, e: bool = True, fe: bool = False, fixed=None) -> MtrrState:
    def_type = int(default) | (E_BIT if e else 0) | (FE_BIT if fe else 0)
    return MtrrState(def_type, tuple(fixed) if fixed is not None else (0,) * 11, tuple(variable))


def fixed_word(*types: int) -> int:
    return sum(int(t) << (8 * k) for k, t in enumerate(types))


ALL_WB_FIXED = (fixed_word(*[WB] * 8),) * 11

# --- independent reference models ---------------------------------------------------


def ref_sdm_overlap(types: set[MemType]) -> MemType | None:
    """docs/notes/sdm-rules.md §3 step 3 for a non-empty set of matching types."""
    if len(types) == 1:
        return next(iter(types))
    if UC in types:
        return UC
    if types == {WT, WB}:
        return WT
    return None


def ref_kvm_fold(walk: list[MemType]) -> MemType | None:
    """docs/notes/kernel-history.md §2 step 3, the fold in list order (None = nothing matched)."""
    cur = None
    for t in walk:
        if cur is None:
            cur = t
        elif t == cur:
            continue
        elif t == UC:
            return UC
        elif {t, cur} <= {WT, WB}:
            cur = WT
        else:
            return WB
    return cur


def ref_sdm(st_: MtrrState, addr: int, maxphy: int) -> MemType | None:
    if not st_.def_type & E_BIT:
        return UC
    if st_.def_type & FE_BIT and addr < MIB:
        seg = (0, 16, 0) if addr < 0x80000 else (0x80000, 14, 8) if addr < 0xC0000 else (0xC0000, 12, 24)
        i = seg[2] + ((addr - seg[0]) >> seg[1])
        return MemType(st_.fixed[i // 8] >> (8 * (i % 8)) & 0xFF)
    bits = ((1 << maxphy) - 1) & ~0xFFF
    types = {
        MemType(p.base & 0xFF) for p in st_.variable
        if p.mask & V_BIT and (addr & p.mask & bits) == (p.base & p.mask & bits)
    }
    if not types:
        return MemType(st_.def_type & 0xFF)
    return ref_sdm_overlap(types)


def ref_kvm_range(p: VarMtrr, maxphy: int) -> tuple[int, int]:
    """docs/notes/kernel-history.md §2: start = base & ~0xFFF, end = (start | ~(mask & ~0xFFF)) + 1,
    with the mask's bits above MAXPHYADDR set as KVM stores a written mask."""
    u64 = (1 << 64) - 1
    mask = (p.mask | (u64 ^ ((1 << maxphy) - 1))) & ~0xFFF & u64
    start = p.base & ~0xFFF
    return start, ((start | (~mask & u64)) + 1) & u64


def ref_kvm(st_: MtrrState, addr: int, maxphy: int, has_mtrr: bool = True) -> MemType:
    if not st_.def_type & E_BIT:
        return UC if has_mtrr else WB
    page = addr & ~0xFFF
    if st_.def_type & FE_BIT and page < MIB:
        return ref_sdm(st_, page, maxphy)  # one fixed entry, same as the SDM
    order = sorted(
        (p for p in st_.variable if p.mask & V_BIT), key=lambda p: p.base, reverse=True
    )
    walk = []
    for p in order:
        s, e = ref_kvm_range(p, maxphy)
        if not (s >= page + 0x1000 or e <= page):
            walk.append(MemType(p.base & 0xFF))
    got = ref_kvm_fold(walk)
    return MemType(st_.def_type & 0xFF) if got is None else got


# --- fixed ranges ---------------------------------------------------------------------

# docs/notes/sdm-rules.md §3 fixed-range table, one row per MSR: (msr, first address, sub-range size).
FIXED_MSR_TABLE = [
    (0x250, 0x00000, 64 * KIB),
    (0x258, 0x80000, 16 * KIB),
    (0x259, 0xA0000, 16 * KIB),
    (0x268, 0xC0000, 4 * KIB),
    (0x269, 0xC8000, 4 * KIB),
    (0x26A, 0xD0000, 4 * KIB),
    (0x26B, 0xD8000, 4 * KIB),
    (0x26C, 0xE0000, 4 * KIB),
    (0x26D, 0xE8000, 4 * KIB),
    (0x26E, 0xF0000, 4 * KIB),
    (0x26F, 0xF8000, 4 * KIB),
]
# (flat index, first byte, last byte, msr, byte k of the msr, slot of the msr)
SUBRANGES = [
    (slot * 8 + k, start + k * unit, start + (k + 1) * unit - 1, msr, k, slot)
    for slot, (msr, start, unit) in enumerate(FIXED_MSR_TABLE)
    for k in range(8)
]


class TestFixedRanges:
    def test_count_and_cover(self):
        assert len(SUBRANGES) == 88 == len(FIXED_RANGES)
        assert SUBRANGES[0][1] == 0 and SUBRANGES[-1][2] == 0xFFFFF
        for a, b in itertools.pairwise(SUBRANGES):
            assert b[1] == a[2] + 1

    @pytest.mark.parametrize("sub", SUBRANGES, ids=lambda s: f"i{s[0]}")
    def test_table(self, sub):
        i, first, last, msr, k, _ = sub
        r = FIXED_RANGES[i]
        assert (r.index, r.start, r.end, r.msr, r.byte) == (i, first, last + 1, msr, k)

    @pytest.mark.parametrize("sub", SUBRANGES, ids=lambda s: f"i{s[0]}")
    def test_fixed_index_first_and_last_byte(self, sub):
        i, first, last, *_ = sub
        assert fixed_index(first) == i
        assert fixed_index(last) == i
        if first:
            assert fixed_index(first - 1) == i - 1

    @pytest.mark.parametrize("bad", [-1, MIB, MIB + 1, 1 << 40])
    def test_fixed_index_rejects(self, bad):
        with pytest.raises(ValueError):
            fixed_index(bad)

    @pytest.mark.parametrize("sub", SUBRANGES, ids=lambda s: f"i{s[0]}")
    def test_lookups_pick_the_right_byte_of_the_right_msr(self, sub):
        i, first, last, msr, k, slot = sub
        st_ = state(UC, fe=True, fixed=ALL_WB_FIXED)
        st_ = st_.write_msr(msr, fixed_word(*[WB] * k, WC, *[WB] * (7 - k)), MP)
        assert st_.fixed[slot] == WC << (8 * k) | sum(WB << (8 * j) for j in range(8) if j != k)
        assert st_.fixed_type(i) is WC
        for addr in (first, last):
            s, v = sdm_lookup(st_, addr, MP), kvm_lookup(st_, addr, MP)
            assert (s.type, s.source) == (WC, FIXED)
            assert (v.type, v.source) == (WC, FIXED)
            assert f"fixed range {i} " in s.reason and f"{msr_name(msr)} byte {k}" in s.reason
        for addr in (first - 1, last + 1):
            if 0 <= addr < MIB:
                assert sdm_lookup(st_, addr, MP).type is WB
                assert kvm_lookup(st_, addr, MP).type is WB

    def test_fixed_type_reads_little_endian_bytes(self):
        st_ = state(WB, fe=True, fixed=[fixed_word(UC, WC, WT, WP, WB, UC, WC, WT)] + [0] * 10)
        assert [st_.fixed_type(i) for i in range(8)] == [UC, WC, WT, WP, WB, UC, WC, WT]

    def test_fe0_ignores_fixed_ranges_below_1mib(self):
        fixed = (fixed_word(*[WC] * 8),) * 11
        st_ = state(WB, pair(0, MIB, WT), fe=False, fixed=fixed)
        for addr in (0, 0x7FFFF, 0xA0000, 0xFFFFF):
            assert sdm_lookup(st_, addr, MP).type is WT
            assert kvm_lookup(st_, addr, MP).type is WT
        st_ = state(WP, fe=False, fixed=fixed)
        assert sdm_lookup(st_, 0xC0000, MP).type is WP
        assert sdm_lookup(st_, 0xC0000, MP).source == DEFAULT
        assert kvm_lookup(st_, 0xC0000, MP).type is WP

    def test_fixed_wins_over_variable_below_1mib(self):
        st_ = state(WB, pair(0, 2 * MIB, UC), fe=True, fixed=ALL_WB_FIXED)
        assert sdm_lookup(st_, 0xFFFFF, MP).type is WB
        assert kvm_lookup(st_, 0xFFFFF, MP).type is WB
        # from 1 MiB on the variable range applies
        assert sdm_lookup(st_, MIB, MP).type is UC
        assert kvm_lookup(st_, MIB, MP).type is UC


# --- SDM lookup ------------------------------------------------------------------------


class TestSdmLookup:
    def test_disabled_is_uc_and_fe_is_ignored(self):
        st_ = state(WB, pair(0, 4 * GIB, WB), e=False, fe=True, fixed=ALL_WB_FIXED)
        for addr in (0, 0xFFFFF, MIB, 3 * GIB, 8 * GIB):
            lk = sdm_lookup(st_, addr, MP)
            assert (lk.type, lk.source) == (UC, DISABLED)

    @pytest.mark.parametrize("default", TYPES)
    def test_no_match_gives_default(self, default):
        st_ = state(default, pair(0, GIB, WT if default != WT else WB))
        lk = sdm_lookup(st_, 2 * GIB, MP)
        assert (lk.type, lk.source, lk.matches) == (default, DEFAULT, ())

    def test_invalid_pair_never_matches(self):
        st_ = state(WB, pair(0, 4 * GIB, UC, valid=False))
        assert sdm_lookup(st_, GIB, MP).type is WB

    def test_single_match(self):
        st_ = state(WB, pair(0, 4 * GIB, WB), pair(3 * GIB, GIB, WC))
        lk = sdm_lookup(st_, 3 * GIB + 5, MP)
        assert lk.type is None and lk.source == UNDEFINED  # WB with WC is undefined
        lk = sdm_lookup(st_, 2 * GIB, MP)
        assert (lk.type, lk.source, lk.matches) == (WB, VARIABLE, (0,))

    @pytest.mark.parametrize(("a", "b"), list(itertools.product(TYPES, TYPES)))
    def test_two_overlapping_ranges(self, a, b):
        # range 0: 0..4G type a; range 1: 3G..4G type b
        st_ = state(WB, pair(0, 4 * GIB, a), pair(3 * GIB, GIB, b))
        want = ref_sdm_overlap({a, b})
        lk = sdm_lookup(st_, 3 * GIB + 0x1234, MP)
        assert lk.type == want
        assert lk.matches == (0, 1)
        if want is None:
            assert lk.source == UNDEFINED and "undefined" in lk.reason
        assert sdm_lookup(st_, GIB, MP).type is a
        assert sdm_lookup(st_, 4 * GIB, MP).type is WB  # default

    def test_overlap_table_spot_checks(self):
        # docs/notes/sdm-rules.md §3, literally.
        cases = {
            (UC, WB): UC, (WC, UC): UC, (WT, WB): WT, (WB, WT): WT, (WP, WP): WP,
            (WC, WB): None, (WP, WT): None, (WC, WT): None, (WP, WB): None, (WC, WP): None,
        }
        for (a, b), want in cases.items():
            st_ = state(WB, pair(0, 4 * GIB, a), pair(3 * GIB, GIB, b))
            assert sdm_lookup(st_, 3 * GIB, MP).type == want

    def test_three_way_overlap(self):
        st_ = state(UC, pair(0, 4 * GIB, WT), pair(0, 2 * GIB, WB), pair(0, GIB, WT))
        assert sdm_lookup(st_, 0x100000, MP).type is WT
        st_ = state(UC, pair(0, 4 * GIB, WT), pair(0, 2 * GIB, WB), pair(0, GIB, WP))
        assert sdm_lookup(st_, 0x100000, MP).type is None
        st_ = state(UC, pair(0, 4 * GIB, WC), pair(0, 2 * GIB, WB), pair(0, GIB, UC))
        assert sdm_lookup(st_, 0x100000, MP).type is UC

    def test_match_uses_only_bits_below_maxphyaddr(self):
        # A 1G range at 3G with MAXPHYADDR 36: bit 36+ of the address are not compared.
        st_ = state(WB, pair(3 * GIB, GIB, UC, maxphy=36))
        assert sdm_lookup(st_, 3 * GIB, 36).type is UC
        assert sdm_lookup(st_, 4 * GIB, 36).type is WB
        assert sdm_lookup(st_, (1 << 36) + 3 * GIB, 36).type is UC

    def test_mask_with_holes(self):
        # Mask 0xF_BFFF_F000: 4K blocks at 0 and at 1G (bit 30 free).
        p = VarMtrr(0 | WC, 0xF_BFFF_F000 | V_BIT)
        st_ = state(WB, p)
        assert sdm_lookup(st_, 0, MP).type is WC
        assert sdm_lookup(st_, GIB + 0xFFF, MP).type is WC
        assert sdm_lookup(st_, 0x1000, MP).type is WB
        assert p.sdm_blocks(MP) == [(0, 0x1000), (GIB, GIB + 0x1000)]
        assert contiguous_size(p, MP) is None

    def test_sdm_blocks_limit(self):
        p = VarMtrr(0, 0x1000 | V_BIT)  # only bit 12: 2**23 blocks of 4K
        with pytest.raises(MemTypeError) as exc:
            p.sdm_blocks(MP)
        assert exc.value.field == "mtrr.variable"

    def test_sdm_blocks_and_contiguous_size(self):
        p = pair(3 * GIB, GIB, UC)
        assert p.sdm_blocks(MP) == [(3 * GIB, 4 * GIB)]
        assert contiguous_size(p, MP) == GIB
        whole = VarMtrr(WB, V_BIT)  # mask 0: matches everything
        assert whole.sdm_blocks(MP) == [(0, 1 << MP)]
        assert contiguous_size(whole, MP) == 1 << MP


# --- validation and MSR access -----------------------------------------------------------

VALID_MTRR_BYTES = {0, 1, 4, 5, 6}


class TestValidation:
    def test_mtrrcap(self):
        assert KVM_MTRRCAP == 0x508

    def test_mtrrcap_write_refused(self):
        with pytest.raises(MemTypeError) as exc:
            MtrrState().write_msr(0xFE, 0x508, MP)
        assert exc.value.field == "msr"
        assert "read-only" in exc.value.message

    @pytest.mark.parametrize("value", range(256))
    def test_def_type_type_field(self, value):
        for flags in (0, FE_BIT, E_BIT, E_BIT | FE_BIT):
            st_ = MtrrState(def_type=value | flags)
            if value in VALID_MTRR_BYTES:
                assert st_.validate(MP) is st_
                assert MtrrState().write_msr(0x2FF, value | flags, MP).def_type == value | flags
            else:
                with pytest.raises(MemTypeError) as exc:
                    st_.validate(MP)
                assert exc.value.field == "mtrr.def_type"

    @pytest.mark.parametrize("bit", [8, 9, *range(12, 64)])
    def test_def_type_reserved_bits(self, bit):
        st_ = MtrrState(def_type=6 | E_BIT | 1 << bit)
        with pytest.raises(MemTypeError) as exc:
            st_.validate(MP)
        assert exc.value.field == "mtrr.def_type"
        with pytest.raises(MemTypeError) as exc:
            MtrrState().write_msr(0x2FF, 6 | 1 << bit, MP)
        assert exc.value.field == "value"

    @pytest.mark.parametrize("k", range(8))
    def test_fixed_bytes(self, k):
        for v in range(256):
            word = fixed_word(*[WB] * 8) & ~(0xFF << (8 * k)) | v << (8 * k)
            st_ = MtrrState(fixed=(0,) * 3 + (word,) + (0,) * 7)
            if v in VALID_MTRR_BYTES:
                st_.validate(MP)
            else:
                with pytest.raises(MemTypeError) as exc:
                    st_.validate(MP)
                assert exc.value.field == "mtrr.fixed[3]"
                assert f"byte {k}" in exc.value.message
                with pytest.raises(MemTypeError):
                    MtrrState().write_msr(0x26B, word, MP)

    def test_fixed_count(self):
        with pytest.raises(MemTypeError) as exc:
            MtrrState(fixed=(0,) * 10).validate(MP)
        assert exc.value.field == "mtrr.fixed"

    @pytest.mark.parametrize("value", range(256))
    def test_physbase_type(self, value):
        st_ = MtrrState(variable=(VarMtrr(GIB | value, 0),))
        if value in VALID_MTRR_BYTES:
            st_.validate(MP)
        else:
            with pytest.raises(MemTypeError) as exc:
                st_.validate(MP)
            assert exc.value.field == "mtrr.variable[0].base"

    @pytest.mark.parametrize("maxphy", [36, 39, 46, 52])
    def test_physbase_bits(self, maxphy):
        ok = MtrrState(variable=(VarMtrr(1 << (maxphy - 1) | 6, 0),))
        ok.validate(maxphy)
        for bit in [8, 9, 10, 11, *range(maxphy, 64)]:
            st_ = MtrrState(variable=(VarMtrr(0, 0), VarMtrr(1 << bit | 6, 0)))
            with pytest.raises(MemTypeError) as exc:
                st_.validate(maxphy)
            assert exc.value.field == "mtrr.variable[1].base", bit
            with pytest.raises(MemTypeError) as exc:
                MtrrState().write_msr(0x202, 1 << bit | 6, maxphy)
            assert exc.value.field == "value"

    @pytest.mark.parametrize("maxphy", [36, 39, 46, 52])
    def test_physmask_bits(self, maxphy):
        ok = MtrrState(variable=(VarMtrr(6, 1 << (maxphy - 1) | V_BIT),))
        ok.validate(maxphy)
        for bit in [*range(0, 11), *range(maxphy, 64)]:
            st_ = MtrrState(variable=(VarMtrr(6, 1 << bit | V_BIT),))
            with pytest.raises(MemTypeError) as exc:
                st_.validate(maxphy)
            assert exc.value.field == "mtrr.variable[0].mask", bit
            with pytest.raises(MemTypeError) as exc:
                MtrrState().write_msr(0x20F, 1 << bit, maxphy)
            assert exc.value.field == "value"

    def test_physbase_above_maxphyaddr_depends_on_maxphyaddr(self):
        st_ = MtrrState(variable=(VarMtrr(1 << 40 | 6, 0),))
        st_.validate(46)
        with pytest.raises(MemTypeError):
            st_.validate(40)

    def test_vcnt(self):
        eight = MtrrState(variable=tuple(pair(n * GIB, GIB, WB) for n in range(8)))
        eight.validate(MP)
        nine = MtrrState(variable=tuple(pair(n * GIB, GIB, WB) for n in range(9)))
        with pytest.raises(MemTypeError) as exc:
            nine.validate(MP)
        assert exc.value.field == "mtrr.variable"
        assert "VCNT=8" in exc.value.message
        with pytest.raises(MemTypeError):
            eight.validate(MP, vcnt=7)

    def test_validate_field_prefix(self):
        with pytest.raises(MemTypeError) as exc:
            MtrrState(def_type=2).validate(MP, field="vcpus[1].mtrr")
        assert exc.value.field == "vcpus[1].mtrr.def_type"

    @pytest.mark.parametrize("msr", [0x277, 0x1FF, 0x210, 0x251, 0x25A, 0x267, 0x270, 0x2FE])
    def test_not_mtrr_msrs(self, msr):
        assert not is_mtrr_msr(msr)
        with pytest.raises(MemTypeError) as exc:
            MtrrState().write_msr(msr, 0, MP)
        assert exc.value.field == "msr"
        with pytest.raises(MemTypeError):
            MtrrState().read_msr(msr)

    def test_value_must_fit_64_bits(self):
        for msr in (0x2FF, 0x250, 0x200):
            with pytest.raises(MemTypeError):
                MtrrState().write_msr(msr, 1 << 64, MP)
            with pytest.raises(MemTypeError):
                MtrrState().write_msr(msr, -1, MP)

    def test_msr_write_read_round_trip(self):
        st_ = MtrrState()
        writes = {0x2FF: 0xC06}
        for msr, _, _ in FIXED_MSR_TABLE:
            writes[msr] = fixed_word(*[TYPES[(msr + k) % 5] for k in range(8)])
        for n in range(8):
            writes[0x200 + 2 * n] = (n + 1) * GIB | int(TYPES[n % 5])
            writes[0x201 + 2 * n] = 0xFC000_0000 | V_BIT
        for msr, value in writes.items():
            assert is_mtrr_msr(msr)
            st_ = st_.write_msr(msr, value, MP)
        for msr, value in writes.items():
            assert st_.read_msr(msr) == value
        assert st_.validate(MP) is st_
        assert len(st_.variable) == 8

    def test_write_extends_pairs_with_unwritten_masks(self):
        st_ = MtrrState().write_msr(0x206, GIB | 6, MP)  # PHYSBASE3
        assert len(st_.variable) == 4
        assert st_.variable[3].base == GIB | 6
        assert all(not p.mask_written for p in st_.variable)
        assert st_.read_msr(0x207) == 0
        assert st_.read_msr(0x20D) == 0  # pair 6, never written
        st_ = st_.write_msr(0x207, 0xFC000_0000 | V_BIT, MP)
        assert st_.variable[3].mask_written and st_.variable[3].valid

    def test_msr_names(self):
        assert msr_name(0x250) == "MTRRfix64K_00000"
        assert msr_name(0x258) == "MTRRfix16K_80000"
        assert msr_name(0x259) == "MTRRfix16K_A0000"
        assert [msr_name(0x268 + k) for k in range(8)] == [
            "MTRRfix4K_C0000", "MTRRfix4K_C8000", "MTRRfix4K_D0000", "MTRRfix4K_D8000",
            "MTRRfix4K_E0000", "MTRRfix4K_E8000", "MTRRfix4K_F0000", "MTRRfix4K_F8000",
        ]
        assert msr_name(0x200) == "MTRRphysBase0"
        assert msr_name(0x20F) == "MTRRphysMask7"
        assert msr_name(0x2FF) == "MTRRdefType"
        assert msr_name(0xFE) == "MTRRcap"
        assert msr_name(0x277) == "PAT"

    def test_range_to_pair(self):
        assert range_to_pair(3 * GIB, GIB, UC, 36) == VarMtrr(0xC000_0000, 0xF_C000_0800)
        assert range_to_pair(0, 0x1000, WB, 52) == VarMtrr(6, 0xF_FFFF_FFFF_F800)
        assert range_to_pair(0x80000000, 0x80000000, WC, 39) == pair(0x80000000, 0x80000000, WC, 39)
        for start, size in ((0, 0x800), (0, 3 * GIB), (GIB, 2 * GIB), (0x1000, 0x2000)):
            with pytest.raises(MemTypeError) as exc:
                range_to_pair(start, size, WB, 36)
            assert exc.value.field == "mtrr.variable"

    def test_phys_mask(self):
        assert phys_mask(36) == 0xF_FFFF_F000
        assert phys_mask(52) == 0xF_FFFF_FFFF_F000


# --- property tests --------------------------------------------------------------------

SIZE_LOGS = [12, 13, 16, 20, 21, 22, 29, 30, 31, 32, 34]


@st.composite
def mtrr_states(draw, non_overlapping: bool = False):
    maxphy = draw(st.integers(36, 52))
    e = draw(st.integers(0, 3)) > 0  # mostly enabled
    fe = draw(st.booleans())
    default = draw(st.sampled_from(TYPES))
    few = st.sampled_from([WB, WB, UC, WT, WC, WP])
    fixed = tuple(fixed_word(*draw(st.lists(few, min_size=8, max_size=8))) for _ in range(11))
    n = draw(st.integers(0, 8))
    taken: list[tuple[int, int]] = []
    variable = []
    for _ in range(n):
        log = draw(st.sampled_from([*SIZE_LOGS, maxphy - 1, maxphy]).filter(lambda x: x <= maxphy))
        max_slot = (1 << (maxphy - log)) - 1
        slot = draw(st.one_of(st.integers(0, min(7, max_slot)), st.integers(0, max_slot)))
        start, size = slot << log, 1 << log
        valid = draw(st.integers(0, 4)) > 0
        if non_overlapping and valid:
            if any(start < e2 and s2 < start + size for s2, e2 in taken):
                continue
            taken.append((start, start + size))
        variable.append(pair(start, size, draw(st.sampled_from(TYPES)), maxphy, valid))
    def_type = int(default) | (E_BIT if e else 0) | (FE_BIT if fe else 0)
    return MtrrState(def_type, fixed, tuple(variable)), maxphy


def interesting_addrs(st_: MtrrState, maxphy: int) -> list[int]:
    top = 1 << maxphy
    pts = {0, 0xFFFFF, MIB, MIB - 0x1000, 0x9FFFF, 0xC0000, top - 1}
    for p in st_.variable:
        for s, e in p.sdm_blocks(maxphy):
            pts.update((s, e - 1, e, s - 1, s + 0x1000))
    return sorted(a for a in pts if 0 <= a < top)


PROP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class TestProperties:
    @PROP
    @given(mtrr_states(), st.data())
    def test_lookups_match_reference_models(self, sm, data):
        st_, maxphy = sm
        st_.validate(maxphy)
        addrs = interesting_addrs(st_, maxphy)
        addrs += data.draw(st.lists(st.integers(0, (1 << maxphy) - 1), max_size=5))
        for a in addrs:
            assert sdm_lookup(st_, a, maxphy).type == ref_sdm(st_, a, maxphy), hex(a)
            for has in (True, False):
                assert kvm_lookup(st_, a, maxphy, has).type == ref_kvm(st_, a, maxphy, has), hex(a)

    @PROP
    @given(mtrr_states(non_overlapping=True), st.data())
    def test_sdm_equals_kvm_without_overlaps(self, sm, data):
        st_, maxphy = sm
        addrs = interesting_addrs(st_, maxphy)
        addrs += data.draw(st.lists(st.integers(0, (1 << maxphy) - 1), max_size=5))
        for a in addrs:
            s, k = sdm_lookup(st_, a, maxphy), kvm_lookup(st_, a, maxphy)
            assert s.type is not None
            assert s.type == k.type, hex(a)
            assert lookup_difference(s, k) is None

    @PROP
    @given(mtrr_states(), st.data(), st.booleans())
    def test_segments_cover_exactly(self, sm, data, sdm):
        st_, maxphy = sm
        top = 1 << maxphy
        pages = top >> 12
        start_page = data.draw(st.one_of(st.integers(0, 600), st.integers(0, pages - 1)))
        length = data.draw(st.one_of(st.integers(1, 1024), st.integers(1, 1 << 22), st.integers(1, pages)))
        start = start_page << 12
        end = min(top, start + (length << 12))
        segs = segments(st_, start, end, maxphy, sdm=sdm)
        assert segs and segs[0][0] == start and segs[-1][1] == end
        for (_, e1, l1), (s2, _, l2) in itertools.pairwise(segs):
            assert e1 == s2
            assert (l1.type, l1.source) != (l2.type, l2.source)  # maximal runs
        look = (lambda a: sdm_lookup(st_, a, maxphy)) if sdm else (lambda a: kvm_lookup(st_, a, maxphy))
        for s, e, lk in segs:
            assert s < e
            for a in (s, e - 0x1000, e - 1):
                got = look(a)
                assert (got.type, got.source) == (lk.type, lk.source), (hex(s), hex(e), hex(a))
        bps = breakpoints(st_, start, end, maxphy)
        assert bps[0] == start and bps[-1] == end
        assert {s for s, _, _ in segs} <= set(bps)

    @PROP
    @given(mtrr_states(), st.data())
    def test_consistent_range_is_uniform_for_kvm(self, sm, data):
        st_, maxphy = sm
        size = data.draw(st.sampled_from([2 * MIB, GIB]))
        block = data.draw(st.one_of(st.integers(0, 8), st.integers(0, ((1 << maxphy) // size) - 1)))
        start = block * size
        if kvm_range_consistent(st_, start, start + size, maxphy):
            types = {lk.type for _, _, lk in segments(st_, start, start + size, maxphy, sdm=False)}
            assert len(types) == 1, (hex(start), types)
        lp = largest_page(st_, start, maxphy)
        assert lp in ("1G", "2M", "4K")
        if lp == "1G":
            b = start & ~(GIB - 1)
            assert kvm_range_consistent(st_, b, b + GIB, maxphy)
        elif lp == "2M":
            b = start & ~(2 * MIB - 1)
            assert kvm_range_consistent(st_, b, b + 2 * MIB, maxphy)

    @settings(max_examples=60, deadline=None)
    @given(mtrr_states())
    def test_disabled_state_answers(self, sm):
        st_, maxphy = sm
        st_ = replace(st_, def_type=st_.def_type & ~E_BIT)
        for a in interesting_addrs(st_, maxphy):
            assert sdm_lookup(st_, a, maxphy).type is UC
            assert kvm_lookup(st_, a, maxphy).type is UC
            assert kvm_lookup(st_, a, maxphy, guest_has_mtrr=False).type is WB
        assert kvm_range_consistent(st_, 0, GIB, maxphy)
