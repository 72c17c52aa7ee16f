"""The catalogue of zyra's stages, commands and options."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from zyrak8s_core.catalogue import ArgsError
from zyrak8s_api.deps import OwnerDep, ServicesDep

router = APIRouter(prefix="/cli", tags=["commands"])


@router.get("/commands", summary="Every stage, command and option zyra accepts (aliases included)")
async def list_commands(services: ServicesDep, _owner: OwnerDep, stage: str | None = None) -> dict[str, Any]:
    public = services.catalogue.public()
    if stage is None:
        return public
    if stage not in public["stages"]:
        raise HTTPException(404, f"unknown stage {stage!r}; allowed: {', '.join(sorted(public['stages']))}")
    return {"zyra_version": public["zyra_version"], "stages": {stage: public["stages"][stage]}}


@router.get("/commands/{stage}/{command}", summary="One command's options and positionals")
async def describe_command(stage: str, command: str, services: ServicesDep, _owner: OwnerDep) -> dict[str, Any]:
    try:
        return services.catalogue.command(stage, command).describe()
    except ArgsError as exc:
        raise HTTPException(404, f"{exc}; allowed: {', '.join(exc.allowed or [])}") from None
