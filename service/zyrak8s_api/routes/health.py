"""Liveness and readiness, without auth (probes carry no key)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from zyrak8s_core import relay as relays, storage as storages
from zyrak8s_api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="The process is alive")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Storage, relay and backend answer")
async def ready(services: ServicesDep) -> JSONResponse:
    checks: dict[str, str] = {}
    for name, probe in (
        ("storage", asyncio.to_thread(services.storage.check)),
        ("relay", services.relay.ping()),
        ("backend", services.backend.check()),
    ):
        try:
            await asyncio.wait_for(probe, 5)
            checks[name] = "ok"
        except (storages.StorageError, relays.RelayUnavailable, asyncio.TimeoutError, Exception) as exc:  # noqa: B014
            checks[name] = f"error: {exc.__class__.__name__}: {exc}"[:300]
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)
