"""A fork server that has already imported zyra, so a run pays zyra's 1.5-2.5 s import once per worker.

    python -m zyrak8s_core.zygote SOCKET_PATH

The zygote imports `zyra.cli`, then warms itself up: it forks a child that runs a tiny heatmap and a tiny
timeseries on synthetic data, and imports in itself every module those children loaded (learned, not a
hand-kept list). It then serves requests on a SOCK_SEQPACKET Unix socket:

    client -> {"argv": [...], "cwd": "...", "env": {...}} with two fds (stdout, stderr) attached
    zygote -> {"pid": N}            once forked; the child leads its own session (pgid == pid)
    zygote -> {"status": WAITSTATUS} when the child has ended (a signal stays visible)

Each run is its own process, forked from a parent that runs nothing but this loop (single-threaded, so the
fork is safe); the API process never runs zyra code. The zygote dies with the process that started it.
"""

from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import socket
import sys
import tempfile
import traceback
from typing import Any

__all__ = ["serve", "READY_LINE"]

READY_LINE = "zygote ready"


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _run_zyra(argv: list[str]) -> int:
    from zyra import cli

    try:
        code = cli.main(argv)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    return int(code or 0)


def _in_child(request: dict[str, Any], fds: list[int], keep_closed: list[socket.socket]) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        for sock in keep_closed:
            sock.close()
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in (devnull, *fds):
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        sys.argv = ["zyra", *request["argv"]]
        _reseed()
        code = _run_zyra(list(request["argv"]))
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reseed() -> None:
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()


def _warm_up() -> None:
    """Fork children that run small commands; import what they imported."""
    try:
        import numpy as np
    except ImportError:
        return
    with tempfile.TemporaryDirectory(prefix="zygote-warmup-") as tmp:
        np.save(os.path.join(tmp, "a.npy"), np.arange(64, dtype="float32").reshape(8, 8))
        with open(os.path.join(tmp, "ts.csv"), "w") as fh:
            fh.write("time,value\n2024-01-01,1\n2024-01-02,2\n")
        learned: set[str] = set()
        samples = (
            ["visualize", "heatmap", "--input", "a.npy", "--output", "h.png", "--no-coastline", "--no-borders"],
            ["visualize", "timeseries", "--input", "ts.csv", "--x", "time", "--y", "value", "--output", "t.png"],
        )
        for argv in samples:
            learned |= _modules_loaded_by(argv, tmp)
        for name in sorted(learned):
            if name in sys.modules or name.startswith(("__main__", "zyrak8s_core")):
                continue
            try:
                __import__(name)
            except BaseException:  # a module that cannot load in a fresh parent is simply not preloaded
                pass
        # run them once here too: first-use caches (fonts, glyphs, colormaps) then come warm with every fork
        for argv in samples:
            _run_quietly(argv, tmp)


def _run_quietly(argv: list[str], cwd: str) -> None:
    saved_cwd, saved_env = os.getcwd(), dict(os.environ)
    saved_fds = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.chdir(cwd)
        _run_zyra(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in (devnull, *saved_fds):
            os.close(fd)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def _modules_loaded_by(argv: list[str], cwd: str) -> set[str]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.chdir(cwd)
        _run_zyra(argv)
        with os.fdopen(write_end, "w") as out:
            out.write("\n".join(sys.modules))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as inp:
        names = set(inp.read().split())
    os.waitpid(pid, 0)
    return names


class _Server:
    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(path)
        self.listener.listen(64)
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.children: dict[int, socket.socket] = {}

    def serve_forever(self) -> None:
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        self.selector.register(self.listener, selectors.EVENT_READ, self._accept)
        self.selector.register(self.wake_r, selectors.EVENT_READ, self._reap)
        print(READY_LINE, flush=True)
        while True:
            for key, _ in self.selector.select():
                key.data(key.fileobj)

    def _accept(self, _sock: Any) -> None:
        conn, _ = self.listener.accept()
        try:
            data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 2)
            request = json.loads(data)
            if len(fds) != 2:
                raise ValueError("expected two file descriptors")
        except (OSError, ValueError) as exc:
            _send(conn, {"error": str(exc)})
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            _in_child(request, fds, [self.listener, self.wake_r, self.wake_w, *self.children.values()])
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        _send(conn, {"pid": pid})

    def _reap(self, _sock: Any) -> None:
        try:
            while self.wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                _send(conn, {"status": status})
                conn.close()


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    try:
        conn.send(json.dumps(message).encode())
    except OSError:
        pass  # the client went away; the child still gets reaped


def serve(path: str, warm_up: bool = True) -> None:
    _die_with_parent()
    os.environ.setdefault("MPLBACKEND", "Agg")
    import zyra.cli  # noqa: F401  (the point of the zygote)

    if warm_up:
        _warm_up()
    # everything imported so far is shared with every child: keep the collector from touching (and so
    # copying) those pages in each fork
    gc.collect()
    gc.freeze()
    _Server(path).serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1], warm_up=os.environ.get("ZYRA_ZYGOTE_WARM_UP", "1") != "0")
