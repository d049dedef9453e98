"""What every mapped page's EPT leaf holds, as runs: one answer for the zap audit and replay.

A run is ([start, end), key) with key = memtype << 1 | IPAT. Runs are split only where the
answer can change: at memslot edges and, for eras that read guest MTRRs, at the breakpoints
of KVM's own lookup (`kvm_mtrr_get_guest_memory_type()`), so a 4 GiB guest is a few dozen
runs, never a page table. Run lists are sorted, disjoint and merged (no two touching runs
with one key), so two lists describe the same leaves exactly when they are equal.

Speed (issue 9 §4): `Layouts` builds the runs of one era on one VM for any vCPU state over
any address window `[a, b)`, at a cost that grows with what the window holds (the memslots
and the MTRR breakpoints inside it), not with the whole layout:

* the MTRR types are found once over the window (`Cells.mtrr_types`) and then cut at the
  memslots inside it (found by bisection), instead of once per memslot;
* a pair enters as its `Cells.pair_range` (raw base, index, [start, end), type: what the
  cut points and KVM's list order read), which the caller may hand over (a replay keeps
  one per interned pair) or which is memoised by the pair's index and fields; only the
  pairs overlapping the window are kept, sorted only when several are, and a window that
  meets one pair (most zap windows) is cut without a set, a sort or a list per piece;
* `kvm_lookup` (app/kvm/mtrr.py, our restatement of `kvm_mtrr_get_guest_memory_type()`,
  arch/x86/kvm/mtrr.c v4.15..v6.10) is still the only place that decides a type. It is
  called once per *walk*: what it returns for a page depends only on what its `mtrr_iter`
  walk sees, i.e. (MTRRs disabled) nothing but the guest CPUID bit, (a fixed-range page with
  FE=1) the one type byte of its fixed MSR, or (otherwise) the types of the variable ranges
  that overlap the page in KVM's list order, and the default type. Those keys are memoised,
  so a new MTRR state costs a few dictionary look-ups per breakpoint;
* the EPT memtype of a (CR0.CD, is_mmio, guest MTRR type) triple is memoised too: it is
  `era.mt_mask()` of the `Fault` that `resolve.fault_for` builds, and nothing else varies
  within one VM.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence

from ..x86.memtype import MemType
from ..x86.mtrr import (
    DEF_TYPE_E,
    DEF_TYPE_FE,
    FIXED_MSRS,
    ONE_MIB,
    PAGE,
    Lookup,
    MtrrState,
    VarMtrr,
)
from .era import Era
from .mtrr import kvm_list_order, kvm_lookup, var_mtrr_range
from .resolve import fault_for
from .scenario import MMIO, VcpuState, VmConfig

Range = tuple[int, int]
Run = tuple[int, int, int]  # [start, end) and key = memtype << 1 | ipat
PairRange = tuple[int, int, int, int, int]  # `Cells.pair_range`: raw PHYSBASE, index, [start, end), type

_INF = float("inf")
MEMO_LIMIT = 4096
"""Entries a `Layouts` memo holds before it starts again (walk keys are few in practice)."""


def key(memtype: MemType, ipat: bool) -> int:
    return int(memtype) << 1 | int(ipat)


def decode_key(k: int) -> tuple[MemType, bool]:
    """(memtype, IPAT) from a run key."""
    return MemType(k >> 1), bool(k & 1)


def clip(runs: Iterable[Run], a: int, b: int) -> list[Run]:
    """The parts of sorted runs inside [a, b)."""
    out: list[Run] = []
    for s, e, k in runs:
        if e <= a:
            continue
        if s >= b:
            break
        out.append((s if s > a else a, e if e < b else b, k))
    return out


def window(runs: Sequence[Run], a: int, b: int) -> tuple[int, int]:
    """Indices [i, j) of the runs of a sorted list that overlap [a, b), by bisection
    (on the tuples themselves: runs are disjoint, so they sort by start)."""
    i = bisect_right(runs, (a, _INF))
    if i and runs[i - 1][1] > a:
        i -= 1
    return i, bisect_left(runs, (b,))


def clip_sorted(runs: Sequence[Run], a: int, b: int) -> list[Run]:
    """`clip` for an indexable run list: O(log n + runs inside) instead of O(n)."""
    i, j = window(runs, a, b)
    out = list(runs[i:j])
    if out:
        s, e, k = out[0]
        if s < a:
            out[0] = (a, e, k)
        s, e, k = out[-1]
        if e > b:
            out[-1] = (s, b, k)
    return out


def pieces(x: Sequence[Run], y: Sequence[Run]) -> Iterator[tuple[int, int, int, int]]:
    """Walk two sorted run lists over the same addresses: (start, end, key in x, key in y)."""
    i = j = 0
    nx, ny = len(x), len(y)
    while i < nx and j < ny:
        xs, xe, xk = x[i]
        ys, ye, yk = y[j]
        s = xs if xs > ys else ys
        e = xe if xe < ye else ye
        if s < e:
            yield s, e, xk, yk
        if xe <= ye:
            i += 1
        else:
            j += 1


def agree(x: Sequence[Run], y: Sequence[Run]) -> int:
    """Bytes where two run lists over the same address set hold the same key.

    The walk of `pieces`, written out: a replay compares a window of the EPT with what a
    zap refaults at every call, and the generator's per-piece cost was most of that."""
    if x is y:
        return sum(e - s for s, e, _ in x)
    out = i = j = 0
    nx, ny = len(x), len(y)
    while i < nx and j < ny:
        xs, xe, xk = x[i]
        ys, ye, yk = y[j]
        if xk == yk:
            s = xs if xs > ys else ys
            e = xe if xe < ye else ye
            if s < e:
                out += e - s
        if xe <= ye:
            i += 1
        else:
            j += 1
    return out


def merge_runs(runs: Iterable[Run]) -> tuple[Run, ...]:
    out: list[Run] = []
    for s, e, k in runs:
        if out and out[-1][1] == s and out[-1][2] == k:
            out[-1] = (out[-1][0], e, k)
        else:
            out.append((s, e, k))
    return tuple(out)


def splice(runs: list[Run], a: int, b: int, new: Sequence[Run], at: tuple[int, int] | None = None) -> None:
    """Replace what a merged run list holds inside [a, b) by `new` (merged, inside [a, b)),
    in place, keeping the list merged: O(log n + runs touched) plus one list move. `at`:
    `window(runs, a, b)` when the caller has it already."""
    i, j = window(runs, a, b) if at is None else at
    rep: list[Run] = []
    if i > 0:
        rep.append(runs[i - 1])
    if i < j and runs[i][0] < a:
        rep.append((runs[i][0], a, runs[i][2]))
    rep.extend(new)
    if i < j and runs[j - 1][1] > b:
        rep.append((b, runs[j - 1][1], runs[j - 1][2]))
    if j < len(runs):
        rep.append(runs[j])
    runs[max(i - 1, 0):j + 1] = merge_runs(rep)


class Cells:
    """A VM's mapped pages cut at memslot edges and, for an MTRR state, where KVM's lookup
    may change; each cell carries its `kvm_lookup` (or None when no MTRRs are asked for).

    Era-independent: the memory map, MAXPHYADDR and the guest CPUID bit are the same for
    every VM config a trace passes through (events change only nc-DMA), so one `Cells`
    serves every era of a replay (see the module doc for why the walk memo is exact).
    """

    def __init__(self, vm: VmConfig) -> None:
        self.maxphyaddr, self.guest_has_mtrr = vm.maxphyaddr, vm.guest_has_mtrr
        self.slots = [(r.start, r.end, r.kind == MMIO) for r in sorted(vm.memory_map, key=lambda m: m.start)]
        # the slots' starts and ends as plain lists: bisecting them finds what bisecting the
        # slots by start / by end does (slots are disjoint and sorted), without a
        # key call per probe
        self.starts = [s for s, _, _ in self.slots]
        self.ends = [e for _, e, _ in self.slots]
        self.lo = self.slots[0][0] if self.slots else 0
        self.hi = self.slots[-1][1] if self.slots else 0
        self._walks: dict[tuple, object] = {}
        # `pair_range` by the pair's index and fields (what VarMtrr equality compares): keys
        # and values of plain ints, which the cyclic collector stops tracking
        self._ranges: dict[tuple[int, int, int, bool], PairRange] = {}

    def _remember(self, k: tuple, r: object) -> object:
        if len(self._walks) >= MEMO_LIMIT:
            self._walks.clear()
        self._walks[k] = r
        return r

    def _walk(self, k: tuple, mtrr: MtrrState, gpa: int) -> Lookup:
        r = self._walks.get(k)
        if r is None:
            r = self._remember(k, kvm_lookup(mtrr, gpa, self.maxphyaddr, self.guest_has_mtrr))
        return r  # type: ignore[return-value]

    def _fixed(self, slot: int, mtrr: MtrrState) -> list[tuple[int, int, Lookup]]:
        """One fixed MSR's window as pieces of one lookup each: every sub-range's lookup
        depends on its own type byte only, so the pieces depend on the MSR value only."""
        k = ("fixed", slot, mtrr.fixed[slot])
        r = self._walks.get(k)
        if r is None:
            f = FIXED_MSRS[slot]
            out: list[tuple[int, int, Lookup]] = []
            for n in range(8):
                s = f.start + n * f.unit
                lk = self._walk(("fixed-type", mtrr.fixed_type(slot * 8 + n)), mtrr, s)
                if out and out[-1][2] is lk:
                    out[-1] = (out[-1][0], s + f.unit, lk)
                else:
                    out.append((s, s + f.unit, lk))
            r = self._remember(k, out)
        return r  # type: ignore[return-value]

    def _fixed_all(self, mtrr: MtrrState) -> list[tuple[int, int, Lookup]]:
        """[0, 1 MiB) with FE=1 as merged pieces of one lookup each (`_fixed` of every fixed
        MSR): it depends on the 11 MSR values only, so a window below 1 MiB clips it."""
        k = ("fixed-all", mtrr.fixed)
        r = self._walks.get(k)
        if r is None:
            out: list[tuple[int, int, Lookup]] = []
            for slot in range(len(FIXED_MSRS)):
                for s, e, lk in self._fixed(slot, mtrr):
                    if out and out[-1][2] is lk:
                        out[-1] = (out[-1][0], e, lk)
                    else:
                        out.append((s, e, lk))
            r = self._remember(k, out)
        return r  # type: ignore[return-value]

    def pair_range(self, n: int, p: VarMtrr) -> PairRange:
        """Pair `n` (`p`) as `mtrr_types` reads it: (raw PHYSBASE, n, start, end, type), with
        [start, end) from KVM's `var_mtrr_range()`; an invalid pair, or one whose end wraps
        to or below its start, matches no page: it is kept as the empty range [start, start).
        (Base and index first: `kvm_list_order` sorts these tuples as they are.)"""
        base = p.base
        s, e = var_mtrr_range(p, self.maxphyaddr)
        return (base, n, s, e if p.valid and e > s else s, base & 0xFF)

    def pair_ranges(self, variable: Sequence[VarMtrr]) -> list[PairRange]:
        """`pair_range` of every pair, memoised by the pair's index and fields."""
        known = self._ranges
        out = []
        for n, p in enumerate(variable):
            pk = (n, p.base, p.mask, p.mask_written)
            r = known.get(pk)
            if r is None:
                if len(known) >= MEMO_LIMIT:
                    known.clear()
                r = known[pk] = self.pair_range(n, p)
            out.append(r)
        return out

    def mtrr_types(self, mtrr: MtrrState, a: int, b: int,
                   pairs: Iterable[PairRange] | None = None) -> list[tuple[int, int, Lookup]]:
        """[a, b) cut where KVM's lookup may change, each piece with its `kvm_lookup`.

        The cut points are those of `mtrr.kvm_breakpoints` (fixed sub-ranges and 1 MiB
        with FE=1, every valid pair's start and, when above it, its end); each piece is
        looked up at its first page, as `layout` always did. `pairs`: `pair_range` of every
        pair of `mtrr`, in order, when the caller has them (a replay keeps them per
        interned pair); else they come from this object's memo."""
        def_type = mtrr.def_type  # (its E and FE bits are `mtrr.enabled`, `fixed_enabled`: read once here)
        if not def_type & DEF_TYPE_E:
            return [(a, b, self._walk(("off",), mtrr, a))]
        out: list[tuple[int, int, Lookup]] = []
        pos = a
        if def_type & DEF_TYPE_FE and a < ONE_MIB:
            out = clip_sorted(self._fixed_all(mtrr), a, b)  # type: ignore[arg-type,assignment]
            pos = ONE_MIB
            if pos >= b:
                return out
        # Only the pairs that overlap [pos, b) can change a page's walk inside it; they are
        # put in KVM's list order (`kvm_list_order`) only when there are several. (A loop:
        # a comprehension is a function call in Python 3.11, dearer than this loop.)
        hits = []
        for h in self.pair_ranges(mtrr.variable) if pairs is None else pairs:
            if h[2] < b and h[3] > pos:
                hits.append(h)
        dt = def_type & 0xFF
        walks: dict[tuple, Lookup] = self._walks  # type: ignore[assignment]  # (the var keys hold lookups)
        pts: Sequence[int]
        if len(hits) > 1:
            hits = kvm_list_order(hits)
            cuts = {pos, b}
            for _, _, s, e, _ in hits:
                if s > pos:
                    cuts.add(s)
                if e < b:
                    cuts.add(e)
            pts = sorted(cuts) if len(cuts) > 2 else (pos, b)
            one = None
        elif hits:
            # one pair (most zap windows): the same cut points, made without a set and a
            # sort, and each piece's walk key without a list
            _, _, hs, he, t = hits[0]
            pts = [pos]
            if hs > pos:
                pts.append(hs)
            if pts[-1] < he < b:
                pts.append(he)
            pts.append(b)
            one = (t,)
        else:
            pts, one = (pos, b), None
        for s, e in itertools.pairwise(pts):
            page = s & ~(PAGE - 1)
            top = page + PAGE
            if one is None:
                k = ("var", dt, tuple([t for _, _, rs, re_, t in hits if rs < top and re_ > page]))
            else:
                k = ("var", dt, one if hs < top and he > page else ())
            lk = walks.get(k) or self._walk(k, mtrr, s)  # (a Lookup is never falsy)
            if out and out[-1][2] is lk:
                out[-1] = (out[-1][0], e, lk)
            else:
                out.append((s, e, lk))
        return out

    def cells(self, mtrr: MtrrState | None, a: int, b: int,
              pairs: Iterable[PairRange] | None = None) -> list[tuple[int, int, bool, Lookup | None]]:
        """The cells inside [a, b): (start, end, is_mmio, lookup); lookup None without `mtrr`.
        `pairs`: as `mtrr_types` takes them."""
        slots = self.slots
        i, j = bisect_right(self.ends, a), bisect_left(self.starts, b)
        if i >= j:
            return []
        if mtrr is None:
            return [(max(s, a), min(e, b), mm, None) for s, e, mm in slots[i:j]]
        lo, hi = slots[i][0], slots[j - 1][1]
        types = self.mtrr_types(mtrr, a if a > lo else lo, b if b < hi else hi, pairs)
        out: list[tuple[int, int, bool, Lookup | None]] = []
        t = 0
        for s, e, mm in slots[i:j]:
            if s < a:
                s = a
            if e > b:
                e = b
            while types[t][1] <= s:
                t += 1
            while True:
                ts, te, lk = types[t]
                out.append((ts if ts > s else s, te if te < e else e, mm, lk))
                if te >= e:
                    break
                t += 1
        return out


class Layouts:
    """The runs of one era on one VM, for any vCPU state, over any window (see module doc).

    `runs(vcpu, a, b)` equals `clip(layout(era, vm, vcpu), a, b)`; its memos only save work.
    """

    def __init__(self, era: Era, vm: VmConfig, cells: Cells | None = None) -> None:
        self.era, self.vm = era, vm
        self.reads = era.reads_guest_mtrrs
        self.cells = cells or Cells(vm)
        self._keys: dict[tuple, int] = {}

    def _key(self, vcpu: VcpuState, is_mmio: bool, lk: Lookup | None, gpa: int) -> int:
        """The run key `vmx_get_mt_mask()` gives a page with this guest MTRR lookup."""
        k = (vcpu.cr0_cd, is_mmio, None if lk is None else lk.type)
        r = self._keys.get(k)
        if r is None:
            if len(self._keys) >= MEMO_LIMIT:
                self._keys.clear()
            r = self._keys[k] = key(*_mask(self.era, self.vm, vcpu, gpa, is_mmio, lk))
        return r

    def table(self, cd: bool) -> tuple[int, ...]:
        """The run key of every (is_mmio, guest MTRR type) pair for CR0.CD=`cd`: all that
        `keyed` reads of a state besides its cells (`_key`'s memo key). Two eras whose
        tables are equal turn the same cells into the same runs, so a replay computes a
        window's runs once for all of them."""
        types: tuple[MemType | None, ...] = tuple(MemType) if self.reads else (None,)
        vcpu = VcpuState(cr0_cd=cd)
        return (self.reads, *(self._key(vcpu, mm, None if t is None else Lookup(t, "", ""), 0)
                              for mm in (False, True) for t in types))

    def keyed(self, vcpu: VcpuState, cells: Sequence[tuple[int, int, bool, Lookup | None]]) -> list[Run]:
        """`cells` (of `vcpu`'s MTRRs when the era reads them) as merged runs."""
        out: list[Run] = []
        keys, cd = self._keys, vcpu.cr0_cd
        for s, e, mm, lk in cells:
            k = keys.get((cd, mm, None if lk is None else lk.type))
            if k is None:
                k = self._key(vcpu, mm, lk, s)
            if out and out[-1][1] == s and out[-1][2] == k:
                out[-1] = (out[-1][0], e, k)
            else:
                out.append((s, e, k))
        return out

    def runs(self, vcpu: VcpuState, a: int, b: int) -> list[Run]:
        """The layout of `vcpu` inside [a, b), merged."""
        return self.keyed(vcpu, self.cells.cells(vcpu.mtrr if self.reads else None, a, b))


def _mask(era: Era, vm: VmConfig, vcpu: VcpuState, gpa: int, is_mmio: bool, lk: Lookup | None) -> tuple[MemType, bool]:
    m = era.mt_mask(fault_for(era, vm, vcpu, gpa, is_mmio, lk))
    return m.memtype, m.ipat


def layout(era: Era, vm: VmConfig, vcpu: VcpuState) -> tuple[Run, ...]:
    """What `vmx_get_mt_mask()` gives every mapped page when `vcpu` faults it (as runs);
    each run's answer is `resolve.mask_at` at its start."""
    return tuple(Layouts(era, vm).runs(vcpu, 0, 1 << vm.maxphyaddr))
