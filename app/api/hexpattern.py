"""JSON-schema regexes for `"0x..."` register values, built from the core's sets.

The API takes a 64-bit register as an integer or as `0x` (or `0X`) followed by 1-16 hex
digits in either case. The schema's `pattern` for such a field says which strings the
core will accept, so generated clients and fuzzers know the reserved-value rules: every
PAT byte a PAT type, MTRRdefType's reserved bits clear, and so on. The rules themselves
stay in app.x86; this module only turns their sets and masks into regexes:

* `byte_fields(types)`: every one of the 8 bytes is in `types` (IA32_PAT, fixed MTRRs);
* `masked(valid, low_byte)`: no bit outside `valid`, and the low byte (when given) in
  `low_byte` (MTRRdefType, PHYSBASE, PHYSMASK, an address below 2^52);
* `one_of(values)`: one of a finite set of numbers (the MTRR MSRs).

A value is a string of digit units, least significant first: a nibble unit (1 digit) or
a byte unit (2 digits, with a set of allowed values); a string of n digits gives the
lowest units their digits and leaves the units above it 0. The regex accepts exactly the
strings of at most 16 digits whose every unit holds an allowed value (leading zeros are
digits like any other); tests/test_api_hexpattern.py checks that against the core's own
checks. Patterns are ECMA-262 and Python `re` alike (`(?:...)`, classes, `{m,n}`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DIGITS = 16
"""A 64-bit value has at most 16 hex digits."""


def digit_class(values: Iterable[int]) -> str:
    """A regex matching one hex digit whose value is in `values`, either case: `[048cC]`."""
    vs = sorted(set(values))
    if not vs or not all(0 <= v < 16 for v in vs):
        raise ValueError(f"not a set of hex digit values: {vs}")
    if vs == list(range(16)):
        return "[0-9a-fA-F]"

    def runs(chars: list[str], vals: list[int]) -> str:
        out, i = "", 0
        while i < len(vals):
            j = i
            while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
                j += 1
            out += chars[i] + ("-" + chars[j] if j - i >= 2 else "".join(chars[i + 1:j + 1]))
            i = j + 1
        return out

    dec = [v for v in vs if v < 10]
    hexa = [v for v in vs if v >= 10]
    body = runs([str(v) for v in dec], dec)
    body += runs([f"{v:x}" for v in hexa], hexa) + runs([f"{v:X}" for v in hexa], hexa)
    return body if len(vs) == 1 and not hexa else f"[{body}]"


@dataclass(frozen=True)
class Unit:
    """`width` hex digits (1 or 2) holding a value in `allowed`."""

    width: int
    allowed: frozenset[int]

    def full(self) -> str:
        """The unit written with all its digits."""
        if self.width == 1:
            return digit_class(self.allowed)
        by_high: dict[int, set[int]] = {}
        for v in self.allowed:
            by_high.setdefault(v >> 4, set()).add(v & 0xF)
        groups: dict[tuple[int, ...], list[int]] = {}
        for hi, lows in sorted(by_high.items()):
            groups.setdefault(tuple(sorted(lows)), []).append(hi)
        alts = [digit_class(his) + digit_class(lows) for lows, his in groups.items()]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    def top(self) -> str:
        """The unit as the string's most significant digits: a byte may drop a 0 high digit."""
        if self.width == 1:
            return self.full()
        low = sorted(v for v in self.allowed if v < 16)
        if not low:
            return self.full()
        rest = Unit(2, frozenset(v for v in self.allowed if v >= 16))
        one = "0?" + digit_class(low)
        return one if not rest.allowed else f"(?:{one}|{rest.full()})"


def _repeat(atom: str, lo: int, hi: int) -> str:
    if hi == 0:
        return ""
    a = atom if len(atom) == 1 or atom.startswith("[") and atom.endswith("]") and atom.count("[") == 1 \
        else f"(?:{atom})"
    if lo == hi == 1:
        return atom  # concatenation needs no group: an alternation comes grouped
    if lo == hi:
        return f"{a}{{{lo}}}"
    return f"{a}{{{lo},{hi}}}"


def units_pattern(units: list[Unit]) -> str:
    """The regex (anchored, `0x` prefix) for the units, least significant first."""
    if sum(u.width for u in units) != DIGITS:
        raise ValueError("the units must cover 16 hex digits")
    zeros = 0  # top units that must be 0: a run of optional leading zeros
    while units and units[-1].allowed == frozenset({0}):
        zeros += units.pop().width
    if not units:
        return "^0[xX]" + _repeat("0", 1, zeros) + "$"
    # From the top: each run of identical units either is the string's top (written
    # partially: top() then full() repeated) or lies below the runs above (full() each).
    runs: list[tuple[Unit, int]] = []
    for u in reversed(units):
        if runs and runs[-1][0] == u:
            runs[-1] = (u, runs[-1][1] + 1)
        else:
            runs.append((u, 1))
    above = ""
    for u, n in runs:
        alone = _repeat(u.full(), 1, n) if u.top() == u.full() else u.top() + _repeat(u.full(), 0, n - 1)
        above = alone if not above else f"(?:{above}{_repeat(u.full(), n, n)}|{alone})"
    return "^0[xX]" + (_repeat("0", 0, zeros) if zeros else "") + above + "$"


def byte_fields(types: Iterable[int]) -> str:
    """All 8 bytes of the value in `types` (IA32_PAT, a fixed-range MTRR MSR)."""
    return units_pattern([Unit(2, frozenset(types))] * 8)


def masked(valid: int, low_byte: Iterable[int] | None = None) -> str:
    """No bit set outside `valid`; the low byte, if `low_byte` is given, one of those values
    (and then bits 7:0 of `valid` are not consulted)."""
    units: list[Unit] = []
    first = 0
    if low_byte is not None:
        units.append(Unit(2, frozenset(low_byte)))
        first = 2
    for n in range(first, DIGITS):
        ok = valid >> (4 * n) & 0xF
        units.append(Unit(1, frozenset(d for d in range(16) if d & ~ok == 0)))
    return units_pattern(units)


def one_of(values: Iterable[int]) -> str:
    """One of `values` (with any leading zeros, up to 16 digits)."""
    by_len: dict[int, list[str]] = {}
    for v in sorted(set(values)):
        s = f"{v:x}"
        by_len.setdefault(len(s), []).append(s)
    if not by_len:
        raise ValueError("no values")
    alts = [_repeat("0", 0, DIGITS - n) + _trie(strs) for n, strs in sorted(by_len.items())]
    return "^0[xX]" + (alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")") + "$"


def _trie(strs: list[str]) -> str:
    """A regex matching exactly `strs` (equal lengths), sharing common prefixes."""
    if len(strs[0]) == 1:
        return digit_class(int(s, 16) for s in strs)
    groups: dict[str, list[str]] = {}
    for s in strs:
        groups.setdefault(s[0], []).append(s[1:])
    # first digits whose continuations are the same merge into one class
    merged: dict[tuple[str, ...], list[str]] = {}
    for d, rest in groups.items():
        merged.setdefault(tuple(rest), []).append(d)
    alts = [digit_class(int(d, 16) for d in ds) + _trie(list(rest)) for rest, ds in merged.items()]
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
