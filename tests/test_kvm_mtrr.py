"""KVM's vMTRR (app/kvm/mtrr.py): its lookup, list order, var_mtrr_range and huge-page check.

Why: `kvm_lookup` and `kvm_range_consistent` are what KVM v4.15..v6.10 actually did
(arch/x86/kvm/mtrr.c: kvm_mtrr_get_guest_memory_type, the mtrr_iter walk over the list
sorted by descending PHYSBASE, kvm_mtrr_check_gfn_range_consistency), including its
WB-for-undefined quirk. Expected values are re-stated from the kernel's rules (the small
reference models and typed-out tables in test_x86_mtrr.py), never taken from the code
under test. The SDM side and the properties comparing both stay in test_x86_mtrr.py.
"""

from __future__ import annotations

import itertools

import pytest

from app.kvm.mtrr import (
    kvm_disabled_type,
    kvm_lookup,
    kvm_range_consistent,
    kvm_var_order,
    largest_page,
    lookup_difference,
    update_mtrr_range,
    var_mtrr_range,
)
from app.x86.memtype import MemTypeError
from app.x86.mtrr import DEFAULT, DISABLED, UNDEFINED, MtrrState, VarMtrr, sdm_lookup
from app.x86.paging import PageSize
from tests.test_x86_mtrr import (
    ALL_WB_FIXED,
    GIB,
    MIB,
    MP,
    TYPES,
    UC,
    V_BIT,
    WB,
    WC,
    WP,
    WT,
    fixed_word,
    pair,
    ref_kvm_fold,
    ref_kvm_range,
    ref_sdm_overlap,
    state,
)


class TestKvmLookup:
    def test_disabled_type_depends_on_cpuid(self):
        st_ = state(WB, pair(0, 4 * GIB, WB), e=False, fe=True, fixed=ALL_WB_FIXED)
        for addr in (0, 0xFFFFF, 3 * GIB):
            lk = kvm_lookup(st_, addr, MP)
            assert (lk.type, lk.source) == (UC, DISABLED)
            lk = kvm_lookup(st_, addr, MP, guest_has_mtrr=False)
            assert (lk.type, lk.source) == (WB, DISABLED)
        assert kvm_disabled_type(True) is UC and kvm_disabled_type(False) is WB

    def test_guest_has_mtrr_only_matters_when_disabled(self):
        st_ = state(WT, pair(0, GIB, WC))
        for has in (True, False):
            assert kvm_lookup(st_, 0x5000, MP, has).type is WC
            assert kvm_lookup(st_, 2 * GIB, MP, has).type is WT

    @pytest.mark.parametrize("default", TYPES)
    def test_no_match_gives_default(self, default):
        st_ = state(default, pair(GIB, GIB, WC))
        lk = kvm_lookup(st_, 0x3000, MP)
        assert (lk.type, lk.source) == (default, DEFAULT)

    @pytest.mark.parametrize(("outer", "inner"), list(itertools.product(TYPES, TYPES)))
    def test_two_overlapping_ranges_inner_first(self, outer, inner):
        # KVM's list is sorted by descending raw PHYSBASE: the 3G range is walked first.
        for order in ((0, 1), (1, 0)):  # the index order of the pairs must not matter
            ranges = [pair(0, 4 * GIB, outer), pair(3 * GIB, GIB, inner)]
            st_ = state(WB, *(ranges[i] for i in order))
            lk = kvm_lookup(st_, 3 * GIB + 0x800, MP)
            assert lk.type == ref_kvm_fold([inner, outer])
            if ref_sdm_overlap({inner, outer}) is None:
                assert lk.type is WB and lk.source == UNDEFINED
            assert kvm_lookup(st_, 0, MP).type is outer
            assert kvm_lookup(st_, 4 * GIB, MP).type is WB

    @pytest.mark.parametrize(("a", "b"), list(itertools.combinations(TYPES, 2)))
    def test_same_block_ordered_by_type_byte(self, a, b):
        # Same address: the raw base differs only in the type byte, larger byte first.
        st_ = state(WB, pair(0, GIB, a), pair(0, GIB, b))
        first, second = max(a, b), min(a, b)
        assert kvm_lookup(st_, 0x10000000, MP).type == ref_kvm_fold([first, second])

    def test_fold_table(self):
        # docs/notes/kernel-history.md §2 step 3 for (first walked, second walked), typed out.
        table = {
            (UC, UC): UC, (UC, WC): WB, (UC, WT): WB, (UC, WP): WB, (UC, WB): WB,
            (WC, UC): UC, (WC, WC): WC, (WC, WT): WB, (WC, WP): WB, (WC, WB): WB,
            (WT, UC): UC, (WT, WC): WB, (WT, WT): WT, (WT, WP): WB, (WT, WB): WT,
            (WP, UC): UC, (WP, WC): WB, (WP, WT): WB, (WP, WP): WP, (WP, WB): WB,
            (WB, UC): UC, (WB, WC): WB, (WB, WT): WT, (WB, WP): WB, (WB, WB): WB,
        }
        for (first, second), want in table.items():
            assert ref_kvm_fold([first, second]) == want  # the reference agrees with the table
            st_ = state(UC, pair(0, 4 * GIB, second), pair(3 * GIB, GIB, first))
            assert kvm_lookup(st_, 3 * GIB, MP).type == want, (first, second)

    def test_list_order_caveat(self):
        # docs/notes/kernel-history.md §2: "WB 0-4G plus UC 3G-4G gives WB for 3G-4G, where the SDM says UC".
        st_ = state(UC, pair(0, 4 * GIB, WB), pair(3 * GIB, GIB, UC))
        s, k = sdm_lookup(st_, 3 * GIB, MP), kvm_lookup(st_, 3 * GIB, MP)
        assert s.type is UC
        assert k.type is WB and k.source == UNDEFINED
        diff = lookup_difference(s, k)
        assert diff is not None and "SDM says UC" in diff and "KVM uses WB" in diff
        # below 3G only the WB range matches: no difference
        s, k = sdm_lookup(st_, 2 * GIB, MP), kvm_lookup(st_, 2 * GIB, MP)
        assert s.type is k.type is WB
        assert lookup_difference(s, k) is None

    def test_uc_walked_second_wins(self):
        st_ = state(WB, pair(0, 4 * GIB, UC), pair(3 * GIB, GIB, WB))
        assert kvm_lookup(st_, 3 * GIB, MP).type is UC
        assert sdm_lookup(st_, 3 * GIB, MP).type is UC

    def test_three_ranges(self):
        # walk order 3G(WT), 2G(WB), 0(UC): WT, WT+WB -> WT, then incoming UC -> UC
        st_ = state(WB, pair(0, 4 * GIB, UC), pair(2 * GIB, 2 * GIB, WB), pair(3 * GIB, GIB, WT))
        assert kvm_lookup(st_, 3 * GIB, MP).type is UC
        # walk order 3G(UC), 2G(WB): UC then WB -> WB at once, the WT range is never reached
        st_ = state(WB, pair(0, 4 * GIB, WT), pair(2 * GIB, 2 * GIB, WB), pair(3 * GIB, GIB, UC))
        assert kvm_lookup(st_, 3 * GIB, MP).type is WB
        assert sdm_lookup(st_, 3 * GIB, MP).type is UC

    def test_undefined_difference_text(self):
        st_ = state(UC, pair(0, 4 * GIB, WC), pair(3 * GIB, GIB, WB))
        s, k = sdm_lookup(st_, 3 * GIB, MP), kvm_lookup(st_, 3 * GIB, MP)
        assert s.type is None and k.type is WB
        assert "SDM says undefined" in lookup_difference(s, k)

    def test_var_order(self):
        st_ = state(
            WB, pair(0, 4 * GIB, WB), pair(3 * GIB, GIB, UC), pair(0, GIB, UC),
            pair(GIB, GIB, WT, valid=False), pair(0, 4 * GIB, WB),
        )
        # raw bases: 0x6, 0xC0000000, 0x0, (invalid), 0x6 -> descending, ties: higher index first
        assert kvm_var_order(st_) == [1, 4, 0, 2]

    def test_kvm_range_formula(self):
        p = pair(3 * GIB, GIB, UC)
        assert var_mtrr_range(p, 36) == (3 * GIB, 4 * GIB)
        assert var_mtrr_range(p, 36) == ref_kvm_range(p, 36)
        # mask written with high bits of a larger MAXPHYADDR
        p = pair(3 * GIB, GIB, UC, maxphy=46)
        assert var_mtrr_range(p, 46) == (3 * GIB, 4 * GIB)
        # unaligned base: KVM keeps the low bits of the base as the start
        p = VarMtrr(0x1000 | WB, (((1 << MP) - 1) & ~0x1FFF) | V_BIT)
        assert var_mtrr_range(p, MP) == (0x1000, 0x2000)
        assert var_mtrr_range(p, MP) == ref_kvm_range(p, MP)
        assert p.sdm_blocks(MP) == [(0, 0x2000)]
        # never-written mask: 0, so the end wraps to 0
        assert var_mtrr_range(VarMtrr(0x5000 | WB, 0, mask_written=False), MP) == (0x5000, 0)

    def test_unaligned_base_differs_from_sdm(self):
        p = VarMtrr(0x1000 | UC, (((1 << MP) - 1) & ~0x1FFF) | V_BIT)
        st_ = state(WB, p)
        assert sdm_lookup(st_, 0, MP).type is UC
        assert kvm_lookup(st_, 0, MP).type is WB
        assert sdm_lookup(st_, 0x1000, MP).type is kvm_lookup(st_, 0x1000, MP).type is UC

    def test_kvm_lookup_uses_the_whole_page(self):
        st_ = state(WB, pair(0x200000, 0x1000, UC))
        assert kvm_lookup(st_, 0x200FFF, MP).type is UC
        assert kvm_lookup(st_, 0x201000, MP).type is WB


# --- huge pages -----------------------------------------------------------------------


class TestRangeConsistency:
    def test_uniform_allows_1g(self):
        st_ = state(WB)
        assert kvm_range_consistent(st_, GIB, 2 * GIB, MP)
        assert largest_page(st_, GIB + 12345, MP) == "1G"
        st_ = state(WB, pair(0, 4 * GIB, WB))
        assert largest_page(st_, 3 * GIB, MP) == "1G"

    def test_uc_hole_inside_1g(self):
        st_ = state(WB, pair(3 * GIB, 2 * MIB, UC))
        assert not kvm_range_consistent(st_, 3 * GIB, 4 * GIB, MP)
        assert kvm_range_consistent(st_, 3 * GIB, 3 * GIB + 2 * MIB, MP)
        assert largest_page(st_, 3 * GIB, MP) == "2M"
        assert largest_page(st_, 3 * GIB + 2 * MIB, MP) == "2M"
        assert largest_page(st_, 2 * GIB, MP) == "1G"

    def test_uc_4k_forces_4k(self):
        st_ = state(WB, pair(3 * GIB + 0x1000, 0x1000, UC))
        assert largest_page(st_, 3 * GIB, MP) == "4K"
        assert largest_page(st_, 3 * GIB + 0x1000, MP) == "4K"
        assert largest_page(st_, 3 * GIB + 0x1FFFFF, MP) == "4K"
        assert largest_page(st_, 3 * GIB + 2 * MIB, MP) == "2M"

    def test_disabled_is_always_consistent(self):
        st_ = state(WB, pair(3 * GIB, 0x1000, UC), pair(3 * GIB, GIB, WC), e=False, fe=True)
        assert kvm_range_consistent(st_, 3 * GIB, 4 * GIB, MP)
        assert largest_page(st_, 3 * GIB, MP) == "1G"

    def test_partial_map_rule(self):
        # A gap exists: true iff the single matched type equals the default.
        st_ = state(WB, pair(3 * GIB, 2 * MIB, WB))
        assert kvm_range_consistent(st_, 3 * GIB, 4 * GIB, MP)
        st_ = state(WB, pair(3 * GIB, 2 * MIB, WT))
        assert not kvm_range_consistent(st_, 3 * GIB, 4 * GIB, MP)
        st_ = state(WT, pair(3 * GIB + 512 * MIB, 2 * MIB, WT))
        assert kvm_range_consistent(st_, 3 * GIB, 4 * GIB, MP)
        # No gap: the covering type need not be the default.
        st_ = state(WB, pair(2 * GIB, 2 * GIB, WT))
        assert kvm_range_consistent(st_, 3 * GIB, 4 * GIB, MP)
        assert largest_page(st_, 3 * GIB, MP) == "1G"
        # Nothing matched: consistent.
        st_ = state(UC, pair(0, GIB, WT))
        assert kvm_range_consistent(st_, 3 * GIB, 4 * GIB, MP)

    def test_false_gap_from_descending_order(self):
        # Two WT halves cover [3G,4G) fully, but walked high-first the first one seems to leave
        # a gap below it (docs/notes/kernel-history.md §2: conservative, only forbids a huge page).
        st_ = state(WB, pair(3 * GIB, GIB // 2, WT), pair(3 * GIB + GIB // 2, GIB // 2, WT))
        assert not kvm_range_consistent(st_, 3 * GIB, 4 * GIB, MP)
        assert largest_page(st_, 3 * GIB, MP) == "2M"
        st_ = state(WT, pair(3 * GIB, GIB // 2, WT), pair(3 * GIB + GIB // 2, GIB // 2, WT))
        assert kvm_range_consistent(st_, 3 * GIB, 4 * GIB, MP)

    def test_mixed_types_fail(self):
        st_ = state(WB, pair(2 * GIB, 2 * GIB, WT), pair(3 * GIB, GIB, WB))
        assert not kvm_range_consistent(st_, 3 * GIB, 4 * GIB, MP)

    def test_fixed_ranges_below_1mib(self):
        st_ = state(WB, fe=True, fixed=ALL_WB_FIXED)
        assert largest_page(st_, 0, MP) == "1G"
        # one fixed byte differs: no huge page over the first 2M
        fixed = list(ALL_WB_FIXED)
        fixed[10] = fixed_word(*[WB] * 7, UC)  # 0xFF000-0xFFFFF
        st_ = state(WB, fe=True, fixed=fixed)
        assert not kvm_range_consistent(st_, 0, 2 * MIB, MP)
        assert largest_page(st_, 0x1000, MP) == "4K"
        assert largest_page(st_, 2 * MIB, MP) == "2M"
        # FE=0: the fixed bytes are ignored
        st_ = state(WB, fe=False, fixed=fixed)
        assert largest_page(st_, 0x1000, MP) == "1G"
        # all fixed WB but the default is UC: WB over a gap != default
        st_ = state(UC, fe=True, fixed=ALL_WB_FIXED)
        assert not kvm_range_consistent(st_, 0, 2 * MIB, MP)
        # a range entirely inside the fixed area stays within one entry
        assert kvm_range_consistent(st_, 0, 0x10000, MP)
        assert not kvm_range_consistent(state(UC, fe=True, fixed=fixed), 0xFE000, MIB, MP)

    def test_largest_page_stays_below_maxphyaddr(self):
        st_ = state(WB)
        assert largest_page(st_, (1 << 36) - 0x1000, 36) == "1G"
        st_ = state(WB, pair((1 << 36) - 0x1000, 0x1000, UC))
        assert largest_page(st_, (1 << 36) - 0x1000, 36) == "4K"
        assert largest_page(st_, (1 << 36) - 4 * MIB, 36) == "2M"


class TestUpdateMtrrRange:
    """update_mtrr(): MTRRdefType zaps everything, a fixed MSR its window (nothing with
    FE=0), a variable pair var_mtrr_range() of its new value (nothing when it wraps)."""

    EVERYTHING = (0, 1 << 36)

    def test_def_type_and_fixed(self):
        on, off = state(WB, fe=True), state(WB, fe=False)
        assert update_mtrr_range(0x2FF, off, MP, self.EVERYTHING)[0] == self.EVERYTHING
        assert update_mtrr_range(0x250, on, MP, self.EVERYTHING)[0] == (0, 0x80000)
        assert update_mtrr_range(0x259, on, MP, self.EVERYTHING)[0] == (0xA0000, 0xC0000)
        assert update_mtrr_range(0x26F, on, MP, self.EVERYTHING)[0] == (0xF8000, 0x100000)
        assert update_mtrr_range(0x250, off, MP, self.EVERYTHING)[0] is None

    def test_variable_pair(self):
        st_ = state(WB, VarMtrr(), pair(3 * GIB, GIB, UC))
        for msr in (0x202, 0x203):
            assert update_mtrr_range(msr, st_, MP, self.EVERYTHING)[0] == (3 * GIB, 4 * GIB)
        st_ = MtrrState().write_msr(0x200, 5 * GIB | int(WB), MP)  # mask never written
        assert update_mtrr_range(0x200, st_, MP, self.EVERYTHING)[0] == (5 * GIB, 5 * GIB)

    def test_not_an_mtrr_msr(self):
        with pytest.raises(MemTypeError) as e:
            update_mtrr_range(0x277, MtrrState(), MP, self.EVERYTHING)
        assert e.value.loc == ("msr",)


def test_largest_page_is_a_page_size():
    assert largest_page(state(WB), 0, MP) is PageSize.SIZE_1G
    assert largest_page(state(WB, pair(0, 4096, UC)), 0, MP) is PageSize.SIZE_4K
