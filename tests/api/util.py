"""Helpers the API tests share: WebSocket collection, process-group checks, footprint checks."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.fixtures.servers import ApiServer

NO_NET = {"no-coastline": True, "no-borders": True}  # heatmap must not fetch coastlines (no internet)
FINAL = ("succeeded", "failed", "canceled")


def heatmap_args(ref: str, output: str = "h.png", **extra: Any) -> dict[str, Any]:
    return {"input": ref, "output": output, **NO_NET, **extra}


def ws_url(api: ApiServer, job_id: str, *, prefix: str = "", **query: Any) -> str:
    params = {k: v for k, v in query.items() if v is not None}
    return f"{api.ws_url}{prefix}/ws/jobs/{job_id}" + (f"?{urlencode(params)}" if params else "")


def ws_collect(url: str, *, headers: dict[str, str] | None = None, timeout: float = 120) -> tuple[list[dict[str, Any]], int | None]:
    """Every frame until the server closes the socket, and the close code."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with connect(url, additional_headers=headers or {}, open_timeout=30) as ws:
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"WebSocket still open after {timeout} s; frames so far: {frames}")
                frames.append(json.loads(ws.recv(timeout=remaining)))
        except ConnectionClosed as closed:
            return frames, closed.rcvd.code if closed.rcvd else None
    raise AssertionError("unreachable")


def text_of(frames: list[dict[str, Any]], kind: str) -> str:
    """The chunks of one stream, in order (the final frame, which carries tails, is left out)."""
    return "".join(f[kind] for f in frames if kind in f and "exit_code" not in f)


def group_alive(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            alive.append(int(entry.name))
    return alive


def wait_pid(api: ApiServer, job_id: str, timeout: float = 60) -> int:
    """The pid recorded for a running run (its process group id)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = api.pid_of(job_id)
        if pid:
            return pid
        time.sleep(0.05)
    raise AssertionError(f"no pid recorded for {job_id}")


@contextlib.contextmanager
def leaves_nothing(api: ApiServer) -> Iterator[None]:
    """The block must leave no run record, no stored object and no scratch file behind."""
    before = api.footprint()
    yield
    records, keys, scratch = api.footprint()
    assert records == before[0], f"new run records: {set(records) - set(before[0])}"
    assert keys == before[1], f"new stored objects: {set(keys) - set(before[1])}"
    assert scratch == before[2], f"scratch files left: {set(scratch) - set(before[2])}"


def is_png(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n")
