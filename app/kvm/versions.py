"""Kernel version strings -> era id, version-exact traits, why and notes (pure, no I/O).

Why: users name kernels ("6.12.78", "6.8.0-45-generic"), not eras. The era boundaries follow
docs/notes/kernel-history.md §1 and the `kernels` ranges in app/kvm/v*.py. Distribution
kernels map by their upstream base version; vendors may carry more backports than BACKPORTS lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..x86.memtype import LocLike, MemTypeError
from .eras import ERAS


@dataclass(frozen=True)
class Backport:
    """One stable backport that moves a stable series into a later era's behaviour."""

    series: tuple[int, int]
    first: int  # first stable sublevel carrying it
    era: str
    commit: str
    what: str
    citation: str


# One row per backport; adding one is one line.
BACKPORTS: tuple[Backport, ...] = (
    Backport(series=(6, 12), first=78, era="v6.16", commit="c9c1e20b4c7d",
             what="KVM_X86_QUIRK_IGNORE_GUEST_PAT (the quirk can be disabled on self-snoop CPUs)",
             citation="confirmed as a public report via the search tool: dosemu2/dosemu2 PR 2813 (comment "
                      "by bartoldeman, 2026-04-01: quirk disableable on 6.16+ or 6.12.78, backported) and PR 2815 "
                      "(description: 'possible since kernel 6.16+ and backported in 6.12.78'; disabling the quirk "
                      "avoided an MCE on the /dev/mem VGA window). Not confirmed in a stable changelog or a "
                      "6.12.78 tree: the first release 78 rests on that report"),
)

MTRR_CPUID_TEST = (4, 4)
"""First series whose arch/x86/kvm/mtrr.c mtrr_disabled_type() tests the guest's MTRR CPUID bit
(WB without it): absent in 4.2.8 (mlpzaq9998/linux-4.2) and 4.3 (YoungjaeLee/linux-4.3-cxlbdev),
present in 4.4.0 (xiaojimmychen/linux-4.4) and 4.10.17; 4.15 only renamed the CPUID helper
(guest_cpuid_has_mtrr -> guest_cpuid_has(X86_FEATURE_MTRR)). Commit id not confirmed."""

NEWEST = (6, 19)
OLDEST = (4, 2)

VERSION_PATTERN = r"^([0-9]+)\.([0-9]+)(?:\.([0-9]+))?(?:-rc([0-9]+))?([-.+~][A-Za-z0-9._+~-]*)?$"
"""A kernel version as `uname -r` prints it: major.minor[.sublevel][-rcN][distribution suffix].
Also the JSON-schema pattern of the API's kernel fields (one definition)."""
_VERSION = re.compile(VERSION_PATTERN)


@dataclass(frozen=True)
class KernelInfo:
    asked: str
    era: str
    version: str | None  # upstream base version, None when an era id was given
    why: str
    notes: tuple[str, ...]
    mtrr_huge_page_check_every_fault: bool | None  # None: the era decides (not a 4.2-6.6 version)
    series: tuple[int, int] | None = None  # (major, minor) of a version; None for an era id

    def as_dict(self) -> dict:
        return {"asked": self.asked, "era": self.era, "version": self.version, "why": self.why,
                "notes": list(self.notes)}


def _era_for(mm: tuple[int, int], rc: int | None) -> str:
    if mm <= (6, 6):
        return "v4.2"
    if mm <= (6, 10):
        return "v6.7"
    if mm == (6, 11) and rc is not None:
        return "v6.11-rc1"
    if mm <= (6, 15):
        return "v6.11"
    return "v6.16"


def resolve_kernel(asked: str, field: LocLike = "kernel") -> KernelInfo:
    """An era id passes through unchanged; otherwise parse a version string (422 via MemTypeError)."""
    if asked in ERAS:
        return KernelInfo(asked=asked, era=asked, version=None, why=f"era id {asked}", notes=(),
                          mtrr_huge_page_check_every_fault=None)
    m = _VERSION.match(asked.strip()) if isinstance(asked, str) else None
    if not m:
        raise MemTypeError(field, f"unknown kernel era {asked!r} (neither an era id nor a kernel version)",
                           f"an era id ({', '.join(ERAS)}) or a version like 6.12.78, 6.11-rc3, 6.8.0-45-generic")
    major, minor = int(m[1]), int(m[2])
    sub = int(m[3]) if m[3] is not None else None
    rc = int(m[4]) if m[4] is not None else None
    suffix = m[5]
    mm = (major, minor)
    if mm < OLDEST or mm > NEWEST:
        raise MemTypeError(field, f"kernel {asked!r} is outside the modelled versions",
                           f"{OLDEST[0]}.{OLDEST[1]} to {NEWEST[0]}.{NEWEST[1]}")
    if rc is not None and (sub is not None or rc < 1):
        raise MemTypeError(field, f"kernel {asked!r}: an -rcN version has no sublevel and N >= 1",
                           "like 6.11-rc3")
    version = f"{major}.{minor}" + (f".{sub}" if sub is not None else "") + (f"-rc{rc}" if rc is not None else "")
    era = _era_for(mm, rc)
    why = f"{version} is in era {era} ({ERAS[era].kernels})"
    notes: list[str] = []
    if suffix:
        notes.append(f"distribution suffix {suffix!r} ignored: mapped by upstream base {version}; "
                     "vendor kernels may carry more backports than modelled")
    for b in BACKPORTS:
        if mm == b.series and rc is None and sub is not None and sub >= b.first:
            era = b.era
            why = f"{version} carries the stable backport of {b.commit} ({b.what}), first in " \
                  f"{b.series[0]}.{b.series[1]}.{b.first}; behaves as era {era}"
            notes.append(f"backport {b.commit}: {b.citation}")
        elif mm == b.series and rc is None:
            notes.append(f"{version} predates the stable backport of {b.commit} (first in "
                         f"{b.series[0]}.{b.series[1]}.{b.first}): the quirk cannot be turned off")
    huge = None
    if era == "v4.2":
        huge = mm <= (5, 19)
        notes.append("MTRR huge-page check on every TDP fault (kvm_tdp_page_fault, up to 5.19)" if huge
                     else "MTRR huge-page check only with non-coherent DMA (from 6.0-rc1, commit "
                          "'Restrict mapping level based on guest MTRR iff they're used')")
    if mm < MTRR_CPUID_TEST:
        notes.append("mtrr_disabled_type(): MTRRs disabled read as UC regardless of guest CPUID (CPUID test from 4.4)")
    elif mm <= (6, 10):
        notes.append("mtrr_disabled_type(): MTRRs disabled read as UC with MTRR CPUID, else WB (from 4.4)")
    if mm <= (6, 4):
        notes.append("guest PAT writes go through kvm_mtrr_set_msr() to update_mtrr(), which returns at once "
                     "for MSR_IA32_CR_PAT: no zap (arch/x86/kvm/mtrr.c, read in 6.4.6; until 6.4)")
    elif mm <= (6, 6):
        notes.append("guest PAT writes are stored by kvm_set_msr_common() without update_mtrr() (from 6.5, read "
                     "in 6.5.0): still no zap")
    notes.append("guest PAT reset to its default at vCPU RESET (kvm_vcpu_reset, read in 6.16.1; first release "
                 "6.12 per the research notes, not confirmed in a tree)" if mm >= (6, 12)
                 else "guest PAT set to its default only at vCPU creation (kvm_arch_vcpu_create, read in 6.8; "
                      "before 6.12)")
    return KernelInfo(asked=asked, era=era, version=version, why=why, notes=tuple(notes),
                      mtrr_huge_page_check_every_fault=huge, series=mm)
