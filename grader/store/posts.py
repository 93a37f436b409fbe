"""Scores posted to a course's LMS (LTI's Assignment and Grade Services), kept in the gradebook.

Each score the grader means to post is a row, made before it is sent and marked once the
LMS answered: `waiting` (to send, from `next_try` on), `posted`, `refused` (the LMS said no
for good: its answer is kept), `superseded` (a newer score of the same student was made
before this one was sent). A row's timestamp is the score's AGS timestamp, later than every
earlier row's of the same student: the LMS keeps the latest and drops an older one, so a
score sent twice (a crash between the LMS's answer and the mark) changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import time

from grader.store.gradebook import Gradebook
from grader.store.storage import transaction

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS lti_posts (
        assignment TEXT NOT NULL, student TEXT NOT NULL, user_id TEXT NOT NULL, score REAL NOT NULL, maximum REAL NOT NULL,
        comment TEXT NOT NULL, timestamp REAL NOT NULL, state TEXT NOT NULL, tries INTEGER NOT NULL, next_try REAL NOT NULL,
        answer TEXT NOT NULL, PRIMARY KEY (assignment, student, timestamp))""",
    # the course's services as the last launch named them (line items, members, the link)
    "CREATE TABLE IF NOT EXISTS lti_context (assignment TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)",
)
WAITING, POSTED, REFUSED, SUPERSEDED = "waiting", "posted", "refused", "superseded"


@dataclasses.dataclass(frozen=True)
class Post:
    student: str
    user_id: str
    score: float
    maximum: float
    comment: str
    timestamp: float  # seconds since the epoch, to the millisecond
    state: str = WAITING
    tries: int = 0
    next_try: float = 0.0
    answer: str = ""


COLUMNS = "student, user_id, score, maximum, comment, timestamp, state, tries, next_try, answer"


class Posts:
    """The posts of one assignment in a gradebook."""

    def __init__(self, book: Gradebook, assignment: str):
        self.db, self.assignment = book.connection, assignment
        for statement in SCHEMA:
            self.db.execute(statement)

    def latest(self) -> dict[str, Post]:
        """Each student's newest post that is not superseded (what the LMS has, or will have)."""
        rows = self.db.execute(f"SELECT {COLUMNS} FROM lti_posts WHERE assignment=? AND state != ? ORDER BY timestamp",
                               (self.assignment, SUPERSEDED)).fetchall()
        return {post.student: post for post in (Post(*row) for row in rows)}

    def add(self, student: str, user_id: str, score: float, maximum: float, comment: str) -> Post:
        """A new score to post for `student`, later than any before; their posts still waiting are superseded."""
        with transaction(self.db):
            last = self.db.execute("SELECT MAX(timestamp) FROM lti_posts WHERE assignment=? AND student=?",
                                   (self.assignment, student)).fetchone()[0]
            moment = max(round(time.time(), 3), round((last or 0) + 0.001, 3))
            self.db.execute("UPDATE lti_posts SET state=? WHERE assignment=? AND student=? AND state=?",
                            (SUPERSEDED, self.assignment, student, WAITING))
            post = Post(student, user_id, score, maximum, comment, moment)
            self.db.execute(f"INSERT INTO lti_posts (assignment, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (self.assignment, *dataclasses.astuple(post)))
        return post

    def due(self, now: float) -> list[Post]:
        rows = self.db.execute(f"SELECT {COLUMNS} FROM lti_posts WHERE assignment=? AND state=? AND next_try <= ? ORDER BY timestamp",
                               (self.assignment, WAITING, now)).fetchall()
        return [Post(*row) for row in rows]

    def waiting(self) -> list[Post]:
        return self.due(float("inf"))

    def mark(self, post: Post, state: str, answer: str = "", retry_at: float = 0.0) -> None:
        """What came of sending `post`: POSTED, REFUSED, or WAITING again from `retry_at`."""
        with transaction(self.db):
            self.db.execute("UPDATE lti_posts SET state=?, tries=tries+1, next_try=?, answer=? "
                            "WHERE assignment=? AND student=? AND timestamp=? AND state=?",
                            (state, retry_at, answer[:500], self.assignment, post.student, post.timestamp, WAITING))

    def all(self) -> list[Post]:
        rows = self.db.execute(f"SELECT {COLUMNS} FROM lti_posts WHERE assignment=? ORDER BY timestamp", (self.assignment,)).fetchall()
        return [Post(*row) for row in rows]

    def context(self) -> dict:
        row = self.db.execute("SELECT value FROM lti_context WHERE assignment=?", (self.assignment,)).fetchone()
        return json.loads(row[0]) if row else {}

    def set_context(self, value: dict) -> None:
        with transaction(self.db):
            self.db.execute("INSERT OR REPLACE INTO lti_context VALUES (?, ?)", (self.assignment, json.dumps(value, sort_keys=True)))
