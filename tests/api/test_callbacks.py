"""callback_url: one HMAC-signed POST of the final result to a real receiver on loopback, retried on failure."""

from __future__ import annotations

import json
import time

import pytest

from zyrak8s_core import callbacks
from tests.api.util import heatmap_args, leaves_nothing
from tests.fixtures.servers import ApiServer, ServerPool, npy_bytes

pytestmark = pytest.mark.zyra

SECRET = ServerPool.SHARED_ENV["ZYRA_CALLBACK_SECRET"]


def signed_payload(received) -> dict:
    headers = received.headers
    assert callbacks.verify(SECRET, headers["x-zyra-timestamp"], received.body, headers["x-zyra-signature"])
    assert not callbacks.verify("another secret", headers["x-zyra-timestamp"], received.body, headers["x-zyra-signature"])
    return json.loads(received.body)


def test_one_signed_post_with_the_final_result(api: ApiServer, http_receiver) -> None:
    receiver = http_receiver()
    with api.client() as client:
        up = api.upload(client, "cb.npy", npy_bytes())
        result = client.post(
            "/cli/run",
            json={"stage": "visualize", "command": "heatmap", "args": heatmap_args(up["ref"], "cb.png"), "callback_url": receiver.url},
        ).json()
        assert result["status"] == "success", result
    (post,) = receiver.wait_for(1)
    payload = signed_payload(post)
    assert payload["job_id"] == result["job_id"]
    assert payload["status"] == "succeeded" and payload["exit_code"] == 0 and payload["reason"] == "Completed"
    assert payload["outputs"] == [{"name": "cb.png", "size": result["outputs"][0]["size"]}]
    assert "cb.png" in payload["stderr"]
    time.sleep(1.0)  # and only one
    assert len(receiver.received) == 1


def test_a_failed_run_calls_back_too(api_local: ApiServer, http_receiver) -> None:
    receiver = http_receiver()
    with api_local.client() as client:
        result = client.post(
            "/cli/run",
            json={"stage": "visualize", "command": "heatmap", "args": heatmap_args("absent.npy"), "callback_url": receiver.url},
        ).json()
    payload = signed_payload(receiver.wait_for(1)[0])
    assert payload["job_id"] == result["job_id"] and payload["status"] == "failed" and payload["exit_code"] == 1


def test_a_receiver_that_fails_twice_gets_the_post_a_third_time(api_local: ApiServer, http_receiver) -> None:
    """The server's retry waits grow from 1 s (no setting shortens them): this test takes ~3 s."""
    receiver = http_receiver([500, 502])
    with api_local.client() as client:
        up = api_local.upload(client, "retry.npy", npy_bytes())
        job_id = client.post(
            "/cli/run",
            json={"stage": "visualize", "command": "heatmap", "args": heatmap_args(up["ref"], "r.png"), "callback_url": receiver.url},
        ).json()["job_id"]
    posts = receiver.wait_for(3, timeout=60)
    assert len(posts) == 3
    bodies = {p.body for p in posts}
    assert len(bodies) == 1  # the same result each time, each freshly signed
    assert [signed_payload(p)["job_id"] for p in posts] == [job_id] * 3


def test_a_callback_url_needs_a_secret_on_the_server(api_server) -> None:
    server = api_server("local", name="nosecret", ZYRA_WARM_WORKERS="false")
    with leaves_nothing(server), server.client() as client:
        response = client.post(
            "/cli/run",
            json={"stage": "visualize", "command": "heatmap", "args": {"input": "a.npy"}, "callback_url": "http://127.0.0.1:9/hook"},
        )
        assert response.status_code == 422
        assert response.json()["field"] == "callback_url" and "ZYRA_CALLBACK_SECRET" in response.json()["detail"]
