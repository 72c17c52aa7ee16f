"""Wiring only: settings, services, middleware and routers. Every route is served at / and under /v1."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from zyrak8s_core import catalogue, launchers, logs, relay as relays, storage as storages
from zyrak8s_core.settings import Settings, get_settings
from zyrak8s_api import metrics
from zyrak8s_api.backends.base import Backend
from zyrak8s_api.deps import Services
from zyrak8s_api.draining import Draining
from zyrak8s_api.routes import commands, health, runs, uploads, ws

__all__ = ["create_app"]


def _backend(settings: Settings, storage: storages.Storage, relay: relays.Relay) -> Backend:
    if settings.backend == "kubernetes":
        from zyrak8s_api.backends.kube import KubeBackend

        return KubeBackend(settings, storage, relay)
    from zyrak8s_api.backends.local import LocalBackend

    return LocalBackend(settings, storage, relay)


def _limiter(settings: Settings):  # type: ignore[no-untyped-def]
    if not settings.rate_limit:
        return None
    from limits.storage import storage_from_string
    from limits.aio.strategies import MovingWindowRateLimiter

    if settings.redis_url:
        # limits' async Redis storage defaults to coredis, which the project does not install: use redis-py
        url = f"async+{settings.redis_url.get_secret_value()}"
        return MovingWindowRateLimiter(storage_from_string(url, implementation="redispy", wrap_exceptions=True))
    return MovingWindowRateLimiter(storage_from_string("async+memory://"))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.require_auth_configured()
    logs.configure(settings.log_level, settings.log_format)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        launchers.protect_environment()  # runs fork from a sibling; keep our keys out of their reach
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        storage = storages.from_settings(settings)
        relay = relays.from_url(settings.redis_url.get_secret_value() if settings.redis_url else None, settings.relay_max_entries)
        backend = _backend(settings, storage, relay)
        draining = Draining()
        draining.install()
        app.state.services = Services(settings, storage, relay, backend, catalogue.load(), _limiter(settings), draining)
        await backend.start()
        try:
            yield
        finally:
            await backend.close()
            await relay.close()

    app = FastAPI(
        title="zyra-k8s",
        summary="Run the Zyra CLI over REST and WebSocket, on one machine or on Kubernetes",
        version="0.1.0",
        lifespan=lifespan,
    )

    app.add_middleware(metrics.RequestMetrics)

    @app.exception_handler(storages.StorageError)
    async def storage_failed(request: Request, exc: storages.StorageError) -> JSONResponse:
        # storage that is down (or an object gone from it) is the server's trouble, not a crash: say so
        if isinstance(exc, storages.NotFound):
            return JSONResponse({"detail": f"{exc} is no longer in storage"}, status_code=410)
        return JSONResponse({"detail": f"storage unavailable: {exc}"}, status_code=503, headers={"Retry-After": "5"})

    api = APIRouter()
    for module in (runs, commands, uploads, ws, health):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(api, prefix="/v1")
    # a route, not a mount: a mount answers GET /metrics with a redirect to /metrics/
    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app
