"""ZyraRuns on a real cluster, through the API (ZYRA_BACKEND=kubernetes) and kubectl.

Each run is a real Job whose pod runs the runner image: zyra reads its input from S3 (SeaweedFS on this
machine, reached over the cluster's bridge), streams through Redis, and archives logs and outputs to S3.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from tests.fixtures.servers import HttpGate
from tests.operator.conftest import Stack

pytestmark = [pytest.mark.cluster, pytest.mark.zyra]


def _npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.linspace(0, 1, 20 * 40, dtype="float32").reshape(20, 40))
    return buf.getvalue()


def _heatmap(file_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "stage": "visualize",
        "command": "heatmap",
        "args": {"input": f"file_id:{file_id}", "output": "heatmap.png", "no-coastline": True, "no-borders": True},
        **extra,
    }


async def _follow(url: str) -> list[dict[str, Any]]:
    import websockets

    frames = []
    async with websockets.connect(url, open_timeout=30) as ws:
        async for message in ws:
            frame = json.loads(message)
            frames.append(frame)
            if "exit_code" in frame:
                break
    return frames


def test_async_heatmap_streams_succeeds_and_downloads(stack: Stack) -> None:
    api = stack.api
    with api.client() as http:
        upload = api.upload(http, "field.npy", _npy())
        accepted = http.post("/cli/run", json=_heatmap(upload["file_id"], mode="async"))
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        frames = asyncio.run(_follow(f"{api.ws_url}/ws/jobs/{job_id}?api_key={api.key}"))
        final = frames[-1]
        assert final["exit_code"] == 0 and final["progress"] == 1.0 and final["status"] == "succeeded"
        assert final["output_file"] == "heatmap.png"
        assert any("heatmap.png" in f.get("stderr", "") + f.get("stdout", "") for f in frames[:-1]), frames
        job = http.get(f"/jobs/{job_id}").json()
        assert job["status"] == "succeeded" and job["exit_code"] == 0 and job["reason"] == "Completed"
        assert [o["name"] for o in job["outputs"]] == ["heatmap.png"]
        png = http.get(f"/jobs/{job_id}/download")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    obj = stack.zyrarun(job_id)
    status = obj["status"]
    assert status["phase"] == "Succeeded" and status["jobName"] == job_id and status["podName"].startswith(job_id)
    assert status["logs"] == {"stdout": f"runs/{job_id}/logs/stdout", "stderr": f"runs/{job_id}/logs/stderr"}
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Started": "True", "Complete": "True", "Succeeded": "True"}
    events = stack.kubectl("get", "events", "--field-selector", f"involvedObject.name={job_id}", "-o", "json")
    reasons = {e["reason"] for e in json.loads(events.stdout)["items"]}
    assert {"JobCreated", "Completed"} <= reasons


def test_usage_error_fails_with_exit_code_2_and_zyras_stderr(stack: Stack) -> None:
    api = stack.api
    with api.client() as http:
        upload = api.upload(http, "bad.npy", _npy())
        body = {"stage": "visualize", "command": "heatmap", "argv": [f"--input=file_id:{upload['file_id']}", "--vmin", "not-a-number"]}
        result = http.post("/cli/run", json=body)
        assert result.status_code == 200, result.text
        data = result.json()
    assert data["status"] == "error" and data["exit_code"] == 2
    assert "invalid float value" in data["stderr"]
    status = stack.zyrarun(data["job_id"])["status"]
    assert (status["phase"], status["exitCode"], status["reason"]) == ("Failed", 2, "Error")
    assert "invalid float value" in status["stderrTail"]


def _hanging_run(stack: Stack, gate: HttpGate, path: str, **extra: Any) -> str:
    body = {"stage": "acquire", "command": "http", "args": {"url": gate.url(path), "output": "got.bin"}, "mode": "async", **extra}
    with stack.api.client() as http:
        response = http.post("/cli/run", json=body)
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
    gate.wait_request(path, timeout=120)  # zyra is running in its pod and waiting on us
    return job_id


@pytest.fixture
def gate(stack: Stack) -> Any:
    g = HttpGate(host=stack.cluster.host_address)
    yield g
    g.close()


def test_cancel_of_a_running_run_stops_its_pod(stack: Stack, gate: HttpGate) -> None:
    job_id = _hanging_run(stack, gate, "/hang/cancel")
    with stack.api.client() as http:
        canceled = http.delete(f"/jobs/{job_id}")
        assert canceled.status_code == 200
    obj = stack.wait_phase(job_id, ("Canceled", "Failed", "Succeeded"), timeout=90)
    assert obj["status"]["phase"] == "Canceled" and obj["status"]["reason"] == "Canceled"
    deadline = time.monotonic() + 60
    while any(p.status.phase in ("Running", "Pending") for p in stack.pods(job_id)):
        assert time.monotonic() < deadline, "the canceled run's pod still runs"
        time.sleep(0.5)


def test_timeout_ends_deadline_exceeded(stack: Stack, gate: HttpGate) -> None:
    job_id = _hanging_run(stack, gate, "/hang/timeout", timeout=4)
    obj = stack.wait_phase(job_id, ("Failed", "Succeeded", "Canceled"), timeout=120)
    assert (obj["status"]["phase"], obj["status"]["reason"]) == ("Failed", "DeadlineExceeded")
    assert obj["status"]["exitCode"] == 143  # zyra stopped with SIGTERM by the runner at the deadline


def test_operator_killed_mid_run_still_ends_right(stack: Stack, gate: HttpGate) -> None:
    job_id = _hanging_run(stack, gate, "/slow-restart")
    stack.operator.kill9()
    gate.release("/slow-restart")  # the run finishes while no operator is watching
    time.sleep(3)
    stack.operator.start()
    obj = stack.wait_phase(job_id, ("Succeeded", "Failed", "Canceled"), timeout=120)
    assert (obj["status"]["phase"], obj["status"]["exitCode"]) == ("Succeeded", 0)
    assert [o["name"] for o in obj["status"]["outputs"]] == ["got.bin"]


def test_pod_deleted_mid_run_is_recorded_and_logs_kept(stack: Stack, gate: HttpGate) -> None:
    job_id = _hanging_run(stack, gate, "/hang/deleted")
    pod = stack.pods(job_id)[0].metadata.name
    stack.kubectl("delete", "pod", pod, "--wait=false")
    obj = stack.wait_phase(job_id, ("Failed", "Succeeded", "Canceled"), timeout=120)
    assert (obj["status"]["phase"], obj["status"]["reason"]) == ("Failed", "PodDeleted")
    with stack.api.client() as http:
        job = http.get(f"/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["reason"] == "PodDeleted"
    assert stack.s3.keys(stack.api.bucket or "", f"runs/{job_id}/logs/") == [f"runs/{job_id}/logs/stderr", f"runs/{job_id}/logs/stdout"]
    time.sleep(3)
    assert len(stack.pods(job_id)) <= 1, "the Job must not start the run again after its pod was deleted"


def test_kubectl_get_zyraruns_shows_the_columns(stack: Stack) -> None:
    api = stack.api
    with api.client() as http:
        upload = api.upload(http, "cols.npy", _npy())
        job_id = http.post("/cli/run", json=_heatmap(upload["file_id"])).json()["job_id"]
    out = stack.kubectl("get", "zyraruns", job_id).stdout.splitlines()
    header, row = out[0].split(), out[1].split()
    assert header == ["NAME", "STAGE", "COMMAND", "PHASE", "EXIT", "REASON", "DURATION", "AGE"]
    assert row[:6] == [job_id, "visualize", "heatmap", "Succeeded", "0", "Completed"]
    assert row[6].endswith("s")
    short = stack.kubectl("get", "zr", job_id, "-o", "name").stdout.strip()
    assert short == f"zyrarun.zyra.io/{job_id}"


@pytest.mark.parametrize(
    "spec, complaint",
    [
        ({"command": "heatmap"}, "stage"),
        ({"stage": "Visualize!", "command": "heatmap"}, "spec.stage"),
        ({"stage": "visualize", "command": "heatmap", "timeoutSeconds": 0}, "spec.timeoutSeconds"),
        ({"stage": "visualize", "command": "heatmap", "argv": "--input x"}, "argv"),
        ({"stage": "visualize", "command": "heatmap", "inputs": [{"fileId": "../etc", "name": "x"}]}, "fileId"),
    ],
)
def test_an_invalid_spec_is_refused_by_the_api_server(stack: Stack, spec: dict[str, Any], complaint: str) -> None:
    obj = {"apiVersion": "zyra.io/v1alpha1", "kind": "ZyraRun", "metadata": {"name": "bad-spec"}, "spec": spec}
    result = stack.kubectl("apply", "-f", "-", input=json.dumps(obj), check=False)
    assert result.returncode != 0 and complaint in result.stderr, result.stderr
    assert stack.kubectl("get", "zyraruns", "bad-spec", check=False).returncode != 0


def test_a_spec_zyra_would_refuse_fails_with_the_reason(stack: Stack) -> None:
    obj = {
        "apiVersion": "zyra.io/v1alpha1", "kind": "ZyraRun", "metadata": {"name": "path-trick"},
        "spec": {"stage": "visualize", "command": "heatmap", "argv": ["--input", "../../etc/passwd"]},
    }
    stack.kubectl("apply", "-f", "-", input=json.dumps(obj))
    status = stack.wait_phase("path-trick", ("Failed",), timeout=60)["status"]
    assert status["reason"] == "InvalidSpec" and "'..' is not allowed" in status["message"]
    assert stack.pods("path-trick") == []


def test_twenty_runs_at_once_all_end_right(stack: Stack) -> None:
    api = stack.api
    with api.client() as http:
        upload = api.upload(http, "many.npy", _npy())

        def one(i: int) -> dict[str, Any]:
            body = _heatmap(upload["file_id"], mode="async") if i % 4 else {
                "stage": "visualize", "command": "heatmap", "argv": ["--vmin", "x"], "mode": "async"}
            return http.post("/cli/run", json=body).json()

        with ThreadPoolExecutor(8) as pool:
            accepted = list(pool.map(one, range(20)))
        ids = [a["job_id"] for a in accepted]
        assert len(set(ids)) == 20
        results = [api.wait_job(http, job_id, timeout=600) for job_id in ids]
    for i, job in enumerate(results):
        if i % 4:
            assert (job["status"], job["exit_code"]) == ("succeeded", 0), job
        else:
            assert (job["status"], job["exit_code"]) == ("failed", 2), job


def _job_exists(stack: Stack, name: str) -> bool:
    return stack.kubectl("get", "job", name, check=False).returncode == 0


def test_finished_jobs_are_cleaned_up_and_the_run_stays(stack: Stack) -> None:
    api = stack.api
    with api.client() as http:
        upload = api.upload(http, "ttl.npy", _npy())
        job_id = http.post("/cli/run", json=_heatmap(upload["file_id"])).json()["job_id"]
    assert _job_exists(stack, job_id)
    deadline = time.monotonic() + 120  # ZYRA_JOB_TTL_SECONDS=10 in the stack, resync every 5 s
    while _job_exists(stack, job_id) or stack.pods(job_id):
        assert time.monotonic() < deadline, "the finished Job and its pod were not removed"
        time.sleep(1)
    assert stack.zyrarun(job_id)["status"]["phase"] == "Succeeded"
    with api.client() as http:
        assert http.get(f"/jobs/{job_id}/download").content.startswith(b"\x89PNG")


def test_deleting_a_zyrarun_deletes_its_job_and_pods(stack: Stack, gate: HttpGate) -> None:
    job_id = _hanging_run(stack, gate, "/hang/delete-run")
    stack.kubectl("delete", "zyrarun", job_id, "--wait=false")
    deadline = time.monotonic() + 120
    while _job_exists(stack, job_id) or stack.pods(job_id):
        assert time.monotonic() < deadline, "the Job of a deleted ZyraRun is still there"
        time.sleep(1)


def test_operator_metrics_count_finished_runs(stack: Stack) -> None:
    import httpx

    port = stack.operator.env["ZYRA_OPERATOR_METRICS_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'zyra_operator_runs_finished_total{phase="Succeeded",reason="Completed"}' in text
    assert "zyra_operator_jobs_created_total" in text


def test_a_run_can_be_deleted_while_the_operator_is_away(stack: Stack) -> None:
    obj = {
        "apiVersion": "zyra.io/v1alpha1", "kind": "ZyraRun", "metadata": {"name": "no-finalizer"},
        "spec": {"stage": "visualize", "command": "heatmap", "argv": ["--output", "/abs.png"]},
    }
    stack.kubectl("apply", "-f", "-", input=json.dumps(obj))
    stack.wait_phase("no-finalizer", ("Failed",), timeout=60)
    assert not stack.zyrarun("no-finalizer")["metadata"].get("finalizers")
    stack.operator.kill9()
    try:
        stack.kubectl("delete", "zyrarun", "no-finalizer", "--timeout=30s")
    finally:
        stack.operator.start()
