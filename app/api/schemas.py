"""Request and response models of the JSON API (pydantic v2).

Requests are strict (`0` is not a boolean, `"1"` is not an integer, nor is `4096.0`: JSON
Schema counts an integral float as an integer, this API does not) and refuse unknown
members; a list that may be omitted (`kernels`) may not be empty. Every 64-bit register
or address is an integer or a `"0x..."` string of 1-16 hex digits; the JSON schema of each
such field also states the reserved-value rules it can (PAT bytes, fixed-range MTRR types,
reserved MSR bits) so generated clients and fuzzers know them. The rules themselves are
enforced by the core (app.x86, app.kvm), whose MemTypeError becomes a 422 problem naming
the field and the rule, so a message reads
"PAT entry 3 has reserved type 2" rather than "string does not match pattern".

Responses write addresses and registers as `"0x..."` strings and memory types by their SDM
names: UC, WC, WT, WP, WB, UC-. `notation` is the compact form used by the text rendering:
`WB!` = WB with IPAT set (guest PAT ignored), `WB` = IPAT clear (guest PAT combines).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, get_args, get_type_hints

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..knobs import Knob
from ..knobs import rows as knob_rows
from ..kvm.boot import APERTURES, EDK2_DEFAULT, EDK2_RELEASES, MACHINES, MEMORY_PATTERN
from ..kvm.eras import ERAS
from ..kvm.host_page import CLASS_TEXT, CLASSES
from ..kvm.host_page import PRESETS as HOST_PAGE_PRESETS
from ..kvm.ranges import MAP_RANGES_MAX
from ..kvm.replay import GENERATORS, modelled_cr0
from ..kvm.scenario import VmConfig
from ..kvm.spte_trace import MAX_TRACE_CHARS, MAX_TRACE_LINES  # the core owns the trace limits
from ..kvm.svm import HOST_MTRR_TYPES, HOST_PAT_DEFAULT
from ..kvm.trace_source import DEFAULT_VCPUS
from ..kvm.versions import VERSION_PATTERN
from ..kvm.vm_kinds import VENDOR_INTEL, VENDORS, VM_TYPE_DEFAULT, VM_TYPES
from ..presets import OVMF, PRESETS, START
from ..system_diff import MEANING as SYSTEM_DIM_MEANING
from ..system_diff import STATUS_TEXT
from ..x86.ept import mt_mask, notation
from ..x86.memtype import EPT_TYPES, MTRR_TYPES, PAT_TYPES, RELATIONS, MemType
from ..x86.mtrr import (
    DEF_TYPE_E,
    DEF_TYPE_FE,
    DEF_TYPE_VALID_BITS,
    FIXED_MSRS,
    KVM_NR_VAR_MTRR,
    MSR_MTRR_DEF_TYPE,
    MSR_MTRR_PHYSBASE0,
    PHYSMASK_V,
    VarMtrr,
    phys_mask,
)
from ..x86.npt import ADDR_BITS
from ..x86.pat import PAT_POWER_ON, index_to_pte_bits
from ..xen.facts import COVERAGES, HOST_MTRR_CHOICES, ORDERS, P2M_TYPES, PINNED_MAX
from ..xen.versions import SYSTEM_ID as XEN_SYSTEM_ID
from ..xen.versions import XEN_VERSIONS
from .hexpattern import byte_fields, masked, one_of

EDK2 = tuple(EDK2_RELEASES)

U64_MAX = (1 << 64) - 1
HEX_PATTERN = r"^0[xX][0-9a-fA-F]{1,16}$"
HEX_RE = re.compile(HEX_PATTERN)
BARE_HEX_RE = re.compile(r"^(0[xX])?[0-9a-fA-F]{1,16}$")
ERA_IDS = list(ERAS)
XEN_IDS = [XEN_SYSTEM_ID, *XEN_VERSIONS]

MemTypeName = Literal["UC", "WC", "WT", "WP", "WB", "UC-"]
assert get_args(MemTypeName) == tuple(t.label for t in MemType), "MemTypeName lists app.x86.memtype.MemType's names"
Relation = Literal["weaker", "stronger", "same", "incomparable"]
assert get_args(Relation) == RELATIONS, "Relation lists app.x86.memtype.RELATIONS"

# -- hex-or-integer fields ----------------------------------------------------------------
#
# Each pattern is built from the rule's own sets and masks in app.x86 (app/api/hexpattern.py);
# tests/test_api_hexpattern.py checks regex-accepts <=> core-accepts. The JSON schema cannot
# know the VM's MAXPHYADDR, so it states the architectural limit (52); the core checks the VM's.

MAX_PHYS_BITS = ADDR_BITS
"""The architectural MAXPHYADDR limit (CPUID.80000008H:EAX[7:0] is at most 52)."""
U52_MAX = (1 << MAX_PHYS_BITS) - 1
PAT_PATTERN = byte_fields(PAT_TYPES)
FIXED_PATTERN = byte_fields(MTRR_TYPES)
DEF_TYPE_PATTERN = masked(DEF_TYPE_VALID_BITS, low_byte=MTRR_TYPES)
PHYSBASE_PATTERN = masked(phys_mask(MAX_PHYS_BITS), low_byte=MTRR_TYPES)
PHYSMASK_PATTERN = masked(phys_mask(MAX_PHYS_BITS) | PHYSMASK_V)
ADDR_PATTERN = masked((1 << MAX_PHYS_BITS) - 1)
MTRR_MSRS = sorted([*range(MSR_MTRR_PHYSBASE0, MSR_MTRR_PHYSBASE0 + 2 * KVM_NR_VAR_MTRR),
                    *(f.msr for f in FIXED_MSRS), MSR_MTRR_DEF_TYPE])
MSR_PATTERN = one_of(MTRR_MSRS)


def _types(types: frozenset[int], names: bool = False) -> str:
    """`0, 1, 4, 5 or 6`, or with names `0 (UC), 1 (WC), ...`."""
    words = [f"{t} ({MemType(t).label})" if names else str(t) for t in sorted(types)]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _parse_hex(value: Any, bare: bool = False) -> int:
    if isinstance(value, bool):
        raise PydanticCustomError("hex_type", "expected an integer or a '0x...' hex string, not a boolean")
    if isinstance(value, float):
        raise PydanticCustomError("hex_type", "expected an integer or a '0x...' hex string, not a number with a "
                                  "fraction or exponent ({value})", {"value": value})
    if isinstance(value, int):
        if not 0 <= value <= U64_MAX:
            raise PydanticCustomError("hex_range", "{value} does not fit in 64 bits (0..2^64-1)", {"value": value})
        return value
    if isinstance(value, str):
        if not (BARE_HEX_RE if bare else HEX_RE).match(value) or value.endswith("\n"):
            raise PydanticCustomError(
                "hex_malformed",
                "malformed hex '{value}': expected " + ("1-16 hex digits, optionally after 0x"
                                                          if bare else "0x followed by 1-16 hex digits"),
                {"value": value[:40]},
            )
        return int(value, 16)
    raise PydanticCustomError("hex_type", "expected an integer or a '0x...' hex string")


Int = Annotated[int, Field(strict=True)]
"""A JSON integer written as one: `3`, never `3.0` or `true` (the models are strict)."""


def _hex_schema(pattern: str, int_max: int, description: str, example: int, width: int = 0) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": int_max},
            {"type": "string", "pattern": pattern},
        ],
        "description": description,
        "examples": [format(example, f"#0{width + 2}x" if width else "#x")],
    }


def _hex_json(fmt: str) -> PlainSerializer:
    return PlainSerializer(lambda v: format(v, fmt), return_type=str, when_used="json")


HexIn = BeforeValidator(_parse_hex)
_OVMF_PAIR = OVMF.variable[0]
_SEED_GPA = PRESETS[START].state.access.gpa

Hex64 = Annotated[int, HexIn, _hex_json("#x"), WithJsonSchema(_hex_schema(
    HEX_PATTERN, U64_MAX, "64-bit value: integer or '0x' + 1-16 hex digits", DEF_TYPE_E | int(MemType.WB)))]
Addr = Annotated[int, HexIn, _hex_json("#x"), WithJsonSchema(_hex_schema(
    ADDR_PATTERN, U52_MAX, "guest-physical address below 2^MAXPHYADDR: integer or '0x...'", _SEED_GPA))]
PatValue = Annotated[int, HexIn, _hex_json("#018x"), WithJsonSchema(_hex_schema(
    PAT_PATTERN, U64_MAX, f"IA32_PAT: 8 bytes, each {_types(PAT_TYPES, names=True)}", PAT_POWER_ON, 16))]
FixedValue = Annotated[int, HexIn, _hex_json("#018x"), WithJsonSchema(_hex_schema(
    FIXED_PATTERN, U64_MAX, f"fixed-range MTRR MSR: 8 type bytes, each {_types(MTRR_TYPES)}", OVMF.fixed[0], 16))]
DefType = Annotated[int, HexIn, _hex_json("#x"), WithJsonSchema(_hex_schema(
    DEF_TYPE_PATTERN, DEF_TYPE_E | DEF_TYPE_FE | max(MTRR_TYPES),
    f"IA32_MTRR_DEF_TYPE: type in bits 7:0 ({_types(MTRR_TYPES).replace(' or', ',')}), FE = bit 10, "
    "E = bit 11; other bits reserved", OVMF.def_type))]
PhysBase = Annotated[int, HexIn, _hex_json("#x"), WithJsonSchema(_hex_schema(
    PHYSBASE_PATTERN, U52_MAX, "IA32_MTRR_PHYSBASEn: type in bits 7:0, bits 11:8 reserved, base address bits "
    "below MAXPHYADDR", _OVMF_PAIR.base))]
PhysMask = Annotated[int, HexIn, _hex_json("#x"), WithJsonSchema(_hex_schema(
    PHYSMASK_PATTERN, U52_MAX, "IA32_MTRR_PHYSMASKn: V = bit 11, bits 10:0 reserved, mask bits below MAXPHYADDR",
    _OVMF_PAIR.mask))]
MtrrMsr = Annotated[
    int,
    HexIn,
    _hex_json("#x"),
    WithJsonSchema({
        "anyOf": [{"type": "integer", "enum": MTRR_MSRS}, {"type": "string", "pattern": MSR_PATTERN}],
        "description": "an MTRR MSR: 0x200-0x20f (PHYSBASE/PHYSMASK pairs), 0x250, 0x258, 0x259, "
                       "0x268-0x26f (fixed ranges), 0x2ff (MTRRdefType)",
        "examples": [f"{MSR_MTRR_DEF_TYPE:#x}"],
    }),
]
SpteValue = Annotated[
    int,
    BeforeValidator(lambda v: _parse_hex(v, bare=True)),
    PlainSerializer(lambda v: f"{v:#018x}", return_type=str, when_used="json"),
    WithJsonSchema({
        "anyOf": [{"type": "integer", "minimum": 0, "maximum": U64_MAX},
                  {"type": "string", "pattern": r"^(0[xX])?[0-9a-fA-F]{1,16}$"}],
        "description": "an EPT leaf entry: integer, or 1-16 hex digits with or without 0x "
                       "(kvm_mmu_set_spte prints it without)",
        "examples": ["6000000080000e77"],
    }),
]
KernelId = Annotated[
    str, WithJsonSchema({
        "anyOf": [{"type": "string", "enum": ERA_IDS},
                  {"type": "string", "pattern": VERSION_PATTERN, "maxLength": 64}],
        "description": "a kernel era id (GET /api/v1/kernels) or a kernel version as uname -r prints it, "
                       "4.2 to 6.19: 6.12.78, 6.11-rc3, 6.8.0-45-generic (a distribution suffix maps by its "
                       "upstream base; vendor kernels may carry more backports); others get 422",
        "examples": ["v6.16", "6.12.78"],
    }),
]
SystemId = Annotated[
    str, WithJsonSchema({
        "anyOf": [{"type": "string", "enum": [*ERA_IDS, *XEN_IDS]},
                  {"type": "string", "pattern": VERSION_PATTERN, "maxLength": 64}],
        "description": "a kernel era id (GET /api/v1/kernels) or a kernel version as uname -r prints it, "
                       "4.2 to 6.19: 6.12.78, 6.11-rc3, 6.8.0-45-generic; or a system id: xen (the newest Xen "
                       "line), xen-4.19, xen-4.21 (Xen is accepted where an era id is); others get 422",
        "examples": ["v6.16", "6.12.78", "xen"],
    }),
]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


# -- requests ----------------------------------------------------------------------------


class MemRangeIn(Strict):
    """A guest-physical range backed by a memslot."""

    start: Addr
    end: Addr
    kind: Literal["ram", "mmio"] = Field("ram", description="ram: host RAM (read as host page preset guest_ram); "
                                         "mmio: a host MMIO pfn, an assigned BAR (read as vfio_bar)")
    label: str = Field("", max_length=200)


MemoryMap = Annotated[
    list[MemRangeIn],
    Field(max_length=64, description="Memslots, half-open and 4 KiB aligned; default: a q35-like 4 GiB guest with an "
          "assigned GPU (app.kvm.scenario.DEFAULT_MEMORY_MAP: RAM 0-0xa0000, the host's VGA window 0xa0000-0xc0000 "
          "as RAM (a reserved ISA page: not MMIO from 4.16, resolve follows the version), RAM to 2 GiB, "
          "bochs VRAM 0xfd000000-0xfe000000 as RAM, RAM 4-6 GiB, GPU BAR 0x800000000-0x810000000 as MMIO)"),
]


if TYPE_CHECKING:
    Vendor: TypeAlias = str
    VmType: TypeAlias = str
    HostMtrrType: TypeAlias = str
    XenHostMtrr: TypeAlias = str
    P2mTypeName: TypeAlias = str
    CoverageName: TypeAlias = str
    XenOrder: TypeAlias = int
else:  # the names issue 14 fixes, from their one definition (app.kvm.vm_kinds, app.kvm.svm, app.xen.facts)
    Vendor = Literal[VENDORS]
    VmType = Literal[VM_TYPES]
    HostMtrrType = Literal[HOST_MTRR_TYPES]
    XenHostMtrr = Literal[HOST_MTRR_CHOICES]
    P2mTypeName = Literal[P2M_TYPES]
    CoverageName = Literal[COVERAGES]
    XenOrder = Literal[tuple(ORDERS)]


def _vm_member(k: Knob) -> tuple[Any, Any]:
    """One VmIn member from its knob row (app/knobs.py): the type and default of the
    VmConfig field it fills, the row's help as its description, the row's choices as a
    Literal, its page range as the JSON schema's bounds (the rule itself stays the core's:
    VmConfig.validate, so an out-of-range number is the core's 422 with its rule)."""
    if k.attr == "memory_map":
        return MemoryMap | None, None  # a list of objects: the one member with its own model
    hint = _VM_HINTS[k.attr or ""]
    kw: dict[str, Any] = {"description": k.api_help}
    typ: Any
    if k.choices:
        typ = Literal[k.choices]
    elif hint is bool:
        typ = bool
    elif hint is int:
        typ = Int
        if k.page_range:
            kw["json_schema_extra"] = {"minimum": k.page_range[0], "maximum": k.page_range[1]}
    else:
        raise TypeError(f"knob {k.param}: VmConfig.{k.attr} is {hint!r}, which has no API member type here")
    if not k.echo_default:
        kw["exclude_if"] = lambda v, d=k.default: v == d
    return typ, Field(k.default, **kw)


_VM_HINTS = get_type_hints(VmConfig)
VM_DOC = "Per-VM facts KVM consults. Defaults: a stock QEMU VM on a recent Intel CPU."
if TYPE_CHECKING:
    class VmIn(Strict):
        """What mypy sees: the members exist at run time, built from the knob rows below."""

        def __getattr__(self, name: str) -> Any: ...
else:
    # one member per VM row of the knob table, in the table's order: a new VM knob needs
    # no line here (tests/test_knobs.py checks each row's member against the VmConfig field)
    VmIn = create_model("VmIn", __base__=Strict, __doc__=VM_DOC, __module__=__name__,
                        **{k.api_leaf: _vm_member(k) for k in knob_rows("vm")})


class VarMtrrIn(Strict):
    base: PhysBase
    mask: PhysMask


class MtrrIn(Strict):
    """Guest MTRR MSRs as raw values (what the guest wrote)."""

    def_type: DefType = Field(0, json_schema_extra={"default": "0x0"})
    fixed: list[FixedValue] | None = Field(
        None, description="the 11 fixed-range MSRs in order (0x250, 0x258, 0x259, 0x268-0x26f); omitted = all 0 (UC)",
        json_schema_extra={"anyOf": [{"type": "array", "minItems": 11, "maxItems": 11,
                                      "items": _hex_schema(FIXED_PATTERN, U64_MAX, "fixed-range MSR", 0)},
                                     {"type": "null"}]},
    )
    variable: list[VarMtrrIn] = Field(default_factory=list, description="PHYSBASEn/PHYSMASKn pairs; KVM reports VCNT=8",
                                      json_schema_extra={"maxItems": 8})


class VcpuIn(Strict):
    """One vCPU's guest state that memory typing depends on."""

    cr0_cd: bool = False
    cr0_nw: bool = Field(False, description="CR0.NW=1 needs CR0.CD=1 (else MOV to CR0 #GPs)")
    cr0_pg: bool = Field(True, description="paging on; with CR0.PG=0 the PAT type is WB")
    pat: PatValue = Field(PAT_POWER_ON, json_schema_extra={"default": f"{PAT_POWER_ON:#018x}"})
    mtrr: MtrrIn = Field(default_factory=MtrrIn)


# Request examples are the presets' own bodies (app/presets.py), so they cannot drift from
# what the API accepts; tests/test_api_endpoints.py posts every one of them.
_START = PRESETS[START]
RESOLVE_EXAMPLE: dict[str, Any] = _START.request()
"""The page's first scenario (app.presets.START) as a POST /api/v1/resolve body."""
SCENARIO_EXAMPLE = {k: v for k, v in RESOLVE_EXAMPLE.items() if k not in ("gpa", "mmio", "host_page")}
"""The same without the address: what map and zap take."""
SEED_VM: dict[str, Any] = RESOLVE_EXAMPLE["vm"]
OVMF_MTRR: dict[str, Any] = PRESETS["ovmf"].request()["vcpu"]["mtrr"]
"""OVMF's guest MTRRs (app.kvm.layouts.ovmf_state) as a request's vcpu.mtrr."""


class Scenario(Strict):
    kernel: SystemId
    vm: VmIn = Field(default_factory=VmIn)
    vcpu: VcpuIn = Field(default_factory=VcpuIn)
    memory_map: MemoryMap | None = Field(None, description="same as vm.memory_map (give it in one place only)")


# Names the core lists, as Literal types (mypy sees plain strings: it cannot read a Literal
# built at run time).
if TYPE_CHECKING:
    HostPageClass: TypeAlias = str
    HostPagePreset: TypeAlias = str
    MachineName: TypeAlias = str
    ApertureName: TypeAlias = str
    Edk2Release: TypeAlias = str
    GeneratorName: TypeAlias = str
else:
    HostPageClass = Literal[tuple(CLASSES)]
    HostPagePreset = Literal[tuple(HOST_PAGE_PRESETS)]
    MachineName = Literal[MACHINES]
    ApertureName = Literal[APERTURES]
    Edk2Release = Literal[EDK2]
    GeneratorName = Literal[tuple(GENERATORS)]


class HostPageIn(Strict):
    """The host page behind the guest page, as kvm_is_mmio_pfn() sees it (app.kvm.host_page):
    either a `preset` alone, or a `class` with the fields that class reads."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [
        {"preset": "vga_dev_mem"}, {"class": "reserved", "host_memtype": "WB"},
        {"class": "no_struct_page", "e820_ram": True}]})

    preset: HostPagePreset | None = Field(None, description="a named page: " + "; ".join(
        f"{k}: {v.title}" for k, v in HOST_PAGE_PRESETS.items()))
    page_class: HostPageClass | None = Field(None, alias="class", description="; ".join(
        f"{k}: {v}" for k, v in CLASS_TEXT.items()))
    host_memtype: MemTypeName | None = Field(None, description="class reserved only: the type host PAT tracks "
                                             "for the pfn (memtype-tree entry, or the page flags in System RAM); "
                                             "omitted = nothing reserved it, lookup_memtype() reads UC-")
    hpa: Addr | None = Field(None, description="host physical address; inside 0xa0000-0xfffff (ISA, PAT-untracked) "
                             "lookup_memtype() reads WB")
    e820_ram: bool = Field(False, description="class no_struct_page only: the raw e820 table maps the pfn as RAM "
                           "(a host booted with mem=); from 5.2 such a pfn is not MMIO")
    pat_enabled: bool = Field(True, description="pat_enabled() on the host (false with nopat): from 4.16 a "
                              "reserved page is then always MMIO")


class PinnedRangeIn(Strict):
    start: Int = Field(description="first gfn", json_schema_extra={"minimum": 0})
    end: Int = Field(description="last gfn (inclusive)", json_schema_extra={"minimum": 0})
    type: MemTypeName


class XenDomainIn(Strict):
    """The domain facts Xen's epte_get_entry_emt() and its event paths read (app.xen.facts)."""

    iommu: bool = Field(False, description="is_iommu_enabled(d)")
    io_resources: bool = Field(False, description="the domain holds iomem or ioport ranges")
    pci_devices: bool = Field(False, description="PCI devices assigned (needs iommu)")
    pinned: list[PinnedRangeIn] = Field(default_factory=list, max_length=PINNED_MAX,
                                        description="pinned cache attribute ranges (XEN_DOMCTL_pin_mem_cacheattr)")
    has_vcpu: bool = Field(True, description="false: no vCPU yet, the guest MTRR side is WB")


class XenIn(XenDomainIn):
    """With `kernel` "xen" (or "xen-4.19", "xen-4.21"): the domain and p2m-entry facts Xen's
    epte_get_entry_emt() reads (app.xen; docs/systems/xen.md). The entry is the one holding
    gpa (gfn = gpa >> 12, aligned down to `order`); vcpu gives the guest MTRRs, PAT, CR0."""

    p2m_type: P2mTypeName = "ram"
    order: XenOrder = Field(0, description=f"the entry's page order: {', '.join(ORDERS.values())}")
    mfn: Int | None = Field(None, description="the host frame (default: the gfn)", json_schema_extra={"minimum": 0})
    mmio_ro: CoverageName = Field("none", description="the frames in mmio_ro_ranges")
    special: CoverageName = Field("none", description="the frames that are Xen special pages")
    host_mtrr: XenHostMtrr = Field(
        "WB", description="host MTRR type of the frames (mixed: mtrr_get_type() -1, superpages only)")


class XenFramesIn(Strict):
    """Per-frame facts over the GPAs [start, end) (4K aligned, inside the memory map): what
    resolve's `xen` p2m_type, mmio_ro and special say of one entry, for a range."""

    start: Addr
    end: Addr
    p2m_type: P2mTypeName | None = Field(
        None, description="the frames' p2m type; omitted = the memory map range's (ram p2m_ram_rw, mmio "
        "p2m_mmio_direct)")
    mmio_ro: bool = Field(False, description="the frames are in mmio_ro_ranges")
    special: bool = Field(False, description="the frames are Xen special pages (is_special_page)")


XenFrames = Annotated[list[XenFramesIn] | None, Field(
    exclude_if=lambda v: v is None,
    description="map and zap: per-frame facts by GPA range (p2m type, mmio_ro, special), "
    f"at most {MAP_RANGES_MAX}, not overlapping; pinned ranges are the domain's `pinned`")]


class XenMapIn(XenDomainIn):
    """With `kernel` "xen" in POST /api/v1/map: the domain facts, and the host MTRR type of
    every frame (omitted: WB for ram ranges, UC for mmio ranges). The p2m type of each
    range comes from the memory map (ram: p2m_ram_rw, mmio: p2m_mmio_direct) unless
    `frames` gives one."""

    host_mtrr: HostMtrrType | None = Field(
        None, description="host MTRR type of every frame; omitted = by the range's kind (ram WB, mmio UC)")
    frames: XenFrames = None


class XenLinkIn(XenIn):
    """POST /api/v1/permalink's Xen facts: resolve's, plus the map's per-frame facts (the
    page's editor of XenMapIn.frames), so that a link keeps them."""

    frames: XenFrames = None


class AmdHostIn(Strict):
    """With vm.vendor "amd": the host side of nested paging (app.kvm.svm.SvmHost). KVM's NPT
    leaf selects host PAT entry 0 and the host MTRRs apply to the frame behind the page;
    both are facts about the host. Omitted members keep their defaults (a Linux host PAT;
    host MTRR WB for RAM, UC for MMIO) and are left out of echoed bodies."""

    host_pat: PatValue = Field(HOST_PAT_DEFAULT, exclude_if=lambda v: v == HOST_PAT_DEFAULT,
                               json_schema_extra={"default": f"{HOST_PAT_DEFAULT:#018x}"},
                               description="the host's IA32_PAT MSR (default: Linux's)")
    host_mtrr: HostMtrrType | None = Field(None, exclude_if=lambda v: v is None,
                                           description="host MTRR type of the host frames, for the access (resolve) "
                                           "or every frame (map); omitted = by kind (ram WB, mmio UC)")


class GpaRangeIn(Strict):
    """A guest-physical range [start, end), 4K aligned."""

    start: Addr
    end: Addr


AmdFacts = Annotated[AmdHostIn | None, Field(
    exclude_if=lambda v: v is None, description='AMD host facts, with vm.vendor "amd" only (422 otherwise)')]


PrivateRanges = Annotated[list[GpaRangeIn] | None, Field(
    exclude_if=lambda v: v is None,
    description="vm.type tdx only: the GPA ranges whose memory attribute is private (KVM_SET_MEMORY_ATTRIBUTES; "
    f"the Secure EPT), [start, end) 4K aligned, RAM only, at most {MAP_RANGES_MAX}; the rest are shared, as "
    "resolve's `private` says for one GPA")]
"""The map's private GPAs (and the page's link of them: PermalinkRequest)."""

PrivateFlag = Annotated[bool | None, Field(
    exclude_if=lambda v: v is None, description="vm.type tdx only: the GPA is private (Secure EPT, built by the TDX "
    "module); omitted or false = shared (the normal EPT)")]


class ResolveRequest(Scenario):
    """One scenario: a VM, a vCPU's state and a guest-physical address, under one era."""

    model_config = ConfigDict(json_schema_extra={"examples": [RESOLVE_EXAMPLE]})

    gpa: Addr
    mmio: bool | None = Field(None, description="force is_mmio (overrides everything); omitted = kvm_is_mmio_pfn() "
                              "on host_page, else on the memory map's range (ram: guest RAM, mmio: a VFIO BAR; "
                              "the default map's VGA window is a reserved host ISA page), RAM if unmapped")
    host_page: HostPageIn | None = Field(None, description="the host page behind gpa; kvm_is_mmio_pfn() then "
                                         "decides is_mmio for the kernel version (not with mmio)")
    xen: XenIn | None = Field(None, exclude_if=lambda v: v is None,  # echoed bodies (presets) are reused for zap
                              description='Xen facts, with kernel "xen" only (a system id, not a KVM era)')
    amd: AmdFacts = None
    private: PrivateFlag = None


class Cr0CdEvent(Strict):
    kind: Literal["cr0_cd"]
    value: bool = Field(description="the new CR0.CD")
    cr0_nw: bool | None = Field(None, description="CR0.NW written with it (omitted = unchanged)")


class MtrrWriteEvent(Strict):
    kind: Literal["mtrr_write"]
    msr: MtrrMsr
    value: Hex64


class NoncoherentDmaEvent(Strict):
    kind: Literal["noncoherent_dma"]
    value: bool = Field(description="true: the first non-coherent device is assigned (0->1); false: the last leaves")


class PatWriteEvent(Strict):
    kind: Literal["pat_write"]
    value: PatValue


EventIn = Annotated[Cr0CdEvent | MtrrWriteEvent | NoncoherentDmaEvent | PatWriteEvent, Field(discriminator="kind")]


class PassthroughEvent(Strict):
    """Xen only (kernel xen...): the toolstack gives the domain its first I/O resource or a PCI
    device, or takes its last one away (iomem_permit_access / iomem_deny_access, assign_device)."""

    kind: Literal["passthrough_attach", "passthrough_detach"]
    resource: Literal["io", "pci"] = Field("io", description="io: an iomem/ioport range; pci: a PCI device")


ZapEventIn = Annotated[Cr0CdEvent | MtrrWriteEvent | NoncoherentDmaEvent | PatWriteEvent | PassthroughEvent,
                       Field(discriminator="kind")]

def _zap_examples() -> list[JsonValue]:
    """One zap body per event kind the presets try: the first preset with that kind."""
    first: dict[str, JsonValue] = {}
    for p in PRESETS.values():
        ev = p.event()
        if ev is not None and ev["kind"] not in first:
            first[ev["kind"]] = {**{k: v for k, v in p.request().items() if k not in ("gpa", "mmio", "host_page")},
                                 "event": ev}
    return list(first.values())


ZAP_EXAMPLES = _zap_examples()
PRESET_EVENTS: list[JsonValue] = list({str(ev): ev for ev in (p.event() for p in PRESETS.values())
                                        if ev is not None}.values())
"""Every distinct event the presets try, in preset order."""


class ZapRequest(Scenario):
    """The state before an event, and the event; the era's zaps are audited."""

    model_config = ConfigDict(json_schema_extra={"examples": ZAP_EXAMPLES})

    event: ZapEventIn = Field(description="noncoherent_dma is KVM's only, passthrough_attach/detach Xen's only")
    xen: XenMapIn | None = Field(None, exclude_if=lambda v: v is None,
                                 description='Xen domain facts, with kernel "xen" only (as for map)')
    amd: AmdFacts = None


class DiffRequest(Strict):
    """Two eras; every state of the finite state space where their EPT entries differ. `a` and
    `b` may also name Xen (xen, xen-4.19, xen-4.21) or, with `a_vendor`/`b_vendor` amd, KVM
    on AMD, or with `a_type`/`b_type` tdx, a TDX VM: the cross-system diff
    (SystemDiffResponse) over the dimensions either reads."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"a": _START.compare, "b": RESOLVE_EXAMPLE["kernel"]}]})

    a: SystemId
    b: SystemId
    limit: Int = Field(500, ge=0, le=5000, description="most rows returned; counts and groups cover all states")
    a_vendor: Vendor = Field(VENDOR_INTEL, exclude_if=lambda v: v == VENDOR_INTEL,
                             description="amd: `a` is a kernel under KVM on AMD (NPT, 4.14 and later); not with Xen")
    b_vendor: Vendor = Field(VENDOR_INTEL, exclude_if=lambda v: v == VENDOR_INTEL, description="as a_vendor, for b")
    a_type: VmType = Field(VM_TYPE_DEFAULT, exclude_if=lambda v: v == VM_TYPE_DEFAULT,
                           description="tdx: `a` is a TDX VM (vm.type tdx: Intel, a kernel from 6.16); not with "
                           "Xen or amd")
    b_type: VmType = Field(VM_TYPE_DEFAULT, exclude_if=lambda v: v == VM_TYPE_DEFAULT, description="as a_type, for b")
    amd: AmdHostIn | None = Field(None, exclude_if=lambda v: v is None,
                                  description="the AMD host facts of every AMD side (one host); only with an AMD side")


class ReplayEventIn(Strict):
    """One trace event: an event kind plus the vCPU that performed it (for noncoherent_dma,
    the vCPU that re-faults what the event zaps)."""

    vcpu: Int = Field(0, ge=0, le=1023, description="vCPU index, below `vcpus`")
    event: EventIn


class ReplayRequest(Strict):
    """A trace: a generator preset with a vCPU count, explicit events, or trace text."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"generator": next(iter(GENERATORS)), "vcpus": DEFAULT_VCPUS},
        {"vcpus": 2, "vm": SEED_VM, "events": [{"vcpu": n % 2, "event": ev} for n, ev in enumerate(PRESET_EVENTS)]},
    ]})

    generator: GeneratorName | None = Field(None, description="a boot generator "
                                                         "(GET /api/v1/replay/generators)")
    vcpus: Int | None = Field(None, ge=1, le=1024, description="vCPU count; default 8 for a generator, else the "
                              "highest vCPU index in the events plus one")
    linux: bool = Field(True, description="generator: a Linux guest boots after the firmware (its boot-time MTRR "
                        "re-sync: cache_bp_init/cache_aps_init)")
    machine: MachineName = Field("q35", description="generator: the QEMU machine (sets the low-RAM split)")
    memory: Int | Annotated[str, Field(pattern=MEMORY_PATTERN)] | None = Field(
        None, description="generator: guest RAM in bytes or as '4G', '512M'; also sets the memslots to that RAM "
        "(default: 4G layout on the VM's own memory map)", examples=["4G"])
    maxphyaddr: Int | None = Field(None, ge=36, le=52,
                                   description="generator: guest phys-bits (default: vm.maxphyaddr)")
    aperture: ApertureName = Field("dynamic", description="generator: OVMF's 64-bit PCI aperture: "
                                         "dynamic (edk2 2022-11+, 2^(pb-3) below 2^pb) or classic (32G at 32G)")
    edk2: Edk2Release = Field(EDK2_DEFAULT, description="generator: the OVMF build, by the first edk2-stable "
                                "release (YYYY-MM) with its behaviour: 2023-05 (and before: the 2023 review's build; "
                                "the reset vector leaves CR0.CD=1 on the BSP), 2023-11 (reset vector with caching on, "
                                "edk2 e8aa4c6546ad), 2024-02 (SecMtrrSetup: MTRRdefType E=1 WB in SEC, edk2 "
                                "ce4c76e46d)")
    qemu_host_writes: bool | None = Field(None, description="add QEMU's KVM_SET_MSRS writes (machine init and reset, "
                                          "per vCPU) as source 'qemu'; default on for a generator, off otherwise")
    events: list[ReplayEventIn] | None = Field(None, description="explicit events, replayed in order "
                                               "(at most MEMTYPE_MAX_TRACE_EVENTS)")
    trace: str | None = Field(None, description="trace text (app/kvm/trace_format.md, or kvm_msr/kvm_cr tracepoint "
                              "lines); the body is bounded by MEMTYPE_MAX_TRACE_BYTES, events by "
                              "MEMTYPE_MAX_TRACE_EVENTS")
    vm: VmIn = Field(default_factory=lambda: VmIn.model_validate({"noncoherent_dma": True}),
                     description="the VM (default: non-coherent DMA on, the case the replay is about)",
                     json_schema_extra={"default": {"noncoherent_dma": True}})
    initial: Literal["reset", "running"] | VcpuIn | None = Field(
        None, description="every vCPU's state before the first event: 'reset' (CR0.CD=NW=1, MTRRs 0, PAT power-on: "
        "where a real vCPU starts; the default for a generator and for trace text with tracepoint lines), "
        "'running' (caching on, MTRRs off; the default for events and plain-format text) or an explicit state")
    pid: Int | None = Field(None, ge=0, le=2**31 - 1, description="trace text: the VM (process id) to replay from "
                            "a capture that recorded PIDs of several VMs (perf script -F +pid, ftrace record-tgid)")
    kernels: list[KernelId] | None = Field(None, min_length=1, max_length=16,
                                           description="eras to replay under; omitted = all (an empty list is refused)")
    include_calls: bool = Field(False, description="list every kvm_zap_gfn_range() call (up to 10000 per era)")


class DecodeRequest(Strict):
    """A raw EPT leaf (or a whole kvm_mmu_set_spte trace line) and an optional scenario."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"spte": "0x6000000080000e77", "level": 1},
        {"line": "kvm_mmu_set_spte: gfn fee00 spte 60000002fee00e77 (rwxu) level 1 at 10a5b1008"},
    ]})

    spte: SpteValue | None = None
    line: str | None = Field(None, max_length=1024,
                             description="a kvm_mmu_set_spte trace line: 'gfn %llx spte %llx (...) level %d at %llx'")
    level: Int | None = Field(None, ge=1, le=3, description="1 = 4K PTE, 2 = 2M, 3 = 1G; omitted: from the line, "
                              "else 1. Required for an spte with bit 7 (PS) set (2M or 1G cannot be guessed); "
                              "2 or 3 with PS clear is a non-leaf entry, refused")
    kernels: list[KernelId] | None = Field(None, min_length=1, max_length=16,
                                           description="eras to compare with; omitted = all (an empty list is refused)")
    vm: VmIn = Field(default_factory=VmIn)
    vcpu: VcpuIn = Field(default_factory=VcpuIn)
    gpa: Addr | None = Field(None, description="the guest-physical address; omitted = gfn from the line, else 0")
    mmio: bool | None = None


# -- responses ---------------------------------------------------------------------------
#
# Built straight from the core's dataclasses (`from_attributes`): a member the core has
# under the same name needs no code, and its type says how it is written (HexOut: "0x...",
# MemTypeOut: the SDM name). Where the core names or computes a member differently, the
# model's `core_members` validator says so, once. The same models read the JSON back (the
# tests validate answers with them), so each type also accepts what it writes.


def _from_hex(value: Any) -> Any:
    return int(value, 16) if isinstance(value, str) else value


def _label(value: Any) -> Any:
    return value.label if isinstance(value, MemType) else value


HexOut = Annotated[int, BeforeValidator(_from_hex), PlainSerializer(lambda v: f"{v:#x}", return_type=str)]
"""An address or register, written "0x..." with no leading zeros."""
Hex2Out = Annotated[int, BeforeValidator(_from_hex), PlainSerializer(lambda v: f"{v:#04x}", return_type=str)]
"""A byte-wide value (an EPT mask, PTE bits), written with two hex digits."""
Hex16Out = Annotated[int, BeforeValidator(_from_hex), PlainSerializer(lambda v: f"{v:#018x}", return_type=str)]
"""A 64-bit entry, written with all 16 hex digits."""
MemTypeOut = Annotated[MemTypeName, BeforeValidator(_label)]
"""A MemType, written by its SDM name (app.x86.memtype.MemType.label)."""


class View:
    """A core object seen with some members added or replaced, for `from_attributes`:
    `ResolveResponse.model_validate(View(resolution, permalink=link))`."""

    __slots__ = ("_obj", "_members")

    def __init__(self, obj: Any, **members: Any) -> None:
        self._obj = obj
        self._members = members

    def __getattr__(self, name: str) -> Any:
        members = self._members
        return members[name] if name in members else getattr(self._obj, name)


_MISSING = object()


def core(model: type[BaseModel], value: Any, members: Callable[[Any], dict[str, Any]]) -> Any:
    """`value` as is when it is JSON (a dict) or a model; else the core object's members for
    `model`'s fields: those `members(value)` derives, the others read by name (a field the
    object lacks keeps its default). A dict, not a proxy: pydantic reads it fastest."""
    if isinstance(value, dict | BaseModel):
        return value
    derived = members(value)
    out = {}
    for key in _field_keys(model):
        v = derived[key] if key in derived else getattr(value, key, _MISSING)
        if v is not _MISSING:
            out[key] = v
    return out


@cache
def _field_keys(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(f.alias or name for name, f in model.model_fields.items())


def _ept_members(mt: MemType, ipat: bool) -> dict[str, Any]:
    """An EPT entry's type: vmx_get_mt_mask()'s mask and the compact notation, both the core's."""
    return {"memtype": mt, "ipat": ipat, "mask": mt_mask(mt, ipat), "notation": notation(mt, ipat)}


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class CommitOut(Out):
    sha: str
    subject: str


class EraOut(Out):
    id: str
    title: str
    kernels: str = Field(description="the kernel range the era covers")
    summary: str
    commits: list[CommitOut]
    notes: list[str]
    reads_guest_mtrrs: bool


class EptFieldOut(Out):
    name: str
    lo: int
    hi: int
    value: int
    meaning: str


class LeafOut(Out):
    raw: Hex16Out
    page_size: Literal["4K", "2M", "1G"]
    level: int
    fields: list[EptFieldOut]
    misconfig: list[str] = Field(description="why the leaf would cause an EPT misconfiguration (empty when fine)")

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """An EptLeaf: its fields and misconfig are methods."""
        return core(cls, v, lambda leaf: {"fields": leaf.fields(), "misconfig": leaf.misconfig()})


class EptOut(Out):
    memtype: MemTypeOut
    ipat: bool
    mask: Hex2Out = Field(description="vmx_get_mt_mask(): memtype << 3 | IPAT << 6")
    notation: str = Field(description="compact form: WB! = WB with IPAT")
    leaf: LeafOut | None = None

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """Anything with memtype and ipat (a Resolution: also its leaf)."""
        return core(cls, v, lambda r: _ept_members(r.memtype, r.ipat))


class LookupOut(Out):
    type: MemTypeOut | None
    source: str
    reason: str


class PatRowOut(Out):
    index: int
    pte_bits: Hex2Out = Field(description="PWT (bit 3), PCD (bit 4), PAT (bit 7) of a 4K PTE selecting this entry")
    pte_flags: str
    pat_type: MemTypeOut
    pat_type_used: MemTypeOut = Field(description="the PAT type the access uses (WB with CR0.PG=0)")
    effective: MemTypeOut
    guest_expected: MemTypeOut | None
    expected_reason: str
    relation: Relation = Field(description="effective vs guest_expected: weaker = the CPU may cache or buffer more")
    relation_reason: str


class StepOut(Out):
    id: str
    function: str
    condition: str
    held: bool | None = Field(description="true: held; false: did not hold; null: not reached")
    result: str
    commit: str


class PageSizeOut(Out):
    kernels: str
    mtrr_check: bool
    page_size: Literal["4K", "2M", "1G"]


class KernelOut(Out):
    asked: str = Field(description="the kernel as given")
    era: str = Field(description="the era id it resolves to")
    version: str | None = Field(description="the upstream base version; null when an era id was given")
    why: str
    notes: list[str] = Field(description="version-exact behaviour inside the era, backports, suffixes")


class MmioByKernelsOut(Out):
    kernels: str
    is_mmio: bool

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """HostSide.by_kernels holds (kernels, is_mmio) pairs."""
        return {"kernels": v[0], "is_mmio": v[1]} if isinstance(v, tuple) else v


class HostPageOut(Out):
    """kvm_is_mmio_pfn() for the page: the page, the kernel answered for, its checks."""

    model_config = ConfigDict(extra="forbid", from_attributes=True, serialize_by_alias=True)

    page_class: str = Field(alias="class")
    preset: str | None
    host_memtype: MemTypeOut | None
    hpa: HexOut | None
    e820_ram: bool
    pat_enabled: bool
    source: str = Field(description="where the page came from: given, or the memory map's range")
    answered_for: str = Field(description="the kernel version whose kvm_is_mmio_pfn() gave is_mmio")
    is_mmio: bool
    why: str
    path: list[StepOut] = Field(description="kvm_is_mmio_pfn()'s checks in order; commit = where it was read")
    by_kernels: list[MmioByKernelsOut] = Field(description="the answer per kvm_is_mmio_pfn() form inside the era")
    notes: list[str]

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A HostSide: the page's members and kvm_is_mmio_pfn()'s answer, flattened."""
        return core(cls, v, lambda h: {
            "class": h.page.cls, "preset": h.page.preset or None, "host_memtype": h.page.host_memtype,
            "hpa": h.page.hpa, "e820_ram": h.page.e820_ram, "pat_enabled": h.page.pat_enabled,
            "is_mmio": h.mmio.is_mmio, "why": h.mmio.why, "path": list(h.mmio.path)})


class ResolveResponse(Out):
    kernel: str = Field(description="the era id (kept for clients of era ids); kernel_info says more")
    kernel_info: KernelOut
    host_page: HostPageOut | None = Field(description="null when mmio was forced")
    era: EraOut
    gpa: HexOut
    is_mmio: bool
    mmio_source: str
    ept: EptOut
    guest_mtrr_type: MemTypeOut | None = Field(description="the guest's own SDM MTRR lookup (null: undefined overlap)")
    guest_mtrr: LookupOut
    kvm_mtrr_type: MemTypeOut | None = Field(
        description="what KVM's MTRR lookup gives (null: the era never reads guest MTRRs)")
    kvm_mtrr: LookupOut | None
    mtrr_finding: str | None = Field(description="why the SDM lookup and KVM's differ, or null")
    pat: list[PatRowOut]
    path: list[StepOut]
    page_size: Literal["4K", "2M", "1G"]
    page_sizes: list[PageSizeOut]
    permalink: str

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A Resolution (with `permalink` added): its EPT members are `ept`, its PAT rows `pat`."""
        return core(cls, v, lambda r: {
            "kernel": r.era.id, "kernel_info": r.kernel, "host_page": r.host, "ept": r,
            "guest_mtrr_type": r.guest_mtrr.type, "kvm_mtrr_type": r.kvm_mtrr.type if r.kvm_mtrr else None,
            "pat": r.pat_rows})


class RangeOut(Out):
    start: HexOut
    end: HexOut
    pages: int

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A half-open (start, end) range; an empty one has 0 pages."""
        return {"start": v[0], "end": v[1], "pages": max(0, v[1] - v[0]) >> 12} if isinstance(v, tuple) else v


class EptTypeOut(Out):
    memtype: MemTypeOut
    ipat: bool
    mask: Hex2Out
    notation: str

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A (memtype, ipat) pair, or anything with those two members."""
        if isinstance(v, tuple):
            return _ept_members(*v)
        return core(cls, v, lambda o: _ept_members(o.memtype, o.ipat))


class ChangeOut(Out):
    start: HexOut
    end: HexOut
    pages: int
    kind: Literal["ram", "mmio"]
    before: EptTypeOut
    after: EptTypeOut

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        return core(cls, v, lambda c: {"pages": (c.end - c.start) >> 12})


class EventOut(Out):
    kind: str
    description: str
    msr: HexOut | None = None
    value: bool | str
    cr0_nw: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """An Event: a register value is written in hex, a flag as a boolean."""
        return core(cls, v, lambda e: {"description": e.describe(),
                                  "value": e.value if isinstance(e.value, bool) else f"{e.value:#x}"})


class ZapCounts(Out):
    zap_calls: int
    zapped_pages: int
    needed_pages: int
    stale_pages: int
    excess_pages: int


class ZapResponse(Out):
    kernel: str = Field(description="the era id; kernel_info says more")
    kernel_info: KernelOut
    era: EraOut
    event: EventOut
    calls: list[RangeOut] = Field(description="kvm_zap_gfn_range() calls, as made")
    zapped: list[RangeOut]
    zapped_mapped: list[RangeOut] = Field(description="zapped, inside memslots")
    needed: list[RangeOut]
    stale: list[RangeOut] = Field(description="needed but not zapped: the old entry survives (a bug)")
    excess: list[RangeOut] = Field(description="zapped inside memslots but not needed (refaults)")
    counts: ZapCounts
    path: list[StepOut]
    changes: list[ChangeOut]
    permalink: str

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A ZapAudit (with `kernel_info` and `permalink` added)."""
        return core(cls, v, lambda a: {"kernel": a.era.id})


class DiffRowOut(Out):
    state: dict[str, Any] = Field(description="what vmx_get_mt_mask() sees: is_mmio, noncoherent_dma, cr0_cd, "
                                  "quirk_cd_nw_cleared, quirk_ignore_guest_pat, self_snoop, guest_mtrr (KVM's lookup), "
                                  "pat (the access's PAT type)")
    ept_a: EptTypeOut
    ept_b: EptTypeOut
    effective_a: MemTypeOut
    effective_b: MemTypeOut
    classification: Relation = Field(description="effective_b relative to effective_a")
    relation_a: Relation = Field(description="effective_a relative to the guest's expectation")
    relation_b: Relation

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        return core(cls, v, lambda r: {"state": r.state.as_dict()})


class DiffGroupOut(Out):
    pattern: dict[str, Any] = Field(description="state dimensions; '*' = every value gives this outcome")
    count: int
    ept_a: EptTypeOut
    ept_b: EptTypeOut
    effective_a: MemTypeOut
    effective_b: MemTypeOut
    classification: Relation


class DiffResponse(Out):
    a: EraOut
    b: EraOut
    kernel_a: KernelOut = Field(description="what `a` named: an era id or a kernel version, and its era")
    kernel_b: KernelOut = Field(description="what `b` named")
    total_states: int
    compared: int
    counts: dict[str, int] = Field(description="differ, weaker, stronger, incomparable, ept_only")
    skipped: dict[str, int] = Field(description="states an era cannot have, by reason")
    groups: list[DiffGroupOut]
    rows: list[DiffRowOut]
    truncated: bool = Field(description="rows were cut at `limit` (counts and groups cover all)")
    permalink: str


class ZapCallOut(Out):
    event: int = Field(description="index into the trace's events")
    vcpu: int
    kind: str
    msr: HexOut | None
    start: HexOut
    end: HexOut
    pages: int = Field(description="mapped pages zapped")
    excess: int = Field(description="of those, pages whose entry did not change")
    cd: bool = Field(description="the calling vCPU had CR0.CD=1")
    duplicate: bool
    empty: bool = Field(description="end <= start: KVM returns without zapping")


class ReplayEraOut(Out):
    kernel: str
    error: str | None = Field(None, description="the era refused the VM (e.g. a quirk it cannot turn off); no figures")
    mapped_pages: int | None = None
    zap_calls: int | None = None
    empty_calls: int | None = None
    zapped_pages: int | None = None
    excess_pages: int | None = None
    stale_pages: int | None = Field(None, description="an upper bound: mapped pages whose entry differs from what "
                                    "vCPU 0's final state computes, if every zapped page was refaulted at once by the "
                                    "zapping vCPU")
    calls_while_cd: int | None = None
    duplicate_calls: int | None = None
    per_vcpu_stale: list[int] | None = None
    vcpus_agree: bool | None = None
    stale_ranges: list[RangeOut] | None = None
    calls: list[ZapCallOut] | None = None
    calls_truncated: bool | None = None
    calls_by_source: dict[str, int] | None = Field(
        None, description="zap_calls split by who made the write: qemu (host KVM_SET_MSRS), firmware, linux, trace")

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A ReplayResult (`calls` replaced by None unless asked for)."""
        return core(cls, v, lambda r: {"kernel": r.era})


class VarPairOut(Out):
    base: HexOut
    mask: HexOut


class MtrrStateOut(Out):
    def_type: HexOut
    fixed: list[HexOut] = Field(description="11 values in MSR order 0x250, 0x258, 0x259, 0x268..0x26f")
    variable: list[VarPairOut] = Field(description="8 PHYSBASE/PHYSMASK pairs")

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """An MtrrState: pairs never written read as 0 (KVM has VCNT of them)."""
        return core(cls, v, lambda m: {"variable": [*m.variable, *[VarMtrr()] * (KVM_NR_VAR_MTRR - len(m.variable))]})


class VcpuFinalOut(Out):
    cr0: HexOut = Field(description="CR0 as modelled: CD, NW and PG (other bits 0 but ET, which is always 1)")
    pat: HexOut
    mtrr: MtrrStateOut

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A VcpuState."""
        return core(cls, v, lambda s: {"cr0": modelled_cr0(s), "pat": s.pat.to_msr()})


class FinalStateOut(Out):
    noncoherent_dma: bool
    vcpus: list[VcpuFinalOut]


class CaptureThreadOut(Out):
    tid: int
    pid: int | None = Field(description="its process, where the capture recorded it")
    comm: str = Field(description="the thread name as the capture printed it")
    vcpu: int = Field(description="KVM's vCPU id")
    by: str = Field(description="where the vCPU id came from: kvm_entry, kvm_exit, kvm_page_fault (the line's "
                    "'vcpu N') or name (QEMU's thread name 'CPU N/KVM', when the thread has no such line)")
    line: int = Field(description="the line that said so")


class CaptureOut(Out):
    """How trace text was read (app/kvm/trace_import.py)."""

    kind: Literal["capture", "plain", "mixed"] = Field(description="tracepoint lines, plain-format lines, or both")
    layouts: list[Literal["ftrace", "perf"]] = Field(description="header layouts seen: ftrace (the trace file and "
                                                     "trace-cmd report) and perf (perf script)")
    pid: int | None = Field(description="the VM replayed (null: the capture records no PIDs)")
    pids: list[int] = Field(description="every PID with KVM lines; one VM per PID, never merged")
    threads: list[CaptureThreadOut]
    skipped: dict[str, int] = Field(description="lines read but not events, by reason")


class ReplayResponse(Out):
    name: str
    vcpus: int
    events: int
    events_by_source: dict[str, int] = Field(description="events per source: qemu, firmware, linux, trace")
    initial: Literal["reset", "running", "given"] = Field(
        description="where every vCPU started: RESET (generators and captures by default), running (events and "
        "plain-format text by default) or the state given")
    qemu_host_writes: bool = Field(description="QEMU's KVM_SET_MSRS writes were added (source qemu)")
    capture: CaptureOut | None = Field(None, description="for trace text: how it was read")
    final_state: FinalStateOut
    eras: list[ReplayEraOut]


class GeneratorOut(Out):
    name: str
    description: str


class DecodeEraOut(Out):
    kernel: str
    ept: EptTypeOut | None
    matches: bool | None = Field(
        description="the decoded leaf has this era's memtype and IPAT (null: era refused the scenario)")
    error: str | None = None


class DecodeResponse(Out):
    raw: Hex16Out
    level: int
    page_size: Literal["4K", "2M", "1G"]
    gfn: HexOut | None
    gpa: HexOut
    memtype: MemTypeOut | None = Field(description="bits 5:3; null when reserved")
    memtype_bits: int
    ipat: bool
    notation: str
    fields: list[EptFieldOut]
    misconfig: list[str]
    misconfigured: bool
    eras: list[DecodeEraOut]

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """An EptLeaf (with gfn, gpa, notation and eras added): a reserved memtype has no name."""
        def members(leaf: Any) -> dict[str, Any]:
            bad = leaf.misconfig()
            mt = leaf.memtype_bits
            return {"memtype": MemType(mt) if mt in EPT_TYPES else None, "fields": leaf.fields(),
                    "misconfig": bad, "misconfigured": bool(bad)}
        return core(cls, v, members)


class MapRequest(Scenario):
    """A scenario without an address: the whole guest-physical space as runs of one answer."""

    model_config = ConfigDict(json_schema_extra={"examples": [{**SCENARIO_EXAMPLE, "pat_index": 1}]})

    pat_index: Int = Field(0, ge=0, le=7, description="the PAT entry whose effective type is shown")
    xen: XenMapIn | None = Field(None, exclude_if=lambda v: v is None,
                                 description='Xen domain facts, with kernel "xen" only')
    amd: AmdFacts = None
    private_ranges: PrivateRanges = None


class PermalinkRequest(Scenario):
    """The page's whole state: a scenario (as for resolve), the zap event, the second era,
    the view and the PAT entry the map shows. Everything is optional but `kernel`."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {**RESOLVE_EXAMPLE, "vs": _START.compare, "view": "zap", "pati": 1, "event": _START.event()}]})

    gpa: Addr = Field(0, json_schema_extra={"default": "0x0"})
    mmio: bool | None = Field(None, description="force is_mmio; omitted = from the memory map")
    host_page: HostPageIn | None = Field(None, description="the host page behind gpa, as in resolve")
    private: PrivateFlag = None
    event: ZapEventIn | None = Field(None, description="the zap event (view zap)")
    vs: SystemId | None = Field(None, description="the second era (compare, view diff)")
    view: Literal["resolve", "zap", "diff"] = "resolve"
    pati: Int = Field(0, ge=0, le=7, description="the PAT entry whose effective types the page's map shows")
    vs_vendor: Vendor = Field(VENDOR_INTEL, exclude_if=lambda v: v == VENDOR_INTEL,
                              description="the diff's second side: amd = KVM on AMD (the first is vm.vendor)")
    vs_type: VmType = Field(VM_TYPE_DEFAULT, exclude_if=lambda v: v == VM_TYPE_DEFAULT,
                            description="the diff's second side: tdx = a TDX VM (the first is vm.type)")
    xen: XenLinkIn | None = Field(None, exclude_if=lambda v: v is None,
                                  description='Xen facts, with kernel "xen" only (frames: the map\'s)')
    amd: AmdFacts = None
    private_ranges: PrivateRanges = None


class PermalinkResponse(Out):
    query: str = Field(description="the query string without '?': v=1 plus one parameter per non-default setting")
    url: str = Field(description="the permalink: this server's page `/` with that query")


class MapRunOut(Out):
    start: HexOut
    end: HexOut
    kind: Literal["ram", "mmio", "unmapped"]
    label: str
    guest_mtrr: MemTypeOut | None
    kvm_mtrr: MemTypeOut | None
    ept: EptTypeOut | None
    effective: MemTypeOut | None
    expected: MemTypeOut | None
    relation: str
    page_size: str

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A MapRun: an unmapped run has no EPT entry."""
        return core(cls, v, lambda r: {"ept": r if r.memtype is not None else None})


class MtrrRangeOut(Out):
    start: HexOut
    end: HexOut
    type: MemTypeOut
    source: str


class MapMtrrOut(Out):
    """What holds wherever `mtrr_ranges` has no range (app.kvm.memmap.mtrr_default)."""

    enabled: bool = Field(description="MTRRdefType.E: false means every address is UC, whatever the ranges hold")
    default: MtrrRangeOut = Field(description="[0, 2^MAXPHYADDR) with the default type (source `default`), "
                                  "or UC with source `disabled` when E is clear")


SYSTEM_KVM_INTEL, SYSTEM_KVM_AMD, SYSTEM_KVM_TDX = "kvm-intel", "kvm-amd", "kvm-tdx"
SYSTEMS = (SYSTEM_KVM_INTEL, SYSTEM_KVM_AMD, SYSTEM_KVM_TDX, XEN_SYSTEM_ID)
"""The `system` member of every resolve/zap/map answer: which model answered. kvm-intel:
the KVM eras (app.kvm, vmx_get_mt_mask()); kvm-amd: vm.vendor amd (app.kvm.svm); kvm-tdx:
vm.type tdx (app.kvm.tdx); xen: kernel xen, xen-4.19 or xen-4.21 (app.xen). The response
models spell them as Literal defaults (mypy reads those); they are checked against these."""


class MapResponse(Out):
    """KVM on Intel (`system` kvm-intel) and TDs (kvm-tdx, `TdxMapResponse`)."""

    system: Literal["kvm-intel", "kvm-tdx"] = Field("kvm-intel", description="which model answered")
    kernel: str = Field(description="the era id; kernel_info says more")
    kernel_info: KernelOut
    pat_index: int
    runs: list[MapRunOut]
    mtrr_ranges: list[MtrrRangeOut]
    mtrr: MapMtrrOut


class TdxMapRunOut(MapRunOut):
    """A run of a TD's map: the Intel run's members; `private` true on the runs inside the
    request's private_ranges (left out on shared runs and holes)."""

    private: bool | None = Field(None, exclude_if=lambda v: not v,
                                 description="the GPAs are private (Secure EPT, 4K pages); omitted = shared")


class TdxMapResponse(MapResponse):
    """vm.type tdx: the shared GPAs' EPT (the v6.16 rules with IGNORE_GUEST_PAT off) and, for
    `private_ranges`, the private GPAs' Secure EPT (runs with `private` true)."""

    runs: list[TdxMapRunOut]  # type: ignore[assignment]

    tdx_fixed: list[str] = Field(description="fields the request left out, set to the value the TDX module fixes")
    notes: list[str]


class SvmKernelOut(Out):
    asked: str = Field(description="the kernel as given")
    series: str = Field(description="the kernel series the AMD rules use (an era id is its first release)")
    era: str
    label: str
    notes: list[str]

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """An SvmKernel: its series is a (major, minor) pair."""
        return core(cls, v, lambda k: {"series": f"{k.series[0]}.{k.series[1]}", "notes": list(k.notes)})


class NptRunOut(Out):
    """The NPT leaf KVM builds on AMD: no memory type, no IPAT; its PWT/PCD/PAT bits select a
    host PAT entry, combined with the host MTRR (app.kvm.svm host_type)."""

    host_pat_index: int = Field(description="host PAT entry the leaf's PWT/PCD/PAT select (KVM: always 0)")
    pte_bits: Hex2Out = Field(description="the leaf's PWT (bit 3), PCD (bit 4) and PAT bit (7 for 4K, 12 above)")
    host_pat_type: MemTypeOut
    host_mtrr: MemTypeOut = Field(description="host MTRR type: amd.host_mtrr, or by kind (WB for ram, UC for mmio)")
    host_type: MemTypeOut = Field(description="host MTRR x host PAT entry")
    gpat_type: MemTypeOut = Field(description="the VMCB g_pat entry pat_index selects (WB with CR0.PG=0)")


class AmdMapRunOut(Out):
    """A run of the AMD map: the Intel run's members, `npt` in place of `ept` (null: NPT
    leaves hold no memtype) and no `kvm_mtrr` (KVM stores guest MTRRs only)."""

    start: HexOut
    end: HexOut
    kind: Literal["ram", "mmio", "unmapped"]
    label: str
    guest_mtrr: MemTypeOut | None
    kvm_mtrr: None = None
    ept: None = None
    npt: NptRunOut | None
    effective: MemTypeOut | None
    expected: MemTypeOut | None
    relation: str
    page_size: str

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """An SvmMapRun: its host_* members are `npt` (null in a hole)."""
        def members(r: Any) -> dict[str, Any]:
            if r.host_pat_index is None:
                return {"npt": None}
            return {"npt": {"host_pat_index": r.host_pat_index,
                            "pte_bits": index_to_pte_bits(r.host_pat_index, r.page_size != "4K"),
                            "host_pat_type": r.host_pat_type, "host_mtrr": r.host_mtrr, "host_type": r.host_type,
                            "gpat_type": r.gpat_type}}
        return core(cls, v, members)


class AmdMapResponse(Out):
    system: Literal["kvm-amd"] = "kvm-amd"
    vendor: str
    type: str
    kernel: str = Field(description="the era the kernel falls in")
    kernel_info: SvmKernelOut
    pat_index: int
    host_pat: Hex16Out = Field(description="the host IA32_PAT (amd.host_pat; default Linux's)")
    host_mtrr: MemTypeOut | None = Field(None, exclude_if=lambda v: v is None,
                                         description="amd.host_mtrr as given (omitted: by kind)")
    runs: list[AmdMapRunOut]
    mtrr_ranges: list[MtrrRangeOut]
    mtrr: MapMtrrOut
    notes: list[str]


class XenRunEptOut(Out):
    """The EPT entry epte_get_entry_emt() gives a run (after any superpage split)."""

    memtype: MemTypeOut | None = Field(description="the EMT; null would be EMT 7 (never in a map: split first)")
    emt_field: int = Field(description="EPT bits 5:3 as ept_set_entry() writes them (7 = misconfigured)")
    ipat: bool
    mask: Hex2Out = Field(description="EPT bits 6:3: EMT << 3 | IPAT << 6")
    notation: str = Field(description="Xen's dump notation: WB! = WB with IPAT, ?? = EMT 7")
    rule: str = Field(description="the test of epte_get_entry_emt() that decided (mmio_ro, no_passthrough, special, "
                      "mmio_direct, grant_foreign, pinned, mtrr, combine)")

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A XenMapRun's emt, ipat and rule."""
        def members(r: Any) -> dict[str, Any]:
            if r.emt is None:
                return {"memtype": None, "emt_field": 7, "mask": 7 << 3 | (1 << 6 if r.ipat else 0), "notation": "??"}
            return {**_ept_members(r.emt, r.ipat), "emt_field": int(r.emt)}
        return core(cls, v, members)


class XenMapRunOut(Out):
    """A run of the Xen map: the Intel run's members with `ept` the EMT/IPAT Xen writes, no
    `kvm_mtrr`, and `xen_mtrr` (Xen's mtrr_get_type() at the run's order), `p2m_type`."""

    start: HexOut
    end: HexOut
    kind: Literal["ram", "mmio", "unmapped"]
    label: str
    p2m_type: str = Field(description="p2m_ram_rw (ram), p2m_mmio_direct (mmio) or xen.frames' type, empty in a "
                          "hole")
    guest_mtrr: MemTypeOut | None
    kvm_mtrr: None = None
    xen_mtrr: MemTypeOut | None = Field(description="Xen's mtrr_get_type() of the guest MTRRs at the run's order")
    mmio_ro: bool = Field(False, exclude_if=lambda v: not v,
                          description="true: the frames are in mmio_ro_ranges (xen.frames); omitted otherwise")
    special: bool = Field(False, exclude_if=lambda v: not v,
                          description="true: the frames are special pages (xen.frames); omitted otherwise")
    ept: XenRunEptOut | None
    effective: MemTypeOut | None
    expected: MemTypeOut | None
    relation: str
    page_size: str

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A XenMapRun: a hole has no EPT entry."""
        return core(cls, v, lambda r: {"ept": r if r.kind != "unmapped" else None})


class XenVersionOut(Out):
    id: str
    title: str
    releases: str
    tag: str
    commit: str


class XenCdOut(Out):
    """Guest CR0.CD under Xen: the guest's bit reaches the hardware CR0; vmx_handle_cd() may
    also load an all-UC PAT (no-fill)."""

    hw_cr0_cd: bool
    handle_cd: bool = Field(description="vmx_handle_cd() runs on CD toggles (IOMMU and I/O or PCI devices)")
    cache_mode: str = Field(description="normal, or no-fill (vmx_handle_cd with CD=1)")
    vmcs_pat: str = Field(description="the PAT in GUEST_PAT")

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        return core(cls, v, lambda c: {"vmcs_pat": c.vmcs_pat.hex()})


class XenMapResponse(Out):
    system: Literal["xen"] = "xen"
    kernel: str = Field(description="as given: xen, xen-4.19 or xen-4.21")
    version: XenVersionOut
    pat_index: int
    host_mtrr: MemTypeOut | None = Field(description="the host MTRR type given for every frame, or null: by kind")
    cr0_cd: XenCdOut
    runs: list[XenMapRunOut]
    mtrr_ranges: list[MtrrRangeOut]
    mtrr: MapMtrrOut
    notes: list[str]


class PresetOut(Out):
    name: str
    title: str
    description: str
    request: ResolveRequest
    compare: str | None = Field(None, description="an era worth comparing with (POST /api/v1/diff or a second "
                                "resolve)")
    event: dict[str, Any] | None = Field(None, description="a zap event worth trying (POST /api/v1/zap with this as "
                                         "event)")
    permalink: str


class Health(Out):
    status: Literal["ok"]


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    rule: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details (application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[ErrorItem] = Field(default_factory=list, description="FastAPI-style loc/msg/type entries")


# -- POST /decode/trace: every SPTE line of a pasted trace -------------------------------------

SPTE_TRACE_EXAMPLE = (
    "CPU 0/KVM-995362 [016] 55709.716256: kvm_mmu_set_spte:     gfn fee00 spte 60000002fee00e77 (rwxu) "
    "level 1 at 10a5b1008\n"
    "qemu-system-x86-8397    [002] .....  1404.389373: kvm_tdp_mmu_spte_changed: as id 0 gfn 100 "
    "level 1 old_spte 600000012345ef77 new_spte 5a0\n"
    "CPU 1/KVM 1821753 [015] 4831258.258053: kvmmmu:kvm_mmu_spte_requested: gfn 1234 pfn 56789 level 1\n"
)


class DecodeTraceRequest(Strict):
    """Pasted trace text (trace-cmd report, perf script or the ftrace `trace` file), the
    host vendor, and (Intel) the scenario the era comparison is computed for."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"trace": SPTE_TRACE_EXAMPLE},
        {"trace": "CPU 0/KVM-4711 [003] 812.000001: kvm_mmu_set_spte: gfn 1000 spte 8000000101000867 (rw-u) "
                  "level 1 at 1f3a2008", "vendor": "amd", "host_pat": "0x0407050600070106"},
    ]})

    trace: str = Field(max_length=MAX_TRACE_CHARS,
                       description=f"the trace text: at most {MAX_TRACE_CHARS} characters and {MAX_TRACE_LINES} "
                       "lines; lines of other tracepoints are counted and skipped")
    vendor: Vendor = Field(VENDOR_INTEL, description="the host CPU: intel = EPT entries, amd = NPT "
                                            "entries (no memory type in them)")
    kernels: list[KernelId] | None = Field(None, min_length=1, max_length=16,
                                           description="eras to compare with (Intel); omitted = all")
    vm: VmIn = Field(default_factory=VmIn)
    vcpu: VcpuIn = Field(default_factory=VcpuIn)
    mmio: bool | None = Field(None, description="force is_mmio for every page; omitted = from the memory map")
    host_pat: PatValue | None = Field(None, description="AMD: the host's IA32_PAT, to name the type of the host "
                                      "PAT entry an NPT leaf selects (one input of the effective type, not it)")
    fields: bool = Field(True, description="false: leave out each SPTE's bit-field list (about a third of a full-size "
                         "answer)")


class TraceHeaderOut(Out):
    comm: str
    pid: int
    cpu: int
    ts: str


class SpteValueOut(Out):
    raw: str
    kind: Literal["leaf", "table", "not-present", "frozen", "mmio"]
    meaning: str
    present: bool = Field(description="the CPU would use the entry (EPT: any of R/W/X; NPT: P)")
    hpa: str | None
    page_size: Literal["4K", "2M", "1G"] | None
    permissions: str = Field(description="r, w, x, u in kvm_mmu_set_spte's order (EPT: R, W, X, u = R; "
                             "NPT: r = P, W = RW, x = not NX, u = US)")
    memtype: MemTypeName | None = Field(description="EPT leaves: bits 5:3 (null when reserved, and on AMD)")
    memtype_bits: int | None
    ipat: bool | None
    notation: str | None
    host_pat_index: int | None = Field(description="NPT leaves: 4*PAT + 2*PCD + PWT")
    host_pat_type: MemTypeName | None = Field(description="NPT leaves: the host PAT entry's type, when host_pat "
                                              "is given")
    misconfig: list[str]
    fields: list[EptFieldOut]
    notes: list[str]


class SpteEraOut(Out):
    kernel: str
    ept: EptTypeOut | None
    matches: bool | None = Field(description="the line's leaf has this era's memtype and IPAT (null: no leaf "
                                 "on the line, or the era refused the scenario)")
    error: str | None = None


class SpteLineOut(Out):
    line: int = Field(description="1-based line number in the pasted text")
    tracepoint: Literal["kvm_mmu_set_spte", "kvm_tdp_mmu_spte_changed", "kvm_mmu_spte_requested"]
    header: TraceHeaderOut | None
    gfn: str
    gpa: str
    level: int
    page_size: Literal["4K", "2M", "1G"] | None
    as_id: int | None
    pfn: str | None
    flags: str | None = Field(description="kvm_mmu_set_spte's printed (rwxu) flags")
    at: str | None = Field(description="kvm_mmu_set_spte: the SPTE's own physical address")
    spte: SpteValueOut | None
    old: SpteValueOut | None
    new: SpteValueOut | None
    change: str | None
    notes: list[str]
    eras: list[SpteEraOut] = Field(description="Intel: what each era's vmx_get_mt_mask() puts there for the "
                                   "scenario; empty on AMD")


class DecodeTraceResponse(Out):
    vendor: Literal["intel", "amd"]
    lines: int
    ignored_lines: int = Field(description="lines that are not SPTE lines (other tracepoints, headers)")
    counts: dict[str, int] = Field(description="SPTE lines per tracepoint")
    kernels: list[str] = Field(description="the eras compared (empty on AMD)")
    notes: list[str]
    entries: list[SpteLineOut]


for _model, _ids in ((MapResponse, (SYSTEM_KVM_INTEL, SYSTEM_KVM_TDX)), (AmdMapResponse, (SYSTEM_KVM_AMD,)),
                     (XenMapResponse, (XEN_SYSTEM_ID,))):
    assert get_args(_model.model_fields["system"].annotation) == _ids, _model


# -- AMD, TDX and Xen answers of resolve and zap (issue 14) --------------------------------


class NptLeafOut(Out):
    """The NPT leaf KVM builds (app.x86.npt.NptEntry): no memory type and no IPAT exist in it."""

    raw: Hex16Out
    level: int
    page_size: Literal["4K", "2M", "1G"]
    host_pat_index: int = Field(description="the host PAT entry its PWT/PCD/PAT bits select (KVM: 0)")
    memtype: None = Field(None, description="always null: an NPT entry has no memory-type field")
    ipat: None = Field(None, description="always null: an NPT entry has no IPAT bit")
    fields: list[EptFieldOut]

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """An NptEntry: its fields are a method, its page size a PageSize."""
        return core(cls, v, lambda n: {"page_size": str(n.page_size), "fields": n.fields()})


class SvmHostOut(Out):
    pat_index: int
    pat_type: MemTypeOut = Field(description="the host PAT entry the leaf selects")
    mtrr: MemTypeOut = Field(description="the host MTRR type (amd.host_mtrr; default WB for RAM, UC for MMIO)")
    type: MemTypeOut = Field(description="host MTRR x host PAT entry")
    pat_msr: Hex16Out | None = Field(None, exclude_if=lambda v: v is None,
                                     description="the host IA32_PAT, when amd.host_pat gave one other than Linux's")


class SvmCr0Out(Out):
    guest_cd: bool
    guest_nw: bool
    hw_cd: bool = Field(description="the CR0.CD the CPU runs the guest with (svm_set_cr0)")
    hw_nw: bool
    why: str


class SvmGpatOut(Out):
    value: str = Field(description="the VMCB g_pat the CPU uses")
    follows_guest: bool = Field(description="guest PAT writes reach g_pat (4.14+, 15038e147247)")
    why: str


class SvmRowOut(Out):
    index: int
    pte_bits: Hex2Out
    pte_flags: str
    guest_pat_type: MemTypeOut = Field(description="the guest's IA32_PAT entry")
    gpat_type: MemTypeOut = Field(description="the g_pat entry the CPU uses (WB with CR0.PG=0)")
    effective: MemTypeOut
    guest_expected: MemTypeOut | None
    expected_reason: str
    relation: Relation
    relation_reason: str


class SvmResolveResponse(Out):
    """POST /api/v1/resolve with vm.vendor amd (app.kvm.svm.svm_resolve)."""

    system: Literal["kvm-amd"] = "kvm-amd"
    vendor: str
    type: str
    kernel: str = Field(description="the era the kernel falls in")
    kernel_info: SvmKernelOut
    gpa: HexOut
    is_mmio: bool
    mmio_source: str
    npt: NptLeafOut
    host: SvmHostOut
    cr0: SvmCr0Out
    gpat: SvmGpatOut
    pat: list[SvmRowOut]
    path: list[StepOut]
    largest_page_by_guest_mtrrs: bool = Field(description="guest MTRRs still cap the NPT page size (up to 5.19)")
    notes: list[str]
    permalink: str

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """An SvmResult with vendor, type, gpa, is_mmio, mmio_source, guest_cd, guest_nw and
        permalink added (app/api/systems.py)."""
        return core(cls, v, lambda r: {
            "kernel": r.kernel.era, "kernel_info": r.kernel,
            "host": {"pat_index": r.host_pat_index, "pat_type": r.host_pat_type, "mtrr": r.host_mtrr,
                     "type": r.host_type, "pat_msr": getattr(r, "host_pat_msr", None)},
            "cr0": {"guest_cd": r.guest_cd, "guest_nw": r.guest_nw, "hw_cd": r.cr0.cd, "hw_nw": r.cr0.nw,
                    "why": r.cr0.why},
            "gpat": {"value": r.gpat.pat.hex(), "follows_guest": r.kernel.gpat_follows_guest, "why": r.gpat.why},
            "pat": r.rows})


class SvmZapResponse(Out):
    """POST /api/v1/zap with vm.vendor amd: the calls KVM makes; none is needed (no NPT entry
    holds a memory type), so every zapped page is excess."""

    system: Literal["kvm-amd"] = "kvm-amd"
    vendor: str
    type: str
    kernel: str
    kernel_info: SvmKernelOut
    event: EventOut
    calls: list[RangeOut] = Field(description="kvm_zap_gfn_range() calls, as made")
    zapped_mapped: list[RangeOut] = Field(description="zapped, inside memslots")
    needed: list[RangeOut] = Field(description="always empty on NPT")
    stale: list[RangeOut] = Field(description="always empty on NPT")
    excess: list[RangeOut] = Field(description="every zapped page inside memslots")
    counts: ZapCounts
    path: list[StepOut]
    notes: list[str]
    permalink: str

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """An SvmZap (app.render_kinds) with vendor, type and permalink added."""
        def members(z: Any) -> dict[str, Any]:
            n = sum(max(0, e - s) >> 12 for s, e in z.zapped)
            return {"kernel": z.kernel.era, "kernel_info": z.kernel, "zapped_mapped": z.zapped, "needed": [],
                    "stale": [], "excess": z.zapped, "notes": [z.note],
                    "counts": {"zap_calls": len(z.calls), "zapped_pages": n, "needed_pages": 0, "stale_pages": 0,
                               "excess_pages": n}}
        return core(cls, v, members)


class TdxEptOut(Out):
    memtype: MemTypeOut
    ipat: bool
    notation: str
    why: str
    secure_ept: bool = Field(description="the GPA is private: the TDX module's Secure EPT holds the entry")


class TdxRowOut(Out):
    index: int
    pat_type: MemTypeOut
    effective: MemTypeOut
    guest_expected: MemTypeOut | None
    relation: Relation


class TdxResolveResponse(Out):
    """POST /api/v1/resolve with vm.type tdx (app.kvm.tdx.tdx_resolve)."""

    system: Literal["kvm-tdx"] = "kvm-tdx"
    vendor: str
    type: str
    kernel: str
    kernel_info: KernelOut
    gpa: HexOut
    is_mmio: bool
    mmio_source: str
    private: bool
    ept: TdxEptOut
    path: list[StepOut] = Field(description="the v6.16 decision path (empty for a private GPA)")
    pat: list[TdxRowOut]
    tdx_fixed: list[str] = Field(description="fields the request left out, set to the value the TDX module fixes")
    notes: list[str]
    permalink: str

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A TdxResult with the scenario's members added (app/api/systems.py)."""
        return core(cls, v, lambda r: {
            "kernel": r.kernel_info.era,
            "ept": {"memtype": r.memtype, "ipat": r.ipat, "notation": notation(r.memtype, r.ipat), "why": r.why,
                    "secure_ept": r.private},
            "pat": r.rows})


class XenEptOut(Out):
    memtype: MemTypeOut | None = Field(description="the EMT; null for -1 (EMT 7 written, split on misconfiguration)")
    emt_field: int = Field(description="EPT bits 5:3 as ept_set_entry() writes them (7 = misconfigured)")
    ipat: bool
    mask: Hex2Out = Field(description="EPT bits 6:3")
    notation: str = Field(description="WB! = WB with IPAT, ?? = EMT 7")
    split: bool = Field(description="-1: resolve_misconfig() splits the superpage and recomputes")
    leaf: LeafOut

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """An EmtResult with the leaf added."""
        return core(cls, v, lambda e: {"memtype": e.emt, "notation": e.label})


class XenCdPathOut(XenCdOut):
    path: list[StepOut] = Field(description="vmx_update_guest_cr, hvm_set_cr0 and vmx_handle_cd, in order")


class XenLookupOut(Out):
    type: MemTypeOut | None = Field(description="null: mtrr_get_type() returned -1")
    reason: str


class XenResolveResponse(Out):
    """POST /api/v1/resolve with kernel xen (app.xen.resolve.resolve_xen)."""

    kernel: str = Field(description="as given: xen, xen-4.19 or xen-4.21")
    system: Literal["xen"] = "xen"
    version: XenVersionOut
    gpa: HexOut
    gfn: HexOut = Field(description="the entry's first gfn (gpa >> 12 aligned down to order)")
    mfn: HexOut
    order: int
    ept: XenEptOut
    path: list[StepOut] = Field(description="epte_get_entry_emt()'s tests in order")
    cr0_cd: XenCdPathOut
    guest_mtrr: LookupOut = Field(description="the SDM's lookup of the guest MTRRs (what the guest expects)")
    xen_mtrr: XenLookupOut | None = Field(description="Xen's mtrr_get_type() at the entry's order; null without "
                                          "a vCPU")
    mtrr_finding: str | None
    pat: list[PatRowOut] = Field(description="empty when the entry holds EMT 7")
    permalink: str

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A XenResolution with kernel and gpa added."""
        return core(cls, v, lambda r: {
            "gfn": r.page.gfn, "mfn": r.page.mfn, "order": r.page.order, "ept": View(r.emt, leaf=r.leaf),
            "path": r.emt.path, "cr0_cd": r.cd, "pat": r.pat_rows})


class XenEventOut(Out):
    kind: str
    description: str
    msr: HexOut | None = None
    value: bool | str | None = None
    cr0_nw: bool | None = None
    resource: str | None = Field(None, description="passthrough events: io or pci")

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """An Event (as EventOut) or a Passthrough."""
        def members(e: Any) -> dict[str, Any]:
            out: dict[str, Any] = {"description": e.describe()}
            if hasattr(e, "value"):
                out["value"] = e.value if isinstance(e.value, bool) else f"{e.value:#x}"
            return out
        return core(cls, v, members)


class XenEmtTypeOut(Out):
    memtype: MemTypeOut | None
    ipat: bool
    emt_field: int
    mask: Hex2Out
    notation: str

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """An (EMT or None, IPAT) pair."""
        if not isinstance(v, tuple):
            return v
        mt, ipat = v
        if mt is None:
            return {"memtype": None, "ipat": ipat, "emt_field": 7, "mask": 7 << 3 | (1 << 6 if ipat else 0),
                    "notation": "??"}
        return {**_ept_members(mt, ipat), "emt_field": int(mt)}


class XenChangeOut(Out):
    start: HexOut
    end: HexOut
    pages: int
    kind: Literal["ram", "mmio"]
    before: XenEmtTypeOut
    after: XenEmtTypeOut

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        return core(cls, v, lambda c: {"pages": (c.end - c.start) >> 12})


class XenEptActionOut(Out):
    text: str = Field(description='"invalidated, recomputed on next access" or "no EPT change"')
    invalidated: bool = Field(description="memory_type_changed() marked the root entries EMT 7")
    scope: str
    flush: bool = Field(description="memory_type_changed() flushed every CPU's caches (flush_all)")


class XenZapCounts(Out):
    invalidated_pages: int
    needed_pages: int
    stale_pages: int
    excess_pages: int


class XenZapResponse(Out):
    """POST /api/v1/zap with kernel xen: Xen marks EPT entries with EMT 7 and recomputes them
    on the next access instead of zapping (app.xen.zap.xen_zap)."""

    system: Literal["xen"] = "xen"
    kernel: str
    version: XenVersionOut
    event: XenEventOut
    ept: XenEptActionOut
    path: list[StepOut] = Field(description="what Xen runs for the event, in order")
    cr0_cd_before: XenCdOut
    cr0_cd_after: XenCdOut
    invalidated: list[RangeOut] = Field(description="mapped ranges marked EMT 7 (every one, or none)")
    needed: list[RangeOut] = Field(description="mapped ranges whose EMT or IPAT changes")
    stale: list[RangeOut] = Field(description="needed but not invalidated: the old EMT survives")
    excess: list[RangeOut] = Field(description="invalidated although the EMT does not change (an exit each)")
    counts: XenZapCounts
    changes: list[XenChangeOut]
    notes: list[str]
    permalink: str

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A XenZap with kernel and permalink added."""
        def members(z: Any) -> dict[str, Any]:
            def n(rs: Any) -> int:
                return sum((e - s) >> 12 for s, e in rs)
            fx = z.effect
            return {"ept": {"text": fx.text, "invalidated": fx.invalidated, "scope": fx.scope, "flush": fx.flush},
                    "cr0_cd_before": z.cd_before, "cr0_cd_after": z.cd_after,
                    "counts": {"invalidated_pages": n(z.invalidated), "needed_pages": n(z.needed),
                               "stale_pages": n(z.stale), "excess_pages": n(z.excess)},
                    "invalidated": list(z.invalidated), "needed": list(z.needed), "stale": list(z.stale),
                    "excess": list(z.excess)}
        return core(cls, v, members)


if TYPE_CHECKING:
    SideStatus: TypeAlias = str
else:  # the statuses from their one definition, each with its text (app.system_diff.STATUS_TEXT)
    SideStatus = Literal[tuple(STATUS_TEXT)]
STATUS_HELP = "; ".join(f"{k}: {t}" for k, t in STATUS_TEXT.items())


class SideOut(Out):
    system: Literal["kvm-intel", "kvm-amd", "kvm-tdx", "xen"]
    asked: str = Field(description="as given in the request")
    label: str
    era: str | None = Field(description="the KVM era whose rules apply (null for Xen)")
    kernel_info: KernelOut | None = Field(None, description="kvm-intel, kvm-tdx: what `a`/`b` named")
    svm: SvmKernelOut | None = Field(None, description="kvm-amd: the kernel as the AMD rules read it")
    host: str | None = Field(None, exclude_if=lambda v: v is None,
                             description="kvm-amd with `amd` given: the host side the answers use")
    xen: XenVersionOut | None = Field(None, description="xen: the release line")

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A system_diff.Side (with kernel_info added for KVM on Intel)."""
        return core(cls, v, lambda sd: {"era": sd.era.id if sd.era is not None else
                                        sd.svm.era if sd.svm is not None else None,
                                        "host": sd.host.describe() if sd.host is not None and not sd.host.is_default
                                        else None})


class DimensionOut(Out):
    name: str
    values: list[Any]
    meaning: str
    a: SideStatus = Field(description=f"{STATUS_HELP} (a fixed dimension's value: fixed_a)")
    b: SideStatus
    in_space: bool = Field(description="part of the compared space (read by A or B)")
    fixed_a: Any = Field(None, exclude_if=lambda v: v is None,
                         description="a `fixed` dimension's one value for A (a TD's cr0_cd: false)")
    fixed_b: Any = Field(None, exclude_if=lambda v: v is None, description="as fixed_a, for B")


class SysRowOut(Out):
    state: dict[str, Any] = Field(description="the state's value of every dimension in the space")
    entry_a: str = Field(description="A's entry: EPT notation (WB! = IPAT), or for AMD 'NPT: host T'")
    entry_b: str
    effective_a: MemTypeOut
    effective_b: MemTypeOut
    classification: Relation = Field(description="effective_b relative to effective_a (same: the EPT entries "
                                     "differ only)")
    relation_a: Relation = Field(description="effective_a relative to the guest's expectation")
    relation_b: Relation

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        return core(cls, v, lambda r: {"entry_a": r.a.entry, "entry_b": r.b.entry, "effective_a": r.a.effective,
                                       "effective_b": r.b.effective})


class SysGroupOut(Out):
    pattern: dict[str, Any] = Field(description="dimensions of the space; '*' = every value gives this outcome")
    count: int
    entry_a: str
    entry_b: str
    effective_a: MemTypeOut
    effective_b: MemTypeOut
    classification: Relation


class SystemDiffResponse(Out):
    """POST /api/v1/diff when a side is Xen, KVM on AMD or a TDX VM (app/system_diff.py)."""

    a: SideOut
    b: SideOut
    dimensions: list[DimensionOut] = Field(description="every dimension of the joint space and each side's status")
    only_a: list[str] = Field(description="dimensions A has (read or not) and B lacks")
    only_b: list[str] = Field(description="dimensions B has and A lacks")
    mapping: list[str] = Field(description="how the shared dimensions stand for the same fact in both systems, "
                               "and what a missing one means")
    not_compared: list[str] = Field(description="states of either system outside the joint space")
    total_states: int
    compared: int
    counts: dict[str, int] = Field(description="differ, weaker, stronger, incomparable, entry_only")
    skipped: dict[str, int] = Field(description="states a side cannot have, by reason")
    entries_comparable: bool = Field(description="both entries are EPT entries: a row may differ in the entry "
                                     "alone (entry_only)")
    groups: list[SysGroupOut]
    rows: list[SysRowOut]
    truncated: bool
    permalink: str

    @model_validator(mode="before")
    @classmethod
    def core_members(cls, v: Any) -> Any:
        """A SystemDiff with groups, rows, truncated and permalink added."""
        return core(cls, v, lambda d: {
            "dimensions": [{"name": k, "values": list(vals), "meaning": SYSTEM_DIM_MEANING[k], "a": sa, "b": sb,
                            "in_space": k in {n for n, _ in d.dimensions}, "fixed_a": d.fixed("a").get(k),
                            "fixed_b": d.fixed("b").get(k)} for k, vals, sa, sb in d.status()],
            "only_a": d.only("a"), "only_b": d.only("b"), "mapping": d.mapping(), "not_compared": d.not_compared()})
