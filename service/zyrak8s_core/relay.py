"""The live relay: one ordered stream of events per run, from the runner to every WebSocket client.

A subscriber always starts from the first event the relay still holds for the run (or after a `seq` it
already has), then follows live, so a late or reconnecting client misses nothing while the stream is
retained. Events carry a per-run sequence number that both backends assign the same way (1, 2, 3...).

Kinds: "stdout" and "stderr" (text chunks), "progress" (a float 0..1), and "end" (the final result as a
dict; nothing follows it).

Two backends: in-process (the embedded default) and Redis streams (any number of API replicas and runner
pods). The relay is for live viewing only: the archive in storage stays the record of a finished run.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "Relay", "MemoryRelay", "RedisRelay", "RelayUnavailable", "from_url"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str  # stdout | stderr | progress | end
    data: Any

    def encode(self) -> str:
        return json.dumps(self.data)


class RelayUnavailable(Exception):
    """The relay's server cannot be reached."""


class Relay(abc.ABC):
    @abc.abstractmethod
    async def publish(self, run_id: str, kind: str, data: Any) -> int:
        """Append one event; returns its seq. Raises RelayUnavailable."""

    @abc.abstractmethod
    async def read(self, run_id: str, after: int, timeout: float) -> list[Event]:
        """Events with seq > after, waiting up to `timeout` seconds for at least one."""

    @abc.abstractmethod
    async def expire(self, run_id: str, seconds: int) -> None:
        """Forget the run's events after `seconds`."""

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def subscribe(self, run_id: str, after: int = 0, poll: float = 1.0) -> AsyncIterator[Event | None]:
        """Replay then follow. Yields None when `poll` seconds pass with nothing new (time to send a
        keepalive or look at the run's record); ends after the "end" event."""
        while True:
            events = await self.read(run_id, after, poll)
            if not events:
                yield None
                continue
            for event in events:
                yield event
                after = event.seq
                if event.kind == "end":
                    return

    async def snapshot(self, run_id: str) -> list[Event]:
        """Every event held for the run (a backend may answer a read with only part of them)."""
        events: list[Event] = []
        while batch := await self.read(run_id, events[-1].seq if events else 0, 0):
            events += batch
        return events


@dataclass
class _Channel:
    events: list[Event] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    expiry: asyncio.TimerHandle | None = None


class MemoryRelay(Relay):
    """In-process relay for one API process (the embedded default)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._channels: dict[str, _Channel] = {}
        self._max_entries = max_entries

    def _channel(self, run_id: str) -> _Channel:
        return self._channels.setdefault(run_id, _Channel())

    async def publish(self, run_id: str, kind: str, data: Any) -> int:
        channel = self._channel(run_id)
        seq = channel.events[-1].seq + 1 if channel.events else 1
        channel.events.append(Event(seq, kind, data))
        if len(channel.events) > self._max_entries:
            del channel.events[: len(channel.events) - self._max_entries]
        channel.changed.set()
        channel.changed = asyncio.Event()
        return seq

    async def read(self, run_id: str, after: int, timeout: float) -> list[Event]:
        channel = self._channel(run_id)
        deadline = time.monotonic() + timeout
        while True:
            # seqs are contiguous, so the first unseen event's index follows from the oldest one held
            found = channel.events[max(0, after - channel.events[0].seq + 1) :] if channel.events else []
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            try:
                await asyncio.wait_for(channel.changed.wait(), remaining)
            except asyncio.TimeoutError:
                return []

    async def expire(self, run_id: str, seconds: int) -> None:
        channel = self._channel(run_id)
        if channel.expiry is not None:
            channel.expiry.cancel()
        loop = asyncio.get_running_loop()
        channel.expiry = loop.call_later(seconds, self._channels.pop, run_id, None)


# INCR a counter and XADD with that number as the entry id, atomically: every event gets the next seq even
# when a run has been retried by a new runner process.
_PUBLISH = """
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'k', ARGV[1], 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return seq
"""


class RedisRelay(Relay):
    """Redis streams: `zyra:relay:<run_id>` holds the events, `zyra:relay:<run_id>:seq` the counter."""

    def __init__(self, url: str, max_entries: int = 100_000, idle_ttl: int = 7 * 24 * 3600) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=None, health_check_interval=10)
        self._max_entries = max_entries
        self._idle_ttl = idle_ttl  # a stream nobody finished still disappears eventually
        self._publish = self._redis.register_script(_PUBLISH)

    @staticmethod
    def _keys(run_id: str) -> list[str]:
        return [f"zyra:relay:{run_id}", f"zyra:relay:{run_id}:seq"]

    async def publish(self, run_id: str, kind: str, data: Any) -> int:
        import redis.exceptions

        try:
            seq = await self._publish(
                keys=self._keys(run_id), args=[kind, json.dumps(data), self._max_entries, self._idle_ttl]
            )
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise RelayUnavailable(str(exc)) from exc
        return int(seq)

    async def read(self, run_id: str, after: int, timeout: float) -> list[Event]:
        import redis.exceptions

        key = self._keys(run_id)[0]
        block = int(timeout * 1000) if timeout > 0 else None
        try:
            reply = await self._redis.xread({key: f"{after}-0"}, count=1000, block=block)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise RelayUnavailable(str(exc)) from exc
        events = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                seq = int(entry_id.split(b"-")[0])
                events.append(Event(seq, fields[b"k"].decode(), json.loads(fields[b"d"])))
        return events

    async def expire(self, run_id: str, seconds: int) -> None:
        import redis.exceptions

        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key in self._keys(run_id):
                    pipe.expire(key, seconds)
                await pipe.execute()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise RelayUnavailable(str(exc)) from exc

    async def ping(self) -> None:
        import redis.exceptions

        try:
            await self._redis.ping()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise RelayUnavailable(str(exc)) from exc

    async def close(self) -> None:
        await self._redis.aclose()


def from_url(url: str | None, max_entries: int = 100_000) -> Relay:
    return RedisRelay(url, max_entries) if url else MemoryRelay(max_entries)
