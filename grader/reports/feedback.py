"""Feedback to hand back: one folder (or zip) per student with their pages.

Each student's folder holds what the grader wrote for them — every submission's
scorecard, notebook rendering and result.json, the one that counts marked on each —
copied from `submissions/<student>/`, so the links between them still work, and
nothing of any other student's.
"""

from __future__ import annotations

import os
import shutil

from grader.reports.classview import ClassView
from grader.store.storage import write_atomic

FOLDER = "feedback"


def write(view: ClassView, out_dir: str, as_zip: bool = False) -> list[str]:
    """The feedback folders (or zips) of every student with a graded submission."""
    made = []
    target_root = os.path.join(out_dir, FOLDER)
    for row in view.rows:
        if row.counted is None or row.counted.result is None:
            continue
        source = os.path.join(out_dir, os.path.dirname(row.counted.folder))
        name = os.path.basename(source)
        target = os.path.join(target_root, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        shutil.copytree(source, target)
        counted = os.path.basename(row.counted.folder)
        write_atomic(os.path.join(target, "index.html"), _index(row.student, counted))
        if as_zip:
            archive = shutil.make_archive(target, "zip", root_dir=target_root, base_dir=name)
            shutil.rmtree(target)
            made.append(archive)
        else:
            made.append(target)
    return made


def _index(student: str, counted: str) -> str:
    """A page that opens the scorecard that counts (a relative link: the folder can be moved)."""
    from grader.reports import report

    return report.page("redirect.html.j2", student=student, target=f"{counted}/scorecard.html")
