"""The workshop server's durable queue of uploads, its links and its secrets (SQLite).

`serve.sqlite` lives beside the gradebook in the output folder. An upload is stored
before it is acknowledged: its file is written and fsync'd (and its folder), then its
row is committed (WAL, synchronous=FULL). Each upload goes

    waiting -> grading -> done (a verdict: graded or ungradable)
                       -> failed (the grader's own fault, after its attempts)
    waiting -> replaced (the student uploaded again before it was graded)

and a server killed at any point finds at its next start the uploads it was grading
back in `waiting` (`requeue_interrupted`), at the front of the queue. Each upload's
`applied` counts the results it was given: exactly one, once it is done.

Uploaded files are named by a random id, never by what the student called them; the
name they gave is kept as text, to show.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
import threading
import time
import uuid

from grader.serve import tokens
from grader.store.storage import transaction as _transaction

FILES = "uploads"  # the output folder's folder of uploaded notebooks
DATABASE = "serve.sqlite"
WAITING, GRADING, DONE, FAILED, REPLACED = "waiting", "grading", "done", "failed", "replaced"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS uploads (
        id INTEGER PRIMARY KEY AUTOINCREMENT, student TEXT NOT NULL, shown_name TEXT NOT NULL,
        stored TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, submitted_at REAL NOT NULL,
        state TEXT NOT NULL, started_at REAL, finished_at REAL,
        status TEXT NOT NULL DEFAULT '', score REAL, max_score REAL, reason TEXT NOT NULL DEFAULT '',
        applied INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS uploads_by_state ON uploads (state, id)",
    "CREATE INDEX IF NOT EXISTS uploads_by_student ON uploads (student, id)",
    """CREATE TABLE IF NOT EXISTS links (
        selector TEXT PRIMARY KEY, digest TEXT NOT NULL, student TEXT NOT NULL, role TEXT NOT NULL, issued_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS links_by_student ON links (student, role)",
    "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
# An upload's round: how many of its student's earlier uploads were (or are being) graded;
# the queue grades by round, so one student's many uploads never keep another's first waiting.
ROUND = ("(SELECT COUNT(*) FROM uploads AS earlier WHERE earlier.student = uploads.student AND earlier.id < uploads.id "
         "AND earlier.state IN ('grading', 'done', 'failed'))")
STUDENT, ADMIN, PROJECTOR = "student", "admin", "projector"  # a link's role: what its pages show


@dataclasses.dataclass(frozen=True)
class Upload:
    id: int
    student: str
    shown_name: str  # what the student called the file (text to show, never a path)
    stored: str  # the file's name under uploads/
    sha256: str
    size: int
    submitted_at: float
    state: str
    started_at: float | None
    finished_at: float | None
    status: str  # the verdict's: graded, ungradable ("" until done)
    score: float | None
    max_score: float | None
    reason: str
    applied: int

    @property
    def name(self) -> str:
        """The attempt's name in the gradebook and its pages' folder: upload-<id>."""
        return f"upload-{self.id}"


COLUMNS = ", ".join(f.name for f in dataclasses.fields(Upload))


class Queue:
    """The queue in `out_dir`; safe to use from any thread (a connection per thread)."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.folder = os.path.join(out_dir, FILES)
        self.path = os.path.join(out_dir, DATABASE)
        self._local = threading.local()
        os.makedirs(self.folder, exist_ok=True)
        with self._db() as db:
            for statement in SCHEMA:
                db.execute(statement)

    def _db(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            self._local.connection = connection
        return connection

    # --- uploads ---------------------------------------------------------------------

    def file_of(self, upload: Upload) -> str:
        return os.path.join(self.folder, upload.stored)

    def incoming(self, data: bytes) -> str:
        """Write `data` to a new file under uploads/ (not yet durable, not yet queued)."""
        path = os.path.join(self.folder, f".incoming-{uuid.uuid4().hex}")
        with open(path, "xb") as handle:
            handle.write(data)
        return path

    def add(self, student: str, shown_name: str, incoming: str, submitted_at: float | None = None) -> tuple[Upload, list[Upload]]:
        """Queue the file at `incoming` for `student`, durably; returns the upload and the
        waiting uploads of the student it replaced (their files are removed)."""
        stored = f"{uuid.uuid4().hex}.ipynb"
        with open(incoming, "rb") as handle:
            data = handle.read()
            os.fsync(handle.fileno())
        os.replace(incoming, os.path.join(self.folder, stored))
        _fsync_folder(self.folder)
        now = time.time() if submitted_at is None else submitted_at
        db = self._db()
        with _transaction(db):
            replaced = self._select("WHERE student=? AND state=?", (student, WAITING))
            db.execute("UPDATE uploads SET state=?, finished_at=? WHERE student=? AND state=?", (REPLACED, now, student, WAITING))
            cursor = db.execute(
                "INSERT INTO uploads (student, shown_name, stored, sha256, size, submitted_at, state) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (student, shown_name, stored, hashlib.sha256(data).hexdigest(), len(data), now, WAITING),
            )
        for old in replaced:
            _remove(self.file_of(old))
        return self.get(cursor.lastrowid), replaced

    def claim(self, limit: int) -> list[Upload]:
        """The waiting uploads graded next, at most `limit`, now marked as being graded: by
        round (a student's first upload before anyone's second, a second before anyone's
        third), then oldest first."""
        db = self._db()
        with _transaction(db):
            claimed = self._select(f"WHERE state=? ORDER BY {ROUND}, id LIMIT ?", (WAITING, limit))
            now = time.time()
            db.executemany("UPDATE uploads SET state=?, started_at=? WHERE id=?", [(GRADING, now, u.id) for u in claimed])
        return [dataclasses.replace(u, state=GRADING, started_at=now) for u in claimed]

    def requeue_interrupted(self) -> int:
        """Uploads a killed server was grading go back to waiting (they keep their place)."""
        db = self._db()
        with _transaction(db):
            return db.execute("UPDATE uploads SET state=?, started_at=NULL WHERE state=?", (WAITING, GRADING)).rowcount

    def finish(self, upload: Upload, state: str, status: str, score: float, max_score: float, reason: str) -> None:
        """Record an upload's result (`state`: DONE, or FAILED for the grader's own fault)."""
        with _transaction(self._db()) as db:
            db.execute(
                "UPDATE uploads SET state=?, status=?, score=?, max_score=?, reason=?, finished_at=?, applied=applied+1 WHERE id=?",
                (state, status, score, max_score, reason, time.time(), upload.id),
            )

    def get(self, upload_id: int) -> Upload | None:
        found = self._select("WHERE id=?", (upload_id,))
        return found[0] if found else None

    def of_student(self, student: str) -> list[Upload]:
        return self._select("WHERE student=? ORDER BY id DESC", (student,))

    def by_name(self, name: str) -> Upload | None:
        """The upload whose attempt is called `name` (upload-<id>)."""
        prefix, _, number = name.partition("-")
        return self.get(int(number)) if prefix == "upload" and number.isdigit() and len(number) < 12 else None

    def in_line(self) -> list[Upload]:
        """Waiting and grading uploads, in the order they are graded."""
        return self._select(f"WHERE state IN (?, ?) ORDER BY state='waiting', {ROUND}, id", (GRADING, WAITING))

    def round_of(self, upload: Upload) -> int:
        """How many of the student's uploads before this one were (or are being) graded."""
        return self._db().execute(f"SELECT {ROUND} FROM uploads WHERE id=?", (upload.id,)).fetchone()[0]

    def recent(self, limit: int) -> list[Upload]:
        return self._select("WHERE state IN (?, ?) ORDER BY finished_at DESC LIMIT ?", (DONE, FAILED, limit))

    def ahead_of(self, upload: Upload) -> int:
        """Uploads graded before this waiting one: every one being graded and every waiting
        one of an earlier round, or of its round and older."""
        mine = self.round_of(upload)
        return self._db().execute(
            f"SELECT COUNT(*) FROM uploads WHERE state=? OR (state=? AND ({ROUND} < ? OR ({ROUND} = ? AND id<?)))",
            (GRADING, WAITING, mine, mine, upload.id)
        ).fetchone()[0]

    def counts(self) -> dict[str, int]:
        rows = self._db().execute("SELECT state, COUNT(*) FROM uploads GROUP BY state").fetchall()
        return {WAITING: 0, GRADING: 0, DONE: 0, FAILED: 0, REPLACED: 0, **dict(rows)}

    def seconds_per_upload(self, last: int = 20) -> float | None:
        """How long an upload takes, from the last ones graded: the smaller of their mean
        time in grading (right when they came one at a time) and the mean time between
        their results (right when they came at once, and waited for each other)."""
        rows = self._db().execute(
            "SELECT started_at, finished_at FROM uploads WHERE state=? AND started_at IS NOT NULL "
            "ORDER BY finished_at DESC LIMIT ?", (DONE, last)
        ).fetchall()
        if not rows:
            return None
        figures = [sum(end - start for start, end in rows) / len(rows)]
        if len(rows) > 1:
            figures.append((rows[0][1] - rows[-1][1]) / (len(rows) - 1))
        return min(figures)

    def sweep_orphans(self) -> int:
        """Remove files under uploads/ that no queued upload names (a server killed while
        storing one, before it was acknowledged; or one replaced)."""
        wanted = {row[0] for row in self._db().execute("SELECT stored FROM uploads WHERE state NOT IN (?)", (REPLACED,))}
        removed = 0
        for name in os.listdir(self.folder):
            if name not in wanted:
                _remove(os.path.join(self.folder, name))
                removed += 1
        return removed

    def _select(self, where: str, parameters: tuple) -> list[Upload]:
        rows = self._db().execute(f"SELECT {COLUMNS} FROM uploads {where}", parameters).fetchall()
        return [Upload(*row) for row in rows]

    # --- links and secrets -----------------------------------------------------------

    def issue_link(self, student: str, role: str = STUDENT) -> str:
        """A new token for `student` (or the admin), replacing any they had; returns it."""
        token, selector, stored = tokens.issue()
        with _transaction(self._db()) as db:
            db.execute("DELETE FROM links WHERE student=? AND role=?", (student, role))
            db.execute("INSERT INTO links VALUES (?, ?, ?, ?, ?)", (selector, stored, student, role, time.time()))
        return token

    def holder(self, token: str, role: str = STUDENT) -> str | None:
        """The student (or admin) a token was issued to, or None."""
        parts = tokens.split(token)
        if parts is None:
            return None
        row = self._db().execute("SELECT digest, student FROM links WHERE selector=? AND role=?", (parts[0], role)).fetchone()
        if row is None:
            tokens.matches("0" * 64, parts[1])  # the same work as a match: no timing difference
            return None
        return row[1] if tokens.matches(row[0], parts[1]) else None

    def linked(self, role: str = STUDENT) -> set[str]:
        return {row[0] for row in self._db().execute("SELECT student FROM links WHERE role=?", (role,))}

    def setting(self, name: str, make) -> str:
        """A setting kept across restarts, made by `make()` the first time."""
        db = self._db()
        with _transaction(db):
            row = db.execute("SELECT value FROM settings WHERE name=?", (name,)).fetchone()
            if row is not None:
                return row[0]
            value = make()
            db.execute("INSERT INTO settings VALUES (?, ?)", (name, value))
        return value

    def set_setting(self, name: str, value: str) -> None:
        with _transaction(self._db()) as db:
            db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (name, value))

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


def _fsync_folder(folder: str) -> None:
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
