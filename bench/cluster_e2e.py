"""Issue 4, benchmark 1: the same runner image and command as a bare Job vs as a ZyraRun through the API.

    .venv/bin/python bench/cluster_e2e.py [--n 10] [--no-build] [--deadline 900]

Command: `zyra visualize heatmap --input <uploaded .npy> --output heatmap.png --no-coastline --no-borders`,
the input uploaded once to the API (SeaweedFS S3) and fetched by the runner in the pod.
- bare Job: built by the operator's own code (zyrak8s_operator.runs._run_spec + jobs.job_manifest, the same
  Settings as the running operator) from the spec of a ZyraRun the API made, so it IS the same pod spec
  (same image, ZYRA_RUN_SPEC env, Secret `zyra-runner`); timed from just before the POST of the Job to the
  moment a watch sees its Complete condition.
- ZyraRun: POST /cli/run mode sync through the API (ZYRA_BACKEND=kubernetes), timed request -> response.
N of each, interleaved (ABBA order), after one untimed warm-up of each. Goal: median ZyraRun <= 1.15x bare Job.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _stack  # noqa: E402
from _stack import k8s_time, log, stats  # noqa: E402

NAME = "cluster_e2e"
GOAL_RATIO = 1.15


def npy() -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.linspace(0, 1, 40 * 80, dtype="float32").reshape(40, 80))
    return buf.getvalue()


def heatmap(file_id: str) -> dict[str, Any]:
    return {
        "stage": "visualize", "command": "heatmap", "mode": "sync",
        "args": {"input": f"file_id:{file_id}", "output": "heatmap.png", "no-coastline": True, "no-borders": True},
    }


class BareJobs:
    """Jobs built exactly as the operator builds them (its functions, its Settings)."""

    def __init__(self, bench: _stack.Bench, template_spec: dict[str, Any]) -> None:
        os.environ.update(bench.operator_env)  # the operator's Settings come from its environment
        from zyrak8s_core import catalogue
        from zyrak8s_core import storage as storages
        from zyrak8s_core.settings import Settings

        from zyrak8s_operator import jobs, runs

        self.settings = Settings()
        self.memo = SimpleNamespace(storage=storages.from_settings(self.settings), catalogue=catalogue.load())
        self.jobs, self.runs = jobs, runs
        self.spec = dict(template_spec)
        self.bench = bench

    def manifest(self, name: str) -> dict[str, Any]:
        run_spec = self.runs._run_spec(name, dict(self.spec), self.memo)
        return self.jobs.job_manifest(name, dict(self.spec), run_spec, self.settings)

    def run(self, batch: Any, watcher: _stack.Watcher, name: str, timeout: float) -> dict[str, Any]:
        body = self.manifest(name)
        t0 = time.time()
        batch.create_namespaced_job(self.bench.namespace, body)
        t_posted = time.time()
        done = watcher.wait(lambda: any(k in watcher.jobs.get(name, {}) for k in ("cond_Complete", "cond_Failed")), timeout)
        job = dict(watcher.jobs.get(name, {}))
        end = job.get("cond_Complete") or job.get("cond_Failed")
        rec = {"kind": "bare", "name": name, "t0": t0, "post_s": t_posted - t0, "ok": bool(done and job.get("cond_Complete")),
               "seconds": (end - t0) if end else None}
        rec.update(breakdown(watcher, name, t0))
        return rec


def breakdown(watcher: _stack.Watcher, run: str, t0: float) -> dict[str, Any]:
    """Where the time went, from the watches (host ms) and the pod's own (second-resolution) times."""
    out: dict[str, Any] = {}
    job = watcher.jobs.get(run) or {}
    pod = watcher.pod_of(run) or {}
    zr = watcher.runs.get(run) or {}
    for key, value in (("run_seen", zr.get("seen")), ("job_seen", job.get("seen")), ("pod_seen", pod.get("seen")),
                       ("pod_running_seen", pod.get("running_seen")), ("pod_terminated_seen", pod.get("terminated_seen")),
                       ("job_complete_seen", job.get("cond_Complete")), ("run_final_seen", zr.get("final_seen"))):
        if value is not None:
            out[key] = round(value - t0, 3)
    started, finished = k8s_time(pod.get("startedAt")), k8s_time(pod.get("finishedAt"))
    if started is not None and finished is not None:
        out["container_s_resolution"] = finished - started
    if zr:
        out["final_phase"] = zr.get("final_phase")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--no-build", action="store_true", help="use the runner image already in the cluster")
    ap.add_argument("--deadline", type=float, default=900, help="seconds for the measuring loop, all included")
    ap.add_argument("--per-run-timeout", type=float, default=180)
    opts = ap.parse_args()

    waited = _stack.wait_for_cluster_tests()
    from kubernetes import client

    results: list[dict[str, Any]] = []
    with _stack.bench_stack(with_api=True, build=not opts.no_build) as bench:
        stack = bench.stack
        watcher = _stack.Watcher(stack.cluster, stack.namespace).start()
        before = _stack.context_info(bench)
        with stack.api.client(timeout=opts.per_run_timeout) as http, stack.cluster.api_client() as kapi:
            batch = client.BatchV1Api(kapi)
            upload = stack.api.upload(http, "field.npy", npy())
            log(f"uploaded field.npy as {upload['file_id']}; warm-up ZyraRun")
            warm = http.post("/cli/run", json=heatmap(upload["file_id"]))
            assert warm.status_code == 200 and warm.json().get("status") == "success", warm.text[:2000]
            template = stack.zyrarun(warm.json()["job_id"])["spec"]
            bare = BareJobs(bench, template)
            log("warm-up bare Job")
            first = bare.run(batch, watcher, f"bare-warm-{uuid.uuid4().hex[:6]}", opts.per_run_timeout)
            assert first["ok"], first

            def zyrarun(i: int) -> dict[str, Any]:
                t0 = time.time()
                r = http.post("/cli/run", json=heatmap(upload["file_id"]))
                t1 = time.time()
                body = r.json() if r.status_code == 200 else {}
                rec = {"kind": "zyrarun", "name": body.get("job_id"), "t0": t0, "seconds": t1 - t0,
                       "ok": r.status_code == 200 and body.get("status") == "success", "http": r.status_code}
                if body.get("job_id"):
                    watcher.wait(lambda: "final_seen" in watcher.runs.get(body["job_id"], {}), 10)
                    rec.update(breakdown(watcher, body["job_id"], t0))
                return rec

            deadline = time.monotonic() + opts.deadline
            for i in range(opts.n):
                if time.monotonic() > deadline:
                    log("deadline reached: stopping early")
                    break
                order = ("bare", "zyrarun") if i % 2 == 0 else ("zyrarun", "bare")
                for kind in order:
                    rec = bare.run(batch, watcher, f"bare-{i:02d}-{uuid.uuid4().hex[:6]}", opts.per_run_timeout) \
                        if kind == "bare" else zyrarun(i)
                    rec["i"] = i
                    results.append(rec)
                    log(f"{i:2d} {kind:8s} {rec['seconds'] if rec['seconds'] is None else round(rec['seconds'], 3)} s ok={rec['ok']}")
                    time.sleep(1.0)  # let the previous pod's teardown settle
        watcher.stop()
        operator_log_tail = (bench.root / "operator.log").read_text(errors="replace")[-3000:]

    bare_s = [r["seconds"] for r in results if r["kind"] == "bare" and r["ok"]]
    zr_s = [r["seconds"] for r in results if r["kind"] == "zyrarun" and r["ok"]]
    sb, sz = stats(bare_s), stats(zr_s)
    ratio_med = sz["median"] / sb["median"] if bare_s and zr_s else None
    ratio_p90 = sz["p90"] / sb["p90"] if bare_s and zr_s else None

    def phase_stats(kind: str, key: str) -> dict[str, float]:
        return stats([r[key] for r in results if r["kind"] == kind and r["ok"] and key in r])

    split = {kind: {k: phase_stats(kind, k) for k in ("job_seen", "pod_seen", "pod_running_seen", "pod_terminated_seen",
                                                       "job_complete_seen", "run_final_seen", "container_s_resolution")}
             for kind in ("bare", "zyrarun")}
    lines = [
        f"bare Job (POST -> Complete seen): median {sb.get('median')} s, p90 {sb.get('p90')} s (n={sb['n']})",
        f"ZyraRun via API sync (request -> response): median {sz.get('median')} s, p90 {sz.get('p90')} s (n={sz['n']})",
        f"ratio ZyraRun/bare: median {ratio_med and round(ratio_med, 3)}, p90 {ratio_p90 and round(ratio_p90, 3)} "
        f"(goal <= {GOAL_RATIO}: {'MET' if ratio_med and ratio_med <= GOAL_RATIO else 'MISSED'})",
    ]
    for kind in ("bare", "zyrarun"):
        parts = ", ".join(f"{k} {v['median']}" for k, v in split[kind].items() if v.get("n"))
        lines.append(f"  {kind} medians since t0: {parts}")
    print("\n".join(lines))
    _stack.write_json(NAME, {
        "goal": {"ratio_median_max": GOAL_RATIO}, "n": opts.n, "waited_for_tests_s": round(waited, 1),
        "bare": sb, "zyrarun": sz, "ratio_median": ratio_med, "ratio_p90": ratio_p90,
        "goal_met": bool(ratio_med and ratio_med <= GOAL_RATIO), "split_seconds_since_t0": split,
        "runs": results, "context_before": before, "context_after": _stack.context_info(),
        "operator_log_tail": operator_log_tail, "summary": lines,
    })


if __name__ == "__main__":
    main()
