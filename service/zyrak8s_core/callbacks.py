"""One signed POST of a run's final result to its `callback_url`, retried with backoff.

The body is the JSON of the run's public status. Headers:

    X-Zyra-Timestamp: <unix seconds>
    X-Zyra-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with ZYRA_CALLBACK_SECRET>

A receiver recomputes the HMAC over the raw body and rejects old timestamps (n8n: a Function node before the
Wait node's resume, or a Webhook node with header auth). 2xx ends delivery; 4xx other than 408/429 ends it
too (the receiver said no); anything else is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

__all__ = ["sign", "verify", "deliver", "check_url"]

log = logging.getLogger(__name__)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, max_age: float = 300.0) -> bool:
    if abs(time.time() - float(timestamp)) > max_age:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"callback_url must be an http(s) URL, got {url!r}")
    return url


class _Retryable(Exception):
    pass


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (_Retryable, httpx.TransportError))


async def deliver(
    url: str, payload: dict[str, Any], *, secret: str, max_attempts: int = 5, timeout: float = 10.0, backoff: float = 1.0
) -> bool:
    body = json.dumps(payload, default=str).encode()
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(max_attempts),
                wait=wait_exponential(multiplier=backoff, max=60),
                retry=retry_if_exception(_retryable),
                reraise=True,
            ):
                with attempt:
                    timestamp = str(int(time.time()))
                    response = await client.post(
                        url,
                        content=body,
                        headers={
                            "Content-Type": "application/json",
                            "X-Zyra-Timestamp": timestamp,
                            "X-Zyra-Signature": sign(secret, timestamp, body),
                        },
                    )
                    if response.status_code >= 500 or response.status_code in (408, 429):
                        raise _Retryable(f"HTTP {response.status_code}")
                    if response.status_code >= 400:
                        log.warning("callback refused", extra={"status": response.status_code, "job_id": payload.get("job_id")})
                        return False
            return True
        except (_Retryable, httpx.TransportError) as exc:
            log.warning("callback undeliverable", extra={"error": str(exc), "job_id": payload.get("job_id")})
            return False
