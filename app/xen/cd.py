"""Guest CR0.CD under Xen on VMX with EPT, and the effective type of a guest access.

Xen never folds CR0.CD into the EMT (epte_get_entry_emt() does not read it). Instead:

- vmx_update_guest_cr() (xen/arch/x86/hvm/vmx/vmx.c:1768 at RELEASE-4.22.0) loads
  GUEST_CR0 with the guest's CR0 OR'd with the bits Xen forces on (NE, and PE/PG without
  unrestricted guest, WP with shadow paging): the guest's CD (and NW) reach the hardware
  CR0, unlike KVM, which keeps them out (KVM_VM_CR0_ALWAYS_OFF). The SDM's rule for
  translated guest-physical accesses then gives UC while CR0.CD=1, whatever the EPT entry.
- hvm_set_cr0() (xen/arch/x86/hvm/hvm.c:2388) calls vmx_handle_cd() on a CD toggle only
  for a domain with an IOMMU that holds iomem, ioports or PCI devices. For EPT,
  vmx_handle_cd() (vmx.c:1477) on CD=1 saves the guest PAT, writes an all-UC PAT to
  GUEST_PAT, intercepts the PAT MSR, runs WBINVD, flushes the vCPU's ASID and sets
  cache_mode = NO_FILL; on CD=0 it restores the saved PAT, stops intercepting the PAT MSR
  only if the domain has no IOMMU or `iommu_snoop` is set, and flushes the ASID. While
  NO_FILL, vmx_set_guest_pat() refuses, so hvm_set_guest_pat() (hvm.c:333) only records a
  guest PAT write in pat_cr, to be loaded at CD=0.

The all-UC PAT makes IPAT-clear entries UC on its own; entries with IPAT set (forced WB,
grants, special pages, pinned types, read-only MMIO) ignore it and rely on the hardware
CR0.CD for UC.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..kvm.era import Step
from ..x86.ept import effective_type
from ..x86.guest import check_cr0, guest_pat_type
from ..x86.memtype import MemType
from ..x86.pat import Pat
from .emt import EmtResult
from .facts import Domain

ALL_UC_PAT = Pat((MemType.UC,) * 8)
"""The uc_pat vmx_handle_cd() loads: every entry UC."""
NORMAL = "normal"
NO_FILL = "no-fill"


def handle_cd_applies(d: Domain) -> bool:
    """hvm_set_cr0(): is_iommu_enabled(d) && (iomem || ioports || has_arch_pdevs(d))."""
    return d.iommu_enabled and (d.io_resources or d.pci_devices)


@dataclass(frozen=True, slots=True)
class CdView:
    """What the CPU uses for a vCPU: its hardware CR0.CD and the PAT in GUEST_PAT."""

    hw_cr0_cd: bool
    handle_cd: bool
    cache_mode: str
    vmcs_pat: Pat
    path: tuple[Step, ...]


def cd_view(d: Domain, cr0_cd: bool, guest_pat: Pat, cr0_nw: bool = False) -> CdView:
    """The state after the guest's last CR0 write (CD reached through a toggle)."""
    check_cr0(cr0_cd, cr0_nw)
    applies = handle_cd_applies(d)
    steps = [
        Step("hw_cr0", "vmx_update_guest_cr (vmx.c:1768)", "GUEST_CR0 = guest CR0 | forced bits",
             True, f"hardware CR0.CD={int(cr0_cd)}: the guest's own bit"),
        Step("handle_cd", "hvm_set_cr0 (hvm.c:2388)",
             "is_iommu_enabled(d) && (iomem || ioports || PCI devices)", applies,
             "vmx_handle_cd() runs on each CD toggle" if applies else ""),
    ]
    no_fill = applies and cr0_cd
    if applies:
        steps.append(Step(
            "uc_pat", "vmx_handle_cd (vmx.c:1477)", "CR0.CD=1", cr0_cd,
            "all-UC PAT in GUEST_PAT, guest PAT saved, WBINVD, no-fill" if cr0_cd else "",
        ))
    return CdView(cr0_cd, applies, NO_FILL if no_fill else NORMAL, ALL_UC_PAT if no_fill else guest_pat, tuple(steps))


def effective(emt: EmtResult, cd: CdView, pat_index: int, paging: bool = True) -> tuple[MemType | None, str]:
    """The effective type of a guest access through PAT entry `pat_index`, or None."""
    if emt.emt is None:
        return None, "EMT 7: the access exits (EPT misconfiguration) until resolve_misconfig() fixes the entry"
    if cd.hw_cr0_cd:
        return MemType.UC, "hardware CR0.CD=1: UC whatever the EPT entry (SDM, guest-physical accesses)"
    pat = guest_pat_type(cd.vmcs_pat[pat_index], paging)
    t = effective_type(emt.emt, emt.ipat, pat)
    if emt.ipat:
        return t, f"IPAT: EMT {emt.emt.label} alone"
    return t, f"EMT {emt.emt.label} x PAT {pat.label} = {t.label}"
