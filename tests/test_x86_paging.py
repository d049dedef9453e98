"""Page sizes are one type (app.x86.paging.PageSize): 4K/2M/1G with their levels and sizes.

Why: issue 11 found the strings "4K"/"2M"/"1G" and their sizes written down in five
modules. The type must still print, compare and serialise as those strings (the API and
the text renderings show them), and order by size, not by text.
"""

from __future__ import annotations

import json

import pytest

from app.x86.paging import HUGE_PAGES, PageSize, smallest

# (label, level, bytes): the SDM's leaf entries (PTE, PDE with PS=1, PDPTE with PS=1)
TABLE = [("4K", 1, 4096), ("2M", 2, 2 << 20), ("1G", 3, 1 << 30)]


@pytest.mark.parametrize(("label", "level", "size"), TABLE)
def test_members(label, level, size):
    p = PageSize(label)
    assert p == label and str(p) == label and f"{p}" == label and json.dumps(p) == f'"{label}"'
    assert (p.level, p.bytes, p.pages) == (level, size, size // 4096)
    assert PageSize.of_level(level) is p


def test_exactly_three_and_huge_largest_first():
    assert [p.value for p in PageSize] == ["4K", "2M", "1G"]
    assert HUGE_PAGES == (PageSize.SIZE_1G, PageSize.SIZE_2M)
    with pytest.raises(KeyError):
        PageSize.of_level(4)


def test_smallest_orders_by_size_not_text():
    assert smallest("1G", "4K") is PageSize.SIZE_4K  # "1G" < "4K" as text
    assert smallest("2M", "1G") is PageSize.SIZE_2M
    assert smallest(PageSize.SIZE_1G) is PageSize.SIZE_1G
