"""Ways to start the zyra child process of a run: a fresh interpreter, or a fork of a warm zygote.

Either way the child leads its own session (so the whole process group can be signalled), reads nothing
from stdin, writes to the two pipes it is given, and gets an argv list, never a shell line.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Protocol

from zyrak8s_core import zygote

__all__ = [
    "Exit", "Child", "Launcher", "SubprocessLauncher", "ZygoteLauncher", "LaunchError", "public_env", "protect_environment",
]

# settings of this service that a zyra child must never see (credentials among them)
_PRIVATE_ENV = re.compile(
    r"^ZYRA_(API_KEYS?|API_KEYS_FILE|AUTH_DISABLED|S3_.*|REDIS_URL|CALLBACK_SECRET|RUN_SPEC|BACKEND|DATA_DIR|RUNNER_.*|RATE_LIMIT)$"
)


def public_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without this service's own settings (credentials among them)."""
    return {k: v for k, v in (base if base is not None else os.environ).items() if not _PRIVATE_ENV.match(k)}


def protect_environment() -> None:
    """Make this process non-dumpable: /proc/<pid>/environ and /proc/<pid>/mem become root's, so a zyra
    child running as the same user cannot read the credentials this process holds in its environment."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(4, 0)  # PR_SET_DUMPABLE, 0
    except OSError:
        pass


class LaunchError(RuntimeError):
    """The child could not be started."""


@dataclass(frozen=True)
class Exit:
    """How the child ended. A signal shows as such: exit_code 128+N (the shell's and Kubernetes' way) and
    `signal` naming it."""

    exit_code: int
    signal: str | None = None

    @classmethod
    def from_waitstatus(cls, status: int) -> "Exit":
        if os.WIFSIGNALED(status):
            return cls.from_signal(os.WTERMSIG(status))
        return cls(os.waitstatus_to_exitcode(status))

    @classmethod
    def from_returncode(cls, code: int) -> "Exit":
        return cls.from_signal(-code) if code < 0 else cls(code)

    @classmethod
    def from_signal(cls, signum: int) -> "Exit":
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return cls(128 + signum, name)


@dataclass
class Child:
    pid: int
    wait: Callable[[], Awaitable[Exit]]

    def kill_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class Launcher(Protocol):
    async def launch(self, argv: list[str], cwd: Path, env: dict[str, str], stdout: int, stderr: int) -> Child: ...


class SubprocessLauncher:
    """`python -m zyra.cli ARGV` in a new interpreter: pays zyra's import on every run."""

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    async def launch(self, argv: list[str], cwd: Path, env: dict[str, str], stdout: int, stderr: int) -> Child:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "zyra.cli", *argv,
                cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                start_new_session=True,
            )
        except OSError as exc:
            raise LaunchError(f"cannot start {self.python}: {exc}") from exc

        async def wait() -> Exit:
            return Exit.from_returncode(await proc.wait())

        return Child(proc.pid, wait)


class ZygoteLauncher:
    """Forks each run from a zygote process (see zygote.py); starts the zygote on first use."""

    def __init__(self, python: str | None = None, start_timeout: float = 120.0) -> None:
        self.python = python or sys.executable
        self.start_timeout = start_timeout
        self._dir = tempfile.mkdtemp(prefix="zyra-zygote-")
        self.socket_path = os.path.join(self._dir, "zygote.sock")
        self._proc: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Lock | None = None

    async def start(self) -> None:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._proc is not None and self._proc.returncode is None:
                return
            if os.path.exists(self.socket_path):
                os.unlink(self.socket_path)
            env = {**public_env(), "MPLBACKEND": "Agg", "PYTHONPATH": _package_root(os.environ.get("PYTHONPATH"))}
            self._proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "zyrak8s_core.zygote", self.socket_path,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, env=env,
            )
            assert self._proc.stdout is not None
            try:
                line = await asyncio.wait_for(self._proc.stdout.readline(), self.start_timeout)
            except asyncio.TimeoutError:
                line = b""
            if line.decode().strip() != zygote.READY_LINE:
                self._proc.kill()
                raise LaunchError(f"the zygote ({self.python}) did not start; is zyra installed there?")

    async def launch(self, argv: list[str], cwd: Path, env: dict[str, str], stdout: int, stderr: int) -> Child:
        await self.start()
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, self.socket_path)
            request = json.dumps({"argv": argv, "cwd": str(cwd), "env": env}).encode()
            socket.send_fds(sock, [request], [stdout, stderr])
            reply = json.loads(await loop.sock_recv(sock, 65536) or b"{}")
        except (OSError, ValueError) as exc:
            sock.close()
            raise LaunchError(f"zygote: {exc}") from exc
        if "pid" not in reply:
            sock.close()
            raise LaunchError(f"zygote refused the run: {reply.get('error', 'no reply')}")

        async def wait() -> Exit:
            try:
                data = await loop.sock_recv(sock, 65536)
            finally:
                sock.close()
            if not data:  # the zygote died under the run
                return Exit.from_signal(signal.SIGKILL)
            return Exit.from_waitstatus(json.loads(data)["status"])

        return Child(reply["pid"], wait)

    async def close(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 5)
            except asyncio.TimeoutError:
                self._proc.kill()
        self._proc = None


def _package_root(existing: str | None) -> str:
    """Make this package importable by the zygote even when it runs under another interpreter."""
    root = str(Path(__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (root, existing) if p)
