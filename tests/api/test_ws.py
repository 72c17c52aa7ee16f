"""WebSocket frames end to end over the real uvicorn server: live, late, reconnecting, filtered, archived."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from websockets.sync.client import connect

from tests.api.util import heatmap_args, text_of, ws_collect, ws_url
from tests.fixtures.servers import ApiServer, HttpGate, npy_bytes, pipeline_yaml

pytestmark = pytest.mark.zyra

STREAM_KINDS = ("stdout", "stderr", "progress")


def check_frames(frames: list[dict], job: dict) -> dict:
    """The shape every stream must have; returns the final frame."""
    *chunks, final = frames
    assert final["exit_code"] == job["exit_code"] and final["status"] == job["status"] and final["reason"] == job["reason"]
    assert final["progress"] == 1.0
    for frame in chunks:
        kinds = [k for k in frame if k in STREAM_KINDS]
        assert len(kinds) == 1 and set(frame) <= {kinds[0], "seq"}, frame
    seqs = [f["seq"] for f in chunks]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), seqs
    progress = [f["progress"] for f in chunks if "progress" in f]
    assert progress == sorted(progress) and all(0.0 <= p <= 1.0 for p in progress)
    return final


def test_heatmap_frames_end_to_end(api: ApiServer) -> None:
    with api.client() as client:
        up = api.upload(client, "ws.npy", npy_bytes())
        job_id = client.post(
            "/cli/run",
            json={"stage": "visualize", "command": "heatmap", "args": heatmap_args(up["ref"], "live.png"), "mode": "async"},
        ).json()["job_id"]
        frames, code = ws_collect(ws_url(api, job_id, api_key=api.key))
        job = api.wait_job(client, job_id)
    assert code == 1000
    final = check_frames(frames, job)
    assert final["status"] == "succeeded" and final["exit_code"] == 0 and final["reason"] == "Completed"
    assert final["output_file"] == "live.png"
    assert "live.png" in final["stderr"]
    assert frames[0] == {"progress": 0.0, "seq": 1}  # the runner says "started" first
    assert text_of(frames, "stderr") == job["stderr"]
    assert text_of(frames, "stdout") == job["stdout"]


def start_pipeline(api: ApiServer, client, gate: HttpGate, paths: list[str]) -> str:
    up = api.upload(client, "pipe.yaml", pipeline_yaml([gate.url(p) for p in paths]))
    response = client.post("/cli/run", json={"stage": "run", "args": {"config": up["ref"], "trace": True}, "mode": "async"})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def read_until(ws, wanted: str, frames: list[dict], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while wanted not in text_of(frames, "stderr"):
        frames.append(json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic()))))


def test_late_client_gets_everything_and_reconnect_gets_the_rest_once(api: ApiServer, http_gate: HttpGate) -> None:
    """A pipeline whose stages block on a loopback server the test controls: each stage logs one line when it
    starts, so the run's output grows only when the test lets it."""
    tag = uuid.uuid4().hex[:8]
    paths = [f"/{tag}/stage{i}" for i in (1, 2, 3)]
    with api.client() as client:
        job_id = start_pipeline(api, client, http_gate, paths)
        http_gate.wait_request(paths[0])
        http_gate.release(paths[0])
        http_gate.wait_request(paths[1])
        assert client.get(f"/jobs/{job_id}").json()["status"] == "running"

        # a late client: everything from the first line on
        first: list[dict] = []
        with connect(ws_url(api, job_id, api_key=api.key)) as ws:
            read_until(ws, paths[1], first)
        assert paths[0] in text_of(first, "stderr")
        assert first[0]["seq"] == 1
        last_seq = first[-1]["seq"]

        http_gate.release(paths[1])
        http_gate.wait_request(paths[2])
        # a reconnect after the last seq seen: the rest, from where it left off
        second: list[dict] = []
        with connect(ws_url(api, job_id, api_key=api.key, since=last_seq)) as ws:
            read_until(ws, paths[2], second)
            http_gate.release(paths[2])
            while "exit_code" not in second[-1]:
                second.append(json.loads(ws.recv(timeout=60)))
        job = api.wait_job(client, job_id)

    assert job["status"] == "succeeded", job
    assert sorted(o["name"] for o in job["outputs"]) == ["part1.txt", "part2.txt", "part3.txt"]
    check_frames(first + second, job)
    assert second[0]["seq"] > last_seq
    assert paths[0] not in text_of(second, "stderr") and paths[1] not in text_of(second, "stderr")
    # together: every line exactly once, in order
    assert text_of(first, "stderr") + text_of(second, "stderr") == job["stderr"]
    assert [job["stderr"].count(p) for p in paths] == [1, 1, 1]


def test_a_client_after_the_end_replays_the_whole_run(api: ApiServer) -> None:
    with api.client() as client:
        up = api.upload(client, "after.npy", npy_bytes())
        result = client.post(
            "/cli/run", json={"stage": "visualize", "command": "heatmap", "args": heatmap_args(up["ref"], "after.png")}
        ).json()
        job = client.get(f"/jobs/{result['job_id']}").json()
    frames, code = ws_collect(ws_url(api, job["job_id"], api_key=api.key))
    assert code == 1000
    check_frames(frames, job)
    assert text_of(frames, "stderr") == job["stderr"]
    # and after a seq, only what came later
    middle = frames[len(frames) // 2 - 1]["seq"] if len(frames) > 2 else 0
    rest, _ = ws_collect(ws_url(api, job["job_id"], api_key=api.key, since=middle))
    assert [f["seq"] for f in rest[:-1]] == [f["seq"] for f in frames[:-1] if f["seq"] > middle]


def test_stream_selection(api_local: ApiServer) -> None:
    api = api_local
    with api.client() as client:
        up = api.upload(client, "sel.npy", npy_bytes())
        job_id = client.post(
            "/cli/run", json={"stage": "visualize", "command": "heatmap", "args": heatmap_args(up["ref"], "sel.png")}
        ).json()["job_id"]
    only_stderr, code = ws_collect(ws_url(api, job_id, api_key=api.key, stream="stderr"))
    assert code == 1000 and only_stderr[:-1] and all(set(f) == {"stderr", "seq"} for f in only_stderr[:-1])
    only_progress, _ = ws_collect(ws_url(api, job_id, api_key=api.key, stream="progress"))
    assert only_progress[:-1] and all(set(f) == {"progress", "seq"} for f in only_progress[:-1])
    assert only_progress[-1]["progress"] == 1.0
    refused, code = ws_collect(ws_url(api, job_id, api_key=api.key, stream="stdout,logs"))
    assert code == 1008 and "logs" in refused[0]["error"] and "stdout, stderr, progress" in refused[0]["error"]


def test_progress_follows_the_percentages_zyra_prints(api_local: ApiServer) -> None:
    """zyra logs the file it wrote; a name with a percentage in it is a progress report to the runner."""
    api = api_local
    with api.client() as client:
        up = api.upload(client, "pct.npy", npy_bytes())
        result = client.post(
            "/cli/run", json={"stage": "visualize", "command": "heatmap", "args": heatmap_args(up["ref"], "frame-40%.png")}
        ).json()
        assert result["status"] == "success", result
    frames, _ = ws_collect(ws_url(api, result["job_id"], api_key=api.key, stream="progress"))
    assert [f["progress"] for f in frames[:-1]] == [0.0, 0.4]
    assert frames[-1]["progress"] == 1.0


def test_keepalives_while_quiet_and_the_final_frame_of_a_cancel(api_cold: ApiServer, http_gate: HttpGate) -> None:
    api = api_cold  # keepalives every 0.5 s there
    with api.client() as client:
        job_id = client.post(
            "/cli/run",
            json={"stage": "acquire", "command": "http", "args": {"url": http_gate.url("/hang/ws"), "output": "x"}, "mode": "async"},
        ).json()["job_id"]
        http_gate.wait_request("/hang/ws")
        frames: list[dict] = []
        with connect(ws_url(api, job_id, api_key=api.key)) as ws:
            while sum(1 for f in frames if f.get("keepalive")) < 2:
                frames.append(json.loads(ws.recv(timeout=30)))
            assert client.delete(f"/jobs/{job_id}").json()["status"] == "canceled"
            while "exit_code" not in frames[-1]:
                frames.append(json.loads(ws.recv(timeout=30)))
    assert {"keepalive": True} in frames
    final = frames[-1]
    assert final["status"] == "canceled" and final["reason"] == "Canceled" and final["progress"] == 1.0
    assert final["exit_code"] == 128 + 15  # zyra was stopped by SIGTERM: the signal shows


def test_an_expired_stream_is_served_from_the_archive(api_cold: ApiServer) -> None:
    """Live streams are kept ZYRA_RELAY_RETENTION_SECONDS (1 s on this server); later the archived logs in
    storage are sent instead, then the final frame."""
    api = api_cold
    with api.client() as client:
        up = api.upload(client, "old.npy", npy_bytes())
        result = client.post(
            "/cli/run", json={"stage": "visualize", "command": "heatmap", "args": heatmap_args(up["ref"], "old.png")}
        ).json()
        assert result["status"] == "success", result
        time.sleep(1.5)
        job = client.get(f"/jobs/{result['job_id']}").json()
    frames, code = ws_collect(ws_url(api, job["job_id"], api_key=api.key))
    assert code == 1000
    *chunks, final = frames
    assert chunks and all("seq" not in f for f in chunks)  # archive chunks carry no seq
    assert text_of(frames, "stderr") == job["stderr"] and "old.png" in job["stderr"]
    assert final["exit_code"] == 0 and final["progress"] == 1.0 and final["output_file"] == "old.png"


def test_unknown_job_closes_4404(api: ApiServer) -> None:
    frames, code = ws_collect(ws_url(api, "run-ffffffffffffffff", api_key=api.key))
    assert code == 4404 and frames == [{"error": "no job 'run-ffffffffffffffff'"}]
