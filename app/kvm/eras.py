"""The registry of kernel eras, oldest first. Ids are stable: other tools depend on them."""

from __future__ import annotations

from ..x86.memtype import MemTypeError
from . import series_v3, v4_2, v6_7, v6_11, v6_16
from .era import Era

ERAS: dict[str, Era] = {
    e.id: e for e in (v4_2.ERA, series_v3.ERA, v6_7.ERA, v6_11.ERA_RC1, v6_11.ERA_611, v6_16.ERA)
}


def get_era(era_id: str, field: str = "kernel") -> Era:
    try:
        return ERAS[era_id]
    except KeyError:
        raise MemTypeError(field, f"unknown kernel era {era_id!r}", f"one of {', '.join(ERAS)}") from None
