"""The Intel rules: memory types, IA32_PAT, guest MTRRs, EPT entries. Pure, no I/O.

The SDM's rules only; what KVM does with them is in app.kvm (its vMTRR: app/kvm/mtrr.py).
"""

from .ept import COMBINE, EptLeaf, combine, effective_type, mt_mask
from .guest import Expectation, check_cr0, expectation, guest_pat_type
from .memtype import MemType, MemTypeError, relation
from .mtrr import MtrrState, VarMtrr, sdm_lookup
from .pat import PAT_PRESETS, Pat, pat_index, pte_bits_to_index

__all__ = [
    "COMBINE", "EptLeaf", "Expectation", "MemType", "MemTypeError", "MtrrState", "PAT_PRESETS",
    "Pat", "VarMtrr", "check_cr0", "combine", "effective_type", "expectation", "guest_pat_type",
    "mt_mask", "pat_index", "pte_bits_to_index",
    "relation", "sdm_lookup",
]
