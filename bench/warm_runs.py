#!/usr/bin/env python3
"""Issue 2, benchmark 1: a small sync heatmap through the API versus in-process and cold zyra.

    .venv/bin/python bench/warm_runs.py [--n 15] [--warmup 2] [--cold-n 5] [--api-cold-n 6]

The command everywhere: `visualize heatmap --input a.npy --output h.png --no-coastline --no-borders` on a
40x80 float32 array. Four ways, each a median of wall-clock seconds:

  api_warm      POST /cli/run mode=sync through the real API (embedded backend, local storage, ZYRA_WARM_WORKERS
                default true: each run forked from the zygote). The input is uploaded once via POST /upload and
                passed as file_id:<id>. Timed: the HTTP round trip of the POST, as a client sees it (includes
                fetching the input into the run directory, the run, archiving logs and outputs, the response).
  in_process    `zyra.cli.main(argv)` called in a loop in ONE already-warm Python process (after one warm-up
                call), chdir'd into a temp dir holding the input. The floor: no process, no I/O around it.
  cold          a fresh `.venv/bin/zyra visualize heatmap ...` process each time (subprocess, no shell).
  api_no_warm   as api_warm, with ZYRA_WARM_WORKERS=false (each run starts `python -m zyra.cli`).

Goals (issue 2): api_warm / in_process <= 1.5 and api_warm / cold < 0.5.
Results: bench/results/warm_runs.json and .txt. Loopback only; nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402

from _common import PYTHON, ROOT, api_server, cpu_busy_fraction, machine, summary, write_results  # noqa: E402

ARGV = ["visualize", "heatmap", "--input", "a.npy", "--output", "h.png", "--no-coastline", "--no-borders"]
ZYRA = str(Path(PYTHON).parent / "zyra")

IN_PROCESS = r"""
import json, os, sys, time
os.chdir(sys.argv[1])
n = int(sys.argv[2])
argv = json.loads(sys.argv[3])
from zyra import cli
def once():
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = exc.code
    assert not code, code
    assert os.path.getsize("h.png") > 0
    os.unlink("h.png")
t = time.perf_counter(); once(); first = time.perf_counter() - t
times = []
for _ in range(n):
    t = time.perf_counter(); once(); times.append(time.perf_counter() - t)
print(json.dumps({"first_call": first, "times": times}))
"""


def make_input(directory: Path) -> Path:
    path = directory / "a.npy"
    rng = np.random.default_rng(2)
    np.save(path, rng.standard_normal((40, 80)).astype("float32"))
    return path


def bench_in_process(work: Path, n: int) -> dict[str, object]:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    out = subprocess.run([PYTHON, "-c", IN_PROCESS, str(work), str(n), json.dumps(ARGV)],
                         capture_output=True, text=True, env=env, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {"first_call_s": data["first_call"], "times_s": data["times"], **summary(data["times"])}


def bench_cold(work: Path, n: int) -> dict[str, object]:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([ZYRA, *ARGV], cwd=work, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
        os.unlink(work / "h.png")
    return {"times_s": times, **summary(times)}


def bench_api(input_path: Path, n: int, warmup: int, env: dict[str, str]) -> dict[str, object]:
    with api_server(env) as api, api.client(timeout=300) as client:
        with input_path.open("rb") as fh:
            up = client.post("/upload", files={"file": ("a.npy", fh, "application/octet-stream")})
        up.raise_for_status()
        file_id = up.json()["file_id"]
        body = {
            "stage": "visualize", "command": "heatmap", "mode": "sync",
            "args": {"input": f"file_id:{file_id}", "output": "h.png", "no-coastline": True, "no-borders": True},
        }
        times, phases = [], []
        for i in range(warmup + n):
            t = time.perf_counter()
            r = client.post("/cli/run", json=body)
            elapsed = time.perf_counter() - t
            r.raise_for_status()
            res = r.json()
            if res.get("status") != "success" or not any(o["name"] == "h.png" for o in res.get("outputs", [])):
                raise RuntimeError(f"run failed: {json.dumps(res)[:2000]}")
            if i >= warmup:
                times.append(elapsed)
                job = client.get(f"/jobs/{res['job_id']}").json()
                phases.append({k: job.get(k) for k in ("created_at", "started_at", "finished_at", "duration_seconds")})
        return {"times_s": times, "job_times": phases, **summary(times)}


def _phase_medians(job_times: list[dict[str, object]]) -> dict[str, float]:
    """Server-side split from the job records: queued (created->started) and running (started->finished)."""
    from datetime import datetime
    import statistics

    def ts(v: object) -> float:
        return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()

    try:
        queued = [ts(j["started_at"]) - ts(j["created_at"]) for j in job_times]
        running = [ts(j["finished_at"]) - ts(j["started_at"]) for j in job_times]
    except (KeyError, TypeError, ValueError):
        return {}
    return {"queued_median_s": statistics.median(queued), "running_median_s": statistics.median(running)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=15, help="timed API and in-process runs (default 15)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed API runs first (default 2)")
    ap.add_argument("--cold-n", type=int, default=5, help="cold zyra processes (default 5)")
    ap.add_argument("--api-cold-n", type=int, default=6, help="API runs with ZYRA_WARM_WORKERS=false (default 6; 0 skips)")
    opts = ap.parse_args()
    for name in ("n", "warmup", "cold_n", "api_cold_n"):
        if not 0 <= getattr(opts, name) <= 100:
            ap.error(f"--{name.replace('_', '-')} must be within 0..100")

    started = time.time()
    before = {"machine": machine(), "cpu_busy_fraction_idle_1s": cpu_busy_fraction()}
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        work = Path(tmp)
        input_path = make_input(work)
        print("in-process ...", flush=True)
        in_proc = bench_in_process(work, opts.n)
        print("cold ...", flush=True)
        cold = bench_cold(work, opts.cold_n)
        print("API (warm workers) ...", flush=True)
        api_warm = bench_api(input_path, opts.n, opts.warmup, {})
        api_warm.update(_phase_medians(api_warm["job_times"]))
        api_no_warm = None
        if opts.api_cold_n:
            print("API (ZYRA_WARM_WORKERS=false) ...", flush=True)
            api_no_warm = bench_api(input_path, opts.api_cold_n, 1, {"ZYRA_WARM_WORKERS": "false"})
            api_no_warm.update(_phase_medians(api_no_warm["job_times"]))

    r_inproc = api_warm["median"] / in_proc["median"]
    r_cold = api_warm["median"] / cold["median"]
    data = {
        "benchmark": "warm_runs",
        "command": ["zyra", *ARGV],
        "input": "40x80 float32 .npy",
        "medians_s": {
            "api_warm": api_warm["median"], "in_process": in_proc["median"], "cold": cold["median"],
            "api_no_warm": api_no_warm["median"] if api_no_warm else None,
        },
        "ratios": {
            "api_warm_over_in_process": r_inproc, "goal_api_over_in_process": "<= 1.5", "met_in_process": r_inproc <= 1.5,
            "api_warm_over_cold": r_cold, "goal_api_over_cold": "< 0.5", "met_cold": r_cold < 0.5,
            "api_no_warm_over_cold": (api_no_warm["median"] / cold["median"]) if api_no_warm else None,
        },
        "api_warm": api_warm,
        "in_process": in_proc,
        "cold": cold,
        "api_no_warm": api_no_warm,
        "before": before,
        "after": {"machine": machine()},
        "wall_seconds": time.time() - started,
    }
    lines = [
        f"warm_runs: small sync heatmap (40x80), medians of wall-clock seconds on {os.cpu_count()} CPUs, load {before['machine']['loadavg'][0]:.2f}",
        f"  API sync, warm workers (n={api_warm['n']}): {api_warm['median']:.3f} s "
        f"(min {api_warm['min']:.3f}, max {api_warm['max']:.3f}; server-side queued {api_warm.get('queued_median_s', float('nan')):.3f} s, running {api_warm.get('running_median_s', float('nan')):.3f} s)",
        f"  in-process zyra.cli.main (n={in_proc['n']}): {in_proc['median']:.3f} s (first call {in_proc['first_call_s']:.3f} s)",
        f"  cold zyra process (n={cold['n']}): {cold['median']:.3f} s",
    ]
    if api_no_warm:
        lines.append(f"  API sync, ZYRA_WARM_WORKERS=false (n={api_no_warm['n']}): {api_no_warm['median']:.3f} s")
    lines += [
        f"  ratio API/in-process = {r_inproc:.2f} (goal <= 1.5: {'met' if r_inproc <= 1.5 else 'MISSED'})",
        f"  ratio API/cold       = {r_cold:.2f} (goal < 0.5: {'met' if r_cold < 0.5 else 'MISSED'})",
    ]
    write_results("warm_runs", data, lines)


if __name__ == "__main__":
    main()
