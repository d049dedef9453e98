"""kvm_is_mmio_pfn() per kernel version: every host page class against every form and era."""

from __future__ import annotations

import itertools

import pytest

from app.kvm.eras import ERAS
from app.kvm.host_page import (
    CLASSES,
    HOST_MEMTYPES,
    NO_STRUCT_PAGE,
    PRESETS,
    RAM_PAGE,
    RESERVED,
    VARIANTS,
    ZERO_PAGE,
    HostPage,
    by_kernels,
    era_span,
    kvm_is_mmio_pfn,
    preset,
    variant_for,
)
from app.kvm.resolve import resolve
from app.kvm.scenario import DEFAULT_MEMORY_MAP, MMIO, RAM, Access, MemRange, VcpuState, VmConfig, check_memory_map
from app.kvm.versions import resolve_kernel
from app.x86.memtype import MemType, MemTypeError
from app.x86.pat import Pat

# The two sides of every boundary, plus the ends.
VERSIONS = [(4, 2), (4, 15), (4, 16), (5, 1), (5, 2), (6, 6), (6, 19)]


def pages() -> list[HostPage]:
    """Every host page the model can tell apart (hpa: ISA window or not)."""
    out = [HostPage(RAM_PAGE), HostPage(ZERO_PAGE), HostPage(NO_STRUCT_PAGE), HostPage(NO_STRUCT_PAGE, e820_ram=True)]
    for mt, hpa, pat in itertools.product((None, *HOST_MEMTYPES), (None, 0xA0000, 0xFFFFF, 0x100000), (True, False)):
        out.append(HostPage(RESERVED, mt, hpa, pat_enabled=pat))
    return out


def expected(p: HostPage, v: tuple[int, int]) -> bool:
    """The rule, restated from the three kernel forms (see app/kvm/host_page.py)."""
    if p.cls in (RAM_PAGE, ZERO_PAGE):
        return False
    if p.cls == NO_STRUCT_PAGE:
        return v < (5, 2) or not p.e820_ram
    if v < (4, 16) or not p.pat_enabled:
        return True
    if p.hpa is not None and 0xA0000 <= p.hpa <= 0xFFFFF:
        return False  # PAT-untracked: WB
    return p.host_memtype in (None, MemType.UC, MemType.UC_MINUS, MemType.WC)


def test_page_space_size():
    assert len(pages()) == 4 + 7 * 4 * 2 == 60


@pytest.mark.parametrize("v", VERSIONS)
def test_every_class_every_form(v):
    for p in pages():
        assert kvm_is_mmio_pfn(p, v).is_mmio is expected(p, v), (p, v)


def test_forms_cover_4_2_to_6_19_without_gaps():
    assert [(f.first, f.last, f.pat_check, f.e820_check) for f in VARIANTS] == [
        ((4, 2), (4, 15), False, False), ((4, 16), (5, 1), True, False), ((5, 2), (6, 19), True, True)]
    assert [(a.last, b.first) for a, b in zip(VARIANTS, VARIANTS[1:], strict=False)] == [
        ((4, 15), (4, 16)), ((5, 1), (5, 2))]
    with pytest.raises(MemTypeError):
        variant_for((4, 1))
    with pytest.raises(MemTypeError):
        variant_for((6, 20))


def test_boundary_checks_as_listed():
    vga = PRESETS["vga_dev_mem"].page
    old, new = kvm_is_mmio_pfn(vga, (4, 15)), kvm_is_mmio_pfn(vga, (4, 16))
    assert [(c.id, c.held) for c in old.path] == [
        ("pfn_valid", True), ("zero", True), ("reserved", True), ("no-pat-test", True)]
    assert [(c.id, c.held) for c in new.path] == [
        ("pfn_valid", True), ("zero", True), ("reserved", True), ("nopat", False), ("pat", False)]
    assert new.path[-1].function == "pat_pfn_immune_to_uc_mtrr"
    assert "ISA range 0xa0000-0xfffff is PAT-untracked" in new.path[-1].result
    assert new.why == "reserved page, lookup_memtype WB (ISA range, PAT-untracked): not MMIO"
    mem = PRESETS["dev_mem_above_mem"].page
    assert [(c.id, c.held) for c in kvm_is_mmio_pfn(mem, (5, 1)).path] == [("pfn_valid", False), ("no-page", True)]
    assert [(c.id, c.held) for c in kvm_is_mmio_pfn(mem, (5, 2)).path] == [("pfn_valid", False), ("e820", False)]
    assert kvm_is_mmio_pfn(HostPage(ZERO_PAGE), (4, 2)).why == "the zero page is never MMIO"


PRESET_ANSWERS = {
    # preset: answer per form (4.2-4.15, 4.16-5.1, 5.2-6.19)
    "guest_ram": (False, False, False),
    "vga_dev_mem": (True, False, False),
    "vfio_bar": (True, True, True),
    "dax_pmem": (True, False, False),
    "virtio_gpu_blob": (False, False, False),
    "virtio_gpu_blob_vram": (True, True, True),
    "dev_mem_above_mem": (True, True, False),
}


def test_presets():
    assert set(PRESETS) == set(PRESET_ANSWERS)
    for name, answers in PRESET_ANSWERS.items():
        p = preset(name)
        assert p.preset == name and p.validate() is p
        assert tuple(kvm_is_mmio_pfn(p, f.first).is_mmio for f in VARIANTS) == answers, name
        assert tuple(kvm_is_mmio_pfn(p, f.last).is_mmio for f in VARIANTS) == answers, name
    with pytest.raises(MemTypeError) as ei:
        preset("gpu")
    assert ei.value.field == "host_page.preset"


ERA_ROWS = {
    # (era, preset) -> by_kernels
    ("v4.2", "vga_dev_mem"): (("4.2-4.15", True), ("4.16-6.6", False)),
    ("v4.2", "dax_pmem"): (("4.2-4.15", True), ("4.16-6.6", False)),
    ("v4.2", "dev_mem_above_mem"): (("4.2-5.1", True), ("5.2-6.6", False)),
    ("v4.2", "vfio_bar"): (("4.2-6.6", True),),
    ("v4.2", "guest_ram"): (("4.2-6.6", False),),
    ("series-v3", "vga_dev_mem"): (("6.19", False),),
    ("v6.7", "vga_dev_mem"): (("6.7-6.10", False),),
    ("v6.11-rc1", "vfio_bar"): (("6.11", True),),
    ("v6.11", "dev_mem_above_mem"): (("6.11-6.15", False),),
    ("v6.16", "dax_pmem"): (("6.16-6.19", False),),
}


def test_by_kernels_per_era():
    for (era, name), rows in ERA_ROWS.items():
        assert by_kernels(preset(name), era_span(ERAS[era].kernels)) == rows, (era, name)
    assert era_span(ERAS["series-v3"].kernels) is None
    assert era_span(ERAS["v6.11-rc1"].kernels) == ((6, 11), (6, 11))


@pytest.mark.parametrize("era", list(ERAS))
def test_every_class_every_era(era):
    """resolve() over every page: is_mmio is the era's newest kernels' answer and decides UC."""
    span = era_span(ERAS[era].kernels)
    newest = span[1] if span else (6, 19)
    vm = VmConfig()
    for p in pages():
        r = resolve(ERAS[era], vm, VcpuState(), Access(0x1000, host_page=p))
        assert r.is_mmio is expected(p, newest), (era, p)
        assert r.host is not None and r.host.mmio.is_mmio is r.is_mmio
        assert r.path[0].id == "mmio" and r.path[0].held is r.is_mmio
        if r.is_mmio:
            assert (r.memtype, r.ipat) == (MemType.UC, False)


def test_validation_names_the_field():
    cases = [
        (HostPage("device"), "host_page.class"),
        (HostPage(RAM_PAGE, MemType.WB), "host_page.host_memtype"),
        (HostPage(RESERVED, e820_ram=True), "host_page.e820_ram"),
        (HostPage(RESERVED, hpa=1 << 52), "host_page.hpa"),
    ]
    for p, field in cases:
        with pytest.raises(MemTypeError) as ei:
            p.validate()
        assert ei.value.field == field
    with pytest.raises(MemTypeError) as ei:
        Access(0x1000, True, HostPage(RAM_PAGE)).validate(VmConfig())
    assert ei.value.field == "host_page"


def test_all_classes_listed():
    assert CLASSES == ("ram", "zero_page", "reserved", "no_struct_page")


# -- the default memory map and resolve ----------------------------------------------------


def test_default_map_vga_window():
    vga = [r for r in DEFAULT_MEMORY_MAP if r.start == 0xA0000]
    assert len(vga) == 1 and vga[0].end == 0xC0000 and vga[0].kind == RAM
    assert vga[0].host_page == PRESETS["vga_dev_mem"].page
    assert [r.kind for r in DEFAULT_MEMORY_MAP].count(MMIO) == 1  # only the 64-bit GPU BAR


def test_range_kind_must_match_its_host_page():
    bad = (MemRange(0, 0x1000, MMIO, "x", PRESETS["guest_ram"].page),)
    with pytest.raises(MemTypeError) as ei:
        check_memory_map(bad, 46)
    assert ei.value.field == "memory_map[0].kind"


@pytest.mark.parametrize("version,mmio", [("4.2", True), ("4.15", True), ("4.16", False), ("5.15.160", False),
                                          ("6.8.0-45-generic", False), ("6.12.78", False), ("v4.2", False)])
def test_vga_window_by_version(version, mmio):
    k = resolve_kernel(version)
    r = resolve(ERAS[k.era], VmConfig(noncoherent_dma=True), VcpuState(), Access(0xA0000), k)
    assert r.is_mmio is mmio
    assert r.mmio_source.startswith("memory map: legacy VGA window")
    assert ("not MMIO" in r.mmio_source) is (not mmio)


def test_range_kinds_read_as_presets():
    r = resolve(ERAS["v6.16"], VmConfig(), VcpuState(), Access(0x800000000))
    assert r.is_mmio and r.host.page == PRESETS["vfio_bar"].page
    assert r.mmio_source.startswith("memory map: mmio (assigned GPU BAR in the 64-bit PCI hole), read as vfio_bar")
    r = resolve(ERAS["v6.16"], VmConfig(), VcpuState(), Access(0x90000000))
    assert not r.is_mmio and r.mmio_source.startswith("not in the memory map: treated as RAM")
    r = resolve(ERAS["v6.16"], VmConfig(), VcpuState(), Access(0xA0000, mmio=True))
    assert r.is_mmio and r.host is None and r.mmio_source == "given (mmio)"


def test_era_id_notes_when_the_forms_disagree():
    r = resolve(ERAS["v4.2"], VmConfig(), VcpuState(), Access(0xA0000))
    assert r.host.answered_for == "6.6 (newest in v4.2)"
    assert r.host.notes[0] == ("kvm_is_mmio_pfn() answers differ inside v4.2: 4.2-4.15 MMIO, 4.16-6.6 not MMIO; "
                               "name a version to choose")


def test_dosemu2_vga_case():
    """VGA from /dev/mem, guest maps it UC (PAT entry 3): 6.12.77 cannot turn the quirk off
    (WB|IPAT: the guest's UC is ignored), 6.12.78 can, and then guest PAT gives UC."""
    vcpu = VcpuState(pat=Pat.from_msr(0x0007040600070406))
    k77, k78 = resolve_kernel("6.12.77"), resolve_kernel("6.12.78")
    on = resolve(ERAS[k77.era], VmConfig(), vcpu, Access(0xA0000), k77)
    assert (on.memtype, on.ipat, on.pat_rows[3].effective) == (MemType.WB, True, MemType.WB)
    with pytest.raises(MemTypeError) as ei:
        resolve(ERAS[k77.era], VmConfig(quirk_ignore_guest_pat=False), vcpu, Access(0xA0000), k77)
    assert ei.value.field == "vm.quirk_ignore_guest_pat"
    off = resolve(ERAS[k78.era], VmConfig(quirk_ignore_guest_pat=False), vcpu, Access(0xA0000), k78)
    assert (off.memtype, off.ipat, off.pat_rows[3].effective) == (MemType.WB, False, MemType.UC)
    assert not off.is_mmio


# -- version-exact behaviour inside an era ---------------------------------------------------


@pytest.mark.parametrize("version,kernels", [
    ("5.19", ("4.2-5.19",)), ("6.0", ("6.0-6.6",)), ("v4.2", ("4.2-5.19", "6.0-6.6"))])
def test_huge_page_check_follows_the_version(version, kernels):
    k = resolve_kernel(version)
    r = resolve(ERAS[k.era], VmConfig(noncoherent_dma=False), VcpuState(), Access(0x100000), k)
    assert tuple(p.kernels for p in r.page_sizes) == kernels


@pytest.mark.parametrize("version,memtype", [("4.2", MemType.UC), ("4.3", MemType.UC), ("4.4", MemType.WB),
                                             ("4.15", MemType.WB), ("v4.2", MemType.WB)])
def test_mtrr_disabled_type_cpuid_test_from_4_4(version, memtype):
    k = resolve_kernel(version)
    r = resolve(ERAS[k.era], VmConfig(noncoherent_dma=True, guest_has_mtrr=False), VcpuState(), Access(0x100000), k)
    assert r.kvm_mtrr is not None and r.kvm_mtrr.type == memtype and r.memtype == memtype
    with_cpuid = resolve(ERAS[k.era], VmConfig(noncoherent_dma=True), VcpuState(), Access(0x100000), k)
    assert with_cpuid.memtype == MemType.UC
