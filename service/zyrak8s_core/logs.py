"""Structured logs for every process: JSON lines by default (ZYRA_LOG_FORMAT=text for people), quiet at INFO.

Secrets never reach a log line: settings hold them as SecretStr, and request logs carry no headers.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure"]


def configure(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level"}))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # libraries that are chatty at INFO
    for name in ("botocore", "boto3", "s3transfer", "urllib3", "httpx", "kubernetes", "uvicorn.access", "python_multipart",
                 "kopf.objects", "kopf.activities"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
