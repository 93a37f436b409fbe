"""Grade uploads as they come: the workshop server's door onto the grading run.

    queue (waiting) -> claim a few -> GradingRun.grade (grader/run.py: record, skip what
        is kept, grade on warm workers, keep, write the pages) -> queue (done)

One thread holds the run (its gradebook, its warm workers) from the preflight to the
end. It takes the oldest waiting uploads from the durable queue, a few at a time (what
is waiting, up to a few per worker, so that the next sandbox runs while the last model
trains), hands them to the run, and marks each upload done once its pages are written.
An upload whose content the gradebook already holds a result for (a crash after the
result was kept, the same file uploaded again) gets that result without being graded
again: each upload is graded once, whatever was killed when.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import threading
from typing import Callable

from grader import preflight
from grader.config.manifest import Manifest
from grader.faults import GraderError
from grader.run import Entry, GradingRun, Options, default_jobs
from grader.serve import uploads
from grader.store import gradebook, submissions

log = logging.getLogger("grader.serve.workshop")
TAKE = 1  # uploads a lane takes from the queue at once: a lane finishes each
# take before the next, so every boundary costs one sandbox run that overlaps no training; but an
# upload taken waits for the slowest of its take (a model trained in full: a minute), so takes
# stay small; a take also keeps its uploads from being replaced by a newer one
IDLE_WAIT = 1.0  # seconds the grading thread sleeps when the queue is empty (an upload wakes it at once)
HOW = "upload"  # how an upload's student is known, as the gradebook keeps it


class Workshop:
    """The grading side of `grader serve`: open() runs the preflight and starts grading;
    wake() after each upload; close() stops. `on_change()` is called after each change
    the live pages show."""

    def __init__(self, manifest: Manifest, options: Options, queue: uploads.Queue, on_change: Callable[..., None] = lambda: None):
        self.manifest, self.options, self.queue, self.on_change = manifest, options, queue, on_change
        self.out_dir = options.out_dir
        # Lanes: each its own run and worker, taking from the queue in turn, so that an upload
        # whose model trains for a minute holds up its lane alone; one per core by default.
        self.jobs = options.jobs or max(default_jobs(), min(2, os.cpu_count() or 1))
        self.problem = ""  # why grading stopped, for the admin page ("" while it runs)
        self.roster = self.facts = None
        self._wake, self._stop = threading.Event(), threading.Event()
        self._opened: concurrent.futures.Future = concurrent.futures.Future()
        self._thread: threading.Thread | None = None
        self._dirty = True  # the class's index.html and grades.csv are behind the gradebook

    # --- start and stop --------------------------------------------------------------

    def open(self) -> preflight.Preflight:
        """Resolve the assignment, start the workers, run the preflight, start grading; the
        preflight's error, if any, is raised here."""
        self._thread = threading.Thread(target=self._run, name="grader-workshop", daemon=True)
        self._thread.start()
        return self._opened.result()

    def wake(self) -> None:
        self._wake.set()

    def close(self, grace: float = 60.0) -> bool:
        """Stop grading: the uploads being graded are finished if that takes less than
        `grace` seconds; else they stay in the queue and are graded at the next start.
        Returns whether the workers were stopped cleanly."""
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(grace)
        return not self._thread.is_alive()

    @property
    def book_path(self) -> str:
        return os.path.join(self.out_dir, "gradebook.sqlite")

    # --- the grading thread ----------------------------------------------------------

    def _run(self) -> None:
        """The run, in this thread from the preflight to the end (its gradebook is this thread's)."""
        try:
            with GradingRun(self.manifest, dataclasses.replace(self.options, jobs=1), final=False) as run:  # the first lane
                self.roster = submissions.roster_of(run.book, self.manifest.name, self.options.roster)
                self.facts = run.facts
                found = run.preflight()
                interrupted = self.queue.requeue_interrupted()
                if interrupted:
                    log.warning("%d upload(s) were being graded when the server stopped: they are graded now", interrupted)
                self.queue.sweep_orphans()
                self._opened.set_result(found)
                lanes = [threading.Thread(target=self._lane, name=f"grader-lane-{n}", daemon=True) for n in range(1, self.jobs)]
                for lane in lanes:
                    lane.start()
                try:
                    self._serve_queue(run)
                finally:
                    for lane in lanes:
                        lane.join()
                    if self._dirty:
                        self._write_class(run)
        except BaseException as error:  # noqa: BLE001 - before the preflight passed: open() raises it
            if not self._opened.done():
                self._opened.set_exception(error)
                return
            raise

    def _lane(self) -> None:
        """Another lane: a run of its own (its gradebook connection, its worker) that finds
        the preflight kept, then grades from the queue as the first lane does."""
        try:
            with GradingRun(self.manifest, dataclasses.replace(self.options, jobs=1), final=False) as run:
                run.preflight()
                self._serve_queue(run)
        except Exception as error:  # noqa: BLE001 - the other lanes go on; the admin page says why
            self.problem = str(error) if isinstance(error, GraderError) else f"{type(error).__name__}: {error}"
            log.exception("a grading lane stopped")

    def _serve_queue(self, run: GradingRun) -> None:
        claim = TAKE
        while not self._stop.is_set():
            claimed = self.queue.claim(claim)
            if not claimed:
                if self._dirty:
                    self._write_class(run)
                self._wake.wait(IDLE_WAIT)
                self._wake.clear()
                continue
            try:
                self._grade(run, claimed)
            except Exception as error:  # noqa: BLE001 - shown on the admin page; uploads stay queued
                self.problem = str(error) if isinstance(error, GraderError) else f"{type(error).__name__}: {error}"
                log.exception("grading stopped")
                self.queue.requeue_interrupted()
                self.on_change()
                return

    def _grade(self, run: GradingRun, claimed: list[uploads.Upload]) -> None:
        by_path = {f"{upload.name}.ipynb": upload for upload in claimed}
        entries = [
            Entry(gradebook.Stored(upload.student, path, upload.sha256, upload.submitted_at, HOW,
                                   not self.roster or upload.student in self.roster.students),
                  self.queue.file_of(upload), upload.shown_name)
            for path, upload in by_path.items()
        ]
        for outcome in run.grade(entries, recorded=self.on_change):  # recorded: shown as being graded
            result = outcome.result
            self.queue.finish(by_path[outcome.entry.stored.path], uploads.DONE if outcome.kept else uploads.FAILED,
                              result.status, result.score, result.max_score, result.reason)
            self._dirty = True
            self.on_change()

    def _write_class(self, run: GradingRun) -> None:
        try:
            run.write_class()
            self._dirty = False
        except Exception:  # noqa: BLE001 - the live pages and `grader report` still show the class
            log.exception("could not write the class's index.html and grades.csv")
