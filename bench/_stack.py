"""The cluster benchmarks' stack: a thin wrapper over the operator tests' pieces, usable outside pytest.

Reused as they are (imported, not copied): `tests.operator.conftest` (Operator, Stack, RUNNER_IMAGE, CRD),
`tests.fixtures.kube` (KubeCluster, the lease that keeps a test session from stopping the cluster under
us) and `tests.fixtures.servers` (start_redis, start_seaweedfs bound to the bridge address, ApiServer).
What is new here: the pytest fixture's body as a context manager with a deadline on clean-up, the wait for
other engineers' cluster tests, watches that time-stamp what they see (host ms), and an RSS sampler.

Traffic: loopback (API, operator metrics), the bridge address 10.244.0.1 (Redis, S3, the API server) and
the cluster's pod network. Nothing is left behind: the namespace is deleted and waited for (bounded).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

from tests.fixtures import kube as kfx  # noqa: E402
from tests.fixtures.servers import ApiServer, start_redis, start_seaweedfs  # noqa: E402
from tests.operator.conftest import CRD, RUNNER_IMAGE, Operator, Stack, operator_env  # noqa: E402

from _common import machine  # noqa: E402

GROUP, VERSION, PLURAL = "zyra.io", "v1alpha1", "zyraruns"
FINAL = ("Succeeded", "Failed", "Canceled")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------ coordination


def wait_for_cluster_tests(poll: float = 20, limit: float = 900) -> float:
    """Other engineers run `pytest tests/operator` on the same cluster: wait until none runs (<= limit s)."""
    t0 = time.monotonic()
    while True:
        found = subprocess.run(["pgrep", "-f", "pytest.*tests/operator"], capture_output=True, text=True).stdout.split()
        found = [p for p in found if int(p) != os.getpid()]
        if not found:
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit:
            raise SystemExit(f"cluster tests still running after {limit:.0f} s (pids {found}); not benchmarking")
        log(f"cluster tests running (pids {' '.join(found)}): waiting {poll:.0f} s")
        time.sleep(poll)


def local_cluster() -> kfx.KubeCluster:
    """The local cluster (hack/local-cluster.sh up only when `status` says it is not healthy), holding a
    lease like a test session does, so that a session which started the cluster does not stop it under us."""
    lease = kfx._take_lease()
    status = subprocess.run([str(kfx.LOCAL_CLUSTER_SCRIPT), "status"], capture_output=True, text=True)
    if status.returncode != 0:
        log("local cluster not healthy: hack/local-cluster.sh up")
        up = subprocess.run([str(kfx.LOCAL_CLUSTER_SCRIPT), "up"], stdout=subprocess.PIPE, text=True, timeout=1800)
        if up.returncode != 0:
            lease.unlink(missing_ok=True)
            raise SystemExit("hack/local-cluster.sh up failed")
    kubeconfig = subprocess.run([str(kfx.LOCAL_CLUSTER_SCRIPT), "kubeconfig"], capture_output=True, text=True).stdout.strip()
    cluster = kfx.KubeCluster(kubeconfig or "/var/lib/zyra-k8s/cluster/kubeconfig", local=True)
    from kubernetes import client

    with cluster.api_client() as api:
        cluster.server_version = client.VersionApi(api).get_code().git_version
    cluster._bench_lease = lease  # type: ignore[attr-defined]
    return cluster


# ------------------------------------------------------------------------------------------ the stack


@dataclass
class Bench:
    stack: Stack
    operator_env: dict[str, str]
    root: Path
    build_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.stack.namespace


@contextlib.contextmanager
def bench_stack(*, with_api: bool = True, build: bool = True, operator_overrides: dict[str, str] | None = None,
                cleanup_timeout: float = 240) -> Iterator[Bench]:
    """CRD, runner image, Redis + SeaweedFS on the bridge address, namespace zyra-bench-<hex> with the
    ServiceAccount and Secret `zyra-runner`, the operator, and (with_api) the API with ZYRA_BACKEND=kubernetes."""
    cluster = local_cluster()
    root = Path(tempfile.mkdtemp(prefix="zyra-bench-stack-"))
    redis = s3 = api = operator = None
    namespace = f"zyra-bench-{uuid.uuid4().hex[:8]}"
    made_ns = False
    try:
        host = cluster.host_address
        t0 = time.monotonic()
        if build:
            log(f"building/loading {RUNNER_IMAGE} (hack/build-image.sh)")
            image = cluster.load_image(RUNNER_IMAGE, ROOT / "images/runner/Dockerfile", ROOT)
        else:
            image = RUNNER_IMAGE
        build_seconds = time.monotonic() - t0
        cluster.kubectl("apply", "-f", str(CRD))
        cluster.kubectl("wait", "--for=condition=Established", "crd/zyraruns.zyra.io", "--timeout=60s")
        redis = start_redis(root / "redis", bind=host)
        s3 = start_seaweedfs(root / "s3", bind=host)
        cluster.kubectl("create", "namespace", namespace)
        made_ns = True
        cluster.kubectl("-n", namespace, "create", "serviceaccount", "zyra-runner")
        api = ApiServer(root / "api", kind="s3redis", redis=redis, s3=s3,
                        env={"ZYRA_BACKEND": "kubernetes", "ZYRA_NAMESPACE": namespace, "KUBECONFIG": cluster.kubeconfig})
        store = {
            "ZYRA_S3_ENDPOINT": s3.endpoint, "ZYRA_S3_BUCKET": api.bucket or "", "ZYRA_S3_ACCESS_KEY": s3.access_key,
            "ZYRA_S3_SECRET_KEY": s3.secret_key, "ZYRA_REDIS_URL": redis.url,
        }
        cluster.kubectl("-n", namespace, "create", "secret", "generic", "zyra-runner",
                        *[f"--from-literal={k}={v}" for k, v in store.items()])
        env = operator_env(store, cluster, namespace, image, operator_overrides)
        operator = Operator(env, namespace, root / "operator.log").start()
        if with_api:
            api.start()
        log(f"stack up: namespace {namespace}, operator pid {operator.proc.pid}" + (f", API {api.base_url}" if with_api else ""))
        yield Bench(Stack(cluster, namespace, api, operator, s3, redis, image), env, root, build_seconds)
    finally:
        if api is not None:
            api.stop()
        if made_ns:
            # the operator still runs while the namespace goes (it would handle any finalizer on the runs)
            log(f"deleting namespace {namespace}")
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
            gone = wait_namespace_gone(cluster, namespace, cleanup_timeout)
            log(f"namespace {namespace} {'gone' if gone else 'STILL THERE after %.0f s' % cleanup_timeout}")
        if operator is not None:
            keep = root.parent / f"{root.name}-operator.log"
            with contextlib.suppress(OSError):
                shutil.copy(root / "operator.log", keep)
            operator.stop()
        if s3 is not None:
            s3.stop()
        if redis is not None:
            redis.stop()
        shutil.rmtree(root, ignore_errors=True)
        getattr(cluster, "_bench_lease", Path("/nonexistent")).unlink(missing_ok=True)


def wait_namespace_gone(cluster: kfx.KubeCluster, namespace: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = cluster.kubectl("get", "namespace", namespace, check=False)
        if proc.returncode != 0 and "NotFound" in proc.stderr:
            return True
        time.sleep(2)
    return False


# ------------------------------------------------------------------------------------------ watching


class Watcher:
    """Watches of jobs, pods and ZyraRuns in one namespace; records host wall-clock times (time.time(), ms)
    of the first sighting of each state. Started before anything is created, so nothing is missed."""

    def __init__(self, cluster: kfx.KubeCluster, namespace: str, kinds: tuple[str, ...] = ("jobs", "pods", "zyraruns")) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.kinds = kinds
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ready: dict[str, threading.Event] = {k: threading.Event() for k in kinds}

    def start(self) -> "Watcher":
        for kind in self.kinds:
            t = threading.Thread(target=self._loop, args=(kind,), daemon=True, name=f"watch-{kind}")
            t.start()
            self._threads.append(t)
        for ev in self._ready.values():
            ev.wait(30)
        return self

    def stop(self) -> None:
        self._stop.set()

    def _lister(self, kind: str, api: Any) -> tuple[Any, tuple[Any, ...]]:
        from kubernetes import client

        if kind == "jobs":
            return client.BatchV1Api(api).list_namespaced_job, (self.namespace,)
        if kind == "pods":
            return client.CoreV1Api(api).list_namespaced_pod, (self.namespace,)
        return client.CustomObjectsApi(api).list_namespaced_custom_object, (GROUP, VERSION, self.namespace, PLURAL)

    def _loop(self, kind: str) -> None:
        from kubernetes import watch

        version: str | None = None
        with self.cluster.api_client() as api:
            fn, args = self._lister(kind, api)
            while not self._stop.is_set():
                try:
                    if version is None:
                        listing = fn(*args, _preload_content=False)
                        body = json.loads(listing.data)
                        version = body["metadata"]["resourceVersion"]
                        now = time.time()
                        for obj in body.get("items", []):
                            self._see(kind, "ADDED", obj, now)
                        self._ready[kind].set()
                    w = watch.Watch()
                    for item in w.stream(fn, *args, resource_version=version, timeout_seconds=30,
                                         allow_watch_bookmarks=True, _preload_content=False):
                        now = time.time()
                        raw = item.get("raw_object") or item["object"]
                        if item["type"] == "ERROR":
                            version = None
                            break
                        version = raw.get("metadata", {}).get("resourceVersion", version)
                        if item["type"] != "BOOKMARK":
                            self._see(kind, item["type"], raw, now)
                        if self._stop.is_set():
                            return
                except Exception as exc:  # noqa: BLE001 - re-list and go on
                    if getattr(exc, "status", None) == 410:
                        version = None
                    if self._stop.is_set():
                        return
                    time.sleep(0.2)

    def _see(self, kind: str, etype: str, obj: dict[str, Any], now: float) -> None:
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        status = obj.get("status") or {}
        with self.cond:
            if kind == "jobs":
                rec = self.jobs.setdefault(name, {"seen": now, "created": meta.get("creationTimestamp")})
                for c in status.get("conditions") or []:
                    if c.get("status") == "True":
                        rec.setdefault(f"cond_{c['type']}", now)
                if etype == "DELETED":
                    rec.setdefault("deleted", now)
            elif kind == "pods":
                rec = self.pods.setdefault(name, {"seen": now, "created": meta.get("creationTimestamp"),
                                                  "run": (meta.get("labels") or {}).get("zyra.io/run")})
                if (status.get("phase")):
                    rec.setdefault(f"phase_{status['phase']}", now)
                for cs in status.get("containerStatuses") or []:
                    state = cs.get("state") or {}
                    if "running" in state:
                        rec.setdefault("running_seen", now)
                        rec.setdefault("startedAt", state["running"].get("startedAt"))
                    if "terminated" in state:
                        term = state["terminated"]
                        rec.setdefault("terminated_seen", now)
                        rec.setdefault("startedAt", term.get("startedAt"))
                        rec.setdefault("finishedAt", term.get("finishedAt"))
                        rec.setdefault("exitCode", term.get("exitCode"))
                    if cs.get("containerID"):
                        rec.setdefault("containerID", cs["containerID"].split("://", 1)[-1])
                if etype == "DELETED":
                    rec.setdefault("deleted", now)
            else:
                rec = self.runs.setdefault(name, {"seen": now, "created": meta.get("creationTimestamp")})
                phase = status.get("phase")
                if phase:
                    rec.setdefault(f"phase_{phase}", now)
                    if phase in FINAL:
                        rec.setdefault("final_seen", now)
                        rec.setdefault("final_phase", phase)
                        rec.setdefault("completionTime", status.get("completionTime"))
                        rec.setdefault("startTime", status.get("startTime"))
                        rec.setdefault("exitCode", status.get("exitCode"))
                        rec.setdefault("reason", status.get("reason"))
            self.cond.notify_all()

    def wait(self, predicate: Any, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def pod_of(self, run: str) -> dict[str, Any] | None:
        with self.cond:
            found = [p for p in self.pods.values() if p.get("run") == run]
        return min(found, key=lambda p: p["seen"]) if found else None


class ContainerdExits:
    """Exact container exit times (ns) from the local cluster's containerd: `ctr events` /tasks/exit, read
    over its unix socket. The pod's finishedAt has second resolution; this has none of that error."""

    SOCKET = os.environ.get("ZYRA_BENCH_CONTAINERD_SOCKET", "/var/lib/zyra-k8s/cluster/ctr/containerd.sock")

    def __init__(self) -> None:
        self.exits: dict[str, float] = {}
        self.proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def available(self) -> bool:
        return shutil.which("ctr") is not None and Path(self.SOCKET).exists()

    def start(self) -> "ContainerdExits":
        if self.available:
            self.proc = subprocess.Popen(["ctr", "--address", self.SOCKET, "-n", "k8s.io", "events"],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if "/tasks/exit" not in line:
                continue
            with contextlib.suppress(ValueError, KeyError):
                body = json.loads(line[line.index("{"):])
                stamp = body["exited_at"]  # RFC 3339 with ns: keep the us
                whole, _, frac = stamp.rstrip("Z").partition(".")
                from datetime import datetime, timezone

                t = datetime.fromisoformat(whole).replace(tzinfo=timezone.utc).timestamp() + float("0." + (frac or "0"))
                self.exits.setdefault(body["container_id"], t)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)


# ------------------------------------------------------------------------------------------ memory, stats


class RssSampler:
    """VmRSS of one process every `interval` s (from /proc/<pid>/status, no psutil); VmHWM at the end."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def status(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[key] = int(value.split()[0])
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                self.samples.append((time.time(), self.status()["VmRSS"]))
            self._stop.wait(self.interval)

    def start(self) -> "RssSampler":
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(5)
        final = {}
        with contextlib.suppress(OSError):
            final = self.status()
        return final


def stats(values: list[float]) -> dict[str, float]:
    s = sorted(v for v in values if v is not None)
    if not s:
        return {"n": 0}
    q = statistics.quantiles(s, n=10, method="inclusive") if len(s) > 1 else [s[0]] * 9
    return {"n": len(s), "median": round(statistics.median(s), 4), "p90": round(q[8], 4),
            "mean": round(statistics.fmean(s), 4), "min": round(s[0], 4), "max": round(s[-1], 4)}


def k8s_time(value: str | None) -> float | None:
    """An RFC 3339 timestamp from the API server (second resolution) as a POSIX time."""
    if not value:
        return None
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    log(f"-> {path}")
    return path


def context_info(bench: Bench | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"machine": machine()}
    if bench is not None:
        info["server_version"] = bench.stack.cluster.server_version
        info["image"] = bench.stack.image
        info["image_build_seconds"] = round(bench.build_seconds, 1)
        info["operator_env"] = {k: v for k, v in bench.operator_env.items() if "SECRET" not in k and "ACCESS" not in k}
    return info
