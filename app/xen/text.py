"""The 72-column plain-text rendering of a Xen resolution and of a Xen event answer,
built from app/render.py's helpers so it reads like the KVM renderings."""

from __future__ import annotations

from ..render import MAX_RANGES, _ranges_rows, kv, legend, path_lines, permalink_lines, section, table, title, wrap
from .cd import CdView
from .events import EventAnswer
from .resolve import XenResolution
from .zap import XenZap


def _domain_text(res: XenResolution) -> str:
    d, v = res.domain, res.version
    return (f"IOMMU {'yes' if d.iommu_enabled else 'no'}, iomem/ioports {'yes' if d.io_resources else 'no'}, "
            f"PCI devices {'yes' if d.pci_devices else 'no'}, cache_flush_permitted "
            f"{'yes' if d.cache_flush_permitted(v) else 'no'}, {len(d.pinned)} pinned range(s)"
            + ("" if d.has_vcpu else ", no vCPU yet"))


def render_xen(res: XenResolution, link: str = "") -> str:
    p, e = res.page, res.emt
    out = title(f"memtype-explorer: Xen EPT memory type for gfn {p.gfn:#x}")
    out += [f"{res.version.title} ({res.version.tag}, {res.version.commit[:12]})"]
    out += section("Scenario")
    out += kv("p2m entry", f"gfn {p.gfn:#x} -> mfn {p.mfn:#x}, order {p.order}, {p.p2m_type.c_name}; "
              f"mmio_ro {p.mmio_ro.value}, special pages {p.special.value}, host MTRR "
              + (p.host_mtrr.label if p.host_mtrr is not None else "-1 (mixed)"))
    out += kv("domain", _domain_text(res))
    out += kv("vCPU", f"CR0.CD={int(res.cd.hw_cr0_cd)}, cache mode {res.cd.cache_mode}, "
              f"GUEST_PAT {res.cd.vmcs_pat.hex()}")
    out += section("Result")
    if e.emt is None:
        out += kv("EPT entry", f"?? (EMT 7, mask {e.mask:#x}): misconfiguration on access; "
                  "resolve_misconfig() splits and recomputes")
    else:
        out += kv("EPT entry", f"{e.label}  (EMT {e.emt.label}, IPAT {int(e.ipat)}, mask {e.mask:#x})")
    out += kv("leaf", f"{res.leaf.raw:#018x} ({res.leaf.page_size})")
    g = res.guest_mtrr
    out += kv("guest MTRR", f"{g.type.label if g.type is not None else 'undefined'} (SDM: {g.reason})")
    if res.xen_mtrr is not None:
        x = res.xen_mtrr
        out += kv("Xen MTRR", f"{x.type.label if x.type is not None else '-1'} ({x.reason})")
    if res.mtrr_finding:
        out += kv("finding", res.mtrr_finding)
    out += path_lines(e.path, "Decision path: epte_get_entry_emt(), top to bottom")
    out += path_lines(res.cd.path, "CR0.CD: not in the EMT (vmx_update_guest_cr, vmx_handle_cd)", decides=False)
    if res.pat_rows:
        out += section("Effective type per guest PAT entry")
        out += table(["PA", "PAT PCD PWT", "PAT", "used", "effective", "guest", "relation"],
                     [[str(r.index), r.pte_flags.replace("PAT=", "").replace("PCD=", "").replace("PWT=", ""),
                       r.pat_type.label, r.pat_type_used.label, r.effective.label,
                       r.guest_expected.label if r.guest_expected is not None else "?", r.relation]
                      for r in res.pat_rows])
        out += legend("used = the PAT type in GUEST_PAT (all UC while vmx_handle_cd's no-fill mode is on; WB "
                      "when CR0.PG=0); guest = what the guest expects on bare metal.")
    if link:
        out += ["", *permalink_lines(link)]
    return "\n".join(out) + "\n"


def render_xen_event(a: EventAnswer) -> str:
    out = title(f"Xen: {a.kind}")
    out += kv("EPT", a.text + (f"; {a.scope}" if a.scope else ""))
    out += kv("cache flush", "flush_all()" if a.flush else "none")
    out += kv("this entry", f"{a.before.label} -> {a.after.label}: {a.verdict}")
    out += path_lines(a.path, "What Xen runs", decides=False)
    return "\n".join(out) + "\n"


def _emt(t) -> str:
    mt, ipat = t
    return "??" if mt is None else mt.label + ("!" if ipat else "")


def _cd(c: CdView) -> str:
    return f"CR0.CD={int(c.hw_cr0_cd)}, {c.cache_mode}, GUEST_PAT {c.vmcs_pat.hex()}"


def render_xen_zap(z: XenZap, link: str = "") -> str:
    """A Xen event over the whole domain, in 72 columns (the zap view's text)."""
    fx = z.effect
    v = z.version
    out = title("memtype-explorer: Xen EPT for one event")
    out += [f"{v.title} ({v.tag}, {v.commit[:12]})"]
    out += kv("Event", z.event.describe(), 7, "")
    out += section("What Xen does to EPT")
    out += kv("EPT", fx.text)
    if fx.invalidated:
        out += wrap(fx.scope, "  ", "  ")
    out += kv("cache flush", "flush_all()" if fx.flush else "none")
    out += kv("CD before", _cd(z.cd_before))
    out += kv("CD after", _cd(z.cd_after))
    out += path_lines(fx.path, "What Xen runs, in order", decides=False)
    n = {k: sum((e - s) >> 12 for s, e in rs) for k, rs in
         (("invalidated", z.invalidated), ("needed", z.needed), ("stale", z.stale), ("excess", z.excess))}
    out += section("Summary (4 KiB pages inside the memory map)")
    out += table(["invalidated", "needed", "stale", "excess"],
                 [[str(n["invalidated"]), str(n["needed"]), str(n["stale"]), str(n["excess"])]])
    verdict = "stale entries survive the event" if n["stale"] else "no stale entries"
    if n["excess"]:
        verdict += f"; {n['excess']} pages invalidated needlessly (one exit per leaf table or superpage)"
    out += wrap(verdict[0].upper() + verdict[1:] + ".", "  ", "  ")
    out += section("Ranges (guest-physical, half-open [start, end))")
    rows: list[list[str]] = []
    for name, rs in (("invalidated", z.invalidated), ("needed", z.needed), ("stale", z.stale),
                     ("excess", z.excess)):
        rows += _ranges_rows(name, list(rs))
    out += table(["set", "start", "end", "pages"], rows)
    out += legend("invalidated = marked EMT 7, recomputed on next access (resolve_misconfig); needed = "
                  "the EMT or IPAT differs after the event; stale = needed, not invalidated; excess = "
                  "invalidated, unchanged.")
    out += section("EPT entry changes (mapped runs)")
    crow = [[f"{c.start:#x}", f"{c.end:#x}", c.kind, _emt(c.before), _emt(c.after)] for c in z.changes[:MAX_RANGES]]
    if len(z.changes) > MAX_RANGES:
        crow.append([f"... {len(z.changes) - MAX_RANGES} more", "", "", "", ""])
    out += table(["start", "end", "kind", "before", "after"], crow or [["-", "-", "-", "-", "-"]])
    out += legend("WB! = WB with IPAT (guest PAT ignored); WB = IPAT clear.")
    for note in z.notes:
        out += wrap("Note: " + note, "", "  ")
    if link:
        out += ["", *permalink_lines(link)]
    return "\n".join(out) + "\n"
