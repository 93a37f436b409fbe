"""Grade a class from files: find each file's student, then hand them to a grading run.

    submissions (files, folders, roster) -> students -> GradingRun (grader/run.py):
        record, preflight, grade what is new, keep, write each submission's pages
    -> every page of the class, from the gradebook

What is the batch's own: the roster, which file is whose (grader/store/submissions.py), the
progress bar, and what the run leaves for the command line (`Graded`). The class pages
are made from the gradebook at the end, so they show the whole class, whatever subset
this run graded.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import tqdm

from grader import preflight
from grader.config.manifest import Manifest
from grader.faults import GraderError
from grader.reports import classreport, classview, report
from grader.results import SubmissionResult
from grader.run import Entry, GradingRun, Options
from grader.store import gradebook, submissions
from grader.store.storage import STATE
from reference.hashing import file_sha256


@dataclasses.dataclass(frozen=True)
class Graded:
    """What a run leaves: each student's counted result, the pages, and what to look at."""

    results: list[SubmissionResult]  # one per student with a graded submission, the one that counts
    paths: dict[str, str]  # "index", "grades"
    notes: list[str]  # unknown students, students without a submission, ...
    view: classview.ClassView


def grade(manifest: Manifest, paths: list[str], options: Options) -> Graded:
    """Grade every submission not already in the gradebook; write every page of the class."""
    found = submissions.collect(paths, os.path.join(options.out_dir, STATE, "downloads"))
    with GradingRun(manifest, options) as run:
        roster = submissions.roster_of(run.book, manifest.name, options.roster)
        chosen = submissions.identify(found, roster, options.identify)
        if options.student is not None:
            chosen = [s for s in chosen if s.student == options.student]
            if not chosen:
                raise GraderError(f"no submission of {options.student!r} in {', '.join(paths)}",
                                  hint="pass the class's submissions folder and a student id as the roster or folder names it")
        roots = dict(found)
        entries = [Entry(gradebook.Stored(s.student, _relative(s.path, roots[s.path]), file_sha256(s.path), s.submitted_at, s.how, s.known, s.late), s.path)
                   for s in chosen]
        progress = tqdm.tqdm(total=len(entries), unit="notebook", disable=options.quiet, file=sys.stderr, dynamic_ncols=True)
        failed = []
        try:
            for outcome in run.grade(entries, fresh=options.regrade or options.student is not None):
                if not outcome.kept:
                    failed.append(outcome.result)
                progress.update(1)
                said = f"{outcome.result.score:g}/{outcome.result.max_score:g}" if outcome.result.status == "graded" else "ungradable"
                progress.set_postfix_str(f"{outcome.result.submission}: {said}")
        finally:
            progress.close()
        view, paths_written = run.write_class(every_page=True)
    return _graded(view, paths_written, failed)


def check(manifest: Manifest, options: Options) -> preflight.Preflight:
    """Preflight alone: everything `grade` checks before grading anyone (see grader/preflight.py)."""
    with GradingRun(manifest, dataclasses.replace(options, jobs=1)) as run:
        return run.preflight()


def _graded(view: classview.ClassView, paths: dict, failed: list[SubmissionResult]) -> Graded:
    """The run's outcome: each student's counted result, and this run's results the grader
    failed on (shown on their scorecards, never stored), and what to look at."""
    counted = {row.student: classreport.shown(row, row.counted) for row in view.rows if row.counted is not None and row.counted.result is not None}
    counted.update({result.submission: result for result in failed if result.submission not in counted})
    notes = view.notes()
    if failed:
        notes.append(f"the grader failed on these (not stored; run again to grade them): {', '.join(sorted({r.submission for r in failed}))}")
    return Graded([counted[name] for name in sorted(counted)], paths, notes, view)


def _relative(path: str, root: str) -> str:
    """Where a submission was found, as the gradebook keeps it: under the folder given,
    that folder's own name included (two folders given may hold files of one name)."""
    return os.path.relpath(path, os.path.dirname(os.path.abspath(root)))


def rerender(out_dir: str) -> Graded:
    """Every page of the class again, from the gradebook, without grading."""
    facts = classreport.load_facts(out_dir)
    book = gradebook.Gradebook(os.path.join(out_dir, "gradebook.sqlite"))
    try:
        view = classview.build(book, facts)
    finally:
        book.close()
    paths = classreport.write(view, out_dir, report.load_reference(out_dir))
    return _graded(view, paths, [])
