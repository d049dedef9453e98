"""Leaf page sizes: one type for 4 KiB, 2 MiB and 1 GiB pages.

The SDM's paging chapters (4-level paging and EPT alike) map a page with a PTE (level 1,
4 KiB), a PDE with PS=1 (level 2, 2 MiB) or a PDPTE with PS=1 (level 3, 1 GiB). The
value of each member is the label the API, the page and the tables print ("4K", ...),
so a member serialises as that string and compares equal to it.
"""

from __future__ import annotations

from enum import StrEnum


class PageSize(StrEnum):
    """A leaf page size; `level` is the paging level of its leaf entry."""

    SIZE_4K = "4K"
    SIZE_2M = "2M"
    SIZE_1G = "1G"

    @property
    def level(self) -> int:
        return _LEVEL[self]

    @property
    def shift(self) -> int:
        """log2 of the size in bytes: 12, 21 or 30 (9 address bits per level)."""
        return 12 + 9 * (self.level - 1)

    @property
    def bytes(self) -> int:
        return 1 << self.shift

    @property
    def pages(self) -> int:
        """4 KiB pages in one page of this size."""
        return 1 << (self.shift - 12)

    @classmethod
    def of_level(cls, level: int) -> PageSize:
        """The leaf size at paging level 1, 2 or 3 (KeyError otherwise)."""
        return _OF_LEVEL[level]


_LEVEL = {PageSize.SIZE_4K: 1, PageSize.SIZE_2M: 2, PageSize.SIZE_1G: 3}
_OF_LEVEL = {v: k for k, v in _LEVEL.items()}

HUGE_PAGES: tuple[PageSize, ...] = (PageSize.SIZE_1G, PageSize.SIZE_2M)
"""The huge sizes, largest first (the order a fault handler tries them in)."""


def smallest(*sizes: str) -> PageSize:
    """The most conservative of several page-size answers."""
    return min((PageSize(s) for s in sizes), key=lambda p: p.level)
