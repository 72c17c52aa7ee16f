"""Prometheus metrics of the operator, served on ZYRA_OPERATOR_METRICS_PORT (8080) at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

__all__ = ["JOBS_CREATED", "RUNS_FINISHED", "RECONCILE_SECONDS", "serve"]

JOBS_CREATED = Counter("zyra_operator_jobs_created_total", "Jobs created for ZyraRuns")
RUNS_FINISHED = Counter("zyra_operator_runs_finished_total", "ZyraRuns that reached a final phase", ["phase", "reason"])
RECONCILE_SECONDS = Histogram(
    "zyra_operator_reconcile_seconds", "Time to read a run's Job and Pods and write its status",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

_serving = False


def serve(port: int) -> None:
    global _serving
    if port and not _serving:
        start_http_server(port)
        _serving = True
