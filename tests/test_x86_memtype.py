"""Memory-type encodings and the strength relation (app/x86/memtype.py).

Why: every other rule decodes raw MSR/EPT bytes through these helpers, and reviewers use
`relation` to call a KVM change "weaker" (dangerous) or "stronger" (slow but safe). The
expected values below are typed out from docs/notes/sdm-rules.md §1 (encodings) and §7 / Table 11-2
(properties), not computed with the code under test.
"""

from __future__ import annotations

import itertools

import pytest

from app.x86.memtype import (
    EPT_TYPES,
    INCOMPARABLE,
    MTRR_TYPES,
    PAT_TYPES,
    SAME,
    STRONGER,
    WEAKER,
    MemType,
    MemTypeError,
    ept_type,
    mtrr_type,
    pat_type,
    relation,
    relation_reason,
)

# docs/notes/sdm-rules.md §1: value -> (PAT name, MTRR name, EPT name); None = reserved.
ENCODINGS = {
    0: ("UC", "UC", "UC"),
    1: ("WC", "WC", "WC"),
    2: (None, None, None),
    3: (None, None, None),
    4: ("WT", "WT", "WT"),
    5: ("WP", "WP", "WP"),
    6: ("WB", "WB", "WB"),
    7: ("UC-", None, None),
}


def _expected(value: int, column: int) -> str | None:
    return ENCODINGS.get(value, (None, None, None))[column]


class TestEncodings:
    def test_enum_values_are_the_sdm_encodings(self):
        assert {t.label: int(t) for t in MemType} == {
            "UC": 0, "WC": 1, "WT": 4, "WP": 5, "WB": 6, "UC-": 7,
        }

    def test_labels_round_trip(self):
        for t in MemType:
            assert MemType.from_label(t.label) is t
            assert str(t) == t.label
        assert MemType.UC_MINUS.label == "UC-"

    @pytest.mark.parametrize("bad", ["UC_MINUS", "uc", "", "WX", "UC -"])
    def test_from_label_rejects_unknown(self, bad):
        with pytest.raises(ValueError):
            MemType.from_label(bad)

    def test_allowed_sets(self):
        assert {0, 1, 4, 5, 6, 7} == PAT_TYPES
        assert {0, 1, 4, 5, 6} == MTRR_TYPES
        assert {0, 1, 4, 5, 6} == EPT_TYPES

    @pytest.mark.parametrize(
        ("decode", "column", "field"),
        [(pat_type, 0, "pat"), (mtrr_type, 1, "mtrr"), (ept_type, 2, "ept.memtype")],
        ids=["pat", "mtrr", "ept"],
    )
    def test_every_byte_value(self, decode, column, field):
        for value in range(256):
            name = _expected(value, column)
            if name is None:
                with pytest.raises(MemTypeError) as exc:
                    decode(value)
                assert exc.value.field == field
                assert f"reserved type {value}" in exc.value.message
            else:
                assert decode(value).label == name

    def test_decoders_carry_the_given_field(self):
        with pytest.raises(MemTypeError) as exc:
            mtrr_type(7, "mtrr.def_type")
        assert exc.value.field == "mtrr.def_type"
        assert "mtrr.def_type" in str(exc.value)
        assert exc.value.rule  # names the broken rule

    def test_memtype_error_is_a_value_error(self):
        err = MemTypeError("a.b", "msg", "rule text")
        assert isinstance(err, ValueError)
        assert (err.field, err.message, err.rule) == ("a.b", "msg", "rule text")
        assert str(err) == "a.b: msg (rule text)"
        assert str(MemTypeError("f", "m")) == "f: m"


# --- the strength relation ---------------------------------------------------------
#
# The partial order (docs/notes/sdm-rules.md §7 and the KVM reviewers' usage, "WB is the weakest"):
#   UC (== UC-) is strongest; WP, WT, WB are successively weaker; WC is weaker than UC
#   but incomparable with WP/WT/WB (uncached, yet weakly ordered).
# Row = actual, column = expected. "weaker" = actual lets the CPU do more.
W, S, I, E = WEAKER, STRONGER, INCOMPARABLE, SAME
ORDER = ["UC", "UC-", "WC", "WT", "WP", "WB"]
RELATION_MATRIX = {
    #          UC  UC-  WC  WT  WP  WB
    "UC":  [E, E, S, S, S, S],
    "UC-": [E, E, S, S, S, S],
    "WC":  [W, W, E, I, I, I],
    "WT":  [W, W, I, E, W, S],
    "WP":  [W, W, I, S, E, S],
    "WB":  [W, W, I, W, W, E],
}
INVERSE = {W: S, S: W, E: E, I: I}
ALL = list(MemType)


class TestRelation:
    @pytest.mark.parametrize(
        ("actual", "expected"), list(itertools.product(ORDER, ORDER)), ids=lambda x: x
    )
    def test_all_36_pairs(self, actual, expected):
        want = RELATION_MATRIX[actual][ORDER.index(expected)]
        assert relation(MemType.from_label(actual), MemType.from_label(expected)) == want

    def test_matrix_is_itself_antisymmetric(self):
        # Guards the hand-written table above against typos.
        for a, b in itertools.product(ORDER, ORDER):
            assert RELATION_MATRIX[a][ORDER.index(b)] == INVERSE[RELATION_MATRIX[b][ORDER.index(a)]]

    @pytest.mark.parametrize(("a", "b"), list(itertools.product(ALL, ALL)))
    def test_antisymmetric(self, a, b):
        assert relation(a, b) == INVERSE[relation(b, a)]

    @pytest.mark.parametrize("t", ALL)
    def test_reflexive(self, t):
        assert relation(t, t) == SAME

    def test_uc_minus_behaves_like_uc(self):
        for t in ALL:
            assert relation(MemType.UC_MINUS, t) == relation(MemType.UC, t)
            assert relation(t, MemType.UC_MINUS) == relation(t, MemType.UC)

    def test_uc_is_strongest_and_wb_weakest_among_cached(self):
        for t in ALL:
            assert relation(MemType.UC, t) in (SAME, STRONGER)
        for t in (MemType.UC, MemType.UC_MINUS, MemType.WT, MemType.WP):
            assert relation(MemType.WB, t) == WEAKER

    def test_wc_incomparable_with_cached_types(self):
        for t in (MemType.WT, MemType.WP, MemType.WB):
            assert relation(MemType.WC, t) == INCOMPARABLE

    def test_transitive(self):
        for a, b, c in itertools.product(ALL, repeat=3):
            if relation(a, b) == WEAKER and relation(b, c) == WEAKER:
                assert relation(a, c) == WEAKER
            if relation(a, b) == SAME:
                assert relation(a, c) == relation(b, c)

    def test_reason_text(self):
        assert relation_reason(MemType.WB, MemType.WB) == "WB and WB behave alike"
        assert relation_reason(MemType.UC_MINUS, MemType.UC) == "UC- and UC behave alike"
        text = relation_reason(MemType.WB, MemType.UC)
        assert text.startswith("WB adds ") and "write_back" in text and "lacks" not in text
        text = relation_reason(MemType.UC, MemType.WT)
        assert text.startswith("UC lacks ") and "read_cache" in text
        text = relation_reason(MemType.WC, MemType.WT)
        assert "WC adds write_combine" in text and "WC lacks" in text


class TestLocations:
    """MemTypeError locations are tuples relative to what was validated (issue 11); each
    container puts its name in front, and `field`/str() are the dotted form."""

    def test_tuple_and_dotted(self):
        err = MemTypeError(("vcpu", "mtrr", "variable", 3, "mask"), "msg", "rule")
        assert err.loc == ("vcpu", "mtrr", "variable", 3, "mask")
        assert err.field == "vcpu.mtrr.variable[3].mask"
        assert str(err) == "vcpu.mtrr.variable[3].mask: msg (rule)"
        assert MemTypeError("line 7", "msg").loc == ("line 7",)  # a lone string is one segment
        assert str(MemTypeError("gpa", "msg")) == "gpa: msg"

    def test_within_and_located(self):
        from app.x86.memtype import located

        inner = MemTypeError(("variable", 0, "base"), "msg", "rule")
        assert inner.within("vcpu", "mtrr").loc == ("vcpu", "mtrr", "variable", 0, "base")
        assert inner.loc == ("variable", 0, "base")  # unchanged
        with pytest.raises(MemTypeError) as exc, located("events", 2):
            raise MemTypeError("value", "bad", "rule")
        assert exc.value.loc == ("events", 2, "value") and exc.value.message == "bad"

    def test_pickles(self):
        import pickle

        err = pickle.loads(pickle.dumps(MemTypeError(("a", 1), "msg", "rule")))
        assert (err.loc, err.message, err.rule, str(err)) == (("a", 1), "msg", "rule", "a[1]: msg (rule)")

    def test_core_locations_are_structured(self):
        from app.kvm.scenario import MemRange, MtrrWrite, VcpuState, VmConfig, apply_event, check_memory_map
        from app.x86.mtrr import MtrrState, VarMtrr

        with pytest.raises(MemTypeError) as exc:
            MtrrState(def_type=0xC06, variable=(VarMtrr(0, 0x801),)).validate(46, ("vcpu", "mtrr"))
        assert exc.value.loc == ("vcpu", "mtrr", "variable", 0, "mask")
        with pytest.raises(MemTypeError) as exc:
            check_memory_map((MemRange(0, 0x2000), MemRange(0x1000, 0x3000, "rom")), 46)
        assert exc.value.loc == ("memory_map", 1, "kind")
        with pytest.raises(MemTypeError) as exc:  # relative to the event: the caller names it
            apply_event(VmConfig(), VcpuState(), MtrrWrite(msr=0x2FF, value=0x3))
        assert exc.value.loc == ("value",)
