"""Xen's EPT memory types (epte_get_entry_emt) and its lazy EMT-7 invalidation. Pure, no I/O.

Sources: xen-project/xen at RELEASE-4.22.0 (d45d5687f144) and RELEASE-4.19.0
(026c9fa29716); see docs/systems/xen.md.
"""

from .cd import CdView, cd_view, effective, handle_cd_applies
from .emt import EmtResult, entry_emt
from .events import EventAnswer, Passthrough, event_answer, memory_type_changed
from .facts import Coverage, Domain, P2mType, Page, PinnedRange, XenFacts, coverage
from .mtrr import combine, xen_mtrr_type
from .versions import NEWEST, SYSTEM_ID, XEN_VERSIONS, XenVersion, get_version

__all__ = [
    "NEWEST", "SYSTEM_ID", "XEN_VERSIONS", "CdView", "Coverage", "Domain", "EmtResult", "EventAnswer",
    "P2mType", "Page", "Passthrough", "PinnedRange", "XenFacts", "XenVersion", "cd_view", "combine", "coverage",
    "effective", "entry_emt", "event_answer", "get_version", "handle_cd_applies", "memory_type_changed",
    "xen_mtrr_type",
]
