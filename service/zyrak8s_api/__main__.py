"""`python -m zyrak8s_api`: serve the API with uvicorn on ZYRA_HOST:ZYRA_PORT (127.0.0.1:8000).

ZYRA_WORKERS > 1 starts that many uvicorn worker processes sharing the port (the kubernetes backend only:
nothing a request needs lives in a worker's memory). Their Prometheus metrics are then aggregated through
prometheus_client's multiprocess mode, so /metrics gives the same totals whichever worker answers.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from zyrak8s_core.settings import Settings, get_settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _shared_metrics_dir() -> Path | None:
    """An empty directory for the workers' metric files (files of an earlier run would add to the counts).
    Returns the directory when it was made here (and is removed at exit), None when it was given."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        return None
    path = Path(tempfile.mkdtemp(prefix="zyra-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)  # inherited by the workers before they import prometheus_client
    return path


def serve(settings: Settings) -> None:
    uvicorn.run(
        "zyrak8s_api.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        # uvicorn's own loggers stay at INFO or above: at DEBUG they print WebSocket handshakes, whose request
        # line and headers carry API keys (ZYRA_LOG_LEVEL=DEBUG is for this project's loggers)
        log_level=max(logging.INFO, logging.getLevelName(settings.log_level)),
        access_log=False,  # request lines would carry WebSocket api_key query parameters into the logs
        timeout_graceful_shutdown=settings.graceful_timeout_seconds,  # type: ignore[arg-type]  (a float works)
        timeout_keep_alive=settings.keepalive_timeout_seconds,  # type: ignore[arg-type]
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


def _variable(loc: tuple[int | str, ...]) -> str:
    return f"ZYRA_{str(loc[0]).upper()}: " if loc else ""


def _settings() -> Settings:
    """The settings, or an exit with what is wrong in them (not a traceback)."""
    try:
        settings = get_settings()
        settings.require_auth_configured()
    except ValidationError as exc:
        problems = (f"{_variable(e['loc'])}{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise SystemExit("zyra-k8s: invalid settings\n  " + "\n  ".join(problems)) from None
    except RuntimeError as exc:
        raise SystemExit(f"zyra-k8s: {exc}") from None
    return settings


def main() -> None:
    settings = _settings()
    if settings.workers == 1:
        serve(settings)
        return
    metrics_dir = _shared_metrics_dir()
    try:
        serve(settings)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
