"""How a ZyraRun's status is decided from its Job and Pods (operator/zyrak8s_operator/outcome.py).

The objects are shaped as the API server returns them (camelCase, as the kubelet reports states); the
same rules run against a real cluster in test_runs.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from zyrak8s_operator.jobs import STOPPED_ANNOTATION
from zyrak8s_operator.outcome import decide


def run(phase: str | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "run-1"}, "spec": {"stage": "visualize", "command": "heatmap", **spec},
            "status": {"phase": phase} if phase else {}}


def job(failed: int = 0, condition: tuple[str, str] | None = None, stopped: str | None = None) -> dict[str, Any]:
    conditions = [{"type": condition[0], "status": "True", "reason": condition[1], "message": "m"}] if condition else []
    meta: dict[str, Any] = {"name": "run-1"}
    if stopped:
        meta["annotations"] = {STOPPED_ANNOTATION: stopped}
    return {"metadata": meta, "status": {"failed": failed, "conditions": conditions}}


def pod(state: dict[str, Any], *, deleting: bool = False, reason: str | None = None, created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "run-1-abcde", "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    status: dict[str, Any] = {"phase": "Running", "containerStatuses": [{"name": "runner", "state": state}]}
    if reason:
        status["reason"] = reason
    return {"metadata": meta, "status": status}


def terminated(exit_code: int, reason: str = "Error", message: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": "2026-01-01T00:00:01Z",
                           "message": json.dumps(message) if message else ""}}


def test_final_runs_are_left_alone() -> None:
    assert decide(run("Succeeded"), job(), [pod(terminated(1))]) is None


def test_no_pod_yet_is_pending() -> None:
    out = decide(run(), job(), [])
    assert out is not None and out.phase == "Pending" and not out.final


def test_running_container_is_running_with_its_start_time() -> None:
    out = decide(run(), job(), [pod({"running": {"startedAt": "2026-01-01T00:00:02Z"}})])
    assert out.phase == "Running" and out.start_time == "2026-01-01T00:00:02Z" and out.pod_name == "run-1-abcde"


def test_success_comes_from_the_runner_message() -> None:
    msg = {"exitCode": 0, "reason": "Completed", "outputs": [{"name": "h.png", "size": 3}]}
    out = decide(run(), job(), [pod(terminated(0, "Completed", msg))])
    assert (out.phase, out.reason, out.exit_code) == ("Succeeded", "Completed", 0)
    assert out.termination["outputs"] == [{"name": "h.png", "size": 3}]


def test_zyra_usage_error_keeps_its_exit_code() -> None:
    out = decide(run(), job(), [pod(terminated(2, "Error", {"exitCode": 2, "reason": "Error", "message": "zyra exited with code 2"}))])
    assert (out.phase, out.reason, out.exit_code) == ("Failed", "Error", 2)


def test_a_signal_stays_a_signal() -> None:
    msg = {"exitCode": 139, "signal": "SIGSEGV", "reason": "Signaled"}
    out = decide(run(), job(), [pod(terminated(139, "Error", msg))])
    assert (out.reason, out.signal, out.exit_code) == ("Signaled", "SIGSEGV", 139)


def test_oom_killed_wins_over_the_exit_code() -> None:
    out = decide(run(), job(), [pod(terminated(137, "OOMKilled"))])
    assert (out.phase, out.reason, out.exit_code) == ("Failed", "OOMKilled", 137)


def test_runner_timeout_is_deadline_exceeded() -> None:
    msg = {"exitCode": 143, "signal": "SIGTERM", "reason": "DeadlineExceeded"}
    out = decide(run(), job(), [pod(terminated(143, "Error", msg))])
    assert (out.phase, out.reason) == ("Failed", "DeadlineExceeded")


def test_job_deadline_without_a_container_result() -> None:
    out = decide(run(), job(condition=("Failed", "DeadlineExceeded")), [])
    assert (out.phase, out.reason) == ("Failed", "DeadlineExceeded")


def test_cancel_stops_the_job_and_deletes_the_pod_then_ends_canceled() -> None:
    running = pod({"running": {"startedAt": "2026-01-01T00:00:02Z"}})
    first = decide(run(cancel=True), job(), [running])
    assert not first.final and first.stop_job == "cancel" and first.delete_pods
    msg = {"exitCode": 143, "reason": "Canceled"}
    done = decide(run(cancel=True), job(stopped="cancel"), [pod(terminated(143, "Error", msg), deleting=True)])
    assert (done.phase, done.reason, done.exit_code) == ("Canceled", "Canceled", 143)


def test_cancel_before_any_pod_ends_canceled() -> None:
    out = decide(run(cancel=True), job(), [])
    assert (out.phase, out.reason) == ("Canceled", "Canceled")


def test_a_pod_deleted_by_someone_stops_the_job_then_ends_pod_deleted() -> None:
    first = decide(run(), job(), [pod({"running": {"startedAt": "t"}}, deleting=True)])
    assert not first.final and first.stop_job == "pod-deleted"
    msg = {"exitCode": 143, "reason": "Canceled"}
    after = decide(run(), job(stopped="pod-deleted"), [pod(terminated(143, "Error", msg), deleting=True)])
    assert (after.phase, after.reason) == ("Failed", "PodDeleted")
    gone = decide(run(), job(stopped="pod-deleted"), [])
    assert (gone.phase, gone.reason) == ("Failed", "PodDeleted")


@pytest.mark.parametrize("waiting", ["ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"])
def test_an_image_that_cannot_be_pulled_ends_the_run(waiting: str) -> None:
    out = decide(run(), job(), [pod({"waiting": {"reason": waiting, "message": "no such image"}})])
    assert (out.phase, out.reason) == ("Failed", "ImagePullBackOff") and out.stop_job and out.delete_pods


def test_a_first_pull_error_is_waited_out() -> None:
    out = decide(run(), job(), [pod({"waiting": {"reason": "ErrImagePull"}})])
    assert out.phase == "Pending"


def test_eviction() -> None:
    p = pod({"waiting": {}}, reason="Evicted")
    p["status"]["containerStatuses"] = []
    out = decide(run(), job(), [p])
    assert (out.phase, out.reason) == ("Failed", "Evicted")


def test_retries_keep_the_run_going_until_the_job_gives_up() -> None:
    failed = pod(terminated(1, "Error", {"exitCode": 1, "reason": "Error"}))
    assert decide(run(retryLimit=2), job(failed=1), [failed]).phase == "Running"
    final = decide(run(retryLimit=2), job(failed=3, condition=("Failed", "BackoffLimitExceeded")), [failed])
    assert (final.phase, final.reason, final.exit_code) == ("Failed", "Error", 1)


def test_the_newest_pod_is_the_one_that_counts() -> None:
    old = pod(terminated(1, "Error", {"exitCode": 1, "reason": "Error"}), created="2026-01-01T00:00:00Z")
    new = pod({"running": {"startedAt": "t"}}, created="2026-01-01T00:05:00Z")
    new["metadata"]["name"] = "run-1-newer"
    out = decide(run(retryLimit=1), job(failed=1), [old, new])
    assert out.phase == "Running" and out.pod_name == "run-1-newer"


def test_a_replacement_pod_after_a_deletion_is_stopped_too() -> None:
    deleted = pod({"running": {"startedAt": "t"}}, deleting=True, created="2026-01-01T00:00:00Z")
    replacement = pod({"waiting": {"reason": "ContainerCreating"}}, created="2026-01-01T00:00:05Z")
    replacement["metadata"]["name"] = "run-1-again"
    first = decide(run(), job(), [deleted, replacement])
    assert not first.final and first.stop_job == "pod-deleted" and first.delete_pods
    ended = pod(terminated(143, "Error", {"exitCode": 143, "reason": "Canceled"}), deleting=True)
    replacement["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:06Z"
    waiting = decide(run(), job(stopped="pod-deleted"), [ended, replacement])
    assert not waiting.final, "a replacement pod still exists: not final yet"
    done = decide(run(), job(stopped="pod-deleted"), [ended])
    assert (done.phase, done.reason, done.exit_code) == ("Failed", "PodDeleted", 143)
