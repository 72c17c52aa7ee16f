"""The Helm chart, installed for real: the three images built from images/ and loaded without a registry,
`helm install` into a fresh namespace, the API and the operator running as pods with exactly the chart's
RBAC, and from outside (a port-forward to the API's Service) a client uploads a .npy, runs a heatmap,
streams its logs over the WebSocket and downloads the PNG. Then `helm uninstall` removes everything the
release installed; only the CRD (crds/, which Helm never deletes) stays.

Redis and S3 (SeaweedFS) run on this machine, bound to the address pods reach it at; the chart gets them by
IP (the local cluster has no DNS)."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fixtures.kube import KubeCluster
from tests.fixtures.servers import npy_bytes, start_redis, start_seaweedfs

pytestmark = [pytest.mark.cluster, pytest.mark.zyra]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/zyra-k8s"
HELM = REPO / "hack/helm.sh"
TAG = "test"  # the runner tag is the operator tests' too: one build serves both
IMAGES = {component: f"zyra-k8s/{component}:{TAG}" for component in ("api", "operator", "runner")}
RELEASE = "zt"


def helm(cluster: KubeCluster, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(HELM), *args], check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "KUBECONFIG": cluster.kubeconfig})
    if proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


class PortForward:
    """`kubectl port-forward svc/NAME :PORT` to a loopback port chosen by kubectl."""

    def __init__(self, cluster: KubeCluster, namespace: str, target: str, port: int) -> None:
        self.proc = subprocess.Popen(
            [cluster.kubectl_path or "kubectl", f"--kubeconfig={cluster.kubeconfig}", "-n", namespace,
             "port-forward", target, f":{port}", "--address", "127.0.0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "Forwarding from 127.0.0.1:41234 -> 8000"
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not found:
            self.close()
            raise AssertionError(f"port-forward {target}: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.url = f"http://127.0.0.1:{found.group(1)}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def servers(kube_cluster: KubeCluster, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    host = kube_cluster.host_address
    if not host:
        kube_cluster.unavailable("no address where pods reach this machine: set ZYRA_TEST_HOST_ADDRESS")
    redis = start_redis(tmp_path / "redis", bind=host)
    s3 = start_seaweedfs(tmp_path / "s3", bind=host)
    try:
        yield redis, s3
    finally:
        s3.stop()
        redis.stop()


def _ready(cluster: KubeCluster, namespace: str, component: str, count: int = 1) -> list[str]:
    """The names of the component's pods: `count` of them, running, never restarted, with their own account."""
    pods = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l",
                                      f"app.kubernetes.io/component={component}", "-o", "json").stdout)["items"]
    assert len(pods) == count, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        assert pod["status"]["phase"] == "Running", pod["status"]
        assert [c["restartCount"] for c in pod["status"]["containerStatuses"]] == [0], pod["status"]
        assert pod["spec"]["serviceAccountName"] == f"{RELEASE}-zyra-k8s-{component}"
    return [pod["metadata"]["name"] for pod in pods]


def _can(cluster: KubeCluster, namespace: str, sa: str, *args: str) -> bool:
    proc = cluster.kubectl("auth", "can-i", *args, f"--as=system:serviceaccount:{namespace}:{sa}", check=False)
    return proc.stdout.strip() == "yes"


@pytest.mark.timeout(1800)  # a cold machine builds the runner image (zyra and its extras) first
def test_install_run_uninstall(
    kube_cluster: KubeCluster, kube_namespace: str, servers: tuple[Any, Any], tmp_path: Path
) -> None:
    namespace = kube_namespace
    redis, s3 = servers
    try:
        helm(kube_cluster, "version", "--short", timeout=600)  # the first call extracts helm into the cache
    except (AssertionError, subprocess.TimeoutExpired) as exc:
        kube_cluster.unavailable(f"no helm (hack/helm.sh): {exc}")
    started = time.monotonic()
    for component, tag in IMAGES.items():
        kube_cluster.load_image(tag, REPO / f"images/{component}/Dockerfile", REPO)
    built = time.monotonic()
    bucket = s3.create_bucket()
    key = secrets.token_urlsafe(24)
    values = {
        "image": {"tag": TAG, "pullPolicy": "IfNotPresent"},
        "apiKeys": {"keys": [key]},
        "storage": {
            "s3": {"endpoint": s3.endpoint, "bucket": bucket, "accessKey": s3.access_key, "secretKey": s3.secret_key},
            "redis": {"url": redis.url},
        },
        # two pods (the default) of two workers each: the image's multi-process mode on a read-only root
        "api": {"logFormat": "text", "workers": 2, "terminationGracePeriodSeconds": 5, "preStopSleepSeconds": 1, "gracefulTimeoutSeconds": 3,
                "resources": {"requests": {"cpu": "20m", "memory": "96Mi"}}},
        "operator": {"logFormat": "text", "resyncSeconds": 5, "terminationGracePeriodSeconds": 5,
                     "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}}},
        "runner": {"resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}},
    }
    values_path = tmp_path / "values.yaml"
    values_path.write_text(yaml.safe_dump(values))
    try:
        helm(kube_cluster, "install", RELEASE, str(CHART), "-n", namespace, "-f", str(values_path),
             "--wait", "--timeout", "240s")
        installed = time.monotonic()
        manifest = [d for d in yaml.safe_load_all(helm(kube_cluster, "get", "manifest", RELEASE, "-n", namespace).stdout) if d]
        kinds = sorted({d["kind"] for d in manifest})
        assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Role", "RoleBinding", "Secret",
                         "Service", "ServiceAccount"]
        # Kubernetes 1.20 has no policy/v1: the chart asked the cluster
        pdb = next(d for d in manifest if d["kind"] == "PodDisruptionBudget")
        minor = int(re.match(r"v1\.(\d+)", kube_cluster.server_version).group(1))
        assert pdb["apiVersion"] == ("policy/v1" if minor >= 21 else "policy/v1beta1")

        # the API and the operator run as pods, each with its own ServiceAccount and only the chart's Roles
        _ready(kube_cluster, namespace, "api", count=2)  # the chart's default: two API pods
        [operator_pod] = _ready(kube_cluster, namespace, "operator")
        operator_sa, api_sa = f"{RELEASE}-zyra-k8s-operator", f"{RELEASE}-zyra-k8s-api"
        assert _can(kube_cluster, namespace, operator_sa, "create", "jobs.batch", "-n", namespace)
        assert _can(kube_cluster, namespace, operator_sa, "patch", "zyraruns.zyra.io", "--subresource=status", "-n", namespace)
        assert not _can(kube_cluster, namespace, operator_sa, "get", "secrets", "-n", namespace)
        assert not _can(kube_cluster, namespace, operator_sa, "list", "zyraruns.zyra.io", "-n", "default")
        # cluster-wide, only kopf's read-only scan of CRDs and namespaces
        assert _can(kube_cluster, namespace, operator_sa, "watch", "customresourcedefinitions.apiextensions.k8s.io")
        assert not _can(kube_cluster, namespace, operator_sa, "create", "customresourcedefinitions.apiextensions.k8s.io")
        assert not _can(kube_cluster, namespace, operator_sa, "get", "namespaces", "default")
        assert not _can(kube_cluster, namespace, api_sa, "create", "jobs.batch", "-n", namespace)
        assert not _can(kube_cluster, namespace, api_sa, "delete", "zyraruns.zyra.io", "-n", namespace)
        assert not _can(kube_cluster, namespace, f"{RELEASE}-zyra-k8s-runner", "get", "pods", "-n", namespace)

        # from outside: upload, run a heatmap, follow it over the WebSocket, download the PNG
        forward = PortForward(kube_cluster, namespace, f"svc/{RELEASE}-zyra-k8s-api", 80)
        try:
            frames, job, png = _heatmap_through(forward.url, key)
        finally:
            forward.close()
        ran = time.monotonic()
        final = frames[-1]
        assert final["exit_code"] == 0, frames
        assert job["status"] == "succeeded" and job["exit_code"] == 0, job
        assert [o["name"] for o in job["outputs"]] == ["heatmap.png"], job
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
        assert any("heatmap.png" in f.get("stderr", "") + f.get("stdout", "") for f in frames), frames

        run = json.loads(kube_cluster.kubectl("-n", namespace, "get", "zyrarun", job["job_id"], "-o", "json").stdout)
        assert run["status"]["phase"] == "Succeeded" and run["status"]["exitCode"] == 0, run["status"]
        table = kube_cluster.kubectl("-n", namespace, "get", "zyraruns").stdout
        assert re.search(rf"{job['job_id']}\s+visualize\s+heatmap\s+Succeeded\s+0", table), table
        # the Job used the runner image the chart named
        job_obj = json.loads(kube_cluster.kubectl("-n", namespace, "get", "job", job["job_id"], "-o", "json").stdout)
        container = job_obj["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == IMAGES["runner"]
        assert job_obj["spec"]["template"]["spec"]["serviceAccountName"] == f"{RELEASE}-zyra-k8s-runner"

        # the operator needed nothing the chart did not grant
        log = kube_cluster.pod_logs(namespace, operator_pod)
        denied = [line for line in log.splitlines() if re.search(r"forbidden|\b403\b|not enough permissions", line, re.IGNORECASE)]
        assert not denied, "\n".join(denied)

        # uninstall: runs first, while the operator still runs (it holds a finalizer on each), then the release
        kube_cluster.kubectl("-n", namespace, "delete", "zyraruns", "--all", "--timeout=60s")
        helm(kube_cluster, "uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "120s")
        uninstalled = time.monotonic()
        left = []
        for doc in manifest:
            kind, name = doc["kind"], doc["metadata"]["name"]
            got = kube_cluster.kubectl("-n", namespace, "get", f"{kind.lower()}/{name}", "--ignore-not-found", "-o", "name")
            if got.stdout.strip():
                left.append(got.stdout.strip())
        assert not left, left
        # the pods go after their Deployments (garbage collection); both processes exit on SIGTERM
        deadline = time.monotonic() + 120  # a busy node (other tests, benchmarks) is slow to reap pods
        while True:
            remaining = kube_cluster.kubectl("-n", namespace, "get", "all,secrets,serviceaccounts,roles,rolebindings,"
                                             "networkpolicies,poddisruptionbudgets,jobs,zyraruns", "-o", "name").stdout.split()
            # what the namespace itself brings (its default ServiceAccount and token) is not the chart's
            remaining = [r for r in remaining if not re.match(r"(serviceaccount/default|secret/default-token-)", r)]
            if not remaining or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert remaining == []
        gone = time.monotonic()
        # deliberately kept: the CRD (crds/ is installed once and never upgraded or deleted by Helm: deleting it
        # would delete every ZyraRun of every namespace with it)
        kube_cluster.kubectl("get", "crd", "zyraruns.zyra.io")
        print(f"\nimages {built - started:.1f} s, install {installed - built:.1f} s, run {ran - installed:.1f} s, "
              f"uninstall {uninstalled - ran:.1f} s, pods gone {gone - uninstalled:.1f} s later")
    finally:
        _leave_nothing(kube_cluster, namespace)


def _leave_nothing(cluster: KubeCluster, namespace: str) -> None:
    """After a failure halfway: no ZyraRun may keep the namespace from going (kopf's finalizer without the
    operator), and no cluster-scoped object of the release may outlive the test."""
    runs = cluster.kubectl("-n", namespace, "get", "zyraruns", "-o", "name", check=False).stdout.split()
    for run in runs:
        cluster.kubectl("-n", namespace, "patch", run, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
    if RELEASE in cluster.kubectl("-n", namespace, "get", "secrets", "-o", "name", check=False).stdout:
        subprocess.run([str(HELM), "uninstall", RELEASE, "-n", namespace, "--timeout", "60s"], check=False, capture_output=True,
                       timeout=120, env={**os.environ, "KUBECONFIG": cluster.kubeconfig})


def _heatmap_through(url: str, key: str) -> tuple[list[dict[str, Any]], dict[str, Any], bytes]:
    from websockets.sync.client import connect

    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as api:
        assert api.get("/health").status_code == 200
        assert api.get("/cli/commands", headers={"X-API-Key": "wrong"}).status_code in (401, 403)
        upload = api.post("/upload", files={"file": ("field.npy", npy_bytes(), "application/octet-stream")})
        assert upload.status_code == 200, upload.text
        file_id = upload.json()["file_id"]
        accepted = api.post("/cli/run", json={
            "stage": "visualize", "command": "heatmap", "mode": "async",
            "args": {"input": f"file_id:{file_id}", "output": "heatmap.png", "no-coastline": True, "no-borders": True},
        })
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        frames: list[dict[str, Any]] = []
        ws_url = url.replace("http://", "ws://") + f"/ws/jobs/{job_id}?api_key={key}&stream=stdout,stderr,progress"
        with connect(ws_url, open_timeout=30) as ws:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                frame = json.loads(ws.recv(timeout=60))
                if "keepalive" in frame:
                    continue
                frames.append(frame)
                if "exit_code" in frame:
                    break
        assert frames and "exit_code" in frames[-1], frames
        job = api.get(f"/jobs/{job_id}").json()
        download = api.get(f"/jobs/{job_id}/download", params={"file": "heatmap.png"})
        assert download.status_code == 200, download.text
        return frames, job, download.content
