"""Half-open [start, end) range sets: merge, intersect, subtract. Sorted and merged out."""

from __future__ import annotations

from collections.abc import Iterable

Range = tuple[int, int]


def merge(ranges: Iterable[Range]) -> list[Range]:
    out: list[Range] = []
    for s, e in sorted(r for r in ranges if r[0] < r[1]):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def intersect(a: Iterable[Range], b: Iterable[Range]) -> list[Range]:
    a, b = merge(a), merge(b)
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Iterable[Range], b: Iterable[Range]) -> list[Range]:
    out: list[Range] = []
    b = merge(b)
    for s, e in merge(a):
        cur = s
        for bs, be in b:
            if be <= cur or bs >= e:
                continue
            if bs > cur:
                out.append((cur, bs))
            cur = max(cur, be)
            if cur >= e:
                break
        if cur < e:
            out.append((cur, e))
    return out


def size(ranges: Iterable[Range]) -> int:
    return sum(e - s for s, e in merge(ranges))


def pages(ranges: Iterable[Range]) -> int:
    """4 KiB pages covered (ranges here are page aligned)."""
    return size(ranges) >> 12
