"""The MTRR x PAT table, EPT memtype/IPAT encodings and leaf entries (app/x86/ept.py).

Why: the effective type of every guest access under EPT comes from this table with the EPT
type in the MTRR's place (docs/notes/sdm-rules.md §4, §6). The table below is typed out cell by cell
from docs/notes/sdm-rules.md §4, independently of `COMBINE`, so a transposed or mistyped cell fails.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.x86.ept import (
    COMBINE,
    FOOTNOTE_3,
    EptLeaf,
    combine,
    effective_type,
    mt_mask,
    uc_snoop_note,
)
from app.x86.memtype import MemType, MemTypeError

M = MemType.from_label

# docs/notes/sdm-rules.md §4. Rows: MTRR (or EPT) type; columns in this order:
PAT_COLS = ["UC", "UC-", "WC", "WT", "WB", "WP"]
SDM_TABLE = {
    "UC": ["UC", "UC", "WC", "UC", "UC", "UC"],
    "WC": ["UC", "WC", "WC", "UC", "WC", "UC"],
    "WT": ["UC", "UC", "WC", "WT", "WT", "WP"],
    "WB": ["UC", "UC", "WC", "WT", "WB", "WP"],
    "WP": ["UC", "WC", "WC", "WT", "WP", "WP"],
}
# Cells carrying footnote 3 (undefined in the ~2008 edition).
FOOTNOTE_3_CELLS = {("WC", "WT"), ("WC", "WP"), ("WT", "WP"), ("WP", "UC-"), ("WP", "WT")}
# Footnote 1: UC that came from the MTRR side; footnote 2: UC that came from PAT.
FOOTNOTE_1_CELLS = {("UC", p) for p in ("UC", "UC-", "WT", "WB", "WP")}
FOOTNOTE_2_CELLS = {
    ("WC", "UC"), ("WC", "WT"), ("WC", "WP"),
    ("WT", "UC"), ("WT", "UC-"), ("WB", "UC"), ("WB", "UC-"), ("WP", "UC"),
}
CELLS = [(row, col) for row in SDM_TABLE for col in PAT_COLS]


def expected_cell(row: str, col: str) -> str:
    return SDM_TABLE[row][PAT_COLS.index(col)]


class TestCombineTable:
    def test_thirty_cells(self):
        assert len(CELLS) == 30
        assert len(COMBINE) == 30
        assert {(r.label, p.label) for r, p in COMBINE} == set(CELLS)

    @pytest.mark.parametrize(("row", "col"), CELLS, ids=[f"{r}x{c}" for r, c in CELLS])
    def test_cell(self, row, col):
        assert combine(M(row), M(col)).label == expected_cell(row, col)
        assert COMBINE[(M(row), M(col))].label == expected_cell(row, col)

    def test_footnote_3_cells(self):
        assert {(r.label, p.label) for r, p in FOOTNOTE_3} == FOOTNOTE_3_CELLS
        # their values as defined from ~2009 on
        assert combine(M("WC"), M("WT")) is MemType.UC
        assert combine(M("WC"), M("WP")) is MemType.UC
        assert combine(M("WT"), M("WP")) is MemType.WP
        assert combine(M("WP"), M("UC-")) is MemType.WC
        assert combine(M("WP"), M("WT")) is MemType.WT

    def test_reading_aids(self):
        # docs/notes/sdm-rules.md §4 "Reading aids", checked over the whole table.
        for row in SDM_TABLE:
            r = M(row)
            assert combine(r, MemType.UC) is MemType.UC
            assert combine(r, MemType.WC) is MemType.WC
            assert combine(r, MemType.WB) is r
            want = MemType.WC if row in ("WC", "WP") else MemType.UC
            assert combine(r, MemType.UC_MINUS) is want

    def test_only_three_cells_give_a_new_type(self):
        novel = {
            (r, c) for r, c in CELLS
            if expected_cell(r, c) not in (r, c) and not (c == "UC-" and expected_cell(r, c) == "UC")
        }
        assert novel == {("WC", "WT"), ("WC", "WP"), ("WP", "UC-")}
        for r, c in novel:
            assert combine(M(r), M(c)).label not in (r, c)

    def test_never_returns_uc_minus(self):
        for r, c in CELLS:
            assert combine(M(r), M(c)) is not MemType.UC_MINUS

    @pytest.mark.parametrize("pat", list(MemType))
    def test_uc_minus_is_not_an_mtrr_or_ept_row(self, pat):
        with pytest.raises(MemTypeError) as exc:
            combine(MemType.UC_MINUS, pat)
        assert exc.value.field == "mtrr"
        with pytest.raises(MemTypeError):
            effective_type(MemType.UC_MINUS, False, pat)

    def test_bochs_and_linux_deviations_are_not_copied(self):
        # docs/notes/sdm-rules.md §4: Bochs gives WT for WT x WP and UC for WP x UC-; pat.rst gives UC for
        # WC x UC-. The SDM values are WP, WC, WC.
        assert combine(MemType.WT, MemType.WP) is MemType.WP
        assert combine(MemType.WP, MemType.UC_MINUS) is MemType.WC
        assert combine(MemType.WC, MemType.UC_MINUS) is MemType.WC
        # hpa's symmetric table gives UC for MTRR UC + PAT WC; the SDM gives WC.
        assert combine(MemType.UC, MemType.WC) is MemType.WC

    @pytest.mark.parametrize(("row", "col"), CELLS, ids=[f"{r}x{c}" for r, c in CELLS])
    def test_uc_snoop_note(self, row, col):
        note = uc_snoop_note(M(row), M(col))
        if (row, col) in FOOTNOTE_1_CELLS:
            assert note is not None and "MTRR" in note and "no snoop" in note
        elif (row, col) in FOOTNOTE_2_CELLS:
            assert note is not None and "PAT" in note and "snoops" in note
        else:
            assert note is None
            assert expected_cell(row, col) != "UC"

    def test_footnote_sets_cover_every_uc_cell(self):
        uc_cells = {(r, c) for r, c in CELLS if expected_cell(r, c) == "UC"}
        assert uc_cells == FOOTNOTE_1_CELLS | FOOTNOTE_2_CELLS
        assert not FOOTNOTE_1_CELLS & FOOTNOTE_2_CELLS


EPT_TYPES = [MemType.UC, MemType.WC, MemType.WT, MemType.WP, MemType.WB]


class TestMtMask:
    @pytest.mark.parametrize(
        ("memtype", "ipat", "value"),
        [
            ("UC", False, 0x00), ("UC", True, 0x40), ("WB", False, 0x30), ("WB", True, 0x70),
            ("WC", False, 0x08), ("WT", False, 0x20), ("WP", False, 0x28),
            ("WC", True, 0x48), ("WT", True, 0x60), ("WP", True, 0x68),
        ],
    )
    def test_values(self, memtype, ipat, value):
        assert mt_mask(M(memtype), ipat) == value

    @pytest.mark.parametrize(("memtype", "ipat"), list(itertools.product(EPT_TYPES, (False, True))))
    def test_decodes_back(self, memtype, ipat):
        v = mt_mask(memtype, ipat)
        assert v & ~0x78 == 0
        assert (v >> 3) & 7 == int(memtype)
        assert bool(v & 0x40) == ipat


class TestEffectiveType:
    @pytest.mark.parametrize(("ept", "pat"), list(itertools.product(EPT_TYPES, list(MemType))))
    def test_ipat_set_uses_ept_type_alone(self, ept, pat):
        assert effective_type(ept, True, pat) is ept

    @pytest.mark.parametrize(("row", "col"), CELLS, ids=[f"{r}x{c}" for r, c in CELLS])
    def test_ipat_clear_uses_the_table(self, row, col):
        assert effective_type(M(row), False, M(col)).label == expected_cell(row, col)

    def test_thread_examples(self):
        # docs/notes/review-thread.md §5: EPT UC for MMIO + PAT WC -> WC; IPAT ignores PAT.
        assert effective_type(MemType.UC, False, MemType.WC) is MemType.WC
        assert effective_type(MemType.WB, True, MemType.UC) is MemType.WB
        # bochs case: EPT WB without IPAT + PAT UC- is uncached (the table says UC).
        assert effective_type(MemType.WB, False, MemType.UC_MINUS) is MemType.UC


class TestEptLeaf:
    def test_build_4k(self):
        leaf = EptLeaf.build(0x12345678, MemType.WB, True)
        # address aligned to 4K, RWX=111, MT=6 (0x30), IPAT (0x40), accessed (0x100)
        assert leaf.raw == 0x12345000 | 0x7 | 0x30 | 0x40 | 0x100
        assert leaf.level == 1
        assert leaf.page_size == "4K"
        assert leaf.memtype_bits == 6
        assert leaf.ipat is True
        assert leaf.misconfig() == []

    def test_build_2m_and_1g(self):
        leaf = EptLeaf.build(0x1_2345_6789, MemType.UC, False, "2M", rwx=3, accessed=False, dirty=True)
        assert leaf.raw == (0x1_2340_0000) | 0x3 | 0x00 | 0x80 | 0x200
        assert leaf.level == 2 and leaf.page_size == "2M"
        assert leaf.memtype_bits == 0 and leaf.ipat is False
        leaf = EptLeaf.build(0x1_7fff_ffff, MemType.WT, False, "1G")
        assert leaf.raw == 0x1_4000_0000 | 0x7 | 0x20 | 0x80 | 0x100
        assert leaf.level == 3 and leaf.page_size == "1G"

    def test_build_drops_bits_above_51(self):
        leaf = EptLeaf.build(1 << 52 | 0x5000, MemType.WB, False)
        assert leaf.raw >> 52 == 0
        assert leaf.raw & ~0xFFF == 0x5000

    @settings(max_examples=100, deadline=None)
    @given(
        st.integers(0, (1 << 52) - 1),
        st.sampled_from(EPT_TYPES),
        st.booleans(),
        st.sampled_from(["4K", "2M", "1G"]),
        st.integers(0, 7),
        st.booleans(),
        st.booleans(),
    )
    def test_build_fields_round_trip(self, hpa, memtype, ipat, size, rwx, accessed, dirty):
        leaf = EptLeaf.build(hpa, memtype, ipat, size, rwx=rwx, accessed=accessed, dirty=dirty)
        f = {x.name: x for x in leaf.fields()}
        assert f["R"].value == rwx & 1
        assert f["W"].value == rwx >> 1 & 1
        assert f["X"].value == rwx >> 2 & 1
        assert f["MT"].value == int(memtype)
        assert f["MT"].meaning.endswith(memtype.label)
        assert f["IPAT"].value == int(ipat)
        assert f["PS"].value == (0 if size == "4K" else 1)
        assert f["A"].value == int(accessed)
        assert f["D"].value == int(dirty)
        assert f["XU"].value == 0
        assert f["SVE"].value == 0
        lo = {"4K": 12, "2M": 21, "1G": 30}[size]
        assert (f["ADDR"].lo, f["ADDR"].hi) == (lo, 51)
        assert f["ADDR"].value == hpa >> lo
        # bit positions as in docs/notes/sdm-rules.md §6
        spans = {x.name: (x.lo, x.hi) for x in leaf.fields()}
        assert spans["MT"] == (3, 5) and spans["IPAT"] == (6, 6) and spans["PS"] == (7, 7)
        assert spans["A"] == (8, 8) and spans["D"] == (9, 9) and spans["SVE"] == (63, 63)

    @pytest.mark.parametrize("mt", range(8))
    def test_misconfig_memtypes(self, mt):
        leaf = EptLeaf(0x5000 | mt << 3 | 0x7)
        errs = leaf.misconfig()
        if mt in (2, 3, 7):
            assert len(errs) == 1 and f"memtype {mt}" in errs[0]
            mt_field = next(x for x in leaf.fields() if x.name == "MT")
            assert "reserved" in mt_field.meaning
        else:
            assert errs == []

    @pytest.mark.parametrize("xwr", range(8))
    def test_misconfig_xwr(self, xwr):
        leaf = EptLeaf(0x6 << 3 | xwr)  # WB; bits 2:0 = X W R
        bad_always = xwr in (0b010, 0b110)  # writable, not readable
        errs = leaf.misconfig()
        assert bool(errs) == bad_always
        if bad_always:
            assert f"XWR={xwr:03b}" in errs[0]
        errs = leaf.misconfig(exec_only_ok=False)
        assert bool(errs) == (bad_always or xwr == 0b100)

    def test_misconfig_both(self):
        assert len(EptLeaf(0x7 << 3 | 0b010).misconfig()) == 2

    def test_uc_minus_built_leaf_is_a_misconfig(self):
        # Building with UC- writes encoding 7, which is reserved in EPT.
        leaf = EptLeaf.build(0, MemType.UC_MINUS, False)
        assert leaf.memtype_bits == 7
        assert leaf.misconfig()
