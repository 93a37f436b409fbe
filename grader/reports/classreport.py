"""The class's pages, from the class as the gradebook holds it (a ClassView).

For every submission of every student: result.json and scorecard.html in
`submissions/<student>/<attempt>/` (notebook.html is written there when it is graded);
for the class: index.html and grades.csv, keyed by student. Everything is rendered
from the gradebook, so a run that graded one student rewrites the whole class.
"""

from __future__ import annotations

import json
import os
from typing import Container

from grader.reports import charts, exports, report
from grader.reports.wording import when
from grader.config.manifest import ClassRules
from grader.reports.classview import Attempt, ClassFacts, ClassView, Row
from grader.results import SubmissionResult
from grader.store.storage import STATE, write_atomic

FACTS = "class.json"
_HELD_FOR_INSTRUCTOR = {  # a check's visibility (grader/reports/visibility.py), as its scorecard tells the instructor
    "after_due_date": "students see it after their due date",
    "after_published": "students see it once you publish the grades",
    "hidden": "never shown to students",
}


def save_facts(facts: ClassFacts, out_dir: str) -> None:
    write_atomic(os.path.join(out_dir, STATE, FACTS), json.dumps(facts.to_json(), sort_keys=True) + "\n")


def load_facts(out_dir: str) -> ClassFacts:
    from grader.faults import GraderError

    try:
        with open(os.path.join(out_dir, STATE, FACTS)) as handle:
            return ClassFacts.from_json(json.load(handle))
    except (OSError, ValueError, KeyError, TypeError):
        raise GraderError(f"{out_dir} holds no graded class", hint="pass the --out folder of a `grader grade` run") from None


def write(view: ClassView, out_dir: str, reference: SubmissionResult | None, skip: Container[str] = ()) -> dict[str, str]:
    """Every page of the class but those in `skip` (folders, absolute: written already);
    returns the paths of index.html and grades.csv."""
    for row in view.rows:
        for attempt in row.attempts:
            if attempt.result is not None and os.path.join(out_dir, attempt.folder) not in skip:
                write_attempt(row, attempt, out_dir, reference, view.rules)
    return write_class(view, out_dir)


def write_class(view: ClassView, out_dir: str) -> dict[str, str]:
    """index.html and grades.csv alone (each submission's pages are written when it is graded)."""
    paths = {"index": os.path.join(out_dir, "index.html"), "grades": os.path.join(out_dir, "grades.csv")}
    write_atomic(paths["index"], render_index(view))
    write_atomic(paths["grades"], grades_csv(view))
    return paths


def shown(row: Row, attempt: Attempt) -> SubmissionResult:
    """The attempt's result as this student's submission (the same content may be another's too)."""
    import dataclasses

    return dataclasses.replace(attempt.result, submission=row.student, file=attempt.file)


def write_attempt(row: Row, attempt: Attempt, out_dir: str, reference: SubmissionResult | None, rules: ClassRules | None = None) -> str:
    return report.write_submission(shown(row, attempt), os.path.join(out_dir, attempt.folder), reference, about=about(row, attempt, rules))


def about(row: Row, attempt: Attempt, rules: ClassRules | None = None) -> dict:
    """The class's facts a scorecard shows: whose it is, when, whether it counts, the
    instructor's word, the late penalty, the final score, and (by `rules`) when students
    see each check that is not always shown."""
    titles = {c.id: c.title for c in (attempt.result.checks if attempt.result else ())}
    return {
        "student": row.student,
        "name": row.name,
        "known": row.known,
        "submitted": when(attempt.stored.submitted_at),
        "due": when(row.due) if row.due is not None else "",
        "extended": row.extended,
        "late_days": attempt.late_days,
        "counts": attempt.counts,
        "several": len(row.attempts) > 1,
        "others": [
            {"file": other.file, "link": f"../{os.path.basename(other.folder)}/scorecard.html", "counts": other.counts}
            for other in row.attempts if other is not attempt and other.result is not None
        ],
        "overrides": [
            {"check": titles.get(o.check_id, o.check_id) if o.check_id else "", "id": o.check_id, "points": o.points, "comment": o.comment,
             "author": o.author}
            for o in (row.applied if attempt.counts else ())
        ],
        # the instructor's points on a check of the submission that counts (check id -> points)
        "points": {o.check_id: row.points[o.check_id] for o in row.applied if attempt.counts and o.check_id in row.points and o.points is not None},
        "bonus": sum(o.points for o in row.applied if attempt.counts and not o.check_id and o.points is not None),
        "by_hand": row.by_hand and attempt.counts,
        "set_aside": len(row.set_aside) if attempt.counts else 0,
        "penalty": row.penalty if attempt.counts else 0.0,
        "final": row.final if attempt.counts else None,
        "max_score": row.max_score,
        "stale": attempt.result is not None and not attempt.current,
        "marks": {c: _HELD_FOR_INSTRUCTOR[rules.visibility_of(c)] for c in titles if rules.visibility_of(c) != "visible"} if rules else {},
    }


def summary(view: ClassView) -> dict:
    """What the class pages show about the class as a whole: each check's pass rate, the
    score distribution (a chart, None before anyone is graded), where the class is stuck."""
    graded = [row for row in view.rows if row.final is not None]
    counted = [row.counted.result for row in graded]
    pass_rates = {
        check: sum(1 for r in counted for c in r.checks if c.id == check and c.status == "passed") / len(counted) if counted else 0.0
        for check in view.check_ids
    }
    max_score = max((row.max_score for row in view.rows), default=0.0)
    chart = charts.histogram("scores", [row.final for row in graded], max_score) if graded else None
    failures = report.common_failures([shown(row, row.counted) for row in graded])
    return {"pass_rates": pass_rates, "chart": chart, "failures": failures}


def render_index(view: ClassView) -> str:
    return report.page(
        "index.html.j2", (report.SORT_SCRIPT,), sort_script=report.SORT_SCRIPT,
        title=view.title, rows=view.rows, check_ids=view.check_ids, notes=view.notes(), when=when, **summary(view),
    )


def grades_csv(view: ClassView) -> str:
    """One row per student. Columns: student, name, email, section, status, file, sha256,
    submitted_at, late_days, score (the checks' points, the instructor's where set),
    penalty, final, max_score, then one column per check id, then the instructor's comment."""
    rows = []
    for row in view.rows:
        attempt, points = row.counted, row.check_points()
        rows.append([
            row.student, row.name, row.info.get("email", ""), row.info.get("section", ""), row.status,
            attempt.file if attempt else "", attempt.stored.sha256 if attempt else "",
            when(attempt.stored.submitted_at) if attempt else "", attempt.late_days if attempt else "",
            "" if row.score is None else row.score, row.penalty if row.score is not None else "",
            "" if row.final is None else row.final, row.max_score,
            *(points.get(check, "") for check in view.check_ids),
            " / ".join(o.comment for o in row.applied if o.comment),
        ])
    header = ["student", "name", "email", "section", "status", "file", "sha256", "submitted_at", "late_days",
              "score", "penalty", "final", "max_score", *view.check_ids, "comment"]
    return exports.csv_text(header, rows)
