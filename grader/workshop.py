"""Grade uploads as they come: the workshop server's grading, on the executor seam.

    queue (waiting) -> claim a few -> gradebook.record -> pool.grade (warm workers)
        -> gradebook.put -> that student's pages -> queue (done)

One thread takes the oldest waiting uploads from the durable queue, a few at a time
(what is waiting, up to a few per worker, so that the next sandbox runs while the last
model trains), and grades them with the same context, preflight, warm pool and pipeline as
`grader grade`, into the same gradebook. For each result it writes that student's
pages (the same sanitised pages the batch writes, each attempt's "counts" and late
penalty from the class view) and only then marks the upload done. An upload whose
content the gradebook already holds a result for (a crash after the result was kept,
the same file uploaded again) gets that result without being graded again: each
upload is graded once, whatever was killed when.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import threading
from typing import Callable

from grader import batch, classreport, classview, gradebook, preflight, report, uploads
from grader.errors import GraderError
from grader.executors import AHEAD, LocalPool, Work
from grader.manifest import Manifest
from grader.results import SubmissionResult

log = logging.getLogger("grader.workshop")
TAKE = 4  # uploads taken from the queue at once, per notebook a worker holds: the pool finishes each
# take before the next, so every boundary costs one sandbox run that overlaps no training; a take
# also keeps its uploads from being replaced by a newer one, so it stays small (one when idle)
IDLE_WAIT = 1.0  # seconds the grading thread sleeps when the queue is empty (an upload wakes it at once)
HOW = "upload"  # how an upload's student is known, as the gradebook keeps it


class Workshop:
    """The grading side of `grader serve`: open() runs the preflight and starts grading;
    wake() after each upload; close() stops. `on_change(view)` is called after each change
    the live pages show, with the class view built after it (or None)."""

    def __init__(self, manifest: Manifest, options: batch.Options, queue: uploads.Queue,
                 on_change: Callable[..., None] = lambda view=None: None):
        self.manifest, self.options, self.queue, self.on_change = manifest, options, queue, on_change
        self.out_dir = options.out_dir
        self.jobs = options.jobs or batch.default_jobs()
        self.problem = ""  # why grading stopped, for the admin page ("" while it runs)
        self.roster = None
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._dirty = True  # the class's index.html and grades.csv are behind the gradebook
        self.book = self.pool = self.context = self.facts = self.reference = None

    # --- start and stop --------------------------------------------------------------

    def open(self) -> preflight.Preflight:
        """Resolve the assignment, start the workers, run the preflight, start grading."""
        batch.prepare_output(self.out_dir)
        book = gradebook.Gradebook(self.book_path)  # this thread's; the grading thread opens its own
        try:
            self.roster = batch.roster_of(book, self.manifest, self.options)
            self.context = batch.start(self.manifest, self.options)
            self.facts = classview.ClassFacts.of(self.manifest, self.context.fingerprint)
            classreport.save_facts(self.facts, self.out_dir)
            limits = self.manifest.grader
            extra = {"worker": self.options.worker} if self.options.worker else {}
            self.pool = LocalPool(self.context, self.jobs, limits.attempts, limits.memory_mb, final=False, **extra).__enter__()
            found = preflight.run(self.context, lambda: self.pool, book, self.out_dir, self.options.regrade)
        except BaseException:
            if self.pool is not None:
                self.pool.__exit__(None, None, None)
            raise
        finally:
            book.close()
        self.reference = found.solution
        report.save_reference(self.reference, self.out_dir)
        self.pool.set("max_parameters", batch.model_budget(self.manifest, self.reference))
        self.pool.set("budget", batch.budget_for(self.manifest, self.reference))
        interrupted = self.queue.requeue_interrupted()
        if interrupted:
            log.warning("%d upload(s) were being graded when the server stopped: they are graded now", interrupted)
        self.queue.sweep_orphans()
        self.failures = batch.Failures(self.context)
        self._renderer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="grader-render")
        self._thread = threading.Thread(target=self._run, name="grader-workshop", daemon=True)
        self._thread.start()
        return found

    def wake(self) -> None:
        self._wake.set()

    def close(self, grace: float = 60.0) -> bool:
        """Stop grading: the uploads being graded are finished if that takes less than
        `grace` seconds; else they stay in the queue and are graded at the next start.
        Returns whether the workers were stopped cleanly."""
        self._stop.set()
        self._wake.set()
        clean = True
        if self._thread is not None:
            self._thread.join(grace)
            clean = not self._thread.is_alive()
        if clean and self.pool is not None:
            self.pool.__exit__(None, None, None)
        return clean

    @property
    def book_path(self) -> str:
        return os.path.join(self.out_dir, "gradebook.sqlite")

    # --- the grading thread ----------------------------------------------------------

    def _run(self) -> None:
        self.book = gradebook.Gradebook(self.book_path)
        try:
            self._serve_queue()
        finally:
            if self._dirty:
                self._write_class()
            self.book.close()

    def _serve_queue(self) -> None:
        claim = TAKE * AHEAD * self.jobs
        while not self._stop.is_set():
            claimed = self.queue.claim(claim)
            if not claimed:
                if self._dirty:
                    self._write_class()
                self._wake.wait(IDLE_WAIT)
                self._wake.clear()
                continue
            try:
                self._grade(claimed)
            except Exception as error:  # noqa: BLE001 - shown on the admin page; uploads stay queued
                self.problem = str(error) if isinstance(error, GraderError) else f"{type(error).__name__}: {error}"
                log.exception("grading stopped")
                self.queue.requeue_interrupted()
                self.on_change()
                return

    def _grade(self, claimed: list[uploads.Upload]) -> None:
        name, version, fingerprint = self.manifest.name, self.manifest.version, self.context.fingerprint
        for upload in claimed:
            known = not self.roster or upload.student in self.roster.students
            self.book.record(name, gradebook.Stored(upload.student, f"{upload.name}.ipynb", upload.sha256, upload.submitted_at, HOW, known))
        folders, view = self._folders()
        self.on_change(view)  # claimed and recorded: shown as being graded
        rendered = {
            upload.id: self._renderer.submit(batch.write_notebook, self.queue.file_of(upload), folders[upload.id], upload.shown_name)
            for upload in claimed
        }
        todo: dict[str, list[uploads.Upload]] = {}
        for upload in claimed:
            if self.book.get(name, version, fingerprint, upload.sha256) is not None:
                self._finish(upload, None, folders[upload.id], rendered[upload.id])  # kept before: not graded again
            else:
                todo.setdefault(upload.sha256, []).append(upload)
        works = [Work(digest, self.queue.file_of(found[0]), found[0].student) for digest, found in todo.items()]
        for work, result in self.pool.grade(works):
            self.failures.saw(result)
            if not result.provenance.get("grader_error"):
                self.book.put(fingerprint, result)
            for upload in todo[work.key]:
                self._finish(upload, result, folders[upload.id], rendered[upload.id])

    def _folders(self) -> tuple[dict[int, str], classview.ClassView]:
        """Each claimed upload's pages' folder (absolute), as the class view names it; the view."""
        view = classview.build(self.book, self.facts)
        return {
            int(attempt.stored.path.removeprefix("upload-").removesuffix(".ipynb")): os.path.join(self.out_dir, attempt.folder)
            for row in view.rows for attempt in row.attempts if attempt.stored.how == HOW
        }, view

    def _finish(self, upload: uploads.Upload, result: SubmissionResult | None, folder: str, rendered) -> None:
        """Write the student's pages, then mark the upload done (`result` None: the
        gradebook has it; a result marked `grader_error`: the grader gave up on it)."""
        rendered.result()  # notebook.html first: the scorecard links it
        view = classview.build(self.book, self.facts)
        row = next(r for r in view.rows if r.student == upload.student)
        for attempt in row.attempts:
            if attempt.result is not None:
                classreport.write_attempt(row, attempt, self.out_dir, self.reference)
        if result is not None and result.provenance.get("grader_error"):
            shown = dataclasses.replace(result, submission=upload.student, file=f"{upload.name}.ipynb")
            report.write_submission(shown, folder, self.reference)
            self.queue.finish(upload, uploads.FAILED, result.status, result.score, result.max_score, result.reason)
        else:
            kept = next(a.result for a in row.attempts if a.stored.path == f"{upload.name}.ipynb")
            self.queue.finish(upload, uploads.DONE, kept.status, kept.score, kept.max_score, kept.reason)
        self._dirty = True
        self.on_change(view)  # built after the result was kept; the live pages need no other

    def _write_class(self) -> None:
        try:
            classreport.write_class(classview.build(self.book, self.facts), self.out_dir)
            self._dirty = False
        except Exception:  # noqa: BLE001 - the live pages and `grader report` still show the class
            log.exception("could not write the class's index.html and grades.csv")
