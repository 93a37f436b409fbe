"""The gradebook: the class in SQLite — its students, their submissions, every result,
and the instructor's overrides.

A result is keyed by the assignment, its version, a fingerprint of what grading
depends on (manifest, release, dataset, weights, the grader's code, sandbox on or off)
and the submission's content hash, so a rerun skips what is done. Each result is
committed in its own transaction as soon as it exists, so a batch killed at any point
resumes with nothing lost and nothing graded twice. Submissions are kept by student
and path (a newer file at the same path replaces the older), so the class pages show
the whole class whatever subset the last run graded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import time

from grader.results import SubmissionResult
from grader.store.storage import transaction

SCHEMA = (
    # `setting` holds the fingerprint of what grading depends on (grader/context.py); the
    # column keeps its first name so that gradebooks made before stay readable
    """CREATE TABLE IF NOT EXISTS results (
        assignment TEXT NOT NULL, version TEXT NOT NULL, setting TEXT NOT NULL, sha256 TEXT NOT NULL,
        result TEXT NOT NULL, graded_at REAL NOT NULL,
        PRIMARY KEY (assignment, version, setting, sha256))""",
    """CREATE TABLE IF NOT EXISTS submissions (
        assignment TEXT NOT NULL, student TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL,
        submitted_at REAL NOT NULL, how TEXT NOT NULL, known INTEGER NOT NULL, seen_at REAL NOT NULL,
        PRIMARY KEY (assignment, student, path))""",
    """CREATE TABLE IF NOT EXISTS students (
        assignment TEXT NOT NULL, id TEXT NOT NULL, fields TEXT NOT NULL,
        PRIMARY KEY (assignment, id))""",
    """CREATE TABLE IF NOT EXISTS roster_files (
        assignment TEXT NOT NULL, file TEXT NOT NULL, student TEXT NOT NULL, submitted_at TEXT NOT NULL,
        PRIMARY KEY (assignment, file))""",
    """CREATE TABLE IF NOT EXISTS extensions (
        assignment TEXT NOT NULL, student TEXT NOT NULL, due REAL NOT NULL, author TEXT NOT NULL, at REAL NOT NULL,
        PRIMARY KEY (assignment, student))""",
    """CREATE TABLE IF NOT EXISTS published (
        assignment TEXT NOT NULL PRIMARY KEY, at REAL NOT NULL, author TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS overrides (
        assignment TEXT NOT NULL, student TEXT NOT NULL, check_id TEXT NOT NULL,
        points REAL, comment TEXT NOT NULL, author TEXT NOT NULL, at REAL NOT NULL,
        PRIMARY KEY (assignment, student, check_id))""",
)

ADDED = (  # (table, column, its declaration): added to gradebooks made before the column was
    ("submissions", "late", "INTEGER"),  # the LMS's late marker
    ("overrides", "sha256", "TEXT NOT NULL DEFAULT ''"),  # the submission an override was written for
)


@dataclasses.dataclass(frozen=True)
class Stored:
    """A submission as the gradebook keeps it."""

    student: str
    path: str  # where it was found, relative to the submissions folder given
    sha256: str
    submitted_at: float
    how: str
    known: bool
    late: bool | None = None  # what the LMS says of lateness when it gives no time (Canvas's marker); None: nothing


@dataclasses.dataclass(frozen=True)
class Override:
    """The instructor's word on one check of a student (points set, within the check's), or
    on the whole (check_id ""; its points, if any, a bonus), for the submission it was
    written for (its sha256; "" for whichever counts)."""

    student: str
    check_id: str
    points: float | None
    comment: str
    author: str
    at: float
    sha256: str = ""


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


class Gradebook:
    def __init__(self, path: str):
        self.path = path
        self.connection = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        for table in SCHEMA:
            self.connection.execute(table)
        # Columns added since, to a gradebook made before them: looked for and added in one
        # transaction that holds the write lock, as another process may open the same file now.
        if any(not self._has(table, column) for table, column, _ in ADDED):  # else no write lock is taken
            with transaction(self.connection):
                for table, column, declared in ADDED:
                    if not self._has(table, column):
                        self.connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declared}")

    def _has(self, table: str, column: str) -> bool:
        return column in {row[1] for row in self.connection.execute(f"PRAGMA table_info({table})")}

    def get(self, assignment: str, version: str, fingerprint: str, sha256: str) -> tuple[SubmissionResult, float] | None:
        row = self.connection.execute(
            "SELECT result, graded_at FROM results WHERE assignment=? AND version=? AND setting=? AND sha256=?",
            (assignment, version, fingerprint, sha256),
        ).fetchone()
        return (SubmissionResult.from_json(json.loads(row[0])), row[1]) if row else None

    def put(self, fingerprint: str, result: SubmissionResult) -> None:
        with transaction(self.connection):  # one transaction per result
            self.connection.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                (result.assignment, result.version, fingerprint, result.sha256, json.dumps(result.to_json(), sort_keys=True), time.time()),
            )

    def latest(self, assignment: str, version: str, fingerprint: str, sha256: str) -> tuple[SubmissionResult, bool] | None:
        """The result for this content: the current fingerprint's, else the newest under an
        earlier one (then `False`: graded by an earlier version of the grader or the assignment)."""
        current = self.get(assignment, version, fingerprint, sha256)
        if current is not None:
            return current[0], True
        row = self.connection.execute(
            "SELECT result FROM results WHERE assignment=? AND version=? AND sha256=? ORDER BY graded_at DESC LIMIT 1",
            (assignment, version, sha256),
        ).fetchone()
        return (SubmissionResult.from_json(json.loads(row[0])), False) if row else None

    def record(self, assignment: str, submitted: Stored) -> None:
        """Remember a submission (a newer file at the same student's path replaces the older)."""
        with transaction(self.connection):
            self.connection.execute(
                "INSERT OR REPLACE INTO submissions (assignment, student, path, sha256, submitted_at, how, known, seen_at, late)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (assignment, submitted.student, submitted.path, submitted.sha256, submitted.submitted_at, submitted.how,
                 int(submitted.known), time.time(), None if submitted.late is None else int(submitted.late)),
            )

    def submissions(self, assignment: str) -> list[Stored]:
        rows = self.connection.execute(
            "SELECT student, path, sha256, submitted_at, how, known, late FROM submissions WHERE assignment=? ORDER BY student, submitted_at, path",
            (assignment,),
        ).fetchall()
        return [Stored(student, path, sha, at, how, bool(known), None if late is None else bool(late))
                for student, path, sha, at, how, known, late in rows]

    def set_students(self, assignment: str, students: dict[str, dict]) -> None:
        """Keep the roster (student id -> its fields), replacing the one kept before."""
        with transaction(self.connection):
            self.connection.execute("DELETE FROM students WHERE assignment=?", (assignment,))
            self.connection.executemany(
                "INSERT INTO students VALUES (?, ?, ?)",
                [(assignment, key, json.dumps(fields, sort_keys=True)) for key, fields in students.items()],
            )

    def add_student(self, assignment: str, student: str, fields: dict) -> None:
        """Add one student to the roster kept (or change their fields)."""
        with transaction(self.connection):
            self.connection.execute("INSERT OR REPLACE INTO students VALUES (?, ?, ?)",
                                    (assignment, student, json.dumps(fields, sort_keys=True)))

    def set_files(self, assignment: str, files: dict[str, tuple[str, str]]) -> None:
        """Keep the roster's mapping of files to students (file -> (student, submitted_at))."""
        with transaction(self.connection):
            self.connection.execute("DELETE FROM roster_files WHERE assignment=?", (assignment,))
            self.connection.executemany(
                "INSERT INTO roster_files VALUES (?, ?, ?, ?)", [(assignment, f, who, at) for f, (who, at) in files.items()]
            )

    def files(self, assignment: str) -> dict[str, tuple[str, str]]:
        rows = self.connection.execute("SELECT file, student, submitted_at FROM roster_files WHERE assignment=?", (assignment,))
        return {f: (who, at) for f, who, at in rows}

    def students(self, assignment: str) -> dict[str, dict]:
        rows = self.connection.execute("SELECT id, fields FROM students WHERE assignment=? ORDER BY id", (assignment,)).fetchall()
        return {key: json.loads(fields) for key, fields in rows}

    def set_override(self, assignment: str, override: Override) -> None:
        with transaction(self.connection):
            self.connection.execute(
                "INSERT OR REPLACE INTO overrides (assignment, student, check_id, points, comment, author, at, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (assignment, override.student, override.check_id, override.points, override.comment, override.author, override.at, override.sha256),
            )

    def remove_override(self, assignment: str, student: str, check_id: str) -> bool:
        with transaction(self.connection):
            cursor = self.connection.execute(
                "DELETE FROM overrides WHERE assignment=? AND student=? AND check_id=?", (assignment, student, check_id)
            )
        return cursor.rowcount > 0

    def overrides(self, assignment: str) -> dict[str, list[Override]]:
        found: dict[str, list[Override]] = {}
        for row in self.connection.execute(
            "SELECT student, check_id, points, comment, author, at, sha256 FROM overrides WHERE assignment=? ORDER BY student, check_id",
            (assignment,),
        ):
            found.setdefault(row[0], []).append(Override(*row))
        return found

    def set_extension(self, assignment: str, student: str, due: float | None, author: str = "") -> None:
        """A student's own due date (seconds since the epoch), or none (None: the class's)."""
        with transaction(self.connection):
            if due is None:
                self.connection.execute("DELETE FROM extensions WHERE assignment=? AND student=?", (assignment, student))
            else:
                self.connection.execute("INSERT OR REPLACE INTO extensions VALUES (?, ?, ?, ?, ?)", (assignment, student, due, author, time.time()))

    def extensions(self, assignment: str) -> dict[str, float]:
        """Each student's own due date, for those who have one."""
        return dict(self.connection.execute("SELECT student, due FROM extensions WHERE assignment=?", (assignment,)).fetchall())

    def set_published(self, assignment: str, published: bool, author: str = "") -> None:
        """The instructor published the grades (checks shown `after_published` are shown from now), or took them back."""
        with transaction(self.connection):
            if published:
                self.connection.execute("INSERT OR REPLACE INTO published VALUES (?, ?, ?)", (assignment, time.time(), author))
            else:
                self.connection.execute("DELETE FROM published WHERE assignment=?", (assignment,))

    def published(self, assignment: str) -> float | None:
        """When the grades were published (seconds since the epoch), or None."""
        row = self.connection.execute("SELECT at FROM published WHERE assignment=?", (assignment,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.connection.close()
