"""Knowing that the server was asked to stop, before uvicorn starts closing connections.

uvicorn handles SIGTERM/SIGINT itself: it stops accepting, closes WebSockets with 1012 (service restart)
and gives in-flight requests ZYRA_GRACEFUL_TIMEOUT_SECONDS. The application hears of it only at lifespan
shutdown, after all that. Chaining the signal handlers lets a sync request waiting on a long run answer
202 with its job_id at once (the client follows the run elsewhere) instead of being cut off at the timeout,
and lets a WebSocket stream close promptly instead of sitting in a blocking relay read.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable
from types import FrameType
from typing import Any, TypeVar

__all__ = ["Draining"]

T = TypeVar("T")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Draining:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    def install(self) -> None:
        """Wrap the current handlers (uvicorn's): ours sets the event, then theirs runs as before."""
        if threading.current_thread() is not threading.main_thread():
            return  # signals are only delivered to the main thread (e.g. under a test client)
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            previous = signal.getsignal(sig)

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.event.set)
                if callable(previous):
                    previous(signum, frame)
                elif previous != signal.SIG_IGN:  # nobody handled it before us: let it do what it would have
                    signal.signal(signum, signal.SIG_DFL)
                    signal.raise_signal(signum)

            signal.signal(sig, handler)

    async def first(self, work: Awaitable[T]) -> tuple[bool, T | None]:
        """Await `work` unless draining starts first: (True, result) or (False, None) with `work` canceled."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.event.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return True, task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False, None
