"""What a ZyraRun's status should say, decided from its Job and Pods as they are now (level-triggered).

A pure function of the observed objects, so a restarted operator reaches the same answer as one that saw
every event, and the rules can be read in one place:

- a container that terminated gives the exit code; the reason comes from the kubelet (OOMKilled), from the
  runner's termination message (Completed, Error, Signaled, DeadlineExceeded), or from what stopped it
  (Canceled on request, PodDeleted, Evicted);
- an image that cannot be pulled ends the run (ImagePullBackOff / ErrImageNeverPull / InvalidImageName);
- a Job that failed without a terminated container (deadline, backoff) ends it with the Job's reason;
- a pod being deleted by someone else stops the Job (parallelism 0) so that it is not silently re-run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from zyrak8s_core.kube import FINAL_PHASES
from zyrak8s_core.runs import Reason

from zyrak8s_operator.jobs import RUNNER_CONTAINER, STOPPED_ANNOTATION

__all__ = ["Outcome", "decide", "IMAGE_FAILURES"]

IMAGE_FAILURES = {"ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
CONFIG_FAILURES = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass
class Outcome:
    phase: str
    reason: str | None = None
    message: str = ""
    exit_code: int | None = None
    signal: str | None = None
    pod_name: str | None = None
    start_time: str | None = None
    termination: dict[str, Any] = field(default_factory=dict)  # the runner's message, parsed
    stop_job: str | None = None  # why the Job must stop creating pods (cancel | pod-deleted)
    delete_pods: bool = False

    @property
    def final(self) -> bool:
        return self.phase in FINAL_PHASES


def _runner_status(pod: dict[str, Any]) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == RUNNER_CONTAINER:
            return status
    return {}


def _termination_message(terminated: dict[str, Any]) -> dict[str, Any]:
    try:
        parsed = json.loads(terminated.get("message") or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _deleted_while_running(pod: dict[str, Any]) -> bool:
    """Deleted by someone before its run ended (the pods of a finished run are deleted by clean-up, later)."""
    return bool(pod["metadata"].get("deletionTimestamp")) and not _runner_status(pod).get("state", {}).get("terminated", {}).get("exitCode") == 0


def _job_failure(job: dict[str, Any] | None) -> dict[str, Any] | None:
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return cond
    return None


def _newest(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)


def decide(run: dict[str, Any], job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> Outcome | None:
    """The status the run should have now; None when it is final already."""
    status = run.get("status") or {}
    if status.get("phase") in FINAL_PHASES:
        return None
    spec = run.get("spec") or {}
    stopped = ((job or {}).get("metadata", {}).get("annotations") or {}).get(STOPPED_ANNOTATION)
    pod = _newest(pods)
    state = _runner_status(pod).get("state", {}) if pod else {}
    pod_name = pod["metadata"]["name"] if pod else status.get("podName")
    running = state.get("running")
    start = running.get("startedAt") if running else status.get("startTime")

    # Someone deleted a pod of this run. The Job controller replaces a terminating pod at once, so the
    # run would silently start again: stop the Job, remove any replacement, and end as PodDeleted once
    # no pod of it runs any more (with the exit code of the deleted one, when it got to report it).
    if stopped == "pod-deleted" or (not stopped and not spec.get("cancel") and any(_deleted_while_running(p) for p in pods)):
        alive = [p for p in pods if not _runner_status(p).get("state", {}).get("terminated")]
        if alive:
            return Outcome("Running" if running else "Pending", message="a pod of this run was deleted; stopping",
                           pod_name=pod_name, start_time=start, stop_job="pod-deleted", delete_pods=True)
        ended = [_runner_status(p)["state"]["terminated"] for p in pods]
        exit_code = ended[0].get("exitCode") if ended else None
        return Outcome("Failed", Reason.pod_deleted.value, "its pod was deleted before it finished",
                       exit_code=exit_code, pod_name=pod_name, start_time=start, stop_job="pod-deleted")

    terminated = state.get("terminated")
    if terminated:
        return _from_termination(terminated, pod, job, spec, stopped, pod_name)

    if spec.get("cancel"):
        if pod and not (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return Outcome("Running" if running else "Pending", message="canceling", pod_name=pod_name,
                           start_time=start, stop_job="cancel", delete_pods=True)
        return Outcome("Canceled", Reason.canceled.value, "canceled on request", pod_name=pod_name, start_time=start,
                       stop_job="cancel")

    if pod and (pod.get("status") or {}).get("reason") == "Evicted":
        return Outcome("Failed", Reason.evicted.value, (pod["status"].get("message") or "the pod was evicted")[:500],
                       pod_name=pod_name, start_time=start, stop_job="evicted")

    waiting = state.get("waiting") or {}
    if waiting.get("reason") in IMAGE_FAILURES:
        return Outcome("Failed", Reason.image_pull.value, (waiting.get("message") or waiting["reason"])[:500],
                       pod_name=pod_name, stop_job="image", delete_pods=True)
    if waiting.get("reason") in CONFIG_FAILURES:
        return Outcome("Failed", waiting["reason"], (waiting.get("message") or "")[:500], pod_name=pod_name,
                       stop_job="config", delete_pods=True)

    failure = _job_failure(job)
    if failure is not None and not pod:
        reason = Reason.deadline_exceeded.value if failure.get("reason") == "DeadlineExceeded" else Reason.error.value
        return Outcome("Failed", reason, (failure.get("message") or "")[:500], pod_name=pod_name, start_time=start)
    if running:
        return Outcome("Running", message="zyra is running", pod_name=pod_name, start_time=start)
    return Outcome("Pending", pod_name=pod_name, message=waiting.get("reason", ""))


def _from_termination(
    terminated: dict[str, Any],
    pod: dict[str, Any] | None,
    job: dict[str, Any] | None,
    spec: dict[str, Any],
    stopped: str | None,
    pod_name: str | None,
) -> Outcome:
    message = _termination_message(terminated)
    exit_code = message.get("exitCode", terminated.get("exitCode"))
    if exit_code is None:
        exit_code = terminated.get("exitCode")
    signal = message.get("signal")
    start = terminated.get("startedAt")
    base = dict(exit_code=exit_code, signal=signal, pod_name=pod_name, start_time=start, termination=message)
    runner_reason = message.get("reason")
    kubelet_reason = terminated.get("reason")
    retries_left = _retries_left(spec, job)

    if kubelet_reason == "OOMKilled":
        reason, text = Reason.oom_killed.value, "the run used more memory than its limit"
    elif spec.get("cancel") or stopped == "cancel":
        return Outcome("Canceled", Reason.canceled.value, "canceled on request", **base)
    elif (pod and (pod.get("status") or {}).get("reason") == "Evicted") or stopped == "evicted":
        reason, text = Reason.evicted.value, "the pod was evicted"
    elif (failure := _job_failure(job)) is not None and failure.get("reason") == "DeadlineExceeded":
        reason, text = Reason.deadline_exceeded.value, "the Job's deadline passed"
    elif runner_reason:
        reason, text = runner_reason, message.get("message", "")
    elif exit_code == 0:
        reason, text = Reason.completed.value, ""
    else:
        reason, text = Reason.error.value, f"the runner exited with code {exit_code} ({kubelet_reason or 'no reason given'})"

    if reason == Reason.completed.value and exit_code == 0:
        return Outcome("Succeeded", reason, text, **base)
    if retries_left and reason in (Reason.error.value, Reason.signaled.value, Reason.oom_killed.value):
        return Outcome("Running", message=f"attempt failed ({reason}); retrying", **base)
    return Outcome("Failed", reason, text[:500], **base)


def _retries_left(spec: dict[str, Any], job: dict[str, Any] | None) -> bool:
    limit = int(spec.get("retryLimit") or 0)
    failed = int(((job or {}).get("status") or {}).get("failed") or 0)
    return limit > 0 and failed <= limit and _job_failure(job) is None
