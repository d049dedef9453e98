"""Era diff: two kernel eras compared over the whole finite state space.

What vmx_get_mt_mask() can see for one page is finite: is_mmio, non-coherent DMA, guest
CR0.CD, the two quirks, CPU self-snoop, the guest MTRR type KVM's lookup returns (5
types), and the guest PAT type the access uses (6 types): 2^6 x 5 x 6 = 1920 states. We
enumerate all of them, which answers "does this change make any memory type weaker?" by
exhaustion rather than by argument. States an era cannot have (a quirk it cannot turn off)
are skipped and counted, never silently merged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import product

from .kvm.era import Era, Fault
from .kvm.eras import ERAS
from .kvm.scenario import Access, VcpuState, VmConfig
from .kvm.tdx import TDX_MTRR_DEF_TYPE
from .kvm.vm_kinds import VM_TYPE_TDX
from .x86.ept import effective_type
from .x86.guest import expectation
from .x86.memtype import INCOMPARABLE, SAME, MemType, MemTypeError, relation
from .x86.mtrr import DEF_TYPE_E, PHYSMASK_V, Lookup, MtrrState, VarMtrr
from .x86.pat import Pat

BOOLS = ("is_mmio", "noncoherent_dma", "cr0_cd", "quirk_cd_nw_cleared", "quirk_ignore_guest_pat", "self_snoop")
MTRR_VALUES = (MemType.UC, MemType.WC, MemType.WT, MemType.WP, MemType.WB)
PAT_VALUES = (MemType.UC, MemType.WC, MemType.WT, MemType.WP, MemType.WB, MemType.UC_MINUS)


@dataclass(frozen=True, slots=True)
class State:
    fault: Fault
    pat: MemType

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {k: getattr(self.fault, k) for k in BOOLS}
        d["guest_mtrr"] = self.fault.guest_mtrr.label
        d["pat"] = self.pat.label
        return d

    @property
    def expected(self) -> MemType:
        """The guest's bare-metal expectation (x86.guest.expectation), taking the abstract MTRR
        type as the guest's own SDM answer (the states have no overlaps, so KVM's agrees)."""
        exp = expectation(Lookup(self.fault.guest_mtrr, "state", "the state's MTRR type"), self.pat,
                          cd=self.fault.cr0_cd)
        assert exp.type is not None
        return exp.type


def all_states() -> list[State]:
    out: list[State] = []
    for bools in product((False, True), repeat=len(BOOLS)):
        for mtrr in MTRR_VALUES:
            f = Fault(**dict(zip(BOOLS, bools, strict=True)), guest_mtrr=mtrr)
            out.extend(State(f, p) for p in PAT_VALUES)
    return out


@dataclass(frozen=True, slots=True)
class DiffRow:
    state: State
    ept_a: tuple[MemType, bool]
    ept_b: tuple[MemType, bool]
    effective_a: MemType
    effective_b: MemType
    classification: str  # effective_b relative to effective_a
    relation_a: str  # effective_a relative to the guest's expectation
    relation_b: str


@dataclass(frozen=True)
class EraDiff:
    a: Era
    b: Era
    total_states: int
    compared: int
    rows: tuple[DiffRow, ...]
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        c = {"differ": len(self.rows), "weaker": 0, "stronger": 0, "incomparable": 0, "same": 0}
        for r in self.rows:
            c[r.classification] += 1
        c["ept_only"] = c.pop(SAME)
        return c


def _vm_of(f: Fault) -> VmConfig:
    return VmConfig(
        noncoherent_dma=f.noncoherent_dma, quirk_cd_nw_cleared=f.quirk_cd_nw_cleared,
        quirk_ignore_guest_pat=f.quirk_ignore_guest_pat, self_snoop=f.self_snoop,
    )


def _valid(era: Era, f: Fault) -> str | None:
    try:
        era.check_vm(_vm_of(f))
    except MemTypeError as e:
        return e.message
    return None


def diff_eras(a: Era, b: Era) -> EraDiff:
    rows = []
    skipped: dict[str, int] = {}
    states = all_states()
    compared = 0
    for s in states:
        why = _valid(a, s.fault) or _valid(b, s.fault)
        if why:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        compared += 1
        ma, mb = a.mt_mask(s.fault), b.mt_mask(s.fault)
        ea, eb = (ma.memtype, ma.ipat), (mb.memtype, mb.ipat)
        effa, effb = effective_type(ma.memtype, ma.ipat, s.pat), effective_type(mb.memtype, mb.ipat, s.pat)
        if ea == eb and effa == effb:
            continue
        cls = relation(effb, effa)
        rows.append(DiffRow(s, ea, eb, effa, effb, cls, relation(effa, s.expected), relation(effb, s.expected)))
    return EraDiff(a, b, len(states), compared, tuple(rows), skipped)


DIMENSIONS: tuple[tuple[str, tuple], ...] = (
    *((k, (False, True)) for k in BOOLS),
    ("guest_mtrr", tuple(t.label for t in MTRR_VALUES)),
    ("pat", tuple(t.label for t in PAT_VALUES)),
)
ANY = "*"


@dataclass(frozen=True, slots=True)
class DiffGroup:
    """Diff rows with one outcome, where a dimension shown as '*' takes every value."""

    pattern: dict[str, object]
    count: int
    ept_a: tuple[MemType, bool]
    ept_b: tuple[MemType, bool]
    effective_a: MemType
    effective_b: MemType
    classification: str


def group_outcomes(items: list[tuple[tuple, tuple]], dimensions: tuple[tuple[str, tuple], ...]
                   ) -> list[tuple[tuple, int, tuple]]:
    """Collapse (state key, outcome) items that differ only in a dimension whose every value
    gives the same outcome: (key with '*' there, count, outcome), largest groups first.

    `dimensions` are (name, values) in key order. Greedy, one dimension at a time, repeated
    until stable. Shared by the era diff and the cross-system diff (app/system_diff.py).
    """
    groups: dict[tuple, tuple[tuple, int]] = {key: (out, 1) for key, out in items}
    changed = True
    while changed:
        changed = False
        for i, (_, domain) in enumerate(dimensions):
            buckets: dict[tuple, list[tuple]] = {}
            for key, (out, _) in groups.items():
                if key[i] == ANY:
                    continue
                buckets.setdefault((key[:i] + key[i + 1:], out), []).append(key)
            for (rest, out), keys in buckets.items():
                if {k[i] for k in keys} == set(domain):
                    total = sum(groups.pop(k)[1] for k in keys)
                    groups[rest[:i] + (ANY,) + rest[i:]] = (out, total)
                    changed = True
    return [(key, count, out) for key, (out, count) in sorted(groups.items(), key=lambda kv: (-kv[1][1], str(kv[0])))]


def group_rows(rows: tuple[DiffRow, ...]) -> list[DiffGroup]:
    """Collapse rows that differ only in a dimension whose every value gives the same outcome.

    A reviewer reads "CD=1, quirk on, nc-DMA, any MTRR type: WB! -> WB" far faster than 30
    rows; the full rows stay available.
    """
    names = [d for d, _ in DIMENSIONS]
    items = []
    for r in rows:
        st = r.state.as_dict()
        items.append((tuple(st[n] for n in names),
                      (r.ept_a, r.ept_b, r.effective_a, r.effective_b, r.classification)))
    return [DiffGroup(dict(zip(names, key, strict=True)), count, *out)
            for key, count, out in group_outcomes(items, DIMENSIONS)]


@lru_cache(maxsize=64)
def diff_by_id(a: str, b: str) -> EraDiff:
    """Cached: the state space is fixed, so a pair of eras always gives the same diff."""
    from .kvm.eras import get_era

    return diff_eras(get_era(a, "era_a"), get_era(b, "era_b"))


def _state_mtrr(t: MemType) -> MtrrState:
    """MTRRs enabled with no fixed or variable ranges and `t` as default, so both the SDM and
    KVM lookups give `t` everywhere."""
    return MtrrState(def_type=DEF_TYPE_E | int(t))


def _td_state_mtrr(t: MemType) -> MtrrState:
    """A TD's MTRRs giving `t` everywhere: the TDX module fixes MTRRdefType (enabled, WB,
    app.kvm.tdx.TDX_MTRR_DEF_TYPE) but KVM still emulates the variable-range MSRs for a TD,
    so a type other than WB is one variable range over every address (PHYSMASK valid, mask
    0: the SDM's match holds for any address)."""
    if t == MemType.WB:
        return MtrrState(def_type=TDX_MTRR_DEF_TYPE)
    return MtrrState(def_type=TDX_MTRR_DEF_TYPE, variable=(VarMtrr(base=int(t), mask=PHYSMASK_V),))


def _state_pat(t: MemType) -> Pat:
    """Every PAT entry `t`."""
    return Pat.from_msr(int.from_bytes(bytes([int(t)] * 8), "little"))


def state_scenario(s: State, gpa: int = 0x100000) -> tuple[VmConfig, VcpuState, Access]:
    """A concrete scenario that realises an abstract state, to open a diff row in the page:
    the state's MTRR type as the only MTRR answer, its PAT type in every PAT entry."""
    vm = _vm_of(s.fault)
    vcpu = VcpuState(cr0_cd=s.fault.cr0_cd, pat=_state_pat(s.pat), mtrr=_state_mtrr(s.fault.guest_mtrr))
    return vm, vcpu, Access(gpa, mmio=s.fault.is_mmio)


def apply_pattern(pattern: Mapping[str, object], vm: VmConfig, vcpu: VcpuState,
                  access: Access) -> tuple[VmConfig, VcpuState, Access]:
    """A scenario in a diff group: each dimension the group's pattern fixes (the keys of
    State.as_dict) set as state_scenario sets it, every `*` (and every other input) kept; a
    TD's guest_mtrr through a variable range (its MTRRdefType is fixed: _td_state_mtrr).
    Clearing CR0.CD clears CR0.NW too (NW=1 needs CD=1). Unknown keys or values raise."""
    values = dict(DIMENSIONS)
    for k, v in pattern.items():
        if k not in values:
            raise MemTypeError(("pattern", k), "is no dimension of the diff", f"dimensions: {', '.join(values)}")
        if v != ANY and not any(v == x and type(v) is type(x) for x in values[k]):
            raise MemTypeError(("pattern", k), f"{v!r} is no value of this dimension",
                               f"one of {', '.join(map(str, values[k]))} or '*'")
    fixed = {k: v for k, v in pattern.items() if v != ANY}
    flags = {k: bool(v) for k, v in fixed.items() if k in BOOLS}
    vm = replace(vm, **{k: v for k, v in flags.items() if hasattr(vm, k)})  # type: ignore[arg-type]
    if "is_mmio" in flags:
        access = replace(access, mmio=flags["is_mmio"], host_page=None)
    if "cr0_cd" in flags:
        vcpu = replace(vcpu, cr0_cd=flags["cr0_cd"], cr0_nw=vcpu.cr0_nw and flags["cr0_cd"])
    if "guest_mtrr" in fixed:
        t = MemType.from_label(str(fixed["guest_mtrr"]))
        vcpu = replace(vcpu, mtrr=_td_state_mtrr(t) if vm.vm_type == VM_TYPE_TDX else _state_mtrr(t))
    if "pat" in fixed:
        vcpu = replace(vcpu, pat=_state_pat(MemType.from_label(str(fixed["pat"]))))
    return vm, vcpu, access


__all__ = ["ANY", "DiffGroup", "DiffRow", "ERAS", "EraDiff", "INCOMPARABLE", "State", "all_states", "apply_pattern",
           "diff_by_id", "diff_eras", "group_outcomes", "group_rows", "state_scenario"]
