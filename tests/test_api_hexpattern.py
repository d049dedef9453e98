"""The JSON schema's hex patterns say exactly what the core accepts (issue 11).

Each `pattern` in the OpenAPI document is built from app.x86's sets and masks
(app/api/hexpattern.py). For every hex string, the pattern matches it if and only if the
API accepts it as that register: the request parser reads 1-16 hex digits after 0x, and
the core's own check (Pat.from_msr, check_fixed, check_def_type, check_physbase and
check_physmask at MAXPHYADDR 52, Access.validate, is_mtrr_msr) passes. Checked over every
value below 0x2000 in several spellings, and over generated 64-bit values and strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.api import schemas as s
from app.api.hexpattern import byte_fields, digit_class, masked, one_of
from app.kvm.scenario import Access, VmConfig
from app.x86.memtype import MTRR_TYPES, PAT_TYPES
from app.x86.mtrr import check_def_type, check_fixed, check_physbase, check_physmask, is_mtrr_msr
from app.x86.pat import Pat

MAXPHYADDR = 52
VM52 = VmConfig(maxphyaddr=MAXPHYADDR)

CORE: dict[str, tuple[str, Callable[[int], object]]] = {
    "pat": (s.PAT_PATTERN, lambda v: Pat.from_msr(v)),
    "fixed": (s.FIXED_PATTERN, lambda v: check_fixed(v, "fixed")),
    "def_type": (s.DEF_TYPE_PATTERN, lambda v: check_def_type(v, "def_type")),
    "physbase": (s.PHYSBASE_PATTERN, lambda v: check_physbase(v, MAXPHYADDR, "base")),
    "physmask": (s.PHYSMASK_PATTERN, lambda v: check_physmask(v, MAXPHYADDR, "mask")),
    "gpa": (s.ADDR_PATTERN, lambda v: Access(gpa=v).validate(VM52)),
    "msr": (s.MSR_PATTERN, lambda v: None if is_mtrr_msr(v) else 1 / 0),
}


def regex(pattern: str) -> re.Pattern[str]:
    """JSON Schema's (ECMA-262) reading: `$` is the end of the string, never before a final
    newline as in Python."""
    assert pattern.startswith("^") and pattern.endswith("$")
    return re.compile(pattern[:-1] + r"\Z")


COMPILED = {name: regex(p) for name, (p, _) in CORE.items()}


def core_accepts(name: str, text: str) -> bool:
    try:
        value = s._parse_hex(text)
        CORE[name][1](value)
    except (ValueError, ZeroDivisionError):  # PydanticCustomError and MemTypeError are ValueErrors
        return False
    return True


def check(name: str, text: str) -> None:
    assert bool(COMPILED[name].match(text)) == core_accepts(name, text), (name, text, CORE[name][0])


def spellings(v: int) -> list[str]:
    h = f"{v:x}"
    return [f"0x{h}", f"0X{h.upper()}", f"0x{h:0>8}", f"0x{h:0>16}", f"0x{h:0>17}", f"0x0{h}"]


@pytest.mark.parametrize("name", list(CORE))
def test_every_small_value(name):
    for v in range(0x1000):
        for text in spellings(v):
            check(name, text)


def test_the_patterns_reject_what_the_parser_rejects():
    for name in CORE:
        for text in ("", "0x", "x6", "6", "0x6\n", " 0x6", "0x6 ", "0xg", "0x-6", "0x+6", "0x" + "0" * 17, "0x6_0"):
            check(name, text)


def _byte_values() -> st.SearchStrategy[int]:
    """64-bit values whose bytes are mostly PAT/MTRR types, with a reserved one now and then."""
    byte = st.sampled_from(sorted(PAT_TYPES | MTRR_TYPES)) | st.integers(0, 255)
    return st.lists(byte, min_size=8, max_size=8).map(lambda bs: sum(b << (8 * i) for i, b in enumerate(bs)))


def _masked_values() -> st.SearchStrategy[int]:
    """Values inside a register's valid bits, with or without one stray bit."""
    valid = st.sampled_from([0xCFF, ((1 << MAXPHYADDR) - 1) & ~0xFFF | 0x800, ((1 << MAXPHYADDR) - 1) & ~0xF00])
    stray = st.none() | st.integers(0, 63)
    return st.tuples(valid, st.integers(0, (1 << 64) - 1), stray, st.sampled_from(sorted(MTRR_TYPES | {2, 7, 0xFF}))) \
        .map(lambda t: (t[0] & t[1] & ~0xFF | t[3] | (1 << t[2] if t[2] is not None else 0)) & ((1 << 64) - 1))


VALUES = st.integers(0, (1 << 64) - 1) | _byte_values() | _masked_values() | st.integers(0x200, 0x2FF)


def _spell(v: int, width: int, case: list[bool]) -> str:
    h = f"{v:x}".rjust(width, "0")
    return "0x" + "".join(c.upper() if up else c for c, up in zip(h, case + [False] * len(h), strict=False))


@settings(max_examples=1500, deadline=None)
@given(VALUES, st.integers(1, 18), st.lists(st.booleans(), max_size=18))
def test_generated_values(v, width, case):
    text = _spell(v, width, case)
    for name in CORE:
        check(name, text)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEFxXg\n ", max_size=20))
def test_generated_strings(text):
    for name in CORE:
        check(name, text)
        check(name, "0x" + text)


def test_builders_on_their_own():
    assert digit_class(range(16)) == "[0-9a-fA-F]" and digit_class([0, 4, 8, 12]) == "[048cC]"
    assert digit_class([0]) == "0" and digit_class([10]) == "[aA]" and digit_class([0, 1, 4, 5, 6, 7]) == "[014-7]"
    assert byte_fields(PAT_TYPES) == s.PAT_PATTERN == "^0[xX]0?[014-7](?:0[014-7]){0,7}$"
    assert masked(0) == "^0[xX]0{1,16}$"
    assert one_of([0x2FF]) == "^0[xX]0{0,13}2[fF][fF]$"
    r = regex(one_of([0, 5, 0x10, 0xABC]))
    assert [t for t in ("0x0", "0x5", "0x005", "0x10", "0xAbc", "0x0abc", "0x1", "0x15", "0x50") if r.match(t)] == \
        ["0x0", "0x5", "0x005", "0x10", "0xAbc", "0x0abc"]
    assert sorted(m for m in range(0x1000) if is_mtrr_msr(m)) == s.MTRR_MSRS
