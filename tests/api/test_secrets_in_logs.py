"""Secrets stay out of the logs, also at DEBUG: API keys (header and WebSocket query), storage credentials."""

from __future__ import annotations

import pytest
from websockets.sync.client import connect

from tests.api.util import heatmap_args, ws_collect, ws_url
from tests.fixtures.servers import npy_bytes

pytestmark = pytest.mark.zyra


def test_debug_logs_carry_no_key_and_no_storage_secret(api_server) -> None:
    api = api_server("s3redis", name="secrets", ZYRA_LOG_LEVEL="DEBUG", ZYRA_WARM_WORKERS="false")
    with api.client() as client:
        up = api.upload(client, "s.npy", npy_bytes())
        job_id = client.post("/cli/run", json={"stage": "visualize", "command": "heatmap", "args": heatmap_args(up["ref"])}).json()["job_id"]
        assert client.get(f"/jobs/{job_id}").status_code == 200
    with api.client(key="wrong-" + api.key) as client:
        assert client.get(f"/jobs/{job_id}").status_code == 401
    frames, code = ws_collect(ws_url(api, job_id, api_key=api.key))  # the key in the query string
    assert code == 1000 and "exit_code" in frames[-1]
    with connect(ws_url(api, job_id, api_key="bad-" + api.key)) as ws:
        ws.recv(timeout=30)
    api.stop()

    log = api.log_text()
    assert "DEBUG" in log, "the server did not log at DEBUG: the check below would prove nothing"
    assert api.s3 is not None
    for secret in (api.key, api.key2, api.s3.secret_key):
        assert secret not in log
