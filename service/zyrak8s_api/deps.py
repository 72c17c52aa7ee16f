"""Dependencies the routes share: the app's services and the API-key check with its rate limit."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, WebSocket
from fastapi.security import APIKeyHeader
from limits import parse as parse_limit
from limits.errors import StorageError as LimitsStorageError
from limits.aio.strategies import MovingWindowRateLimiter

from zyrak8s_core import catalogue, relay as relays, storage as storages
from zyrak8s_core.settings import Settings
from zyrak8s_api.backends.base import Backend
from zyrak8s_api.draining import Draining

__all__ = ["Services", "ServicesDep", "OwnerDep", "authenticate", "key_owner"]

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    storage: storages.Storage
    relay: relays.Relay
    backend: Backend
    catalogue: catalogue.Catalogue
    limiter: MovingWindowRateLimiter | None
    draining: Draining


def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(_services)]


def key_owner(key: str) -> str:
    """Runs and rate limits are kept per key, by a hash of it (the key itself is never stored)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _valid(settings: Settings, key: str | None) -> bool:
    if not key:
        return False
    return any(hmac.compare_digest(key.encode(), k.encode()) for k in settings.api_key_values)


async def authenticate(services: Services, key: str | None, client: str) -> str:
    """The caller's owner id; raises 401 for a missing or wrong key, 429 past the rate limit."""
    settings = services.settings
    if settings.auth_disabled:
        owner = f"anon:{client}"
    elif not key:
        raise HTTPException(401, "missing API key: send it in the X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})
    elif not _valid(settings, key):
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "ApiKey"})
    else:
        owner = key_owner(key)
    if services.limiter is not None and settings.rate_limit:
        item = parse_limit(settings.rate_limit)
        try:
            allowed = await services.limiter.hit(item, "zyra", owner)
            stats = None if allowed else await services.limiter.get_window_stats(item, "zyra", owner)
        except LimitsStorageError as exc:
            # the limiter's Redis is away: serve unlimited (the relay rides it out too) rather than fail with a 500
            log.warning("rate limiter unavailable, request not limited", extra={"error": str(exc)})
            return owner
        if stats is not None:
            retry = max(1, math.ceil(stats.reset_time - time.time()))
            raise HTTPException(429, f"rate limit of {settings.rate_limit} per API key exceeded", headers={"Retry-After": str(retry)})
    return owner


_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="one of ZYRA_API_KEYS")


async def _owner(
    request: Request, services: ServicesDep, x_api_key: Annotated[str | None, Security(_api_key_header)] = None
) -> str:
    return await authenticate(services, x_api_key, request.client.host if request.client else "unknown")


OwnerDep = Annotated[str, Depends(_owner)]


def websocket_key(websocket: WebSocket) -> str | None:
    return websocket.query_params.get("api_key") or websocket.headers.get("x-api-key")
