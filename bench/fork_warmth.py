#!/usr/bin/env python3
"""Investigation for warm_runs: how long does the heatmap take in a child forked from the zygote, and
how much would it gain if the zygote ran the warm-up commands in itself (not only in throw-away children)?

    .venv/bin/python bench/fork_warmth.py [--n 15]

Uses the zygote's own functions (zyrak8s_core.zygote._warm_up, _run_zyra) read-only, in one process:
  A  parent = what the zygote does today: import zyra.cli, then _warm_up() (import the modules the warm-up
     children loaded); each timed run = fork -> child runs the heatmap -> waitpid.
  B  parent = A plus ONE heatmap run in the parent itself (then plt.close('all')), so lazy caches
     (matplotlib fonts/text layout, colormaps, ...) exist before forking; timed the same way.
  C  in-process: cli.main in the parent, after the warm-up call (the warm_runs floor).
Results: bench/results/fork_warmth.json and .txt.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, summary, write_results  # noqa: E402

sys.path.insert(0, str(ROOT / "service"))
ARGV = ["visualize", "heatmap", "--input", "a.npy", "--output", "h.png", "--no-coastline", "--no-borders"]


def forked_runs(n: int) -> list[float]:
    from zyrak8s_core import zygote

    times = []
    for _ in range(n):
        t = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os._exit(zygote._run_zyra(list(ARGV)))
        _, status = os.waitpid(pid, 0)
        times.append(time.perf_counter() - t)
        assert os.waitstatus_to_exitcode(status) == 0
        os.unlink("h.png")
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=15)
    opts = ap.parse_args()
    if not 1 <= opts.n <= 100:
        ap.error("--n must be within 1..100")
    os.environ.setdefault("MPLBACKEND", "Agg")
    import numpy as np

    before = machine()
    with tempfile.TemporaryDirectory(prefix="bench-fork-") as tmp:
        os.chdir(tmp)
        np.save("a.npy", np.random.default_rng(2).standard_normal((40, 80)).astype("float32"))
        from zyrak8s_core import zygote
        import zyra.cli  # noqa: F401

        t = time.perf_counter()
        zygote._warm_up()
        warm_up_s = time.perf_counter() - t
        a = forked_runs(opts.n)
        t = time.perf_counter()
        assert zygote._run_zyra(list(ARGV)) == 0
        first_in_parent_s = time.perf_counter() - t
        import matplotlib.pyplot as plt

        plt.close("all")
        os.unlink("h.png")
        b = forked_runs(opts.n)
        c = []
        for _ in range(opts.n):
            t = time.perf_counter()
            assert zygote._run_zyra(list(ARGV)) == 0
            c.append(time.perf_counter() - t)
            os.unlink("h.png")
        os.chdir("/")
    sa, sb, sc = summary(a), summary(b), summary(c)
    data = {"benchmark": "fork_warmth", "A_fork_from_zygote_as_today": sa, "B_fork_after_parent_ran_it_once": sb,
            "C_in_process": sc, "zygote_warm_up_s": warm_up_s, "first_run_in_parent_s": first_in_parent_s,
            "times": {"A": a, "B": b, "C": c}, "machine": before}
    lines = [
        f"fork_warmth: heatmap 40x80, medians (n={opts.n}), {os.cpu_count()} CPUs, load {before['loadavg'][0]:.2f}",
        f"  A fork from a zygote as today (imports only):     {sa['median']:.3f} s",
        f"  B fork after the parent ran the heatmap once:     {sb['median']:.3f} s",
        f"  C in-process cli.main (warm):                     {sc['median']:.3f} s",
        f"  A/C = {sa['median'] / sc['median']:.2f}, B/C = {sb['median'] / sc['median']:.2f}; the parent's own first run cost {first_in_parent_s:.3f} s",
    ]
    write_results("fork_warmth", data, lines)


if __name__ == "__main__":
    main()
