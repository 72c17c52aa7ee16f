"""The runner: executes one run, the same way in a Job's pod and under the local executor.

    python -m zyrak8s_core.runner          (in the Zyra image; the run comes from ZYRA_RUN_SPEC)

1. fetch the run's inputs from storage into `work/inputs/`;
2. start zyra with an argv list (never a shell) in `work/`, in its own process group;
3. pass stdout and stderr through unchanged (`kubectl logs` stays readable), publish them live to the
   relay, and keep them whole in log files;
4. on timeout or cancel: SIGTERM to the group, a grace period, then SIGKILL;
5. archive the logs and upload every file the run wrote in `work/` (inputs excepted) to storage;
6. report: exit code (a signal stays a signal), reason, outputs, log tails. In a pod it also writes a short
   JSON termination message and exits with zyra's own exit code.

A relay that is down does not fail a run: live events wait in a bounded buffer and are retried; the archive
in storage is the complete record either way.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

from zyrak8s_core import relay as relays
from zyrak8s_core import storage as storages
from zyrak8s_core import launchers
from zyrak8s_core.launchers import Child, Exit, LaunchError, Launcher
from zyrak8s_core.runs import OutputFile, Reason, RunResult, RunSpec, now, tail

__all__ = ["Runner", "Publisher", "RunDir", "child_env", "main"]

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
_PERCENT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)\s?%")
_PROGRESS = re.compile(r"(?i)\bprogress[=:\s]+([01](?:\.\d+)?)\b")


class RunDir:
    """The run's private directories: `work/` (cwd; inputs and outputs), `home/` (HOME, caches), `logs/`."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.work = root / "work"
        self.inputs = self.work / "inputs"
        self.home = root / "home"
        self.logs = root / "logs"

    def create(self) -> None:
        for d in (self.inputs, self.home, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        seed = os.environ.get("ZYRA_MPL_SEED")  # a prebuilt matplotlib cache (the image's is read-only)
        if seed and os.path.isdir(seed) and not (self.home / ".matplotlib").exists():
            shutil.copytree(seed, self.home / ".matplotlib")


def child_env(run_dir: RunDir, base: dict[str, str] | None = None) -> dict[str, str]:
    env = launchers.public_env(base)
    env.update(
        HOME=str(run_dir.home),
        MPLBACKEND="Agg",
        PYTHONUNBUFFERED="1",
        TMPDIR=str(run_dir.home),
    )
    env["MPLCONFIGDIR"] = str(run_dir.home / ".matplotlib")
    return env


class Publisher:
    """Sends events to the relay in order, from a bounded buffer, retrying while the relay is away.
    Adjacent chunks of one stream are merged, so a chatty run costs few round trips."""

    def __init__(self, relay: relays.Relay, run_id: str, max_buffered: int = 10_000) -> None:
        self.relay = relay
        self.run_id = run_id
        self.max_buffered = max_buffered
        self.dropped = 0
        self._queue: list[tuple[str, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def emit(self, kind: str, data: Any) -> None:
        if self._queue and kind in ("stdout", "stderr") and self._queue[-1][0] == kind:
            self._queue[-1] = (kind, self._queue[-1][1] + data)
        else:
            self._queue.append((kind, data))
            if len(self._queue) > self.max_buffered:
                self._queue.pop(0)
                self.dropped += 1
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        delay = 0.1
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            # out of the queue while in flight, so that emit() cannot merge new text into an entry being sent
            kind, data = self._queue.pop(0)
            try:
                await self.relay.publish(self.run_id, kind, data)
            except relays.RelayUnavailable as exc:
                self._queue.insert(0, (kind, data))
                log.warning("relay unavailable, retrying", extra={"run_id": self.run_id, "error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1

    async def close(self, timeout: float = 30.0) -> bool:
        """Deliver what is buffered (waiting up to `timeout` for the relay); True when all went out."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
            return True
        except asyncio.TimeoutError:
            self._task.cancel()
            return False


class _Progress:
    def __init__(self, publisher: Publisher | None) -> None:
        self.publisher = publisher
        self.value = 0.0

    def scan(self, text: str) -> None:
        if self.publisher is None:
            return
        for match in _PERCENT.finditer(text):
            self._set(float(match.group(1)) / 100)
        for match in _PROGRESS.finditer(text):
            self._set(float(match.group(1)))

    def _set(self, value: float) -> None:
        if 0.0 <= value <= 1.0 and value > self.value:
            self.value = value
            assert self.publisher is not None
            self.publisher.emit("progress", round(value, 4))


class Runner:
    def __init__(
        self,
        *,
        storage: storages.Storage,
        launcher: Launcher,
        relay: relays.Relay | None = None,
        grace_seconds: float = 5.0,
        log_tail_bytes: int = 16 * 1024,
        passthrough: bool = False,
    ) -> None:
        self.storage = storage
        self.launcher = launcher
        self.relay = relay
        self.grace_seconds = grace_seconds
        self.log_tail_bytes = log_tail_bytes
        self.passthrough = passthrough

    async def run(
        self,
        spec: RunSpec,
        run_dir: RunDir,
        *,
        cancel: asyncio.Event | None = None,
        on_start: Callable[[int], Awaitable[None]] | None = None,
    ) -> RunResult:
        run_dir.create()
        publisher = Publisher(self.relay, spec.run_id) if self.relay is not None else None
        started = now()
        try:
            await asyncio.to_thread(self._fetch_inputs, spec, run_dir)
        except storages.NotFound as exc:
            return RunResult(reason=Reason.input_missing, message=f"input {exc} is not in storage", started_at=started, finished_at=now())
        except storages.StorageError as exc:
            return RunResult(reason=Reason.storage_error, message=str(exc), started_at=started, finished_at=now())
        if publisher:
            publisher.emit("progress", 0.0)

        exit_, reason, message = await self._execute(spec, run_dir, publisher, cancel or asyncio.Event(), on_start)
        finished = now()
        stdout = (run_dir.logs / "stdout").read_bytes().decode(errors="replace")
        stderr = (run_dir.logs / "stderr").read_bytes().decode(errors="replace")
        outputs: list[OutputFile] = []
        try:
            outputs = await asyncio.to_thread(self._archive, spec, run_dir)
        except storages.StorageError as exc:
            if reason == Reason.completed:
                reason, message = Reason.storage_error, f"outputs could not be stored: {exc}"
        if publisher and not await publisher.close():
            log.warning("relay did not take every live event", extra={"run_id": spec.run_id})
        return RunResult(
            exit_code=exit_.exit_code if exit_ else None,
            signal=exit_.signal if exit_ else None,
            reason=reason,
            message=message,
            outputs=outputs,
            stdout_tail=tail(stdout, self.log_tail_bytes),
            stderr_tail=tail(stderr, self.log_tail_bytes),
            started_at=started,
            finished_at=finished,
        )

    def _fetch_inputs(self, spec: RunSpec, run_dir: RunDir) -> None:
        for ref in spec.inputs:
            self.storage.get_file(storages.upload_key(ref["file_id"], ref["name"]), run_dir.inputs / ref["name"])

    async def _execute(
        self,
        spec: RunSpec,
        run_dir: RunDir,
        publisher: Publisher | None,
        cancel: asyncio.Event,
        on_start: Callable[[int], Awaitable[None]] | None,
    ) -> tuple[Exit | None, Reason, str]:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            child = await self.launcher.launch(spec.argv, run_dir.work, child_env(run_dir), out_w, err_w)
        except LaunchError as exc:
            for fd in (out_r, err_r):
                os.close(fd)
            return None, Reason.error, str(exc)
        finally:
            os.close(out_w)
            os.close(err_w)
        if on_start is not None:
            await on_start(child.pid)
        progress = _Progress(publisher)
        pumps = [
            asyncio.create_task(self._pump(out_r, "stdout", run_dir.logs / "stdout", publisher, progress, sys.stdout.buffer)),
            asyncio.create_task(self._pump(err_r, "stderr", run_dir.logs / "stderr", publisher, progress, sys.stderr.buffer)),
        ]
        waiter = asyncio.create_task(child.wait())
        canceled = asyncio.create_task(cancel.wait())
        done, _ = await asyncio.wait({waiter, canceled}, timeout=spec.timeout_seconds, return_when=asyncio.FIRST_COMPLETED)
        reason, message = Reason.completed, ""
        if waiter not in done:
            if canceled in done:
                reason, message = Reason.canceled, "canceled on request"
            else:
                reason, message = Reason.deadline_exceeded, f"ran longer than its timeout of {spec.timeout_seconds} s"
            await self._stop(child, waiter)
        canceled.cancel()
        exit_ = await waiter
        child.kill_group(signal.SIGKILL)  # anything zyra left behind in its group would hold the pipes open
        await asyncio.gather(*pumps)
        if reason == Reason.completed:
            if exit_.signal:
                reason, message = Reason.signaled, f"zyra was terminated by {exit_.signal}"
            elif exit_.exit_code != 0:
                reason, message = Reason.error, f"zyra exited with code {exit_.exit_code}"
        return exit_, reason, message

    async def _stop(self, child: Child, waiter: asyncio.Task[Exit]) -> None:
        child.kill_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.grace_seconds)
        except asyncio.TimeoutError:
            child.kill_group(signal.SIGKILL)

    async def _pump(
        self,
        fd: int,
        kind: str,
        log_path: Path,
        publisher: Publisher | None,
        progress: _Progress,
        passthrough: BinaryIO,
    ) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_SIZE * 4)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            with log_path.open("ab") as log_file:
                while chunk := await reader.read(READ_SIZE):
                    log_file.write(chunk)
                    if self.passthrough:
                        passthrough.write(chunk)
                        passthrough.flush()
                    text = decoder.decode(chunk)
                    if text and publisher is not None:
                        publisher.emit(kind, text)
                        progress.scan(text)
                text = decoder.decode(b"", final=True)
                if text and publisher is not None:
                    publisher.emit(kind, text)
        finally:
            transport.close()

    def _archive(self, spec: RunSpec, run_dir: RunDir) -> list[OutputFile]:
        for stream in ("stdout", "stderr"):
            self.storage.put_file(storages.log_key(spec.run_id, stream), run_dir.logs / stream)
        outputs = []
        prefix = storages.output_prefix(spec.run_id)
        for path in sorted(run_dir.work.rglob("*")):
            rel = path.relative_to(run_dir.work)
            if path.is_symlink() or not path.is_file() or rel.parts[0] == "inputs":
                continue
            self.storage.put_file(prefix + rel.as_posix(), path)
            outputs.append(OutputFile(name=rel.as_posix(), size=path.stat().st_size))
        return outputs


# ---------------------------------------------------------------- in a pod


TERMINATION_LOG = Path("/dev/termination-log")


def _termination_message(result: RunResult) -> str:
    """Kubernetes keeps at most 4 KiB of it: the outcome and output names, not the logs."""
    import json

    body: dict[str, Any] = {
        "exitCode": result.exit_code,
        "reason": result.reason.value,
        "message": result.message[:300],
        "signal": result.signal,
        "outputs": [o.model_dump() for o in result.outputs][:20],
    }
    text = json.dumps(body)
    return text if len(text) < 4000 else json.dumps({**body, "outputs": body["outputs"][:3], "truncated": True})


async def _main_async() -> int:
    from zyrak8s_core.launchers import SubprocessLauncher
    from zyrak8s_core.settings import get_settings

    settings = get_settings()
    launchers.protect_environment()
    spec = RunSpec.model_validate_json(os.environ["ZYRA_RUN_SPEC"])
    relay = relays.from_url(settings.redis_url.get_secret_value() if settings.redis_url else None)
    runner = Runner(
        storage=storages.from_settings(settings),
        launcher=SubprocessLauncher(),
        relay=relay,
        grace_seconds=settings.cancel_grace_seconds,
        log_tail_bytes=settings.log_tail_bytes,
        passthrough=True,
    )
    cancel = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Kubernetes stops a pod with SIGTERM: forward it to zyra's group as a cancel with a grace period
    loop.add_signal_handler(signal.SIGTERM, cancel.set)
    result = await runner.run(spec, RunDir(Path(os.environ.get("ZYRA_RUN_DIR", "/run-data"))), cancel=cancel)
    with contextlib.suppress(Exception):
        await relay.publish(spec.run_id, "end", {"exit_code": result.exit_code, "reason": result.reason.value})
        await relay.expire(spec.run_id, settings.relay_retention_seconds)
    with contextlib.suppress(OSError):
        TERMINATION_LOG.write_text(_termination_message(result))
    await relay.close()
    if result.signal:  # die the way zyra died, so the container's state shows the signal
        signum = signal.Signals[result.signal] if result.signal in signal.Signals.__members__ else signal.SIGKILL
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    return result.exit_code if result.exit_code is not None else 1


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return asyncio.run(_main_async())


if __name__ == "__main__":
    raise SystemExit(main())
