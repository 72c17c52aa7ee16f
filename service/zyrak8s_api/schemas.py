"""Request and response bodies. Names carry their direction: *Create comes in, *Public goes out."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from zyrak8s_core.runs import OutputFile, RunRecord

__all__ = ["RunCreate", "RunAccepted", "RunSyncPublic", "JobPublic", "UploadPublic", "ErrorPublic"]


class RunCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "stage": "visualize",
                    "command": "heatmap",
                    "args": {"input": "file_id:0123456789abcdef0123456789abcdef", "output": "heatmap.png", "no-coastline": True},
                    "mode": "sync",
                },
                {"stage": "process", "command": "convert-format", "argv": ["inputs/in.grib2", "netcdf", "-o", "out.nc"], "mode": "async"},
            ]
        },
    )

    stage: str = Field(description="zyra stage or its alias (acquire, process, visualize, render, export, ...)")
    command: str | None = Field(default=None, description="command within the stage; omitted for `run`")
    args: dict[str, Any] | None = Field(
        default=None,
        description="option names to values: true for a bare flag, a list to repeat, positionals by name; "
        "`file_id:<id>` names an upload",
    )
    argv: list[str] | None = Field(default=None, description="explicit arguments after `zyra <stage> <command>`")
    mode: Literal["sync", "async"] = "sync"
    timeout: int | None = Field(default=None, gt=0, description="seconds before the run is stopped (DeadlineExceeded)")
    callback_url: str | None = Field(default=None, description="receives one HMAC-signed POST with the final result")


class RunAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    job_id: str


class RunSyncPublic(BaseModel):
    status: Literal["success", "error"]
    stdout: str
    stderr: str
    exit_code: int | None
    job_id: str
    reason: str | None = None
    outputs: list[OutputFile] = Field(default_factory=list)


class JobPublic(BaseModel):
    job_id: str
    status: str
    stage: str
    command: str
    argv: list[str]
    exit_code: int | None
    signal: str | None = None
    reason: str | None
    message: str | None
    stdout: str
    stderr: str
    outputs: list[OutputFile]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    timeout_seconds: int

    @classmethod
    def from_record(cls, record: RunRecord, *, stdout: str, stderr: str) -> "JobPublic":
        return cls.model_validate(record.public(stdout, stderr))


class UploadPublic(BaseModel):
    file_id: str
    filename: str
    size: int
    path: str = Field(description="where the file appears in a run's work directory")
    ref: str = Field(description="the value to put in args")


class ErrorPublic(BaseModel):
    detail: str
    field: str | None = None
    allowed: list[str] | None = None
