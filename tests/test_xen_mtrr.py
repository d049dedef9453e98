"""Xen's mtrr_get_type() (xen/arch/x86/hvm/mtrr.c:179 at RELEASE-4.22.0), case by case.

Expected values are read off the C function: E=0 -> UC; fixed ranges below 1 MiB with
FE (and -1 for orders that span more than one fixed sub-range); variable pairs in index
order, first match when none overlap, else UC wins, WT+WB -> WT, otherwise the last
match; -1 for a superpage that different types match.
"""

import itertools

import pytest

from app.x86.memtype import MemType
from app.x86.mtrr import MtrrState, VarMtrr, range_to_pair, sdm_lookup
from app.xen import xen_mtrr_type
from app.xen.mtrr import var_overlapped

UC, WC, WT, WP, WB = MemType.UC, MemType.WC, MemType.WT, MemType.WP, MemType.WB
MAXPHY = 40
GIB = 1 << 30
E, FE = 0x800, 0x400


def pair(start, size, t):
    return range_to_pair(start, size, t, MAXPHY)


def state(default, *pairs, fixed=None):
    return MtrrState(def_type=E | (FE if fixed is not None else 0) | int(default),
                     fixed=fixed or (0,) * 11, variable=pairs)


def test_disabled_is_uc_whatever_the_type():
    for t in (UC, WC, WT, WP, WB):
        assert xen_mtrr_type(MtrrState(def_type=int(t) | FE), 0x1000).type == UC


def test_fixed_ranges_and_their_orders():
    fixed = tuple(int(WB) * 0x0101010101010101 for _ in range(11))
    fixed = (fixed[0], fixed[1], int(UC) * 0x0101010101010101, *fixed[3:])  # A0000-BFFFF UC
    s = state(WB, fixed=fixed)
    assert xen_mtrr_type(s, 0xA0000).type == UC
    assert xen_mtrr_type(s, 0x00000).type == WB
    # order limits: 64K region up to order 4, 16K up to 2, 4K only order 0; else -1
    assert xen_mtrr_type(s, 0x00000, 4).type == WB
    assert xen_mtrr_type(s, 0x00000, 5).type is None
    assert xen_mtrr_type(s, 0x80000, 2).type == WB
    assert xen_mtrr_type(s, 0x80000, 3).type is None
    assert xen_mtrr_type(s, 0xC0000, 1).type is None
    assert xen_mtrr_type(s, 0x00000, 9).type is None  # a 2M page at 0 with FE set
    # FE clear: the variable ranges and the default answer below 1 MiB too
    assert xen_mtrr_type(state(WT), 0xA0000).type == WT


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        (UC, WB, UC), (WB, UC, UC), (WT, WB, WT), (WB, WT, WT),
        (WB, WC, WC), (WC, WB, WB),  # undefined overlap: the last pair's type
        (WP, WT, WT), (WT, WP, WP), (WC, WC, WC),
    ],
)
def test_overlaps_at_order_0(a, b, want):
    s = state(UC, pair(GIB, GIB, a), pair(GIB, 1 << 21, b))
    assert var_overlapped(s)
    assert xen_mtrr_type(s, GIB).type == want
    assert xen_mtrr_type(s, GIB + (1 << 21)).type == a  # only the first pair there


def test_undefined_overlap_differs_from_the_sdm():
    s = state(UC, pair(GIB, GIB, WB), pair(GIB, 1 << 21, WC))
    assert sdm_lookup(s, GIB, MAXPHY).type is None
    assert xen_mtrr_type(s, GIB).type == WC


def test_no_overlap_first_match_and_default():
    s = state(UC, pair(0, 2 * GIB, WB), pair(4 * GIB, GIB, WC))
    assert not var_overlapped(s)
    assert xen_mtrr_type(s, 0x100000).type == WB
    assert xen_mtrr_type(s, 4 * GIB + 0x5000).type == WC
    assert xen_mtrr_type(s, 3 * GIB).type == UC


def test_superpages():
    s = state(UC, pair(GIB, GIB, WB), pair(GIB + (1 << 21), 0x1000, WC))
    assert xen_mtrr_type(s, GIB, 9).type == WB  # fully inside the WB pair
    assert xen_mtrr_type(s, GIB + (1 << 21), 9).type is None  # WB and WC both match
    assert xen_mtrr_type(s, GIB, 18).type is None  # the 1G page holds the WC 4K too


def test_partial_pair_gives_its_type_to_the_whole_superpage():
    """A single 4K WB pair inside a 2M page whose rest is the UC default: Xen answers WB
    for the whole 2M page (the pair matches on the bits above 2M), the SDM says UC for
    511 of its 512 frames."""
    s = state(UC, pair(GIB + 0x3000, 0x1000, WB))
    assert xen_mtrr_type(s, GIB, 9).type == WB
    assert xen_mtrr_type(s, GIB, 0).type == UC
    assert sdm_lookup(s, GIB, MAXPHY).type == UC


def test_invalid_pairs_are_skipped():
    s = state(WT, VarMtrr(GIB | int(UC), 0))  # V clear
    assert xen_mtrr_type(s, GIB).type == WT


def test_order_0_matches_sdm_where_sdm_is_defined():
    """Exhaustive over two pairs x 5 types each x 4 addresses: wherever the SDM defines the
    type and the MTRRs are enabled, Xen's order-0 answer is the SDM's."""
    types = (UC, WC, WT, WP, WB)
    addrs = (GIB, GIB + (1 << 21), 2 * GIB, 3 * GIB)
    n = 0
    for a, b, d in itertools.product(types, types, types):
        s = state(d, pair(GIB, GIB, a), pair(GIB, 1 << 21, b))
        for addr in addrs:
            want = sdm_lookup(s, addr, MAXPHY).type
            if want is not None:
                assert xen_mtrr_type(s, addr).type == want
                n += 1
    # at GIB both pairs match: 15 of the 25 type pairs are defined (equal 5, UC 8 more,
    # WT+WB 2); the other three addresses are always defined
    assert n == 5 * (25 * 3 + 15) == 450
