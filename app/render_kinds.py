"""72-column plain-text renderings for the VM kinds beyond KVM on Intel: AMD SVM with NPT
(`vm.vendor` amd: resolve and zap) and a TDX VM (`vm.type` tdx: resolve; its zap audit is
the ordinary one). Built from app/render.py's helpers (same rules: <= 72 columns, ASCII,
self-contained tables with a legend, permalink and version footer); core objects in,
never API models, so the CLI can use them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .kvm.era import MaskResult, Step
from .kvm.ranges import Range
from .kvm.scenario import Access, Event, VcpuState, VmConfig
from .kvm.svm import UNVERIFIED, SvmKernel, SvmResult
from .kvm.tdx import PRIVATE_UNVERIFIED, TdxResult
from .kvm.versions import KernelInfo
from .render import (
    MAX_RANGES,
    TOOL,
    kernel_lines,
    kv,
    legend,
    path_lines,
    permalink_lines,
    section,
    table,
    title,
    vcpu_lines,
    version,
    vm_lines,
    wrap,
)
from .system_diff import FIXED, STATUS_TEXT
from .x86.ept import notation


def _footer(link: str) -> list[str]:
    return ["", *permalink_lines(link), f"-- {TOOL} {version()}"]


def _svm_kernel_lines(k: SvmKernel) -> list[str]:
    out = wrap(f"Kernel {k.label}: KVM on AMD (SVM with nested paging, kvm_amd)", "", "  ")
    for note in k.notes:
        out += wrap(note, "  - ", "    ")
    return out


def _notes(notes: Sequence[str]) -> list[str]:
    out = section("Notes")
    for n in notes:
        out += wrap(n, "  - ", "    ")
    return out


# -- AMD resolve -------------------------------------------------------------------------


def render_svm(res: SvmResult, vm: VmConfig, vcpu: VcpuState, access: Access, link: str) -> str:
    n = res.npt
    out = title(f"{TOOL}: AMD NPT memory type for guest-physical {access.gpa:#x}")
    out += _svm_kernel_lines(res.kernel)
    out += section("Scenario")
    _, source = access.host_page_for(vm)
    out += kv("address", f"{access.gpa:#x}, {'MMIO' if access.is_mmio(vm) else 'RAM'} ({source})")
    out += vm_lines(vm)
    out += vcpu_lines(vcpu, vm)

    out += section("Result")
    out += kv("NPT entry", f"{n.raw:#018x} ({n.page_size}; no memtype field, no IPAT; selects host PAT entry "
                           f"{n.host_pat_index})")
    out += table(["field", "bits", "value", "meaning"],
                 [[f.name, f"{f.hi}:{f.lo}" if f.hi != f.lo else str(f.lo), f"{f.value:#x}", f.meaning]
                  for f in n.fields()])
    out += kv("host side", f"host MTRR {res.host_mtrr.label} x host PAT[{res.host_pat_index}] "
                           f"{res.host_pat_type.label} = {res.host_type.label}")
    out += kv("CPU CR0", f"CD={int(res.cr0.cd)} NW={int(res.cr0.nw)} ({res.cr0.why})")
    out += kv("gPAT", f"{res.gpat.pat.hex()} ({res.gpat.why})")
    out += kv("page size", "limited by the guest MTRRs (to 5.19)" if res.largest_page_by_guest_mtrrs
              else "not limited by the guest MTRRs")

    out += path_lines(res.path, "Decision path: what reaches the hardware, in order", decides=False)

    out += section(f"Effective type per guest PAT entry (host side {res.host_type.label})")
    out += table(["PA", "PAT PCD PWT", "guest", "gPAT", "effective", "expects", "relation"],
                 [[str(r.index), f"{r.index >> 2 & 1} {r.index >> 1 & 1} {r.index & 1}", r.guest_pat_type.label,
                   r.gpat_type.label, r.effective.label,
                   r.guest_expected.label if r.guest_expected is not None else "undef", r.relation]
                  for r in res.rows])
    out += legend(
        "guest = the guest's IA32_PAT entry; gPAT = the VMCB g_pat entry the CPU uses (WB when CR0.PG=0); "
        "effective = host side x gPAT type, UC when the CPU's CR0.CD=1; expects = what the guest expects "
        "on bare metal (its MTRR type x PAT; UC when its CR0.CD=1); weaker = the CPU may cache more than "
        "the guest asked, stronger = safe but slower. " + UNVERIFIED + ".")
    out += _notes(res.notes)
    out += _footer(link)
    return "\n".join(out) + "\n"


# -- AMD zap -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SvmZap:
    """What svm_zap() answers for one event, with the calls' pages inside memslots."""

    kernel: SvmKernel
    event: Event
    calls: tuple[Range, ...]
    zapped: tuple[Range, ...]
    path: tuple[Step, ...]
    note: str


NO_ZAP_NEEDED = ("no NPT entry holds a memory type, so no event changes one: no zap is needed and every "
                 "zapped page is excess (the new CR0 or g_pat takes effect at the next VMRUN)")


def svm_zap_view(kernel: SvmKernel, vm: VmConfig, vcpu: VcpuState, event: Event) -> SvmZap:
    """svm_zap() for one event, with the calls' pages inside memslots: what POST /api/v1/zap
    (vm.vendor amd) and the CLI's zap answer. Refusals are the core's."""
    from .kvm.era import ZapInput
    from .kvm.ranges import intersect, merge
    from .kvm.scenario import apply_event
    from .kvm.svm import svm_zap
    from .x86.memtype import located

    vm.validate()
    vcpu.validate(vm)
    with located("event"):
        vm_after, vcpu_after = apply_event(vm, vcpu, event)
    d = svm_zap(kernel, ZapInput(vm, vcpu, vm_after, vcpu_after, event))
    zapped = intersect(merge(d.calls), [(r.start, r.end) for r in vm.memory_map])
    return SvmZap(kernel, event, d.calls, tuple(zapped), d.path, NO_ZAP_NEEDED)


def _range_rows(name: str, ranges: Sequence[Range]) -> list[list[str]]:
    if not ranges:
        return [[name, "-", "-", "0"]]
    rows = [[name if i == 0 else "", f"{s:#x}", f"{e:#x}", str(max(0, e - s) >> 12)]
            for i, (s, e) in enumerate(ranges[:MAX_RANGES])]
    if len(ranges) > MAX_RANGES:
        rows.append(["", f"... {len(ranges) - MAX_RANGES} more", "", ""])
    return rows


def render_svm_zap(z: SvmZap, vm: VmConfig, vcpu: VcpuState, link: str) -> str:
    out = title(f"{TOOL}: AMD zap audit for one event")
    out += _svm_kernel_lines(z.kernel)
    out += kv("Event", z.event.describe(), 7, "")
    out += section("Scenario before the event")
    out += vm_lines(vm)
    out += vcpu_lines(vcpu, vm)
    zapped = sum(max(0, e - s) >> 12 for s, e in z.zapped)
    out += section("Summary (4 KiB pages inside memslots)")
    out += table(["zap calls", "zapped", "needed", "stale", "excess"],
                 [[str(len(z.calls)), str(zapped), "0", "0", str(zapped)]])
    out += wrap(z.note[0].upper() + z.note[1:] + ".", "  ", "  ")
    out += path_lines(z.path, "Zap path: KVM's checks for this event on AMD, in order", decides=False)
    out += section("Ranges (guest-physical, half-open [start, end))")
    out += table(["set", "start", "end", "pages"], _range_rows("calls", z.calls) + _range_rows("zapped", z.zapped))
    out += legend("calls = kvm_zap_gfn_range() calls as made; zapped = their union inside memslots (all of "
                  "it excess: NPT entries carry no memory type).")
    out += _footer(link)
    return "\n".join(out) + "\n"


# -- TDX resolve -------------------------------------------------------------------------


def render_tdx(res: TdxResult, kernel: KernelInfo, vm: VmConfig, vcpu: VcpuState, access: Access, private: bool,
               applied: Sequence[str], mask: MaskResult | None, link: str) -> str:
    out = title(f"{TOOL}: TDX VM memory type for guest-physical {access.gpa:#x}")
    out += wrap(f"Era {kernel.era}: a TD (KVM_X86_TDX_VM) on kvm_intel", "", "  ")
    out += kernel_lines(kernel)
    out += section("Scenario")
    _, source = access.host_page_for(vm)
    out += kv("address", f"{access.gpa:#x}, {'MMIO' if access.is_mmio(vm) else 'RAM'} ({source}), "
                         f"{'private (Secure EPT)' if private else 'shared (normal EPT)'}")
    out += vm_lines(vm)
    out += vcpu_lines(vcpu, vm)
    if applied:
        out += kv("TDX fixed", "set to the TD's value (not given): " + ", ".join(applied))

    out += section("Result")
    out += kv("EPT entry", f"{notation(res.memtype, res.ipat)}  (memtype {res.memtype.label}, IPAT {int(res.ipat)}"
                           f"{', Secure EPT' if private else ''})")
    out += kv("why", res.why)
    if mask is not None:
        out += path_lines(mask.path, "Decision path: vmx_get_mt_mask() (v6.16, quirk off)")
    else:
        out += kv("path", PRIVATE_UNVERIFIED)

    out += section(f"Effective type per guest PAT entry (EPT entry {notation(res.memtype, res.ipat)})")
    out += table(["PA", "PAT PCD PWT", "PAT", "effective", "guest", "relation"],
                 [[str(r.index), f"{r.index >> 2 & 1} {r.index >> 1 & 1} {r.index & 1}", r.pat_type.label,
                   r.effective.label, r.guest_expected.label if r.guest_expected is not None else "undef",
                   r.relation] for r in res.rows])
    out += legend("effective = EPT type x guest PAT (IPAT clear: guest PAT decides); guest = what the guest "
                  "expects on bare metal; weaker = the CPU may cache more than the guest asked.")
    out += _notes(res.notes)
    out += _footer(link)
    return "\n".join(out) + "\n"


__all__ = ["SvmZap", "render_svm", "render_svm_zap", "render_tdx"]


# -- cross-system diff ------------------------------------------------------------------

_SYS_HEAD = {"is_mmio": "io", "noncoherent_dma": "nc", "cr0_cd": "cd", "quirk_cd_nw_cleared": "cq",
             "quirk_ignore_guest_pat": "pq", "self_snoop": "ss", "guest_mtrr": "mtrr", "pat": "pat",
             "xen_iommu": "xi", "xen_io": "xo"}
"""Column heads of the diff table (the era diff's, plus Xen's two)."""


def _cell(v: object) -> str:
    return "1" if v is True else "0" if v is False else str(v)


def _entry(e: str) -> str:
    return e.replace("NPT: host ", "h:")


def render_system_diff(d, link: str = "", max_groups: int = 40) -> str:
    """`d` is an app.system_diff.SystemDiff: A and B over their joint space, in 72 columns."""
    a, b = d.a, d.b
    out = title(f"{TOOL}: cross-system diff")
    out += kv("A", f"{a.label} ({a.system})", 3, "")
    out += kv("B", f"{b.label} ({b.system})", 3, "")
    fixed = bool(d.fixed("a") or d.fixed("b"))
    out += section("Dimensions (read / not read / absent" + (" / fixed)" if fixed else ")"))
    out += table(["dimension", "A", "B", "compared"],
                 [[k, sa, sb, "yes" if k in {n for n, _ in d.dimensions} else "no"] for k, _, sa, sb in d.status()])
    out += legend("; ".join(f"{k} = {t}" for k, t in STATUS_TEXT.items() if fixed or k != FIXED)
                  + ". Compared = part of the joint "
                  "space (read by A or B); a side is the same for every value of a dimension it does not read.")
    out += section("How the states map")
    for m in d.mapping():
        out += wrap(m, "  - ", "    ")
    for m in d.not_compared():
        out += wrap("not compared: " + m, "  - ", "    ")
    c = d.counts
    skipped = sum(d.skipped.values())
    out += section("Summary")
    out += wrap(f"Of the {d.compared} states both can have ({d.total_states} in the joint space, {skipped} "
                f"skipped), {c['differ']} differ.", "  ", "  ")
    for why, n in sorted(d.skipped.items()):
        out += wrap(f"{n}: {why}", "  - ", "    ")
    out += table(["weaker", "stronger", "incomparable", "entry only"],
                 [[str(c["weaker"]), str(c["stronger"]), str(c["incomparable"]), str(c["entry_only"])]])
    out += legend("B's effective type against A's: weaker = B lets the CPU cache or buffer more (the danger "
                  "case), stronger = safer but slower; entry only = the EPT entries differ, the effective "
                  "type does not" + ("" if d.entries_comparable else " (not counted: an NPT entry has no type)")
                  + ".")
    groups = d.groups()
    heads = [_SYS_HEAD[k] for k, _ in d.dimensions]
    out += section(f"Where they differ ({len(groups)} groups of {len(d.rows)} states; * = any)")
    rows = [[*(_cell(g.pattern[k]) for k, _ in d.dimensions), _entry(g.entry_a), _entry(g.entry_b),
             g.effective_a.label, g.effective_b.label, str(g.count), g.classification[:6]]
            for g in groups[:max_groups]]
    if not rows:
        rows = [["-"] * len(heads) + ["-", "-", "-", "-", "0", "none"]]
    out += table([*heads, "A", "B", "effA", "effB", "n", "class"], rows, indent=" ", sep=" ")
    if len(groups) > max_groups:
        out += wrap(f"... {len(groups) - max_groups} more groups (see the JSON rows)", "  ")
    out += legend("io = is_mmio, nc = nc-DMA, cd = guest CR0.CD, cq/pq = the CD_NW_CLEARED/IGNORE_GUEST_PAT "
                  "quirks, ss = self-snoop, xi = Xen IOMMU, xo = Xen I/O resources (1/0); mtrr/pat = the guest "
                  "MTRR and PAT types; A/B = the entry (WB! = WB with IPAT; h:T = an NPT entry whose host side "
                  "is T); class: incomp(arable), same = entry only.")
    out += _footer(link) if link else ["", f"-- {TOOL} {version()}"]
    return "\n".join(out) + "\n"
