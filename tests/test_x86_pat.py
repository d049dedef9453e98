"""IA32_PAT parsing, presets, and PTE bits -> PAT index (app/x86/pat.py).

Why: a wrong byte order or a misplaced PAT bit silently picks another entry and so another
memory type; a reserved byte accepted here would be a #GP on real hardware (docs/notes/sdm-rules.md §2).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.x86.memtype import MemType, MemTypeError
from app.x86.pat import (
    PAT_LINUX,
    PAT_LINUX_LEGACY,
    PAT_POWER_ON,
    PAT_PRESETS,
    Pat,
    index_to_pte_bits,
    pat_index,
    pte_bits_to_index,
    pte_flags_text,
)

VALID_BYTES = (0, 1, 4, 5, 6, 7)
UC, WC, WT, WP, WB, UCM = (MemType.UC, MemType.WC, MemType.WT, MemType.WP, MemType.WB, MemType.UC_MINUS)


class TestParse:
    def test_power_on_value(self):
        # docs/notes/sdm-rules.md §2: 0x0007040600070406 = WB, WT, UC-, UC, WB, WT, UC-, UC.
        assert PAT_POWER_ON == 0x0007040600070406
        assert Pat.from_msr(PAT_POWER_ON).entries == (WB, WT, UCM, UC, WB, WT, UCM, UC)

    def test_linux_legacy_value(self):
        # docs/notes/sdm-rules.md §2 / docs/notes/review-thread.md §5: PA1 = PA5 = WC, rest as at power-on.
        assert PAT_LINUX_LEGACY == 0x0007010600070106
        assert Pat.from_msr(PAT_LINUX_LEGACY).entries == (WB, WC, UCM, UC, WB, WC, UCM, UC)

    def test_linux_current_value(self):
        # Linux pat_init() since WT/WP support: WB, WC, UC-, UC, WB, WP, UC-, WT.
        assert Pat.from_msr(PAT_LINUX).entries == (WB, WC, UCM, UC, WB, WP, UCM, WT)

    def test_presets(self):
        assert PAT_PRESETS["power-on"] == 0x0007040600070406
        assert PAT_PRESETS["linux-legacy"] == 0x0007010600070106
        assert PAT_PRESETS["linux"] == PAT_LINUX
        for value in PAT_PRESETS.values():
            assert Pat.from_msr(value).to_msr() == value

    def test_byte_order_lowest_byte_is_entry_0(self):
        pat = Pat.from_msr(0x0706050401000006)
        assert pat.entries == (WB, UC, UC, WC, WT, WP, WB, UCM)
        assert pat[0] is WB and pat[7] is UCM

    def test_hex(self):
        assert Pat.from_msr(PAT_POWER_ON).hex() == "0x0007040600070406"
        assert Pat.from_msr(0).hex() == "0x0000000000000000"

    @pytest.mark.parametrize("n", range(8))
    def test_every_value_of_one_entry(self, n):
        # Other entries WB; entry n takes every byte value 0..255.
        base = 0x0606060606060606 & ~(0xFF << (8 * n))
        accepted = []
        for v in range(256):
            value = base | v << (8 * n)
            try:
                pat = Pat.from_msr(value)
            except MemTypeError as exc:
                assert exc.field == "pat"
                assert f"PAT entry {n} has reserved type {v}" in exc.message
                assert f"PAT entry {n} has reserved type {v}" in str(exc)
            else:
                accepted.append(v)
                assert int(pat[n]) == v
                assert all(pat[k] is WB for k in range(8) if k != n)
        assert accepted == [0, 1, 4, 5, 6, 7]

    def test_first_reserved_entry_is_reported_and_field_is_passed(self):
        with pytest.raises(MemTypeError) as exc:
            Pat.from_msr(0x0300020006, field="vcpu.pat")
        assert exc.value.field == "vcpu.pat"
        assert "PAT entry 2 has reserved type 2" in exc.value.message

    @pytest.mark.parametrize("bad", [1 << 64, -1, (1 << 64) + 6])
    def test_out_of_64_bits(self, bad):
        with pytest.raises(MemTypeError) as exc:
            Pat.from_msr(bad)
        assert exc.value.field == "pat"

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.sampled_from(VALID_BYTES), min_size=8, max_size=8))
    def test_round_trip(self, bytes_):
        value = sum(b << (8 * i) for i, b in enumerate(bytes_))
        pat = Pat.from_msr(value)
        assert [int(t) for t in pat.entries] == bytes_
        assert pat.to_msr() == value
        assert Pat.from_msr(pat.to_msr()) == pat
        assert int(pat.hex(), 16) == value

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.sampled_from(VALID_BYTES), min_size=8, max_size=8),
        st.integers(0, 7),
        st.integers(0, 255).filter(lambda b: b not in VALID_BYTES),
    )
    def test_any_reserved_byte_is_refused(self, bytes_, n, bad):
        bytes_[n] = bad
        value = sum(b << (8 * i) for i, b in enumerate(bytes_))
        with pytest.raises(MemTypeError, match=f"PAT entry {n} has reserved type {bad}"):
            Pat.from_msr(value)


COMBOS = list(itertools.product((0, 1), repeat=3))  # (pat, pcd, pwt)


class TestIndex:
    @pytest.mark.parametrize(("pat", "pcd", "pwt"), COMBOS)
    def test_pat_index(self, pat, pcd, pwt):
        assert pat_index(pwt=bool(pwt), pcd=bool(pcd), pat=bool(pat)) == 4 * pat + 2 * pcd + pwt

    @pytest.mark.parametrize(("pat", "pcd", "pwt"), COMBOS)
    def test_4k_pte(self, pat, pcd, pwt):
        # PWT bit 3, PCD bit 4, PAT bit 7 in a 4 KiB PTE.
        pte = pwt << 3 | pcd << 4 | pat << 7
        want = 4 * pat + 2 * pcd + pwt
        assert pte_bits_to_index(pte) == want
        assert pte_bits_to_index(pte, large=False) == want
        # Other bits (present, RW, address incl. bit 12, NX) do not matter.
        assert pte_bits_to_index(pte | 0x8000_0000_1234_5067 & ~(1 << 7 | 1 << 3 | 1 << 4)) == want
        assert pte_bits_to_index(pte | 1 << 12) == want
        assert index_to_pte_bits(want) == pte

    @pytest.mark.parametrize(("pat", "pcd", "pwt"), COMBOS)
    def test_large_leaf(self, pat, pcd, pwt):
        # PAT moves to bit 12 in a 2M/4M/1G leaf; bit 7 is PS there and must not count.
        pte = pwt << 3 | pcd << 4 | pat << 12
        want = 4 * pat + 2 * pcd + pwt
        assert pte_bits_to_index(pte, large=True) == want
        assert pte_bits_to_index(pte | 1 << 7, large=True) == want
        assert index_to_pte_bits(want, large=True) == pte

    def test_bit7_vs_bit12(self):
        assert pte_bits_to_index(1 << 7) == 4
        assert pte_bits_to_index(1 << 12) == 0
        assert pte_bits_to_index(1 << 7, large=True) == 0
        assert pte_bits_to_index(1 << 12, large=True) == 4

    @pytest.mark.parametrize("large", [False, True])
    def test_inverse(self, large):
        for index in range(8):
            assert pte_bits_to_index(index_to_pte_bits(index, large), large) == index

    @pytest.mark.parametrize("bad", [-1, 8, 100])
    def test_inverse_rejects_out_of_range(self, bad):
        with pytest.raises(MemTypeError) as exc:
            index_to_pte_bits(bad)
        assert exc.value.field == "pat_index"

    def test_flags_text(self):
        assert pte_flags_text(0) == "PAT=0 PCD=0 PWT=0"
        assert pte_flags_text(5) == "PAT=1 PCD=0 PWT=1"
        assert pte_flags_text(6) == "PAT=1 PCD=1 PWT=0"

    def test_power_on_selects_by_pte(self):
        pat = Pat.from_msr(PAT_POWER_ON)
        # PCD=1 PWT=1 -> entry 3 = UC; PCD=1 alone -> entry 2 = UC-; PWT alone -> WT.
        assert pat[pte_bits_to_index(1 << 3 | 1 << 4)] is UC
        assert pat[pte_bits_to_index(1 << 4)] is UCM
        assert pat[pte_bits_to_index(1 << 3)] is WT
        assert pat[pte_bits_to_index(0)] is WB
