"""The whole stack on a real cluster: CRD, runner image, Redis and S3 reachable from pods, the operator and
the API (ZYRA_BACKEND=kubernetes) running on this machine against the cluster of `kube_cluster`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kube import KubeCluster
from tests.fixtures.servers import ApiServer, RedisServer, SeaweedS3, free_port, start_redis, start_seaweedfs

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "charts/zyra-k8s/crds/zyraruns.zyra.io.yaml"
RUNNER_IMAGE = "zyra-k8s/runner:test"


class Operator:
    """`python -m zyrak8s_operator` (kopf, standalone) as a child process that a test may kill and start again."""

    def __init__(self, env: dict[str, str], namespace: str, log: Path) -> None:
        self.env = env
        self.namespace = namespace
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Operator":
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zyrak8s_operator", "--namespace", self.namespace],
                env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class Stack:
    def __init__(self, cluster: KubeCluster, namespace: str, api: ApiServer, operator: Operator, s3: SeaweedS3,
                 redis: RedisServer, image: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.api = api
        self.operator = operator
        self.s3 = s3
        self.redis = redis
        self.image = image

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("-n", self.namespace, *args, **kwargs)

    def zyrarun(self, name: str) -> dict[str, Any]:
        from kubernetes import client

        with self.cluster.api_client() as api:
            return client.CustomObjectsApi(api).get_namespaced_custom_object("zyra.io", "v1alpha1", self.namespace, "zyraruns", name)

    def wait_phase(self, name: str, phases: tuple[str, ...], timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        obj: dict[str, Any] = {}
        while time.monotonic() < deadline:
            obj = self.zyrarun(name)
            if (obj.get("status") or {}).get("phase") in phases:
                return obj
            time.sleep(0.25)
        raise AssertionError(f"{name} never reached {phases}: {obj.get('status')}\n{self.operator.log.read_text()[-3000:]}")

    def pods(self, name: str) -> list[Any]:
        from kubernetes import client

        with self.cluster.api_client() as api:
            return client.CoreV1Api(api).list_namespaced_pod(self.namespace, label_selector=f"zyra.io/run={name}").items


def operator_env(store: dict[str, str], cluster: KubeCluster, namespace: str, image: str,
                 overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The operator's settings for tests and benchmarks: quick resync and clean-up, small requests."""
    return {
        **store,
        "KUBECONFIG": cluster.kubeconfig,
        "ZYRA_NAMESPACE": namespace,
        "ZYRA_RUNNER_IMAGE": image,
        "ZYRA_IMAGE_PULL_POLICY": "IfNotPresent",
        "ZYRA_OPERATOR_RESYNC_SECONDS": "5",
        "ZYRA_JOB_TTL_SECONDS": "10",
        "ZYRA_CANCEL_GRACE_SECONDS": "3",
        "ZYRA_OPERATOR_METRICS_PORT": str(free_port()),
        "ZYRA_LOG_FORMAT": "text",
        "ZYRA_DEFAULT_CPU_REQUEST": "10m",
        "ZYRA_DEFAULT_MEMORY_REQUEST": "64Mi",
        **(overrides or {}),
    }


def _namespace(cluster: KubeCluster) -> str:
    name = f"zyra-e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("-n", name, "create", "serviceaccount", "zyra-runner")
    return name


@pytest.fixture(scope="session")
def stack(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    host = kube_cluster.host_address
    if not host:
        kube_cluster.unavailable("no address where pods reach this machine: set ZYRA_TEST_HOST_ADDRESS")
    image = kube_cluster.load_image(RUNNER_IMAGE, REPO / "images/runner/Dockerfile", REPO)
    kube_cluster.kubectl("apply", "-f", str(CRD))
    kube_cluster.kubectl("wait", "--for=condition=Established", "crd/zyraruns.zyra.io", "--timeout=60s")
    root = tmp_path_factory.mktemp("stack")
    redis = start_redis(root / "redis", bind=host)
    s3 = start_seaweedfs(root / "s3", bind=host)
    namespace = _namespace(kube_cluster)
    api = ApiServer(
        root / "api", kind="s3redis", redis=redis, s3=s3,
        env={"ZYRA_BACKEND": "kubernetes", "ZYRA_NAMESPACE": namespace, "KUBECONFIG": kube_cluster.kubeconfig},
    )
    store = {
        "ZYRA_S3_ENDPOINT": s3.endpoint, "ZYRA_S3_BUCKET": api.bucket or "", "ZYRA_S3_ACCESS_KEY": s3.access_key,
        "ZYRA_S3_SECRET_KEY": s3.secret_key, "ZYRA_REDIS_URL": redis.url,
    }
    kube_cluster.kubectl("-n", namespace, "create", "secret", "generic", "zyra-runner", *[f"--from-literal={k}={v}" for k, v in store.items()])
    operator = Operator(operator_env(store, kube_cluster, namespace, image), namespace, root / "operator.log").start()
    api.start()
    try:
        yield Stack(kube_cluster, namespace, api, operator, s3, redis, image)
    finally:
        api.stop()
        # runs go while the operator still answers: a run holding a finalizer from an older operator
        # version would otherwise keep the namespace Terminating
        kube_cluster.kubectl("-n", namespace, "delete", "zyraruns", "--all", "--timeout=60s", check=False)
        operator.stop()
        kube_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        s3.stop()
        redis.stop()
