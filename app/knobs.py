"""The scenario inputs, one row each: the single definition the other layers derive from.

Every input a question can set (the VM, the vCPU, the address, the kernel, the host page
behind the address) and every other permalink parameter (view, compare era, zap event, the
page's PAT entry) is one `Knob` below (the VM's are declared at the VmConfig fields they
fill, app.kvm.scenario.knob, and collected here in field order), giving in one place:

- where it lives in the core (`owner` + `attr`: a VmConfig, VcpuState, Access, HostPage,
  Event or LinkState field) and its default, read from that dataclass (never retyped);
- its API request-body field (`api`, a dotted path in POST /api/v1/permalink's body, which
  is a resolve body plus the page's state: app/api/schemas.py PermalinkRequest);
- its permalink parameter, long (`param`) and short-form code (`short`);
- its CLI flag (`cli`), its page control (`control`, the element id), page label and help.

Derived from the table: app/permalink.py (encode, decode, SHORT_CODES and the short form's
hex parameters), app/cli.py (the scenario and event options), app/api/schemas.py (VmIn,
the request's `vm` object), templates/index.html (the
checkboxes and number inputs of the VM and vCPU, through app/pages.py) and static/app.js
(readState/writeState read and write those controls from the rows in the page's initial
data). tests/test_knobs.py checks the table against each of them.

Pure data: no web imports. `kind` says how the value is written in a link and on the
command line; the rows of kind `bool`, `opt_bool`, `dec` and `hex` are encoded and decoded
by one generic loop (app/permalink.py), the others (`text`) by a named codec there.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from functools import cached_property
from typing import Any

from .kvm.host_page import HostPage
from .kvm.scenario import Access, VcpuState, VmConfig
from .kvm.svm import HOST_MTRR_TYPES, SvmHost
from .kvm.vm_kinds import VENDORS, VM_TYPES
from .xen.facts import COVERAGES, HOST_MTRR_CHOICES, P2M_TYPES, XenFacts
from .xen.map import FRAME_FLAGS

OWNERS = ("link", "vm", "vcpu", "access", "host_page", "event", "xen", "amd")
KINDS = ("bool", "opt_bool", "dec", "hex", "text")
GENERIC_KINDS = ("bool", "opt_bool", "dec", "hex")
"""Kinds app/permalink.py encodes and decodes itself; `text` rows have a named codec."""


def _owner_class(owner: str) -> type | None:
    if owner == "link":
        from .permalink import LinkState  # permalink imports this module

        return LinkState
    return {"vm": VmConfig, "vcpu": VcpuState, "access": Access, "host_page": HostPage, "xen": XenFacts,
            "amd": SvmHost}.get(owner)


def _field_default(cls: type, name: str) -> Any:
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
            return None  # required (HostPage.cls): no default
    raise AttributeError(f"{cls.__name__} has no field {name!r}")


@dataclass(frozen=True, kw_only=True)
class Knob:
    """One scenario input or permalink parameter (see the module docstring)."""

    param: str
    owner: str
    attr: str | None
    api: str | None
    short: str | None = None
    cli: str | None = None
    kind: str = "text"
    label: str = ""
    help: str = ""
    values: str = ""
    """How a value is written (CLI help, docs); `bool` rows: 0/1. Rows with `choices`: those."""
    choices: tuple[str, ...] = ()
    """`text` rows with a closed set of values: the API member is a Literal of them, the
    page's select offers them."""
    echo_default: bool = True
    """False: an echoed request body leaves the member out while it holds its default (the
    rows added after the first round, so the Intel answers' bodies stayed as they were)."""
    control: str | None = None
    """The page element that edits it (id); None: the page has no editor for it."""
    abbr: str | None = None
    """A glossary key (app/pages.py GLOSSARY) the page label shows as <abbr>."""
    wide: bool = False
    """Page layout: the checkbox takes a whole row."""
    key: str | None = None
    """The page's keyboard shortcut for it, named in the control's tooltip."""
    bounds: tuple[int, int] | None = None
    """`dec` rows: the numbers a link may carry (a rule outside them is the resolver's)."""
    rule: str = ""
    """`dec` rows: the rule named when a link's number is out of `bounds`; the map's lists
    (private_ranges, xen_frames): how a link writes them, the one text of that format (the
    decoder's refusal says it, app/permalink.py's docstring points here)."""
    page_range: tuple[int, int] | None = None
    """`dec` rows: the number input's min and max."""
    part_of: str | None = None
    """A parameter written and read by another row's codec (the MTRR layout's registers,
    the host page's fields, the event's members): the `param` of that row."""

    @cached_property
    def default(self) -> Any:
        """The core default, read from the owner dataclass (None: no default)."""
        cls = _owner_class(self.owner)
        if cls is None or self.attr is None:
            return None
        head, *rest = self.attr.split(".")
        value = _field_default(cls, head)
        for part in rest:
            value = getattr(value, part)
        return value

    @property
    def generic(self) -> bool:
        """Encoded and decoded by app/permalink.py's loop (not by a named codec)."""
        return self.kind in GENERIC_KINDS and self.part_of is None

    @property
    def api_leaf(self) -> str | None:
        return self.api.rsplit(".", 1)[-1] if self.api else None

    def __post_init__(self) -> None:
        if self.choices and not self.values:
            object.__setattr__(self, "values", ", ".join(self.choices))

    @property
    def cli_help(self) -> str:
        values = "0/1" if self.kind == "bool" and not self.values else self.values
        return f"{self.help}: {values}" if values else self.help

    @property
    def api_help(self) -> str:
        """The API member's description (booleans and choices need no value list: the
        schema's type or enum says it)."""
        return f"{self.help}: {self.values}" if self.values and self.kind != "bool" and not self.choices else self.help

    @property
    def title(self) -> str:
        """The page control's tooltip."""
        return f"{self.help} ({self.key})" if self.key else self.help

    def get(self, obj: Any) -> Any:
        """The value on a core object of the owner's type (dotted attr followed)."""
        assert self.attr is not None
        for part in self.attr.split("."):
            obj = getattr(obj, part)
        return obj

    def page(self) -> dict[str, Any]:
        """What the page needs of the row (template controls and app.js state code)."""
        return {"param": self.param, "owner": self.owner, "attr": self.attr, "api": self.api, "name": self.api_leaf,
                "kind": self.kind, "control": self.control, "label": self.label, "abbr": self.abbr,
                "wide": self.wide, "title": self.title, "choices": list(self.choices),
                "default": self.default if self.generic or self.choices else None,
                "min": self.page_range[0] if self.page_range else None,
                "max": self.page_range[1] if self.page_range else None}


def _vm_rows() -> tuple[Knob, ...]:
    """The VM rows, one per VmConfig field, in field order, from the row each field is
    declared with (app.kvm.scenario.knob): a VM input is written once, beside the field the
    rules read, so adding one touches that module, the rule, its tests and the README."""
    out = []
    for f in fields(VmConfig):
        row = dict(f.metadata.get("knob") or {})
        if not row:
            raise TypeError(f"VmConfig.{f.name} has no knob row: declare it with app.kvm.scenario.knob()")
        name = row.pop("name", f.name)
        out.append(Knob(owner="vm", attr=f.name, api=f"vm.{name}", **row))
    return tuple(out)


KNOBS: tuple[Knob, ...] = (
    # -- the page's view and the eras --------------------------------------------------
    Knob(param="view", owner="link", attr="view", api="view", short="w",
         help="which page view: resolve, zap or diff", values="resolve, zap or diff"),
    Knob(param="kernel", owner="link", attr="kernel", api="kernel", short="k", cli="--kernel", control="kernel",
         label="Era", help="era id (memtype-explorer eras) or kernel version (6.12.78)"),
    Knob(param="vs", owner="link", attr="vs", api="vs", short="s", control="vs", label="Compare",
         help="the second era of a diff view"),
    # -- the VM: its rows are declared at VmConfig's fields (app.kvm.scenario.knob) -------
    *_vm_rows(),
    # -- the vCPU (app.kvm.scenario.VcpuState) -------------------------------------------
    Knob(param="cd", owner="vcpu", attr="cr0_cd", api="vcpu.cr0_cd", short="c", cli="--cd", kind="bool",
         control="cr0_cd", label="CR0.CD", abbr="CD", key="c", help="guest CR0.CD (cache disable)"),
    Knob(param="nw", owner="vcpu", attr="cr0_nw", api="vcpu.cr0_nw", short="N", cli="--nw", kind="bool",
         control="cr0_nw", label="CR0.NW", abbr="NW", help="guest CR0.NW (not write-through; needs CD=1)"),
    Knob(param="pg", owner="vcpu", attr="cr0_pg", api="vcpu.cr0_pg", short="P", cli="--pg", kind="bool",
         control="cr0_pg", label="CR0.PG", abbr="PG", help="guest CR0.PG (paging; PAT applies only with paging)"),
    Knob(param="pat", owner="vcpu", attr="pat", api="vcpu.pat", short="p", cli="--pat", control="pat-raw",
         label="raw value", help="guest IA32_PAT", values="power-on, linux, linux-legacy or hex"),
    Knob(param="mtrr", owner="vcpu", attr="mtrr", api="vcpu.mtrr", short="r", cli="--mtrr",
         label="MTRR layout", help="a named firmware MTRR layout for the VM's MAXPHYADDR (app.kvm.layouts)",
         values="ovmf, ovmf-linux, seabios, seabios-linux"),
    Knob(param="deftype", part_of="mtrr", owner="vcpu", attr="mtrr.def_type", api="vcpu.mtrr.def_type",
         short="d", cli="--deftype",
         kind="hex", control="mtrr-deftype", label="default type", help="MTRRdefType (0x2ff)", values="hex"),
    Knob(param="fixed", part_of="mtrr", owner="vcpu", attr="mtrr.fixed", api="vcpu.mtrr.fixed", short="f",
         cli="--fixed",
         label="fixed ranges", help="88 fixed-range types, run-length encoded", values="e.g. WB*16,UC*72"),
    Knob(param="var", part_of="mtrr", owner="vcpu", attr="mtrr.variable", api="vcpu.mtrr.variable", short="V",
         cli="--var", label="variable ranges", help="variable pairs in index order", values="base:mask,..."),
    # -- the access (app.kvm.scenario.Access) ------------------------------------------
    Knob(param="gpa", owner="access", attr="gpa", api="gpa", short="a", cli="--gpa", kind="hex", control="gpa",
         label="guest-physical", help="guest-physical address", values="hex"),
    Knob(param="mmio", owner="access", attr="mmio", api="mmio", short="M", cli="--mmio", kind="opt_bool",
         control="mmio", label="is_mmio", help="force is_mmio", values="0/1 (default: from the memory map)"),
    Knob(param="private", owner="access", attr="private", api="private", short="z", cli="--private",
         kind="opt_bool", control="private", label="private GPA (Secure EPT)",
         help="vm.type tdx only: the GPA is private (Secure EPT, built by the TDX module)",
         values="0/1 (default: shared)"),
    # -- the host page behind the address (app.kvm.host_page.HostPage) ---------------------
    Knob(param="host", owner="host_page", attr="cls", api="host_page.class", cli="--host",
         label="host page", help="the host page behind gpa: a preset or a class (app.kvm.host_page)",
         values="vga_dev_mem, vfio_bar, ... or ram, zero_page, reserved, no_struct_page"),
    Knob(param="host_mt", part_of="host", owner="host_page", attr="host_memtype", api="host_page.host_memtype",
         cli="--host-mt",
         label="host memtype", help="with a class: the memtype host PAT tracks", values="WB, WC, UC-, ..."),
    Knob(param="host_hpa", part_of="host", owner="host_page", attr="hpa", api="host_page.hpa",
         cli="--host-hpa", kind="hex",
         label="host physical address", help="with a class: the host physical address", values="hex"),
    Knob(param="host_e820", part_of="host", owner="host_page", attr="e820_ram", api="host_page.e820_ram",
         cli="--host-e820",
         kind="bool", label="raw e820 RAM", help="with a class: the raw e820 table maps the pfn as RAM"),
    Knob(param="host_pat", part_of="host", owner="host_page", attr="pat_enabled", api="host_page.pat_enabled",
         cli="--host-pat",
         kind="bool", label="host PAT", help="with a class: pat_enabled() on the host (0: booted with nopat)"),
    # -- the zap event (app.kvm.scenario.Event) ------------------------------------------
    Knob(param="event", owner="event", attr="kind", api="event.kind", short="e", cli="--event", control="event-kind",
         label="event", help="zap event kind", values="cr0_cd, mtrr_write, noncoherent_dma or pat_write"),
    Knob(param="event_msr", part_of="event", owner="event", attr="msr", api="event.msr", short="E",
         cli="--event-msr", kind="hex", control="event-msr", label="MSR", help="MSR of an mtrr_write", values="hex"),
    Knob(param="event_value", part_of="event", owner="event", attr="value", api="event.value", short="u",
         cli="--event-value",
         control="event-value", label="new value", help="new value", values="0/1, or hex for MSR writes"),
    Knob(param="event_nw", part_of="event", owner="event", attr="cr0_nw", api="event.cr0_nw", short="W",
         cli="--event-nw", kind="bool", control="event-nw", label="CR0.NW written", help="CR0.NW written with CD"),
    # -- Xen (kernel xen...: app.xen.facts.XenFacts, the API's `xen`) ------------------------
    Knob(param="vs_vendor", owner="link", attr="vs_vendor", api="vs_vendor", cli=None,
         help="the second era's vendor in a diff view (the first is vendor)", choices=VENDORS),
    Knob(param="vs_type", owner="link", attr="vs_type", api="vs_type", cli=None,
         help="the second era's VM type in a diff view (the first is vmtype)", choices=VM_TYPES),
    Knob(param="xen_iommu", owner="xen", attr="iommu", api="xen.iommu", cli="--xen-iommu", kind="bool",
         label="IOMMU", help="Xen: is_iommu_enabled(d)"),
    Knob(param="xen_io", owner="xen", attr="io_resources", api="xen.io_resources", cli="--xen-io", kind="bool",
         label="iomem/ioports", help="Xen: the domain holds iomem or ioport ranges"),
    Knob(param="xen_pci", owner="xen", attr="pci_devices", api="xen.pci_devices", cli="--xen-pci", kind="bool",
         label="PCI devices", help="Xen: PCI devices assigned (needs the IOMMU)"),
    Knob(param="xen_vcpu", owner="xen", attr="has_vcpu", api="xen.has_vcpu", cli="--xen-vcpu", kind="bool",
         label="has a vCPU", help="Xen: d->vcpu[0] exists (0: the guest MTRR side is WB)"),
    Knob(param="xen_pinned", owner="xen", attr="pinned", api="xen.pinned", cli="--xen-pinned",
         label="pinned ranges", help="Xen: pinned cache attribute ranges, comma-separated first-last:TYPE gfns",
         values="e.g. 0x100-0x1ff:WC"),
    Knob(param="xen_p2m", owner="xen", attr="p2m_type", api="xen.p2m_type", cli="--xen-p2m",
         label="p2m type", help="Xen: the entry's p2m type", choices=P2M_TYPES),
    Knob(param="xen_order", owner="xen", attr="order", api="xen.order", cli="--xen-order", kind="dec",
         label="page order", help="Xen: the entry's order (0 4K, 9 2M, 18 1G)", values="0, 9 or 18",
         bounds=(0, 18), rule="EPT leaves have order 0 (4K), 9 (2M) or 18 (1G)"),
    Knob(param="xen_mfn", owner="xen", attr="mfn", api="xen.mfn", cli="--xen-mfn", kind="hex",
         label="mfn", help="Xen: the host frame (default: the gfn)", values="hex"),
    Knob(param="xen_mmio_ro", owner="xen", attr="mmio_ro", api="xen.mmio_ro", cli="--xen-mmio-ro",
         label="in mmio_ro_ranges", help="Xen: the entry's frames in mmio_ro_ranges", choices=COVERAGES),
    Knob(param="xen_special", owner="xen", attr="special", api="xen.special", cli="--xen-special",
         label="special pages", help="Xen: the entry's frames that are special pages", choices=COVERAGES),
    Knob(param="xen_host_mtrr", owner="xen", attr="host_mtrr", api="xen.host_mtrr", cli="--xen-host-mtrr",
         label="host MTRR", help="Xen: host MTRR type of the frames [WB; map and zap: by kind]",
         choices=HOST_MTRR_CHOICES),
    # -- AMD's host side (vendor amd: app.kvm.svm.SvmHost, the API's `amd`) ------------------
    Knob(param="amd_host_pat", owner="amd", attr="host_pat", api="amd.host_pat", cli="--amd-host-pat", kind="hex",
         label="host PAT", help="AMD: the host's IA32_PAT (the NPT leaf selects entry 0) [Linux's]",
         values="hex, 8 type bytes"),
    Knob(param="amd_host_mtrr", owner="amd", attr="host_mtrr", api="amd.host_mtrr", cli="--amd-host-mtrr",
         label="host MTRR", help="AMD: host MTRR type of the host frames [by kind: RAM WB, MMIO UC]",
         choices=HOST_MTRR_TYPES),
    # -- the map's own inputs (POST /api/v1/map; the page's row editors) ------------------
    Knob(param="private_ranges", owner="link", attr="private_ranges", api="private_ranges", cli=None,
         label="private GPA ranges", help="vmtype tdx, the map only: the GPA ranges whose memory attribute is "
         "private (KVM_SET_MEMORY_ATTRIBUTES)", values="e.g. 0x0-0xa0000",
         rule="private ranges are 0xSTART-0xEND GPAs, end exclusive, comma-separated"),
    Knob(param="xen_frames", owner="link", attr="xen_frames", api="xen.frames", cli=None,
         label="per-frame facts", help="kernel xen, the map only: GPA ranges with their p2m type and flags",
         values="e.g. 0x100000-0x200000:grant_map_rw:special",
         rule=(f"frame ranges are 0xSTART-0xEND GPAs, end exclusive, then :P2M ({', '.join(P2M_TYPES)}) and "
               f"{' '.join(':' + n for n in FRAME_FLAGS)} as set, comma-separated")),
    # -- page only -------------------------------------------------------------------------
    Knob(param="pati", owner="link", attr="pati", api="pati", short="t", kind="dec", control="pati",
         label="types for PAT entry", help="page only: the PAT entry whose effective types the map shows",
         bounds=(0, 7), rule="PAT entries are PA0..PA7"),
)
"""Every permalink parameter but `v`, in the order a link writes them."""

BY_PARAM: dict[str, Knob] = {k.param: k for k in KNOBS}


def rows(owner: str) -> tuple[Knob, ...]:
    return tuple(k for k in KNOBS if k.owner == owner)


def page_knobs() -> list[dict[str, Any]]:
    """The rows as the page's initial data and template see them."""
    return [k.page() for k in KNOBS]


__all__ = ["BY_PARAM", "GENERIC_KINDS", "KINDS", "KNOBS", "Knob", "OWNERS", "page_knobs", "rows"]
