"""Half-open [start, end) range sets: merge, intersect, subtract. Sorted and merged out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ..x86.memtype import LocLike, MemTypeError, as_loc

Range = tuple[int, int]

MAP_RANGES_MAX = 64
"""Most ranges with per-range facts a map question may give (a TD's `private_ranges`, Xen's
`xen.frames`): this tool's bound, as the map splits at every edge (KVM takes any number of
KVM_SET_MEMORY_ATTRIBUTES calls, Xen any number of p2m changes)."""


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


def first_uncovered(start: int, end: int, cover: Iterable[Range]) -> int | None:
    """The first address of [start, end) in none of `cover`'s ranges, or None."""
    cursor = start
    for a, b in sorted(cover):
        if a <= cursor < b:
            cursor = b
    return cursor if cursor < end else None


def check_map_ranges(ranges: Sequence[Range], field: LocLike, what: str, align_rule: str, once_rule: str,
                     each: Callable[[tuple, int, int], None]) -> None:
    """What every per-range list of a map question must be (private_ranges, xen.frames): at
    most MAP_RANGES_MAX, each 4K aligned and not empty, none overlapping another; `each` adds
    the list's own rules per range (at `loc`, after the common ones). `what` names a range in
    the refusals ("private range"), `align_rule` and `once_rule` say why in its system's terms."""
    if len(ranges) > MAP_RANGES_MAX:
        raise MemTypeError(field, f"{len(ranges)} {what}s given",
                           f"the map takes at most {MAP_RANGES_MAX} (each edge splits it)")
    for n, (start, end) in enumerate(ranges):
        loc = (*as_loc(field), n)
        if start % 4096 or end % 4096:
            raise MemTypeError(loc, f"{start:#x}-{end:#x} is not 4K aligned", align_rule)
        if end <= start:
            raise MemTypeError(loc, f"{start:#x}-{end:#x} is empty", "a range is [start, end) with start < end")
        for m, (s0, e0) in enumerate(ranges[:n]):
            if s0 < end and start < e0:
                raise MemTypeError(loc, f"overlaps {what} {m} ({s0:#x}-{e0:#x})", once_rule)
        each(loc, start, end)
