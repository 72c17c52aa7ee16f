#!/usr/bin/env python3
"""Issue 2, benchmark 2: WebSocket relay latency, child's write -> client's frame, 50 clients, through Redis.

    .venv/bin/python bench/ws_latency.py [--clients 50] [--rate 20] [--seconds 10] [--phase child|relay|both]

Set-up: a redis-server on a free loopback port, the real API (`python -m zyrak8s_api`, embedded backend,
warm workers) with ZYRA_REDIS_URL pointing at it, and N real WebSocket clients (`websockets`) all following
ONE run on `/ws/jobs/<id>`. Two phases, each on its own run with its own fresh clients:

phase "child" (end to end, the real path):
  the run is a real zyra command that writes unique lines at a steady rate, offline:
      zyra run pipe.yaml --trace
  where pipe.yaml has K `acquire http` stages against a loopback HTTP server (in this process) that answers
  GET /<i> no earlier than t0 + i/RATE; with --trace each stage logs "+ http get '.../<i>'" on stderr as it
  starts. The instant of each of the child's write(2) calls is taken with `strace -f -ttt -e trace=write`
  attached to the API's zygote before the run is forked (so the child is traced from its first syscall).
  Lines are matched by their index i, so a lost line is counted as lost, never mismatched.
  Latency = client receive time - child's write time: the child's pipe -> the runner's pump in the API ->
  Publisher -> Redis (Lua XADD) -> the WS handler's XREAD -> the WebSocket frame -> the client's recv().
  Caveat: ptrace stops the child at every syscall (seccomp-bpf filtering is not available when attaching
  with -p): the child runs slower, and the timestamp is taken at the write's entry, so the ptrace cost of
  that write is inside the latency, not hidden.

phase "relay" (the relay layer alone, as the brief's fallback describes):
  a long real zyra run (the same command at 1 line/s) gives the WS a live run; a separate process publishes
  timestamped lines through the same code the runner uses (zyrak8s_core.runner.Publisher -> RedisRelay) into
  that run's relay stream at RATE lines/s; the handler forwards them as stdout frames.
  Latency = client receive time - the instant Publisher.emit() was called.

Only lines written after every client had connected are counted (earlier ones arrive by replay, which is
not live latency). Goal (issue 2): p99 < 250 ms. Results: bench/results/ws_latency.json and .txt.
Clocks: all timestamps are CLOCK_REALTIME on one machine. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import API_KEY, PYTHON, ROOT, _children, api_server, machine, percentile, servers, write_results  # noqa: E402

WORKFLOW = 'on:\n  schedule:\n    - cron: "0 0 1 1 *"\njobs:\n  never:\n    steps:\n      - "visualize heatmap --help"\n'

PUBLISHER = r"""
import asyncio, sys, time
sys.path.insert(0, sys.argv[5])
from zyrak8s_core.relay import RedisRelay
from zyrak8s_core.runner import Publisher

async def main(url, run_id, rate, count):
    relay = RedisRelay(url)
    await relay.ping()
    publisher = Publisher(relay, run_id)
    start = time.monotonic() + 0.2
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        publisher.emit("stdout", f"BENCH {i} {time.time():.6f}\n")
    ok = await publisher.close()
    await relay.close()
    print("published", count, "dropped", publisher.dropped, "delivered", ok, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
"""


class Client:
    def __init__(self) -> None:
        self.frames: list[tuple[float, dict]] = []  # (receive time, frame)
        self.connected_at: float | None = None
        self.final = False
        self.error: str | None = None


async def follow(url: str, client: Client, ready: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    try:
        async with connect(url, max_size=None, ping_interval=None, open_timeout=30) as ws:
            client.connected_at = time.time()
            ready.set()
            async for message in ws:
                now = time.time()
                frame = json.loads(message)
                client.frames.append((now, frame))
                if "exit_code" in frame:
                    client.final = True
                    break
    except Exception as exc:  # noqa: BLE001 - reported, not fatal to the other clients
        client.error = repr(exc)
        ready.set()


async def run_clients(ws_url: str, n: int) -> tuple[list[Client], list[asyncio.Task], float]:
    clients = [Client() for _ in range(n)]
    events = [asyncio.Event() for _ in range(n)]
    tasks = [asyncio.create_task(follow(ws_url, c, e)) for c, e in zip(clients, events)]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 60)
    return clients, tasks, time.time()


def zygote_pid(api_pid: int) -> int:
    for child in _children(api_pid):
        with contextlib.suppress(OSError):
            if b"zyrak8s_core.zygote" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
    raise RuntimeError("no zygote under the API process")


def stats(lat_ms: list[float]) -> dict[str, float]:
    if not lat_ms:
        return {"n": 0}
    return {
        "n": len(lat_ms),
        "p50_ms": percentile(lat_ms, 50),
        "p90_ms": percentile(lat_ms, 90),
        "p99_ms": percentile(lat_ms, 99),
        "max_ms": max(lat_ms),
        "min_ms": min(lat_ms),
        "mean_ms": sum(lat_ms) / len(lat_ms),
    }


class PacedServer:
    """Loopback HTTP server answering GET /<i> no earlier than t0 + i/rate: it paces the child's output."""

    def __init__(self, rate: float) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        paced = self
        self.rate = rate
        self.t0: float | None = None
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                i = int(self.path.strip("/") or 0)
                with paced.lock:
                    if paced.t0 is None:
                        paced.t0 = time.monotonic()
                time.sleep(max(0.0, paced.t0 + i / paced.rate - time.monotonic()))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"x\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_TRACE = re.compile(r"\+ http get '[^']*/(\d+)'")
_STRACE_LINE = re.compile(r'^(\d+)\s+(\d+\.\d+) write\((\d+), "(.*)", (\d+)\) = (\d+)$')


def strace_trace_writes(path: Path, zygote: int) -> dict[int, float]:
    """{stage index: time of the child's write(2) of its '+ http get .../<i>' line}."""
    found: dict[int, float] = {}
    for line in path.read_text(errors="replace").splitlines():
        m = _STRACE_LINE.match(line)
        if not m or int(m.group(1)) == zygote or m.group(3) != "2":
            continue
        for hit in _TRACE.finditer(m.group(4)):
            found.setdefault(int(hit.group(1)), float(m.group(2)))
    return found


async def phase_child(api, http, n_clients: int, rate: float, seconds: float, tmp: Path) -> dict:
    count = int(rate * (seconds + 3))  # + ~3 s for the clients to connect first
    paced = PacedServer(rate)
    stages = "".join(
        f"  - stage: acquire\n    command: http\n    args:\n      url: http://127.0.0.1:{paced.port}/{i}\n      output: p{i}.txt\n"
        for i in range(count)
    )
    pipeline = ("stages:\n" + stages).encode()
    file_id = (await http.post("/upload", files={"file": ("pipe.yaml", pipeline, "text/yaml")})).json()["file_id"]
    zyg = zygote_pid(api.pid)
    trace = tmp / "strace.txt"
    strace = subprocess.Popen(
        ["strace", "-f", "-qq", "-ttt", "-e", "trace=write", "-e", "signal=none", "-s", "300",
         "-o", str(trace), "-p", str(zyg)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        await asyncio.sleep(1.0)  # strace attached
        if strace.poll() is not None:
            raise RuntimeError(f"strace failed: {strace.stderr.read().decode()}")
        body = {"stage": "run", "mode": "async", "argv": [f"file_id:{file_id}", "--trace"]}
        r = await http.post("/cli/run", json=body)
        r.raise_for_status()
        job_id = r.json()["job_id"]
        ws_url = api.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}?stream=stderr&api_key={API_KEY}"
        clients, tasks, all_connected = await run_clients(ws_url, n_clients)
        await asyncio.wait_for(asyncio.gather(*tasks), seconds + 120)
        job = (await http.get(f"/jobs/{job_id}")).json()
    finally:
        paced.close()
        strace.send_signal(signal.SIGINT)  # detach
        with contextlib.suppress(subprocess.TimeoutExpired):
            strace.wait(10)
        if strace.poll() is None:
            strace.kill()
            strace.wait()
    writes = strace_trace_writes(trace, zyg)
    archived = set(int(i) for i in _TRACE.findall(job.get("stderr") or ""))
    cutoff = all_connected + 0.1
    lat, per_client_counts, errors, lines_per_frame = [], [], [], []
    by_second: dict[int, list[float]] = {}
    first = min(writes.values(), default=0.0)
    lost_per_client = []
    for c in clients:
        if c.error:
            errors.append(c.error)
        seen: set[int] = set()
        for when, frame in c.frames:
            chunk = frame.get("stderr")
            if chunk is None or "seq" not in frame:
                continue
            hits = [int(i) for i in _TRACE.findall(chunk)]
            lines_per_frame.append(len(hits))
            for i in hits:
                seen.add(i)
                w = writes.get(i)
                if w is not None and w >= cutoff:
                    ms = (when - w) * 1000
                    lat.append(ms)
                    by_second.setdefault(int(w - first), []).append(ms)
        per_client_counts.append(len(seen))
        lost_per_client.append(len(set(writes) - seen))
    ordered = sorted(writes.values())
    gaps = [b - a for a, b in zip(ordered, ordered[1:])]
    return {
        "what": "child's write(2) of a stderr line (strace -ttt, syscall entry) -> client's WebSocket frame recv()",
        "command": ["zyra", "run", "pipe.yaml", "--trace"],
        "child_output": f"{count} `acquire http` stages against a loopback server paced at {rate:g}/s; each logs a unique '+ http get .../<i>' line on stderr",
        "job_id": job_id,
        "job_status": job.get("status"),
        "job_exit_code": job.get("exit_code"),
        "clients": n_clients,
        "client_errors": errors,
        "clients_with_final_frame": sum(c.final for c in clients),
        "child_lines_written": len(writes),
        "lines_in_archived_stderr": len(archived),
        "child_line_rate_per_s": (len(ordered) - 1) / (ordered[-1] - ordered[0]) if len(ordered) > 1 else None,
        "child_median_gap_ms": sorted(gaps)[len(gaps) // 2] * 1000 if gaps else None,
        "lines_received_per_client_min_max": [min(per_client_counts), max(per_client_counts)],
        "lines_lost_per_client_min_max": [min(lost_per_client), max(lost_per_client)],
        "lines_counted_after_all_connected": sum(1 for w in writes.values() if w >= cutoff),
        "lines_per_frame_mean": sum(lines_per_frame) / len(lines_per_frame) if lines_per_frame else None,
        "lines_per_frame_max": max(lines_per_frame, default=0),
        "p50_ms_by_second_of_run": {sec: round(percentile(v, 50), 1) for sec, v in sorted(by_second.items())},
        "samples": len(lat),
        "latency": stats(lat),
    }


async def phase_relay(api, http, redis_url: str, n_clients: int, rate: float, seconds: float, tmp: Path) -> dict:
    wf = tmp / "wf2.yml"
    wf.write_text(WORKFLOW)
    file_id = (await http.post("/upload", files={"file": ("wf2.yml", wf.read_bytes(), "text/yaml")})).json()["file_id"]
    hold = int(seconds + 8)
    body = {"stage": "run", "mode": "async",
            "argv": [f"file_id:{file_id}", "--watch", "--watch-interval", "1", "--watch-count", str(hold), "--dry-run"]}
    r = await http.post("/cli/run", json=body)
    r.raise_for_status()
    job_id = r.json()["job_id"]
    ws_url = api.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}?stream=stdout&api_key={API_KEY}"
    clients, tasks, all_connected = await run_clients(ws_url, n_clients)
    count = int(rate * seconds)
    pub = await asyncio.create_subprocess_exec(
        PYTHON, "-c", PUBLISHER, redis_url, job_id, str(rate), str(count), str(ROOT / "service"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await pub.communicate()
    if pub.returncode != 0:
        raise RuntimeError(f"publisher failed: {err.decode()[-2000:]}")
    await asyncio.wait_for(asyncio.gather(*tasks), hold + 60)
    job = (await http.get(f"/jobs/{job_id}")).json()
    lat, per_client_counts, errors, lines_per_frame = [], [], [], []
    by_second: dict[int, list[float]] = {}
    first_sent: float | None = None
    for c in clients:
        if c.error:
            errors.append(c.error)
        k = 0
        for when, frame in c.frames:
            in_frame = 0
            for line in (frame.get("stdout") or "").splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[0] == "BENCH":
                    in_frame += 1
                    sent = float(parts[2])
                    first_sent = sent if first_sent is None else min(first_sent, sent)
                    if sent >= all_connected:
                        ms = (when - sent) * 1000
                        lat.append(ms)
                        by_second.setdefault(int(sent), []).append(ms)
                    k += 1
            if in_frame:
                lines_per_frame.append(in_frame)
        per_client_counts.append(k)
    base = min(by_second, default=0)
    return {
        "what": "Publisher.emit() in a separate process (the runner's code path, zyrak8s_core.runner.Publisher -> RedisRelay) -> client's WebSocket frame recv()",
        "publisher_output": out.decode().strip(),
        "job_id": job_id,
        "job_status": job.get("status"),
        "clients": n_clients,
        "client_errors": errors,
        "clients_with_final_frame": sum(c.final for c in clients),
        "lines_published": count,
        "rate_per_s": rate,
        "lines_received_per_client_min_max": [min(per_client_counts), max(per_client_counts)],
        "lines_lost_per_client_min_max": [count - max(per_client_counts), count - min(per_client_counts)],
        "lines_per_frame_mean": sum(lines_per_frame) / len(lines_per_frame) if lines_per_frame else None,
        "lines_per_frame_max": max(lines_per_frame, default=0),
        "p50_ms_by_second_of_run": {sec - base: round(percentile(v, 50), 1) for sec, v in sorted(by_second.items())},
        "samples": len(lat),
        "latency": stats(lat),
    }


async def amain(opts: argparse.Namespace) -> None:
    import httpx

    redis_cm, _s3_cm, source = servers()
    started = time.time()
    before = machine()
    results: dict[str, object] = {"benchmark": "ws_latency", "servers_from": source, "before": before}
    with redis_cm() as redis, tempfile.TemporaryDirectory(prefix="bench-ws-") as tmp:
        env = {"ZYRA_REDIS_URL": redis.url, "ZYRA_MAX_CONCURRENT_RUNS": "2"}
        with api_server(env) as api:
            async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": API_KEY}, timeout=60, trust_env=False) as http:
                if opts.phase in ("child", "both"):
                    print("phase child ...", flush=True)
                    results["child"] = await phase_child(api, http, opts.clients, opts.rate, opts.seconds, Path(tmp))
                if opts.phase in ("relay", "both"):
                    print("phase relay ...", flush=True)
                    results["relay"] = await phase_relay(api, http, redis.url, opts.clients, opts.rate, opts.seconds, Path(tmp))
    results["after"] = machine()
    results["wall_seconds"] = time.time() - started
    lines = [f"ws_latency: {opts.clients} WebSocket clients on one run, Redis relay, {os.cpu_count()} CPUs, load {before['loadavg'][0]:.2f}"]
    for phase in ("child", "relay"):
        if phase in results:
            p = results[phase]
            s = p["latency"]
            ok = s.get("p99_ms", 1e9) < 250
            lines.append(
                f"  {phase}: {p['what']}"
            )
            lines.append(
                f"    samples {p['samples']} ({p['clients']} clients x lines after all connected): p50 {s.get('p50_ms', float('nan')):.1f} ms, "
                f"p90 {s.get('p90_ms', float('nan')):.1f} ms, p99 {s.get('p99_ms', float('nan')):.1f} ms, max {s.get('max_ms', float('nan')):.1f} ms "
                f"(goal p99 < 250 ms: {'met' if ok else 'MISSED'}); lines lost per client {p['lines_lost_per_client_min_max']}; "
                f"client errors: {len(p['client_errors'])}"
            )
    write_results("ws_latency", results, lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rate", type=float, default=20.0, help="lines per second (default 20)")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of measured lines (default 10)")
    ap.add_argument("--phase", choices=("child", "relay", "both"), default="both")
    opts = ap.parse_args()
    if not (1 <= opts.clients <= 200 and 0 < opts.rate <= 200 and 0 < opts.seconds <= 60):
        ap.error("bounds: 1..200 clients, rate 0..200 lines/s, 0..60 s")
    asyncio.run(amain(opts))


if __name__ == "__main__":
    main()
