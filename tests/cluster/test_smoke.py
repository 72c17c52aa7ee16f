"""Smoke tests of the test cluster itself: what the operator and the chart rely on.

They run against the cluster of KUBECONFIG or the local one (tests/fixtures/kube.py).
"""
from __future__ import annotations

import http.server
import re
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

HERE = Path(__file__).resolve().parent
SMOKE_IMAGE = "zyra-k8s/smoke-exit3:test"
SMOKE_DOCKERFILE = HERE / "images" / "exit3" / "Dockerfile"


@pytest.fixture(scope="session")
def smoke_image(kube_cluster):
    return kube_cluster.load_image(SMOKE_IMAGE, SMOKE_DOCKERFILE, SMOKE_DOCKERFILE.parent)


def k8s():
    from kubernetes import client

    return client


def _pod(name, image, command=None, args=None, labels=None, env=None, host_aliases=None,
         readiness_port=None, restart="Never", sa_token=False):
    c = k8s()
    container = c.V1Container(
        name="main", image=image, image_pull_policy="IfNotPresent", command=command, args=args,
        env=[c.V1EnvVar(name=k, value=v) for k, v in (env or {}).items()] or None)
    if readiness_port:
        container.ports = [c.V1ContainerPort(container_port=readiness_port)]
        container.readiness_probe = c.V1Probe(
            tcp_socket=c.V1TCPSocketAction(port=readiness_port), period_seconds=1)
    return c.V1Pod(
        metadata=c.V1ObjectMeta(name=name, labels=labels),
        spec=c.V1PodSpec(containers=[container], restart_policy=restart,
                         termination_grace_period_seconds=0,
                         automount_service_account_token=sa_token,
                         host_aliases=host_aliases))


def _run_pod(kube_cluster, ns, pod, timeout=120):
    """Create the pod, wait until it ends, return (exit code, logs)."""
    c = k8s()
    with kube_cluster.api_client() as api:
        c.CoreV1Api(api).create_namespaced_pod(ns, pod)
    term = kube_cluster.wait_pod_terminated(ns, pod.metadata.name, timeout=timeout)
    return term.exit_code, kube_cluster.pod_logs(ns, pod.metadata.name)


def _python(code):
    return ["python3", "-c", code]


# ------------------------------------------------------------------------------------------- CRD
def test_crd_status_subresource_and_schema_rejection(kube_cluster):
    c = k8s()
    from kubernetes.client.rest import ApiException

    suffix = uuid.uuid4().hex[:8]
    group, plural, kind = "smoke.zyra-k8s.test", f"smoke{suffix}s", f"Smoke{suffix}"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": plural, "singular": f"smoke{suffix}", "kind": kind},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "required": ["stage"], "properties": {
                            "stage": {"type": "string", "enum": ["acquire", "visualize"]},
                            "retries": {"type": "integer", "minimum": 0}}},
                        "status": {"type": "object", "properties": {
                            "phase": {"type": "string"}, "exitCode": {"type": "integer"}}}}}},
            }],
        },
    }
    with kube_cluster.api_client() as api:
        ext = c.ApiextensionsV1Api(api)
        custom = c.CustomObjectsApi(api)
        ext.create_custom_resource_definition(crd)
        try:
            deadline = time.monotonic() + 30
            while True:
                got = ext.read_custom_resource_definition(f"{plural}.{group}")
                conds = {x.type: x.status for x in (got.status.conditions or [])}
                if conds.get("Established") == "True":
                    break
                assert time.monotonic() < deadline, f"CRD not established: {got.status}"
                time.sleep(0.2)
            ns = "default"
            body = {"apiVersion": f"{group}/v1", "kind": kind, "metadata": {"name": "ok"},
                    "spec": {"stage": "visualize", "retries": 1},
                    "status": {"phase": "ignored-on-create"}}
            # The resource may need a moment to be served after Established.
            deadline = time.monotonic() + 30
            while True:
                try:
                    created = custom.create_namespaced_custom_object(group, "v1", ns, plural, body)
                    break
                except ApiException as exc:
                    if exc.status != 404 or time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
            # status subresource: status given on create is dropped ...
            assert "status" not in created or created["status"] in ({}, None)
            # ... and written through /status
            custom.patch_namespaced_custom_object_status(
                group, "v1", ns, plural, "ok", {"status": {"phase": "Failed", "exitCode": 3}})
            got = custom.get_namespaced_custom_object(group, "v1", ns, plural, "ok")
            assert got["status"] == {"phase": "Failed", "exitCode": 3}
            assert got["spec"] == {"stage": "visualize", "retries": 1}

            for bad_spec in ({"stage": "nonsense"}, {"stage": "acquire", "retries": -1},
                             {"retries": 1}, {"stage": "acquire", "retries": "two"}):
                bad = dict(body, metadata={"name": "bad"}, spec=bad_spec)
                with pytest.raises(ApiException) as err:
                    custom.create_namespaced_custom_object(group, "v1", ns, plural, bad)
                assert err.value.status == 422, (bad_spec, err.value.body)
                assert "spec." in err.value.body, err.value.body
        finally:
            ext.delete_custom_resource_definition(f"{plural}.{group}")


# ------------------------------------------------------------------------------------------- Job
def test_job_from_local_image_logs_and_exit_code(kube_cluster, kube_namespace, smoke_image):
    c = k8s()
    ns = kube_namespace
    job = c.V1Job(
        metadata=c.V1ObjectMeta(name="exit3"),
        spec=c.V1JobSpec(
            backoff_limit=0,
            template=c.V1PodTemplateSpec(
                metadata=c.V1ObjectMeta(labels={"app": "exit3"}),
                spec=c.V1PodSpec(
                    restart_policy="Never", termination_grace_period_seconds=0,
                    automount_service_account_token=False,
                    containers=[c.V1Container(name="main", image=smoke_image,
                                              image_pull_policy="IfNotPresent")]))))
    with kube_cluster.api_client() as api:
        batch, core = c.BatchV1Api(api), c.CoreV1Api(api)
        batch.create_namespaced_job(ns, job)
        deadline = time.monotonic() + 60
        pods = []
        while not pods:
            pods = core.list_namespaced_pod(ns, label_selector="job-name=exit3").items
            assert pods or time.monotonic() < deadline, "the Job controller made no pod"
            time.sleep(0.2)
        pod_name = pods[0].metadata.name
    term = kube_cluster.wait_pod_terminated(ns, pod_name, timeout=120)
    assert term.exit_code == 3, term
    assert term.reason == "Error"
    logs = kube_cluster.pod_logs(ns, pod_name)
    assert "smoke line 0\nsmoke line 1\nsmoke line 2\n" in logs
    assert "six 1.16.0" in logs and "smoke stderr line" in logs
    with kube_cluster.api_client() as api:
        # the Job itself ends failed (backoffLimit 0)
        deadline = time.monotonic() + 60
        while True:
            status = c.BatchV1Api(api).read_namespaced_job_status("exit3", ns).status
            conds = {x.type: x for x in (status.conditions or [])}
            if "Failed" in conds:
                assert status.failed == 1
                break
            assert time.monotonic() < deadline, f"Job not failed: {status}"
            time.sleep(0.3)


# ------------------------------------------------------------------------------ in-cluster config
IN_CLUSTER = r"""
import json, os, ssl, urllib.request, urllib.error
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
token = open(sa + "/token").read()
ns = open(sa + "/namespace").read()
ctx = ssl.create_default_context(cafile=sa + "/ca.crt")   # verifies the serving cert
def get(path):
    req = urllib.request.Request(f"https://{host}:{port}{path}", headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
code, body = get("/version")
print("version", code, json.loads(body)["gitVersion"])
code, body = get(f"/api/v1/namespaces/{ns}/pods")
print("pods", code, json.loads(body).get("message", ""))
"""


def test_pod_reaches_api_server_through_kubernetes_service(kube_cluster, kube_namespace, smoke_image):
    pod = _pod("incluster", smoke_image, command=_python(IN_CLUSTER), sa_token=True)
    code, logs = _run_pod(kube_cluster, kube_namespace, pod)
    assert code == 0, logs
    assert re.search(r"^version 200 v\d+\.\d+", logs, re.M), logs
    if kube_cluster.local:
        assert "version 200 v1.20.2" in logs
    # the token authenticates as the namespace's default ServiceAccount (which RBAC denies)
    assert f'pods 403 pods is forbidden: User "system:serviceaccount:{kube_namespace}:default"' in logs, logs


# ----------------------------------------------------------------------------------- Services
# A new Service's rules reach kube-proxy's iptables a moment after its endpoints exist (until then
# the ClusterIP REJECTs): like any client in a cluster, retry connection errors for a while.
FETCH = r"""
import os, sys, time, urllib.error, urllib.request
for url in sys.argv[1:]:
    url = os.path.expandvars(url)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                print(url, r.status, r.read().decode().strip(), flush=True)
            break
        except urllib.error.URLError as exc:
            if isinstance(exc, urllib.error.HTTPError) or time.monotonic() > deadline:
                raise
            print("retrying", url, exc.reason, file=sys.stderr, flush=True)
            time.sleep(0.5)
"""


def _web_server(kube_cluster, ns, smoke_image, text):
    """A pod serving ``text`` on :8080 and a Service ``web`` (80 -> 8080) in front of it."""
    c = k8s()
    server = _pod("web", smoke_image, labels={"app": "web"}, readiness_port=8080, command=[
        "sh", "-c", f"mkdir -p /srv && echo '{text}' > /srv/index.html && "
                    "exec python3 -m http.server 8080 --bind 0.0.0.0 --directory /srv"])
    svc = c.V1Service(metadata=c.V1ObjectMeta(name="web"), spec=c.V1ServiceSpec(
        selector={"app": "web"}, ports=[c.V1ServicePort(port=80, target_port=8080)]))
    with kube_cluster.api_client() as api:
        core = c.CoreV1Api(api)
        svc = core.create_namespaced_service(ns, svc)
        core.create_namespaced_pod(ns, server)
    kube_cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/web", "--timeout=90s")
    return svc.spec.cluster_ip


def test_pod_reaches_pod_through_service(kube_cluster, kube_namespace, smoke_image):
    c = k8s()
    ns = kube_namespace
    cluster_ip = _web_server(kube_cluster, ns, smoke_image, "hello-from-web")
    # No cluster DNS: the kubelet injects WEB_SERVICE_HOST/PORT (Service created before the pod),
    # and hostAliases give the Service a name.
    client_pod = _pod(
        "client", smoke_image,
        command=["python3", "-c", FETCH, "http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT/", "http://web/"],
        host_aliases=[c.V1HostAlias(ip=cluster_ip, hostnames=["web", f"web.{ns}.svc"])])
    code, logs = _run_pod(kube_cluster, ns, client_pod)
    assert code == 0, logs
    assert f"http://{cluster_ip}:80/ 200 hello-from-web" in logs, logs
    assert "http://web/ 200 hello-from-web" in logs, logs
    # hairpin: the server pod reaches itself through its own Service (exec also checks streaming)
    out = kube_cluster.kubectl("-n", ns, "exec", "web", "--", "python3", "-c", FETCH,
                               f"http://{cluster_ip}/").stdout
    assert "200 hello-from-web" in out, out


def test_port_forward_to_service(kube_cluster, kube_namespace, smoke_image):
    ns = kube_namespace
    _web_server(kube_cluster, ns, smoke_image, "hello-through-port-forward")
    proc = subprocess.Popen(
        [kube_cluster.kubectl_path, f"--kubeconfig={kube_cluster.kubeconfig}", "-n", ns,
         "port-forward", "--address", "127.0.0.1", "svc/web", ":80"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) -> 8080", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        with urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/", timeout=10) as r:
            assert r.read().decode().strip() == "hello-through-port-forward"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---------------------------------------------------------------------------- pod -> host server
def test_pod_reaches_server_on_host_address(kube_cluster, kube_namespace, smoke_image):
    if not kube_cluster.host_address:
        kube_cluster.unavailable("set ZYRA_TEST_HOST_ADDRESS to an address of this machine that pods reach")
    token = uuid.uuid4().hex

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = token.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    try:
        server = http.server.ThreadingHTTPServer((kube_cluster.host_address, 0), Handler)
    except OSError as exc:
        kube_cluster.unavailable(f"cannot bind a test server to host address {kube_cluster.host_address}: {exc}")
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        pod = _pod("to-host", smoke_image, command=["python3", "-c", FETCH,
                                                     f"http://{kube_cluster.host_address}:{port}/"])
        code, logs = _run_pod(kube_cluster, kube_namespace, pod)
        assert code == 0, logs
        assert token in logs, logs
    finally:
        server.shutdown()
        server.server_close()


def test_host_address_is_local_and_not_loopback(kube_cluster):
    """Servers bound to host_address stay on this machine (never 0.0.0.0)."""
    if not kube_cluster.host_address:
        kube_cluster.unavailable("set ZYRA_TEST_HOST_ADDRESS")
    with socket.socket() as s:
        s.bind((kube_cluster.host_address, 0))   # an address of this machine
    assert kube_cluster.host_address not in ("0.0.0.0", "127.0.0.1")
