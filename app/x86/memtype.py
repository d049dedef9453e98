"""x86 memory types, their encodings, and the strength relation reviewers argue with.

Encodings follow the SDM's cache-control chapter (Table "Memory Types That Can Be Encoded
in MTRRs" and the PAT encoding table; ch 11 in the ~2016 edition, ch 12 in ~2023): UC=0,
WC=1, WT=4, WP=5, WB=6, and UC-=7 which only PAT can select. 2 and 3 are reserved
everywhere; 7 is reserved for MTRRs and in EPT leaf entries (bits 5:3).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from enum import IntEnum


class MemType(IntEnum):
    """A memory type by its architectural encoding."""

    UC = 0
    WC = 1
    WT = 4
    WP = 5
    WB = 6
    UC_MINUS = 7

    @property
    def label(self) -> str:
        """The name as the SDM writes it (`UC-` rather than the Python identifier)."""
        return _LABELS[self]

    @classmethod
    def from_label(cls, label: str) -> MemType:
        for t in cls:
            if t.label == label:
                return t
        raise ValueError(f"unknown memory type name {label!r}")

    def __str__(self) -> str:
        return self.label


_LABELS: dict[int, str] = {0: "UC", 1: "WC", 4: "WT", 5: "WP", 6: "WB", 7: "UC-"}

PAT_TYPES: frozenset[int] = frozenset({0, 1, 4, 5, 6, 7})
"""Encodings WRMSR accepts in an IA32_PAT byte (KVM's kvm_pat_valid() agrees)."""
MTRR_TYPES: frozenset[int] = frozenset({0, 1, 4, 5, 6})
"""Encodings accepted in fixed, variable and default MTRR type fields (kvm_mtrr_valid())."""
EPT_TYPES: frozenset[int] = MTRR_TYPES
"""Encodings legal in EPT leaf bits 5:3; 2, 3 and 7 cause an EPT misconfiguration."""
MTRR_TYPE_NAMES: tuple[str, ...] = tuple(_LABELS[v] for v in sorted(MTRR_TYPES))
"""The MTRR types by name, in encoding order (UC, WC, WT, WP, WB): what a question may give
as a host MTRR type (AMD's `amd.host_mtrr`, Xen's `xen.host_mtrr`)."""
RULE_MTRR_NAMES = f"MTRR types are {', '.join(MTRR_TYPE_NAMES)}; only PAT can select UC- (encoding 7)"


Loc = tuple[str | int, ...]
"""Where a bad value sits, relative to the object being validated: names and list indices,
like pydantic's `loc` (("variable", 3, "mask") inside an MtrrState)."""
LocLike = str | int | Sequence[str | int]
"""A Loc, or one segment on its own (a name such as "gpa", or "line 7")."""


def as_loc(loc: LocLike) -> Loc:
    return (loc,) if isinstance(loc, (str, int)) else tuple(loc)


def dotted(loc: Iterable[str | int]) -> str:
    """("vcpu", "mtrr", "variable", 0, "base") -> "vcpu.mtrr.variable[0].base"."""
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + p
    return out


class MemTypeError(ValueError):
    """Bad input for a rule, carrying where it was (`loc`) and the rule it broke.

    The core raises with a location relative to the object it validates; each container
    that passes the error on puts its own name in front (`within`, `located`), so the web
    layer only prefixes "body" (or re-roots a request field that can sit in two places).
    The API turns it into a 422 problem detail; the CLI prints it. `field` is the dotted
    form of `loc`, which `str()` starts with.
    """

    def __init__(self, loc: LocLike, message: str, rule: str = "") -> None:
        self.loc: Loc = as_loc(loc)
        self.rule = rule
        self.message = message
        super().__init__(self.loc, message, rule)

    @property
    def field(self) -> str:
        return dotted(self.loc)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" + (f" ({self.rule})" if self.rule else "")

    def within(self, *prefix: str | int) -> MemTypeError:
        """The same error seen from a container: `prefix` put in front of its location."""
        return MemTypeError((*prefix, *self.loc), self.message, self.rule)


@contextmanager
def located(*prefix: str | int) -> Iterator[None]:
    """Re-raise a MemTypeError from the block with `prefix` in front of its location."""
    try:
        yield
    except MemTypeError as e:
        raise e.within(*prefix) from None


_BY_VALUE: dict[int, MemType] = {int(m): m for m in MemType}
"""Every member by its value: what `MemType(value)` looks up, without the Enum call's
Python code (every MTRR write of a replay checks its type byte)."""
assert set(_BY_VALUE) >= PAT_TYPES | MTRR_TYPES | EPT_TYPES, "every allowed type is a member"


def _check(value: int, allowed: frozenset[int], field: LocLike, what: str, rule: str) -> MemType:
    if value not in allowed:
        raise MemTypeError(field, f"{what} has reserved type {value}", rule)
    return _BY_VALUE[value]


def pat_type(value: int, field: LocLike = "pat") -> MemType:
    """Decode a PAT entry; a reserved value is a #GP on WRMSR to IA32_PAT (SDM 11.12.2)."""
    return _check(value, PAT_TYPES, field, "PAT entry", "reserved PAT type: WRMSR raises #GP")


def mtrr_type(value: int, field: LocLike = "mtrr") -> MemType:
    """Decode an MTRR type field; reserved values (2, 3, 7, >7) make WRMSR raise #GP."""
    return _check(value, MTRR_TYPES, field, "MTRR", "reserved MTRR type: WRMSR raises #GP")


def host_mtrr_type(t: MemType | str, field: LocLike = "host_mtrr") -> MemType:
    """A host MTRR type as a question names it (a MemType, or its label): UC- is PAT's only
    (no MTRR encoding 7), an unknown name is no type. The one refusal of every host MTRR
    type the systems take (app.kvm.svm.SvmHost, app.xen.facts.Page, app.xen.map)."""
    if isinstance(t, str):
        if t not in _LABELS.values():
            raise MemTypeError(field, f"unknown host MTRR type {t!r}", RULE_MTRR_NAMES)
        t = MemType.from_label(t)
    if int(t) not in MTRR_TYPES:
        raise MemTypeError(field, f"{t.label} is not an MTRR type", RULE_MTRR_NAMES)
    return t


def ept_type(value: int, field: LocLike = ("ept", "memtype")) -> MemType:
    """Decode EPT bits 5:3; 2, 3 and 7 are reserved (an EPT misconfiguration exit)."""
    return _check(value, EPT_TYPES, field, "EPT memtype", "reserved EPT memtype: EPT misconfiguration")


# --- the strength relation -------------------------------------------------------------
#
# Intel defines no total order. We use a partial order over what each type *permits* the
# CPU to do (SDM Table 11-2 "Memory Types and Their Properties", in our own words):
#   read_cache     lines may be filled and hit on reads                   (WT, WP, WB)
#   write_update   a write hit updates the cached line                     (WT, WB)
#   write_back     writes may stay in the cache, memory updated later      (WB)
#   spec_read      speculative reads are allowed                           (WC, WT, WP, WB)
#   write_combine  writes may be buffered, merged and reordered (weakly    (WC)
#                  ordered) before they reach memory
# UC and UC- permit none of them (UC- differs from UC only in how a WC MTRR combines with
# it, which is a property of the *combination*, not of the final type).
# A type that permits a strict superset of another's behaviours is WEAKER (more caching,
# more buffering: "WB is the weakest memtype" as KVM reviewers say); a strict subset is
# STRONGER. WC and the cached types each permit something the other forbids (WC combines
# and reorders writes; WT/WP/WB cache), so they are INCOMPARABLE: the cacheability axis
# and the ordering axis disagree. This matches Intel's remapping rule that WB, WT and WP
# must never be remapped to WC (weaker ordering) although WC caches less.

PERMITS: dict[MemType, frozenset[str]] = {
    MemType.UC: frozenset(),
    MemType.UC_MINUS: frozenset(),
    MemType.WC: frozenset({"spec_read", "write_combine"}),
    MemType.WP: frozenset({"spec_read", "read_cache"}),
    MemType.WT: frozenset({"spec_read", "read_cache", "write_update"}),
    MemType.WB: frozenset({"spec_read", "read_cache", "write_update", "write_back"}),
}

WEAKER = "weaker"
STRONGER = "stronger"
SAME = "same"
INCOMPARABLE = "incomparable"
RELATIONS = (WEAKER, STRONGER, SAME, INCOMPARABLE)


def relation(actual: MemType, expected: MemType) -> str:
    """How `actual` compares with `expected`: weaker, stronger, same or incomparable.

    "weaker" is the danger case (the CPU may cache or buffer what the guest meant to be
    stricter); "stronger" costs speed but is safe.
    """
    a, e = PERMITS[actual], PERMITS[expected]
    if a == e:
        return SAME
    if a > e:
        return WEAKER
    if a < e:
        return STRONGER
    return INCOMPARABLE


def relation_reason(actual: MemType, expected: MemType) -> str:
    """One line saying which behaviours differ, for the decision trail and the page."""
    a, e = PERMITS[actual], PERMITS[expected]
    extra, missing = sorted(a - e), sorted(e - a)
    parts = []
    if extra:
        parts.append(f"{actual.label} adds {', '.join(extra)}")
    if missing:
        parts.append(f"{actual.label} lacks {', '.join(missing)}")
    return "; ".join(parts) if parts else f"{actual.label} and {expected.label} behave alike"
