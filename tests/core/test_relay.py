"""The live relay, the same on both backends: in-process (MemoryRelay) and Redis streams on a real redis-server.
Also the runner's Publisher, which must deliver what it buffered while Redis was away."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from zyrak8s_core import relay as relays
from zyrak8s_core.runner import Publisher


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


def new_run() -> str:
    return "run-" + secrets.token_hex(8)


@pytest.fixture(params=["memory", "redis"])
def make_relay(request: pytest.FixtureRequest) -> Callable[..., relays.Relay]:
    """Relays are made inside the test's event loop (redis.asyncio binds its connections to it)."""
    if request.param == "memory":
        return lambda **kw: relays.MemoryRelay(**kw)
    url = request.getfixturevalue("redis_server").url
    return lambda **kw: relays.RedisRelay(url, **kw)


def shape(events: list[relays.Event]) -> list[tuple[int, str, Any]]:
    return [(e.seq, e.kind, e.data) for e in events]


def test_publish_assigns_contiguous_seqs_and_read_returns_them_in_order(make_relay) -> None:
    async def main() -> None:
        relay = make_relay()
        rid = new_run()
        seqs = [
            await relay.publish(rid, "stdout", "hello\n"),
            await relay.publish(rid, "progress", 0.25),
            await relay.publish(rid, "stderr", "warn ü\n"),
            await relay.publish(rid, "end", {"exit_code": 0, "status": "succeeded"}),
        ]
        assert seqs == [1, 2, 3, 4]
        assert shape(await relay.read(rid, 0, 0)) == [
            (1, "stdout", "hello\n"),
            (2, "progress", 0.25),
            (3, "stderr", "warn ü\n"),
            (4, "end", {"exit_code": 0, "status": "succeeded"}),
        ]
        assert shape(await relay.read(rid, 2, 0)) == shape(await relay.read(rid, 0, 0))[2:]
        assert await relay.read(rid, 4, 0) == []
        assert await relay.snapshot(rid) == await relay.read(rid, 0, 0)
        # runs do not see each other's events
        assert await relay.read(new_run(), 0, 0) == []
        await relay.close()

    run(main())


def test_read_waits_for_the_next_event(make_relay) -> None:
    async def main() -> None:
        relay = make_relay()
        rid = new_run()
        await relay.publish(rid, "stdout", "a")
        assert await relay.read(rid, 1, 0.2) == []  # nothing new: an empty answer once the wait is over
        waiting = asyncio.create_task(relay.read(rid, 1, 30))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await relay.publish(rid, "stdout", "b")
        assert shape(await waiting) == [(2, "stdout", "b")]
        await relay.close()

    run(main())


def test_subscribe_replays_then_follows_and_ends_at_end(make_relay) -> None:
    async def main() -> None:
        relay = make_relay()
        rid = new_run()
        await relay.publish(rid, "stdout", "one\n")
        await relay.publish(rid, "stdout", "two\n")
        got: list[relays.Event | None] = []

        async def follow(after: int = 0) -> list[relays.Event | None]:
            seen: list[relays.Event | None] = []
            async for event in relay.subscribe(rid, after=after, poll=0.1):
                seen.append(event)
            return seen

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.35)  # a few polls with nothing new: keepalive points (None)
        await relay.publish(rid, "progress", 0.5)
        await relay.publish(rid, "end", {"status": "succeeded"})
        await relay.publish(rid, "stdout", "after the end\n")  # nobody is to read past "end"
        got = await follower
        assert None in got
        events = [e for e in got if e is not None]
        assert shape(events) == [
            (1, "stdout", "one\n"), (2, "stdout", "two\n"), (3, "progress", 0.5), (4, "end", {"status": "succeeded"}),
        ]
        # a late subscriber replays from the first event; one that has seen seq 2 gets the rest exactly once
        late = [e for e in await follow() if e is not None]
        assert shape(late) == shape(events)
        rest = [e for e in await follow(after=2) if e is not None]
        assert [e.seq for e in rest] == [3, 4]
        await relay.close()

    run(main())


def test_subscribe_pages_through_a_long_stream(make_relay) -> None:
    async def main() -> None:
        relay = make_relay()
        rid = new_run()
        for i in range(2500):
            await relay.publish(rid, "stdout", f"{i}\n")
        await relay.publish(rid, "end", {})
        seqs = [e.seq async for e in relay.subscribe(rid, poll=0.1) if e is not None]
        assert seqs == list(range(1, 2502))
        await relay.close()

    run(main())


def test_snapshot_holds_every_event_of_a_long_stream(make_relay) -> None:
    """What GET /jobs/{id} shows of a running run: all of it, however many chunks."""

    async def main() -> None:
        relay = make_relay()
        rid = new_run()
        for i in range(2500):
            await relay.publish(rid, "stdout", f"{i}\n")
        snapshot = await relay.snapshot(rid)
        assert [e.seq for e in snapshot] == list(range(1, 2501))
        assert "".join(e.data for e in snapshot) == "".join(f"{i}\n" for i in range(2500))
        await relay.close()

    run(main())


def test_expire_forgets_the_run(make_relay) -> None:
    async def main() -> None:
        relay = make_relay()
        rid, kept = new_run(), new_run()
        await relay.publish(rid, "stdout", "x")
        await relay.publish(kept, "stdout", "y")
        await relay.expire(rid, 1)
        assert len(await relay.read(rid, 0, 0)) == 1  # still there until the time is up
        await asyncio.sleep(1.6)
        assert await relay.read(rid, 0, 0) == []
        assert len(await relay.read(kept, 0, 0)) == 1
        await relay.close()

    run(main())


def test_memory_relay_keeps_the_newest_entries() -> None:
    async def main() -> None:
        relay = relays.MemoryRelay(max_entries=3)
        rid = new_run()
        for i in range(5):
            await relay.publish(rid, "stdout", str(i))
        assert shape(await relay.read(rid, 0, 0)) == [(3, "stdout", "2"), (4, "stdout", "3"), (5, "stdout", "4")]
        assert [e.seq for e in await relay.read(rid, 1, 0)] == [3, 4, 5]
        assert [e.seq for e in await relay.read(rid, 4, 0)] == [5]

    run(main())


def test_redis_seqs_continue_across_publishers(redis_server) -> None:
    """A run retried by a new runner process (a new connection) continues the same sequence."""

    async def main() -> None:
        first, second = relays.RedisRelay(redis_server.url), relays.RedisRelay(redis_server.url)
        rid = new_run()
        assert [await first.publish(rid, "stdout", "a"), await first.publish(rid, "stdout", "b")] == [1, 2]
        assert await second.publish(rid, "stderr", "c") == 3
        assert shape(await first.read(rid, 0, 0)) == [(1, "stdout", "a"), (2, "stdout", "b"), (3, "stderr", "c")]
        await first.close()
        await second.close()

    run(main())


def test_from_url_picks_the_backend(redis_server) -> None:
    async def main() -> None:
        assert isinstance(relays.from_url(None), relays.MemoryRelay)
        relay = relays.from_url(redis_server.url)
        assert isinstance(relay, relays.RedisRelay)
        await relay.ping()
        await relay.close()

    run(main())


def test_redis_relay_unavailable_while_redis_is_down(redis_factory) -> None:
    server = redis_factory()

    async def main() -> None:
        relay = relays.RedisRelay(server.url)
        rid = new_run()
        assert await relay.publish(rid, "stdout", "before") == 1
        server.stop()
        for call in (
            lambda: relay.publish(rid, "stdout", "during"),
            lambda: relay.read(rid, 0, 0),
            lambda: relay.read(rid, 1, 0.5),
            lambda: relay.ping(),
            lambda: relay.expire(rid, 10),
        ):
            with pytest.raises(relays.RelayUnavailable):
                await call()
        server.start()  # same port, no data kept
        await relay.ping()
        assert await relay.publish(rid, "stdout", "after") == 1
        assert shape(await relay.read(rid, 0, 0)) == [(1, "stdout", "after")]
        await relay.close()

    run(main())


def test_publisher_delivers_what_it_buffered_once_redis_is_back(redis_factory) -> None:
    server = redis_factory()

    async def main() -> None:
        relay = relays.RedisRelay(server.url)
        rid = new_run()
        publisher = Publisher(relay, rid)
        publisher.emit("stdout", "started\n")
        for _ in range(100):  # delivered while Redis is up
            if await relay.read(rid, 0, 0):
                break
            await asyncio.sleep(0.02)
        server.stop()
        publisher.emit("stdout", "line 1\n")
        publisher.emit("stdout", "line 2\n")  # adjacent chunks of one stream are merged
        publisher.emit("progress", 0.5)
        publisher.emit("stderr", "oops\n")
        publisher.emit("stdout", "line 3\n")
        await asyncio.sleep(1.0)  # the publisher retries meanwhile, and must not lose or reorder anything
        server.start()
        # the first event went out before the restart, which lost Redis' data (no persistence)
        assert await publisher.close(timeout=30) is True
        assert shape(await relay.read(rid, 0, 0)) == [
            (1, "stdout", "line 1\nline 2\n"), (2, "progress", 0.5), (3, "stderr", "oops\n"), (4, "stdout", "line 3\n"),
        ]
        assert publisher.dropped == 0
        await relay.close()

    run(main())


def test_publisher_gives_up_after_its_timeout_when_redis_stays_down(redis_factory) -> None:
    server = redis_factory()

    async def main() -> None:
        relay = relays.RedisRelay(server.url)
        server.stop()
        publisher = Publisher(relay, new_run())
        publisher.emit("stdout", "lost\n")
        assert await publisher.close(timeout=1.0) is False
        await relay.close()

    run(main())


def test_publisher_buffer_is_bounded_and_drops_the_oldest() -> None:
    async def main() -> None:
        relay = relays.MemoryRelay()
        rid = new_run()
        publisher = Publisher(relay, rid, max_buffered=3)
        for i in range(5):  # alternating kinds: nothing merges; the pump has not run yet
            publisher.emit("stdout" if i % 2 == 0 else "stderr", str(i))
        assert await publisher.close(timeout=5) is True
        assert publisher.dropped == 2
        assert [(e.kind, e.data) for e in await relay.read(rid, 0, 0)] == [("stdout", "2"), ("stderr", "3"), ("stdout", "4")]

    run(main())




def redis_command(server, *args: str) -> bytes:
    import socket

    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(("*%d\r\n" % len(args) + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)).encode())
        return sock.recv(256)


def test_publisher_loses_no_chunk_emitted_while_one_is_in_flight(redis_server) -> None:
    """A chunk that arrives while the previous one is still on its way to Redis must not be merged into that
    one (which the publisher then drops as sent). Redis' own CLIENT PAUSE holds the publish in flight."""

    async def main() -> None:
        relay = relays.RedisRelay(redis_server.url)
        rid = new_run()
        publisher = Publisher(relay, rid)
        publisher.emit("stdout", "a\n")
        while not await relay.read(rid, 0, 0):
            await asyncio.sleep(0.01)
        assert redis_command(redis_server, "CLIENT", "PAUSE", "400", "WRITE").startswith(b"+OK")
        publisher.emit("stdout", "b\n")  # goes out at once and waits in Redis
        await asyncio.sleep(0.1)
        publisher.emit("stdout", "c\n")  # arrives meanwhile
        publisher.emit("stdout", "d\n")
        assert await publisher.close(timeout=30) is True
        events = await relay.read(rid, 0, 0)
        assert "".join(e.data for e in events) == "a\nb\nc\nd\n"
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        await relay.close()

    run(main())
