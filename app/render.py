"""Plain-text renderings for mail replies: resolve, zap audit and era diff.

Rules (checked by tests/test_render.py): every line at most 72 columns, so it survives two
levels of "> " quoting under the usual 76-column limit; ASCII only; no tabs; every table is
self-contained (a title line, column headers and a legend) so it can be quoted piecewise;
the footer names the era(s) with the commits they cite and the permalink. The compact
notation `WB!` means WB with IPAT set (guest PAT ignored); `WB` alone means IPAT clear.

The functions take core results (app.kvm / app.analysis objects) and the permalink string,
never API models, so the CLI can use them too.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence

from .kvm.era import Era, Step
from .kvm.ranges import Range
from .kvm.resolve import Resolution
from .kvm.scenario import VcpuState, VmConfig
from .kvm.vm_kinds import VENDOR_INTEL, VM_TYPE_DEFAULT
from .kvm.zap import ZapAudit
from .x86.ept import notation
from .x86.memtype import MemType

WIDTH = 72
TOOL = "memtype-explorer"
MAX_RANGES = 16


def version() -> str:
    """The version in pyproject.toml (the one version string): from the installed
    distribution's metadata, or read from the checkout's pyproject.toml when the package is
    not installed (running from a source tree)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("memtype-explorer")
    except PackageNotFoundError:
        import tomllib
        from pathlib import Path

        with (Path(__file__).resolve().parents[1] / "pyproject.toml").open("rb") as f:
            return str(tomllib.load(f)["project"]["version"])


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii").replace("\t", " ")


def wrap(text: str, indent: str = "", hang: str | None = None, width: int = WIDTH) -> list[str]:
    """Wrap one paragraph; `hang` indents continuation lines (default: same as `indent`)."""
    lines = textwrap.wrap(_ascii(text), width=width, initial_indent=indent,
                          subsequent_indent=indent if hang is None else hang,
                          break_long_words=True, break_on_hyphens=False)
    return lines or [indent.rstrip()]


def kv(key: str, value: str, key_width: int = 13, indent: str = "  ") -> list[str]:
    """'  key          value', value wrapped under itself."""
    head = f"{indent}{key:<{key_width}}"
    return wrap(value, head, " " * len(head))


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], indent: str = "  ", sep: str = "  ") -> list[str]:
    """Left-aligned columns; the last column wraps under itself if a line gets too wide."""
    rows = [[_ascii(str(c)) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    lead = len(indent) + sum(w + len(sep) for w in widths[:-1])
    widths[-1] = max(len(headers[-1]), min(widths[-1], WIDTH - lead))

    def line(cells: Sequence[str]) -> list[str]:
        head = indent + "".join(f"{c:<{widths[i]}}{sep}" for i, c in enumerate(cells[:-1]))
        if len(head) + len(cells[-1]) > WIDTH:
            return wrap(cells[-1], head, " " * len(head))
        return [(head + cells[-1]).rstrip()]

    rule = indent + sep.join("-" * w for w in widths)
    return [*line(headers), rule, *(x for r in rows for x in line(r))]


def legend(text: str) -> list[str]:
    return wrap("Legend: " + text, "  ", "    ")


def title(text: str, char: str = "=") -> list[str]:
    lines = wrap(text)
    return [*lines, char * min(WIDTH, max(len(x) for x in lines))]


def section(text: str) -> list[str]:
    return ["", *wrap(text)]


def permalink_lines(link: str) -> list[str]:
    """The permalink, split at '&' (then ',') when longer than one line can hold."""
    room = WIDTH - 2
    if len(link) <= room:
        return ["Permalink:", "  " + link]
    pieces: list[str] = []
    for i, part in enumerate(link.split("&")):
        tok = ("&" if i else "") + part
        while len(tok) > room:
            cut = tok.rfind(",", 0, room)
            cut = cut + 1 if cut > 0 else room
            pieces.append(tok[:cut])
            tok = tok[cut:]
        pieces.append(tok)
    lines: list[str] = []
    cur = ""
    for p in pieces:
        if cur and len(cur) + len(p) > room:
            lines.append(cur)
            cur = p
        else:
            cur += p
    if cur:
        lines.append(cur)
    return ["Permalink (one URL: join the lines without spaces):", *("  " + x for x in lines)]


def commit_lines(era: Era) -> list[str]:
    out = wrap(f"Era {era.id} ({era.kernels}) cites:")
    for c in era.commits:
        out.extend(wrap(c.subject, f"  {c.sha:<12} ", " " * 15))
    return out


def footer(eras: Sequence[Era], link: str) -> list[str]:
    out = [""]
    for e in eras:
        out.extend(commit_lines(e))
    out.extend(permalink_lines(link))
    out.append(f"-- {TOOL} {version()}")
    return out


def era_header(era: Era, label: str = "Era") -> list[str]:
    return wrap(f"{label} {era.id}: {era.title} (kernels {era.kernels})", "", "  ")


def kernel_lines(kernel) -> list[str]:
    """The kernel version asked for, why it is in its era, and what the version changes
    inside the era (an app.kvm.versions.KernelInfo; nothing for a bare era id)."""
    if kernel is None or kernel.version is None:
        return []
    out = wrap(f"Kernel {kernel.asked.strip()}: {kernel.why}", "", "  ")
    for note in kernel.notes:
        out += wrap(note, "  - ", "    ")
    return out


def _yn(b: bool) -> str:
    return "yes" if b else "no"


def _on(b: bool) -> str:
    return "on" if b else "off"


def vm_lines(vm: VmConfig) -> list[str]:
    kind = "".join(f", {name} {value}" for name, value, default in (
        ("vendor", vm.vendor, VENDOR_INTEL), ("type", vm.vm_type, VM_TYPE_DEFAULT)) if value != default)
    return kv("VM", f"nc-DMA {_yn(vm.noncoherent_dma)}, CD_NW_CLEARED quirk {_on(vm.quirk_cd_nw_cleared)}, "
                    f"IGNORE_GUEST_PAT quirk {_on(vm.quirk_ignore_guest_pat)}, self-snoop {_yn(vm.self_snoop)}, "
                    f"guest MTRR CPUID {_yn(vm.guest_has_mtrr)}, MAXPHYADDR {vm.maxphyaddr}{kind}")


def vcpu_lines(vcpu: VcpuState, vm: VmConfig) -> list[str]:
    from .permalink import mtrr_layout_name

    pat = " ".join(t.label for t in vcpu.pat.entries)
    out = kv("vCPU", f"CR0.CD={int(vcpu.cr0_cd)} NW={int(vcpu.cr0_nw)} PG={int(vcpu.cr0_pg)}")
    out += kv("guest PAT", f"{vcpu.pat.hex()} (PA0..7: {pat})")
    m = vcpu.mtrr
    layout = mtrr_layout_name(m, vm.maxphyaddr)
    desc = (f"MTRRdefType {m.def_type:#x} (E={int(m.enabled)} FE={int(m.fixed_enabled)} "
            f"default {MemType(m.def_type & 0xFF).label if (m.def_type & 0xFF) in (0, 1, 4, 5, 6) else '?'})")
    if layout:
        desc += f", the {layout} layout"
    out += kv("guest MTRRs", desc)
    for n, p in enumerate(m.variable):
        t = MemType(p.type).label if p.type in (0, 1, 4, 5, 6) else str(p.type)
        out += kv("", f"var{n} base {p.base:#x} mask {p.mask:#x} ({t}, {'valid' if p.valid else 'V=0'})")
    return out


def path_lines(steps: Sequence[Step], heading: str, decides: bool = True) -> list[str]:
    out = section(heading)
    idw = max((len(s.id) for s in steps), default=2)
    for st in steps:
        mark = {True: "[x]", False: "[ ]", None: "[-]"}[st.held]
        head = f"  {mark} {st.id:<{idw}}  "
        out.extend(wrap(f"{st.function}: {st.condition}", head, " " * len(head)))
        if st.held and st.result:
            tail = st.result + (f" ({st.commit})" if st.commit else "")
            out.extend(wrap("-> " + tail, " " * len(head), " " * (len(head) + 3)))
    first = " (the first [x] decides)" if decides else ""
    out += legend(f"[x] held{first}, [ ] did not hold, [-] not reached. Commit ids in parentheses.")
    return out


# -- resolve -----------------------------------------------------------------------------


def render_resolve(res: Resolution, vm: VmConfig, vcpu: VcpuState, link: str) -> str:
    era = res.era
    out = title(f"{TOOL}: EPT memory type for guest-physical {res.gpa:#x}")
    out += era_header(era)
    out += kernel_lines(res.kernel)
    out += section("Scenario")
    out += kv("address", f"{res.gpa:#x}, {'MMIO' if res.is_mmio else 'RAM'} ({res.mmio_source})")
    out += vm_lines(vm)
    out += vcpu_lines(vcpu, vm)

    out += section("Result")
    out += kv("EPT entry", f"{notation(res.memtype, res.ipat)}  (memtype {res.memtype.label}, IPAT {int(res.ipat)}, "
                           f"mask {res.mask:#04x})")
    out += kv("leaf", f"{res.leaf.raw:#018x} ({res.leaf.page_size}; example host address)")
    g = res.guest_mtrr
    out += kv("guest MTRR", f"{g.type.label if g.type is not None else 'undefined'} (SDM: {g.reason})")
    if res.kvm_mtrr is not None:
        k = res.kvm_mtrr
        out += kv("KVM MTRR", f"{k.type.label if k.type is not None else '?'} ({k.reason})")
    else:
        out += kv("KVM MTRR", "not read by this era")
    if res.mtrr_finding:
        out += kv("finding", res.mtrr_finding)
    sizes = "; ".join(f"{p.kernels}: {p.page_size}" + (" (MTRR check)" if p.mtrr_check else "") for p in res.page_sizes)
    out += kv("page size", f"{res.page_size} ({sizes})")

    out += path_lines(res.path, "Decision path: the era's vmx_get_mt_mask(), top to bottom")

    out += section(f"Effective type per guest PAT entry (EPT entry {notation(res.memtype, res.ipat)})")
    rows = [
        [str(p.index), f"{p.index >> 2 & 1} {p.index >> 1 & 1} {p.index & 1}", p.pat_type.label,
         p.pat_type_used.label, p.effective.label,
         p.guest_expected.label if p.guest_expected is not None else "undef", p.relation]
        for p in res.pat_rows
    ]
    out += table(["PA", "PAT PCD PWT", "PAT", "used", "effective", "guest", "relation"], rows)
    out += legend(
        "PA = PAT entry the PTE bits select; used = PAT type the access uses (WB when CR0.PG=0); "
        "effective = EPT type x PAT, or the EPT type alone when IPAT is set (WB! = WB with IPAT); guest = what "
        "the guest expects on bare metal (its own MTRR type per the SDM x PAT; UC when CR0.CD=1); "
        "weaker = the CPU may cache or buffer more than the guest asked (the danger case), "
        "stronger = safe but slower, incomparable = each permits something the other forbids."
    )
    out += footer([era], link)
    return "\n".join(out) + "\n"


# -- zap ---------------------------------------------------------------------------------


def _ranges_rows(name: str, ranges: Sequence[Range]) -> list[list[str]]:
    if not ranges:
        return [[name, "-", "-", "0"]]
    rows = [[name if i == 0 else "", f"{s:#x}", f"{e:#x}", str(max(0, e - s) >> 12)]
            for i, (s, e) in enumerate(ranges[:MAX_RANGES])]
    if len(ranges) > MAX_RANGES:
        rest = sum(max(0, e - s) >> 12 for s, e in ranges[MAX_RANGES:])
        rows.append(["", f"... {len(ranges) - MAX_RANGES} more", "", str(rest)])
    return rows


def render_zap(a: ZapAudit, vm: VmConfig, vcpu: VcpuState, link: str, kernel=None) -> str:
    era = a.era
    out = title(f"{TOOL}: zap audit for one event")
    out += era_header(era)
    out += kernel_lines(kernel)
    out += kv("Event", a.event.describe(), 7, "")
    out += section("Scenario before the event")
    out += vm_lines(vm)
    out += vcpu_lines(vcpu, vm)

    c = a.counts
    out += section("Summary (4 KiB pages inside memslots)")
    out += table(["zap calls", "zapped", "needed", "stale", "excess"],
                 [[str(c["zap_calls"]), str(c["zapped_pages"]), str(c["needed_pages"]), str(c["stale_pages"]),
                   str(c["excess_pages"])]])
    verdict = ("stale entries survive the event: a correctness bug" if c["stale_pages"]
               else "no stale entries")
    if c["excess_pages"]:
        verdict += f"; {c['excess_pages']} pages zapped needlessly (refaults)"
    out += wrap(verdict[0].upper() + verdict[1:] + ".", "  ", "  ")

    out += path_lines(a.path, "Zap path: the era's checks for this event, in order", decides=False)

    out += section("Ranges (guest-physical, half-open [start, end))")
    rows: list[list[str]] = []
    for name, rs in (("calls", a.calls), ("zapped", a.zapped_mapped), ("needed", a.needed),
                     ("stale", a.stale), ("excess", a.excess)):
        rows += _ranges_rows(name, list(rs))
    out += table(["set", "start", "end", "pages"], rows)
    out += legend(
        "calls = kvm_zap_gfn_range() calls as made; zapped = the calls' union inside memslots; "
        "needed = mapped pages whose EPT entry (memtype, IPAT) differs after the event; "
        "stale = needed but not zapped (the old entry survives: a bug); excess = zapped but not "
        "needed (wasted work and refaults)."
    )

    out += section("EPT entry changes (mapped runs)")
    crow = [[f"{ch.start:#x}", f"{ch.end:#x}", ch.kind, notation(*ch.before), notation(*ch.after)]
            for ch in a.changes[:MAX_RANGES]]
    if len(a.changes) > MAX_RANGES:
        crow.append([f"... {len(a.changes) - MAX_RANGES} more", "", "", "", ""])
    if not crow:
        crow = [["-", "-", "-", "-", "-"]]
    out += table(["start", "end", "kind", "before", "after"], crow)
    out += legend("before/after = the leaf's EPT type; WB! = WB with IPAT (guest PAT ignored), "
                  "WB = IPAT clear (guest PAT combines).")
    out += footer([era], link)
    return "\n".join(out) + "\n"


# -- diff --------------------------------------------------------------------------------

_DIM_HEAD = (("is_mmio", "io"), ("noncoherent_dma", "nc"), ("cr0_cd", "cd"), ("quirk_cd_nw_cleared", "cq"),
             ("quirk_ignore_guest_pat", "pq"), ("self_snoop", "ss"), ("guest_mtrr", "mtrr"), ("pat", "pat"))


def _cell(v: object) -> str:
    if v is True:
        return "1"
    if v is False:
        return "0"
    return str(v)


def render_diff(d, link: str, max_groups: int = 40, kernels=(None, None)) -> str:
    """`d` is an app.analysis.EraDiff; `kernels` the KernelInfo of what A and B named."""
    from .analysis import group_rows

    a, b = d.a, d.b
    out = title(f"{TOOL}: era diff {a.id} -> {b.id}")
    out += era_header(a, "A")
    out += kernel_lines(kernels[0])
    out += era_header(b, "B")
    out += kernel_lines(kernels[1])
    skipped = sum(d.skipped.values())
    counts = d.counts
    out += section("Summary")
    # One count, said the same way as the page's compare panel: the states both eras can
    # have are the ones compared; the rest of the space is skipped with the era's reason.
    both = "both eras" if a.id != b.id else "the era"
    out += wrap(f"Of the {d.compared} states {both} can have, {counts.get('differ', 0)} differ.", "  ", "  ")
    out += wrap(f"The space is {d.total_states} states: is_mmio, nc-DMA, CR0.CD, two quirks and "
                f"self-snoop (2^6) x KVM's guest MTRR type (5) x the access's PAT type (6). "
                + (f"{skipped} are skipped, as an era cannot have them:" if skipped else "None is skipped."),
                "  ", "  ")
    for why, n in sorted(d.skipped.items()):
        out += wrap(f"{n}: {why}", "  - ", "    ")
    out += wrap(f"B ({b.id}) against A ({a.id}), by effective type:", "  ", "  ")
    out += table(["weaker", "stronger", "incomparable", "EPT only"],
                 [[str(counts.get("weaker", 0)), str(counts.get("stronger", 0)),
                   str(counts.get("incomparable", 0)), str(counts.get("ept_only", 0))]])
    out += legend(f"the class compares B's effective type with A's: weaker = {b.id} lets the CPU cache or "
                  f"buffer more than {a.id} (the danger case), stronger = safer but slower, EPT only = "
                  f"the EPT entry differs but the effective type does not.")

    groups = group_rows(d.rows)
    out += section(f"Where they differ ({len(groups)} groups of {len(d.rows)} states; * = any value)")
    rows = [[*(_cell(g.pattern[k]) for k, _ in _DIM_HEAD), notation(*g.ept_a), notation(*g.ept_b),
             g.effective_a.label, g.effective_b.label, str(g.count), g.classification]
            for g in groups[:max_groups]]
    if not rows:
        rows = [["-"] * 6 + ["-", "-", "-", "-", "-", "0", "none"]]
    out += table([h for _, h in _DIM_HEAD] + ["A", "B", "effA", "effB", "n", "class"], rows, indent=" ", sep=" ")
    if len(groups) > max_groups:
        out += wrap(f"... {len(groups) - max_groups} more groups (see the JSON rows)", "  ")
    out += legend("io = is_mmio, nc = non-coherent DMA, cd = guest CR0.CD, cq = CD_NW_CLEARED quirk, "
                  "pq = IGNORE_GUEST_PAT quirk, ss = self-snoop (1/0), mtrr = KVM's guest MTRR type, "
                  "pat = the access's PAT type; A/B = EPT entry (WB! = WB with IPAT); effA/effB = "
                  "effective type; n = states in the group.")
    out += footer([a, b], link)
    return "\n".join(out) + "\n"


# -- boot-trace replay -------------------------------------------------------------------


def render_replay(trace, results: Sequence, made=None) -> str:
    """`trace` is an app.kvm.replay.Trace, `results` its ReplayResult per era, `made` (an
    app.kvm.trace_source.Made) how the trace was made: start state, QEMU's host writes and,
    for trace text, how the capture was read.

    No permalink: a trace is not page state. The footer still names each era's commits.
    """
    from .kvm.boot import SOURCES, events_by_source
    from .kvm.eras import get_era

    out = title(f"{TOOL}: boot-trace replay{': ' + trace.name if trace.name else ''}")
    by_source = events_by_source(te.source for te in trace.events)
    counts = ", ".join(f"{by_source[k]} {k}" for k in SOURCES if by_source.get(k))
    out += kv("trace", f"{len(trace.events)} events ({counts or 'none'}) on {trace.vcpus} vCPUs; "
              f"nc-DMA {'yes' if trace.vm.noncoherent_dma else 'no'} at the start", 8, "")
    if made is not None:
        out += kv("start", {"reset": "RESET (CR0.CD=NW=1, MTRRs 0, PAT power-on)",
                            "running": "running (caching on, MTRRs off)", "given": "the state given"}[made.initial]
                  + ("; QEMU's KVM_SET_MSRS writes added (source qemu)" if made.qemu_host_writes else
                     "; no QEMU host writes (--qemu-host-writes adds them)"), 8, "")
        imp = made.imported
        if imp is not None and imp.kind != "plain":
            vm = f"PID {imp.pid}" if imp.pid is not None else "PIDs not recorded"
            ids = ", ".join(f"{t.tid}->{t.vcpu}" for t in imp.threads[:8]) + (" ..." if len(imp.threads) > 8 else "")
            out += kv("capture", f"{'/'.join(imp.layouts)} layout, {vm}; threads (TID->vCPU) {ids or 'none'}", 8, "")
            if imp.skipped:
                out += kv("skipped", "; ".join(f"{v} {k}" for k, v in sorted(imp.skipped.items())), 8, "")
    rows = [[r.era, str(r.zap_calls), str(r.duplicate_calls), str(r.calls_while_cd),
             str(r.zapped_pages), str(r.excess_pages), str(r.stale_pages)] for r in results]
    out += section("kvm_zap_gfn_range() calls and 4 KiB pages, per era")
    out += table(["era", "calls", "dup", "CD=1", "zapped", "excess", "stale<="], rows)
    used = [k for k in SOURCES if any(r.calls_by_source.get(k) for r in results)]
    if used:
        out += section("The calls by who made the write that caused them")
        out += table(["era", *used], [[r.era, *(str(r.calls_by_source.get(k, 0)) for k in used)] for r in results])
    out += legend("calls = kvm_zap_gfn_range() calls with a non-empty range; dup = calls "
                  "over a range unchanged since it was last zapped; CD=1 = calls made while "
                  "the calling vCPU had CR0.CD=1; zapped/excess = mapped pages zapped, and "
                  "those whose entry did not need to change; stale<= = mapped pages whose "
                  "entry differs at the end from what vCPU 0's final state gives (an old "
                  "memtype survives). Zapped pages are assumed refaulted at once by the "
                  "vCPU that caused the zap, so stale is an upper bound. qemu = QEMU's "
                  "KVM_SET_MSRS writes, firmware and linux = the generated boot's writers, "
                  "trace = the events given.")
    out.append("")
    for r in results:
        out.extend(commit_lines(get_era(r.era)))
    out.append(f"-- {TOOL} {version()}")
    return "\n".join(out) + "\n"


__all__ = ["WIDTH", "render_diff", "render_replay", "render_resolve", "render_zap", "wrap"]
