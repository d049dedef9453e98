"""Cross-system diff: a KVM era (Intel, EPT), KVM on AMD (NPT) and Xen (EPT) compared over
the states where they overlap, with the weaker/stronger relation (issue 14).

The era diff (app/analysis.py) enumerates what vmx_get_mt_mask() sees: 1920 states. Two
different systems read different inputs, so the space here is the *joint* one: every
dimension that either side reads (DIMENSIONS), each with its finite values. A state fixes
all of them; a system answers from the dimensions it reads and is, by construction, the
same along the others. So a row says: "in a guest where these facts hold, A gives X and B
gives Y". Which dimension each system reads, has without reading, or lacks is STATUS;
how one dimension stands for the same fact in both systems is MAPPING.

Per state, each side gives its entry and the effective type of the access:

- kvm-intel (an era): the era's vmx_get_mt_mask() for the state's Fault, then the SDM's
  EPT x PAT table (app.x86.ept.effective_type), exactly as app.analysis does.
- kvm-amd (a kernel version, 4.14 and later): app.kvm.svm: the NPT leaf selects host PAT
  entry 0 of the host PAT and the host MTRR applies (SvmHost: the request's `amd` facts, by
  default a Linux host PAT, entry 0 WB, and host MTRR WB for RAM, UC for MMIO, as resolve
  and map take them; one host for both sides; a host MTRR given for every frame makes
  is_mmio `not read`), the guest side is g_pat = the guest's PAT (4.14+), and the
  hardware CR0.CD is the guest's unless KVM_X86_QUIRK_CD_NW_CLEARED (svm_set_cr0). Before
  4.14 guest PAT writes never reach g_pat, so the state's PAT type is not what the CPU
  uses: refused (the refusal names the rule).
- kvm-tdx (a kernel version, 6.16 and later; `vm.type` tdx; read in KT0511/linux-6.16.1
  30b97c8a1 and matankalina/linux-6.19.10-fork 483059de9): app.kvm.tdx.tdx_mt_mask for a
  shared GPA: main.c wires `.get_mt_mask = vmx_get_mt_mask` in vt_x86_ops for VMX and TDX
  alike, and tdx_vm_init() (vmx/tdx.c) ORs KVM_X86_QUIRK_IGNORE_GUEST_PAT into
  disabled_quirks, so vmx_ignore_guest_pat() is false: host MMIO UC, RAM WB without IPAT,
  guest PAT decides (the v6.16 rules with the quirk off, not restated here). The TDX module
  fixes CR0.CD to 0 (status `fixed`: a state with CR0.CD=1 is skipped with the rule); the
  quirks, nc-DMA and self-snoop are not read (the quirk is off whatever the VMM asks, as for
  AMD). A private GPA (Secure EPT) gives the same answer as shared RAM in the model
  (tdx_sept_set_private_spte() passes no memtype; the module's is not in the sources) and
  is never host MMIO (TDG.VP.VMCALL<MMIO> takes shared GPAs only: tdx_emulate_mmio()), so
  it adds no dimension. The refusals (AMD, a kernel before 6.16) are check_vm_kind's.
- xen (a release line): app.xen.emt.entry_emt (epte_get_entry_emt, p2m-ept.c) for a 4K
  p2m_ram_rw or p2m_mmio_direct entry (is_mmio) in a domain with or without an IOMMU and
  I/O resources, the host MTRR as for AMD, the guest MTRRs holding the state's type
  everywhere; then app.xen.cd.effective: hardware CR0.CD=1 gives UC, vmx_handle_cd's
  all-UC PAT in an IOMMU domain with I/O.

The guest's expectation is the same for every system (app.analysis.State.expected: the
SDM's MTRR x PAT, UC with CR0.CD=1), so relation_a/relation_b compare each side with the
same bare-metal answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import product

from .analysis import ANY, BOOLS, MTRR_VALUES, PAT_VALUES, group_outcomes
from .kvm.era import Era, Fault
from .kvm.eras import get_era
from .kvm.scenario import MMIO, RAM, VmConfig
from .kvm.svm import (
    DEFAULT_HOST,
    GPAT_OBEYED_FROM,
    HOST_MTRR_DEFAULT,
    SvmHost,
    SvmKernel,
    check_svm_vm,
    combine_guest_host,
    hardware_cr0,
    host_type,
    svm_kernel,
)
from .kvm.tdx import RULE_CR0_CD, check_vm_kind, check_vm_names, tdx_mt_mask
from .kvm.vm_kinds import VENDOR_AMD, VENDOR_INTEL, VM_TYPE_DEFAULT, VM_TYPE_TDX, is_vmx_default
from .x86.ept import effective_type, notation
from .x86.guest import expectation
from .x86.memtype import SAME, MemType, MemTypeError, relation
from .x86.mtrr import DEF_TYPE_E, Lookup, MtrrState
from .x86.npt import NptEntry
from .x86.pat import Pat
from .xen.cd import cd_view, effective
from .xen.emt import entry_emt
from .xen.facts import P2mType, XenFacts
from .xen.versions import XenVersion, get_version, is_xen

KVM_INTEL, KVM_AMD, KVM_TDX, XEN = "kvm-intel", "kvm-amd", "kvm-tdx", "xen"
READ, NOT_READ, ABSENT, FIXED = "read", "not read", "absent", "fixed"
STATUS_TEXT = {READ: "the answer depends on it", NOT_READ: "the system has it, its memory type does not",
               ABSENT: "the system has no such thing",
               FIXED: "the system allows one value, states with another are skipped"}
"""What each status says, for every reader of the diff (the API's schema, the text answer's
legend, the page's legend): written once here."""

DIMENSIONS: tuple[tuple[str, tuple], ...] = (
    *((k, (False, True)) for k in BOOLS),
    ("guest_mtrr", tuple(t.label for t in MTRR_VALUES)),
    ("pat", tuple(t.label for t in PAT_VALUES)),
    ("xen_iommu", (False, True)),
    ("xen_io", (False, True)),
)
"""Every dimension of the joint space, in key order (the era diff's eight, then Xen's two)."""

XEN_FACTS = {"xen_iommu": "iommu", "xen_io": "io_resources"}
"""Xen's dimensions as the Xen facts that state them (XenFacts members, the API's `xen`
members): answer() builds the Domain from them."""
XEN_P2M = {False: P2mType.RAM, True: P2mType.MMIO_DIRECT}
"""is_mmio under Xen: the p2m type of the entry (p2m_ram_rw or p2m_mmio_direct); Xen's
MMIO is the p2m type, not a host-page fact as KVM's kvm_is_mmio_pfn()."""

MEANING = {
    "is_mmio": "the page is host MMIO",
    "noncoherent_dma": "a device doing non-coherent DMA is assigned (kvm_arch_has_noncoherent_dma)",
    "cr0_cd": "guest CR0.CD",
    "quirk_cd_nw_cleared": "KVM_X86_QUIRK_CD_NW_CLEARED on",
    "quirk_ignore_guest_pat": "KVM_X86_QUIRK_IGNORE_GUEST_PAT on (exists from 6.16)",
    "self_snoop": "the host CPU has self-snoop",
    "guest_mtrr": "the guest MTRRs' one type at the page",
    "pat": "the PAT type the access's PTE selects",
    "xen_iommu": "Xen: is_iommu_enabled(d)",
    "xen_io": "Xen: the domain holds iomem/ioport ranges (with an IOMMU also: PCI devices)",
}

STATUS: dict[str, dict[str, str]] = {
    KVM_INTEL: {**{k: READ for k, _ in DIMENSIONS[:8]}, "xen_iommu": ABSENT, "xen_io": ABSENT},
    KVM_AMD: {"is_mmio": READ, "noncoherent_dma": NOT_READ, "cr0_cd": READ, "quirk_cd_nw_cleared": READ,
              "quirk_ignore_guest_pat": NOT_READ, "self_snoop": NOT_READ, "guest_mtrr": READ, "pat": READ,
              "xen_iommu": ABSENT, "xen_io": ABSENT},
    KVM_TDX: {"is_mmio": READ, "noncoherent_dma": NOT_READ, "cr0_cd": FIXED, "quirk_cd_nw_cleared": NOT_READ,
              "quirk_ignore_guest_pat": NOT_READ, "self_snoop": NOT_READ, "guest_mtrr": READ, "pat": READ,
              "xen_iommu": ABSENT, "xen_io": ABSENT},
    XEN: {"is_mmio": READ, "noncoherent_dma": ABSENT, "cr0_cd": READ, "quirk_cd_nw_cleared": ABSENT,
          "quirk_ignore_guest_pat": ABSENT, "self_snoop": NOT_READ, "guest_mtrr": READ, "pat": READ,
          "xen_iommu": READ, "xen_io": READ},
}
"""Per system and dimension: read (the answer depends on it), not read (the system has the
fact but its memory type never depends on it), absent (the system has no such thing), fixed
(the system allows one value, FIXED_VALUE: states with another are skipped). The
guest MTRRs are read by every system for the guest's expectation, even where the memory
type ignores them (KVM from 6.11, AMD and TDs always)."""

FIXED_VALUE: dict[tuple[str, str], object] = {(KVM_TDX, "cr0_cd"): False}
"""The one value of a `fixed` dimension (equal to DEFAULTS', so a space without the
dimension holds it)."""
FIXED_WHY = {(KVM_TDX, "cr0_cd"): RULE_CR0_CD}
"""Why a state with another value is skipped: the core's rule (app.kvm.tdx)."""

WHY_NOT_READ = {
    (KVM_AMD, "noncoherent_dma"): "NPT has no memtype bits: nc-DMA only gates zaps (app.kvm.svm)",
    (KVM_AMD, "quirk_ignore_guest_pat"): "inapplicable on AMD, disabled at VM creation; turning it off is refused "
                                         "before 6.16 (KVM_CAP_DISABLE_QUIRKS2)",
    (KVM_AMD, "self_snoop"): "nothing in SVM or the NPT path reads X86_FEATURE_SELFSNOOP",
    (XEN, "self_snoop"): "only memory_type_changed()'s cache flush reads it (4.21), not epte_get_entry_emt()",
    (XEN, "noncoherent_dma"): "no such count: epte_get_entry_emt() asks about an IOMMU and I/O access instead "
                              "(xen_iommu, xen_io)",
    (XEN, "quirk_cd_nw_cleared"): "a KVM quirk: Xen always loads the guest's CR0.CD (vmx_update_guest_cr)",
    (XEN, "quirk_ignore_guest_pat"): "a KVM quirk: Xen sets IPAT by its own tests",
    (KVM_TDX, "noncoherent_dma"): "with IGNORE_GUEST_PAT off vmx_ignore_guest_pat() is false whatever "
                                  "kvm_arch_has_noncoherent_dma() says (vmx.c)",
    (KVM_TDX, "quirk_cd_nw_cleared"): "inapplicable on Intel since 6.16; a TD's CR0 is the TDX module's",
    (KVM_TDX, "quirk_ignore_guest_pat"): "tdx_vm_init() ORs it into disabled_quirks whatever the VMM asks "
                                         "(quirks can only be disabled): the answer is the one with it off",
    (KVM_TDX, "self_snoop"): "tdx_vm_init() disables IGNORE_GUEST_PAT without the self-snoop check",
    (KVM_TDX, "xen_iommu"): "Xen's domain fact",
    (KVM_TDX, "xen_io"): "Xen's domain fact",
    (KVM_INTEL, "xen_iommu"): "Xen's domain fact; KVM's EPT memtype never asks whether an IOMMU is in use",
    (KVM_INTEL, "xen_io"): "Xen's domain fact; KVM's closest input is noncoherent_dma",
    (KVM_AMD, "xen_iommu"): "Xen's domain fact",
    (KVM_AMD, "xen_io"): "Xen's domain fact",
}
"""Why a system does not read a dimension it has (not read) or lacks (absent): one line per
such STATUS entry, and none for a dimension it reads (mapping() never asks for those; a
read-only-for-the-expectation dimension such as AMD's and a TD's guest MTRRs is `read`, its
story is MAPPING's)."""

MAPPING = {
    "is_mmio": {KVM_INTEL: "kvm_is_mmio_pfn() of the host frame", KVM_AMD: "the host MTRR is UC (RAM: WB; assumed)",
                KVM_TDX: "kvm_is_mmio_pfn() of the host frame behind a shared GPA (vmx_get_mt_mask via "
                         "vt_x86_ops, main.c); never private",
                XEN: "the gfn is p2m_mmio_direct (else p2m_ram_rw); host MTRR UC (RAM: WB; assumed)"},
    "cr0_cd": {KVM_INTEL: "the era's rules read it; VMX keeps CD out of the hardware CR0",
               KVM_AMD: "loaded into the hardware CR0 unless CD_NW_CLEARED (svm_set_cr0)",
               KVM_TDX: "fixed to 0 by the TDX module (CR0.CD=1 raises #VE); KVM cannot see a TD's CR0",
               XEN: "always loaded (vmx_update_guest_cr); vmx_handle_cd's all-UC PAT with xen_iommu and xen_io"},
    "guest_mtrr": {KVM_INTEL: "KVM's lookup (read before 6.11)", KVM_AMD: "stored only",
                   KVM_TDX: "stored only (MTRRdefType fixed enabled/WB by the TDX module)",
                   XEN: "mtrr_get_type() of the guest's MTRRs (vCPU 0)"},
    "pat": {KVM_INTEL: "the guest's PAT entry (the VMCS GUEST_PAT)",
            KVM_AMD: "the VMCB g_pat entry (= the guest's, 4.14+)",
            KVM_TDX: "the TD's own PAT entry (the TDX module's state; no IPAT, so it decides)",
            XEN: "GUEST_PAT (all UC while vmx_handle_cd's no-fill mode is on)"},
}

NOT_COMPARED = {
    XEN: ("Xen p2m types without a KVM counterpart: grant_map_rw/ro, map_foreign; mmio_ro_ranges, special pages "
          "and pinned cache attributes (per-frame facts: POST /api/v1/resolve); superpages (-1 answers); "
          "domains with no vCPU"),
    KVM_AMD: "AMD before 4.14 (guest PAT writes do not reach g_pat); a host PAT other than Linux's; host MTRRs "
             "other than WB for RAM and UC for MMIO",
    KVM_INTEL: "host page classes beyond is_mmio (POST /api/v1/resolve with host_page)",
    KVM_TDX: "a TD's private GPAs apart (modelled like shared RAM: the Secure EPT memtype is the TDX module's, "
             "not in the sources read); emulated MMIO without a memslot (a #VE and TDG.VP.VMCALL<MMIO>, no "
             "memory type); TDX before 6.16 or on AMD (refused)",
}

NOT_COMPARED_AMD_GIVEN = ("AMD before 4.14 (guest PAT writes do not reach g_pat); host PAT or MTRR values other "
                          "than the `amd` facts given")

PRIVATE_NOTE = ("private GPA (TD): the Secure EPT entry's memtype is the TDX module's "
                "(tdx_sept_set_private_spte passes none); modelled as WB without IPAT like shared RAM, so the "
                "answer is the same; host MMIO is only ever shared")
"""The mapping line of a TD side: why private vs shared adds no dimension."""


@dataclass(frozen=True, slots=True)
class Side:
    """One side of the diff: a system and the kernel or release it is asked about."""

    system: str
    asked: str
    label: str
    era: Era | None = None
    svm: SvmKernel | None = None
    xen: XenVersion | None = None
    host: SvmHost | None = None
    """kvm-amd: the host side (SvmHost: the question's host PAT and MTRR, or the defaults)."""

    @property
    def id(self) -> str:
        """A cache key: the system and what decides its rules."""
        if self.era is not None:  # kvm-intel or kvm-tdx: the system is part of the key
            return f"{self.system}:{self.era.id}"
        if self.svm is not None:
            h = self.host
            host = "" if h is None or h.is_default else f":{h.host_pat:#x}:{h.host_mtrr}"
            return f"{self.system}:{self.svm.series[0]}.{self.svm.series[1]}:{self.svm.era}{host}"
        assert self.xen is not None
        return f"{self.system}:{self.xen.id}"

    @property
    def host_mtrr_given(self) -> bool:
        return self.host is not None and self.host.host_mtrr is not None

    def status(self, k: str) -> str:
        """STATUS for this side: an AMD host MTRR given for every frame leaves is_mmio unread."""
        if k == "is_mmio" and self.host_mtrr_given:
            return NOT_READ
        return STATUS[self.system][k]

    def why_not_read(self, k: str) -> str:
        if k == "is_mmio" and self.host_mtrr_given:
            return "amd.host_mtrr gives one host MTRR type for RAM and MMIO frames alike"
        return WHY_NOT_READ.get((self.system, k), "")

    def mapping(self, k: str) -> str:
        if k == "is_mmio" and self.host is not None and self.host.host_mtrr is not None:
            return f"the host MTRR is {self.host.host_mtrr} for every frame (amd.host_mtrr)"
        return MAPPING[k][self.system]

    def reads(self) -> tuple[str, ...]:
        return tuple(k for k, _ in DIMENSIONS if self.status(k) == READ)


def side(asked: str, vendor: str = VENDOR_INTEL, field: str = "a", vm_type: str = VM_TYPE_DEFAULT,
         host: SvmHost = DEFAULT_HOST) -> Side:
    """`asked` an era id, a kernel version or a Xen id; `vendor` intel or amd and `vm_type`
    default or tdx (KVM only), refused at `<field>_vendor` / `<field>_type`; `host` the AMD
    host side (an AMD side only: the caller refuses it for the others)."""
    vfield, tfield = f"{field}_vendor", f"{field}_type"
    check_vm_names(vendor, vm_type, vfield, tfield)
    if is_xen(asked):
        if vendor != VENDOR_INTEL:
            raise MemTypeError(vfield, f"{vendor} given with {asked!r}",
                               "Xen is modelled on VT-x with EPT: the vendor applies to KVM kernels only")
        if vm_type != VM_TYPE_DEFAULT:
            raise MemTypeError(tfield, f"{vm_type} given with {asked!r}",
                               "the VM type is KVM_CREATE_VM's (KVM_X86_TDX_VM): it applies to KVM kernels only")
        v = get_version(asked, field)
        return Side(XEN, asked, v.title, xen=v)
    check_vm_kind(vendor, vm_type, asked, field, vendor_loc=vfield, type_loc=tfield)
    if vm_type == VM_TYPE_TDX:
        era = get_era(asked, field)
        return Side(KVM_TDX, asked, f"TDX {era.id}", era=era)
    if vendor == VENDOR_AMD:
        k = svm_kernel(asked, field)
        if k.series < GPAT_OBEYED_FROM:
            raise MemTypeError(field, f"AMD {k.label} ignores guest PAT writes (no g_pat update before 4.14)",
                               "the diff's PAT dimension is the guest's PAT type: AMD from 4.14 (15038e147247)")
        return Side(KVM_AMD, asked, f"AMD {k.label}", svm=k, host=host.validate())
    era = get_era(asked, field)
    return Side(KVM_INTEL, asked, era.id, era=era)


def is_era_pair(a: str, b: str, a_vendor: str = VENDOR_INTEL, b_vendor: str = VENDOR_INTEL,
                a_type: str = VM_TYPE_DEFAULT, b_type: str = VM_TYPE_DEFAULT) -> bool:
    """Both sides KVM on Intel with a default VM: the era diff (app.analysis, vmx_get_mt_mask's
    1920 states); any other pair is a cross-system diff (here, over the joint space)."""
    return all(is_vmx_default(v, t) and not is_xen(k)
               for k, v, t in ((a, a_vendor, a_type), (b, b_vendor, b_type)))


@dataclass(frozen=True, slots=True)
class Answer:
    entry: str
    """The entry's compact form: EPT `WB!`, or for AMD `NPT: host WB` (no memtype in the entry)."""
    ept: tuple[MemType, bool] | None
    """(EMT, IPAT) when the entry is an EPT entry (KVM on Intel, Xen), else None."""
    effective: MemType


def _vm(st: dict) -> VmConfig:
    return VmConfig(noncoherent_dma=st["noncoherent_dma"], quirk_cd_nw_cleared=st["quirk_cd_nw_cleared"],
                    quirk_ignore_guest_pat=st["quirk_ignore_guest_pat"], self_snoop=st["self_snoop"])


_NPT_LEAF = NptEntry.build(0)
"""KVM's NPT leaf: PWT/PCD/PAT clear, host PAT entry 0 (app.kvm.svm)."""


def answer(s: Side, st: dict) -> Answer | str:
    """The side's answer for a state, or why the side cannot have it (a skip reason)."""
    pat = MemType.from_label(st["pat"])
    mtrr = MemType.from_label(st["guest_mtrr"])
    kind = MMIO if st["is_mmio"] else RAM
    for (system, k), v in FIXED_VALUE.items():
        if system == s.system and st[k] != v:
            return FIXED_WHY[(system, k)]
    if s.system == KVM_TDX:
        mt, ipat, _, _ = tdx_mt_mask(_vm(st), st["is_mmio"], private=False)
        return Answer(notation(mt, ipat), (mt, ipat), effective_type(mt, ipat, pat))
    if s.era is not None:
        try:
            s.era.check_vm(_vm(st))
        except MemTypeError as e:
            return e.message
        f = Fault(**{k: st[k] for k in BOOLS}, guest_mtrr=mtrr)
        m = s.era.mt_mask(f)
        return Answer(notation(m.memtype, m.ipat), (m.memtype, m.ipat), effective_type(m.memtype, m.ipat, pat))
    if s.svm is not None:
        try:
            check_svm_vm(s.svm, _vm(st))
        except MemTypeError as e:
            return e.message
        h = s.host if s.host is not None else DEFAULT_HOST
        ht = host_type(_NPT_LEAF, h.pat(), h.mtrr(kind))
        cr0 = hardware_cr0(st["cr0_cd"], False, st["quirk_cd_nw_cleared"])
        eff = MemType.UC if cr0.cd else combine_guest_host(ht, pat)
        return Answer(f"NPT: host {ht.label}", None, eff)
    assert s.xen is not None
    facts = XenFacts(**{f: st[k] for k, f in XEN_FACTS.items()}, p2m_type=XEN_P2M[st["is_mmio"]].value,
                     host_mtrr=HOST_MTRR_DEFAULT[kind].label)
    d = facts.domain()
    emt = entry_emt(d, facts.page(0x100000), MtrrState(def_type=DEF_TYPE_E | int(mtrr)), s.xen)
    assert emt.emt is not None  # order 0, no mmio_ro/special/pinned: never -1
    cd = cd_view(d, st["cr0_cd"], Pat((pat,) * 8))
    xeff, _ = effective(emt, cd, 0)
    assert xeff is not None
    return Answer(emt.label, (emt.emt, emt.ipat), xeff)


def expected(st: dict) -> MemType:
    exp = expectation(Lookup(MemType.from_label(st["guest_mtrr"]), "state", "the state's MTRR type"),
                      MemType.from_label(st["pat"]), cd=st["cr0_cd"])
    assert exp.type is not None
    return exp.type


DEFAULTS = {"is_mmio": False, "noncoherent_dma": False, "cr0_cd": False, "quirk_cd_nw_cleared": True,
            "quirk_ignore_guest_pat": True, "self_snoop": True, "guest_mtrr": "WB", "pat": "WB",
            "xen_iommu": False, "xen_io": False}
"""A dimension neither side reads keeps this value (the API's defaults)."""


@dataclass(frozen=True, slots=True)
class SysRow:
    state: dict
    a: Answer
    b: Answer
    classification: str
    relation_a: str
    relation_b: str


@dataclass(frozen=True, slots=True)
class SysGroup:
    pattern: dict
    count: int
    entry_a: str
    entry_b: str
    effective_a: MemType
    effective_b: MemType
    classification: str


@dataclass(frozen=True)
class SystemDiff:
    a: Side
    b: Side
    dimensions: tuple[tuple[str, tuple], ...]
    total_states: int
    compared: int
    rows: tuple[SysRow, ...]
    skipped: dict[str, int]
    entries_comparable: bool
    """Both entries are EPT entries (KVM on Intel, Xen): a row may differ in the entry alone."""

    @property
    def counts(self) -> dict[str, int]:
        c = {"differ": len(self.rows), "weaker": 0, "stronger": 0, "incomparable": 0, "same": 0}
        for r in self.rows:
            c[r.classification] += 1
        c["entry_only"] = c.pop(SAME)
        return c

    def status(self) -> list[tuple[str, tuple, str, str]]:
        """(dimension, values, status in A, status in B) for every dimension, in key order."""
        return [(k, v, self.a.status(k), self.b.status(k)) for k, v in DIMENSIONS]

    def only(self, which: str) -> list[str]:
        """Dimensions this side has (read or not) and the other lacks."""
        me, other = (self.a, self.b) if which == "a" else (self.b, self.a)
        return [k for k, _ in DIMENSIONS if me.status(k) != ABSENT and other.status(k) == ABSENT]

    def mapping(self) -> list[str]:
        """How each shared dimension stands for the same fact in both systems."""
        out = []
        for k in ("is_mmio", "cr0_cd", "guest_mtrr", "pat"):
            ma, mb = self.a.mapping(k), self.b.mapping(k)
            out.append(f"{k}: A {ma}; B {mb}" if ma != mb else f"{k}: {ma}")
        for me, other in ((self.a, self.b), (self.b, self.a)):
            for k, _ in DIMENSIONS:
                st = me.status(k)
                if st == FIXED and other.status(k) == READ:
                    v = FIXED_VALUE[(me.system, k)]
                    v = int(v) if isinstance(v, bool) else v
                    out.append(f"{k}: {me.label} fixes it to {v} ({FIXED_WHY[(me.system, k)]}); states with "
                               "another value are skipped")
                if st == ABSENT and other.status(k) != ABSENT:
                    why = me.why_not_read(k)
                    out.append(f"{k}: {me.label} lacks it ({why}); its answer is the same for every value")
                elif st == NOT_READ and other.status(k) == READ:
                    why = me.why_not_read(k)
                    out.append(f"{k}: {me.label} has it but does not read it ({why})")
        given = [sd.host for sd in (self.a, self.b) if sd.host is not None and not sd.host.is_default]
        if given:
            out.append(f"host (AMD, given): {given[0].describe()}")
            if XEN in (self.a.system, self.b.system):
                out.append("host MTRR (Xen): WB for RAM, UC for MMIO")
        else:
            out.append("host MTRR (AMD, Xen): WB for RAM, UC for MMIO; host PAT (AMD): Linux's, entry 0 WB")
        if KVM_TDX in (self.a.system, self.b.system):
            out.append(PRIVATE_NOTE)
        return out

    def fixed(self, which: str) -> dict[str, object]:
        """The dimensions this side fixes, with their one value."""
        me = self.a if which == "a" else self.b
        return {k: FIXED_VALUE[(me.system, k)] for k, _ in DIMENSIONS if me.status(k) == FIXED}

    def not_compared(self) -> list[str]:
        def text(sd: Side) -> str:
            if sd.host is not None and not sd.host.is_default:
                return NOT_COMPARED_AMD_GIVEN
            return NOT_COMPARED[sd.system]
        return list(dict.fromkeys(text(sd) for sd in (self.a, self.b)))

    def groups(self) -> list[SysGroup]:
        names = [k for k, _ in self.dimensions]
        items = [(tuple(r.state[n] for n in names),
                  (r.a.entry, r.b.entry, r.a.effective, r.b.effective, r.classification)) for r in self.rows]
        return [SysGroup(dict(zip(names, key, strict=True)), n, *out)
                for key, n, out in group_outcomes(items, self.dimensions)]


def diff_systems(a: Side, b: Side) -> SystemDiff:
    """Every state of the joint space of the dimensions A or B reads."""
    read = set(a.reads()) | set(b.reads())
    dims = tuple((k, v) for k, v in DIMENSIONS if k in read)
    names = [k for k, _ in dims]
    comparable = a.system != KVM_AMD and b.system != KVM_AMD  # a TD's shared entries are EPT entries
    rows: list[SysRow] = []
    skipped: dict[str, int] = {}
    total = compared = 0
    for values in product(*(v for _, v in dims)):
        total += 1
        st = {**DEFAULTS, **dict(zip(names, values, strict=True))}
        ra, rb = answer(a, st), answer(b, st)
        if isinstance(ra, str) or isinstance(rb, str):
            why = ra if isinstance(ra, str) else rb
            assert isinstance(why, str)
            skipped[why] = skipped.get(why, 0) + 1
            continue
        compared += 1
        if ra.effective == rb.effective and (not comparable or ra.ept == rb.ept):
            continue
        exp = expected(st)
        state = {n: st[n] for n in names}
        rows.append(SysRow(state, ra, rb, relation(rb.effective, ra.effective), relation(ra.effective, exp),
                           relation(rb.effective, exp)))
    return SystemDiff(a, b, dims, total, compared, tuple(rows), skipped, comparable)


@lru_cache(maxsize=64)
def diff_by_sides(a: Side, b: Side) -> SystemDiff:
    """Cached: the state space is fixed, so a pair of sides always gives the same diff."""
    return diff_systems(a, b)


__all__ = ["ABSENT", "ANY", "DIMENSIONS", "FIXED", "FIXED_VALUE", "KVM_AMD", "KVM_INTEL", "KVM_TDX", "MAPPING",
           "NOT_READ", "READ", "STATUS", "STATUS_TEXT", "XEN", "XEN_FACTS", "XEN_P2M",
           "Answer", "Side", "SysGroup", "SysRow", "SystemDiff", "answer", "diff_by_sides", "diff_systems",
           "expected", "is_era_pair", "side"]
