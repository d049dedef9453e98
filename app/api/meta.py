"""GET endpoints: the eras and the presets."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException

from ..kvm.eras import ERAS
from ..presets import PRESETS, Preset
from .common import NOT_FOUND, base_url
from .schemas import EraOut, PresetOut, ResolveRequest

router = APIRouter(tags=["reference"])


@router.get("/kernels", response_model=list[EraOut], summary="The kernel eras, oldest first")
async def kernels() -> list[EraOut]:
    """Each era: id (stable; other tools depend on it), title, kernel range, the commits it
    cites, a one-paragraph summary and notes on what is not modelled."""
    return [EraOut.model_validate(e) for e in ERAS.values()]


@router.get("/kernels/{kernel_id}", response_model=EraOut, responses=NOT_FOUND, summary="One kernel era")
async def kernel(kernel_id: str) -> EraOut:
    era = ERAS.get(kernel_id)
    if era is None:
        raise HTTPException(404, f"unknown kernel era {kernel_id!r}; one of {', '.join(ERAS)}")
    return EraOut.model_validate(era)


def preset_out(p: Preset, base: str) -> PresetOut:
    return PresetOut(
        name=p.name, title=p.title, description=p.description,
        request=ResolveRequest.model_validate(p.request()),
        compare=p.compare, event=p.event(), permalink=p.url(base),
    )


@router.get("/presets", response_model=list[PresetOut], summary="Named scenarios")
async def presets(request: Request) -> list[PresetOut]:
    """Each preset is a full POST /api/v1/resolve body (`request`) plus a description, an era
    worth comparing with and, for some, a zap event worth trying."""
    base = base_url(request)
    return [preset_out(p, base) for p in PRESETS.values()]


@router.get("/presets/{name}", response_model=PresetOut, responses=NOT_FOUND, summary="One named scenario")
async def preset(name: str, request: Request) -> PresetOut:
    p = PRESETS.get(name)
    if p is None:
        raise HTTPException(404, f"unknown preset {name!r}; one of {', '.join(PRESETS)}")
    return preset_out(p, base_url(request))
