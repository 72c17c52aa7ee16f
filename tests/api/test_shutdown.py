"""Stopping the server: SIGTERM drains instead of cutting clients off, and a bad setting stops it at start.

A sync request waiting on a run that is still going gets 202 with its job_id (the answer it gets when its
wait runs out), a WebSocket stream gets close code 1012 ("service restart") to reconnect on with `since=`,
and the run itself is not lost: after a restart it is found in a final state.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import uuid
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.api.util import FINAL, text_of, ws_url
from tests.fixtures.servers import ApiServer, HttpGate, pipeline_yaml

pytestmark = pytest.mark.zyra


def _stop_and_wait(api: ApiServer, timeout: float = 30) -> int:
    assert api.proc is not None
    api.proc.send_signal(signal.SIGTERM)
    try:
        return api.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the API did not stop within {timeout} s of SIGTERM\n{api.log_text()[-3000:]}") from None


def test_sigterm_answers_a_waiting_sync_request_with_its_job_id(api_server, http_gate: HttpGate) -> None:
    api = api_server("local", name="drain-sync", ZYRA_WARM_WORKERS="false", ZYRA_GRACEFUL_TIMEOUT_SECONDS="60")
    path = f"/hang/{uuid.uuid4().hex[:8]}"
    body = {"stage": "acquire", "command": "http", "args": {"url": http_gate.url(path), "output": "x.bin"}, "mode": "sync"}
    answer: dict[str, Any] = {}

    def request() -> None:
        with api.client(timeout=120) as client:
            try:
                response = client.post("/cli/run", json=body)
                answer.update(status=response.status_code, body=response.json())
            except httpx.HTTPError as exc:
                answer.update(error=repr(exc))

    waiter = threading.Thread(target=request)
    waiter.start()
    http_gate.wait_request(path)  # the run is running; its request waits for the result
    code = _stop_and_wait(api)
    waiter.join(30)
    # an answer, not a dropped connection; and well before the 60 s graceful timeout would have cut it
    assert answer.get("status") == 202, answer
    job_id = answer["body"]["job_id"]
    # a clean shutdown; uvicorn then re-raises the signal, so the exit status says SIGTERM
    assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in api.log_text(), api.log_text()[-2000:]

    api.start()
    with api.client() as client:
        job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] in FINAL and job["reason"] == "Interrupted", job


def test_sigterm_closes_a_stream_with_1012_and_the_restarted_server_serves_the_rest(
    api_server, http_gate: HttpGate
) -> None:
    api = api_server("s3redis", name="drain-ws", ZYRA_WARM_WORKERS="false", ZYRA_WS_KEEPALIVE_SECONDS="30")
    tag = uuid.uuid4().hex[:8]
    paths = [f"/{tag}/one", f"/hang/{tag}/two"]
    with api.client() as client:
        up = api.upload(client, "drain.yaml", pipeline_yaml([http_gate.url(p) for p in paths]))
        job_id = client.post("/cli/run", json={"stage": "run", "args": {"config": up["ref"], "trace": True}, "mode": "async"}).json()["job_id"]
    http_gate.release(paths[0])
    http_gate.wait_request(paths[1])

    first: list[dict[str, Any]] = []
    with connect(ws_url(api, job_id, api_key=api.key), open_timeout=30) as ws:
        while paths[1] not in text_of(first, "stderr"):
            first.append(json.loads(ws.recv(timeout=60)))
        api.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        # the stream was quiet (the run waits on the gate) and its keepalive is 30 s away: the close comes
        # from the shutdown, not from a frame that happened to be due
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                first.append(json.loads(ws.recv(timeout=20)))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012, closed.value
    assert "since=" in closed.value.rcvd.reason
    api.proc.wait(30)  # type: ignore[union-attr]

    api.start()
    last = max(f["seq"] for f in first if "seq" in f)
    rest: list[dict[str, Any]] = []
    with connect(ws_url(api, job_id, api_key=api.key, since=last), open_timeout=30) as ws:
        while "exit_code" not in (rest[-1] if rest else {}):
            rest.append(json.loads(ws.recv(timeout=60)))
    with api.client() as client:
        job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] in FINAL, job
    assert all(f["seq"] > last for f in rest[:-1] if "seq" in f)
    # nothing seen twice, nothing missing: the two connections together are the whole stderr archive
    assert text_of(first, "stderr") + text_of(rest, "stderr") == job["stderr"]


def test_a_bad_setting_stops_the_start_with_the_variable_named(api_server) -> None:
    server = api_server("local", name="badworkers", start=False, ZYRA_WORKERS="2")
    proc = server.spawn()
    assert proc.wait(60) != 0
    log = server.log_text()
    assert "ZYRA_WORKERS=2 needs ZYRA_BACKEND=kubernetes" in log
    assert "Traceback" not in log
