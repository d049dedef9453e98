"""What every mapped page's EPT leaf holds, as runs: one answer for the zap audit and replay.

A run is ([start, end), key) with key = memtype << 1 | IPAT. Runs are split only where the
answer can change: at memslot edges and, for eras that read guest MTRRs, at the breakpoints
of KVM's own lookup (`kvm_mtrr_get_guest_memory_type()`), so a 4 GiB guest is a few dozen
runs, never a page table.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

from ..x86.memtype import MemType
from ..x86.mtrr import segments
from .era import Era
from .resolve import mask_at
from .scenario import MMIO, VcpuState, VmConfig

Range = tuple[int, int]
Run = tuple[int, int, int]  # [start, end) and key = memtype << 1 | ipat


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


def merge_runs(runs: Iterable[Run]) -> tuple[Run, ...]:
    out: list[Run] = []
    for s, e, k in runs:
        if out and out[-1][1] == s and out[-1][2] == k:
            out[-1] = (out[-1][0], e, k)
        else:
            out.append((s, e, k))
    return tuple(out)


def layout(era: Era, vm: VmConfig, vcpu: VcpuState) -> tuple[Run, ...]:
    """What `vmx_get_mt_mask()` gives every mapped page when `vcpu` faults it (as runs);
    each run's answer is `resolve.mask_at` at its start."""
    runs: list[Run] = []
    for r in sorted(vm.memory_map, key=lambda m: m.start):
        is_mmio = r.kind == MMIO
        if era.reads_guest_mtrrs:
            segs = [(s, e) for s, e, _ in segments(vcpu.mtrr, r.start, r.end, vm.maxphyaddr, sdm=False,
                                                   guest_has_mtrr=vm.guest_has_mtrr)]
        else:
            segs = [(r.start, r.end)]
        for s, e in segs:
            m = mask_at(era, vm, vcpu, s, is_mmio)
            runs.append((s, e, key(m.memtype, m.ipat)))
    return merge_runs(runs)
