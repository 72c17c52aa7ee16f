"""The chart without a cluster: `helm lint --strict`, every rendering validated against the Kubernetes 1.31
schemas (strict: unknown fields fail), manifests/ up to date with the chart, every value documented.

helm comes from hack/helm.sh (extracted once from a PyPI wheel into the cache); without it these tests skip
with the reason, or fail in CI."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.kube import unavailable

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/zyra-k8s"
HELM = REPO / "hack/helm.sh"
KUBE_VERSION = "1.31.0"

SCENARIOS = {
    "defaults": [],
    "everything-on": ["--set", "api.ingress.enabled=true,api.replicas=2",
                      "--set", "api.podDisruptionBudget.minAvailable=1,api.service.clusterIP=10.96.0.50",
                      "--set", "api.networkPolicy.from[0].podSelector.matchLabels.app=gateway"],
    "existing-secrets": ["--set", "apiKeys.existingSecret=keys,storage.existingSecret=store"],
    "ingress-tls-example": ["-f", str(REPO / "examples/tls/ingress-values.yaml")],
    "everything-off": ["--set", "api.podDisruptionBudget.enabled=false,api.networkPolicy.enabled=false",
                       "--set", "operator.networkPolicy.enabled=false,runner.networkPolicy.enabled=false",
                       "--set", "operator.rbac.create=false,operator.rbac.clusterScan=false,api.serviceAccount.create=false"],
}


@pytest.fixture(scope="module")
def helm() -> Any:
    try:
        subprocess.run([str(HELM), "version", "--short"], check=True, capture_output=True, text=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        unavailable(f"no helm from hack/helm.sh: {getattr(exc, 'stderr', '') or exc}")

    def run(*args: str) -> str:
        proc = subprocess.run([str(HELM), *args], check=False, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    return run


def test_lint_strict(helm: Any) -> None:
    out = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendering_validates(helm: Any, scenario: str) -> None:
    import kubernetes_validate

    out = helm("template", "zt", str(CHART), "--namespace", "zyra", "--include-crds", "--kube-version", KUBE_VERSION,
               *SCENARIOS[scenario])
    docs = [d for d in yaml.safe_load_all(out) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "Service"} <= kinds
    assert all(d["metadata"].get("namespace") == "zyra" for d in docs if d["kind"] not in
               ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"))


def test_operator_gets_the_runner_image_and_secret(helm: Any) -> None:
    out = helm("template", "zt", str(CHART), "--set", "image.registry=registry.example/zyra/,image.tag=1.2.3")
    docs = [d for d in yaml.safe_load_all(out) if d]
    operator = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "zt-zyra-k8s-operator")
    container = operator["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == "registry.example/zyra/zyra-k8s/operator:1.2.3"
    assert env["ZYRA_RUNNER_IMAGE"] == "registry.example/zyra/zyra-k8s/runner:1.2.3"
    assert env["ZYRA_RUNNER_SECRET"] == "zt-zyra-k8s-storage"
    assert env["ZYRA_RUNNER_SERVICE_ACCOUNT"] == "zt-zyra-k8s-runner"
    runner_sa = next(d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == "zt-zyra-k8s-runner")
    assert runner_sa["automountServiceAccountToken"] is False


def test_the_api_serves_from_two_pods_that_drain_before_they_stop(helm: Any) -> None:
    docs = [d for d in yaml.safe_load_all(helm("template", "zt", str(CHART))) if d]
    api = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "zt-zyra-k8s-api")
    pod = api["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert api["spec"]["replicas"] == 2
    assert env["ZYRA_WORKERS"] == "1"
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    graceful = float(env["ZYRA_GRACEFUL_TIMEOUT_SECONDS"])
    assert sleep + graceful < pod["terminationGracePeriodSeconds"], "SIGKILL would come before the drain ends"


def test_the_tls_example_renders_an_ingress_cert_manager_fills(helm: Any) -> None:
    out = helm("template", "zt", str(CHART), "-f", str(REPO / "examples/tls/ingress-values.yaml"))
    ingress = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Ingress")
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ingress["spec"]["tls"] == [{"secretName": "zyra-example-com-tls", "hosts": ["zyra.example.com"]}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "zt-zyra-k8s-api", "port": {"name": "http"}}


def test_pdb_follows_the_cluster(helm: Any) -> None:
    def pdb_version(*args: str) -> str:
        out = helm("template", "zt", str(CHART), "--show-only", "templates/api/api-pdb.yaml", *args)
        return yaml.safe_load(out)["apiVersion"]

    # rendered offline, helm assumes a current cluster; on Kubernetes 1.20 `helm install` asks the cluster and
    # gets policy/v1beta1 (tests/chart/test_install.py checks that on the local 1.20 cluster)
    assert pdb_version() == "policy/v1"


def test_manifests_up_to_date(helm: Any) -> None:
    proc = subprocess.run(["make", "-s", "-f", str(REPO / "hack/manifests.mk"), "manifests-check"], check=False,
                          capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, "MAKEFLAGS": ""})
    assert proc.returncode == 0, f"manifests/ is out of date with the chart: run `make manifests`\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"


def _leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            keys += _leaf_keys(value, path + ".")
        else:
            keys.append(path)
    return keys


def _documented_paths(text: str) -> set[str]:
    """Paths of the keys that have a `# --` comment right above them (helm-docs' convention)."""
    documented, stack, comment = set(), [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = True
            continue
        if stripped.startswith("#") or not stripped:
            continue
        match = re.match(r"^(\s*)([A-Za-z0-9_-]+):", line)
        if not match:  # a list item or a continuation
            comment = False
            continue
        indent = len(match.group(1))
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, match.group(2))]
        if comment:
            documented.add(".".join(k for _, k in stack))
        comment = False
    return documented


def test_every_value_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    leaves = _leaf_keys(yaml.safe_load(text))
    documented = _documented_paths(text)
    # a leaf is documented by its own `# --` or by that of the block holding it (resources, probes, hosts)
    undocumented = [k for k in leaves if not any(k == d or k.startswith(d + ".") for d in documented)]
    assert not undocumented, f"values without a `# --` comment: {undocumented}"
    readme = (CHART / "README.md").read_text()
    missing = [d for d in sorted(documented) if f"`{d}`" not in readme]
    assert not missing, f"values not in charts/zyra-k8s/README.md: {missing}"
