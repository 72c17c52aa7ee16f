"""What keeps the operator's memory small (issue 4: peak under 150 MB during a burst of 200 runs).

Both run the real thing in a child process: the operator as `python -m zyrak8s_operator` (without a
cluster it stops at its start-up handler, after every import), and glibc's heap with holes in it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from zyrak8s_operator import memory


STARTED = "Activity 'configure'"  # kopf's log line about the start-up handler (it fails here: no cluster)


def _importtime_of_the_operator(tmp_path: Path) -> str:
    """stderr of `python -X importtime -m zyrak8s_operator` until kopf has run its start-up handler."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(KUBECONFIG=str(tmp_path / "no-kubeconfig"), ZYRA_OPERATOR_METRICS_PORT="0")
    err = tmp_path / "stderr"
    with err.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "zyrak8s_operator", "--namespace", "none"],
                                env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and STARTED not in err.read_text(errors="replace"):
            assert proc.poll() is None, err.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    return err.read_text(errors="replace")


def test_the_operator_never_loads_the_official_kubernetes_client(tmp_path: Path) -> None:
    text = _importtime_of_the_operator(tmp_path)
    assert STARTED in text, text[-3000:]
    modules = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", text, re.M))
    assert "kopf" in modules and "zyrak8s_operator.runs" in modules
    # kopf probes `kubernetes.client` (and pykube) when it is imported; a real import loads ~870 modules
    official = {m for m in modules if m.split(".")[0] in ("kubernetes", "kubernetes_asyncio", "pykube")}
    assert len(official) < 10 and not any(m.startswith("kubernetes.client.") for m in official), sorted(official)[:20]


@pytest.mark.skipif(memory.free_bytes() is None, reason="needs glibc >= 2.33 (mallinfo2)")
def test_trim_returns_the_free_pages_between_live_objects() -> None:
    script = textwrap.dedent("""
        from zyrak8s_operator import memory

        def anon_kib():
            for line in open("/proc/self/status"):
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])

        blocks = [bytes(64 * 1024) for _ in range(2000)]  # ~125 MiB in the heap (below the mmap threshold)
        keep = blocks[::50]  # the live ones pin the heap: glibc cannot give back the top alone
        del blocks
        free = memory.free_bytes()
        before = anon_kib()
        trimmed = memory.trim(min_free=4 * 1024 * 1024)
        print(free, before, anon_kib(), trimmed, len(keep))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    free, before, after, trimmed = int(out[0]), int(out[1]), int(out[2]), out[3]
    assert free > 100 * 1024 * 1024
    assert trimmed == "True"
    assert before - after > 50 * 1024, (before, after)  # KiB: most of the ~120 MiB freed went back to the system
