"""The nginx example of examples/tls/ in front of the embedded API, with a self-signed certificate: HTTPS for
REST and uploads, WSS for a live stream, and no key in nginx's output."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.api.util import heatmap_args
from tests.fixtures.kube import in_ci
from tests.fixtures.servers import ApiServer, _stop_process, _wait_for, free_port, npy_bytes

pytestmark = pytest.mark.zyra

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/tls/nginx.conf"


def _certificate(directory: Path) -> tuple[Path, Path]:
    crt, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key), "-out", str(crt),
         "-subj", "/CN=zyra.example.com", "-addext", "subjectAltName=DNS:zyra.example.com,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return crt, key


def _config(directory: Path, api_port: int, port: int, crt: Path, key: Path) -> Path:
    """The example with this test's ports, certificate and scratch directories: nothing else changed."""
    text = EXAMPLE.read_text()
    for old, new in (
        ("127.0.0.1:8000", f"127.0.0.1:{api_port}"),
        ("127.0.0.1:8443", f"127.0.0.1:{port}"),
        ("/etc/ssl/zyra/tls.crt", str(crt)),
        ("/etc/ssl/zyra/tls.key", str(key)),
        ("/tmp/zyra-nginx", str(directory / "nginx")),
    ):
        assert old in text, f"the example no longer has {old!r}: update this test"
        text = text.replace(old, new)
    conf = directory / "nginx.conf"
    conf.write_text(text)
    return conf


@pytest.fixture
def proxied(api_local: ApiServer, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """(https base URL, CA file, nginx's output) of nginx running the example in front of the shared API."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        message = "nginx is not installed (make apt-test installs nginx-light)"
        pytest.fail(message) if in_ci() else pytest.skip(message)
    crt, key = _certificate(tmp_path)
    port = free_port()
    conf = _config(tmp_path, api_local.port, port, crt, key)
    output = tmp_path / "nginx.out"
    with output.open("wb") as out:
        # as root nginx would hand its workers to "nobody"; the test's scratch files are ours
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off; user root;"],
                                stdout=out, stderr=subprocess.STDOUT)
    base = f"https://127.0.0.1:{port}"
    try:
        _wait_for(lambda: httpx.get(f"{base}/health", verify=str(crt), timeout=2).status_code == 200, 20, "nginx", proc, output)
        yield base, crt, output
    finally:
        _stop_process(proc)


def test_rest_upload_and_websocket_through_the_tls_example(api_local: ApiServer, proxied: tuple[str, Path, Path]) -> None:
    base, ca, output = proxied
    api = api_local
    with httpx.Client(base_url=base, verify=str(ca), headers=api.headers, timeout=120) as client:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/health", timeout=5)  # not trusted without the CA: TLS is real
        up = client.post("/upload", files={"file": ("tls.npy", npy_bytes(), "application/octet-stream")})
        assert up.status_code == 200, up.text
        body = {"stage": "visualize", "command": "heatmap", "args": heatmap_args(up.json()["ref"], "tls.png"), "mode": "async"}
        job_id = client.post("/cli/run", json=body).json()["job_id"]

        context = ssl.create_default_context(cafile=str(ca))
        frames = []
        with connect(f"wss://127.0.0.1:{base.rsplit(':', 1)[1]}/ws/jobs/{job_id}?api_key={api.key}", ssl=context,
                     server_hostname="zyra.example.com", open_timeout=30) as ws:
            while not frames or "exit_code" not in frames[-1]:
                frames.append(json.loads(ws.recv(timeout=120)))
        png = client.get(f"/jobs/{job_id}/download", params={"file": "tls.png"})

    assert frames[-1]["exit_code"] == 0 and frames[-1]["output_file"] == "tls.png"
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert api.key not in output.read_text(errors="replace")
