"""Live logs and progress of a run over a WebSocket.

    WS /ws/jobs/{id}?stream=stdout,stderr,progress&since=SEQ   (api_key in the query or X-API-Key header)

Frames: {"stdout": chunk, "seq": n}, {"stderr": chunk, "seq": n}, {"progress": 0..1, "seq": n},
{"keepalive": true}, and last {"stdout", "stderr", "exit_code", "status", "reason", "progress": 1.0,
"output_file"} (stdout/stderr there are the tails; the chunks before it carried everything).

A client that connects late gets everything from the first line; one that reconnects with `since=<last seq
it saw>` gets the rest exactly once. When the live stream is gone (a run that ended long ago), the archived
logs are sent instead, then the final frame. A bad key: close code 1008; an unknown job: close code 4404;
a server shutting down: 1012 (reconnect, to any replica, with since=).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect

from zyrak8s_core import relay as relays
from zyrak8s_core.runs import RunRecord
from zyrak8s_api import metrics
from zyrak8s_api.backends.base import NotFound
from zyrak8s_api.deps import Services, authenticate, websocket_key
from zyrak8s_api.joblogs import full_logs

router = APIRouter(tags=["stream"])

STREAMS = ("stdout", "stderr", "progress")
RESTARTING = 1012  # "service restart": the stream goes on through another replica, from `since`
ARCHIVE_CHUNK = 64 * 1024


@router.websocket("/ws/jobs/{job_id}")
async def stream_job(websocket: WebSocket, job_id: str, stream: str | None = None, since: int = 0) -> None:
    services: Services = websocket.app.state.services
    await websocket.accept()
    try:
        await authenticate(services, websocket_key(websocket), websocket.client.host if websocket.client else "unknown")
    except HTTPException as exc:
        await _close(websocket, 1008, exc.detail)
        return
    wanted = {s.strip() for s in stream.split(",") if s.strip()} if stream else set(STREAMS)
    if not wanted <= set(STREAMS):
        await _close(websocket, 1008, f"unknown stream(s) {sorted(wanted - set(STREAMS))}; allowed: {', '.join(STREAMS)}")
        return
    try:
        record = await services.backend.get(job_id)
    except NotFound:
        await _close(websocket, 4404, f"no job {job_id!r}")
        return
    metrics.WS_CLIENTS.inc()
    try:
        followed, _ = await services.draining.first(_follow(websocket, services, record, wanted, since))
    except WebSocketDisconnect:
        followed = True
    finally:
        metrics.WS_CLIENTS.dec()
    with contextlib.suppress(Exception):  # the client may be gone already
        if followed:
            await websocket.close(1000)
        else:  # no error frame: nothing went wrong with the run
            await websocket.close(RESTARTING, "server shutting down: reconnect with since=<the last seq received>")


async def _follow(websocket: WebSocket, services: Services, record: RunRecord, wanted: set[str], since: int) -> None:
    keepalive = services.settings.ws_keepalive_seconds
    relay = services.relay
    live = True
    if record.status.final:
        with contextlib.suppress(relays.RelayUnavailable):
            live = bool(await relay.read(record.job_id, 0, 0))
        if not live and since == 0:
            await _send_archive(websocket, services, record, wanted)
    if live:
        await _send_live(websocket, services, record.job_id, wanted, since, keepalive)
    final = await services.backend.wait(record.job_id, 30)
    await websocket.send_text(json.dumps(final.final_frame(final.stdout_tail, final.stderr_tail)))


async def _send_live(
    websocket: WebSocket, services: Services, job_id: str, wanted: set[str], since: int, keepalive: float
) -> None:
    after = since
    while True:
        try:
            async for event in services.relay.subscribe(job_id, after=after, poll=keepalive):
                if event is None:
                    await websocket.send_text('{"keepalive": true}')
                    if (await services.backend.get(job_id)).status.final and not await _more(services, job_id, after):
                        return  # ended without an "end" event (its runner died): the record is the truth
                    continue
                after = event.seq
                if event.kind == "end":
                    return
                if event.kind in wanted:
                    await websocket.send_text(json.dumps({event.kind: event.data, "seq": event.seq}))
            return
        except relays.RelayUnavailable:
            await websocket.send_text('{"keepalive": true}')
            if (await services.backend.get(job_id)).status.final:
                return
            await asyncio.sleep(min(keepalive, 2.0))


async def _more(services: Services, job_id: str, after: int) -> bool:
    return bool(await services.relay.read(job_id, after, 0))


async def _send_archive(websocket: WebSocket, services: Services, record: RunRecord, wanted: set[str]) -> None:
    stdout, stderr = await full_logs(record, services.storage, services.relay, services.settings.log_tail_bytes)
    for kind, text in (("stdout", stdout), ("stderr", stderr)):
        if kind not in wanted:
            continue
        for start in range(0, len(text), ARCHIVE_CHUNK):
            await websocket.send_text(json.dumps({kind: text[start : start + ARCHIVE_CHUNK]}))


async def _close(websocket: WebSocket, code: int, reason: Any) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(json.dumps({"error": str(reason)}))
        await websocket.close(code=code, reason=str(reason)[:120])
