"""Runs that do not end by themselves: cancel, timeout, and an API killed under a running run.

The long-running command is real and offline: `zyra acquire http` against a loopback HTTP server that never
answers (tests.fixtures.servers.HttpGate), so zyra really sits in a blocking read until it is stopped."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from tests.api.util import group_alive, heatmap_args, wait_pid
from tests.fixtures.servers import ApiServer, HttpGate, npy_bytes

pytestmark = pytest.mark.zyra

LAUNCHERS = ["zygote-local", "zygote-s3redis", "subprocess-local"]


@pytest.fixture(params=LAUNCHERS)
def any_api(request: pytest.FixtureRequest, _shared_pool) -> ApiServer:
    """The shared servers: warm workers (zygote) on both backends, and fresh interpreters (subprocess)."""
    return _shared_pool.get({"zygote-local": "local", "zygote-s3redis": "s3redis", "subprocess-local": "cold"}[request.param])


def hanging(gate: HttpGate, **extra) -> tuple[dict, str]:
    path = f"/hang/{uuid.uuid4().hex[:8]}"
    return {"stage": "acquire", "command": "http", "args": {"url": gate.url(path), "output": "never.bin"}, "mode": "async", **extra}, path


def test_delete_cancels_a_running_job_and_its_process_group(any_api: ApiServer, http_gate: HttpGate) -> None:
    api = any_api
    body, path = hanging(http_gate)
    with api.client() as client:
        job_id = client.post("/cli/run", json=body).json()["job_id"]
        http_gate.wait_request(path)  # zyra is running, blocked in its download
        pid = wait_pid(api, job_id)
        assert group_alive(pid)
        assert client.get(f"/jobs/{job_id}").json()["status"] == "running"

        response = client.delete(f"/jobs/{job_id}")
        assert response.status_code == 200
        job = response.json()
        assert job["status"] == "canceled" and job["reason"] == "Canceled"
        assert job["message"] == "canceled on request"
        assert job["signal"] == "SIGTERM" and job["exit_code"] == 128 + 15
        assert job["finished_at"] and job["outputs"] == []
        assert group_alive(pid) == []
        assert client.get(f"/jobs/{job_id}").json()["status"] == "canceled"
        # canceling again changes nothing; a canceled job has nothing to download
        again = client.delete(f"/v1/jobs/{job_id}").json()
        assert again["status"] == "canceled" and again["finished_at"] == job["finished_at"]
        assert client.get(f"/jobs/{job_id}/download").status_code == 404
    assert api.stored_keys(f"runs/{job_id}/") == [f"runs/{job_id}/logs/stderr", f"runs/{job_id}/logs/stdout"]
    assert not (api.data_dir / "work" / job_id).exists()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_zyra_dying_of_a_signal_shows_the_signal(any_api: ApiServer, http_gate: HttpGate, sig: signal.Signals) -> None:
    """Not a cancel, not a timeout: zyra killed from elsewhere (the OOM killer, a crash) is reported as such."""
    api = any_api
    body, path = hanging(http_gate)
    with api.client() as client:
        job_id = client.post("/cli/run", json=body).json()["job_id"]
        http_gate.wait_request(path)
        os.kill(wait_pid(api, job_id), sig)
        job = api.wait_job(client, job_id)
    assert job["status"] == "failed" and job["reason"] == "Signaled", job
    assert job["signal"] == sig.name and job["exit_code"] == 128 + sig
    assert job["message"] == f"zyra was terminated by {sig.name}"


def test_a_finished_job_cannot_be_canceled(api_local: ApiServer) -> None:
    api = api_local
    with api.client() as client:
        up = api.upload(client, "done.npy", npy_bytes())
        result = client.post("/cli/run", json={"stage": "visualize", "command": "heatmap", "args": heatmap_args(up["ref"])}).json()
        job = client.delete(f"/jobs/{result['job_id']}").json()
    assert job["status"] == "succeeded" and job["reason"] == "Completed" and job["exit_code"] == 0


def test_a_timeout_ends_failed_with_deadline_exceeded(any_api: ApiServer, http_gate: HttpGate) -> None:
    api = any_api
    body, path = hanging(http_gate, timeout=2)
    with api.client() as client:
        job_id = client.post("/cli/run", json=body).json()["job_id"]
        pid = wait_pid(api, job_id)  # (zyra may or may not have reached its request in 2 s: either way it runs)
        job = api.wait_job(client, job_id, timeout=60)
    assert job["status"] == "failed" and job["reason"] == "DeadlineExceeded", job
    assert job["message"] == "ran longer than its timeout of 2 s"
    assert job["timeout_seconds"] == 2
    assert job["signal"] == "SIGTERM"
    assert group_alive(pid) == []


def test_sync_timeout_answers_with_the_error(api_local: ApiServer, http_gate: HttpGate) -> None:
    body, path = hanging(http_gate, timeout=1, mode="sync")
    with api_local.client() as client:
        result = client.post("/cli/run", json=body).json()
    assert result["status"] == "error" and result["reason"] == "DeadlineExceeded"
    assert result["exit_code"] == 128 + 15


@pytest.mark.parametrize("kind, warm", [("local", "true"), ("s3redis", "false")])
def test_restart_after_kill_9_finishes_the_interrupted_run_and_runs_the_queued_one(
    api_server, http_gate: HttpGate, kind: str, warm: str
) -> None:
    api = api_server(kind, name=f"restart-{kind}", ZYRA_MAX_CONCURRENT_RUNS="1", ZYRA_WARM_WORKERS=warm)
    body, path = hanging(http_gate)
    with api.client() as client:
        up = api.upload(client, "queued.npy", npy_bytes())
        in_flight = client.post("/cli/run", json=body).json()["job_id"]
        http_gate.wait_request(path)
        pid = wait_pid(api, in_flight)
        queued = client.post(
            "/cli/run", json={"stage": "visualize", "command": "heatmap", "args": heatmap_args(up["ref"], "q.png"), "mode": "async"}
        ).json()["job_id"]
        assert client.get(f"/jobs/{queued}").json()["status"] == "queued"

    api.kill9()
    assert api.proc is None or api.proc.poll() is not None
    # the API's death did not stop zyra: the run really was in flight, orphaned
    assert group_alive(pid)

    api.start()  # same port, data directory, storage and relay
    with api.client() as client:
        job = client.get(f"/jobs/{in_flight}").json()
        assert job["status"] == "failed" and job["reason"] == "Interrupted", job
        assert "API stopped" in job["message"] and job["finished_at"]
        assert group_alive(pid) == []  # the leftover process group was killed
        done = api.wait_job(client, queued)
        assert done["status"] == "succeeded", done
        assert [o["name"] for o in done["outputs"]] == ["q.png"]
        assert client.get(f"/jobs/{queued}/download").status_code == 200
        # and the restarted API takes new runs
        again = client.post(
            "/cli/run", json={"stage": "visualize", "command": "heatmap", "args": heatmap_args(up["ref"], "new.png")}
        ).json()
        assert again["status"] == "success", again
    assert dict(api.records()) == {in_flight: "failed", queued: "succeeded", again["job_id"]: "succeeded"}
