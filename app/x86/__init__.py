"""The Intel rules: memory types, IA32_PAT, guest MTRRs, EPT entries. Pure, no I/O."""

from .ept import COMBINE, EptLeaf, combine, effective_type, mt_mask
from .guest import Expectation, check_cr0, expectation, guest_pat_type
from .memtype import MemType, MemTypeError, relation
from .mtrr import MtrrState, VarMtrr, kvm_lookup, kvm_range_consistent, sdm_lookup
from .pat import PAT_PRESETS, Pat, pat_index, pte_bits_to_index

__all__ = [
    "COMBINE", "EptLeaf", "Expectation", "MemType", "MemTypeError", "MtrrState", "PAT_PRESETS",
    "Pat", "VarMtrr", "check_cr0", "combine", "effective_type", "expectation", "guest_pat_type",
    "kvm_lookup", "kvm_range_consistent", "mt_mask", "pat_index", "pte_bits_to_index",
    "relation", "sdm_lookup",
]
