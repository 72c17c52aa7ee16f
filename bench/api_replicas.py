"""Issue 6: requests per second and p99 latency of the API on the Kubernetes backend, one vs two replicas.

    .venv/bin/python bench/api_replicas.py [--seconds 10] [--concurrency 16] [--max-requests 4000]

Setups, each measured on its own: 1 replica; 2 replicas (two API processes sharing Redis, S3 and the
namespace, as two pods behind a Service); 1 replica with ZYRA_WORKERS=2. For each: `GET /jobs/{id}` of one
run, then async `POST /cli/run` (`zyra run missing.yaml`: a ZyraRun created per request), for --seconds
each with --concurrency clients on keep-alive connections, spread evenly over the replicas (client i talks
to replica i mod n, as a Service spreads connections). Bounded: at most --max-requests per phase.

The operator is stopped once the stack is up: the ZyraRuns stay Pending, so what is measured is the API
(its rate limiter in Redis, the API server's create/get) and not a node starting hundreds of pods. The
load generator (one asyncio process with httpx) runs on the same 2 cores; the CPU seconds of the API
processes, the load generator, kube-apiserver, etcd and Redis are reported next to the rates to show where
the cores went.

Traffic: loopback (API), the bridge address 10.244.0.1 (API server, Redis, S3). The namespace and its
ZyraRuns are deleted at the end (bench_stack).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _stack  # noqa: E402
from _common import percentile  # noqa: E402
from _stack import log  # noqa: E402

from tests.fixtures.servers import ApiServer  # noqa: E402

NAME = "api_replicas"
SETUPS = (("1 replica", 1, 1), ("2 replicas", 2, 1), ("1 replica, 2 workers", 1, 2))
POST_BODY = {"stage": "run", "args": {"config": "missing.yaml"}, "mode": "async"}


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process and of its children (uvicorn's workers are its children), in seconds."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


OTHERS = ("kube-apiserver", "etcd", "redis-server")


def _cpu_by_name(names: tuple[str, ...]) -> dict[str, float]:
    """CPU seconds so far of the processes with these command names (the API server and its store, Redis)."""
    found = dict.fromkeys(names, 0.0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        if comm in found:
            fields = text.rsplit(")", 1)[1].split()
            found[comm] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


async def _load(urls: list[str], method: str, headers: dict[str, str], expected: int, seconds: float,
                concurrency: int, max_requests: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    budget = [max_requests]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
        deadline = time.monotonic() + seconds

        async def client_loop(i: int) -> None:
            url = urls[i % len(urls)]
            while time.monotonic() < deadline and budget[0] > 0:
                budget[0] -= 1
                t0 = time.perf_counter()
                if method == "GET":
                    response = await client.get(url)
                else:
                    response = await client.post(url, json=POST_BODY)
                latencies.append(time.perf_counter() - t0)
                statuses[response.status_code] += 1

        started = time.perf_counter()
        await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    ok = statuses.get(expected, 0)
    return {
        "requests": len(latencies), "ok": ok, "statuses": dict(statuses), "seconds": round(elapsed, 2),
        "rps": round(ok / elapsed, 1),
        "latency_ms": {"p50": round(percentile(latencies, 50) * 1000, 1), "p90": round(percentile(latencies, 90) * 1000, 1),
                       "p99": round(percentile(latencies, 99) * 1000, 1), "max": round(max(latencies) * 1000, 1)},
    }


def _phase(servers: list[ApiServer], method: str, path: str, expected: int, opts: argparse.Namespace) -> dict[str, Any]:
    pids = [s.proc.pid for s in servers if s.proc is not None]
    cpu0, self0, others0 = sum(_cpu_seconds(p) for p in pids), resource.getrusage(resource.RUSAGE_SELF), _cpu_by_name(OTHERS)
    result = asyncio.run(_load([s.base_url + path for s in servers], method, servers[0].headers, expected,
                               opts.seconds, opts.concurrency, opts.max_requests))
    cpu1, self1, others1 = sum(_cpu_seconds(p) for p in pids), resource.getrusage(resource.RUSAGE_SELF), _cpu_by_name(OTHERS)
    result["others_cpu_seconds"] = {name: round(others1[name] - others0[name], 2) for name in OTHERS}
    api_cpu = cpu1 - cpu0
    result["api_cpu_seconds"] = round(api_cpu, 2)
    result["api_cpu_ms_per_request"] = round(1000 * api_cpu / max(1, result["requests"]), 2)
    result["loadgen_cpu_seconds"] = round((self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime), 2)
    result["load_after"] = os.getloadavg()[0]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-requests", type=int, default=4000)
    opts = ap.parse_args()

    waited = _stack.wait_for_cluster_tests()
    out: dict[str, Any] = {"opts": vars(opts), "waited_for_tests_seconds": round(waited, 1), "setups": {}}
    with _stack.bench_stack(with_api=False, build=False, cleanup_timeout=300) as bench:
        bench.stack.operator.stop()
        out["context"] = _stack.context_info(bench)
        for label, replicas, workers in SETUPS:
            log(f"{label}: starting")
            servers = [bench.stack.api.replica(bench.root / f"api-{label.replace(' ', '').replace(',', '-')}-{i}",
                                               ZYRA_WORKERS=str(workers)) for i in range(replicas)]
            try:
                for server in servers:
                    server.start()
                with servers[0].client() as http:
                    job_id = http.post("/cli/run", json=POST_BODY).json()["job_id"]
                asyncio.run(_load([s.base_url + f"/jobs/{job_id}" for s in servers], "GET", servers[0].headers, 200, 1.5,
                                  opts.concurrency, 500))  # warm-up: connections, imports, the limiter's script
                get = _phase(servers, "GET", f"/jobs/{job_id}", 200, opts)
                log(f"{label}: GET /jobs/{{id}} {get['rps']} req/s, p99 {get['latency_ms']['p99']} ms")
                post = _phase(servers, "POST", "/cli/run", 202, opts)
                log(f"{label}: POST /cli/run {post['rps']} req/s, p99 {post['latency_ms']['p99']} ms")
                out["setups"][label] = {"replicas": replicas, "workers": workers, "get_job": get, "post_async": post}
            finally:
                for server in servers:
                    server.stop()
    _stack.write_json(NAME, out)
    print()
    print(f"{'setup':<22} {'GET /jobs/{id}':>28} {'async POST /cli/run':>28}")
    for label, row in out["setups"].items():
        cells = [f"{row[k]['rps']:>7} req/s p99 {row[k]['latency_ms']['p99']:>6} ms" for k in ("get_job", "post_async")]
        print(f"{label:<22} {cells[0]:>28} {cells[1]:>28}")


if __name__ == "__main__":
    main()
