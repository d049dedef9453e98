"""The 72-column plain-text rendering of a Xen resolution and of a Xen event answer,
built from app/render.py's helpers so it reads like the KVM renderings."""

from __future__ import annotations

from ..render import kv, legend, path_lines, section, table, title
from .events import EventAnswer
from .resolve import XenResolution


def _domain_text(res: XenResolution) -> str:
    d, v = res.domain, res.version
    return (f"IOMMU {'yes' if d.iommu_enabled else 'no'}, iomem/ioports {'yes' if d.io_resources else 'no'}, "
            f"PCI devices {'yes' if d.pci_devices else 'no'}, cache_flush_permitted "
            f"{'yes' if d.cache_flush_permitted(v) else 'no'}, {len(d.pinned)} pinned range(s)"
            + ("" if d.has_vcpu else ", no vCPU yet"))


def render_xen(res: XenResolution) -> str:
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
    return "\n".join(out) + "\n"


def render_xen_event(a: EventAnswer) -> str:
    out = title(f"Xen: {a.kind}")
    out += kv("EPT", a.text + (f"; {a.scope}" if a.scope else ""))
    out += kv("cache flush", "flush_all()" if a.flush else "none")
    out += kv("this entry", f"{a.before.label} -> {a.after.label}: {a.verdict}")
    out += path_lines(a.path, "What Xen runs", decides=False)
    return "\n".join(out) + "\n"
