"""What the workshop server's live pages show, computed from the queue and the gradebook.

The class view (one build of every student's row) is made once per change of the
gradebook, in a thread of its own (or handed over by whoever built one), and shared
by every page asked for until the next change: a projector and a class of students
polling cost no build at all on their requests. Values only: the templates
(`_student_live.html.j2`, `_admin_live.html.j2`) format them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
import time

from grader.faults import GraderError
from grader.reports import classreport, classview, visibility
from grader.serve import uploads
from grader.store import gradebook

log = logging.getLogger("grader.serve.live")

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
    """The current snapshot, made again after `changed()` in a thread of its own; safe to
    use from any thread.

    A request never builds the class view: the live parts take the last snapshot made
    (`snapshot()`), and a change is shown once its snapshot is ready, a fraction of a
    second later. Changes that come while one is made are shown together by the next.
    A whole page (`snapshot(fresh=True)`) waits for the snapshot that shows every change
    made before it was asked for, so that a page opened right after an upload or a join
    shows it. `changed(view)` hands over a class view its caller built after the change;
    `changed(book=False)` says that only the queue changed, so the last class view still
    holds."""

    WAIT = 30.0  # seconds a page waits for its snapshot before the server says it is busy

    def __init__(self, queue: uploads.Queue, book_path: str, facts: classview.ClassFacts, jobs: int):
        self.queue, self.book_path, self.facts, self.jobs = queue, book_path, facts, jobs
        self._boot = secrets.token_hex(4)  # a restarted server's versions never match an old page's
        self._ready = threading.Condition()
        self._wanted = 1  # changes asked for so far; the first snapshot covers the start
        self._given: classview.ClassView | None = None  # the newest view handed over by `changed(view)`
        self._stale = True  # the gradebook changed since the last view was built (or handed over)
        self._snapshot: Snapshot | None = None
        self._covers = 0  # the changes the published snapshot shows
        self._made: list = []  # called with each snapshot before it is published
        self._local = threading.local()
        threading.Thread(target=self._refresh, name="grader-live", daemon=True).start()

    @property
    def version(self) -> str:
        """The version of the snapshot the live parts show now."""
        snapshot = self._snapshot
        return snapshot.version if snapshot is not None else f"{self._boot}-0"

    def changed(self, view: classview.ClassView | None = None, book: bool = True) -> None:
        """Something the live pages show changed: `view`, a class view built after the
        change; `book=False`, only the queue changed."""
        with self._ready:
            self._wanted += 1
            if view is not None:
                self._given = view
            elif book:
                self._stale = True
            self._ready.notify_all()

    def on_snapshot(self, call) -> None:
        """Call `call(snapshot)` for each new snapshot, before it is shown (e.g. to render a
        part every projector asks for); it runs in the snapshot's thread."""
        self._made.append(call)

    def snapshot(self, fresh: bool = False) -> Snapshot:
        """The last snapshot made; with `fresh`, one that shows every change made so far."""
        with self._ready:
            wanted = self._wanted if fresh else 1
            if not self._ready.wait_for(lambda: self._covers >= wanted, self.WAIT) and self._snapshot is None:
                raise GraderError("the class's live view is not ready yet; try again in a moment")
            return self._snapshot

    def _refresh(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._wanted > self._covers)
                covers, given, stale = self._wanted, self._given, self._stale
                self._given, self._stale = None, False
            last = self._snapshot
            if stale or last is None:
                view = None  # build one
            elif given is not None and given.began >= last.view.began:
                view = given
            else:  # nothing handed over, or a view begun before the last one (a join came between)
                view = last.view
            try:
                snapshot = self._build(f"{self._boot}-{covers}", view)
            except Exception:  # noqa: BLE001 - the pages keep the last snapshot; the next try builds anew
                log.exception("could not make the live pages' snapshot")
                with self._ready:
                    self._stale = True
                time.sleep(1.0)
                continue
            for call in self._made:
                try:
                    call(snapshot)
                except Exception:  # noqa: BLE001 - a part made ahead is made on request instead
                    log.exception("could not prepare a part of the live pages")
            with self._ready:
                self._snapshot, self._covers = snapshot, covers
                self._ready.notify_all()

    def _build(self, version: str, view: classview.ClassView | None) -> Snapshot:
        if view is None:
            book = getattr(self._local, "book", None)
            if book is None:
                book = self._local.book = gradebook.Gradebook(self.book_path)
            view = classview.build(book, self.facts)
        return Snapshot(version, view, tuple(self.queue.in_line()), self.queue.counts(),
                        tuple(self.queue.recent(RECENT)), self.queue.seconds_per_upload())


def student_page(snapshot: Snapshot, queue: uploads.Queue, student: str, jobs: int, view: classview.ClassView | None = None) -> dict:
    """A student's live part: their newest upload's state, and every upload with its score:
    of the checks the student may see now (`view`: the class as of now, its grades published
    or not; grader/reports/visibility.py), with how many are held back."""
    row = snapshot.row(student)
    restricted = visibility.restricted(snapshot.view.rules, snapshot.view.check_ids)
    held = visibility.of_row(view or snapshot.view, row, time.time()) if row and restricted else visibility.Held()
    attempts = {a.stored.path: a for a in row.attempts} if row else {}
    place = {u.id: n for n, u in enumerate(snapshot.in_line)}
    shown = []
    for upload in queue.of_student(student):
        attempt = attempts.get(f"{upload.name}.ipynb")
        # The queue is read fresh, the snapshot may lag a moment behind it: an upload is shown
        # finished, with its scorecard's link, once the snapshot holds its attempt.
        finished = upload.state in (uploads.DONE, uploads.FAILED)
        if restricted and attempt is not None and attempt.result is None and upload.state == uploads.DONE:
            attempt = None  # its score is shown once the snapshot holds its result, with what is held left out
        points = (u_points(upload) if not restricted else
                  _points(attempt.result, held, row.points if attempt.counts else {}) if attempt is not None and attempt.result is not None else None)
        shown.append({
            "upload": upload,
            "ahead": place.get(upload.id, 0) if upload.state in (uploads.WAITING, uploads.GRADING) else None,
            "wait": _wait(place.get(upload.id, 0), snapshot.seconds_per_upload, jobs) if upload.state == uploads.WAITING else None,
            "attempt": attempt,
            "scorecard": finished and attempt is not None,
            "state": upload.state if attempt is not None or not finished else uploads.GRADING,
            "submitted": classreport.when(upload.submitted_at),
            "points": points,
        })
    return {"uploads": shown, "row": row, "latest": shown[0] if shown else None, "held": held}


def u_points(upload: uploads.Upload) -> tuple[float, float] | None:
    """(score, out of) as the queue recorded the upload's result."""
    return (upload.score, upload.max_score) if upload.score is not None else None


def _points(result, held: visibility.Held, points: dict) -> tuple[float, float]:
    """(score, out of) of what a student sees now: the checks shown, with the instructor's `points` on them."""
    seen = visibility.for_student(result, held, points)
    return seen.score, seen.max_score


def admin_page(snapshot: Snapshot) -> dict:
    """The projector's live part: the queue, the class table, the distribution, where the class is stuck."""
    view = snapshot.view
    line = [{"upload": u, "position": n + 1, "submitted": classreport.when(u.submitted_at)} for n, u in enumerate(snapshot.in_line)]
    recent = [{"upload": u, "finished": classreport.when(u.finished_at or u.submitted_at)} for u in snapshot.recent]
    return {
        "view": view, "rows": view.rows, "check_ids": view.check_ids, "notes": view.notes(), "counts": snapshot.counts,
        "line": line, "recent": recent, "when": classreport.when, **classreport.summary(view),
    }


def projector_page(snapshot: Snapshot, names: bool = False) -> dict:
    """The projector's live part: how the class is doing, for the room to see. No names (a
    student's score is theirs) unless the instructor opts in, and nothing a student wrote
    (a check's message can quote their code): counts, the distribution, the checks the
    class is stuck on by title, and each check's pass rate. A check held from students
    (grader/reports/visibility.py, as of the class's due date) is not shown to the room,
    nor a named student's score while any is."""
    view = snapshot.view
    summary = classreport.summary(view)
    # shown to the room: what every student is shown (the latest due date, extensions included)
    dues = [row.due for row in view.rows if row.due is not None]
    held = visibility.held(view.rules, view.checks, max(dues) if dues else view.rules.due, view.published, time.time())
    whole = not held.checks  # while any check is held, no score (a total tells what the held checks gave)
    recent = [{"student": u.student, "state": u.state, "status": u.status, "score": u.score if whole else None,
               "max_score": u.max_score} for u in snapshot.recent] if names else []
    return {
        "counts": snapshot.counts, "chart": summary["chart"] if whole else None, "scores_held": not whole, "pass_rates": summary["pass_rates"],
        "check_ids": tuple(c for c in view.check_ids if c not in held.ids),
        "stuck": _stuck(view, held.ids),
        "graded": sum(1 for row in view.rows if row.final is not None), "recent": recent,
    }


def _stuck(view, held: frozenset = frozenset()) -> list[dict]:
    """Each check that graded students have not passed, by its title (the instructor's words),
    with how many: most first; not those `held` from students."""
    counted = [row.counted.result for row in view.rows if row.final is not None and row.counted and row.counted.result]
    missed: dict[str, int] = {}
    for result in counted:
        for check in result.checks:
            if check.status != "passed" and check.id not in held:
                missed[check.title] = missed.get(check.title, 0) + 1
    return [{"check": title, "count": count} for title, count in sorted(missed.items(), key=lambda item: (-item[1], item[0]))]


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
