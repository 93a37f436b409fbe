"""Feedback to hand back: one folder (or zip) per student with their pages.

Each student's folder holds what the grader wrote for them — every submission's
scorecard, notebook rendering and result.json, the one that counts marked on each —
copied from `submissions/<student>/`, so the links between them still work, and
nothing of any other student's. Where a check is not shown to students yet (its
visibility, grader/reports/visibility.py), each scorecard and result.json is the
student's view of it as of the export: what is held back is left out, and said.
"""

from __future__ import annotations

import os
import shutil
import time

from grader.reports import report, visibility
from grader.reports.classview import ClassView
from grader.store.storage import write_atomic

FOLDER = "feedback"


def write(view: ClassView, out_dir: str, as_zip: bool = False) -> list[str]:
    """The feedback folders (or zips) of every student with a graded submission."""
    made = []
    target_root = os.path.join(out_dir, FOLDER)
    restricted = visibility.restricted(view.rules, view.check_ids)
    reference = report.load_reference(out_dir) if restricted else None
    now = time.time()
    for row in view.rows:
        if row.counted is None or row.counted.result is None:
            continue
        source = os.path.join(out_dir, os.path.dirname(row.counted.folder))
        name = os.path.basename(source)
        target = os.path.join(target_root, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        shutil.copytree(source, target)
        if restricted:
            _as_student_sees_it(view, row, target, reference, now)
        counted = os.path.basename(row.counted.folder)
        write_atomic(os.path.join(target, "index.html"), _index(row.student, counted))
        if as_zip:
            archive = shutil.make_archive(target, "zip", root_dir=target_root, base_dir=name)
            shutil.rmtree(target)
            made.append(archive)
        else:
            made.append(target)
    return made


def _as_student_sees_it(view: ClassView, row, target: str, reference, now: float) -> None:
    """The student's copies of their scorecards and result.json, with what is held from them now left out."""
    from grader.reports import classreport

    held = visibility.of_row(view, row, now)
    for attempt in row.attempts:
        folder = os.path.join(target, os.path.basename(attempt.folder))
        if attempt.result is None or not os.path.isdir(folder):
            continue
        result = classreport.shown(row, attempt)
        write_atomic(os.path.join(folder, "result.json"), visibility.student_json(result, held))
        write_atomic(os.path.join(folder, "scorecard.html"),
                     visibility.scorecard(result, folder, reference, classreport.about(row, attempt), held))


def _index(student: str, counted: str) -> str:
    """A page that opens the scorecard that counts (a relative link: the folder can be moved)."""
    from grader.reports import report

    return report.page("redirect.html.j2", student=student, target=f"{counted}/scorecard.html")
