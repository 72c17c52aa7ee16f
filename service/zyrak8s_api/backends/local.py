"""The embedded default: runs execute on this machine, records live in SQLite.

A bounded queue feeds `ZYRA_MAX_CONCURRENT_RUNS` workers; each run gets its own zyra process (forked from a
warm zygote unless ZYRA_WARM_WORKERS=false) driven by the same Runner as a Job's pod. On start-up, runs that
were queued when the API stopped are queued again, and runs that were running end as failed with reason
Interrupted (their leftover process group, if any, is killed): nothing stays "running" forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from pathlib import Path

from zyrak8s_core import callbacks, launchers
from zyrak8s_core import relay as relays
from zyrak8s_core import storage as storages
from zyrak8s_core.runner import RunDir, Runner
from zyrak8s_core.runs import Reason, RunRecord, RunResult, Status, now
from zyrak8s_core.settings import Settings
from zyrak8s_api import metrics
from zyrak8s_api.backends.base import Backend, Busy, NotFound
from zyrak8s_api.backends.records import RecordStore

__all__ = ["LocalBackend"]

log = logging.getLogger(__name__)


class LocalBackend(Backend):
    def __init__(self, settings: Settings, storage: storages.Storage, relay: relays.Relay) -> None:
        self.settings = settings
        self.storage = storage
        self.relay = relay
        self.records = RecordStore(settings.data_dir / "runs.sqlite3")
        self.launcher: launchers.Launcher = (
            launchers.ZygoteLauncher(settings.zyra_python) if settings.warm_workers else launchers.SubprocessLauncher(settings.zyra_python)
        )
        self.runner = Runner(
            storage=storage,
            launcher=self.launcher,
            relay=relay,
            grace_seconds=settings.cancel_grace_seconds,
            log_tail_bytes=settings.log_tail_bytes,
        )
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._cancels: dict[str, asyncio.Event] = {}
        self._finished: dict[str, asyncio.Event] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._work_root = settings.data_dir / "work"

    # -- life cycle

    async def start(self) -> None:
        await self._recover()
        if isinstance(self.launcher, launchers.ZygoteLauncher):
            self._spawn(self._start_zygote())
        self._workers = [asyncio.create_task(self._worker()) for _ in range(self.settings.max_concurrent_runs)]

    async def _start_zygote(self) -> None:
        try:
            await self.launcher.start()  # type: ignore[attr-defined]
        except launchers.LaunchError as exc:
            log.error("warm workers unavailable, runs start a fresh interpreter", extra={"error": str(exc)})
            self.runner.launcher = self.launcher = launchers.SubprocessLauncher(self.settings.zyra_python)

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        if isinstance(self.launcher, launchers.ZygoteLauncher):
            await self.launcher.close()
        self.records.close()

    async def _recover(self) -> None:
        for record, pid in self.records.unfinished():
            if record.status == Status.queued:
                self._queue.put_nowait(record.job_id)
                continue
            if pid and _is_our_child(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            stdout, stderr = await self._salvage_logs(record)
            record.finish(
                RunResult(
                    reason=Reason.interrupted,
                    message="the API stopped while this run was in flight; it did not finish",
                    stdout_tail=stdout,
                    stderr_tail=stderr,
                ),
                self.settings.log_tail_bytes,
            )
            self.records.update(record)
            await self._finish(record)  # clients still following its stream get the end
            log.warning("run interrupted by a restart", extra={"job_id": record.job_id})

    async def _salvage_logs(self, record: RunRecord) -> tuple[str, str]:
        """What an interrupted run printed, from the relay (Redis outlives the API), archived like a finished
        run's logs; the record's tails when the relay has nothing (it was in this process)."""
        try:
            events = await self.relay.snapshot(record.job_id)
        except relays.RelayUnavailable:
            events = []
        if not events:
            return record.stdout_tail, record.stderr_tail
        logs = {kind: "".join(e.data for e in events if e.kind == kind) for kind in ("stdout", "stderr")}
        try:
            for kind, text in logs.items():
                await asyncio.to_thread(self.storage.put_bytes, storages.log_key(record.job_id, kind), text.encode())
        except storages.StorageError as exc:
            log.warning("could not archive an interrupted run's logs", extra={"job_id": record.job_id, "error": str(exc)})
        return logs["stdout"], logs["stderr"]

    # -- the Backend interface

    async def submit(self, record: RunRecord) -> tuple[RunRecord, bool]:
        if self._queue.qsize() >= self.settings.max_queued_runs:
            raise Busy(f"{self._queue.qsize()} runs are queued already; retry later")
        existing = self.records.insert(record)
        if existing is not None:
            return existing, False
        self._finished[record.job_id] = asyncio.Event()
        self._queue.put_nowait(record.job_id)
        metrics.RUNS_SUBMITTED.inc()
        return record, True

    async def get(self, job_id: str) -> RunRecord:
        record = self.records.get(job_id)
        if record is None:
            raise NotFound(job_id)
        return record

    async def cancel(self, job_id: str) -> RunRecord:
        record = await self.get(job_id)
        if record.status.final:
            return record
        if record.status == Status.queued:
            record.finish(RunResult(reason=Reason.canceled, message="canceled before it started"), self.settings.log_tail_bytes)
            self.records.update(record)
            await self._finish(record)
            return record
        self._cancels.setdefault(job_id, asyncio.Event()).set()
        return await self.wait(job_id, self.settings.cancel_grace_seconds + 10)

    async def wait(self, job_id: str, timeout: float) -> RunRecord:
        record = await self.get(job_id)
        if not record.status.final:
            event = self._finished.setdefault(job_id, asyncio.Event())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
            record = await self.get(job_id)
        return record

    async def check(self) -> None:
        await asyncio.to_thread(self.storage.check)

    # -- execution

    async def _worker(self) -> None:
        while True:
            job_id = await self._queue.get()
            try:
                await self._execute(job_id)
            except Exception:
                log.exception("run failed in the executor", extra={"job_id": job_id})

    async def _execute(self, job_id: str) -> None:
        record = self.records.get(job_id)
        if record is None or record.status != Status.queued:
            return  # canceled while queued
        cancel = self._cancels.setdefault(job_id, asyncio.Event())
        record.status, record.started_at = Status.running, now()
        self.records.update(record)

        async def started(pid: int) -> None:
            self.records.set_pid(job_id, pid)

        run_dir = RunDir(self._work_root / job_id)
        metrics.RUNS_RUNNING.inc()
        try:
            result = await self.runner.run(record.spec(), run_dir, cancel=cancel, on_start=started)
        finally:
            metrics.RUNS_RUNNING.dec()
            shutil.rmtree(run_dir.root, ignore_errors=True)
        record.finish(result, self.settings.log_tail_bytes)
        self.records.update(record)
        self.records.set_pid(job_id, None)
        await self._finish(record)

    async def _finish(self, record: RunRecord) -> None:
        metrics.RUNS_FINISHED.labels(status=record.status.value, reason=record.reason or "").inc()
        if record.duration_seconds is not None:
            metrics.RUN_SECONDS.observe(record.duration_seconds)
        try:
            await self.relay.publish(record.job_id, "end", {"status": record.status.value})
            await self.relay.expire(record.job_id, self.settings.relay_retention_seconds)
        except relays.RelayUnavailable as exc:
            log.warning("relay unavailable at the end of a run", extra={"job_id": record.job_id, "error": str(exc)})
        self._cancels.pop(record.job_id, None)
        event = self._finished.pop(record.job_id, None)
        if event is not None:
            event.set()
        if record.callback_url and self.settings.callback_secret:
            payload = record.public(record.stdout_tail, record.stderr_tail)
            self._spawn(
                callbacks.deliver(
                    record.callback_url,
                    payload,
                    secret=self.settings.callback_secret.get_secret_value(),
                    max_attempts=self.settings.callback_max_attempts,
                    timeout=self.settings.callback_timeout_seconds,
                )
            )

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _is_our_child(pid: int) -> bool:
    """A recorded pid may have been reused since: only a zyra process of ours is killed."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"zyra" in cmdline
