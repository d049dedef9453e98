"""One Xen scenario in, everything about one p2m entry out (the counterpart of
app/kvm/resolve.py's `resolve`, for wiring into the API, the page and the CLI).

The EMT and IPAT epte_get_entry_emt() gives the entry, its decision path, the EPT leaf,
the vCPU's CR0.CD handling, and for each of the 8 PAT entries the effective type next to
what the guest expects on bare metal (app/x86 guest.expectation over the SDM lookup).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..kvm.resolve import PatRow
from ..kvm.scenario import VcpuState, VmConfig
from ..x86.ept import ACCESSED_BIT, PAGE_SIZE_BIT, EptLeaf
from ..x86.guest import expectation, guest_pat_type
from ..x86.memtype import MemTypeError, relation, relation_reason
from ..x86.mtrr import Lookup, sdm_lookup
from ..x86.pat import index_to_pte_bits, pte_flags_text
from .cd import CdView, cd_view, effective
from .emt import EmtResult, entry_emt
from .facts import ORDERS, Domain, Page
from .mtrr import XenLookup, xen_mtrr_type
from .versions import XenVersion

LEVEL_OF_ORDER = {0: 1, 9: 2, 18: 3}


@dataclass(frozen=True, slots=True)
class XenResolution:
    version: XenVersion
    domain: Domain
    page: Page
    emt: EmtResult
    cd: CdView
    guest_mtrr: Lookup
    """The SDM's lookup of the gfn in the vCPU's MTRRs: what the guest expects."""
    xen_mtrr: XenLookup | None
    """Xen's mtrr_get_type() of the same (at the entry's order); None without a vCPU."""
    mtrr_finding: str | None
    pat_rows: tuple[PatRow, ...]
    """Empty when the entry holds EMT 7: no access completes until it is recomputed."""
    leaf: EptLeaf

    @property
    def mask(self) -> int:
        return self.emt.mask


def leaf_for(page: Page, emt: EmtResult) -> EptLeaf:
    """The leaf ept_set_entry() writes (RWX for RAM, A set; EMT 7 for a -1 answer)."""
    level = LEVEL_OF_ORDER[page.order]
    raw = (page.mfn << 12) | 0x7 | emt.mask | ACCESSED_BIT | (PAGE_SIZE_BIT if level > 1 else 0)
    return EptLeaf.decode(raw, level)


def _finding(sdm: Lookup, xen: XenLookup | None, order: int) -> str | None:
    if xen is None or xen.type == sdm.type:
        return None
    s = sdm.type.label if sdm.type is not None else "undefined"
    x = "-1 (split)" if xen.type is None else xen.type.label
    at = f" for the whole {ORDERS[order]} page" if order else ""
    return f"SDM says {s} ({sdm.reason}); Xen uses {x}{at} ({xen.reason})"


XEN_VM_RULE = ("of the VM's settings Xen reads only MAXPHYADDR and the memory map; "
               "a domain's facts are given as Xen facts")
"""The rule of the refusal of kvm_settings_given, one wording for the API (`vm.maxphyaddr`,
`memory_map`, domain facts in `xen`) and the CLI (--maxphyaddr, --map, the --xen-* options)."""


XEN_VM_FIELDS = ("maxphyaddr", "memory_map")
"""The VmConfig members Xen reads (kvm_settings_given); every other member is a KVM setting."""


def check_no_kvm_settings(vm: VmConfig, field: str = "vm") -> None:
    """Refuse a VmConfig with KVM settings for a Xen kernel (kvm_settings_given), at `field`
    (the API's `vm`, the CLI's `kernel`)."""
    if kvm_settings_given(vm):
        raise MemTypeError(field, "KVM settings given with a Xen kernel", XEN_VM_RULE)


def kvm_settings_given(vm: VmConfig) -> bool:
    """Xen reads two members of a VmConfig: MAXPHYADDR and the memory map (the p2m's ranges).
    Any other (vendor, VM type, the KVM quirks, nc-DMA, self-snoop) is a KVM setting, refused
    with a Xen kernel rather than ignored (check_no_kvm_settings: the API at `vm`, the CLI at
    `kernel`)."""
    return vm != VmConfig(**{f: getattr(vm, f) for f in XEN_VM_FIELDS})


def resolve_xen(v: XenVersion, d: Domain, page: Page, vcpu: VcpuState, maxphyaddr: int = 46) -> XenResolution:
    """Validate the scenario (MemTypeError names the field and rule), then resolve it."""
    d.validate(v)
    page.validate()
    vcpu.validate(VmConfig(maxphyaddr=maxphyaddr))
    gpa = page.gfn << 12
    if gpa >> maxphyaddr:
        raise MemTypeError(("page", "gfn"), f"gfn {page.gfn:#x} is at or above 2^MAXPHYADDR",
                           f"guest-physical addresses are below 2^{maxphyaddr}")
    guest = vcpu.mtrr if d.has_vcpu else None
    emt = entry_emt(d, page, guest, v)
    cd = cd_view(d, vcpu.cr0_cd, vcpu.pat, vcpu.cr0_nw)
    sdm = sdm_lookup(vcpu.mtrr, gpa, maxphyaddr)
    xen = xen_mtrr_type(guest, gpa, page.order) if guest is not None else None
    rows: list[PatRow] = []
    if emt.emt is not None:
        for i, pat in enumerate(vcpu.pat.entries):
            used = guest_pat_type(cd.vmcs_pat[i], vcpu.cr0_pg)
            eff, _ = effective(emt, cd, i, vcpu.cr0_pg)
            assert eff is not None
            exp = expectation(sdm, pat, cd=vcpu.cr0_cd, nw=vcpu.cr0_nw, paging=vcpu.cr0_pg)
            if exp.type is None:
                rel, why = "incomparable", "the guest's own MTRR type is undefined, so it expects nothing definite"
            else:
                rel, why = relation(eff, exp.type), relation_reason(eff, exp.type)
            rows.append(PatRow(i, index_to_pte_bits(i), pte_flags_text(i), pat, used, eff, exp.type, exp.reason,
                               rel, why))
    return XenResolution(v, d, page, emt, cd, sdm, xen, _finding(sdm, xen, page.order), tuple(rows),
                         leaf_for(page, emt))
