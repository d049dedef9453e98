"""Turn the logs of `probe` into tests/data/firmware_msrs.json (one record per boot).

Each record: the config (firmware, machine, memory, vcpus), the package versions, the guest
phys-bits Linux reported, /proc/mtrr, and every vCPU's MTRRdefType, 11 fixed MTRRs (MSR
order 0x250, 0x258, 0x259, 0x268..0x26f), 8 PHYSBASE/PHYSMASK pairs and IA32_PAT, as hex.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

FIXED = [0x250, 0x258, 0x259] + list(range(0x268, 0x270))


def record(text: str) -> dict:
    cfg = re.search(r"^=== config (\S+) (\S+) (\S+) (\d+)$", text, re.M)
    if not cfg:
        raise SystemExit("no '=== config' line: not a probe log")
    versions = dict(re.findall(r"^(qemu-system-x86|ovmf|seabios) (\S+)$", text, re.M))
    kernel = re.search(r"^kernel (\S+)$", text, re.M)
    phys = re.search(r"address sizes\s*:\s*(\d+) bits physical", text)
    mtrr = re.findall(r"^(reg\d\d: .*)$", text, re.M)
    msrs: dict[int, dict[int, int]] = {}
    for cpu, msr, val in re.findall(r"^MSR cpu (\d+) (0x[0-9a-f]+) = (0x[0-9a-f]+|0)$", text, re.M):
        msrs.setdefault(int(cpu), {})[int(msr, 16)] = int(val, 16)
    if not msrs or "=== end" not in text:
        raise SystemExit(f"{cfg.group(0)}: the guest did not finish")
    vcpus = []
    for cpu in sorted(msrs):
        m = msrs[cpu]
        vcpus.append({
            "def_type": hex(m[0x2FF]), "fixed": [hex(m[x]) for x in FIXED],
            "variable": [{"base": hex(m[0x200 + 2 * n]), "mask": hex(m[0x201 + 2 * n])} for n in range(8)],
            "pat": hex(m[0x277]),
        })
    return {"firmware": cfg.group(1), "machine": cfg.group(2), "memory": cfg.group(3), "vcpus": int(cfg.group(4)),
            "versions": versions, "kernel": kernel.group(1) if kernel else None,
            "phys_bits": int(phys.group(1)) if phys else None, "proc_mtrr": mtrr, "vcpu_msrs": vcpus}


def main() -> None:
    logs = sorted(Path(sys.argv[1]).glob("*.log"))
    out = {"provenance": "scripts/firmware_probe/probe: QEMU TCG boots (-cpu max) of Debian 12 packages, each "
                         "followed by a Debian cloud kernel whose initramfs reads /dev/cpu/N/msr and /proc/mtrr",
           "boots": [record(p.read_text(errors="replace")) for p in logs]}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
