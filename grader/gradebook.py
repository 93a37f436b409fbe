"""The gradebook: every result in SQLite, keyed so a rerun skips what is done.

A row is keyed by the assignment, its version, a fingerprint of what grading
depends on (manifest, dataset, weights, grader version, sandbox on or off) and the
submission's content hash. Each result is committed in its own transaction as soon
as it exists, so a batch killed at any point resumes with nothing lost and nothing
graded twice.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time

from grader.results import CheckResult, SubmissionResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    assignment TEXT NOT NULL,
    version TEXT NOT NULL,
    setting TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    result TEXT NOT NULL,
    graded_at REAL NOT NULL,
    PRIMARY KEY (assignment, version, setting, sha256)
)
"""


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def result_from_json(data: dict) -> SubmissionResult:
    fields = dict(data)
    fields["checks"] = tuple(CheckResult(**check) for check in data.get("checks", []))
    fields["cells"] = tuple(data.get("cells", []))
    return SubmissionResult(**fields)


class Gradebook:
    def __init__(self, path: str):
        self.path = path
        self.connection = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.execute(SCHEMA)

    def get(self, assignment: str, version: str, setting: str, sha256: str) -> tuple[SubmissionResult, float] | None:
        row = self.connection.execute(
            "SELECT result, graded_at FROM results WHERE assignment=? AND version=? AND setting=? AND sha256=?",
            (assignment, version, setting, sha256),
        ).fetchone()
        return (result_from_json(json.loads(row[0])), row[1]) if row else None

    def put(self, setting: str, result: SubmissionResult) -> None:
        with self.connection:  # one transaction per result
            self.connection.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                (result.assignment, result.version, setting, result.sha256, json.dumps(result.to_json(), sort_keys=True), time.time()),
            )

    def count(self) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        self.connection.close()
