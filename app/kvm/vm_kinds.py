"""The names of the VM kinds issue 14 fixes: `vm.vendor` and `vm.type` (one definition).

`vm.vendor` picks the CPU vendor's KVM module (kvm_intel or kvm_amd); `vm.type` is the
KVM_CREATE_VM type, where "tdx" is KVM_X86_TDX_VM (5 in arch/x86/include/uapi/asm/kvm.h,
read in KT0511/linux-6.16.1 30b97c8a1), offered by kvm_intel only and only from 6.16
(vt_hardware_setup() in arch/x86/kvm/vmx/main.c sets it in supported_vm_types). The rules
that refuse a combination live in app.kvm.tdx (`check_vm_kind`).
"""

from __future__ import annotations

VENDOR_INTEL = "intel"
VENDOR_AMD = "amd"
VENDORS = (VENDOR_INTEL, VENDOR_AMD)
"""`vm.vendor` values; "intel" is the default."""

VM_TYPE_DEFAULT = "default"
VM_TYPE_TDX = "tdx"
VM_TYPES = (VM_TYPE_DEFAULT, VM_TYPE_TDX)
"""`vm.type` values; "default" is KVM_X86_DEFAULT_VM (0)."""


def is_vmx_default(vendor: str, vm_type: str) -> bool:
    """KVM on Intel with a default VM: what the eras model (vmx_get_mt_mask(), app.kvm.resolve);
    any other kind is answered by app.kvm.svm (AMD) or app.kvm.tdx (a TD)."""
    return vendor == VENDOR_INTEL and vm_type == VM_TYPE_DEFAULT
