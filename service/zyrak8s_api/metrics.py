"""Prometheus metrics of the API, served at /metrics (summed over the workers when there are several)."""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

__all__ = [
    "REQUESTS", "RUNS_SUBMITTED", "RUNS_RUNNING", "RUNS_FINISHED", "RUN_SECONDS", "UPLOAD_BYTES", "WS_CLIENTS", "exposition",
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
