"""The job store: every edit the service accepts, its state, progress, record and result — one SQLite file.

:class:`JobStore` is the small interface the app and the workers use; :class:`SQLiteJobStore` implements it with
one WAL-mode database under the data folder, so several worker processes on one machine claim jobs atomically
and a ``kill -9`` at any moment loses nothing finished. Result images live beside it in :class:`BlobStore`
under content-addressed names (their SHA-256), so a job redone after a crash writes the same file again,
never a second one.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL = (DONE, FAILED, CANCELLED)
MAX_ATTEMPTS = 2
"""A job interrupted while running (its worker killed) is queued again once; interrupted twice, it fails."""


@dataclass
class Job:
    """One accepted edit. ``request`` holds the edit's JSON fields (texts, method, params, seed, model, plan,
    ground), ``image``/``mask`` the blob names of the uploads; ``result``/``result_mask`` the outputs' blob
    names once done; ``progress`` the latest ``{"loop", "step", "total"}``."""

    id: str
    state: str
    request: dict[str, Any]
    image: str
    mask: str | None = None
    session: str | None = None
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    progress: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    error: str | None = None
    error_field: str | None = None
    result: str | None = None
    result_mask: str | None = None
    cancel_requested: bool = False

    def to_public(self) -> dict[str, Any]:
        """What ``GET /v1/jobs/{id}`` shows (no blob names)."""
        return {"id": self.id, "state": self.state, "created": self.created, "started": self.started,
                "finished": self.finished, "attempts": self.attempts, "progress": self.progress,
                "request": self.request, "has_mask": self.mask is not None, "session": self.session,
                "record": self.record, "error": self.error, "error_field": self.error_field,
                "has_result_mask": self.result_mask is not None}


class JobStore(Protocol):
    """What the service needs of a queue; a server-backed one (Postgres ``SKIP LOCKED``, Redis streams) can
    replace SQLite behind it."""

    def submit(self, request: dict[str, Any], image: str, mask: str | None = None, *, session: str | None = None,
               max_queued: int | None = None) -> Job | None: ...
    def get(self, job_id: str) -> Job | None: ...
    def claim(self, worker: str) -> Job | None: ...
    def set_progress(self, job_id: str, progress: dict[str, Any] | None) -> bool: ...
    def finish(self, job_id: str, record: dict[str, Any], result: str, result_mask: str | None) -> bool: ...
    def fail(self, job_id: str, error: str, error_field: str | None = None) -> bool: ...
    def cancel(self, job_id: str) -> Job | None: ...
    def recover(self) -> tuple[int, int]: ...
    def queued(self) -> int: ...
    def session_jobs(self, session: str) -> list[Job]: ...
    def new_session(self) -> str: ...
    def has_session(self, session: str) -> bool: ...
    def undo(self, session: str) -> Job | None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, request TEXT NOT NULL, image TEXT NOT NULL, mask TEXT,
    session TEXT, created REAL NOT NULL, started REAL, finished REAL, attempts INTEGER NOT NULL DEFAULT 0,
    progress TEXT NOT NULL DEFAULT '{}', record TEXT, error TEXT, error_field TEXT, result TEXT, result_mask TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0, worker TEXT, undone INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, created);
CREATE INDEX IF NOT EXISTS jobs_session ON jobs (session, created);
"""


def new_id() -> str:
    """An unguessable job id (128 random bits, URL-safe)."""
    return secrets.token_urlsafe(16)


class SQLiteJobStore:
    """:class:`JobStore` on one SQLite file (WAL journal, so readers never wait on the writer)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(_SCHEMA)  # idempotent; executescript commits on its own

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: safe against kill -9, a power cut may lose the last
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def submit(self, request: dict[str, Any], image: str, mask: str | None = None, *, session: str | None = None,
               max_queued: int | None = None) -> Job | None:
        """Queue a job; ``None`` when ``max_queued`` jobs already wait (the caller answers 429)."""
        job_id = new_id()
        with self._transaction() as db:
            if max_queued is not None:
                (waiting,) = db.execute("SELECT COUNT(*) FROM jobs WHERE state=?", (QUEUED,)).fetchone()
                if waiting >= max_queued:
                    return None
            db.execute("INSERT INTO jobs (id, state, request, image, mask, session, created) VALUES (?,?,?,?,?,?,?)",
                       (job_id, QUEUED, json.dumps(request), image, mask, session, time.time()))
        return self.get(job_id)

    def get(self, job_id: str) -> Job | None:
        row = self._db().execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row is not None else None

    def claim(self, worker: str) -> Job | None:
        """The oldest queued job, now running under ``worker`` (atomic across processes), or ``None``."""
        if self._db().execute("SELECT 1 FROM jobs WHERE state=? LIMIT 1", (QUEUED,)).fetchone() is None:
            return None  # the common idle case, without taking the write lock
        with self._transaction() as db:
            row = db.execute("SELECT id FROM jobs WHERE state=? ORDER BY created, rowid LIMIT 1", (QUEUED,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state=?, started=?, attempts=attempts+1, worker=? WHERE id=?",
                       (RUNNING, time.time(), worker, row["id"]))
        return self.get(row["id"])

    def set_progress(self, job_id: str, progress: dict[str, Any] | None) -> bool:
        """Record progress (``None``: only ask); ``False`` when the job should stop (cancel requested, or no
        longer running)."""
        if progress is not None:
            with self._transaction() as db:
                db.execute("UPDATE jobs SET progress=? WHERE id=? AND state=?",
                           (json.dumps(progress), job_id, RUNNING))
        row = self._db().execute("SELECT state, cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()
        return row is not None and row["state"] == RUNNING and not row["cancel_requested"]

    def finish(self, job_id: str, record: dict[str, Any], result: str, result_mask: str | None) -> bool:
        """Mark a running job done (once: a second finish of the same job changes nothing)."""
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET state=?, finished=?, record=?, result=?, result_mask=? WHERE id=? AND state=?",
                (DONE, time.time(), json.dumps(record), result, result_mask, job_id, RUNNING)).rowcount
        return bool(changed)

    def fail(self, job_id: str, error: str, error_field: str | None = None) -> bool:
        with self._transaction() as db:
            state = CANCELLED if self._cancel_requested(db, job_id) else FAILED
            changed = db.execute("UPDATE jobs SET state=?, finished=?, error=?, error_field=? WHERE id=? AND state=?",
                                 (state, time.time(), error, error_field, job_id, RUNNING)).rowcount
        return bool(changed)

    @staticmethod
    def _cancel_requested(db: sqlite3.Connection, job_id: str) -> bool:
        row = db.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job now, ask a running one to stop (its worker ends it at the next step); a
        finished job is left as it is. ``None`` for an unknown id."""
        with self._transaction() as db:
            db.execute("UPDATE jobs SET state=?, finished=?, error=? WHERE id=? AND state=?",
                       (CANCELLED, time.time(), "cancelled before it started", job_id, QUEUED))
            db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=? AND state=?", (job_id, RUNNING))
        return self.get(job_id)

    def recover(self) -> tuple[int, int]:
        """After a crash: jobs left running go back to the queue once (failed if already retried). Returns
        (re-queued, failed). Call it before starting the workers."""
        with self._transaction() as db:
            failed = db.execute(
                "UPDATE jobs SET state=?, finished=?, error=? WHERE state=? AND attempts>=?",
                (FAILED, time.time(), f"interrupted {MAX_ATTEMPTS} times while running (the service stopped "
                 "each time): submit it again", RUNNING, MAX_ATTEMPTS)).rowcount
            cancelled = db.execute("UPDATE jobs SET state=?, finished=? WHERE state=? AND cancel_requested=1",
                                   (CANCELLED, time.time(), RUNNING)).rowcount
            requeued = db.execute("UPDATE jobs SET state=?, progress='{}' WHERE state=?", (QUEUED, RUNNING)).rowcount
        return requeued, failed + cancelled

    def queued(self) -> int:
        (count,) = self._db().execute("SELECT COUNT(*) FROM jobs WHERE state=?", (QUEUED,)).fetchone()
        return int(count)

    def session_jobs(self, session: str) -> list[Job]:
        """The session's turns still in its history (undone ones left out), oldest first."""
        rows = self._db().execute("SELECT * FROM jobs WHERE session=? AND undone=0 ORDER BY created, rowid",
                                  (session,)).fetchall()
        return [_job(r) for r in rows]

    def new_session(self) -> str:
        session = new_id()
        with self._transaction() as db:
            db.execute("INSERT INTO sessions (id, created) VALUES (?, ?)", (session, time.time()))
        return session

    def has_session(self, session: str) -> bool:
        return self._db().execute("SELECT 1 FROM sessions WHERE id=?", (session,)).fetchone() is not None

    def undo(self, session: str) -> Job | None:
        """Take the session's last turn out of its history (the job and its files stay); the turn undone."""
        with self._transaction() as db:
            row = db.execute("SELECT id FROM jobs WHERE session=? AND undone=0 ORDER BY created DESC, rowid DESC "
                             "LIMIT 1", (session,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET undone=1 WHERE id=?", (row["id"],))
        return self.get(row["id"])


def _job(row: sqlite3.Row) -> Job:
    return Job(id=row["id"], state=row["state"], request=json.loads(row["request"]), image=row["image"],
               mask=row["mask"], session=row["session"], created=row["created"], started=row["started"],
               finished=row["finished"], attempts=row["attempts"], progress=json.loads(row["progress"] or "{}"),
               record=json.loads(row["record"]) if row["record"] else None, error=row["error"],
               error_field=row["error_field"], result=row["result"], result_mask=row["result_mask"],
               cancel_requested=bool(row["cancel_requested"]))


class BlobStore:
    """Files named by their content's SHA-256 under one folder: uploads and results. Names are checked, so no
    user-controlled text ever becomes a path."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, suffix: str = "") -> str:
        """Store ``data`` (atomically: a crash leaves the old file or the whole new one); its name."""
        name = hashlib.sha256(data).hexdigest() + suffix
        target = self.root / name[:2] / name
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            partial = target.with_name(f".{name}.{secrets.token_hex(4)}.part")
            try:
                with open(partial, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
        return name

    def path(self, name: str) -> Path:
        digest, _, suffix = name.partition(".")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or suffix not in ("", "png"):
            raise ValueError(f"not a blob name: {name!r}")
        return self.root / name[:2] / name

    def read(self, name: str) -> bytes:
        return self.path(name).read_bytes()
