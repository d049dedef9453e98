"""The boot generators against what real firmware leaves in the registers.

tests/data/firmware_msrs.json was recorded by scripts/firmware_probe (QEMU TCG boots of
Debian 12's ovmf and seabios packages, each followed by a Debian cloud kernel that reads
/dev/cpu/N/msr; package versions are in each record). For every recorded boot, the
generator's final state of every vCPU (firmware passes, then Linux's re-sync) must equal the
MSRs the guest read: MTRRdefType, the 11 fixed MTRRs, the 8 variable pairs and IA32_PAT.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.kvm.boot import parse_memory
from app.kvm.replay import boot_trace, final_states
from app.kvm.scenario import VmConfig

DATA = json.loads((Path(__file__).parent / "data" / "firmware_msrs.json").read_text())
BOOTS = DATA["boots"]


def _id(b: dict) -> str:
    return f"{b['firmware']}-{b['machine']}-{b['memory']}-{b['vcpus']}"


def test_the_data_covers_both_firmwares_and_machines():
    assert {(b["firmware"], b["machine"]) for b in BOOTS} == {
        ("ovmf", "q35"), ("ovmf", "pc"), ("seabios", "q35"), ("seabios", "pc")}
    assert all(b["versions"].get(b["firmware"]) for b in BOOTS)


@pytest.mark.parametrize("boot", BOOTS, ids=_id)
def test_generator_final_state_is_what_the_firmware_left(boot):
    pb = boot["phys_bits"]
    trace = boot_trace(boot["firmware"], boot["vcpus"], VmConfig(noncoherent_dma=True, maxphyaddr=pb),
                       machine=boot["machine"], memory=parse_memory(boot["memory"]), maxphyaddr=pb)
    _, finals = final_states(trace)
    assert len(finals) == len(boot["vcpu_msrs"])
    for v, (st, real) in enumerate(zip(finals, boot["vcpu_msrs"], strict=True)):
        pairs = list(st.mtrr.variable) + [None] * (8 - len(st.mtrr.variable))
        model = {
            "def_type": hex(st.mtrr.def_type), "fixed": [hex(x) for x in st.mtrr.fixed],
            "variable": [{"base": hex(p.base) if p else "0x0", "mask": hex(p.mask) if p else "0x0"} for p in pairs],
            "pat": hex(st.pat.to_msr()),
        }
        assert model == real, f"vCPU {v}"
