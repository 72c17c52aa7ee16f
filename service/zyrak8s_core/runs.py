"""The run model shared by the API, the local executor, the runner and the operator.

A run moves queued -> running -> one of succeeded | failed | canceled, and never leaves a final state.
`reason` says why in words a person (and `kubectl get zyraruns`) understands.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["Status", "Reason", "RunSpec", "RunRecord", "RunResult", "OutputFile", "new_run_id", "now", "tail"]


class Status(str, enum.Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"

    @property
    def final(self) -> bool:
        return self in (Status.succeeded, Status.failed, Status.canceled)


class Reason(str, enum.Enum):
    completed = "Completed"
    error = "Error"  # zyra exited non-zero
    signaled = "Signaled"  # zyra died of a signal it did not get from us
    deadline_exceeded = "DeadlineExceeded"
    canceled = "Canceled"
    oom_killed = "OOMKilled"
    evicted = "Evicted"
    image_pull = "ImagePullBackOff"
    pod_deleted = "PodDeleted"
    interrupted = "Interrupted"  # the process running it died (API or runner restart)
    input_missing = "InputMissing"
    storage_error = "StorageError"


def new_run_id() -> str:
    # lowercase, DNS-label safe: it names the ZyraRun and its Job on a cluster
    return "run-" + secrets.token_hex(8)


def now() -> datetime:
    return datetime.now(timezone.utc)


def tail(text: str, limit: int) -> str:
    """The last `limit` bytes of text (UTF-8), cut at a character boundary."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[-limit:].decode(errors="ignore")


class OutputFile(BaseModel):
    name: str
    size: int


class RunSpec(BaseModel):
    """Everything a runner needs to execute one run."""

    run_id: str
    stage: str
    command: str
    argv: list[str]  # after `zyra`
    inputs: list[dict[str, str]] = Field(default_factory=list)  # {"file_id", "name"}
    timeout_seconds: int


class RunResult(BaseModel):
    """What the runner reports when zyra has ended (also its termination message, in short form)."""

    exit_code: int | None = None  # None when zyra never started (an input was missing, say)
    signal: str | None = None
    reason: Reason
    message: str = ""
    outputs: list[OutputFile] = Field(default_factory=list)
    stdout_tail: str = ""
    stderr_tail: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RunRecord(BaseModel):
    job_id: str
    status: Status
    stage: str
    command: str
    argv: list[str]
    inputs: list[dict[str, str]] = Field(default_factory=list)
    exit_code: int | None = None
    signal: str | None = None
    reason: str | None = None
    message: str | None = None
    outputs: list[OutputFile] = Field(default_factory=list)
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    timeout_seconds: int
    stdout_tail: str = ""
    stderr_tail: str = ""
    callback_url: str | None = None
    idempotency_key: str | None = None
    owner: str | None = None  # a hash of the API key that created it

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return round((self.finished_at - self.started_at).total_seconds(), 3)
        return None

    def spec(self) -> RunSpec:
        return RunSpec(
            run_id=self.job_id,
            stage=self.stage,
            command=self.command,
            argv=self.argv,
            inputs=self.inputs,
            timeout_seconds=self.timeout_seconds,
        )

    def finish(self, result: RunResult, log_tail_bytes: int) -> None:
        if result.reason == Reason.completed:
            self.status = Status.succeeded
        elif result.reason == Reason.canceled:
            self.status = Status.canceled
        else:
            self.status = Status.failed
        self.exit_code = result.exit_code
        self.signal = result.signal
        self.reason = result.reason.value
        self.message = result.message
        self.outputs = result.outputs
        self.stdout_tail = tail(result.stdout_tail, log_tail_bytes)
        self.stderr_tail = tail(result.stderr_tail, log_tail_bytes)
        self.started_at = result.started_at or self.started_at
        self.finished_at = result.finished_at or now()

    def public(self, stdout: str, stderr: str) -> dict[str, Any]:
        """The body of GET /jobs/{id} and of a callback."""
        return {
            **self.model_dump(
                mode="json",
                include={
                    "job_id", "status", "stage", "command", "argv", "exit_code", "signal", "reason", "message",
                    "outputs", "created_at", "started_at", "finished_at", "timeout_seconds",
                },
            ),
            "stdout": stdout,
            "stderr": stderr,
            "duration_seconds": self.duration_seconds,
        }

    def final_frame(self, stdout: str, stderr: str) -> dict[str, Any]:
        """The WebSocket's last frame."""
        return {
            "stdout": stdout,
            "stderr": stderr,
            "exit_code": self.exit_code,
            "status": self.status.value,
            "reason": self.reason,
            "progress": 1.0,
            "output_file": self.outputs[0].name if self.outputs else None,
        }
