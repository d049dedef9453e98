"""`memtype-explorer`: the API's resolver and text renderings, in a shell.

The scenario options are exactly the permalink parameters (the rows
of app/knobs.py), parsed by the same `permalink.decode`, so
`--kernel v6.7 --ncdma 1 --cd 1` and the page URL
`/?v=1&kernel=v6.7&ncdma=1&cd=1` describe the same state; `--link`
takes a whole URL. From a checkout: scripts/cli <subcommand> ...
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from urllib.parse import parse_qsl, urlsplit

from . import permalink
from .knobs import KNOBS, Knob
from .kvm.svm import DEFAULT_HOST, check_amd_side
from .kvm.vm_kinds import VENDOR_INTEL, VENDORS, VM_TYPE_DEFAULT, VM_TYPES, is_vmx_default
from .render import WIDTH, wrap
from .x86.memtype import MemTypeError
from .xen.versions import is_xen

SCENARIO_PARAMS = tuple(k for k in KNOBS if k.cli and k.owner not in ("event", "host_page"))
"""The scenario options of resolve and zap: the rows of app/knobs.py with a CLI flag."""
HOST_PARAMS = tuple(k for k in KNOBS if k.cli and k.owner == "host_page")
"""resolve's host page options (the page behind the address)."""
EVENT_PARAMS = tuple(k for k in KNOBS if k.cli and k.owner == "event")
"""zap's event options."""
AMD_PARAMS = tuple(k for k in KNOBS if k.cli and k.owner == "amd")
"""The AMD host facts (also diff's options: one host for every AMD side)."""
DEFAULT_BASE = "http://127.0.0.1:8000"


class _Help(argparse.RawDescriptionHelpFormatter):
    """--help keeps to the 72 columns of every text output, whatever $COLUMNS says."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=WIDTH)


def _add_params(p: argparse.ArgumentParser, params: tuple[Knob, ...]) -> None:
    for k in params:
        assert k.cli is not None
        p.add_argument(k.cli, dest=k.param, metavar="V", help=k.cli_help)


def _query(args: argparse.Namespace, view: str) -> dict[str, str]:
    query: dict[str, str] = {}
    if args.link:
        query.update(parse_qsl(urlsplit(args.link).query, keep_blank_values=True))
    for k in SCENARIO_PARAMS + (EVENT_PARAMS if view == "zap" else HOST_PARAMS):
        value = getattr(args, k.param, None)
        if value is not None:
            query[k.param] = value
    query["view"] = view
    return query


def _state(args: argparse.Namespace, view: str) -> permalink.LinkState:
    return permalink.decode(_query(args, view))


def _one_system(st: permalink.LinkState, given: dict[str, str]) -> None:
    """The CLI's own refusals of one system's options with the other kernel (in its words:
    --amd-host-* options, --xen-* options, --kernel), then any other input of another system (a TD's private
    ranges without a TD, Xen frames with a KVM kernel, ...) refused with the API's own
    refusal (permalink.foreign_input; a link on the page drops and lists the same), rather
    than echoed back in the answer's link unread."""
    _amd_only(st)
    if is_xen(st.kernel):
        _xen_only(st)
    else:
        _kvm_only(st)
    foreign = permalink.foreign_input(st, given)
    if foreign is not None:
        raise foreign[1]


def _tdx_state(st: permalink.LinkState, given: dict[str, str]) -> permalink.LinkState:
    """A TD's fixed fields (app.kvm.tdx.tdx_defaults) where the options left them out."""
    from dataclasses import replace

    from .kvm.tdx import tdx_defaults

    _, fixed = tdx_defaults(st.vm, st.vcpu)
    return replace(st, vm=st.vm if "pat_quirk" in given else replace(st.vm, quirk_ignore_guest_pat=False),
                   vcpu=st.vcpu if {"mtrr", "deftype"} & set(given) else replace(st.vcpu, mtrr=fixed.mtrr))


def _kind_resolve(st: permalink.LinkState, given: dict[str, str], base: str) -> str:
    """vm.vendor amd (app.kvm.svm) or vm.type tdx (app.kvm.tdx), as POST /api/v1/resolve."""
    from .kvm.svm import svm_kernel, svm_resolve
    from .kvm.tdx import check_vm_kind, tdx_mt_mask, tdx_resolve
    from .kvm.versions import resolve_kernel
    from .kvm.vm_kinds import VM_TYPE_TDX
    from .render_kinds import render_svm, render_tdx

    check_vm_kind(st.vm.vendor, st.vm.vm_type, st.kernel)
    st.vm.validate()
    access = st.access.validate(st.vm)
    if st.vm.vm_type == VM_TYPE_TDX:
        st = _tdx_state(st, given)
        is_mmio = access.is_mmio(st.vm)
        private = bool(access.private)
        res = tdx_resolve(st.vm, st.vcpu, access.gpa, is_mmio=is_mmio, private=private)
        return render_tdx(res, resolve_kernel(st.kernel), st.vm, st.vcpu, access, private, [],
                          tdx_mt_mask(st.vm, is_mmio, private)[3], permalink.url(st, base))
    r = svm_resolve(svm_kernel(st.kernel), st.vm, st.vcpu, access.gpa, is_mmio=access.is_mmio(st.vm),
                    host=_amd_host(st))
    return render_svm(r, st.vm, st.vcpu, access, permalink.url(st, base))


def _amd_host(st: permalink.LinkState):
    """The --amd-host-* facts, checked by the core (errors at amd.<member>, as in the API)."""
    from .x86.memtype import located

    with located("amd"):
        return st.amd.validate()


AMD_FACTS = ("--amd-host-* options", "--amd-host-*")
"""The AMD host facts in the CLI's words (app.kvm.svm.check_amd_side)."""


def _amd_only(st: permalink.LinkState) -> None:
    check_amd_side(st.amd != DEFAULT_HOST, {"--vendor": None if is_xen(st.kernel) else st.vm.vendor}, *AMD_FACTS)


def cmd_resolve(args: argparse.Namespace) -> str:
    from .kvm.eras import ERAS
    from .kvm.resolve import resolve
    from .kvm.versions import resolve_kernel
    from .render import render_resolve

    given = _query(args, "resolve")
    st = permalink.decode(given)
    if args.json:
        return json.dumps(permalink.request_body(st), indent=2)
    _one_system(st, given)
    if is_xen(st.kernel):
        return _xen_resolve(st, args.base_url)
    if not is_vmx_default(st.vm.vendor, st.vm.vm_type):
        return _kind_resolve(st, given, args.base_url)
    kernel = resolve_kernel(st.kernel)
    res = resolve(ERAS[kernel.era], st.vm, st.vcpu, st.access, kernel)
    return render_resolve(res, st.vm, st.vcpu, permalink.url(st, args.base_url))


def _xen_only(st: permalink.LinkState) -> None:
    """With a Xen kernel only vm.maxphyaddr and the memory map apply (as in the API)."""
    from .xen.resolve import check_no_kvm_settings

    check_no_kvm_settings(st.vm, "kernel")


def _kvm_only(st: permalink.LinkState) -> None:
    from .xen.facts import XenFacts

    if st.xen != XenFacts():
        raise MemTypeError("xen", "--xen-* options given with a KVM kernel", "the --xen-* options need --kernel xen")


def _xen_resolve(st: permalink.LinkState, base: str) -> str:
    from .xen.resolve import resolve_xen
    from .xen.text import render_xen
    from .xen.versions import get_version

    if st.access.mmio is not None or st.access.host_page is not None:
        raise MemTypeError("mmio", "--mmio and --host are KVM inputs", "with a Xen kernel give --xen-p2m")
    st.vm.validate()
    res = resolve_xen(get_version(st.kernel), st.xen.domain(), st.xen.page(st.access.gpa), st.vcpu, st.vm.maxphyaddr)
    return render_xen(res, permalink.url(st, base))


def _xen_zap(st: permalink.LinkState, base: str) -> str:
    from .xen.text import render_xen_zap
    from .xen.versions import get_version
    from .xen.zap import xen_zap

    if st.event is not None and st.event.kind == "noncoherent_dma":
        raise MemTypeError("event", "noncoherent_dma is a KVM event",
                           "Xen's counterparts are passthrough_attach and passthrough_detach (io or pci)")
    assert st.event is not None
    st.vm.validate()
    # the link's frames (syntax checked by decode, overlaps by xen_map), as POST /api/v1/zap takes them
    z = xen_zap(get_version(st.kernel), st.xen.domain(), st.vm, st.vcpu, st.event, st.xen.map_host_mtrr(),
                st.xen_frames)
    return render_xen_zap(z, permalink.url(st, base))


def cmd_zap(args: argparse.Namespace) -> str:
    from .kvm.eras import ERAS
    from .kvm.scenario import Event
    from .kvm.versions import resolve_kernel
    from .kvm.zap import audit
    from .render import render_zap
    from .xen.events import Passthrough

    given = _query(args, "zap")
    st = permalink.decode(given)
    if st.event is None:
        raise MemTypeError("event", "no event given", "pass --event cr0_cd|mtrr_write|noncoherent_dma|pat_write "
                           "(Xen: also passthrough_attach|passthrough_detach)")
    _one_system(st, given)
    if is_xen(st.kernel):
        return _xen_zap(st, args.base_url)
    if isinstance(st.event, Passthrough):
        raise MemTypeError("event", f"{st.event.kind} is a Xen event", "passthrough events need --kernel xen")
    event: Event = st.event
    link = permalink.url(st, args.base_url)
    if st.vm.vm_type != VM_TYPE_DEFAULT:
        from .kvm.tdx import check_vm_kind, tdx_zap_audit

        check_vm_kind(st.vm.vendor, st.vm.vm_type, st.kernel)
        st.vm.validate()
        st = _tdx_state(st, given)
        kernel = resolve_kernel(st.kernel)
        a = tdx_zap_audit(kernel.era, st.vm, st.vcpu, event)
        return render_zap(a, st.vm, st.vcpu, permalink.url(st, args.base_url), kernel)
    if st.vm.vendor != VENDOR_INTEL:
        from .kvm.svm import svm_kernel
        from .kvm.tdx import check_vm_kind
        from .render_kinds import render_svm_zap, svm_zap_view

        check_vm_kind(st.vm.vendor, st.vm.vm_type, st.kernel)
        _amd_host(st)  # checked and carried by the link; no zap depends on the host side
        z = svm_zap_view(svm_kernel(st.kernel), st.vm, st.vcpu, event)
        return render_svm_zap(z, st.vm, st.vcpu, link)
    kernel = resolve_kernel(st.kernel)
    a = audit(ERAS[kernel.era], st.vm, st.vcpu, event)
    return render_zap(a, st.vm, st.vcpu, link, kernel)


def cmd_diff(args: argparse.Namespace) -> str:
    from .analysis import diff_by_id
    from .kvm.scenario import VmConfig
    from .kvm.versions import resolve_kernel
    from .render import render_diff
    from .system_diff import is_era_pair

    amd = permalink.decode({k.param: getattr(args, k.param) for k in AMD_PARAMS
                            if getattr(args, k.param) is not None}).amd
    st = permalink.LinkState(kernel=args.era_a, vs=args.era_b, view="diff",
                             vm=VmConfig(vendor=args.a_vendor, vm_type=args.a_type), vs_vendor=args.b_vendor,
                             vs_type=args.b_type, amd=amd)
    link = permalink.url(st, args.base_url)
    check_amd_side(st.amd != DEFAULT_HOST, {"--a-vendor": args.a_vendor, "--b-vendor": args.b_vendor}, *AMD_FACTS)
    if not is_era_pair(args.era_a, args.era_b, args.a_vendor, args.b_vendor, args.a_type, args.b_type):
        from .render_kinds import render_system_diff
        from .system_diff import diff_by_sides, side

        host = _amd_host(st)
        sd = diff_by_sides(side(args.era_a, args.a_vendor, "era_a", args.a_type, host),
                           side(args.era_b, args.b_vendor, "era_b", args.b_type, host))
        return render_system_diff(sd, link)
    ka, kb = resolve_kernel(args.era_a, "era_a"), resolve_kernel(args.era_b, "era_b")
    return render_diff(diff_by_id(ka.era, kb.era), link, kernels=(ka, kb))


def cmd_replay(args: argparse.Namespace) -> str:
    from .kvm import replay as rp
    from .kvm.boot import parse_memory
    from .kvm.eras import ERAS, get_era
    from .kvm.scenario import VmConfig
    from .kvm.trace_source import make_trace
    from .render import render_replay

    vm = VmConfig(noncoherent_dma=not args.no_ncdma)
    text = None
    if args.trace:
        with open(args.trace, encoding="utf-8") as fh:
            text = fh.read()
    elif args.preset not in rp.GENERATORS:
        raise MemTypeError("preset", f"unknown generator {args.preset!r}", f"one of {', '.join(rp.GENERATORS)}")
    made = make_trace(vm, generator=None if text is not None else args.preset, text=text, vcpus=args.vcpus,
                      linux=not args.no_linux, machine=args.machine,
                      memory=parse_memory(args.memory) if args.memory else None, maxphyaddr=args.maxphyaddr,
                      aperture=args.aperture, edk2=args.edk2, qemu_host_writes=args.qemu_host_writes,
                      initial=args.initial, pid=args.pid, name=args.trace or "")
    eras = [get_era(k) for k in args.kernel] if args.kernel else list(ERAS.values())
    return render_replay(made.trace, [rp.replay(e, made.trace) for e in eras], made)


def cmd_eras(_args: argparse.Namespace) -> str:
    from .kvm.eras import ERAS

    # Wrapped, not cut: the titles and commit subjects are the point of this listing, and
    # every text output keeps to the renderings' 72 columns.
    lines = []
    for e in ERAS.values():
        lines.extend(wrap(f"{e.id:<10} {e.kernels:<18} {e.title}", hang=" " * 30))
        for c in e.commits:
            lines.extend(wrap(f"{'':<10} {c.sha} {c.subject}", hang=" " * 24))
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> str:
    from .serve import main as serve

    serve(args.host, args.port, args.workers)
    return ""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="memtype-explorer", description=__doc__, formatter_class=_Help)
    sub = ap.add_subparsers(dest="command", required=True,  # type: ignore[call-overload]  # a partial is a class here
                            parser_class=functools.partial(argparse.ArgumentParser, formatter_class=_Help))

    p = sub.add_parser("serve", help="run the web service (settings from MEMTYPE_* env)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int)
    p.set_defaults(func=cmd_serve)

    for name, func, extra, help_ in (
        ("resolve", cmd_resolve, HOST_PARAMS, "EPT entry, decision path and effective types of one address"),
        ("zap", cmd_zap, EVENT_PARAMS, "zap audit of one event: zapped, needed, stale, excess"),
    ):
        p = sub.add_parser(name, help=help_)
        _add_params(p, SCENARIO_PARAMS + extra)
        p.add_argument("--link", help="a permalink URL to start from (options override it)")
        p.add_argument("--base-url", default=DEFAULT_BASE, help="where the permalink points")
        if name == "resolve":
            p.add_argument("--json", action="store_true", help="print the API request body instead")
        p.set_defaults(func=func)

    p = sub.add_parser("diff", help="two eras (or systems: xen, --a-vendor amd, --a-type tdx) over the state space")
    p.add_argument("era_a", help="an era id, a kernel version, or xen / xen-4.19 / xen-4.21")
    p.add_argument("era_b")
    p.add_argument("--a-vendor", default=VENDOR_INTEL, choices=VENDORS, help="amd: era_a is KVM on AMD [intel]")
    p.add_argument("--b-vendor", default=VENDOR_INTEL, choices=VENDORS, help="as --a-vendor, for era_b")
    p.add_argument("--a-type", default=VM_TYPE_DEFAULT, choices=VM_TYPES,
                   help="tdx: era_a is a TDX VM (Intel, 6.16 and later) [default]")
    p.add_argument("--b-type", default=VM_TYPE_DEFAULT, choices=VM_TYPES, help="as --a-type, for era_b")
    _add_params(p, AMD_PARAMS)
    p.add_argument("--base-url", default=DEFAULT_BASE)
    p.set_defaults(func=cmd_diff)

    from .kvm.boot import APERTURES, EDK2_DEFAULT, EDK2_RELEASES, INITIAL_STATES, MACHINES

    p = sub.add_parser("replay", help="replay a boot or a captured trace against every era")
    p.add_argument("--preset", default="ovmf", help="boot generator: ovmf or seabios [ovmf]")
    p.add_argument("--vcpus", type=int, help="number of vCPUs [8 for a preset; a trace: highest id + 1]")
    p.add_argument("--trace", help="a trace file instead of a preset: trace-cmd report / perf script "
                   "output or the plain format (app/kvm/trace_format.md)")
    p.add_argument("--pid", type=int, help="trace: the VM (process id) to replay from a capture of several")
    p.add_argument("--initial", choices=tuple(INITIAL_STATES),
                   help="every vCPU's start [reset for a preset or a capture, running for plain text]")
    p.add_argument("--qemu-host-writes", dest="qemu_host_writes", action="store_const", const=True, default=None,
                   help="add QEMU's KVM_SET_MSRS writes (source qemu) [on for a preset, off for a trace]")
    p.add_argument("--no-qemu-host-writes", dest="qemu_host_writes", action="store_const", const=False,
                   help="leave QEMU's host writes out")
    p.add_argument("--machine", choices=MACHINES, default="q35", help="preset: QEMU machine [q35]")
    p.add_argument("--memory", help="preset: guest RAM such as 4G (sets the memslots) [4G layout]")
    p.add_argument("--maxphyaddr", type=int, help="preset: guest phys-bits [46]")
    p.add_argument("--aperture", choices=APERTURES, default="dynamic", help="preset: OVMF 64-bit aperture [dynamic]")
    p.add_argument("--edk2", choices=tuple(EDK2_RELEASES), default=EDK2_DEFAULT,
                   help=f"preset ovmf: the edk2 release's early boot [{EDK2_DEFAULT}]")
    p.add_argument("--no-linux", action="store_true", help="preset: firmware only, no Linux guest after it")
    p.add_argument("--kernel", action="append", help="only this era or kernel version (repeatable)")
    p.add_argument("--no-ncdma", action="store_true", help="VM without non-coherent DMA")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("eras", help="list the kernel eras and their commits")
    p.set_defaults(func=cmd_eras)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = args.func(args)
    except (MemTypeError, OSError) as e:  # errors keep to 72 columns too
        print("\n".join(wrap(f"memtype-explorer: {e}", hang="  ")), file=sys.stderr)
        return 2
    if out:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
