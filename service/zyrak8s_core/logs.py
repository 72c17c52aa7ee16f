"""Structured logs for every process: JSON lines by default (ZYRA_LOG_FORMAT=text for people), quiet at INFO.

Secrets never reach a log line: settings hold them as SecretStr, request logs carry no headers, and key
parameters in a logged URL (uvicorn logs each WebSocket's path and query at INFO) are masked.
"""

from __future__ import annotations

import logging
import re
import sys

__all__ = ["configure", "RedactKeys"]

_KEY_PARAM = re.compile(r"(?<![A-Za-z0-9_])((?:api_key|apikey|access_token|token)=)[^&\s\"']+", re.IGNORECASE)


class RedactKeys(logging.Filter):
    """Masks `api_key=...` (and the like) in a record's formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _KEY_PARAM.sub(r"\1***", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level"}))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactKeys())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # uvicorn's loggers have handlers of their own: a filter on the logger covers what it logs itself
    for name in ("uvicorn", "uvicorn.error"):
        named = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in named.filters):
            named.addFilter(RedactKeys())
    root.setLevel(level.upper())
    # libraries that are chatty at INFO
    for name in ("botocore", "boto3", "s3transfer", "urllib3", "httpx", "kubernetes", "uvicorn.access", "python_multipart",
                 "kopf.objects", "kopf.activities"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
