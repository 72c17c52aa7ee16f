"""Shared helpers for the benchmarks: start the real API, record results, describe the machine."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PYTHON = os.environ.get("BENCH_PYTHON") or str(ROOT / ".venv" / "bin" / "python")
API_KEY = "bench-key-0123456789"

sys.path.insert(0, str(ROOT))


def servers():  # type: ignore[no-untyped-def]
    """Context-manager factories (redis_cm, s3_cm, source) for a loopback redis-server and SeaweedFS.

    They are the project's own test fixtures (tests/fixtures/servers.py). redis_cm() yields an object with
    `.url`, s3_cm() one with `.endpoint`, `.access_key`, `.secret_key` and `.proc` (the weed process)."""
    from tests.fixtures.servers import start_redis, start_seaweedfs

    @contextlib.contextmanager
    def redis_cm():  # type: ignore[no-untyped-def]
        tmp = Path(tempfile.mkdtemp(prefix="bench-redis-"))
        server = start_redis(tmp)
        try:
            yield server
        finally:
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    @contextlib.contextmanager
    def s3_cm():  # type: ignore[no-untyped-def]
        tmp = Path(tempfile.mkdtemp(prefix="bench-weed-"))
        server = start_seaweedfs(tmp)
        try:
            yield server
        finally:
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    return redis_cm, s3_cm, "tests/fixtures/servers.py (start_redis, start_seaweedfs)"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Api:
    url: str
    pid: int
    data_dir: Path
    proc: subprocess.Popen
    log_path: Path

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": API_KEY}, timeout=timeout, trust_env=False)


@contextlib.contextmanager
def api_server(env: dict[str, str] | None = None, ready_timeout: float = 120.0, wait_zygote: bool = True,
               ) -> Iterator[Api]:
    """The real API (`python -m zyrak8s_api`) on a free loopback port with a fresh data dir."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ZYRA_")}
    full_env.update(
        ZYRA_HOST="127.0.0.1",
        ZYRA_PORT=str(port),
        ZYRA_DATA_DIR=str(data_dir / "data"),
        ZYRA_API_KEYS=API_KEY,
        ZYRA_RATE_LIMIT="1000000/minute",  # an empty value is ignored (env_ignore_empty): the default 120/min would throttle the bench
        ZYRA_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT / "service"),
    )
    full_env.update(env or {})
    log_path = data_dir / "api.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([PYTHON, "-m", "zyrak8s_api"], env=full_env, cwd=str(data_dir),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        with httpx.Client(base_url=url, timeout=5, trust_env=False) as c:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"API exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if c.get("/ready").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("API not ready")
                time.sleep(0.1)
            if wait_zygote and full_env.get("ZYRA_WARM_WORKERS", "true").lower() not in ("false", "0", "no"):
                _wait_zygote_ready(proc.pid, deadline)
        yield Api(url, proc.pid, data_dir, proc, log_path)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _wait_zygote_ready(api_pid: int, deadline: float) -> None:
    """The zygote starts in the background and warms up by forking children; wait until it has a
    listening socket and no warm-up child is left, so the first timed run does not race its warm-up."""
    while time.monotonic() < deadline:
        for child in _children(api_pid):
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"zyrak8s_core.zygote" in cmd and not _children(child):
                    sock = cmd.split(b"\0")[3].decode()  # python -m zyrak8s_core.zygote SOCKET
                    if os.path.exists(sock):
                        return
        time.sleep(0.2)
    raise TimeoutError("zygote did not become ready")


def rss_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


def machine() -> dict[str, object]:
    """What else was running matters on a 2-core box: record the load and the busiest other processes."""
    busy = subprocess.run(["ps", "-eo", "pid,pcpu,rss,comm", "--sort=-pcpu", "--no-headers"],
                          capture_output=True, text=True).stdout.splitlines()[:6]
    return {
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "busiest_processes_pid_pcpu_rsskib_comm": [" ".join(b.split()) for b in busy],
        "python": sys.version.split()[0],
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def cpu_busy_fraction(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over `seconds` (from /proc/stat), to see whether other work competes."""
    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle
    t0, i0 = read()
    time.sleep(seconds)
    t1, i1 = read()
    return round(1 - (i1 - i0) / max(1, t1 - t0), 3)


def summary(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {
        "n": len(s),
        "median": statistics.median(s),
        "mean": statistics.fmean(s),
        "min": s[0],
        "max": s[-1],
        "stdev": statistics.stdev(s) if len(s) > 1 else 0.0,
    }


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def write_results(name: str, data: dict[str, object], lines: list[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {**data, "summary": lines}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (RESULTS / f"{name}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"-> {RESULTS / (name + '.json')}, {RESULTS / (name + '.txt')}")
