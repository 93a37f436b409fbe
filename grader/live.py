"""What the workshop server's live pages show, computed from the queue and the gradebook.

The class view (one build of every student's row) is made once per change of the
queue or the gradebook and shared by every page asked for until the next change, so a
projector and a class of students polling cost one build per change, not one per
request. Values only: the templates (`_student_live.html.j2`, `_admin_live.html.j2`)
format them.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import secrets
import threading

from grader import classreport, classview, gradebook, uploads

RECENT = 12  # finished uploads listed on the admin page


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The class and the queue at one version."""

    version: str
    view: classview.ClassView
    in_line: tuple[uploads.Upload, ...]  # grading first, then waiting, in the order they are graded
    counts: dict
    recent: tuple[uploads.Upload, ...]
    seconds_per_upload: float | None

    def row(self, student: str) -> classview.Row | None:
        return next((row for row in self.view.rows if row.student == student), None)


class Live:
    """The current snapshot, made again after `changed()`; safe to use from any thread."""

    def __init__(self, queue: uploads.Queue, book_path: str, facts: classview.ClassFacts, jobs: int):
        self.queue, self.book_path, self.facts, self.jobs = queue, book_path, facts, jobs
        self._boot = secrets.token_hex(4)  # a restarted server's versions never match an old page's
        self._counter = itertools.count(1)
        self._version = f"{self._boot}-0"
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._local = threading.local()

    @property
    def version(self) -> str:
        return self._version

    def changed(self) -> None:
        self._version = f"{self._boot}-{next(self._counter)}"

    def snapshot(self) -> Snapshot:
        with self._lock:  # one build per version, whichever request comes first
            version = self._version
            if self._snapshot is None or self._snapshot.version != version:
                self._snapshot = self._build(version)
            return self._snapshot

    def _build(self, version: str) -> Snapshot:
        book = getattr(self._local, "book", None)
        if book is None:
            book = self._local.book = gradebook.Gradebook(self.book_path)
        return Snapshot(version, classview.build(book, self.facts), tuple(self.queue.in_line()), self.queue.counts(),
                        tuple(self.queue.recent(RECENT)), self.queue.seconds_per_upload())


def student_page(snapshot: Snapshot, queue: uploads.Queue, student: str, jobs: int) -> dict:
    """A student's live part: their newest upload's state, and every upload with its score."""
    row = snapshot.row(student)
    attempts = {a.stored.path: a for a in row.attempts} if row else {}
    place = {u.id: n for n, u in enumerate(snapshot.in_line)}
    shown = []
    for upload in queue.of_student(student):
        attempt = attempts.get(f"{upload.name}.ipynb")
        shown.append({
            "upload": upload,
            "ahead": place.get(upload.id, 0) if upload.state in (uploads.WAITING, uploads.GRADING) else None,
            "wait": _wait(place.get(upload.id, 0), snapshot.seconds_per_upload, jobs) if upload.state == uploads.WAITING else None,
            "attempt": attempt,
            "scorecard": upload.state in (uploads.DONE, uploads.FAILED),
            "submitted": classreport.when(upload.submitted_at),
        })
    return {"uploads": shown, "row": row, "latest": shown[0] if shown else None}


def admin_page(snapshot: Snapshot) -> dict:
    """The projector's live part: the queue, the class table, the distribution, where the class is stuck."""
    view = snapshot.view
    line = [{"upload": u, "position": n + 1, "submitted": classreport.when(u.submitted_at)} for n, u in enumerate(snapshot.in_line)]
    recent = [{"upload": u, "finished": classreport.when(u.finished_at or u.submitted_at)} for u in snapshot.recent]
    return {
        "view": view, "rows": view.rows, "check_ids": view.check_ids, "notes": view.notes(), "counts": snapshot.counts,
        "line": line, "recent": recent, "when": classreport.when, **classreport.summary(view),
    }


def _wait(ahead: int, seconds_per_upload: float | None, jobs: int) -> int | None:
    """About how long until an upload's scorecard, in seconds (None: no figure yet)."""
    if not seconds_per_upload:
        return None
    return round(seconds_per_upload * (ahead // max(1, jobs) + 1))


def attempt_file(out_dir: str, snapshot: Snapshot, upload: uploads.Upload, name: str) -> str | None:
    """The path of one of an upload's pages (scorecard.html, notebook.html, result.json),
    or None; the folder comes from the class view, never from the request."""
    row = snapshot.row(upload.student)
    attempt = next((a for a in row.attempts if a.stored.path == f"{upload.name}.ipynb"), None) if row else None
    if attempt is None or name not in ("scorecard.html", "notebook.html", "result.json"):
        return None
    path = os.path.join(out_dir, attempt.folder, name)
    return path if os.path.isfile(path) else None
