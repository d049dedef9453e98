"""Xen's MTRR lookup and its guest x host combine, restated from the source.

`xen_mtrr_type()` models `mtrr_get_type()` (xen/arch/x86/hvm/mtrr.c, RELEASE-4.22.0
d45d5687f144, line 179; the same text at RELEASE-4.19.0), which Xen uses for both the
guest's virtual MTRRs and the host's. It differs from the SDM lookup in app/x86/mtrr.py:

- MTRRs disabled (E=0): UC, whatever the guest's CPUID says (KVM's pre-6.11 lookup gave
  WB to guests without the MTRR feature).
- Overlapping variable ranges of types the SDM leaves undefined (e.g. WB and WC): the type
  of the *last* matching pair in index order (KVM returned WB; the SDM says undefined).
- For a superpage (order > 0) it answers -1 ("split") when the superpage starts below 1 MiB
  with fixed ranges enabled and spans more than one fixed sub-range, or when pairs of
  different types match it. A pair matches a superpage when it agrees with it on the mask
  bits above the superpage size, so a pair covering only *part* of the superpage matches:
  when it is the only one, its type is returned for the whole superpage and the rest of
  it (default type) is not looked at. That is the code as written; nothing in
  epte_get_entry_emt() re-checks coverage.

`combine()` is the last part of `epte_get_entry_emt()` (p2m-ept.c lines 576-608).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..x86.memtype import MemType
from ..x86.mtrr import KVM_NR_VAR_MTRR, ONE_MIB, PAGE, PHYSMASK_V, MtrrState, fixed_index

XEN_MTRR_VCNT = KVM_NR_VAR_MTRR
"""MTRR_VCNT: the variable ranges Xen gives a domU (8, the same count KVM reports)."""

_U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class XenLookup:
    """mtrr_get_type()'s answer: a type, or None for its -1 (split the superpage)."""

    type: MemType | None
    reason: str


def var_overlapped(state: MtrrState, vcnt: int = XEN_MTRR_VCNT) -> bool:
    """is_var_mtrr_overlapped() (xen/arch/x86/cpu/mtrr/generic.c): two valid pairs agree on
    the mask bits they share, i.e. some address matches both."""
    pairs = state.variable[:vcnt]  # pairs never written are invalid (all zero)
    for i, a in enumerate(pairs):
        if not a.valid:
            continue
        b1, m1 = a.base >> 12, a.mask >> 12
        for b in pairs[i + 1:]:
            if not b.valid:
                continue
            b2, m2 = b.base >> 12, b.mask >> 12
            if (b1 & m1 & m2) == (b2 & m2 & m1):
                return True
    return False


def xen_mtrr_type(state: MtrrState, pa: int, order: int = 0, vcnt: int = XEN_MTRR_VCNT) -> XenLookup:
    """mtrr_get_type(m, pa, order) for the 2^order pages from `pa`."""
    if not state.enabled:
        return XenLookup(MemType.UC, "MTRRs disabled (MTRRdefType.E=0): UC")
    mask = (-PAGE << order) & _U64
    pa &= mask
    if pa < ONE_MIB and state.fixed_enabled:
        limit = 4 if pa < 0x80000 else 2 if pa < 0xC0000 else 0
        if order > limit:
            return XenLookup(None, f"order {order} spans fixed sub-ranges below 1 MiB: -1")
        i = fixed_index(pa)
        return XenLookup(state.fixed_type(i), f"fixed range {i}")
    overlapped = var_overlapped(state, vcnt)
    seen = 0
    last: MemType | None = None
    matched: list[int] = []
    for n, p in enumerate(state.variable[:vcnt]):
        if not p.mask & PHYSMASK_V:
            continue
        pm = p.mask & mask
        if (pa & pm) != (p.base & pm):
            continue
        t = MemType(p.type)
        if not overlapped and not order:
            return XenLookup(t, f"variable range {n} (no overlaps: first match)")
        seen |= 1 << int(t)
        last = t
        matched.append(n)
    where = "variable range" + ("s " if len(matched) > 1 else " ") + ", ".join(map(str, matched))
    if last is None:
        return XenLookup(state.default_type, "no variable range matches: default type")
    if seen == 1 << int(last):
        return XenLookup(last, f"{where} ({last.label})")
    if order:
        return XenLookup(None, f"{where} of different types match the superpage: -1")
    if seen & 1 << int(MemType.UC):
        return XenLookup(MemType.UC, f"{where}: UC wins an overlap")
    if seen == (1 << int(MemType.WT)) | (1 << int(MemType.WB)):
        return XenLookup(MemType.WT, f"{where}: WT wins over WB")
    return XenLookup(last, f"{where}: undefined overlap, the last match ({last.label}) is used")


def combine(guest: MemType, host: MemType) -> tuple[MemType, str]:
    """The guest-MTRR x host-MTRR rule at the end of epte_get_entry_emt()."""
    if guest == host:
        return guest, f"guest and host agree: {guest.label}"
    if MemType.UC in (guest, host):
        return MemType.UC, "either is UC: UC"
    if guest == MemType.WB:
        return host, f"guest WB: the host's {host.label}"
    if host == MemType.WB:
        return guest, f"host WB: the guest's {guest.label}"
    if {guest, host} == {MemType.WT, MemType.WP}:
        return MemType.WP, "WT with WP: WP"
    return MemType.UC, f"{guest.label} with {host.label} (WC involved): UC"
