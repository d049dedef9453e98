"""The host side of is_mmio: what kvm_is_mmio_pfn() says about one host page (pure).

make_spte() hands vmx_get_mt_mask() `is_mmio = kvm_is_mmio_pfn(pfn)`, computed from the
host's view of the page; that flag alone decides UC (IPAT clear) against every other
rule. The function has had three forms (read in the trees named, kernel.org sources):

- 4.2-4.15, arch/x86/kvm/mmu.c kvm_is_mmio_pfn(): a pfn with a struct page is MMIO iff
  it is PageReserved and not the zero page; a pfn without one is always MMIO. Read in
  4.2.8 (mlpzaq9998/linux-4.2), 4.14.170 (bm16ton/linux-4.14_16ton) and the vanilla
  4.15 import (sndrzt/linux-4.15, commit 6ea062648).
- 4.16-5.1: the reserved case also needs `!pat_enabled() || pat_pfn_immune_to_uc_mtrr(pfn)`
  ("KVM: MMU: consider host cache mode in MMIO page check", for NVDIMM DAX pages). Read in
  4.16.13 (lizuobin/linux-4.16.13_tiny4412), 4.20 (a4913994/linux-4.20) and 5.0.1
  (VVvector/linux-5.0.1). Distribution 4.15 kernels carry it as a backport (Ubuntu's
  4.15.0 tree in sndrzt/linux-4.15 has it; SUSE lists it as bsc#1087213).
- 5.2 on: a pfn without a struct page is MMIO unless the raw firmware e820 table maps it
  as RAM (`!e820__mapped_raw_any(..., E820_TYPE_RAM)`, the `mem=` case), commit
  0c55671f84ff "kvm, x86: Properly check whether a pfn is an MMIO or not", listed in the
  "KVM changes for 5.2 merge window" pull; absent in 5.0.1, present in 5.2.1
  (wangliang-cs/linux-5.2.1). Unchanged in arch/x86/kvm/mmu/spte.c in 6.8
  (sndrzt/linux-6.8), 6.16.1 (KT0511/linux-6.16.1) and 6.19 (matankalina/linux-6.19.10-fork,
  where __kvm_is_mmio_pfn() is only cached per SPTE through `is_host_mmio`).

pat_pfn_immune_to_uc_mtrr() (arch/x86/mm/pat.c, arch/x86/mm/pat/memtype.c from 5.7) is
true iff lookup_memtype() gives UC, UC- or WC. lookup_memtype(), the same in 4.2, 4.16.13,
4.20, 5.2.1, 6.8, 6.16.1 and 6.19: a range x86_platform.is_untracked_pat_range() excludes
(is_ISA_range: 0xa0000-0xfffff) reads WB; a page in System RAM reads its page flags (WB
unless set_memory_wc/uc/wt changed it); anything else reads its memtype-tree entry, or UC-
when nothing reserved it. `host_memtype` below is that tracked type (None: no entry).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..x86.memtype import LocLike, MemType, MemTypeError, as_loc
from .step import Step

RAM_PAGE = "ram"
ZERO_PAGE = "zero_page"
RESERVED = "reserved"
NO_STRUCT_PAGE = "no_struct_page"
CLASSES = (RAM_PAGE, ZERO_PAGE, RESERVED, NO_STRUCT_PAGE)
CLASS_TEXT = {
    RAM_PAGE: "ordinary RAM: a struct page, not PageReserved",
    ZERO_PAGE: "the shared zero page (is_zero_pfn)",
    RESERVED: "a struct page with PageReserved set",
    NO_STRUCT_PAGE: "a pfn without a struct page (!pfn_valid)",
}

ISA_START, ISA_END = 0xA0000, 0x100000
"""is_ISA_range() (arch/x86/include/asm/e820/types.h ISA_START_ADDRESS/ISA_END_ADDRESS):
the default x86_platform.is_untracked_pat_range, so PAT never tracks this window."""

IMMUNE = (MemType.UC, MemType.UC_MINUS, MemType.WC)
"""The lookup_memtype() results pat_pfn_immune_to_uc_mtrr() calls immune (MMIO)."""

HOST_MEMTYPES = (MemType.WB, MemType.WT, MemType.WP, MemType.WC, MemType.UC_MINUS, MemType.UC)

Version = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Variant:
    """One form of kvm_is_mmio_pfn(), for kernels first..last (inclusive, major.minor)."""

    first: Version
    last: Version
    pat_check: bool
    e820_check: bool
    where: str

    @property
    def kernels(self) -> str:
        return f"{self.first[0]}.{self.first[1]}-{self.last[0]}.{self.last[1]}"


VARIANTS: tuple[Variant, ...] = (
    Variant((4, 2), (4, 15), False, False, "arch/x86/kvm/mmu.c kvm_is_mmio_pfn() (4.2.8, 4.14.170, 4.15)"),
    Variant((4, 16), (5, 1), True, False, "arch/x86/kvm/mmu.c kvm_is_mmio_pfn() (4.16.13, 4.20, 5.0.1)"),
    Variant((5, 2), (6, 19), True, True, "kvm_is_mmio_pfn(), arch/x86/kvm/mmu.c then mmu/spte.c "
            "(5.2.1, 6.8, 6.16.1; __kvm_is_mmio_pfn in 6.19)"),
)
NEWEST = VARIANTS[-1].last

BOUNDARY_NOTES = (
    "PAT test (4.16): first release inferred from trees: vanilla 4.15 lacks it, 4.16.13 has it "
    "(commit id not confirmed); distribution 4.15 kernels backported it",
    "e820 test (5.2): 0c55671f84ff is in the 5.2 merge-window KVM pull; 5.0.1 lacks it, 5.2.1 has it",
)


def variant_for(v: Version) -> Variant:
    for var in VARIANTS:
        if var.first <= v <= var.last:
            return var
    raise MemTypeError("kernel", f"no kvm_is_mmio_pfn() form modelled for {v[0]}.{v[1]}",
                       f"{VARIANTS[0].kernels.split('-')[0]} to {NEWEST[0]}.{NEWEST[1]}")


@dataclass(frozen=True, slots=True)
class HostPage:
    """The host's view of the page behind a guest page, as kvm_is_mmio_pfn() reads it.

    `host_memtype` (reserved pages only): the type PAT tracks for the pfn, None when nothing
    reserved it. `hpa` (optional): the host physical address, consulted for the ISA window.
    `e820_ram` (pfns without a struct page only): the raw e820 table calls it RAM.
    `pat_enabled`: pat_enabled() on the host (false with `nopat`).
    """

    cls: str
    host_memtype: MemType | None = None
    hpa: int | None = None
    e820_ram: bool = False
    pat_enabled: bool = True
    preset: str = ""

    def validate(self, field: LocLike = "host_page") -> HostPage:
        if self.cls not in CLASSES:
            raise MemTypeError((*as_loc(field), "class"), f"unknown host page class {self.cls!r}",
                               f"one of {', '.join(CLASSES)}")
        if self.host_memtype is not None and self.cls != RESERVED:
            raise MemTypeError((*as_loc(field), "host_memtype"), f"a host memtype is given for class {self.cls!r}",
                               "only a reserved page with a struct page reaches pat_pfn_immune_to_uc_mtrr()")
        if self.host_memtype is not None and self.host_memtype not in HOST_MEMTYPES:
            raise MemTypeError((*as_loc(field), "host_memtype"),
                               f"{self.host_memtype.label} is not a host page cache mode",
                               "lookup_memtype() gives WB, WT, WP, WC, UC- or UC")
        if self.e820_ram and self.cls != NO_STRUCT_PAGE:
            raise MemTypeError((*as_loc(field), "e820_ram"), f"e820_ram is set for class {self.cls!r}",
                               "only a pfn without a struct page is looked up in e820")
        if self.hpa is not None and not 0 <= self.hpa < 1 << 52:
            raise MemTypeError((*as_loc(field), "hpa"), f"{self.hpa:#x} is not a host physical address", "below 2^52")
        return self

    @property
    def isa(self) -> bool:
        return self.hpa is not None and ISA_START <= self.hpa < ISA_END

    def describe(self) -> str:
        out = CLASS_TEXT[self.cls]
        if self.cls == RESERVED:
            out += ", host memtype " + (self.host_memtype.label if self.host_memtype else "untracked")
            if self.isa:
                out += ", ISA range"
        if self.cls == NO_STRUCT_PAGE:
            out += ", e820 RAM" if self.e820_ram else ", not RAM in e820"
        return out


@dataclass(frozen=True, slots=True)
class HostMmio:
    is_mmio: bool
    why: str
    path: tuple[Step, ...]
    variant: Variant


def lookup_memtype(page: HostPage) -> tuple[MemType, str]:
    """What lookup_memtype() returns for the page, and why (arch/x86/mm/pat/memtype.c)."""
    if page.isa:
        return MemType.WB, "ISA range 0xa0000-0xfffff is PAT-untracked: lookup_memtype() reads WB"
    if page.host_memtype is None:
        return MemType.UC_MINUS, "no PAT memtype entry for the pfn: lookup_memtype() reads UC-"
    return page.host_memtype, f"PAT tracks the pfn as {page.host_memtype.label}"


def kvm_is_mmio_pfn(page: HostPage, v: Version) -> HostMmio:
    """kvm_is_mmio_pfn() for kernel series `v` (major, minor), as a list of checks."""
    return _evaluate(page, variant_for(v))


@lru_cache(maxsize=4096)
def _evaluate(page: HostPage, var: Variant) -> HostMmio:
    """Pure in (page, form), so cached: resolve asks it once per form an era spans."""
    page.validate()
    fn = "kvm_is_mmio_pfn"
    checks: list[Step] = []

    def done(mmio: bool, why: str) -> HostMmio:
        return HostMmio(mmio, why, tuple(checks), var)

    has_page = page.cls != NO_STRUCT_PAGE
    checks.append(Step("pfn_valid", fn, "pfn_valid(pfn): the pfn has a struct page", has_page, "", var.where))
    if not has_page:
        if not var.e820_check:
            checks.append(Step("no-page", fn, "no struct page: MMIO (no e820 test before 5.2)", True,
                               "MMIO", var.where))
            return done(True, "no struct page: always MMIO before 5.2")
        held = not page.e820_ram
        checks.append(Step("e820", fn, "!e820__mapped_raw_any(pfn, E820_TYPE_RAM)", held,
                           "MMIO: not RAM in the raw e820 table" if held
                           else "not MMIO: e820 RAM without a struct page (mem=)", "0c55671f84ff (5.2)"))
        return done(held, "no struct page, not RAM in e820: MMIO" if held
                    else "no struct page but e820 RAM: not MMIO")
    not_zero = page.cls != ZERO_PAGE
    checks.append(Step("zero", fn, "!is_zero_pfn(pfn)", not_zero, "" if not_zero else "not MMIO: the zero page",
                       var.where))
    if not not_zero:
        return done(False, "the zero page is never MMIO")
    reserved = page.cls == RESERVED
    checks.append(Step("reserved", fn, "PageReserved(pfn_to_page(pfn))", reserved,
                       "" if reserved else "not MMIO: ordinary RAM", var.where))
    if not reserved:
        return done(False, "ordinary RAM (not PageReserved): not MMIO")
    if not var.pat_check:
        checks.append(Step("no-pat-test", fn, "reserved: MMIO (no PAT test before 4.16)", True, "MMIO", var.where))
        return done(True, "reserved page: MMIO before 4.16 (no host memtype test)")
    nopat = not page.pat_enabled
    checks.append(Step("nopat", fn, "!pat_enabled()", nopat, "MMIO: host PAT disabled" if nopat else "", var.where))
    if nopat:
        return done(True, "reserved page and host PAT disabled: MMIO")
    mt, why = lookup_memtype(page)
    immune = mt in IMMUNE
    checks.append(Step("pat", "pat_pfn_immune_to_uc_mtrr",
                       "lookup_memtype(pfn) is UC, UC- or WC", immune,
                       f"{why}: " + ("MMIO" if immune else "not MMIO"), "arch/x86/mm/pat/memtype.c (4.16+)"))
    where = " (ISA range, PAT-untracked)" if page.isa else ""
    return done(immune, f"reserved page, lookup_memtype {mt.label}{where}: " + ("MMIO" if immune else "not MMIO"))


_MM = re.compile(r"(\d+)\.(\d+)")


def era_span(kernels: str) -> tuple[Version, Version] | None:
    """(first, last) series of an era's `kernels` text ("4.2-6.6"), None if unmerged."""
    found = [(int(a), int(b)) for a, b in _MM.findall(kernels)]
    if not found or "unmerged" in kernels:
        return None
    return found[0], found[-1]


@lru_cache(maxsize=4096)
def by_kernels(page: HostPage, span: tuple[Version, Version] | None) -> tuple[tuple[str, bool], ...]:
    """The answer for each kvm_is_mmio_pfn() form inside an era's kernels, oldest first,
    neighbouring forms with the same answer merged ("4.2-4.15": True, "4.16-6.6": False)."""
    first, last = span if span is not None else (NEWEST, NEWEST)
    rows: list[tuple[Version, Version, bool]] = []
    for var in VARIANTS:
        lo, hi = max(first, var.first), min(last, var.last)
        if lo > hi:
            continue
        ans = kvm_is_mmio_pfn(page, lo).is_mmio
        if rows and rows[-1][2] == ans:
            rows[-1] = (rows[-1][0], hi, ans)
        else:
            rows.append((lo, hi, ans))
    return tuple((f"{a[0]}.{a[1]}" + (f"-{b[0]}.{b[1]}" if b != a else ""), m) for a, b, m in rows)


@dataclass(frozen=True, slots=True)
class Preset:
    page: HostPage
    title: str
    notes: str


def _p(name: str, cls: str, title: str, notes: str, **kw) -> tuple[str, Preset]:
    return name, Preset(HostPage(cls, preset=name, **kw), title, notes)


PRESETS: dict[str, Preset] = dict((
    _p("guest_ram", RAM_PAGE, "guest RAM (anonymous, memfd or hugetlbfs)",
       "ordinary RAM pages: never MMIO in any version"),
    _p("vga_dev_mem", RESERVED, "legacy VGA window mapped from /dev/mem (dosemu2-style)",
       "host 0xa0000-0xbffff has a struct page and is PageReserved; the ISA range is PAT-"
       "untracked so lookup_memtype() reads WB: MMIO (UC) up to 4.15, not MMIO from 4.16, so "
       "the quirk-on eras give WB|IPAT to real VGA memory", hpa=0xA0000),
    _p("vfio_bar", NO_STRUCT_PAGE, "a VFIO BAR (mmap of a PCI resource)",
       "a PCI BAR has no struct page and is not RAM in e820: MMIO in every version (a BAR in a "
       "128 MiB section that also holds RAM would have a struct page: use class reserved)"),
    _p("dax_pmem", RESERVED, "a DAX / pmem page (ZONE_DEVICE)",
       "ZONE_DEVICE pages are PageReserved (__init_zone_device_page) and memremap_pages() "
       "reserves them WB through track_pfn_remap(): MMIO (UC) up to 4.15, cached from 4.16",
       host_memtype=MemType.WB),
    _p("virtio_gpu_blob", RAM_PAGE, "a virtio-gpu host-visible blob in host system memory",
       "the host GPU driver's buffer pages (shmem, udmabuf) are ordinary RAM, so not MMIO even "
       "when the host maps them WC; only guest PAT (eras that honour it) can make them WC"),
    _p("virtio_gpu_blob_vram", NO_STRUCT_PAGE, "a virtio-gpu host-visible blob in discrete-GPU VRAM",
       "VRAM behind a PCI BAR: no struct page, not e820 RAM: MMIO in every version"),
    _p("dev_mem_above_mem", NO_STRUCT_PAGE, "RAM beyond the host's mem= limit, mapped from /dev/mem",
       "e820 RAM without a struct page: MMIO (UC) up to 5.1, not MMIO from 5.2 (0c55671f84ff)",
       e820_ram=True),
))

RANGE_KIND_PAGE = {"ram": "guest_ram", "mmio": "vfio_bar"}
"""What a memory-map range's kind means when it carries no host page of its own."""


def preset(name: str, field: LocLike = ("host_page", "preset")) -> HostPage:
    if name not in PRESETS:
        raise MemTypeError(field, f"unknown host page preset {name!r}", f"one of {', '.join(PRESETS)}")
    return PRESETS[name].page
