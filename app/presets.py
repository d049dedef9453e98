"""Named scenarios: starting points for the page, the API (GET /api/v1/presets) and the CLI.

Each preset is core objects (a LinkState: era, VM, vCPU, address, optionally a zap event
and an era worth comparing with) plus prose saying what to look at. `request()` turns one
into a full POST /api/v1/resolve body, `url()` into a permalink.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .kvm.layouts import ovmf_state, seabios_state
from .kvm.scenario import MSR_MTRR_DEF_TYPE, Access, Cr0Write, MtrrWrite, NoncoherentDma, VcpuState, VmConfig
from .permalink import LinkState, event_json, scenario_json
from .permalink import url as permalink_url
from .x86.memtype import MemType
from .x86.mtrr import DEF_TYPE_E, MtrrState, range_to_pair
from .x86.pat import PAT_LINUX, PAT_POWER_ON, Pat


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    description: str
    state: LinkState
    compare: str | None = None

    def request(self) -> dict:
        """The full POST /api/v1/resolve body."""
        st = self.state
        return scenario_json(st.kernel, st.vm, st.vcpu, st.access)

    def event(self) -> dict | None:
        return event_json(self.state.event) if self.state.event is not None else None

    def url(self, base: str = "") -> str:
        return permalink_url(replace(self.state, event=None), base)


LINUX_PAT = Pat.from_msr(PAT_LINUX)
POWER_ON_PAT = Pat.from_msr(PAT_POWER_ON)
OVMF = ovmf_state(46)
OVMF_LINUX = ovmf_state(46, linux=True)
SEABIOS = seabios_state(46)
NCDMA = VmConfig(noncoherent_dma=True)

_seed_vcpu = VcpuState(cr0_cd=True, pat=POWER_ON_PAT, mtrr=OVMF)
_seed = LinkState("v4.2", NCDMA, _seed_vcpu, Access(0x100000), Cr0Write(value=False))

# Two overlapping variable ranges, WC over WB: the SDM leaves WC+WB undefined; KVM says WB.
_overlap = MtrrState(
    def_type=DEF_TYPE_E | int(MemType.WB),
    variable=(range_to_pair(0xE0000000, 0x10000000, MemType.WC, 46),
              range_to_pair(0xE0000000, 0x20000000, MemType.WB, 46)),
)

_LIST = [
    Preset(
        "review-seed",
        "The review's seed case: v6.7 against v4.2 at the VRAM (nc-DMA, quirk on, CR0.CD=1, OVMF MTRRs)",
        "The page opens here. A VM with non-coherent DMA (an assigned device whose DMA does not snoop "
        "the CPU caches) runs a vCPU with CR0.CD=1 under KVM_X86_QUIRK_CD_NW_CLEARED; the guest "
        "MTRRs are OVMF's and the address is the bochs VRAM at 0xfd000000 (host RAM). Three questions: "
        "(1) which EPT entry does KVM write, and does IPAT (ignore guest PAT) stand? v6.7 gives WB "
        "without IPAT (mask 0x30), v4.2 WB with IPAT (0x70); "
        "(2) across every state, where does v6.7 differ from v4.2, and which way? "
        "(3) when the guest clears CR0.CD again, which EPT entries stay stale?",
        LinkState("v6.7", NCDMA, _seed_vcpu, Access(0xFD000000), Cr0Write(value=False)),
        compare="v4.2",
    ),
    Preset(
        "seed-v4.2",
        "The seed case under v4.2: nc-DMA, quirk on, CR0.CD=1",
        "A VM with non-coherent DMA whose vCPU runs with CR0.CD=1 (firmware, or MTRR programming) "
        "under KVM_X86_QUIRK_CD_NW_CLEARED: v4.2 to v6.6 give WB with IPAT (mask 0x70), so guest "
        "PAT is ignored; the CD toggle back to 0 zaps nothing, so those entries outlive CD=1. "
        "Compare v6.7 (WB without IPAT, 0x30).",
        _seed, compare="v6.7",
    ),
    Preset(
        "seed-v6.7",
        "The seed case under v6.7: WB without IPAT",
        "The same VM and vCPU under 6.7 to 6.10 (c9f65a3f2d92 dropped IPAT for CR0.CD=1 under the "
        "quirk): WB without IPAT (mask 0x30), so guest PAT now combines. Compare v4.2.",
        replace(_seed, kernel="v6.7"), compare="v4.2",
    ),
    Preset(
        "seed-quirk-off",
        "The seed case with KVM_X86_QUIRK_CD_NW_CLEARED off",
        "Quirk off: CR0.CD=1 is emulated as UC with IPAT (mask 0x40) in v4.2 and v6.7 alike, and a "
        "CD toggle zaps everything.",
        replace(_seed, kernel="v6.7", vm=replace(NCDMA, quirk_cd_nw_cleared=False)), compare="v4.2",
    ),
    Preset(
        "ovmf",
        "OVMF's MTRR layout (nc-DMA VM, v6.7)",
        "OVMF: default WB, fixed 0-0x9ffff WB and 0xa0000-0xfffff UC, one variable range "
        "0x80000000-0x100000000 UC (the 32-bit PCI hole). With non-coherent DMA, v6.7 puts the guest "
        "MTRR type in EPT: the bochs VRAM at 0xfd000000 (host RAM) gets UC with IPAT clear, so guest "
        "PAT still combines: a WC mapping (Linux PAT entry 1, what a framebuffer driver uses) is WC, "
        "as UC x WC = WC in the MTRR x PAT table; every other PAT type gives UC.",
        LinkState("v6.7", NCDMA, VcpuState(pat=LINUX_PAT, mtrr=OVMF), Access(0xFD000000),
                  MtrrWrite(msr=MSR_MTRR_DEF_TYPE, value=0x806)),
        compare="v6.11",
    ),
    Preset(
        "ovmf-linux",
        "OVMF's MTRRs plus Linux's 64-bit PCI hole",
        "After boot a Linux guest adds 0x800000000-0x1000000000 UC; the assigned GPU BAR at "
        "0x800000000 falls in it.",
        LinkState("v6.7", NCDMA, VcpuState(pat=LINUX_PAT, mtrr=OVMF_LINUX), Access(0x800000000)),
        compare="v6.11",
    ),
    Preset(
        "seabios",
        "SeaBIOS-like MTRR layout (nc-DMA VM, v6.7)",
        "WB below 640K, UC VGA window, WP option-ROM area 0xc0000-0xfffff, default WB with the top "
        "1 GiB below 4 GiB UC (our assumption; the docs give none). At 0xc0000 the EPT type is WP.",
        LinkState("v6.7", NCDMA, VcpuState(pat=LINUX_PAT, mtrr=SEABIOS), Access(0xC0000)),
        compare="v6.11",
    ),
    Preset(
        "linux-pat",
        "Linux guest PAT on a stock VM (v6.16)",
        "PA0..7 = WB, WC, UC-, UC, WB, WP, UC-, WT. Without non-coherent DMA every RAM page is WB with "
        "IPAT: the guest's WC and UC mappings of RAM become WB (weaker than it asked, harmless "
        "without a device that bypasses the cache).",
        LinkState("v6.16", VmConfig(), VcpuState(pat=LINUX_PAT, mtrr=OVMF_LINUX), Access(0x100000)),
        compare="v6.11-rc1",
    ),
    Preset(
        "power-on",
        "Power-on state: reset PAT, MTRRs disabled (v6.16)",
        "IA32_PAT at reset (WB, WT, UC-, UC repeated) and MTRRdefType=0: the guest expects UC "
        "everywhere; KVM maps RAM WB with IPAT.",
        LinkState("v6.16", VmConfig(), VcpuState(pat=POWER_ON_PAT), Access(0x0)),
        compare="v4.2",
    ),
    Preset(
        "gpu-passthrough",
        "GPU pass-through with non-coherent DMA (v6.7): the BAR",
        "An assigned GPU doing non-coherent DMA: its BAR (host MMIO) is UC in EPT with IPAT clear, so "
        "the guest's WC mapping (PAT entry 1) stays WC; RAM follows the guest MTRRs.",
        LinkState("v6.7", NCDMA, VcpuState(pat=LINUX_PAT, mtrr=OVMF_LINUX), Access(0x800000000),
                  NoncoherentDma(value=False)),
        compare="v6.11",
    ),
    Preset(
        "gpu-passthrough-ram",
        "GPU pass-through with non-coherent DMA (v6.11): RAM honours guest PAT",
        "From 6.11 guest MTRRs are ignored: RAM of a VM with non-coherent DMA is WB without IPAT and "
        "guest PAT alone decides, so a WC or UC mapping really is WC or UC.",
        LinkState("v6.11", NCDMA, VcpuState(pat=LINUX_PAT, mtrr=OVMF_LINUX), Access(0x100000000),
                  NoncoherentDma(value=False)),
        compare="v6.7",
    ),
    Preset(
        "bochs-6.11-rc1",
        "bochs-display regression in 6.11-rc1 (VRAM UC- on a self-snoop CPU)",
        "bochs-drm maps its VRAM BAR (0xfd000000, host RAM) with ioremap(): PAT entry 2, UC-. 377b2f359d1f "
        "honoured guest PAT on every self-snoop CPU, so WB|IPAT became WB x UC- = UC: a very slow "
        "framebuffer on Sapphire Rapids, and the revert 9d70f3fec144 for 6.11. Compare v6.11.",
        LinkState("v6.11-rc1", VmConfig(self_snoop=True), VcpuState(pat=LINUX_PAT, mtrr=OVMF_LINUX),
                  Access(0xFD000000)),
        compare="v6.11",
    ),
    Preset(
        "v6.16-quirk-off",
        "6.16 with KVM_X86_QUIRK_IGNORE_GUEST_PAT disabled",
        "Userspace may disable the quirk on a self-snoop CPU: guest PAT is then honoured for every "
        "VM (WB without IPAT), as 6.11-rc1 did unconditionally.",
        LinkState("v6.16", VmConfig(quirk_ignore_guest_pat=False), VcpuState(pat=LINUX_PAT, mtrr=OVMF_LINUX),
                  Access(0xFD000000), NoncoherentDma(value=True)),
        compare="v6.11-rc1",
    ),
    Preset(
        "mmio",
        "Host MMIO (an assigned BAR) on a stock VM",
        "is_mmio leaves are UC with IPAT clear in every era (mask 0x00), so guest PAT can still make "
        "them WC.",
        LinkState("v6.7", VmConfig(), VcpuState(pat=LINUX_PAT, mtrr=OVMF_LINUX), Access(0x800000000, mmio=True)),
        compare="v6.16",
    ),
    Preset(
        "dosemu2-vga",
        "The host's VGA window mapped from /dev/mem (dosemu2), quirk off (v6.16, 6.12.78)",
        "The default map's 0xa0000-0xbffff is the host's own VGA window, mapped from /dev/mem: "
        "reserved pages with a struct page in the PAT-untracked ISA range, so "
        "pat_pfn_immune_to_uc_mtrr() reads WB and kvm_is_mmio_pfn() says not MMIO (from 4.16; "
        "UC up to 4.15). With KVM_X86_QUIRK_IGNORE_GUEST_PAT on the leaf is WB|IPAT and the "
        "guest's UC mapping (PAT entry 3) is ignored: the CPU caches real VGA memory, a machine "
        "check in dosemu2 PRs 2813/2815. Turned off (6.16+, or 6.12.78 with the backport) the "
        "leaf is WB without IPAT and PAT entry 3 gives UC. 6.12.77 (v6.11) cannot turn it off.",
        LinkState("v6.16", VmConfig(quirk_ignore_guest_pat=False), VcpuState(pat=POWER_ON_PAT), Access(0xA0000)),
    ),
    Preset(
        "mtrr-overlap",
        "Overlapping WC and WB variable ranges (undefined in the SDM)",
        "Two variable ranges cover 0xe0000000: WC and WB. The SDM leaves that overlap undefined; "
        "KVM's lookup returns WB. mtrr_finding says so.",
        LinkState("v6.7", NCDMA, VcpuState(pat=LINUX_PAT, mtrr=_overlap), Access(0xE0000000)),
        compare="v6.11",
    ),
]

PRESETS: dict[str, Preset] = {p.name: p for p in _LIST}

START = "review-seed"
"""The preset the page shows at `/` with no query: the one place the page's first screen is
chosen (a permalink's own defaults, `/?v=1`, stay those of app.permalink.LinkState)."""

__all__ = ["PRESETS", "Preset", "START"]
