"""Run records of the embedded default, in one SQLite file that survives restarts.

Each row keeps the whole record as JSON beside the few columns that are queried. Statements are short and
run on the event loop's thread; WAL mode keeps readers off the writer's back.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from zyrak8s_core.runs import RunRecord, Status

__all__ = ["RecordStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    job_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    owner TEXT,
    idempotency_key TEXT,
    pid INTEGER,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_idempotency ON runs(owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
"""


class RecordStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def insert(self, record: RunRecord) -> RunRecord | None:
        """Store a new record; when its idempotency key is taken, return the existing record instead."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO runs (job_id, status, owner, idempotency_key, created_at, body) VALUES (?,?,?,?,?,?)",
                    (
                        record.job_id,
                        record.status.value,
                        record.owner,
                        record.idempotency_key,
                        record.created_at.isoformat(),
                        record.model_dump_json(),
                    ),
                )
                return None
            except sqlite3.IntegrityError:
                row = self._db.execute(
                    "SELECT body FROM runs WHERE owner IS ? AND idempotency_key = ?",
                    (record.owner, record.idempotency_key),
                ).fetchone()
                if row is None:
                    raise
                return RunRecord.model_validate_json(row[0])

    def update(self, record: RunRecord) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE runs SET status = ?, body = ? WHERE job_id = ?",
                (record.status.value, record.model_dump_json(), record.job_id),
            )

    def set_pid(self, job_id: str, pid: int | None) -> None:
        with self._lock:
            self._db.execute("UPDATE runs SET pid = ? WHERE job_id = ?", (pid, job_id))

    def get(self, job_id: str) -> RunRecord | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM runs WHERE job_id = ?", (job_id,)).fetchone()
        return RunRecord.model_validate_json(row[0]) if row else None

    def unfinished(self) -> list[tuple[RunRecord, int | None]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body, pid FROM runs WHERE status IN (?, ?) ORDER BY created_at",
                (Status.queued.value, Status.running.value),
            ).fetchall()
        return [(RunRecord.model_validate_json(body), pid) for body, pid in rows]

    def count(self, status: Status) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM runs WHERE status = ?", (status.value,)).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
