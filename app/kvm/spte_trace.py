"""Decode every SPTE line of a pasted trace: EPT leaves on Intel, NPT entries on AMD.

Plain text in, dataclasses out; no I/O, no web imports. Three kvmmmu tracepoints carry
SPTEs or their inputs. Their TP_printk formats, read in arch/x86/kvm/mmu/mmutrace.h of
sndrzt/linux-6.8 (68520c5dc) and KT0511/linux-6.16.1 (30b97c8a1), identical in both and
in torvalds/linux 03ab8e6297ac:

* ``kvm_mmu_set_spte``: ``gfn %llx spte %llx (%s%s%s%s) level %d at %llx``. Fired by
  the shadow MMU (``mmu.c`` ``mmu_set_spte``) and by the TDP MMU
  (``tdp_mmu.c`` ``tdp_mmu_map_handle_target_level``, for every leaf it installs that is
  not an MMIO SPTE). The four flags are r, w, x and u, computed when the event fires:
  r = ``shadow_present_mask`` nonzero or bit 0, w = bit 1, x = ``is_executable_pte()``,
  u = bit ``shadow_user_mask`` (EPT: the R bit, ``spte.c`` ``kvm_mmu_set_ept_masks``;
  NPT: US, ``kvm_mmu_reset_all_pte_masks``). The ``at`` value is the SPTE's own physical
  address (``virt_to_phys(sptep)``).
* ``kvm_tdp_mmu_spte_changed``: ``as id %d gfn %llx level %d old_spte %llx new_spte
  %llx``, fired by ``tdp_mmu.c`` ``handle_changed_spte`` for every change the TDP MMU
  makes, leaf or not, including zaps (the only place TDP-MMU zaps are visible).
* ``kvm_mmu_spte_requested``: ``gfn %llx pfn %llx level %d``, fired by the fault
  handlers (``mmu.c`` ``direct_map``, ``paging_tmpl.h`` ``FNAME(fetch)``, ``tdp_mmu.c``
  ``kvm_tdp_mmu_map``) before the SPTE is built (``fault->goal_level``, and the pfn of the faulting
  4 KiB page: ``fault->pfn`` ORed with the gfn's offset inside the goal page). It carries
  no SPTE, so no memory type: only what each era would compute can be shown.

Special values (``spte.h``): a frozen SPTE is the TDP MMU's non-present placeholder for
an entry another thread must not touch. 6.8 calls it ``REMOVED_SPTE`` = 0x5a0 and prints
it as new_spte both for the first step of an atomic zap (``tdp_mmu_zap_spte_atomic``; the
write of 0 that follows is not traced) and for each entry of a page table being freed
(``handle_removed_pt``). By 6.16.1 it is ``FROZEN_SPTE`` = ``SHADOW_NONPRESENT_VALUE |
0x5a0``, with ``SHADOW_NONPRESENT_VALUE`` = bit 63 on x86-64 (so 0x80000000000005a0; a
June 2024 patch, "KVM: x86/tdp_mmu: Rename REMOVED_SPTE to FROZEN_SPTE", already shows
the bit-63 form), printed only by ``handle_removed_pt``: zaps go through
``tdp_mmu_set_spte_atomic(..., SHADOW_NONPRESENT_VALUE)`` and print 8000000000000000.
A zapped entry is 0 (6.8) or bit 63 (6.16). ``SPTE_MMU_PRESENT_MASK`` (bit 11) marks an
SPTE KVM considers present. EPT MMIO SPTEs are KVM's deliberate misconfiguration W+X
without R (``VMX_EPT_MISCONFIG_WX_VALUE``); NPT MMIO SPTEs set the reserved bit 51 with
P (``kvm_mmu_reset_all_pte_masks``).

Vendor: on AMD the same tracepoints print nested page table entries. KVM puts no memory
type in them: ``make_spte()`` ORs in ``get_mt_mask()``, an optional op that returns 0 on
SVM (``kvm-x86-ops.h`` ``KVM_X86_OP_OPTIONAL_RET0(get_mt_mask)``; 6.8 also gates it on
``shadow_memtype_mask``, 0 off EPT). Reading such an entry as EPT misreads A (bit 5) as
memtype bit 2 and D (bit 6) as IPAT: a typical NPT leaf reads as "WT with IPAT". See
app.x86.npt for what the bits do mean.

Tracepoint headers (trace-cmd report, perf script, the ftrace trace file with or without
flags and record-tgid) are read by the one shared parser, app.kvm.trace_import.parse_header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..x86.ept import EptField, EptLeaf
from ..x86.memtype import EPT_TYPES, MemType, MemTypeError
from ..x86.npt import NptEntry
from ..x86.paging import PageSize
from ..x86.pat import Pat
from .era import Era
from .mtrr import kvm_lookup
from .resolve import fault_for
from .scenario import Access, VcpuState, VmConfig
from .trace_import import parse_header

VENDORS = ("intel", "amd")

MAX_TRACE_CHARS = 200_000
"""Most characters of pasted trace (below the API's 256 KiB body cap, JSON escapes included)."""
MAX_TRACE_LINES = 4000
"""Most lines of pasted trace; each SPTE line costs one answer per era compared."""
LIMIT_RULE = (f"a pasted trace is at most {MAX_TRACE_CHARS} characters and {MAX_TRACE_LINES} lines; "
              "filter it first (trace-cmd report -F 'kvmmmu:*', grep kvm_mmu)")

SET_SPTE = "kvm_mmu_set_spte"
SPTE_CHANGED = "kvm_tdp_mmu_spte_changed"
SPTE_REQUESTED = "kvm_mmu_spte_requested"
TRACEPOINTS = (SET_SPTE, SPTE_CHANGED, SPTE_REQUESTED)
SYSTEM = "kvmmmu"

# spte.h (see the module docstring)
SPTE_MMU_PRESENT = 1 << 11
NONPRESENT_VALUES = {0: "0 (a zapped or empty entry; 6.8's only non-present value)",
                     1 << 63: "bit 63 (SHADOW_NONPRESENT_VALUE on x86-64, 6.16: a zapped or empty entry)"}
FROZEN_VALUES = {
    0x5A0: "REMOVED_SPTE (0x5a0, 6.8): an atomic zap's first step (tdp_mmu_zap_spte_atomic, which then "
           "writes 0 untraced) or an entry of a page table being freed (handle_removed_pt)",
    (1 << 63) | 0x5A0: "FROZEN_SPTE (SHADOW_NONPRESENT_VALUE | 0x5a0, 6.16): an entry of a page table "
                       "being freed (handle_removed_pt); zaps print bit 63 instead",
}
EPT_MMIO_XWR = 0b110  # VMX_EPT_MISCONFIG_WX_VALUE
NPT_MMIO_BITS = (1 << 51) | 1
GFN_LIMIT = 1 << 40  # 52-bit physical addresses
PAGE_SIZE_OF = {p.level: p for p in PageSize}  # 1 -> 4K, 2 -> 2M, 3 -> 1G
LEVEL_PAGES = {p.level: p.pages for p in PageSize}  # 4K pages per leaf

_HEX = r"[0-9a-fA-F]{1,16}"
_BODY = {
    SET_SPTE: re.compile(rf"gfn (?P<gfn>{_HEX}) spte (?P<spte>{_HEX}) \((?P<flags>[r-][w-][x-][u-]?)\) "
                         rf"level (?P<level>\d{{1,2}}) at (?P<at>{_HEX})", re.ASCII),
    SPTE_CHANGED: re.compile(rf"as id (?P<as_id>\d{{1,3}}) gfn (?P<gfn>{_HEX}) level (?P<level>\d{{1,2}}) "
                             rf"old_spte (?P<old>{_HEX}) new_spte (?P<new>{_HEX})", re.ASCII),
    SPTE_REQUESTED: re.compile(rf"gfn (?P<gfn>{_HEX}) pfn (?P<pfn>{_HEX}) level (?P<level>\d{{1,2}})", re.ASCII),
}
_FORMATS = {
    SET_SPTE: "gfn %llx spte %llx (%s%s%s%s) level %d at %llx",
    SPTE_CHANGED: "as id %d gfn %llx level %d old_spte %llx new_spte %llx",
    SPTE_REQUESTED: "gfn %llx pfn %llx level %d",
}

_BARE_TP = re.compile(r"^\s*(?:(?P<sys>\w+):)?(?P<tp>" + "|".join(TRACEPOINTS) + r"):\s*(?P<body>.*?)\s*$")
_LOST = re.compile(r"LOST\s+\d+\s+EVENTS", re.IGNORECASE)


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """The tracer's prefix: thread name, TID (`pid`, as ftrace calls a task's id), CPU and
    timestamp as printed."""

    comm: str
    pid: int
    cpu: int
    ts: str


@dataclass(frozen=True, slots=True)
class SpteValue:
    """One SPTE value read for a vendor at a level."""

    raw: int
    level: int
    kind: str  # leaf | table | not-present | frozen | mmio
    meaning: str
    present: bool
    hpa: int | None
    page_size: PageSize | None
    permissions: str
    fields: tuple[EptField, ...]
    memtype_bits: int | None = None  # EPT leaves only
    ipat: bool | None = None
    misconfig: tuple[str, ...] = ()
    host_pat_index: int | None = None  # NPT leaves only
    host_pat_type: str | None = None  # the host PAT entry's type when the host PAT is given
    notes: tuple[str, ...] = ()

    @property
    def memtype(self) -> MemType | None:
        mt = self.memtype_bits
        return MemType(mt) if mt is not None and mt in EPT_TYPES else None


@dataclass(frozen=True, slots=True)
class EraAnswer:
    """What an era's vmx_get_mt_mask() computes for the line's page in the given scenario."""

    era: str
    memtype: MemType | None
    ipat: bool | None
    matches: bool | None  # the line's leaf has this (memtype, IPAT); None: nothing to compare
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SpteLine:
    line: int
    tracepoint: str
    header: Header | None
    gfn: int
    level: int
    gpa: int
    page_size: PageSize | None
    as_id: int | None = None
    pfn: int | None = None
    flags: str | None = None
    at: int | None = None
    spte: SpteValue | None = None
    old: SpteValue | None = None
    new: SpteValue | None = None
    change: str | None = None
    notes: tuple[str, ...] = ()
    eras: tuple[EraAnswer, ...] = ()


@dataclass(frozen=True, slots=True)
class TraceDecode:
    vendor: str
    lines: int
    ignored_lines: int
    counts: dict[str, int]
    entries: tuple[SpteLine, ...]
    notes: tuple[str, ...] = field(default=())


# -- bounds ----------------------------------------------------------------------------------


def check_size(text: str, field_name: str = "trace") -> None:
    """Refuse, before any parsing, a trace above MAX_TRACE_CHARS or MAX_TRACE_LINES."""
    if len(text) > MAX_TRACE_CHARS:
        raise MemTypeError(field_name, f"{len(text)} characters is more than MAX_TRACE_CHARS ({MAX_TRACE_CHARS})",
                           LIMIT_RULE)
    n = text.count("\n") + (0 if text.endswith("\n") else 1)
    if n > MAX_TRACE_LINES:
        raise MemTypeError(field_name, f"{n} lines is more than MAX_TRACE_LINES ({MAX_TRACE_LINES})", LIMIT_RULE)


# -- one SPTE value --------------------------------------------------------------------------


def _special(raw: int) -> tuple[str, str] | None:
    if raw in FROZEN_VALUES:
        return "frozen", f"not present: {FROZEN_VALUES[raw]}"
    if raw in NONPRESENT_VALUES:
        return "not-present", f"not present: {NONPRESENT_VALUES[raw]}"
    return None


def decode_value(raw: int, level: int, vendor: str, host_pat: Pat | None = None, *,
                 leaf_only: bool = False, field_name: str = "spte") -> SpteValue:
    """An SPTE as the vendor's hardware (and KVM's software bits) read it.

    `leaf_only`: the tracepoint only prints leaves (kvm_mmu_set_spte), so a present entry
    above level 1 without PS is refused rather than read as a table pointer.
    """
    if vendor not in VENDORS:
        raise MemTypeError("vendor", f"unknown vendor {vendor!r}", "vendor is 'intel' (EPT) or 'amd' (NPT)")
    if not 1 <= level <= 5:
        raise MemTypeError("level", f"level {level} is not a paging level", "x86 paging has levels 1 to 5")
    special = _special(raw)
    if special is not None:
        kind, meaning = special
        return SpteValue(raw, level, kind, meaning, False, None, None, "----", ())
    return _decode_ept(raw, level, leaf_only, field_name) if vendor == "intel" \
        else _decode_npt(raw, level, host_pat, leaf_only, field_name)


def _ept_perm(raw: int) -> str:
    """R, W, X of an EPT entry in the order kvm_mmu_set_spte prints its flags."""
    return ("r" if raw & 1 else "-") + ("w" if raw & 2 else "-") + ("x" if raw & 4 else "-")


def _decode_ept(raw: int, level: int, leaf_only: bool, field_name: str) -> SpteValue:
    xwr = raw & 7
    perm = _ept_perm(raw)
    if xwr == EPT_MMIO_XWR and not raw & SPTE_MMU_PRESENT:
        return SpteValue(raw, level, "mmio", "MMIO SPTE: KVM's deliberate EPT misconfiguration (W+X without R, "
                         "VMX_EPT_MISCONFIG_WX_VALUE) so the access exits for emulation; not a mapping",
                         False, None, None, perm, ())
    if xwr == 0 and not raw & SPTE_MMU_PRESENT:
        return SpteValue(raw, level, "not-present", "not present (R, W, X clear)", False, None, None, perm, ())
    ps = bool(raw & (1 << 7))
    if level > 3 and ps:
        raise MemTypeError("level", f"a level-{level} EPT entry with bit 7 (PS) set",
                           "bit 7 is reserved above level 3: the largest EPT page is 1 GiB")
    if level > 1 and not ps:
        if leaf_only:
            raise MemTypeError("level", f"a level-{level} entry with bit 7 (PS) clear points to a table, not a page",
                               "kvm_mmu_set_spte prints leaves only: PDEs/PDPTEs with PS=1")
        hpa = raw & ((1 << 52) - 1) & ~0xFFF
        return SpteValue(raw, level, "table", f"points to the level-{level - 1} EPT table at {hpa:#x}; "
                         "bits 6:3 are reserved in a non-leaf entry, so no memory type",
                         bool(xwr), hpa, None, perm, ())
    leaf = EptLeaf.decode(raw, level, field_name)
    hpa = raw & ((1 << 52) - 1) & ~(leaf.page_size.bytes - 1)
    mt = leaf.memtype_bits
    name = MemType(mt).label if mt in EPT_TYPES else f"reserved type {mt}"
    if xwr == 0:
        meaning = ("access-tracked: KVM keeps it present (bit 11) but cleared R/W/X so the next access "
                   f"faults (R and X saved in bits 54 and 56); EPT type {name}, IPAT {int(leaf.ipat)}")
    else:
        meaning = f"{leaf.page_size} page at {hpa:#x}, EPT type {name}, IPAT {int(leaf.ipat)}"
    return SpteValue(raw, level, "leaf", meaning, bool(xwr), hpa, leaf.page_size, perm, tuple(leaf.fields()),
                     mt, leaf.ipat, tuple(leaf.misconfig()))


NPT_NO_MEMTYPE = ("an NPT entry has no EPT memory type and no IPAT bit: the effective type combines the "
                  "host PAT entry it selects and the host MTRRs with the guest's gPAT and page tables "
                  "(AMD APM vol 2, 15.25 Nested Paging), none of which the trace shows")


def _decode_npt(raw: int, level: int, host_pat: Pat | None, leaf_only: bool, field_name: str) -> SpteValue:
    e = NptEntry.decode(raw, level, field_name)
    perm = e.permissions()
    if raw & NPT_MMIO_BITS == NPT_MMIO_BITS and not raw & SPTE_MMU_PRESENT:
        return SpteValue(raw, level, "mmio", "MMIO SPTE: P with the reserved bit 51, so the access faults with "
                         "PFEC.RSVD for emulation (kvm_mmu_reset_all_pte_masks); not a mapping",
                         False, None, None, perm, ())
    if not e.present:
        return SpteValue(raw, level, "not-present", "not present (P clear)", False, None, None, perm, ())
    if not e.leaf:
        if leaf_only:
            raise MemTypeError("level", f"a level-{level} entry with bit 7 (PS) clear points to a table, not a page",
                               "kvm_mmu_set_spte prints leaves only: PDEs/PDPTEs with PS=1")
        return SpteValue(raw, level, "table", f"points to the level-{level - 1} nested table at {e.hpa:#x}",
                         True, e.hpa, None, perm, tuple(e.fields()))
    idx = e.host_pat_index
    notes = [NPT_NO_MEMTYPE]
    if idx != 0:
        notes.append(f"host PAT index {idx}: KVM's make_spte() sets no PWT/PCD/PAT bits on NPT (get_mt_mask "
                     "returns 0 on SVM), so a nonzero index did not come from KVM's TDP MMU")
    hp = e.host_pat_type(host_pat) if host_pat is not None else None
    meaning = (f"{e.page_size} page at {e.hpa:#x}, host PAT index {idx} "
               f"(PAT bit {e.pat_bit}, PCD bit 4, PWT bit 3)"
               + (f": host PAT entry {idx} is {hp}" if hp else ""))
    return SpteValue(raw, level, "leaf", meaning, True, e.hpa, e.page_size, perm, tuple(e.fields()),
                     host_pat_index=idx, host_pat_type=hp, notes=tuple(notes))


def expected_flags(raw: int, vendor: str) -> str:
    """The r, w, x, u flags kvm_mmu_set_spte would print for `raw` on the vendor.

    r: on EPT it is bit 0 unless shadow_present_mask is nonzero (no exec-only support, or
    6.16's bit 63), which this cannot know, so a printed `r` is always accepted.
    """
    if vendor == "intel":
        return ("r" if raw & 1 else "-") + ("w" if raw & 2 else "-") + ("x" if raw & 4 else "-") + \
            ("u" if raw & 1 else "-")
    return "r" + ("w" if raw & 2 else "-") + ("-" if raw >> 63 & 1 else "x") + ("u" if raw & 4 else "-")


def _flags_agree(printed: str, raw: int, vendor: str) -> bool:
    want = expected_flags(raw, vendor)
    if len(printed) == 3:
        want = want[:3]
    return all(p == w or (i == 0 and p == "r") for i, (p, w) in enumerate(zip(printed, want, strict=False)))


def flags_note(printed: str, raw: int, vendor: str) -> str | None:
    """A note when the printed flags disagree with the bits read for `vendor`."""
    if _flags_agree(printed, raw, vendor):
        return None
    other = "amd" if vendor == "intel" else "intel"
    if _flags_agree(printed, raw, other):
        host = "an AMD (NPT)" if other == "amd" else "an Intel (EPT)"
        return (f"the printed flags ({printed}) fit {host} entry, not the {vendor} reading of the bits "
                f"({expected_flags(raw, vendor)}): was this trace taken on {host.split(' (')[0]} host? "
                f"(vendor: {other})")
    return f"the printed flags ({printed}) disagree with the bits for either vendor"


# -- the trace -------------------------------------------------------------------------------


def _hexval(tok: str) -> int:
    return int(tok, 16)


def _split(raw_line: str) -> tuple[Header | None, str | None, str | None, str] | None:
    """(header, system, tracepoint, body) for an SPTE line, None for any other line."""
    h = parse_header(raw_line)
    if h is not None and h.event in TRACEPOINTS:
        return Header(h.comm, h.tid, h.cpu, h.stamp), h.system, h.event, h.body
    if h is not None:
        return None
    b = _BARE_TP.match(raw_line)
    if b:
        return None, b["sys"], b["tp"], b["body"]
    s = raw_line.strip()
    for tp, rx in _BODY.items():
        if rx.fullmatch(s):
            return None, None, tp, s
    return None


@dataclass(frozen=True, slots=True)
class Scenario:
    """What the era comparison is computed for (Intel only)."""

    vm: VmConfig
    vcpu: VcpuState
    eras: tuple[Era, ...]
    mmio: bool | None = None


_Answers = tuple[tuple[str, MemType | None, bool | None, str | None], ...]


class _EraCache:
    """Each era's (memtype, IPAT) for a page. Given the scenario, vmx_get_mt_mask() depends
    on the page only through KVM's guest-MTRR lookup and is_mmio, so answers are kept per
    (lookup type, is_mmio): a trace costs one KVM MTRR lookup per distinct gfn and one
    mask per era per distinct pair."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.refused: dict[str, str] = {}
        for era in sc.eras:
            try:
                era.check_vm(sc.vm)
            except MemTypeError as e:
                self.refused[era.id] = str(e)
        self.by_gfn: dict[int, _Answers] = {}
        self.by_key: dict[tuple[MemType | None, bool], _Answers] = {}

    def at(self, gfn: int, line: int) -> _Answers:
        got = self.by_gfn.get(gfn)
        if got is not None:
            return got
        sc = self.sc
        gpa = gfn << 12
        try:
            access = Access(gpa, sc.mmio).validate(sc.vm)
        except MemTypeError as e:
            raise MemTypeError(f"line {line}", f"gfn {gfn:#x}: {e.message} (vm.maxphyaddr = {sc.vm.maxphyaddr})",
                               "give the guest's MAXPHYADDR in vm.maxphyaddr") from None
        is_mmio = access.is_mmio(sc.vm)
        lk = kvm_lookup(sc.vcpu.mtrr, gpa, sc.vm.maxphyaddr, sc.vm.guest_has_mtrr)
        key = (lk.type, is_mmio)
        got = self.by_key.get(key)
        if got is None:
            out: list[tuple[str, MemType | None, bool | None, str | None]] = []
            for era in sc.eras:
                if era.id in self.refused:
                    out.append((era.id, None, None, self.refused[era.id]))
                    continue
                mr = era.mt_mask(fault_for(era, sc.vm, sc.vcpu, gpa, is_mmio, lk))
                out.append((era.id, mr.memtype, mr.ipat, None))
            got = self.by_key[key] = tuple(out)
        self.by_gfn[gfn] = got
        return got


def _era_answers(cache: _EraCache | None, gfn: int, line: int, subject: SpteValue | None) -> tuple[EraAnswer, ...]:
    if cache is None:
        return ()
    res = []
    for era_id, mt, ipat, err in cache.at(gfn, line):
        matches = None
        if err is None and subject is not None and subject.kind == "leaf" and subject.memtype_bits is not None:
            matches = (subject.memtype_bits, subject.ipat) == (int(mt), ipat)  # type: ignore[arg-type]
        res.append(EraAnswer(era_id, mt, ipat, matches, err))
    return tuple(res)


def _ept_label(v: SpteValue) -> str:
    mt = v.memtype
    name = mt.label if mt is not None else f"reserved({v.memtype_bits})"
    return name + ("!" if v.ipat else "")


def describe_change(old: SpteValue, new: SpteValue) -> str:
    """One line saying what a kvm_tdp_mmu_spte_changed event did."""
    if new.kind == "frozen":
        return f"removed: {old.kind} replaced by the frozen placeholder"
    if old.kind == "frozen":
        return f"unfrozen: now {new.kind}"
    if old.present and not new.present:
        return f"zapped: {old.kind} removed" + (" (now an MMIO SPTE)" if new.kind == "mmio" else "")
    if not old.present and new.present:
        return "installed: " + ("a leaf" if new.kind == "leaf" else "a table pointer")
    if not old.present and not new.present:
        return f"not present before or after ({old.kind} -> {new.kind})"
    if old.kind != new.kind:
        return ("huge page split into a table" if new.kind == "table" else "table replaced by a huge page")
    what = []
    if old.hpa != new.hpa:
        what.append(f"host address {old.hpa:#x} -> {new.hpa:#x}")
    if old.kind == "leaf" and old.memtype_bits is not None and \
            (old.memtype_bits, old.ipat) != (new.memtype_bits, new.ipat):
        what.append(f"memtype {_ept_label(old)} -> {_ept_label(new)}")
    if old.host_pat_index != new.host_pat_index:
        what.append(f"host PAT index {old.host_pat_index} -> {new.host_pat_index}")
    if old.permissions != new.permissions:
        what.append(f"permissions {old.permissions} -> {new.permissions}")
    if not what:
        return f"bits changed: {old.raw ^ new.raw:#x}" if old.raw != new.raw else "unchanged"
    addr = ((1 << 52) - 1) & ~0xFFF
    rest = (old.raw ^ new.raw) & ~addr & ~0x7F  # beyond address, permissions, memtype, IPAT
    if rest:
        what.append(f"other bits {rest:#x}")
    return "; ".join(what)


NPT_ERA_NOTE = ("AMD: no era puts a memory type in an NPT entry (get_mt_mask is not implemented on SVM, "
                "so make_spte() ORs in 0); there is no era comparison")


def decode_trace(text: str, vendor: str = "intel", scenario: Scenario | None = None,
                 host_pat: Pat | None = None) -> TraceDecode:
    """Every SPTE line of `text`, decoded for `vendor`; other lines are counted, not read.

    `scenario` (Intel only) adds, for each line's page, the (memtype, IPAT) each era's
    vmx_get_mt_mask() computes, and whether the line's leaf has it. Raises MemTypeError
    naming the line (``line N``) for an SPTE line that does not have its tracepoint's
    format, a level or value that cannot be, or a gfn the scenario cannot hold.
    """
    if vendor not in VENDORS:
        raise MemTypeError("vendor", f"unknown vendor {vendor!r}", "vendor is 'intel' (EPT) or 'amd' (NPT)")
    check_size(text)
    cache = _EraCache(scenario) if scenario is not None and vendor == "intel" else None
    entries: list[SpteLine] = []
    counts = dict.fromkeys(TRACEPOINTS, 0)
    notes: list[str] = []
    if vendor == "amd":
        notes.append(NPT_ERA_NOTE)
    ignored = 0
    # "\n" alone ends a line (with an optional "\r" before it), as in an editor and in
    # check_size: str.splitlines() would also split at \x0b, \x1c or U+2028 and shift the
    # line numbers every error names
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for n, raw_line in enumerate(lines, 1):
        raw_line = raw_line.removesuffix("\r")
        if _LOST.search(raw_line):
            notes.append(f"line {n}: the tracer lost events here; SPTE changes between the lines around it are missing")
            continue
        parts = _split(raw_line)
        if parts is None:
            if any(tp in raw_line for tp in TRACEPOINTS):
                raise MemTypeError(f"line {n}", "names an SPTE tracepoint but has neither a tracer header "
                                   "(trace-cmd report, perf script, ftrace) nor the bare 'name: payload' form",
                                   "lines look like 'CPU 0/KVM-1234 [003] 12.345678: kvm_mmu_set_spte: gfn ...'")
            ignored += 1
            continue
        header, sys_, tp, body = parts
        assert tp is not None and body is not None
        if sys_ not in (None, SYSTEM):
            raise MemTypeError(f"line {n}", f"{tp} is a {SYSTEM} tracepoint, not {sys_}:{tp}",
                               f"perf script prints it as {SYSTEM}:{tp}")
        m = _BODY[tp].fullmatch(body)
        if m is None:
            raise MemTypeError(f"line {n}", f"cannot read the {tp} payload {body[:80]!r}",
                               f"{tp} prints '{_FORMATS[tp]}' (arch/x86/kvm/mmu/mmutrace.h)")
        counts[tp] += 1
        entries.append(_entry(n, tp, header, m, vendor, host_pat, cache))
    return TraceDecode(vendor, len(lines), ignored, counts, tuple(entries), tuple(notes))


def _entry(n: int, tp: str, header: Header | None, m: re.Match[str], vendor: str, host_pat: Pat | None,
           cache: _EraCache | None) -> SpteLine:
    gfn = _hexval(m["gfn"])
    level = int(m["level"])
    where = f"line {n}"
    if gfn >= GFN_LIMIT:
        raise MemTypeError(where, f"gfn {gfn:#x} is at or above 2^40", "guest frames are below 2^(52-12)")
    if tp == SPTE_CHANGED:
        if not 1 <= level <= 5:
            raise MemTypeError(where, f"level {level} is not a paging level", "x86 paging has levels 1 to 5")
        as_id = int(m["as_id"])
        if as_id > 1:
            raise MemTypeError(where, f"as id {as_id}", "x86 has address spaces 0 (normal) and 1 (SMM)")
    elif not 1 <= level <= 3:
        raise MemTypeError(where, f"level {level} is not a leaf level", "leaves are level 1 (4K), 2 (2M) or 3 (1G)")
    base = gfn & ~(LEVEL_PAGES.get(level, 1) - 1) if level <= 3 else gfn
    notes: list[str] = []
    try:
        if tp == SET_SPTE:
            raw = _hexval(m["spte"])
            v = decode_value(raw, level, vendor, host_pat, leaf_only=True, field_name=where)
            note = flags_note(m["flags"], raw, vendor)
            if note:
                notes.append(note)
            if base != gfn:
                notes.append(f"gfn {gfn:#x} is not aligned to its {PAGE_SIZE_OF[level]} page")
            return SpteLine(n, tp, header, gfn, level, gfn << 12, PAGE_SIZE_OF[level], flags=m["flags"],
                            at=_hexval(m["at"]), spte=v, notes=tuple(notes),
                            eras=_era_answers(cache, base, n, v))
        if tp == SPTE_CHANGED:
            old = decode_value(_hexval(m["old"]), level, vendor, host_pat, field_name=where)
            new = decode_value(_hexval(m["new"]), level, vendor, host_pat, field_name=where)
            subject = new if new.kind == "leaf" else old if old.kind == "leaf" else None
            size = PAGE_SIZE_OF[level] if subject is not None else None
            era = _era_answers(cache, base, n, subject) if subject is not None else ()
            if int(m["as_id"]) == 1:
                notes.append("as id 1: the SMM address space")
            return SpteLine(n, tp, header, gfn, level, gfn << 12, size, as_id=int(m["as_id"]), old=old, new=new,
                            change=describe_change(old, new), notes=tuple(notes), eras=era)
        pfn = _hexval(m["pfn"])
        if pfn >= GFN_LIMIT:
            raise MemTypeError(where, f"pfn {pfn:#x} is at or above 2^40", "host frames are below 2^(52-12)")
        notes.append("kvm_mmu_spte_requested fires before the SPTE is built: it carries no memory type "
                     "(nor IPAT, nor host PAT bits); the pfn is the faulting 4K page's")
        if vendor == "amd":
            notes.append(NPT_NO_MEMTYPE)
        return SpteLine(n, tp, header, gfn, level, gfn << 12, PAGE_SIZE_OF[level], pfn=pfn, notes=tuple(notes),
                        eras=_era_answers(cache, base, n, None))
    except MemTypeError as e:
        if e.field == where:
            raise
        raise MemTypeError(where, f"{e.field}: {e.message}", e.rule) from None
