"""Era diff over the whole state space: the seed's question answered by enumeration."""

from itertools import product

from app.analysis import all_states, diff_by_id, diff_eras, group_rows, state_scenario
from app.kvm.eras import ERAS
from app.kvm.resolve import resolve
from app.x86.memtype import MemType


def test_state_space_is_complete_and_distinct():
    states = all_states()
    assert len(states) == 2 ** 6 * 5 * 6 == len({(s.fault, s.pat) for s in states})


def test_v4_2_to_v6_7_never_weaker_and_lists_every_stronger_state():
    d = diff_eras(ERAS["v4.2"], ERAS["v6.7"])
    assert d.counts["weaker"] == 0  # the patch author's claim, by exhaustion
    stronger = {(r.state.fault, r.state.pat) for r in d.rows if r.classification == "stronger"}
    # Independently: only nc-DMA, RAM, CR0.CD=1 with the quirk changes (WB|IPAT -> WB + PAT),
    # and the PAT types that are stronger than WB are UC, UC- (-> UC), WT and WP.
    expected = {
        (s.fault, s.pat) for s in all_states()
        if s.fault.noncoherent_dma and not s.fault.is_mmio and s.fault.cr0_cd
        and s.fault.quirk_cd_nw_cleared and s.fault.quirk_ignore_guest_pat
        and s.pat in (MemType.UC, MemType.UC_MINUS, MemType.WT, MemType.WP)
    }
    assert stronger == expected and len(expected) == 4 * 5 * 2
    incomparable = [r for r in d.rows if r.classification == "incomparable"]
    assert {r.state.pat for r in incomparable} == {MemType.WC}  # WB -> WC: less caching, weaker ordering
    assert all(r.ept_a == (MemType.WB, True) and r.ept_b == (MemType.WB, False) for r in d.rows)
    # states needing a quirk only 6.16 can turn off are skipped, and counted
    assert d.compared == 960 and sum(d.skipped.values()) == 960


def test_v6_11_to_rc1_shows_the_bochs_regression():
    d = diff_by_id("v6.11", "v6.11-rc1")
    assert d.counts["weaker"] == 0
    uc_minus = [r for r in d.rows if r.state.pat == MemType.UC_MINUS and not r.state.fault.is_mmio]
    assert uc_minus and all(r.effective_a == MemType.WB and r.effective_b == MemType.UC for r in uc_minus)
    assert all(r.state.fault.self_snoop and not r.state.fault.noncoherent_dma for r in d.rows)


def test_identical_eras_do_not_differ():
    for e in ERAS:
        assert diff_by_id(e, e).rows == ()
    assert diff_by_id("v6.11", "v6.16").rows == ()  # 6.16 with the quirk on (its default) is 6.11


def test_v4_2_to_v6_11_is_weaker_exactly_where_guest_mtrrs_or_cd_were_honoured():
    d = diff_by_id("v4.2", "v6.11")
    weaker = {(r.state.fault, r.state.pat) for r in d.rows if r.classification == "weaker"}
    # Independently: v6.11 gives RAM with nc-DMA WB + PAT. v4.2 gave UC|IPAT for CD=1 with the
    # quirk off (PAT WB, WC, WT, WP become weaker than UC), and the guest MTRR type + PAT for
    # CD=0: weaker wherever MTRR x PAT was stronger than WB x PAT.
    from app.x86.ept import combine
    from app.x86.memtype import relation
    expected = set()
    for s in all_states():
        f = s.fault
        if f.is_mmio or not f.noncoherent_dma or not f.quirk_ignore_guest_pat:
            continue
        new = combine(MemType.WB, s.pat)
        cd_type = MemType.WB if f.quirk_cd_nw_cleared else MemType.UC
        old = cd_type if f.cr0_cd else combine(f.guest_mtrr, s.pat)
        if relation(new, old) == "weaker":
            expected.add((f, s.pat))
    assert weaker == expected and len(weaker) == 68


def test_groups_cover_rows_exactly():
    for a, b in product(ERAS, repeat=2):
        d = diff_by_id(a, b)
        groups = group_rows(d.rows)
        assert sum(g.count for g in groups) == len(d.rows)


def test_state_scenario_realises_the_state():
    era = ERAS["v6.7"]
    for s in all_states()[::13]:
        if not s.fault.quirk_ignore_guest_pat:
            continue
        vm, vcpu, access = state_scenario(s)
        r = resolve(era, vm, vcpu, access)
        m = era.mt_mask(s.fault)
        assert (r.memtype, r.ipat) == (m.memtype, m.ipat)
        assert r.pat_rows[0].pat_type == s.pat
