"""KVM's vMTRR: what arch/x86/kvm/mtrr.c does with the guest's MTRRs (v4.15..v6.10).

app/x86/mtrr.py holds the registers and the SDM's rules; this module restates, in our own
code, the parts that are KVM's choices. Functions of arch/x86/kvm/mtrr.c (read in
microsoft/WSL2-Linux-Kernel at 53caab16, a 5.x tree; the 6.x file differs only in how the
mask is widened, `kvm_vcpu_reserved_gpa_bits_raw()`) and where they are here:

* `set_var_mtrr_msr()` keeps the valid pairs in `mtrr_state->head`, a list sorted by
  descending raw PHYSBASE: `kvm_var_order`;
* `var_mtrr_range()`, with the mask widened above MAXPHYADDR by `set_var_mtrr_msr()`:
  `var_mtrr_range`;
* the `mtrr_iter` walk (`mtrr_lookup_init`, `mtrr_lookup_fixed_start/next`,
  `mtrr_lookup_var_start/next`, `match_var_range`, `mtrr_for_each_mem_type`): `walk`;
* `kvm_mtrr_get_guest_memory_type()` and `mtrr_disabled_type()`: `kvm_lookup`,
  `kvm_disabled_type`;
* `kvm_mtrr_check_gfn_range_consistency()`, which lets a 2 MiB or 1 GiB EPT page be used:
  `kvm_range_consistent`, and the sizes `kvm_tdp_page_fault()` tries: `largest_page`;
* the range `update_mtrr()` passes to `kvm_zap_gfn_range()`: `update_mtrr_range`.

Where KVM's answer and the SDM's differ, `lookup_difference` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..x86.memtype import MemType, MemTypeError
from ..x86.mtrr import (
    DEFAULT,
    DISABLED,
    FIXED,
    FIXED_MSR_SLOT,
    FIXED_MSRS,
    FIXED_RANGES,
    MSR_MTRR_DEF_TYPE,
    ONE_MIB,
    PAGE,
    UNDEFINED,
    VARIABLE,
    Lookup,
    MtrrState,
    Segment,
    VarMtrr,
    fixed_breakpoints,
    fixed_index,
    runs_of,
    sdm_breakpoints,
    sdm_segments,
    var_msr_index,
)
from ..x86.paging import HUGE_PAGES, PageSize

Range = tuple[int, int]
_U64 = (1 << 64) - 1


# -- the variable ranges as KVM keeps them ---------------------------------------------


def var_mtrr_range(pair: VarMtrr, maxphyaddr: int) -> Range:
    """[start, end) as var_mtrr_range() computes it (may wrap: end <= start).

    KVM takes start from PHYSBASE without masking and treats the pair as one contiguous
    range up to the next boundary of the mask; a written mask has the bits above
    MAXPHYADDR filled in (set_var_mtrr_msr), a never-written one is 0 so `end` wraps.
    """
    start = pair.base & ~(PAGE - 1) & _U64
    mask = pair.mask
    if pair.mask_written:
        mask |= _U64 & ~((1 << maxphyaddr) - 1)
    mask &= ~(PAGE - 1)
    end = ((start | (~mask & _U64)) + 1) & _U64
    return start, end


def kvm_var_order(state: MtrrState) -> list[int]:
    """Valid pairs in the order of `mtrr_state->head`: descending raw PHYSBASE (type byte
    included).

    set_var_mtrr_msr() inserts a range before the first listed one whose raw base is not
    larger; with pairs written in index order, equal bases end up higher index first.
    """
    return [n for _, n in kvm_list_order([(p.base, n) for n, p in enumerate(state.variable) if p.valid])]


def kvm_list_order(entries: list[tuple]) -> list[tuple]:
    """Entries (raw PHYSBASE, pair index, ...) of valid pairs sorted as `kvm_var_order`
    lists them: descending base, then descending index (indices are distinct, so what
    follows them is never compared)."""
    return sorted(entries, reverse=True)


def kvm_disabled_type(guest_has_mtrr: bool) -> MemType:
    """mtrr_disabled_type(): UC if the guest CPUID has MTRR, else WB (v4.15+)."""
    return MemType.UC if guest_has_mtrr else MemType.WB


# -- the mtrr_iter walk ----------------------------------------------------------------


@dataclass(slots=True)
class Walk:
    """What an `mtrr_iter` yields over [start, end): types in walk order, `partial_map`
    and `mtrr_disabled`."""

    types: list[tuple[MemType, str]]
    partial_map: bool
    disabled: bool


def walk(state: MtrrState, start: int, end: int, maxphyaddr: int) -> Walk:
    """mtrr_for_each_mem_type() over [start, end).

    mtrr_lookup_start(): nothing when E=0. mtrr_lookup_fixed_start/next(): with FE=1 and
    start below 1 MiB, the fixed sub-ranges from start's until one ends at or past `end`
    (then the walk stops), or past the last one (then it goes on to the variables).
    mtrr_lookup_var_start/next() with match_var_range(): every listed range overlapping
    [start, end), in list order; partial_map is set when a range starts above the highest
    end seen so far, or that end stays below `end`.
    """
    if not state.enabled:
        return Walk([], False, True)
    out: list[tuple[MemType, str]] = []
    if state.fixed_enabled and start < ONE_MIB:
        i = fixed_index(start)
        while True:
            out.append((state.fixed_type(i), f"fixed {i}"))
            if FIXED_RANGES[i].end >= end:
                return Walk(out, False, False)
            i += 1
            if i == len(FIXED_RANGES):
                break
    start_max = start
    partial = False
    for n in kvm_var_order(state):
        s, e = var_mtrr_range(state.variable[n], maxphyaddr)
        if s >= end or e <= start:
            continue
        partial |= start_max < s
        start_max = max(start_max, e)
        out.append((MemType(state.variable[n].type), f"variable {n}"))
    partial |= start_max < end
    return Walk(out, partial, False)


def kvm_lookup(state: MtrrState, addr: int, maxphyaddr: int, guest_has_mtrr: bool = True) -> Lookup:
    """kvm_mtrr_get_guest_memory_type() (v4.15..v6.10) for the 4 KiB page holding `addr`."""
    page = addr & ~(PAGE - 1)
    w = walk(state, page, page + PAGE, maxphyaddr)
    if w.disabled:
        t = kvm_disabled_type(guest_has_mtrr)
        why = "guest CPUID has MTRR" if guest_has_mtrr else "guest CPUID lacks MTRR"
        return Lookup(t, DISABLED, f"MTRRs disabled and {why}: mtrr_disabled_type() gives {t.label}")
    cur: MemType | None = None
    seen: list[str] = []
    for t, where in w.types:
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
    src = FIXED if w.types[0][1].startswith("fixed") else VARIABLE
    return Lookup(cur, src, f"walk {', '.join(seen)}")


def lookup_difference(sdm: Lookup, kvm: Lookup) -> str | None:
    """Why the SDM's answer and KVM's differ for one address, or None when they agree."""
    if sdm.type == kvm.type:
        return None
    s = sdm.type.label if sdm.type is not None else "undefined"  # UC is 0, so test for None
    assert kvm.type is not None
    return f"SDM says {s} ({sdm.reason}); KVM uses {kvm.type.label} ({kvm.reason})"


# -- range consistency and huge pages ----------------------------------------------------


def kvm_range_consistent(state: MtrrState, start: int, end: int, maxphyaddr: int) -> bool:
    """kvm_mtrr_check_gfn_range_consistency(): may [start, end) share one huge EPT page?

    False as soon as two walked types differ; true when MTRRs are off, when the walk saw no
    gap (partial_map is computed assuming ascending order, so several ranges can report a
    false gap: conservative) or nothing matched; else true iff the type equals the default.
    """
    w = walk(state, start, end, maxphyaddr)
    types = {t for t, _ in w.types}
    if len(types) > 1:
        return False
    if w.disabled or not w.partial_map or not types:
        return True
    return types.pop() == state.default_type


def largest_page(state: MtrrState, addr: int, maxphyaddr: int) -> PageSize:
    """Largest EPT page the MTRR check allows at `addr`: tries 1G, then 2M (kvm_tdp_page_fault)."""
    for size in HUGE_PAGES:
        base = addr & ~(size.bytes - 1)
        if base + size.bytes <= 1 << maxphyaddr and kvm_range_consistent(state, base, base + size.bytes, maxphyaddr):
            return size
    return PageSize.SIZE_4K


# -- whole ranges ----------------------------------------------------------------------


def kvm_breakpoints(state: MtrrState, start: int, end: int, maxphyaddr: int) -> list[int]:
    """Every address in [start, end] where KVM's lookup may change: the fixed sub-ranges
    and 1 MiB with FE=1, every valid pair's start and (when above it) its end."""
    pts = {start, end} | fixed_breakpoints(state)
    if state.enabled:
        for p in state.variable:
            if p.valid:
                s, e = var_mtrr_range(p, maxphyaddr)
                pts.add(s)
                if e > s:
                    pts.add(e)
    return sorted(x for x in pts if start <= x <= end)


def kvm_segments(state: MtrrState, start: int, end: int, maxphyaddr: int, guest_has_mtrr: bool = True) -> list[Segment]:
    """Split [start, end) into maximal runs of one KVM answer."""
    return runs_of(kvm_breakpoints(state, start, end, maxphyaddr),
                   lambda a: kvm_lookup(state, a, maxphyaddr, guest_has_mtrr))


def segments(state: MtrrState, start: int, end: int, maxphyaddr: int, *, sdm: bool,
             guest_has_mtrr: bool = True) -> list[Segment]:
    """Split [start, end) into maximal runs of one MTRR answer (SDM's or KVM's)."""
    if sdm:
        return sdm_segments(state, start, end, maxphyaddr)
    return kvm_segments(state, start, end, maxphyaddr, guest_has_mtrr)


def breakpoints(state: MtrrState, start: int, end: int, maxphyaddr: int) -> list[int]:
    """Every address in [start, end] where either lookup may change (both kinds merged);
    errors are located relative to the state, as in sdm_breakpoints."""
    sdm = sdm_breakpoints(state, start, end, maxphyaddr)
    return sorted(set(sdm) | set(kvm_breakpoints(state, start, end, maxphyaddr)))


# -- what a write zaps -------------------------------------------------------------------


def update_mtrr_range(msr: int, after: MtrrState, maxphyaddr: int, everything: Range,
                      why: bool = True) -> tuple[Range | None, str]:
    """The range update_mtrr() zaps for a write to `msr` (state read after the store).

    MTRRdefType: everything. A fixed MSR: its own window (fixed_msr_to_range()), or nothing
    when FE=0. A variable base or mask: var_mtrr_range() of the pair's *new* value (valid or
    not); the old range is never zapped. Returns (range or None, why); with `why` False the
    reason is "" (the replay keeps the range alone and saves formatting it). A non-MTRR
    `msr` is refused at "msr".
    """
    if msr == MSR_MTRR_DEF_TYPE:
        return everything, "MTRRdefType: zap everything" if why else ""
    if msr in FIXED_MSR_SLOT:
        f = FIXED_MSRS[FIXED_MSR_SLOT[msr]]
        if not after.fixed_enabled:
            return None, "fixed MSR written while FE=0: nothing" if why else ""
        return (f.start, f.end), f"fixed MSR: its own window [{f.start:#x}, {f.end:#x})" if why else ""
    v = var_msr_index(msr)
    if v is None:
        raise MemTypeError("msr", f"{msr:#x} is not an MTRR MSR", "update_mtrr() handles MTRR MSRs only")
    s, e = var_mtrr_range(after.pair(v[0]), maxphyaddr)
    if e <= s:
        return (s, s), f"variable pair {v[0]}: mask never written, end wraps below start: nothing zapped" if why else ""
    return (s, e), f"variable pair {v[0]}: the new range [{s:#x}, {e:#x}) only" if why else ""


__all__ = [
    "Walk", "breakpoints", "kvm_breakpoints", "kvm_disabled_type", "kvm_lookup", "kvm_range_consistent",
    "kvm_list_order", "kvm_segments", "kvm_var_order", "largest_page", "lookup_difference", "segments",
    "update_mtrr_range", "var_mtrr_range", "walk",
]
