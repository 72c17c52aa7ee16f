"""Issue 4, benchmark 2: from the runner pod's termination to the ZyraRun's final status.

    .venv/bin/python bench/cluster_final_latency.py [--n 20] [--no-build] [--deadline 600]

Each run: a small heatmap ZyraRun (POST /cli/run mode async through the API), one at a time. Watches of the
namespace's pods and ZyraRuns record, in host wall-clock time with ms resolution:
- pod_terminated_seen: the first pod event whose runner container is in state `terminated`;
- final_seen: the first ZyraRun event whose status.phase is final (Succeeded/Failed/Canceled).
and from the objects: the container's `state.terminated.finishedAt` (SECOND resolution, truncated).
Latencies reported:
- finished_to_final = final_seen - finishedAt: the goal's figure (p50 < 1 s). finishedAt is truncated to the
  second, so this over-states the true latency by [0, 1) s (0.5 s on average);
- terminated_seen_to_final = final_seen - pod_terminated_seen: the operator's share (watch -> reconcile ->
  status patch -> watch), exact to the ms;
- finished_to_terminated_seen = pod_terminated_seen - finishedAt: the kubelet's share (its status sync).
On the local cluster the exact exit time (ns) also comes from containerd (`ctr events`, /tasks/exit, matched
by container id): exit_to_final and exit_to_terminated_seen are then free of the second truncation.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _stack  # noqa: E402
from _stack import k8s_time, log, stats  # noqa: E402
from cluster_e2e import heatmap, npy  # noqa: E402

NAME = "cluster_final_latency"
GOAL_P50 = 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--deadline", type=float, default=600)
    ap.add_argument("--per-run-timeout", type=float, default=120)
    opts = ap.parse_args()

    waited = _stack.wait_for_cluster_tests()
    rows: list[dict[str, Any]] = []
    with _stack.bench_stack(with_api=True, build=not opts.no_build) as bench:
        stack = bench.stack
        watcher = _stack.Watcher(stack.cluster, stack.namespace, kinds=("pods", "zyraruns")).start()
        exits = _stack.ContainerdExits().start()
        before = _stack.context_info(bench)
        with stack.api.client(timeout=60) as http:
            upload = stack.api.upload(http, "field.npy", npy())
            warm = http.post("/cli/run", json=heatmap(upload["file_id"]))  # untimed warm-up
            assert warm.status_code == 200 and warm.json().get("status") == "success", warm.text[:2000]
            deadline = time.monotonic() + opts.deadline
            for i in range(opts.n):
                if time.monotonic() > deadline:
                    log("deadline reached: stopping early")
                    break
                r = http.post("/cli/run", json={**heatmap(upload["file_id"]), "mode": "async"})
                assert r.status_code == 202, r.text[:2000]
                job_id = r.json()["job_id"]
                ok = watcher.wait(lambda: "final_seen" in watcher.runs.get(job_id, {}), opts.per_run_timeout)
                pod = watcher.pod_of(job_id) or {}
                run = dict(watcher.runs.get(job_id, {}))
                finished = k8s_time(pod.get("finishedAt"))
                row = {"i": i, "run": job_id, "ok": ok, "phase": run.get("final_phase"),
                       "finishedAt": pod.get("finishedAt"), "pod_terminated_seen": pod.get("terminated_seen"),
                       "final_seen": run.get("final_seen"), "completionTime": run.get("completionTime")}
                if ok and finished is not None and pod.get("terminated_seen"):
                    row["finished_to_final"] = round(run["final_seen"] - finished, 3)
                    row["terminated_seen_to_final"] = round(run["final_seen"] - pod["terminated_seen"], 3)
                    row["finished_to_terminated_seen"] = round(pod["terminated_seen"] - finished, 3)
                    row["terminated_seen_ms_within_second"] = round(pod["terminated_seen"] % 1, 3)
                    for _ in range(20):  # the ctr reader may be a moment behind
                        if pod.get("containerID") in exits.exits:
                            break
                        time.sleep(0.05)
                    exited = exits.exits.get(pod.get("containerID") or "")
                    if exited is not None:
                        row["exited_at"] = exited
                        row["exit_to_final"] = round(run["final_seen"] - exited, 3)
                        row["exit_to_terminated_seen"] = round(pod["terminated_seen"] - exited, 3)
                        row["finishedAt_truncation"] = round(exited - finished, 3)
                rows.append(row)
                log(f"{i:2d} {job_id} {row.get('phase')} finished->final {row.get('finished_to_final')} s, "
                    f"terminated seen->final {row.get('terminated_seen_to_final')} s")
                time.sleep(0.5)
        watcher.stop()
        exits.stop()

    good = [r for r in rows if "finished_to_final" in r]
    a = stats([r["finished_to_final"] for r in good])
    b = stats([r["terminated_seen_to_final"] for r in good])
    c = stats([r["finished_to_terminated_seen"] for r in good])
    e = stats([r["exit_to_final"] for r in good if "exit_to_final" in r])
    k = stats([r["exit_to_terminated_seen"] for r in good if "exit_to_terminated_seen" in r])
    lines = [
        f"container exit (containerd, ns) -> final seen: p50 {e.get('median')} s, p90 {e.get('p90')} s (n={e['n']}; "
        f"goal p50 < {GOAL_P50} s: {'MET' if e.get('median', 99) < GOAL_P50 else 'MISSED'})",
        f"container exit -> pod terminated seen (kubelet PLEG + status sync): p50 {k.get('median')} s, p90 {k.get('p90')} s",
        f"finishedAt (s resolution) -> final seen: p50 {a.get('median')} s, p90 {a.get('p90')} s (n={a['n']}; "
        f"goal p50 < {GOAL_P50} s: {'MET' if a.get('median', 99) < GOAL_P50 else 'MISSED'}; over-states by [0,1) s)",
        f"pod terminated seen -> final seen (operator): p50 {b.get('median')} s, p90 {b.get('p90')} s",
        f"finishedAt -> pod terminated seen (kubelet status sync, +[0,1) s truncation): p50 {c.get('median')} s, p90 {c.get('p90')} s",
    ]
    print("\n".join(lines))
    _stack.write_json(NAME, {
        "goal": {"p50_max_seconds": GOAL_P50}, "n": opts.n, "waited_for_tests_s": round(waited, 1),
        "exit_to_final": e, "exit_to_terminated_seen": k, "finished_to_final": a, "terminated_seen_to_final": b, "finished_to_terminated_seen": c,
        "goal_met": (e if e["n"] else a).get("median", 99) < GOAL_P50, "runs": rows,
        "context_before": before, "context_after": _stack.context_info(), "summary": lines,
    })


if __name__ == "__main__":
    main()
