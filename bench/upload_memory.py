#!/usr/bin/env python3
"""Issue 2, benchmark 3: memory of the API process while a 1 GiB upload streams through it into S3.

    .venv/bin/python bench/upload_memory.py [--mib 1024] [--interval 0.1]

Set-up: SeaweedFS (`weed mini`, a real S3 server with signature checks) on loopback, the real API with
ZYRA_S3_* pointing at it and ZYRA_UPLOAD_MAX_BYTES above the file's size. A file of --mib MiB is written
in 1 MiB chunks (a random 1 MiB block repeated; never held whole in memory) and POSTed to /upload by
httpx with a generator body that builds the multipart by hand (Content-Length given, so nothing buffers).
A thread reads the API process's VmRSS from /proc/<pid>/status every --interval seconds (psutil is not
needed); VmHWM (the kernel's own peak) is read at the end too.

Figures: baseline RSS (median over 1 s before the upload), peak RSS (max sample, and VmHWM), growth
(peak - baseline; goal < 100 MB), throughput end to end (request start -> response, which includes the
API's copy into S3) and of the request body alone (start -> last byte sent).
Results: bench/results/upload_memory.json and .txt. The file, the API's data dir and SeaweedFS's data are
removed afterwards. Needs about 3x the file's size free on the temp filesystem.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import API_KEY, api_server, machine, rss_kib, servers, write_results  # noqa: E402

MiB = 1024 * 1024


class Sampler(threading.Thread):
    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (monotonic, VmRSS KiB)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append((time.monotonic(), rss_kib(self.pid)["VmRSS"]))
            except (OSError, KeyError):
                return
            self.stop.wait(self.interval)


def make_file(path: Path, mib: int) -> None:
    block = os.urandom(MiB)
    with path.open("wb") as fh:
        for _ in range(mib):
            fh.write(block)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024, help="file size in MiB (default 1024 = 1 GiB)")
    ap.add_argument("--interval", type=float, default=0.1, help="RSS sampling interval in seconds (default 0.1)")
    opts = ap.parse_args()
    if not (1 <= opts.mib <= 4096 and 0.01 <= opts.interval <= 5):
        ap.error("bounds: 1..4096 MiB, interval 0.01..5 s")
    import httpx

    tmp_root = Path(tempfile.gettempdir())
    free = shutil.disk_usage(tmp_root).free
    need = 3 * opts.mib * MiB + 512 * MiB
    if free < need:
        raise SystemExit(f"need ~{need / 2**30:.1f} GiB free in {tmp_root}, have {free / 2**30:.1f} GiB")

    _redis_cm, s3_cm, source = servers()
    before = machine()
    bucket = f"bench-upload-{uuid.uuid4().hex[:8]}"
    size = opts.mib * MiB
    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    try:
        data_file = work / "big.bin"
        t = time.perf_counter()
        make_file(data_file, opts.mib)
        gen_seconds = time.perf_counter() - t
        with s3_cm() as s3:
            env = {
                "ZYRA_S3_ENDPOINT": s3.endpoint, "ZYRA_S3_BUCKET": bucket,
                "ZYRA_S3_ACCESS_KEY": s3.access_key, "ZYRA_S3_SECRET_KEY": s3.secret_key,
                "ZYRA_UPLOAD_MAX_BYTES": str(size + 512 * MiB),
                "ZYRA_WARM_WORKERS": "false",  # no runs here: no zygote competing for the CPU
            }
            with api_server(env) as api:
                sampler = Sampler(api.pid, opts.interval)
                sampler.start()
                time.sleep(1.0)
                baseline = statistics.median(r for _, r in sampler.samples)
                boundary = uuid.uuid4().hex
                head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
                        "Content-Type: application/octet-stream\r\n\r\n").encode()
                tail = f"\r\n--{boundary}--\r\n".encode()
                sent_at: list[float] = []

                def body():
                    yield head
                    with data_file.open("rb") as fh:
                        while chunk := fh.read(MiB):
                            yield chunk
                    yield tail
                    sent_at.append(time.monotonic())

                headers = {"X-API-Key": API_KEY, "Content-Type": f"multipart/form-data; boundary={boundary}",
                           "Content-Length": str(len(head) + size + len(tail))}
                t0 = time.monotonic()
                with httpx.Client(timeout=httpx.Timeout(600.0), trust_env=False) as client:
                    response = client.post(f"{api.url}/upload", content=body(), headers=headers)
                t1 = time.monotonic()
                time.sleep(1.0)  # see whether memory comes back down
                sampler.stop.set()
                sampler.join()
                hwm = rss_kib(api.pid)
                response.raise_for_status()
                result = response.json()
                stored = s3.client().head_object(Bucket=bucket, Key=f"uploads/{result['file_id']}/big.bin")["ContentLength"]
        during = [r for ts, r in sampler.samples if t0 <= ts <= t1]
        peak = max(r for _, r in sampler.samples)
        peak_t = next(ts for ts, r in sampler.samples if r == peak) - t0
        send_s = sent_at[0] - t0 if sent_at else None
        growth_mb = (peak - baseline) * 1024 / 1e6
        data = {
            "benchmark": "upload_memory",
            "servers_from": source,
            "file_mib": opts.mib,
            "file_generation_s": gen_seconds,
            "response": result,
            "stored_object_bytes": stored,
            "stored_size_matches": stored == size,
            "rss_kib": {"baseline": baseline, "peak_sampled": peak, "peak_at_s_after_start": peak_t,
                        "vmhwm_at_end": hwm.get("VmHWM"), "end": sampler.samples[-1][1],
                        "samples": len(sampler.samples), "samples_during_upload": len(during)},
            "growth_mb": growth_mb,
            "growth_mib": (peak - baseline) / 1024,
            "goal_growth_mb": "< 100",
            "met": growth_mb < 100,
            "seconds": {"end_to_end": t1 - t0, "request_body_sent": send_s,
                        "after_body_until_response": (t1 - sent_at[0]) if sent_at else None},
            "throughput_mib_s": {"end_to_end": opts.mib / (t1 - t0),
                                 "request_body": opts.mib / send_s if send_s else None},
            "rss_timeline_kib": [(round(ts - t0, 2), r) for ts, r in sampler.samples],
            "before": before,
            "after": machine(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"upload_memory: {opts.mib} MiB multipart upload -> API -> SeaweedFS S3, API VmRSS sampled every {opts.interval} s "
        f"({os.cpu_count()} CPUs, load {before['loadavg'][0]:.2f})",
        f"  RSS baseline {baseline / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB (VmHWM {hwm.get('VmHWM', 0) / 1024:.1f} MiB), "
        f"growth {growth_mb:.1f} MB (goal < 100 MB: {'met' if growth_mb < 100 else 'MISSED'})",
        f"  throughput end to end {opts.mib / (t1 - t0):.1f} MiB/s ({t1 - t0:.1f} s incl. the copy to S3); "
        f"request body alone {opts.mib / send_s:.1f} MiB/s ({send_s:.1f} s)" if send_s else "",
        f"  stored object size {stored} bytes ({'matches' if stored == size else 'MISMATCH'})",
    ]
    write_results("upload_memory", data, [line for line in lines if line])


if __name__ == "__main__":
    main()
