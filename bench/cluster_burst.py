"""Issue 4, benchmark 3: a burst of ZyraRuns created directly through the API server; the operator's memory.

    .venv/bin/python bench/cluster_burst.py [--n 200] [--threads 16] [--hold 30] [--no-build] [--deadline 420]

ZyraRuns (`zyra run missing.yaml`: passes the catalogue, exits fast in the pod) are created with the
kubernetes client from a pool of --threads threads. A watch of the namespace's Jobs records when each Job
appears (host ms). Reported: time from the first create to the last create answered, and to the moment
every Job exists; the operator process's VmRSS sampled every 200 ms from /proc (peak, baseline before the
burst), and VmHWM at the end. After every Job exists the sampling goes on for --hold s (the operator then
follows pods starting and ending); then the namespace (all runs) is deleted and waited for.
Goal: operator peak RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _stack  # noqa: E402
from _stack import GROUP, PLURAL, VERSION, log, stats  # noqa: E402

NAME = "cluster_burst"
GOAL_MB = 150.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--hold", type=float, default=30, help="seconds of sampling after every Job exists")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--deadline", type=float, default=420, help="seconds from the first create until we give up")
    opts = ap.parse_args()

    waited = _stack.wait_for_cluster_tests()
    from kubernetes import client

    out: dict[str, Any] = {}
    with _stack.bench_stack(with_api=False, build=not opts.no_build, cleanup_timeout=300) as bench:
        stack = bench.stack
        pid = stack.operator.proc.pid
        watcher = _stack.Watcher(stack.cluster, stack.namespace, kinds=("jobs", "zyraruns")).start()
        before = _stack.context_info(bench)
        time.sleep(5)  # the operator's start-up (kopf, catalogue, clients) is done
        sampler = _stack.RssSampler(pid, 0.2).start()
        time.sleep(3)
        names = [f"burst-{i:03d}" for i in range(opts.n)]
        created: dict[str, float] = {}
        errors: list[str] = []

        from kubernetes import config

        cfg = client.Configuration()
        config.load_kube_config(config_file=stack.cluster.kubeconfig, client_configuration=cfg)
        cfg.connection_pool_maxsize = opts.threads  # one HTTP connection per thread
        with client.ApiClient(cfg) as kapi:
            custom = client.CustomObjectsApi(kapi)

            def create(name: str) -> None:
                body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ZyraRun",
                        "metadata": {"name": name, "labels": {"zyra.io/run": name}},
                        "spec": {"stage": "run", "argv": ["missing.yaml"], "timeoutSeconds": 120}}
                try:
                    custom.create_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, body)
                    created[name] = time.time()
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{name}: {exc}"[:300])

            t0 = time.time()
            with ThreadPoolExecutor(opts.threads) as pool:
                list(pool.map(create, names))
            t_created = time.time()
            log(f"{len(created)} ZyraRuns created in {t_created - t0:.2f} s ({len(errors)} errors)")
            want = set(created)
            all_jobs = watcher.wait(lambda: want <= set(watcher.jobs), max(1.0, opts.deadline - (time.time() - t0)))
            t_jobs = max((watcher.jobs[n]["seen"] for n in want if n in watcher.jobs), default=None)
            log(f"every Job exists: {all_jobs} ({len([n for n in want if n in watcher.jobs])}/{len(want)}), "
                f"{(t_jobs - t0) if t_jobs else float('nan'):.2f} s after the first create")
            hold_until = min(time.time() + opts.hold, t0 + opts.deadline)
            while time.time() < hold_until:
                time.sleep(1)
            t_hold_end = time.time()
        final = sampler.stop()
        phases: dict[str, int] = {}
        for n in want:
            p = (watcher.runs.get(n) or {})
            last = p.get("final_phase") or ("Running" if "phase_Running" in p else "Pending" if "phase_Pending" in p else "none")
            phases[last] = phases.get(last, 0) + 1
        watcher.stop()
        samples = sampler.samples
        baseline = [kib for t, kib in samples if t < t0]
        during = [kib for t, kib in samples if t >= t0]
        job_delays = [watcher.jobs[n]["seen"] - created[n] for n in want if n in watcher.jobs]
        t_ready = [watcher.jobs[n]["seen"] - t0 for n in want if n in watcher.jobs]
        out = {
            "n": opts.n, "threads": opts.threads, "created": len(created), "errors": errors[:20],
            "create_seconds": round(t_created - t0, 3), "all_jobs_exist": all_jobs,
            "jobs_seen": len(t_ready), "all_jobs_seconds": round(t_jobs - t0, 3) if t_jobs else None,
            "job_seen_after_own_create": stats(job_delays), "job_seen_since_burst_start": stats(t_ready),
            "hold_seconds": round(t_hold_end - (t_jobs or t_hold_end), 1), "run_states_at_end_of_hold": phases,
            "rss_mib": {
                "baseline_median": round(sorted(baseline)[len(baseline) // 2] / 1024, 1) if baseline else None,
                "peak": round(max(during) / 1024, 1) if during else None,
                "VmHWM_at_end": round(final.get("VmHWM", 0) / 1024, 1), "VmRSS_at_end": round(final.get("VmRSS", 0) / 1024, 1),
                "threads_at_end": final.get("Threads"),
            },
            "rss_samples_kib": [(round(t - t0, 2), kib) for t, kib in samples],
            "operator_pid": pid, "context_before": before,
        }
        t_del = time.time()
    out["namespace_cleanup_seconds"] = round(time.time() - t_del, 1)
    out["context_after"] = _stack.context_info()
    peak_mb = max(out["rss_mib"]["peak"] or 0, out["rss_mib"]["VmHWM_at_end"]) * 1.048576  # MiB -> MB
    out["goal"] = {"peak_rss_mb_max": GOAL_MB}
    out["peak_rss_mb"] = round(peak_mb, 1)
    out["goal_met"] = peak_mb < GOAL_MB
    lines = [
        f"{out['created']} ZyraRuns created in {out['create_seconds']} s with {opts.threads} threads; every Job exists "
        f"after {out['all_jobs_seconds']} s ({out['jobs_seen']}/{out['created']} Jobs seen)",
        f"Job seen after its run's create: median {out['job_seen_after_own_create'].get('median')} s, p90 {out['job_seen_after_own_create'].get('p90')} s",
        f"operator RSS: baseline {out['rss_mib']['baseline_median']} MiB, peak {out['rss_mib']['peak']} MiB, "
        f"VmHWM {out['rss_mib']['VmHWM_at_end']} MiB -> {out['peak_rss_mb']} MB (goal < {GOAL_MB} MB: {'MET' if out['goal_met'] else 'MISSED'})",
        f"runs at the end of the {out['hold_seconds']} s hold: {phases}; namespace clean-up {out['namespace_cleanup_seconds']} s",
    ]
    out["summary"] = lines
    print("\n".join(lines))
    _stack.write_json(NAME, out)


if __name__ == "__main__":
    main()
