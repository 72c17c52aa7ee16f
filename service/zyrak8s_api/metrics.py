"""Prometheus metrics of the API, served at /metrics (summed over the workers when there are several)."""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

__all__ = [
    "REQUESTS", "RUNS_SUBMITTED", "RUNS_RUNNING", "RUNS_FINISHED", "RUN_SECONDS", "UPLOAD_BYTES", "WS_CLIENTS", "exposition",
    "RequestMetrics",
]

REQUESTS = Histogram(
    "zyra_api_request_seconds", "HTTP requests by route and status", ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RUNS_SUBMITTED = Counter("zyra_runs_submitted_total", "Runs accepted")
RUNS_RUNNING = Gauge("zyra_runs_running", "Runs executing now on this API process", multiprocess_mode="livesum")
RUNS_FINISHED = Counter("zyra_runs_finished_total", "Runs that reached a final state", ["status", "reason"])
RUN_SECONDS = Histogram(
    "zyra_run_seconds", "Run duration from start to end",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
UPLOAD_BYTES = Counter("zyra_upload_bytes_total", "Bytes received by /upload")
WS_CLIENTS = Gauge("zyra_ws_clients", "Open WebSocket streams", multiprocess_mode="livesum")


def exposition() -> bytes:
    """The text format of every metric; with several workers (PROMETHEUS_MULTIPROC_DIR), all of theirs."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


class RequestMetrics:
    """ASGI middleware timing every HTTP request by method, route template and status. A plain ASGI
    middleware: Starlette's BaseHTTPMiddleware costs a task group and a memory stream per request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_and_note(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")  # the router sets it on this scope
            REQUESTS.labels(scope["method"], route, str(status)).observe(time.perf_counter() - started)
