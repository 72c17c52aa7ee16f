"""The Job that runs one ZyraRun: deterministic name, safe pod by default.

The pod gets no service-account token, runs as a non-root user with no privilege escalation and every
capability dropped, on a read-only root filesystem with writable emptyDir volumes for the run (/run-data)
and /tmp, with resource requests and limits, a deadline derived from the run's timeout and a small
backoffLimit. Storage and relay credentials come from a Secret (envFrom), never from the spec.
"""

from __future__ import annotations

from typing import Any

from zyrak8s_core.kube import RUN_LABEL
from zyrak8s_core.runs import RunSpec
from zyrak8s_core.settings import Settings

__all__ = ["job_manifest", "RUNNER_CONTAINER", "RUNNER_UID", "STOPPED_ANNOTATION"]

RUNNER_CONTAINER = "runner"
RUNNER_UID = 10001
RUN_DIR = "/run-data"
# set on a Job the operator stopped (parallelism 0), with why: "cancel" or "pod-deleted"
STOPPED_ANNOTATION = "zyra.io/stopped"
DEADLINE_SLACK_SECONDS = 30  # the runner stops zyra at the timeout; the Job's deadline is the backstop


def _resources(spec: dict[str, Any], settings: Settings) -> dict[str, dict[str, str]]:
    wanted = spec.get("resources") or {}
    requests = {"cpu": settings.default_cpu_request, "memory": settings.default_memory_request}
    limits = {"cpu": settings.default_cpu_limit, "memory": settings.default_memory_limit}
    requests.update(wanted.get("requests") or {})
    limits.update(wanted.get("limits") or {})
    return {"requests": requests, "limits": limits}


def job_manifest(name: str, spec: dict[str, Any], run: RunSpec, settings: Settings) -> dict[str, Any]:
    labels = {RUN_LABEL: name, "app.kubernetes.io/name": "zyra-runner", "app.kubernetes.io/managed-by": "zyra-operator"}
    timeout = int(spec.get("timeoutSeconds") or run.timeout_seconds)
    grace = int(settings.cancel_grace_seconds) + 10
    container = {
        "name": RUNNER_CONTAINER,
        "image": spec.get("image") or settings.runner_image,
        "imagePullPolicy": settings.image_pull_policy,
        "env": [
            {"name": "ZYRA_RUN_SPEC", "value": run.model_dump_json()},
            {"name": "ZYRA_RUN_DIR", "value": RUN_DIR},
            {"name": "ZYRA_CANCEL_GRACE_SECONDS", "value": str(settings.cancel_grace_seconds)},
            {"name": "ZYRA_LOG_TAIL_BYTES", "value": str(settings.log_tail_bytes)},
        ],
        "envFrom": [{"secretRef": {"name": settings.runner_secret, "optional": True}}],
        "resources": _resources(spec, settings),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "run-data", "mountPath": RUN_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
        "terminationMessagePolicy": "File",
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "backoffLimit": int(spec.get("retryLimit", settings.job_backoff_limit)),
            "activeDeadlineSeconds": timeout + grace + DEADLINE_SLACK_SECONDS,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,  # honoured where the cluster supports it
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": settings.runner_service_account,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": grace,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUNNER_UID,
                        "runAsGroup": RUNNER_UID,
                        "fsGroup": RUNNER_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": "run-data", "emptyDir": {"sizeLimit": settings.run_volume_size}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                },
            },
        },
    }
