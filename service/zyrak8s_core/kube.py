"""The ZyraRun resource as both sides see it, and the one place that connects to the Kubernetes API.

The API writes ZyraRuns and reads them back as RunRecords; the operator reads specs and writes statuses.
The conversions between the two shapes live here so that both sides agree on every field.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from typing import Any

from zyrak8s_core.runs import OutputFile, RunRecord, Status

__all__ = [
    "GROUP", "VERSION", "PLURAL", "KIND", "API_VERSION", "RUN_LABEL", "PHASES", "FINAL_PHASES",
    "load_config", "current_namespace", "run_object", "run_record", "idempotent_name", "format_duration",
]

GROUP = "zyra.io"
VERSION = "v1alpha1"
PLURAL = "zyraruns"
KIND = "ZyraRun"
API_VERSION = f"{GROUP}/{VERSION}"
RUN_LABEL = "zyra.io/run"
OWNER_LABEL = "zyra.io/owner"
IDEMPOTENCY_ANNOTATION = "zyra.io/idempotency-key"

# ZyraRun phase <-> the API's job status
PHASES = {
    "Pending": Status.queued,
    "Running": Status.running,
    "Succeeded": Status.succeeded,
    "Failed": Status.failed,
    "Canceled": Status.canceled,
}
FINAL_PHASES = frozenset({"Succeeded", "Failed", "Canceled"})
_SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def load_config() -> None:
    """In a pod: its service account; elsewhere: KUBECONFIG or ~/.kube/config."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def current_namespace(configured: str | None) -> str:
    if configured:
        return configured
    try:
        with open(_SA_NAMESPACE) as fh:
            return fh.read().strip()
    except OSError:
        return os.environ.get("POD_NAMESPACE", "default")


def idempotent_name(owner: str | None, key: str) -> str:
    """The same key from the same owner names the same ZyraRun, whichever replica receives it."""
    return "run-" + hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()[:16]


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def run_object(record: RunRecord, *, image: str | None = None) -> dict[str, Any]:
    """A new ZyraRun for a record the API accepted (argv already validated)."""
    head = 2 if record.command else 1
    spec: dict[str, Any] = {
        "stage": record.stage,
        "argv": record.argv[head:],
        "inputs": [{"fileId": i["file_id"], "name": i["name"]} for i in record.inputs],
        "timeoutSeconds": record.timeout_seconds,
    }
    if record.command:  # `zyra run <pipeline>` has none; the schema refuses a null
        spec["command"] = record.command
    if record.callback_url:
        spec["callbackUrl"] = record.callback_url
    if image:
        spec["image"] = image
    metadata: dict[str, Any] = {"name": record.job_id, "labels": {RUN_LABEL: record.job_id}}
    if record.owner:
        metadata["labels"][OWNER_LABEL] = record.owner
    if record.idempotency_key:
        metadata["annotations"] = {IDEMPOTENCY_ANNOTATION: record.idempotency_key}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def run_record(obj: dict[str, Any]) -> RunRecord:
    """The API's view of a ZyraRun."""
    meta, spec, status = obj["metadata"], obj.get("spec", {}), obj.get("status") or {}
    command = spec.get("command") or ""
    head = [spec["stage"], command] if command else [spec["stage"]]
    return RunRecord(
        job_id=meta["name"],
        status=PHASES.get(status.get("phase", "Pending"), Status.queued),
        stage=spec["stage"],
        command=command,
        argv=head + list(spec.get("argv") or []),
        inputs=[{"file_id": i["fileId"], "name": i["name"]} for i in spec.get("inputs") or []],
        exit_code=status.get("exitCode"),
        signal=status.get("signal"),
        reason=status.get("reason"),
        message=status.get("message"),
        outputs=[OutputFile(**o) for o in status.get("outputs") or []],
        created_at=_time(meta.get("creationTimestamp")) or datetime.now().astimezone(),
        started_at=_time(status.get("startTime")),
        finished_at=_time(status.get("completionTime")),
        timeout_seconds=spec.get("timeoutSeconds", 3600),
        stdout_tail=status.get("stdoutTail", ""),
        stderr_tail=status.get("stderrTail", ""),
        callback_url=spec.get("callbackUrl"),
        idempotency_key=(meta.get("annotations") or {}).get(IDEMPOTENCY_ANNOTATION),
        owner=(meta.get("labels") or {}).get(OWNER_LABEL),
    )
