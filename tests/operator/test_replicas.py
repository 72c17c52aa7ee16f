"""Several API replicas (and workers) on the Kubernetes backend: any of them serves any run.

Two API processes share the stack's Redis, S3 and cluster namespace, as two pods behind one Service would.
Every request of a run's life goes to the other replica than the one before; a replica killed or stopped
mid-stream leaves its clients a reconnect to the other that loses nothing and repeats nothing.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.api.util import text_of, ws_url
from tests.fixtures.servers import ApiServer, HttpGate, pipeline_yaml
from tests.operator.conftest import Stack

pytestmark = [pytest.mark.cluster, pytest.mark.zyra]

FINAL = ("succeeded", "failed", "canceled")


@pytest.fixture
def gate(stack: Stack) -> Iterator[HttpGate]:
    g = HttpGate(host=stack.cluster.host_address)
    yield g
    g.close()


@pytest.fixture
def replica(stack: Stack, tmp_path: Path) -> Iterator[Any]:
    """Factory of extra API processes with the stack API's settings; all stopped at the end."""
    made: list[ApiServer] = []

    def make(name: str = "b", **env: str) -> ApiServer:
        server = stack.api.replica(tmp_path / name, **env)
        made.append(server)
        return server.start()

    yield make
    for server in made:
        server.stop()


def _read_until(ws: ClientConnection, frames: list[dict[str, Any]], done: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not done(frames):
        frames.append(json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic()))))


def _has(text: str) -> Any:
    return lambda frames: text in text_of(frames, "stderr")


def _final(frames: list[dict[str, Any]]) -> bool:
    return bool(frames) and "exit_code" in frames[-1]


def _last_seq(frames: list[dict[str, Any]]) -> int:
    return max(f["seq"] for f in frames if "seq" in f)


def _run_reading(stack: Stack, file_id: str) -> str:
    """The name of the ZyraRun whose inputs include the uploaded file (a sync request tells its id only at the end)."""
    runs = json.loads(stack.kubectl("get", "zyraruns", "-o", "json").stdout)["items"]
    names = [r["metadata"]["name"] for r in runs if any(i.get("fileId") == file_id for i in r["spec"].get("inputs", []))]
    assert len(names) == 1, names
    return str(names[0])


def _gated_pipeline(api: ApiServer, http: httpx.Client, gate: HttpGate, paths: list[str]) -> str:
    upload = api.upload(http, "pipe.yaml", pipeline_yaml([gate.url(p) for p in paths]))
    response = http.post("/cli/run", json={"stage": "run", "args": {"config": upload["ref"], "trace": True}, "mode": "async"})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def test_every_step_of_a_run_alternates_between_two_replicas(stack: Stack, replica: Any, gate: HttpGate) -> None:
    a, b = stack.api, replica()
    tag = uuid.uuid4().hex[:8]
    paths = [f"/{tag}/one", f"/{tag}/two", f"/{tag}/three"]
    with a.client() as on_a, b.client() as on_b:
        upload = a.upload(on_a, "pipe.yaml", pipeline_yaml([gate.url(p) for p in paths]))  # the file lands in S3
        created = on_b.post("/cli/run", json={"stage": "run", "args": {"config": upload["ref"], "trace": True}, "mode": "async"})
        assert created.status_code == 202, created.text
        job_id = created.json()["job_id"]
        gate.wait_request(paths[0], timeout=120)
        assert on_a.get(f"/jobs/{job_id}").json()["status"] == "running"

        gate.release(paths[0])
        first: list[dict[str, Any]] = []
        with connect(ws_url(b, job_id, api_key=b.key), open_timeout=30) as ws:
            _read_until(ws, first, _has(paths[1]))
        gate.release(paths[1])
        second: list[dict[str, Any]] = []
        with connect(ws_url(a, job_id, api_key=a.key, since=_last_seq(first)), open_timeout=30) as ws:
            _read_until(ws, second, _has(paths[2]))
            gate.release(paths[2])
            _read_until(ws, second, _final)

        job_b = b.wait_job(on_b, job_id)
        job_a = on_a.get(f"/jobs/{job_id}").json()
        one = on_a.get(f"/jobs/{job_id}/download", params={"file": "part1.txt"})
        archive = on_b.get(f"/jobs/{job_id}/download", params={"zip": 1})

    assert job_a == job_b, "two replicas describe the same run differently"
    assert job_a["status"] == "succeeded" and job_a["exit_code"] == 0
    assert second[-1]["exit_code"] == 0 and second[-1]["status"] == "succeeded"
    # the stream through B then A is the run's whole stderr, each line once
    assert text_of(first, "stderr") + text_of(second, "stderr") == job_a["stderr"]
    assert [job_a["stderr"].count(p) for p in paths] == [1, 1, 1]
    assert one.status_code == 200 and one.content == f"payload of {paths[0]}\n".encode()
    assert sorted(zipfile.ZipFile(BytesIO(archive.content)).namelist()) == ["part1.txt", "part2.txt", "part3.txt"]


def test_a_run_started_on_one_replica_is_canceled_through_the_other(stack: Stack, replica: Any, gate: HttpGate) -> None:
    a, b = stack.api, replica()
    path = f"/hang/{uuid.uuid4().hex[:8]}"
    with a.client() as on_a, b.client() as on_b:
        created = on_a.post("/cli/run", json={"stage": "acquire", "command": "http", "args": {"url": gate.url(path), "output": "x.bin"}, "mode": "async"})
        job_id = created.json()["job_id"]
        gate.wait_request(path, timeout=120)
        canceled = on_b.delete(f"/jobs/{job_id}")
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["status"] == "canceled"
        assert on_a.get(f"/jobs/{job_id}").json()["status"] == "canceled"


def test_an_idempotency_key_answers_the_same_run_on_either_replica(stack: Stack, replica: Any) -> None:
    a, b = stack.api, replica()
    body = {"stage": "run", "args": {"config": "missing.yaml"}, "mode": "async"}
    key = f"retry-{uuid.uuid4().hex[:8]}"
    with a.client() as on_a, b.client() as on_b:
        first = on_a.post("/cli/run", json=body, headers={"Idempotency-Key": key})
        again = on_b.post("/cli/run", json=body, headers={"Idempotency-Key": key})
        other = on_b.post("/cli/run", json=body, headers={"Idempotency-Key": key + "-other"})
    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"] != other.json()["job_id"]
    names = stack.kubectl("get", "zyraruns", "-o", "name").stdout.split()
    assert names.count(f"zyrarun.zyra.io/{first.json()['job_id']}") == 1


def test_the_rate_limit_of_a_key_is_shared_by_the_replicas(stack: Stack, replica: Any) -> None:
    key = "limited-" + uuid.uuid4().hex
    env = {"ZYRA_API_KEYS": key, "ZYRA_RATE_LIMIT": "4/minute"}
    a, b = replica("limit-a", **env), replica("limit-b", **env)
    codes = []
    for server in (a, b, a, b, a, b):
        with server.client(key=key) as http:
            codes.append(http.get("/cli/commands").status_code)
    assert codes == [200, 200, 200, 200, 429, 429], codes


def test_a_replica_killed_mid_stream_the_other_serves_every_line_once(stack: Stack, replica: Any, gate: HttpGate) -> None:
    victim, survivor = replica("victim"), stack.api
    tag = uuid.uuid4().hex[:8]
    paths = [f"/{tag}/one", f"/{tag}/two"]
    with victim.client() as http:
        job_id = _gated_pipeline(victim, http, gate, paths)
    gate.release(paths[0])
    first: list[dict[str, Any]] = []
    with connect(ws_url(victim, job_id, api_key=victim.key), open_timeout=30) as ws:
        _read_until(ws, first, _has(paths[1]))
        os.killpg(victim.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        with pytest.raises(ConnectionClosed):
            while True:
                first.append(json.loads(ws.recv(timeout=30)))
    second: list[dict[str, Any]] = []
    with connect(ws_url(survivor, job_id, api_key=survivor.key, since=_last_seq(first)), open_timeout=30) as ws:
        gate.release(paths[1])
        _read_until(ws, second, _final)
    with survivor.client() as http:
        job = survivor.wait_job(http, job_id)
    assert job["status"] == "succeeded", job
    assert text_of(first, "stderr") + text_of(second, "stderr") == job["stderr"]
    assert [job["stderr"].count(p) for p in paths] == [1, 1]


def test_a_stopping_replica_hands_its_clients_over(stack: Stack, replica: Any, gate: HttpGate) -> None:
    """SIGTERM (a pod being replaced): the waiting sync request gets 202 with its job_id, the stream closes
    with 1012; the other replica then serves both the rest of the stream and the result."""
    leaving, staying = replica("leaving", ZYRA_GRACEFUL_TIMEOUT_SECONDS="60"), stack.api
    tag = uuid.uuid4().hex[:8]
    paths = [f"/{tag}/one", f"/{tag}/two"]
    answer: dict[str, Any] = {}
    with leaving.client() as http:
        upload = leaving.upload(http, "pipe.yaml", pipeline_yaml([gate.url(p) for p in paths]))

    def sync_request() -> None:
        body = {"stage": "run", "args": {"config": upload["ref"], "trace": True}, "mode": "sync"}
        with leaving.client(timeout=120) as http:
            try:
                response = http.post("/cli/run", json=body)
                answer.update(status=response.status_code, body=response.json())
            except httpx.HTTPError as exc:
                answer.update(error=repr(exc))

    waiter = threading.Thread(target=sync_request)
    waiter.start()
    gate.wait_request(paths[0], timeout=120)
    gate.release(paths[0])
    gate.wait_request(paths[1], timeout=60)
    job_id = _run_reading(stack, upload["file_id"])
    first: list[dict[str, Any]] = []
    with connect(ws_url(leaving, job_id, api_key=leaving.key), open_timeout=30) as ws:
        _read_until(ws, first, _has(paths[1]))
        leaving.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                first.append(json.loads(ws.recv(timeout=30)))
    waiter.join(30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    assert answer.get("status") == 202 and answer["body"]["job_id"] == job_id, answer
    assert leaving.proc.wait(30) is not None  # type: ignore[union-attr]

    second: list[dict[str, Any]] = []
    with connect(ws_url(staying, job_id, api_key=staying.key, since=_last_seq(first)), open_timeout=30) as ws:
        gate.release(paths[1])
        _read_until(ws, second, _final)
    with staying.client() as http:
        job = staying.wait_job(http, job_id)
    assert job["status"] == "succeeded", job
    assert text_of(first, "stderr") + text_of(second, "stderr") == job["stderr"]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _request_count(metrics: str, route: str) -> float:
    prefix = "zyra_api_request_seconds_count{"
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix) and f'route="{route}"' in line
    )


def test_two_workers_serve_one_port_and_report_one_set_of_metrics(stack: Stack, replica: Any, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    server = replica("workers", ZYRA_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    with server.client() as http:
        job_id = http.post("/cli/run", json={"stage": "run", "args": {"config": "missing.yaml"}, "mode": "async"}).json()["job_id"]
    sent = 0
    writers: set[str] = set()
    while sent < 200 and (sent < 20 or len(writers) < 2):
        # a new connection each: the kernel hands it to whichever worker accepts first
        response = httpx.get(f"{server.base_url}/jobs/{job_id}", headers=server.headers, timeout=30)
        assert response.status_code == 200
        sent += 1
        writers = {p.stem.rsplit("_", 1)[1] for p in metrics_dir.glob("histogram_*.db")}
    workers = [p for p in _children(server.proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]  # type: ignore[union-attr]
    totals = {httpx.get(f"{server.base_url}/metrics", timeout=30).text for _ in range(6)}

    assert len(workers) == 2, workers
    assert len(writers) == 2, f"one worker answered every request: {writers}"
    # whichever worker answers /metrics, the count is every worker's together
    assert {_request_count(text, "/jobs/{job_id}") for text in totals} == {float(sent)}

    server.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    server.proc.wait(60)  # type: ignore[union-attr]
    assert not [p for p in workers if Path(f"/proc/{p}").exists()], "a worker outlived the server"
