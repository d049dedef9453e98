"""The registry of kernel eras, oldest first. Ids are stable: other tools depend on them."""

from __future__ import annotations

from ..x86.memtype import LocLike
from . import series_v3, v4_2, v6_7, v6_11, v6_16
from .era import Era

ERAS: dict[str, Era] = {
    e.id: e for e in (v4_2.ERA, series_v3.ERA, v6_7.ERA, v6_11.ERA_RC1, v6_11.ERA_611, v6_16.ERA)
}


def get_era(era_id: str, field: LocLike = "kernel") -> Era:
    """An era id, or a kernel version string resolved by app/kvm/versions.py (422 names `field`)."""
    if era_id in ERAS:
        return ERAS[era_id]
    from .versions import resolve_kernel  # late: versions imports this registry

    return ERAS[resolve_kernel(era_id, field).era]
