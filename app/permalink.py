"""Permalinks: a readable, stateless URL to the page `/` for one scenario.

One query parameter per setting that differs from its default, plus `v=1` (the encoding
version). Nothing is stored server-side: the URL *is* the state. This module is the only
encoder: the API responses (`permalink`), the plain-text renderings and the page's address
bar (POST /api/v1/permalink, which the page's script calls) all use `url()`/`encode()`
below, and the page at `/` parses incoming links with `decode()`.

The parameters are the rows of app/knobs.py (KNOBS, in the order a link writes them): each
row names the parameter, its short-form code, the core field it sets (whose default a link
leaves out) and the syntax of its value; `scripts/cli resolve --help` lists them. Booleans
are `0`/`1`; addresses and registers are hex with `0x`; maxphyaddr, pati and run lengths are
decimal. The rows of a plain kind (bool, decimal, hex) are written and read by one loop
below; the others by the codec named after their parameter (_ENCODERS, _DECODERS):

  map         comma-separated `start-end:kind` (kind ram or mmio), e.g.
              `0x0-0x80000000:ram,0xfd000000-0xfe000000:mmio` [the default q35-like map,
              app.kvm.scenario.DEFAULT_MEMORY_MAP]
  pat         a preset name (power-on, linux, linux-legacy) or hex [power-on]
  mtrr        a named firmware layout for the VM's MAXPHYADDR: ovmf, ovmf-linux, seabios,
              seabios-linux (app.kvm.layouts; `-linux` adds the guest's 64-bit PCI hole
              pair); when the state is not a named layout, deftype (hex [0x0]), fixed (the
              88 fixed-range types run-length encoded, `WB*16,UC*72` [all UC]) and var
              (`base:mask` pairs in index order [none]) are written instead
  host        a host page preset (vga_dev_mem, vfio_bar, ...) or a class (ram,
              zero_page, reserved, no_struct_page) with host_mt, host_hpa, host_e820
              and host_pat; kvm_is_mmio_pfn() then decides is_mmio [absent]
  event       zap event kind with event_msr (mtrr_write), event_value (0/1 for cr0_cd
              and noncoherent_dma, hex for the MSR writes) and event_nw (cr0_cd) [none]
  kernel, vs  an era id (GET /api/v1/kernels) or a kernel version (6.12.78)
  vendor      intel or amd (app.kvm.vm_kinds) [intel]
  vmtype      default or tdx [default]
  vs_vendor, vs_type  a diff's second side: amd, tdx [intel, default]
  amd_host_pat, amd_host_mtrr  vendor amd: the host's IA32_PAT (hex) and the host
              MTRR type of the frames [Linux's PAT; MTRR by kind: RAM WB, MMIO UC]
  pati        page only: resolve, zap and diff ignore it (POST /api/v1/map: pat_index)
  private_ranges  vmtype tdx, the map's private_ranges [none]
  xen_frames  kernel xen, the map's xen.frames [none]; both written as their row's `rule`
              in app/knobs.py says (one text: a bad value's refusal quotes it), by start

Decimal numbers (maxphyaddr, pati, fixed run lengths) are 1-3 ASCII digits: `²` or `٣`
(digits to str.isdigit()) are refused, naming the parameter, like any other bad value.

Unknown parameters are ignored (so a link can carry other tags). Decoding only checks
syntax and era ids; the rules (reserved types, MAXPHYADDR limits, ...) are checked when the
scenario is resolved, with the same messages as the API.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qsl, quote

from .knobs import BY_PARAM, KNOBS, Knob, rows
from .kvm.eras import get_era
from .kvm.host_page import CLASSES as HOST_CLASSES
from .kvm.host_page import PRESETS as HOST_PRESETS
from .kvm.host_page import HostPage
from .kvm.layouts import LAYOUTS
from .kvm.scenario import (
    CR0_CD,
    DEFAULT_MEMORY_MAP,
    EVENT_KINDS,
    MAXPHYADDR_MAX,
    MAXPHYADDR_MIN,
    MMIO,
    MTRR_WRITE,
    NONCOHERENT_DMA,
    PAT_WRITE,
    RAM,
    Access,
    Cr0Write,
    Event,
    MemRange,
    MtrrWrite,
    NoncoherentDma,
    PatWrite,
    VcpuState,
    VmConfig,
    check_private,
)
from .kvm.svm import HOST_MTRR_TYPES, SvmHost, check_amd_side
from .kvm.vm_kinds import VENDOR_INTEL, VENDORS, VM_TYPE_DEFAULT, VM_TYPES
from .x86.memtype import MemType, MemTypeError
from .x86.mtrr import FIXED_MSRS, MtrrState, VarMtrr
from .x86.pat import PAT_PRESETS, Pat
from .xen.events import PASSTHROUGH_ATTACH, PASSTHROUGH_DETACH, Passthrough
from .xen.facts import COVERAGES, HOST_MTRR_CHOICES, P2M_TYPES, PINNED_TYPES, P2mType, PinnedRange, XenFacts
from .xen.map import FRAME_FLAGS, FrameRange
from .xen.resolve import XEN_VM_FIELDS, check_no_kvm_settings
from .xen.versions import check_xen_side, get_version, is_xen

VERSION = "1"
DEFAULT_KERNEL = "v6.16"
VIEWS = ("resolve", "zap", "diff")
_SAFE = ":,*-."
_HEX = re.compile(r"0[xX][0-9a-fA-F]{1,16}")
_DEC = re.compile(r"[0-9]{1,3}")  # ASCII digits only: Unicode digits ('²', '٣') are refused

__all__ = [
    "DEFAULT_KERNEL", "Dropped", "LinkState", "SHORT_CODES", "VERSION", "VIEWS", "decode", "decode_report",
    "amd_json", "encode", "event_json", "mtrr_layout_name", "request_body", "scenario_json", "short_path",
    "short_query", "url", "xen_json",
]


@dataclass(frozen=True)
class LinkState:
    """Everything a permalink can carry, as core objects."""

    kernel: str = DEFAULT_KERNEL
    vm: VmConfig = field(default_factory=VmConfig)
    vcpu: VcpuState = field(default_factory=VcpuState)
    access: Access = field(default_factory=lambda: Access(0))
    event: Event | Passthrough | None = None
    vs: str | None = None
    view: str = "resolve"
    pati: int = 0  # page only: the PAT entry the memory map shows
    vs_vendor: str = VENDOR_INTEL  # the diff's second side (the first is vm.vendor)
    xen: XenFacts = field(default_factory=XenFacts)  # kernel xen...: the domain and entry facts
    vs_type: str = VM_TYPE_DEFAULT  # the diff's second side's VM type (the first is vm.vm_type)
    amd: SvmHost = field(default_factory=SvmHost)  # vendor amd: the host PAT and MTRR facts
    private_ranges: tuple[tuple[int, int], ...] = ()  # vmtype tdx, the map's: private GPAs [start, end)
    xen_frames: tuple[FrameRange, ...] = ()  # kernel xen..., the map's: per-frame facts


# -- encoding ------------------------------------------------------------------------

_DEFAULT_VM = VmConfig()
_DEFAULT_VCPU = VcpuState()
_DEFAULT_XEN = XenFacts()
_DEFAULT_AMD = SvmHost()
_XEN_P = {"p2m_type": "xen_p2m", "mmio_ro": "xen_mmio_ro", "special": "xen_special", "host_mtrr": "xen_host_mtrr"}
"""The Xen rows whose value is one of a few names: XenFacts attribute -> parameter."""


def _pinned_text(ranges: tuple[PinnedRange, ...]) -> str:
    return ",".join(f"{r.start:#x}-{r.end:#x}:{r.type.label}" for r in ranges)


def _ranges_text(ranges: tuple[tuple[int, int], ...]) -> str:
    """A link's private_ranges, by start: the one order, whoever wrote the state (the
    map's check_private_ranges sorts too), so one state has one link."""
    return ",".join(f"{a:#x}-{b:#x}" for a, b in sorted(ranges))


def _frames_text(frames: tuple[FrameRange, ...]) -> str:
    """A link's xen_frames, by start (as app.xen.map.check_frames returns them): the zap's
    link (frames as given) and the permalink endpoint's (frames checked) are one string."""
    return ",".join(":".join([f"{f.start:#x}-{f.end:#x}", *([f.p2m_type.value] if f.p2m_type else []),
                              *(n for n in FRAME_FLAGS if getattr(f, n))])
                    for f in sorted(frames, key=lambda f: (f.start, f.end)))


def _b(v: bool) -> str:
    return "1" if v else "0"


@lru_cache(maxsize=32)
def _layouts(maxphyaddr: int) -> tuple[tuple[str, MtrrState], ...]:
    out = []
    for name, make in LAYOUTS.items():
        out.append((name, make(maxphyaddr)))
        out.append((f"{name}-linux", make(maxphyaddr, linux=True)))
    return tuple(out)


def mtrr_layout_name(mtrr: MtrrState, maxphyaddr: int) -> str | None:
    """The named firmware layout equal to `mtrr` for this MAXPHYADDR, if any."""
    if not mtrr.variable or not 36 <= maxphyaddr <= 52:
        return None
    for name, state in _layouts(maxphyaddr):
        if mtrr == state:
            return name
    return None


def _fixed_runs(mtrr: MtrrState) -> str:
    runs: list[list] = []
    for i in range(88):
        t = mtrr.fixed_type(i)
        if runs and runs[-1][0] == t:
            runs[-1][1] += 1
        else:
            runs.append([t, 1])
    return ",".join(f"{t.label}*{n}" for t, n in runs)


def _pat_text(pat: Pat) -> str:
    value = pat.to_msr()
    for name, v in PAT_PRESETS.items():
        if v == value:
            return name
    return f"{value:#018x}"


def _map_text(mm: tuple[MemRange, ...]) -> str:
    return ",".join(f"{r.start:#x}-{r.end:#x}:{r.kind}" for r in mm)


def _same_map(a: tuple[MemRange, ...], b: tuple[MemRange, ...]) -> bool:
    return [(r.start, r.end, r.kind) for r in a] == [(r.start, r.end, r.kind) for r in b]


def _event_params(ev: Event | Passthrough) -> list[tuple[str, str]]:
    out = [("event", ev.kind)]
    match ev:
        case Passthrough(resource=resource):
            out.append(("event_value", resource))
        case MtrrWrite(msr=msr, value=value):
            out += [("event_msr", f"{msr:#x}"), ("event_value", f"{int(value):#x}")]
        case Cr0Write(value=cd, cr0_nw=nw):
            out.append(("event_value", _b(bool(cd))))
            if nw is not None:
                out.append(("event_nw", _b(nw)))
        case NoncoherentDma(value=on):
            out.append(("event_value", _b(bool(on))))
        case PatWrite(value=value):
            out.append(("event_value", f"{int(value):#018x}"))
    return out


def _host_params(hp: HostPage) -> list[tuple[str, str]]:
    if hp.preset:
        return [("host", hp.preset)]
    out = [("host", hp.cls)]
    if hp.host_memtype is not None:
        out.append(("host_mt", hp.host_memtype.label))
    if hp.hpa is not None:
        out.append(("host_hpa", f"{hp.hpa:#x}"))
    if hp.e820_ram:
        out.append(("host_e820", "1"))
    if not hp.pat_enabled:
        out.append(("host_pat", "0"))
    return out


_HOST_OPTIONS = ("host_mt", "host_hpa", "host_e820", "host_pat")


def _parse_host(q: Mapping[str, str]) -> HostPage | None:
    name = q.get("host")
    if name is None:
        for k in _HOST_OPTIONS:
            if k in q:
                raise MemTypeError(k, "given without host", "host_* options qualify a host page class")
        return None
    if name in HOST_PRESETS:
        for k in _HOST_OPTIONS:
            if k in q:
                raise MemTypeError(k, f"given with the preset {name!r}", "a preset names the whole page; use a class")
        return HOST_PRESETS[name].page
    if name not in HOST_CLASSES:
        raise MemTypeError("host", f"unknown host page {name!r}",
                           f"a preset ({', '.join(HOST_PRESETS)}) or a class ({', '.join(HOST_CLASSES)})")
    mt = None
    if "host_mt" in q:
        try:
            mt = MemType.from_label(q["host_mt"])
        except ValueError:
            raise MemTypeError("host_mt", f"unknown memory type {q['host_mt']!r}",
                               "UC, WC, WT, WP, WB or UC-") from None
    hpa = _hex(q["host_hpa"], "host_hpa") if "host_hpa" in q else None
    return HostPage(name, mt, hpa, _bool(q, "host_e820", False), _bool(q, "host_pat", True))


def _owner(state: LinkState, owner: str) -> object:
    """The core object a knob row of this owner reads (app/knobs.py `owner`)."""
    return state if owner == "link" else getattr(state, owner)


def _text(k: Knob, value: object) -> str:
    """A plain row's value as a link writes it."""
    if k.kind in ("bool", "opt_bool"):
        return _b(bool(value))
    if k.kind == "hex":
        return f"{value:#x}"
    return str(value)


def _xen_choice(param: str, attr: str) -> Callable[[LinkState], list[tuple[str, str]]]:
    def write(s: LinkState) -> list[tuple[str, str]]:
        value = getattr(s.xen, attr)
        return [] if value == getattr(_DEFAULT_XEN, attr) else [(param, value)]
    return write


def _mtrr_params(state: LinkState) -> list[tuple[str, str]]:
    layout = mtrr_layout_name(state.vcpu.mtrr, state.vm.maxphyaddr)
    if layout is not None:
        return [("mtrr", layout)]
    m, out = state.vcpu.mtrr, []
    if m.def_type:
        out.append(("deftype", f"{m.def_type:#x}"))
    if any(m.fixed):
        out.append(("fixed", _fixed_runs(m)))
    if m.variable:
        out.append(("var", ",".join(f"{p.base:#x}:{p.mask:#x}" for p in m.variable)))
    return out


_ENCODERS = {
    "map": lambda s: [] if _same_map(s.vm.memory_map, DEFAULT_MEMORY_MAP) else [("map", _map_text(s.vm.memory_map))],
    "pat": lambda s: [] if s.vcpu.pat == _DEFAULT_VCPU.pat else [("pat", _pat_text(s.vcpu.pat))],
    "mtrr": _mtrr_params,
    "host": lambda s: [] if s.access.host_page is None else _host_params(s.access.host_page),
    "event": lambda s: [] if s.event is None else _event_params(s.event),
    "vendor": lambda s: [] if s.vm.vendor == _DEFAULT_VM.vendor else [("vendor", s.vm.vendor)],
    "vmtype": lambda s: [] if s.vm.vm_type == _DEFAULT_VM.vm_type else [("vmtype", s.vm.vm_type)],
    "vs_vendor": lambda s: [] if s.vs_vendor == VENDOR_INTEL else [("vs_vendor", s.vs_vendor)],
    "vs_type": lambda s: [] if s.vs_type == VM_TYPE_DEFAULT else [("vs_type", s.vs_type)],
    "amd_host_mtrr": lambda s: [] if s.amd.host_mtrr is None else [("amd_host_mtrr", s.amd.host_mtrr)],
    "xen_pinned": lambda s: [("xen_pinned", _pinned_text(s.xen.pinned))] if s.xen.pinned else [],
    "private_ranges": lambda s: [("private_ranges", _ranges_text(s.private_ranges))] if s.private_ranges else [],
    "xen_frames": lambda s: [("xen_frames", _frames_text(s.xen_frames))] if s.xen_frames else [],
    **{param: _xen_choice(param, attr) for attr, param in _XEN_P.items()},
}
"""The rows whose value is not one plain number or flag: their parameters from the state."""


def params(state: LinkState) -> list[tuple[str, str]]:
    """The (name, value) pairs of a permalink, in the table's order, defaults left out."""
    out: list[tuple[str, str]] = [("v", VERSION)]
    for k in KNOBS:
        if k.part_of is not None:
            continue  # written by its row's codec
        encoder = _ENCODERS.get(k.param)
        if encoder is not None:
            out.extend(encoder(state))
            continue
        value = k.get(_owner(state, k.owner))
        if value is not None and value != k.default:
            out.append((k.param, _text(k, value)))
    return out


def encode(state: LinkState) -> str:
    """The query string (without `?`): `v=1&kernel=v6.7&ncdma=1...`."""
    return "&".join(f"{k}={quote(v, safe=_SAFE)}" for k, v in params(state))


def url(state: LinkState, base: str = "") -> str:
    """The permalink: `base` (scheme://host[/root], may be empty) + `/?` + query."""
    return f"{base.rstrip('/')}/?{encode(state)}"


# -- decoding ------------------------------------------------------------------------


def _bool(q: Mapping[str, str], name: str, default: bool) -> bool:
    if name not in q:
        return default
    v = q[name]
    if v not in ("0", "1"):
        raise MemTypeError(name, f"{v!r} is not 0 or 1", "permalink booleans are 0 or 1")
    return v == "1"


def _dec(v: str, name: str, lo: int, hi: int, rule: str) -> int:
    """A small decimal number in lo..hi, ASCII digits only."""
    if not _DEC.fullmatch(v):
        raise MemTypeError(name, f"{v!r} is not a number (1-3 ASCII digits)", rule)
    n = int(v)
    if not lo <= n <= hi:
        raise MemTypeError(name, f"{n} is outside {lo}..{hi}", rule)
    return n


def _hex(v: str, name: str) -> int:
    if not _HEX.fullmatch(v):
        raise MemTypeError(name, f"malformed hex {v!r}", "expected 0x followed by 1-16 hex digits")
    return int(v, 16)


def _parse_fixed(text: str) -> tuple[int, ...]:
    types: list[int] = []
    for run in text.split(","):
        name, star, count = run.partition("*")
        try:
            t = MemType.from_label(name)
        except ValueError:
            raise MemTypeError("fixed", f"unknown type {name!r} in {run!r}",
                               "fixed runs are TYPE*count with TYPE one of UC, WC, WT, WP, WB") from None
        n = 1
        if star:
            if not _DEC.fullmatch(count) or not 0 < int(count) <= 88:
                raise MemTypeError("fixed", f"bad run length in {run!r}", "fixed runs are TYPE*count, count 1..88")
            n = int(count)
        types.extend([int(t)] * n)
    if len(types) != 88:
        raise MemTypeError("fixed", f"{len(types)} fixed-range types given", "there are 88 fixed ranges (11 MSRs x 8)")
    return tuple(sum(types[8 * s + b] << (8 * b) for b in range(8)) for s in range(len(FIXED_MSRS)))


def _parse_var(text: str) -> tuple[VarMtrr, ...]:
    out = []
    for i, item in enumerate(text.split(",")):
        base, colon, mask = item.partition(":")
        if not colon:
            raise MemTypeError("var", f"pair {i} {item!r} is not base:mask", "var is comma-separated base:mask pairs")
        out.append(VarMtrr(_hex(base, "var"), _hex(mask, "var")))
    return tuple(out)


def _parse_map(text: str) -> tuple[MemRange, ...]:
    out = []
    for item in text.split(","):
        span, colon, kind = item.partition(":")
        start, dash, end = span.partition("-")
        if not colon or not dash or kind not in (RAM, MMIO):
            raise MemTypeError("map", f"{item!r} is not start-end:kind", "map entries are 0xSTART-0xEND:ram or :mmio")
        out.append(MemRange(_hex(start, "map"), _hex(end, "map"), kind))
    return tuple(out)


def _parse_event(q: Mapping[str, str]) -> Event | Passthrough | None:
    kind = q.get("event")
    if kind is None:
        return None
    if kind in (PASSTHROUGH_ATTACH, PASSTHROUGH_DETACH):  # Xen's toolstack events (app.xen.events)
        resource = q.get("event_value", "io")
        if resource not in ("io", "pci"):
            raise MemTypeError("event_value", f"{resource!r} is not io or pci", "a passthrough event's resource")
        return Passthrough(kind == PASSTHROUGH_ATTACH, resource)
    if kind not in EVENT_KINDS:
        raise MemTypeError("event", f"unknown event kind {kind!r}", f"one of {', '.join(EVENT_KINDS)}")
    if "event_value" not in q:
        raise MemTypeError("event_value", "missing", "an event needs event_value")
    if kind in (CR0_CD, NONCOHERENT_DMA):
        value: int | bool = _bool(q, "event_value", False)
    else:
        value = _hex(q["event_value"], "event_value")
    msr = None
    if kind == MTRR_WRITE:
        if "event_msr" not in q:
            raise MemTypeError("event_msr", "missing", "an mtrr_write event needs event_msr")
        msr = _hex(q["event_msr"], "event_msr")
    match kind:
        case Cr0Write.kind:
            return Cr0Write(value=bool(value), cr0_nw=_bool(q, "event_nw", False) if "event_nw" in q else None)
        case MtrrWrite.kind:
            assert msr is not None
            return MtrrWrite(msr=msr, value=int(value))
        case NoncoherentDma.kind:
            return NoncoherentDma(value=bool(value))
    return PatWrite(value=int(value))


def _query(query: str | Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """A query (string, mapping or pairs) as a dict; the last value of a repeated name wins."""
    if isinstance(query, str):
        pairs = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    elif isinstance(query, Mapping):
        pairs = list(query.items())
    else:
        pairs = list(query)
    q: dict[str, str] = {}
    for k, v in pairs:
        q[k] = v
    return q


def decode(query: str | Mapping[str, str] | Iterable[tuple[str, str]]) -> LinkState:
    """Parse a permalink query (string, mapping or pairs; last value wins) into core objects.

    Raises MemTypeError naming the parameter on bad syntax or an unknown era.
    """
    q = _query(query)
    if q.get("v", VERSION) != VERSION:
        raise MemTypeError("v", f"permalink version {q['v']!r} is not supported", f"this server reads v={VERSION}")
    values: dict[str, dict[str, object]] = {"link": {}, "vm": {}, "vcpu": {}, "access": {}, "xen": {}, "amd": {}}
    for k in KNOBS:
        if k.part_of is not None:
            continue  # read by its row's codec
        decoder = _DECODERS.get(k.param)
        if decoder is not None:
            decoder(q, values)
        elif k.param in q:
            assert k.attr is not None
            values[k.owner][k.attr] = _value(k, q[k.param])
    link = values["link"]
    return LinkState(vm=VmConfig(**values["vm"]), vcpu=VcpuState(**values["vcpu"]),  # type: ignore[arg-type]
                     access=Access(**values["access"]), xen=XenFacts(**values["xen"]),  # type: ignore[arg-type]
                     amd=SvmHost(**values["amd"]),  # type: ignore[arg-type]
                     **link)  # type: ignore[arg-type]



def _value(k: Knob, text: str) -> object:
    """A plain row's value from its link text (MemTypeError names the parameter)."""
    if k.kind in ("bool", "opt_bool"):
        return _bool({k.param: text}, k.param, False)
    if k.kind == "hex":
        return _hex(text, k.param)
    assert k.kind == "dec" and k.bounds is not None, k
    return _dec(text, k.param, k.bounds[0], k.bounds[1], k.rule)


Values = dict[str, dict[str, object]]


def _view(q: Mapping[str, str], values: Values) -> None:
    if "view" in q:
        if q["view"] not in VIEWS:
            raise MemTypeError("view", f"unknown view {q['view']!r}", f"one of {', '.join(VIEWS)}")
        values["link"]["view"] = q["view"]


def _era(name: str) -> Callable[[Mapping[str, str], Values], None]:
    def read(q: Mapping[str, str], values: Values) -> None:
        if name in q:
            if is_xen(q[name]):  # a Xen id is taken where an era id is (issue 14)
                get_version(q[name], name)
            else:
                get_era(q[name], name)
            values["link"][name] = q[name]
    return read


def _read_map(q: Mapping[str, str], values: Values) -> None:
    if "map" in q:
        values["vm"]["memory_map"] = _parse_map(q["map"])


def _read_pat(q: Mapping[str, str], values: Values) -> None:
    text = q.get("pat")
    if text is not None:
        preset = PAT_PRESETS.get(text)
        values["vcpu"]["pat"] = Pat.from_msr(preset) if preset is not None else Pat.from_msr(_hex(text, "pat"), "pat")


def _read_mtrr(q: Mapping[str, str], values: Values) -> None:
    if "mtrr" in q:
        name = q["mtrr"]
        base, _, suffix = name.partition("-")
        if base not in LAYOUTS or suffix not in ("", "linux"):
            names = [n for b in LAYOUTS for n in (b, f"{b}-linux")]
            raise MemTypeError("mtrr", f"unknown MTRR layout {name!r}", f"one of {', '.join(names)}")
        maxphyaddr = values["vm"].get("maxphyaddr", _DEFAULT_VM.maxphyaddr)
        assert isinstance(maxphyaddr, int)
        if not MAXPHYADDR_MIN <= maxphyaddr <= MAXPHYADDR_MAX:
            raise MemTypeError("maxphyaddr", f"MAXPHYADDR {maxphyaddr} is outside {MAXPHYADDR_MIN}..{MAXPHYADDR_MAX}",
                               f"CPUID.80000008H:EAX[7:0] is {MAXPHYADDR_MIN}..{MAXPHYADDR_MAX} on Intel 64")
        values["vcpu"]["mtrr"] = LAYOUTS[base](maxphyaddr, linux=bool(suffix))
        return
    regs: dict[str, object] = {}
    if "deftype" in q:
        regs["def_type"] = _hex(q["deftype"], "deftype")
    if "fixed" in q:
        regs["fixed"] = _parse_fixed(q["fixed"])
    if q.get("var"):
        regs["variable"] = _parse_var(q["var"])
    if regs:
        values["vcpu"]["mtrr"] = MtrrState(**regs)  # type: ignore[arg-type]


def _read_host(q: Mapping[str, str], values: Values) -> None:
    hp = _parse_host(q)
    if hp is not None:
        values["access"]["host_page"] = hp


def _read_event(q: Mapping[str, str], values: Values) -> None:
    ev = _parse_event(q)
    if ev is not None:
        values["link"]["event"] = ev


def _choice(param: str, attr: str, names: tuple[str, ...], owner: str = "vm",
            ) -> Callable[[Mapping[str, str], Values], None]:
    """A row whose value is one of a few names (vendor, vmtype: app.kvm.vm_kinds; the Xen
    p2m type, coverages and host MTRR: app.xen.facts)."""
    def read(q: Mapping[str, str], values: Values) -> None:
        if param in q:
            if q[param] not in names:
                raise MemTypeError(param, f"unknown {param} {q[param]!r}", f"one of {', '.join(names)}")
            values[owner][attr] = q[param]
    return read


def _read_pinned(q: Mapping[str, str], values: Values) -> None:
    text = q.get("xen_pinned")
    if not text:
        return
    out = []
    for item in text.split(","):
        span, colon, name = item.partition(":")
        first, dash, last = span.partition("-")
        try:
            t = MemType.from_label(name)
        except ValueError:
            t = None
        if not colon or not dash or t is None or t not in PINNED_TYPES:
            raise MemTypeError("xen_pinned", f"{item!r} is not first-last:TYPE",
                               "pinned ranges are 0xFIRST-0xLAST:TYPE gfns (TYPE UC, UC-, WC, WT, WP, WB)")
        out.append(PinnedRange(_hex(first, "xen_pinned"), _hex(last, "xen_pinned"), t))
    values["xen"]["pinned"] = tuple(out)


def _span(item: str, name: str, rule: str) -> tuple[int, int]:
    start, dash, end = item.partition("-")
    if not dash:
        raise MemTypeError(name, f"{item!r} is not start-end", rule)
    return _hex(start, name), _hex(end, name)


def _read_private_ranges(q: Mapping[str, str], values: Values) -> None:
    if text := q.get("private_ranges"):
        values["link"]["private_ranges"] = tuple(
            _span(item, "private_ranges", BY_PARAM["private_ranges"].rule) for item in text.split(","))


def _read_frames(q: Mapping[str, str], values: Values) -> None:
    text = q.get("xen_frames")
    if not text:
        return
    rule = BY_PARAM["xen_frames"].rule
    out = []
    for item in text.split(","):
        span, *parts = item.split(":")
        start, end = _span(span, "xen_frames", rule)
        p2m = [p for p in parts if p in P2M_TYPES]
        flags = [p for p in parts if p in FRAME_FLAGS]
        if len(p2m) > 1 or len(p2m) + len(flags) != len(parts) or len(set(flags)) != len(flags):
            raise MemTypeError("xen_frames", f"{item!r} is not start-end[:p2m][:flag...]", rule)
        out.append(FrameRange(start, end, P2mType(p2m[0]) if p2m else None, **{n: n in flags for n in FRAME_FLAGS}))
    values["link"]["xen_frames"] = tuple(out)


_DECODERS: dict[str, Callable[[Mapping[str, str], Values], None]] = {
    "view": _view, "kernel": _era("kernel"), "vs": _era("vs"), "map": _read_map, "pat": _read_pat,
    "mtrr": _read_mtrr, "host": _read_host, "event": _read_event,
    "vendor": _choice("vendor", "vendor", VENDORS), "vmtype": _choice("vmtype", "vm_type", VM_TYPES),
    "vs_vendor": _choice("vs_vendor", "vs_vendor", VENDORS, "link"), "xen_pinned": _read_pinned,
    "private_ranges": _read_private_ranges, "xen_frames": _read_frames,
    "vs_type": _choice("vs_type", "vs_type", VM_TYPES, "link"),
    "amd_host_mtrr": _choice("amd_host_mtrr", "host_mtrr", HOST_MTRR_TYPES, "amd"),
    "xen_p2m": _choice("xen_p2m", "p2m_type", P2M_TYPES, "xen"),
    "xen_mmio_ro": _choice("xen_mmio_ro", "mmio_ro", COVERAGES, "xen"),
    "xen_special": _choice("xen_special", "special", COVERAGES, "xen"),
    "xen_host_mtrr": _choice("xen_host_mtrr", "host_mtrr", HOST_MTRR_CHOICES, "xen"),
}
"""The rows that are not one plain number or flag: each reads its parameters into the
(owner -> field -> value) dict decode() builds the core objects from."""
assert {k.param for k in KNOBS if not k.generic and k.part_of is None} == set(_DECODERS) == set(_ENCODERS) | {
    "view", "kernel", "vs"}, "every row of a named codec has a decoder (and an encoder unless its value is text)"


@dataclass(frozen=True)
class Dropped:
    """A permalink parameter decode_report() left out, and why (the decoder's MemTypeError)."""

    param: str
    value: str
    message: str
    rule: str


_LEADING_NAME = re.compile(r"[A-Za-z_]+")


def decode_report(query: str | Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[LinkState, tuple[Dropped, ...]]:
    """decode(), keeping every readable parameter: each one decode() refuses is dropped (its
    default is used instead) and listed with the reason, and the rest is decoded again.

    A parameter refused as missing (an event without event_value or event_msr) drops the
    `event` it belongs to. A parameter the state's system does not take (_SYSTEM_INPUTS:
    private_ranges without a TD, xen_* with a KVM kernel, amd_* without vendor amd) is
    dropped too, with the API's refusal. Raises MemTypeError only for what cannot be read
    in part: a link of another encoding version (`v`).
    """
    q = _query(query)
    if q.get("v", VERSION) != VERSION:
        decode(q)  # raises, naming v
    dropped: list[Dropped] = []
    for _ in range(len(q) + 1):
        try:
            state = decode(q)
            foreign = foreign_input(state, q)
            if foreign is None:
                return state, tuple(dropped)
            name, e = foreign
            dropped.append(Dropped(name, q.pop(name), e.message, e.rule))
        except MemTypeError as e:
            m = _LEADING_NAME.match(e.field)
            name = m.group(0) if m else e.field
            if name not in q and name.startswith("event_") and "event" in q:
                name = "event"  # a missing companion: the event itself cannot be read
            if name not in q or name == "v":
                raise
            why = e.message if e.field == name else f"{e.field}: {e.message}"  # the field when not the parameter
            dropped.append(Dropped(name, q.pop(name), why, e.rule))
    raise AssertionError("unreachable: each round drops one parameter")  # pragma: no cover


def _td_check(st: LinkState, field: str, private: bool | None = True) -> None:
    """A TD's private GPAs, refused as the API refuses them: for a Xen kernel against a
    default VmConfig (a Xen domain is never a TD, whatever vmtype the link also says)."""
    check_private(private, VmConfig() if is_xen(st.kernel) else st.vm, field)


def _kvm_setting_check(attr: str) -> Callable[[LinkState], None]:
    """One KVM VM setting in a Xen link: refused (check_no_kvm_settings) when it differs
    from the default, so the parameter that moves it is the one dropped."""
    def check(st: LinkState) -> None:
        if is_xen(st.kernel) and getattr(st.vm, attr) != getattr(VmConfig(), attr):
            check_no_kvm_settings(VmConfig(**{attr: getattr(st.vm, attr)}))
    return check


_SYSTEM_INPUTS: tuple[tuple[tuple[str, ...], Callable[[LinkState], None]], ...] = (
    (("private_ranges",), lambda st: _td_check(st, "private_ranges")),
    (tuple(k.param for k in KNOBS if k.owner == "access" and k.attr == "private"),
     lambda st: _td_check(st, "private", st.access.private)),
    ((*(k.param for k in KNOBS if k.owner == "xen"), "xen_frames"), lambda st: check_xen_side(True, st.kernel)),
    (tuple(k.param for k in KNOBS if k.owner == "amd"),
     lambda st: check_amd_side(True, {"vm.vendor": None if is_xen(st.kernel) else st.vm.vendor})),
    *(((k.param,), _kvm_setting_check(k.attr)) for k in KNOBS
      if k.owner == "vm" and k.attr is not None and k.attr not in XEN_VM_FIELDS),
)
"""The parameters one system alone takes (a TD's private GPAs, a Xen domain's facts and
frames, an AMD host's facts, KVM's VM settings: not Xen's), each with the refusal the API
gives them for another system
(POST /api/v1/map and /permalink): decode reads them whatever the state, and the page
reads their rows only for their system, so decode_report drops and lists them rather than
let the page lose them unsaid."""


def foreign_input(state: LinkState, q: Mapping[str, str]) -> tuple[str, MemTypeError] | None:
    """The first parameter of `q` the state's system does not take, with its refusal."""
    for params, check in _SYSTEM_INPUTS:
        given = [p for p in params if p in q]
        if given:
            try:
                check(state)
            except MemTypeError as e:
                return given[0], e
    return None


# -- the short form: /l/<token>, for mail -----------------------------------------------

SHORT_CODES = {k.param: k.short for k in KNOBS if k.short}
"""One character per permalink parameter for the short form, from app/knobs.py (a
parameter without a code is written `name=value` in it)."""
assert len(set(SHORT_CODES.values())) == len(SHORT_CODES), "short codes are distinct"
_SHORT_NAMES = {c: n for n, c in SHORT_CODES.items()}
_LONG_NAMES = frozenset(k.param for k in KNOBS if not k.short)
"""Parameters written `name=value` in the short form (no code of their own)."""
_SHORT_HEX = tuple(k.param for k in KNOBS if k.short and k.kind == "hex")
"""Always hex: the short form leaves out their 0x."""
_SHORT_EVENTS = {CR0_CD: "cd", MTRR_WRITE: "mw", NONCOHERENT_DMA: "nd", PAT_WRITE: "pw"}
_SHORT_EVENT_KINDS = {c: k for k, c in _SHORT_EVENTS.items()}
_SHORT_SEP = "~"  # in no parameter value, and kept by mail and URL tools (RFC 3986 unreserved)
_SHORT_SAFE = ":,*-.="


def short_path(state: LinkState) -> str:
    """The short form's path: `l/1~kv6.7~sv4.2~n1~c1~rovmf~afd000000`, the same parameters
    as params() (version first, one code character each, no `0x` on the hex addresses, two
    letters per event kind), so a
    common state's link stays under 72 columns and survives mail wrapping. Derived from the
    state: nothing is stored."""
    items = [VERSION]
    for name, value in params(state)[1:]:
        if name in _SHORT_HEX and value[:2] == "0x":
            value = value[2:]
        elif name == "event":
            value = _SHORT_EVENTS.get(value, value)
        code = SHORT_CODES.get(name)
        items.append(quote(code + value if code else f"{name}={value}", safe=_SHORT_SAFE))
    return "l/" + _SHORT_SEP.join(items)


def short_query(token: str) -> list[tuple[str, str]]:
    """The permalink pairs of a short form's token (the part after `l/`), for decode() or
    decode_report(); an unknown code is kept under its own name (decode ignores it)."""
    version, _, rest = token.partition(_SHORT_SEP)
    pairs = [("v", version)]
    for item in rest.split(_SHORT_SEP) if rest else []:
        if not item:
            continue
        k, eq, v = item.partition("=")
        name = _SHORT_NAMES.get(item[0])
        if name is None or (eq and k in _LONG_NAMES):  # `name=value`: a parameter without a code
            pairs.append((k, v))  # (xen_iommu=1 starts with maxphyaddr's code x)
            continue
        value = item[1:]
        if name in _SHORT_HEX and value[:2].lower() != "0x":
            value = "0x" + value
        elif name == "event":
            value = _SHORT_EVENT_KINDS.get(value, value)
        pairs.append((name, value))
    return pairs


# -- the same state as an API request body ---------------------------------------------


_PLAIN = {owner: tuple(k for k in rows(owner) if k.generic) for owner in ("vm", "vcpu", "access")}
_VM_ROWS = rows("vm")


def _json(k: Knob, value: object) -> object:
    """A plain row's value in an API body: hex as a string, the rest as JSON has it."""
    return f"{value:#x}" if k.kind == "hex" else value


def scenario_json(kernel: str, vm: VmConfig, vcpu: VcpuState, access: Access | None = None) -> dict:
    """A POST /api/v1/resolve body (JSON-ready dict) for core objects; hex as strings."""
    m = vcpu.mtrr
    body: dict = {
        "kernel": kernel,
        "vm": {k.api_leaf: _json(k, k.get(vm)) for k in _PLAIN["vm"]},
        "vcpu": {
            **{k.api_leaf: _json(k, k.get(vcpu)) for k in _PLAIN["vcpu"]},
            "pat": vcpu.pat.hex(),
            "mtrr": {
                "def_type": f"{m.def_type:#x}",
                "fixed": [f"{v:#018x}" for v in m.fixed],
                "variable": [{"base": f"{p.base:#x}", "mask": f"{p.mask:#x}"} for p in m.variable],
            },
        },
    }
    for k in _VM_ROWS:
        if k.choices and (k.echo_default or k.get(vm) != k.default):  # vendor, type: left out when default
            body["vm"][k.api_leaf] = k.get(vm)
    if not _same_map(vm.memory_map, DEFAULT_MEMORY_MAP):
        body["vm"]["memory_map"] = [
            {"start": f"{r.start:#x}", "end": f"{r.end:#x}", "kind": r.kind, **({"label": r.label} if r.label else {})}
            for r in vm.memory_map
        ]
    if access is not None:
        for k in _PLAIN["access"]:
            value = k.get(access)
            if value is not None:
                body[k.api] = _json(k, value)
        if access.host_page is not None:
            body["host_page"] = host_page_json(access.host_page)
    return body


def host_page_json(hp: HostPage) -> dict:
    """The `host_page` member of a resolve body: the preset alone, or the class and its fields."""
    if hp.preset:
        return {"preset": hp.preset}
    out: dict = {"class": hp.cls}
    if hp.host_memtype is not None:
        out["host_memtype"] = hp.host_memtype.label
    if hp.hpa is not None:
        out["hpa"] = f"{hp.hpa:#x}"
    if hp.e820_ram:
        out["e820_ram"] = True
    if not hp.pat_enabled:
        out["pat_enabled"] = False
    return out


def event_json(ev: Event | Passthrough) -> dict:
    """The `event` member of a POST /api/v1/zap body."""
    match ev:
        case Passthrough(resource=resource):
            return {"kind": ev.kind, "resource": resource}
        case Cr0Write(value=cd, cr0_nw=nw):
            out: dict = {"kind": ev.kind, "value": bool(cd)}
            if nw is not None:
                out["cr0_nw"] = nw
            return out
        case NoncoherentDma(value=on):
            return {"kind": ev.kind, "value": bool(on)}
        case MtrrWrite(msr=msr, value=value):
            return {"kind": ev.kind, "msr": f"{msr:#x}", "value": f"{int(value):#x}"}
    return {"kind": ev.kind, "value": f"{int(ev.value):#018x}"}


def request_body(state: LinkState) -> dict:
    """The API body for the state's view: resolve (default), zap (with `event`), diff."""
    if state.view == "diff":
        diff: dict = {"a": state.kernel, "b": state.vs or state.kernel}
        if state.vm.vendor != VENDOR_INTEL:
            diff["a_vendor"] = state.vm.vendor
        if state.vs_vendor != VENDOR_INTEL:
            diff["b_vendor"] = state.vs_vendor
        if state.vm.vm_type != VM_TYPE_DEFAULT:
            diff["a_type"] = state.vm.vm_type
        if state.vs_type != VM_TYPE_DEFAULT:
            diff["b_type"] = state.vs_type
        if state.amd != _DEFAULT_AMD:
            diff["amd"] = amd_json(state.amd)
        return diff
    if state.view == "zap":
        body = scenario_json(state.kernel, state.vm, state.vcpu)
        if state.event is not None:
            body["event"] = event_json(state.event)
    else:
        body = scenario_json(state.kernel, state.vm, state.vcpu, state.access)
    if is_xen(state.kernel):
        x = xen_json(state.xen, state.view != "resolve")
        if state.view == "zap" and state.xen_frames:  # the zap audits the map, frames and all (app.xen.zap)
            x["frames"] = map_inputs_json(state)["xen_frames"]
        if x:
            body["xen"] = x
    if state.amd != _DEFAULT_AMD:
        body["amd"] = amd_json(state.amd)
    return body


def amd_json(h: SvmHost) -> dict:
    """The `amd` member of a body (vendor amd): the host facts that are not the defaults."""
    out: dict = {}
    if h.host_pat != _DEFAULT_AMD.host_pat:
        out["host_pat"] = f"{h.host_pat:#018x}"
    if h.host_mtrr is not None:
        out["host_mtrr"] = h.host_mtrr
    return out


def map_inputs_json(state: LinkState) -> dict:
    """The map's own members of the state as POST /api/v1/map takes them (private_ranges;
    xen.frames, here `xen_frames`), those that are given: the page's row editors."""
    out: dict = {}
    if state.private_ranges:
        out["private_ranges"] = [{"start": f"{a:#x}", "end": f"{b:#x}"} for a, b in state.private_ranges]
    if state.xen_frames:
        out["xen_frames"] = [{"start": f"{f.start:#x}", "end": f"{f.end:#x}",
                              **({"p2m_type": f.p2m_type.value} if f.p2m_type else {}),
                              **{n: True for n in FRAME_FLAGS if getattr(f, n)}} for f in state.xen_frames]
    return out


_XEN_DOMAIN_FIELDS = ("iommu", "io_resources", "pci_devices", "has_vcpu", "pinned")


def xen_json(x: XenFacts, domain_only: bool = False) -> dict:
    """The `xen` member of a resolve body (map and zap: the domain facts and host_mtrr only),
    the non-default facts only."""
    out: dict = {}
    for f in ("iommu", "io_resources", "pci_devices", "has_vcpu", "p2m_type", "order", "mfn", "mmio_ro", "special",
              "host_mtrr"):
        if domain_only and f not in (*_XEN_DOMAIN_FIELDS, "host_mtrr"):
            continue
        v = getattr(x, f)
        if v != getattr(_DEFAULT_XEN, f):
            out[f] = v
    if x.pinned:
        out["pinned"] = [{"start": r.start, "end": r.end, "type": r.type.label} for r in x.pinned]
    return out
