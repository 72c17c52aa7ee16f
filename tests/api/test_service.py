"""The service around the runs: probes, metrics, docs, /v1, the catalogue, API keys, rate limits, start-up."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from tests.api.util import leaves_nothing, ws_collect, ws_url
from tests.fixtures.servers import ApiServer, npy_bytes


def test_health_and_ready_need_no_key(api: ApiServer) -> None:
    with httpx.Client(base_url=api.base_url) as anonymous:
        assert anonymous.get("/health").json() == {"status": "ok"}
        ready = anonymous.get("/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"storage": "ok", "relay": "ok", "backend": "ok"}}
        assert anonymous.get("/v1/health").status_code == 200
        assert anonymous.get("/v1/ready").status_code == 200


def test_metrics_are_prometheus_text(api: ApiServer) -> None:
    with api.client() as client:
        client.get("/cli/commands")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in ("zyra_api_request_seconds", "zyra_runs_submitted_total", "zyra_runs_running", "zyra_upload_bytes_total", "zyra_ws_clients"):
        assert f"# TYPE {name}" in text, name
    assert 'route="/cli/commands"' in text


def test_docs_and_openapi(api: ApiServer) -> None:
    with httpx.Client(base_url=api.base_url) as anonymous:
        docs = anonymous.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        schema = anonymous.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/cli/run", "/cli/commands", "/upload", "/jobs/{job_id}", "/jobs/{job_id}/download", "/health", "/ready"):
        assert path in paths, path
    assert set(paths["/jobs/{job_id}"]) >= {"get", "delete"}
    # the API key is a documented security scheme
    assert any(s.get("name") == "X-API-Key" for s in schema["components"]["securitySchemes"].values())


def test_every_route_is_also_under_v1(api: ApiServer) -> None:
    with httpx.Client(base_url=api.base_url) as anonymous:
        paths = anonymous.get("/openapi.json").json()["paths"]
    plain = {p: set(ops) for p, ops in paths.items() if not p.startswith("/v1/")}
    assert len(plain) >= 8
    for path, ops in plain.items():
        assert paths.get("/v1" + path) is not None, f"/v1{path} missing"
        assert set(paths["/v1" + path]) == ops, path
    # and they answer there, the WebSocket too
    with api.client() as client:
        assert client.get("/v1/cli/commands").json() == client.get("/cli/commands").json()
        assert client.get("/v1/jobs/run-0000000000000000").status_code == 404
    frames, code = ws_collect(ws_url(api, "run-0000000000000000", prefix="/v1", api_key=api.key))
    assert code == 4404 and "no job" in frames[0]["error"]


def test_cli_commands_lists_stages_aliases_and_options(api: ApiServer) -> None:
    with api.client() as client:
        catalogue = client.get("/cli/commands").json()
        stages = catalogue["stages"]
        assert catalogue["zyra_version"]
        for stage in ("acquire", "process", "visualize", "decimate", "run", "render", "import", "export", "disseminate"):
            assert stage in stages, stage
        # aliases carry the same commands as what they stand for
        assert stages["render"]["commands"].keys() == stages["visualize"]["commands"].keys()
        assert stages["import"]["commands"].keys() == stages["acquire"]["commands"].keys()
        assert stages["export"]["commands"].keys() == stages["decimate"]["commands"].keys()
        heatmap = stages["visualize"]["commands"]["heatmap"]
        flags = {flag for option in heatmap["options"] for flag in option["flags"]}
        assert {"--input", "--output", "--no-coastline", "--no-borders", "--cmap", "--width"} <= flags
        width = next(o for o in heatmap["options"] if o["dest"] == "width")
        assert width["type"] == "int"

        one = client.get("/cli/commands", params={"stage": "render"}).json()
        assert list(one["stages"]) == ["render"]
        described = client.get("/cli/commands/process/convert-format").json()
        assert described["stage"] == "process" and described["command"] == "convert-format"
        assert [p["dest"] for p in described["positionals"]] == ["file_or_url", "format"]

        unknown = client.get("/cli/commands", params={"stage": "paint"})
        assert unknown.status_code == 404 and "visualize" in unknown.json()["detail"]
        unknown = client.get("/cli/commands/visualize/sketch")
        assert unknown.status_code == 404 and "heatmap" in unknown.json()["detail"]


ROUTES = [
    ("GET", "/cli/commands", None),
    ("POST", "/cli/run", {"stage": "visualize", "command": "heatmap", "args": {}}),
    ("GET", "/jobs/run-0000000000000000", None),
    ("DELETE", "/jobs/run-0000000000000000", None),
    ("GET", "/jobs/run-0000000000000000/download", None),
]


@pytest.mark.parametrize("key", [None, "", "wrong-key", "key-with-suffix"])
def test_a_bad_api_key_is_401_everywhere_and_changes_nothing(api: ApiServer, key: str | None) -> None:
    if key == "key-with-suffix":
        key = api.key + "x"
    headers = {} if key is None else {"X-API-Key": key}
    with leaves_nothing(api), httpx.Client(base_url=api.base_url, headers=headers) as client:
        for method, path, body in ROUTES:
            for prefix in ("", "/v1"):
                response = client.request(method, prefix + path, json=body)
                assert response.status_code == 401, (method, prefix + path, response.text)
                assert response.headers["www-authenticate"] == "ApiKey"
                assert "API key" in response.json()["detail"]
        response = client.post("/upload", files={"file": ("a.npy", npy_bytes())})
        assert response.status_code == 401


@pytest.mark.zyra
def test_a_bad_api_key_closes_the_websocket_with_1008(api: ApiServer) -> None:
    with api.client() as client:
        up = api.upload(client, "ws.npy", npy_bytes())
        job_id = client.post(
            "/cli/run", json={"stage": "visualize", "command": "heatmap", "args": {"input": up["ref"], "output": "w.png", "no-coastline": True, "no-borders": True}}
        ).json()["job_id"]
    for url, headers in (
        (ws_url(api, job_id), None),
        (ws_url(api, job_id, api_key="wrong"), None),
        (ws_url(api, job_id), {"X-API-Key": "wrong"}),
        (ws_url(api, job_id, prefix="/v1", api_key=""), None),
    ):
        frames, code = ws_collect(url, headers=headers)
        assert code == 1008, url
        assert frames == [{"error": frames[0]["error"]}] and "API key" in frames[0]["error"]
    # the right key, in the query or the header, is let in
    for url, headers in ((ws_url(api, job_id, api_key=api.key), None), (ws_url(api, job_id), {"X-API-Key": api.key2})):
        frames, code = ws_collect(url, headers=headers)
        assert code == 1000 and frames[-1]["exit_code"] == 0


def test_either_configured_key_works(api: ApiServer) -> None:
    for key in (api.key, api.key2):
        with api.client(key=key) as client:
            assert client.get("/cli/commands").status_code == 200


@pytest.mark.parametrize("kind", ["local", "s3redis"])
def test_rate_limit_gives_429_with_retry_after(api_server, kind: str) -> None:
    server = api_server(kind, name=f"ratelimit-{kind}", ZYRA_RATE_LIMIT="3/minute", ZYRA_WARM_WORKERS="false")
    with server.client() as client:
        assert [client.get("/cli/commands").status_code for _ in range(3)] == [200, 200, 200]
        limited = client.get("/cli/commands")
        assert limited.status_code == 429
        assert "3/minute" in limited.json()["detail"]
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        # every authenticated route counts, under /v1 too
        assert client.get("/v1/jobs/run-0000000000000000").status_code == 429
        assert client.post("/upload", files={"file": ("a.npy", b"x")}).status_code == 429
        assert server.stored_keys() == []
        # the limit is per key: another key still gets through; probes are never limited
        with server.client(key=server.key2) as other:
            assert other.get("/cli/commands").status_code == 200
        assert client.get("/health").status_code == 200
    # a WebSocket past the limit is refused as well
    frames, code = ws_collect(ws_url(server, "run-0000000000000000", api_key=server.key))
    assert code == 1008 and "rate limit" in frames[0]["error"]


def test_auth_disabled_only_when_asked(api_server) -> None:
    server = api_server("local", name="noauth", key="", ZYRA_AUTH_DISABLED="true", ZYRA_WARM_WORKERS="false")
    assert "ZYRA_API_KEYS" not in server.env
    with httpx.Client(base_url=server.base_url) as anonymous:
        assert anonymous.get("/cli/commands").status_code == 200
        assert anonymous.get("/jobs/run-0000000000000000").status_code == 404
        assert anonymous.post("/upload", files={"file": ("a.npy", b"x")}).status_code == 200
    frames, code = ws_collect(ws_url(server, "run-0000000000000000"))
    assert code == 4404


@pytest.mark.parametrize("auth_disabled", [None, "false", "0"])
def test_the_api_refuses_to_start_without_a_key(api_server, auth_disabled: str | None) -> None:
    env = {"ZYRA_WARM_WORKERS": "false"}
    if auth_disabled is not None:
        env["ZYRA_AUTH_DISABLED"] = auth_disabled
    server = api_server("local", name="nokey", key="", start=False, **env)
    proc = server.spawn()
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        raise AssertionError("the API started with no key configured") from None
    assert code != 0
    log = server.log_text()
    assert "no API key configured" in log and "ZYRA_API_KEYS" in log and "ZYRA_AUTH_DISABLED" in log
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base_url}/health", timeout=2)


def test_keys_from_a_file(api_server, tmp_path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("file-key-one\n\n  file-key-two  \n")
    server = api_server("local", name="keyfile", key="", ZYRA_API_KEYS_FILE=str(keys), ZYRA_WARM_WORKERS="false")
    for key, status in (("file-key-one", 200), ("file-key-two", 200), ("file-key", 401), ("", 401)):
        with server.client(key=key) as client:
            assert client.get("/cli/commands").status_code == status, key


@pytest.mark.zyra
def test_queue_full_and_sync_wait(api_server, http_gate) -> None:
    """One run at a time, one queued: a third is refused (503, Retry-After) without a record. A sync request
    that waits longer than ZYRA_SYNC_WAIT_SECONDS becomes a 202 the client follows like an async one."""
    server = api_server(
        "local", name="busy", ZYRA_WARM_WORKERS="false", ZYRA_MAX_CONCURRENT_RUNS="1", ZYRA_MAX_QUEUED_RUNS="1",
        ZYRA_SYNC_WAIT_SECONDS="1",
    )
    body = {"stage": "acquire", "command": "http", "args": {"url": http_gate.url("/hang/busy"), "output": "x"}}
    with server.client() as client:
        running = client.post("/cli/run", json=body)  # sync, but it cannot end in time
        assert running.status_code == 202 and running.json()["status"] == "accepted"
        http_gate.wait_request("/hang/busy")
        queued = client.post("/cli/run", json={**body, "mode": "async"}).json()["job_id"]
        assert client.get(f"/jobs/{queued}").json()["status"] == "queued"
        with leaves_nothing(server):
            refused = client.post("/cli/run", json={**body, "mode": "async"})
            assert refused.status_code == 503 and refused.headers["Retry-After"]
            assert "queued" in refused.json()["detail"]
        canceled = client.delete(f"/jobs/{queued}").json()
        assert canceled["status"] == "canceled" and canceled["reason"] == "Canceled"
        assert canceled["started_at"] is None and "before it started" in canceled["message"]
        assert client.delete(f"/jobs/{running.json()['job_id']}").json()["status"] == "canceled"
        # the canceled queued run never starts later: the next run goes ahead of it
        http_gate.release("/ok")
        later = client.post("/cli/run", json={**body, "args": {"url": http_gate.url("/ok"), "output": "ok.txt"}, "mode": "async"})
        assert server.wait_job(client, later.json()["job_id"])["status"] == "succeeded"
        assert client.get(f"/jobs/{queued}").json()["status"] == "canceled"
        assert http_gate.requests == ["/hang/busy", "/ok"]


def test_redis_down_makes_the_api_unready_but_not_broken(api_server, redis_factory) -> None:
    """Readiness reports the relay's Redis; requests still get answers (the rate limiter on that Redis lets
    them through rather than failing them), and all is well again once Redis is back."""
    redis = redis_factory()
    server = api_server("s3redis", name="redis-down", redis=redis, ZYRA_WARM_WORKERS="false", ZYRA_RATE_LIMIT="1000/minute")
    with server.client() as client:
        assert client.get("/ready").status_code == 200
        redis.stop()
        ready = client.get("/ready")
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["relay"].startswith("error: RelayUnavailable") and checks["storage"] == "ok"
        assert client.get("/health").status_code == 200
        assert client.get("/cli/commands").status_code == 200
        assert client.get("/jobs/run-0000000000000000").status_code == 404
        assert server.upload(client, "while-down.npy", npy_bytes())["filename"] == "while-down.npy"
        redis.start()
        assert client.get("/ready").status_code == 200
        assert client.get("/cli/commands").status_code == 200


def test_rate_limit_off(api_server) -> None:
    server = api_server("local", name="nolimit", ZYRA_RATE_LIMIT="off", ZYRA_WARM_WORKERS="false")
    with server.client() as client:
        statuses = {client.get("/jobs/run-0000000000000000").status_code for _ in range(130)}  # past the default 120
    assert statuses == {404}


def test_a_bad_rate_limit_stops_the_start(api_server) -> None:
    server = api_server("local", name="badlimit", start=False, ZYRA_RATE_LIMIT="lots", ZYRA_WARM_WORKERS="false")
    assert server.spawn().wait(60) != 0
    assert "ZYRA_RATE_LIMIT='lots' is not a rate" in server.log_text()


@pytest.mark.zyra
def test_s3_down_is_503_not_a_crash(api_server, seaweedfs_factory) -> None:
    """With the S3 server gone: /ready says so, requests that need storage get 503 (and create nothing),
    what the record alone can answer still works; once S3 is back, so is everything else."""
    s3 = seaweedfs_factory()
    server = api_server("s3redis", name="s3-down", s3=s3, ZYRA_WARM_WORKERS="false")
    with server.client() as client:
        up = server.upload(client, "kept.npy", npy_bytes())
        body = {"stage": "visualize", "command": "heatmap", "args": {"input": up["ref"], "output": "k.png", "no-coastline": True, "no-borders": True}}
        done = client.post("/cli/run", json=body).json()
        assert done["status"] == "success", done
        s3.stop()
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["storage"].startswith("error: StorageError")
        records = server.records()
        for response in (
            client.post("/upload", files={"file": ("new.npy", b"x")}),
            client.post("/cli/run", json=body),
            client.get(f"/jobs/{done['job_id']}/download"),
            client.get(f"/jobs/{done['job_id']}/download", params={"zip": "1"}),
        ):
            assert response.status_code == 503, response.text
            assert "storage" in response.json()["detail"]
        assert server.records() == records
        job = client.get(f"/jobs/{done['job_id']}")
        assert job.status_code == 200 and job.json()["status"] == "succeeded"
        s3.start()
        assert client.get("/ready").status_code == 200
        # a restarted SeaweedFS answers for its buckets before its volume server serves objects again
        deadline = time.monotonic() + 60
        while (status := client.get(f"/jobs/{done['job_id']}/download").status_code) == 503 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert status == 200
        assert client.post("/cli/run", json=body).json()["status"] == "success"
    assert server.scratch_files() == []
