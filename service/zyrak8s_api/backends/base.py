"""The interface the routes use, whichever backend serves them."""

from __future__ import annotations

import abc

from zyrak8s_core.runs import RunRecord

__all__ = ["Backend", "NotFound", "Busy"]


class NotFound(LookupError):
    """No run with that id."""


class Busy(RuntimeError):
    """The queue is full; the client should retry later."""


class Backend(abc.ABC):
    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @abc.abstractmethod
    async def submit(self, record: RunRecord) -> tuple[RunRecord, bool]:
        """Accept a new run. With an idempotency key already used by the same owner, returns that run and
        False instead. Raises Busy when no more runs can be queued."""

    @abc.abstractmethod
    async def get(self, job_id: str) -> RunRecord:
        """Raises NotFound."""

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> RunRecord:
        """Ask for a queued or running run to stop; a final run is returned unchanged."""

    @abc.abstractmethod
    async def wait(self, job_id: str, timeout: float) -> RunRecord:
        """The run once final, or as it is after `timeout` seconds."""

    async def check(self) -> None:
        """Raise when the backend cannot take runs (readiness)."""
