"""What the guest expects on bare metal (app/x86/guest.py).

Why: "KVM made this weaker" is only meaningful against the bare-metal expectation: its own
MTRR type (SDM lookup) combined with its PAT entry, under its CR0 (docs/notes/sdm-rules.md §4, §5, §6).
"""

from __future__ import annotations

import itertools

import pytest

from app.x86.guest import Expectation, check_cr0, expectation, guest_pat_type
from app.x86.memtype import MemType, MemTypeError
from app.x86.mtrr import DEFAULT, UNDEFINED, VARIABLE, Lookup, MtrrState, VarMtrr, sdm_lookup

UC, WC, WT, WP, WB, UCM = (MemType.UC, MemType.WC, MemType.WT, MemType.WP, MemType.WB, MemType.UC_MINUS)
MTRR_ROWS = [UC, WC, WT, WP, WB]
PATS = [UC, UCM, WC, WT, WB, WP]

# docs/notes/sdm-rules.md §4, typed out again here (row MTRR, column PAT in PATS order).
TABLE = {
    UC: [UC, UC, WC, UC, UC, UC],
    WC: [UC, WC, WC, UC, WC, UC],
    WT: [UC, UC, WC, WT, WT, WP],
    WB: [UC, UC, WC, WT, WB, WP],
    WP: [UC, WC, WC, WT, WP, WP],
}


def lk(t: MemType | None) -> Lookup:
    return Lookup(t, UNDEFINED if t is None else VARIABLE, "test lookup")


class TestCr0:
    def test_nw_without_cd_raises(self):
        with pytest.raises(MemTypeError) as exc:
            check_cr0(cd=False, nw=True)
        assert exc.value.field == "vcpu.cr0_nw"
        with pytest.raises(MemTypeError) as exc:
            check_cr0(cd=False, nw=True, field="vcpus[2]")
        assert exc.value.field == "vcpus[2].cr0_nw"

    @pytest.mark.parametrize(("cd", "nw"), [(False, False), (True, False), (True, True)])
    def test_valid_combinations(self, cd, nw):
        assert check_cr0(cd=cd, nw=nw) is None

    def test_expectation_refuses_cd0_nw1(self):
        with pytest.raises(MemTypeError):
            expectation(lk(WB), WB, cd=False, nw=True)


class TestExpectation:
    @pytest.mark.parametrize(("mtrr", "pat"), list(itertools.product([*MTRR_ROWS, None], PATS)))
    @pytest.mark.parametrize("nw", [False, True])
    def test_cd1_is_uc(self, mtrr, pat, nw):
        e = expectation(lk(mtrr), pat, cd=True, nw=nw)
        assert isinstance(e, Expectation)
        assert e.type is UC
        assert "CD=1" in e.reason

    @pytest.mark.parametrize(("mtrr", "pat"), list(itertools.product(MTRR_ROWS, PATS)))
    def test_cd0_uses_the_table(self, mtrr, pat):
        e = expectation(lk(mtrr), pat, cd=False)
        assert e.type is TABLE[mtrr][PATS.index(pat)]
        assert mtrr.label in e.reason and pat.label in e.reason

    @pytest.mark.parametrize(("mtrr", "pat"), list(itertools.product(MTRR_ROWS, PATS)))
    def test_paging_off_uses_pat_wb(self, mtrr, pat):
        # CR0.PG=0: the PAT type is WB whatever the entry says -> the MTRR type.
        e = expectation(lk(mtrr), pat, cd=False, paging=False)
        assert e.type is mtrr

    def test_guest_pat_type(self):
        for t in PATS:
            assert guest_pat_type(t, paging=True) is t
            assert guest_pat_type(t, paging=False) is WB

    @pytest.mark.parametrize("pat", PATS)
    def test_no_mtrr_feature_pat_alone(self, pat):
        # The MTRR lookup is irrelevant, even an undefined one. PAT alone = the WB row,
        # so PAT UC- behaves as (and is reported as) UC.
        for mtrr in (*MTRR_ROWS, None):
            e = expectation(lk(mtrr), pat, cd=False, guest_has_mtrr=False)
            assert e.type is TABLE[WB][PATS.index(pat)]
            assert e.type is (UC if pat is UCM else pat)
            assert "no MTRR" in e.reason
        e = expectation(lk(UC), WT, cd=False, paging=False, guest_has_mtrr=False)
        assert e.type is WB

    @pytest.mark.parametrize("pat", PATS)
    def test_undefined_mtrr_gives_none(self, pat):
        e = expectation(lk(None), pat, cd=False)
        assert e.type is None
        assert "undefined" in e.reason

    def test_end_to_end_with_sdm_lookup(self):
        # WB everywhere, UC hole at 3G..4G; WC overlapping WB at 8G is undefined.
        v = (
            VarMtrr(0x0_C000_0000 | UC, 0xF_C000_0800),
            VarMtrr(0x2_0000_0000 | WB, 0xF_C000_0800),
            VarMtrr(0x2_0000_0000 | WC, 0xF_C000_0800),
        )
        st_ = MtrrState(def_type=0xC00 | WB, variable=v)
        assert expectation(sdm_lookup(st_, 0x1000_0000, 36), WC, cd=False).type is WC
        assert expectation(sdm_lookup(st_, 0x1000_0000, 36), UCM, cd=False).type is UC
        assert expectation(sdm_lookup(st_, 0x1000_0000, 36), WB, cd=False).type is WB
        assert sdm_lookup(st_, 0x1000_0000, 36).source == DEFAULT
        assert expectation(sdm_lookup(st_, 0xC000_0000, 36), WC, cd=False).type is WC
        assert expectation(sdm_lookup(st_, 0xC000_0000, 36), WB, cd=False).type is UC
        assert expectation(sdm_lookup(st_, 0x2_0000_0000, 36), WB, cd=False).type is None
        assert expectation(sdm_lookup(st_, 0x2_0000_0000, 36), WB, cd=True).type is UC
