"""A run's whole stdout and stderr: from the archive once it has ended, from the relay while it runs."""

from __future__ import annotations

import asyncio

from zyrak8s_core import relay as relays
from zyrak8s_core import storage as storages
from zyrak8s_core.runs import RunRecord

__all__ = ["full_logs"]


async def full_logs(record: RunRecord, storage: storages.Storage, relay: relays.Relay, tail_limit: int) -> tuple[str, str]:
    """`tail_limit` is the size the record's tails were cut to: a shorter tail is the whole log."""
    if record.status.final:
        if all(len(t.encode()) < tail_limit for t in (record.stdout_tail, record.stderr_tail)):
            return record.stdout_tail, record.stderr_tail  # the common small run: no storage round trip
        try:
            return await asyncio.gather(
                asyncio.to_thread(_archived, storage, record.job_id, "stdout"),
                asyncio.to_thread(_archived, storage, record.job_id, "stderr"),
            )  # type: ignore[return-value]
        except storages.StorageError:
            return record.stdout_tail, record.stderr_tail  # never archived (canceled while queued, say)
    try:
        events = await relay.snapshot(record.job_id)
    except relays.RelayUnavailable:
        return record.stdout_tail, record.stderr_tail
    return (
        "".join(e.data for e in events if e.kind == "stdout"),
        "".join(e.data for e in events if e.kind == "stderr"),
    )


def _archived(storage: storages.Storage, job_id: str, stream: str) -> str:
    return storage.get_bytes(storages.log_key(job_id, stream)).decode(errors="replace")
