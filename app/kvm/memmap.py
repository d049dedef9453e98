"""The guest-physical address space as runs of one answer: what the page's map bar draws.

Each mapped range (memslot) is split wherever the SDM lookup, KVM's lookup or the memory
map can change, and each run carries the EPT entry the era builds there, the effective
type for one PAT entry, the guest's expectation and the huge page the MTRR check allows.
Holes between memslots are listed too (no EPT leaf exists there).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from ..x86.ept import effective_type
from ..x86.guest import expectation, guest_pat_type
from ..x86.memtype import MemType, located, relation
from ..x86.mtrr import DEFAULT, FIXED_RANGES, ONE_MIB, contiguous_size, sdm_lookup
from ..x86.paging import PageSize
from .era import Era
from .mtrr import breakpoints, kvm_lookup, kvm_range_consistent
from .resolve import check, mask_at
from .scenario import MMIO, VcpuState, VmConfig

UNMAPPED = "unmapped"


@dataclass(frozen=True, slots=True)
class MapRun:
    start: int
    end: int
    kind: str  # ram, mmio or unmapped
    label: str
    guest_mtrr: MemType | None = None
    kvm_mtrr: MemType | None = None
    memtype: MemType | None = None
    ipat: bool = False
    effective: MemType | None = None
    expected: MemType | None = None
    relation: str = ""
    page_size: str = ""  # a PageSize; "" for a hole (no memslot)


@dataclass(frozen=True, slots=True)
class MtrrRange:
    start: int
    end: int
    type: MemType
    source: str  # "fixed", "variable N", "default" or "disabled" (mtrr_default)


def mtrr_ranges(vcpu: VcpuState, vm: VmConfig) -> list[MtrrRange]:
    """The guest's programmed ranges (fixed windows merged by type, variable blocks)."""
    m = vcpu.mtrr
    out: list[MtrrRange] = []
    if not m.enabled:
        return out
    if m.fixed_enabled:
        for r in FIXED_RANGES:
            t = m.fixed_type(r.index)
            if out and out[-1].end == r.start and out[-1].type == t:
                out[-1] = MtrrRange(out[-1].start, r.end, t, "fixed")
            else:
                out.append(MtrrRange(r.start, r.end, t, "fixed"))
    for n, pair in enumerate(m.variable):
        if pair.valid:
            for s, e in pair.sdm_blocks(vm.maxphyaddr, field=("vcpu", "mtrr", "variable", n, "mask")):
                note = "" if contiguous_size(pair, vm.maxphyaddr) else " (mask with holes)"
                out.append(MtrrRange(s, e, MemType(pair.type), f"variable {n}{note}"))
    return out


def mtrr_default(vcpu: VcpuState, vm: VmConfig) -> MtrrRange:
    """The type of every address no range of `mtrr_ranges` covers, over [0, 2^MAXPHYADDR).

    With MTRRdefType.E set that is the default type (bits 7:0), source "default"; with E
    clear the SDM's answer for every address (sdm_lookup: UC), source "disabled". The page
    draws the MTRR lane from this and `mtrr_ranges`, so it never decides E itself (SDM vol.
    3A "MTRR Precedences"; KVM's own reading is update_mtrr()/kvm_mtrr_get_guest_memory_type()
    in arch/x86/kvm/mtrr.c, which resolve and the map's runs already report).
    """
    m = vcpu.mtrr
    top = 1 << vm.maxphyaddr
    if m.enabled:
        return MtrrRange(0, top, m.default_type, DEFAULT)
    lk = sdm_lookup(m, 0, vm.maxphyaddr)  # E=0: one answer for the whole space
    assert lk.type is not None
    return MtrrRange(0, top, lk.type, lk.source)


def page_runs(vcpu: VcpuState, vm: VmConfig, start: int, end: int, mtrr_check: bool) -> list[tuple[int, int, PageSize]]:
    """Split [start, end), a run with one MTRR answer throughout, by the largest page usable.

    Only blocks lying inside the run are considered (its ends are memslot or type
    boundaries). Every aligned block of one size inside such a run gets the same answer
    from kvm_mtrr_check_gfn_range_consistency(): each variable range the walk meets covers
    the whole run, so it covers the block, and no gap is seen. One check per size decides.
    """
    def fits(size: int) -> tuple[int, int]:
        return -(-start // size) * size, end // size * size

    def allowed(size: int) -> bool:
        a, b = fits(size)
        return a < b and (not mtrr_check or kvm_range_consistent(vcpu.mtrr, a, a + size, vm.maxphyaddr))

    small, m2, g1 = PageSize.SIZE_4K, PageSize.SIZE_2M, PageSize.SIZE_1G
    (a2, b2), (a1, b1) = fits(m2.bytes), fits(g1.bytes)
    mid = m2 if allowed(m2.bytes) else small
    if allowed(g1.bytes):
        cuts = [(start, a2, small), (a2, a1, mid), (a1, b1, g1), (b1, b2, mid), (b2, end, small)]
    elif a2 < b2:
        cuts = [(start, a2, small), (a2, b2, mid), (b2, end, small)]
    else:
        cuts = [(start, end, small)]
    out: list[tuple[int, int, PageSize]] = []
    for s, e, size in cuts:
        if s >= e:
            continue
        if out and out[-1][2] == size:
            out[-1] = (out[-1][0], e, size)
        else:
            out.append((s, e, size))
    return out


def address_map(era: Era, vm: VmConfig, vcpu: VcpuState, pat_index: int = 0) -> list[MapRun]:
    check(era, vm, vcpu)
    pat = guest_pat_type(vcpu.pat[pat_index], vcpu.cr0_pg)
    top = 1 << vm.maxphyaddr
    runs: list[MapRun] = []
    cursor = 0
    huge = any(applies for _, applies in era.huge_page_check(vm))
    for r in sorted(vm.memory_map, key=lambda r: r.start):
        if r.start > cursor:
            runs.append(MapRun(cursor, r.start, UNMAPPED, "no memslot"))
        with located("vcpu", "mtrr"):
            pts = breakpoints(vcpu.mtrr, r.start, r.end, vm.maxphyaddr)
        for s, e in itertools.pairwise(pts):
            sdm = sdm_lookup(vcpu.mtrr, s, vm.maxphyaddr)
            kvm = kvm_lookup(vcpu.mtrr, s, vm.maxphyaddr, vm.guest_has_mtrr)
            m = mask_at(era, vm, vcpu, s, r.kind == MMIO)
            eff = effective_type(m.memtype, m.ipat, pat)
            exp = expectation(sdm, vcpu.pat[pat_index], cd=vcpu.cr0_cd, nw=vcpu.cr0_nw,
                              paging=vcpu.cr0_pg, guest_has_mtrr=vm.guest_has_mtrr).type
            rel = relation(eff, exp) if exp is not None else "incomparable"
            for ps, pe, size in page_runs(vcpu, vm, s, e, huge):
                run = MapRun(ps, pe, r.kind, r.label, sdm.type, kvm.type if era.reads_guest_mtrrs else None,
                             m.memtype, m.ipat, eff, exp, rel, size)
                prev = runs[-1] if runs else None
                if prev and prev.end == ps and replace(prev, start=ps, end=pe) == run:
                    runs[-1] = replace(prev, end=pe)
                else:
                    runs.append(run)
        cursor = max(cursor, r.end)
    if cursor < top:
        runs.append(MapRun(cursor, top, UNMAPPED, "no memslot"))
    return runs


__all__ = ["MapRun", "MtrrRange", "ONE_MIB", "UNMAPPED", "address_map", "mtrr_default", "mtrr_ranges"]
