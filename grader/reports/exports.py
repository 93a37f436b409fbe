"""Exports for other gradebooks, from the class as the gradebook holds it (one row per student).

- Gradescope: the `results.json` that the autograder bundle (grader/gradescope.py) writes
  for the one submission it grades: `score`, `execution_time`, `visibility`, `output`, and
  `tests` (`name`, `score`, `max_score`, `status`, `output`, `visibility`), the final score
  with the instructor's points and the late penalty.
- Canvas: a CSV in the shape of Canvas's gradebook import: `Student`, `ID`, `SIS User
  ID`, `SIS Login ID`, `Section`, then one column named for the assignment. Students
  are matched strictly, by the roster's `canvas_id` (Canvas's user id); a student
  without one is left out and listed; two students with one id are refused; a student
  with nothing gradable gets an empty cell (not a 0); `points` scales the score to the
  Canvas assignment's points.
"""

from __future__ import annotations

import csv
import io

from grader.faults import GraderError
from grader.config.manifest import ClassRules
from grader.reports import visibility
from grader.reports.classview import ClassView, Row

GRADESCOPE_STATUS = {"passed": "passed", "partial": "failed", "failed": "failed", "error": "failed", "skipped": "failed"}


def gradescope(row: Row, rules: ClassRules) -> dict:
    """A student's results.json: the counted submission's checks, each with its own
    visibility (grader/reports/visibility.py: Gradescope's four values, which Gradescope
    itself honours), and the final score. The submission's own lines are always visible:
    a student can see at once that their file was received and ran, and how many checks
    are held back and until when."""
    result = row.counted.result if row.counted is not None else None
    if result is None:
        return {"score": 0, "visibility": "visible", "output": "No submission was graded for this student."}
    points = row.check_points()
    tests = [
        {"name": c.title, "score": points.get(c.id, c.score), "max_score": c.max_score, "status": GRADESCOPE_STATUS[c.status],
         "output": c.message, "visibility": rules.visibility_of(c.id)}
        for c in result.checks
    ]
    said = [f"{result.assignment} version {result.version}: your notebook was received and {result.status}."]
    if result.status == "ungradable":
        said.append(f"{result.reason}. {result.fix}.")
    # what Gradescope holds back, said as the scorecards say it (Gradescope's own due date and publishing apply)
    held = visibility.Held(tuple((c.id, c.title, c.max_score, rules.visibility_of(c.id)) for c in result.checks
                                 if rules.visibility_of(c.id) != "visible"))
    said += held.sentences()
    if row.by_hand:
        said.append(f"Your instructor graded it by hand: {row.final:g} points.")
    if row.penalty:
        said.append(f"{row.penalty:g} points off: {row.counted.late_days} day(s) late.")
    said += [f"From your instructor: {o.comment}" for o in row.applied if o.comment]
    return {
        "score": row.final if row.final is not None else 0,
        "execution_time": round(float(result.provenance.get("seconds", 0) or 0), 2),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "output": "\n".join(said),  # one statement a line: Gradescope shows the lines as written
        "tests": tests,
    }


def canvas_csv(view: ClassView, column: str, points: float | None = None) -> tuple[str, list[str]]:
    """The CSV text, and the students left out (not in the roster, or without a Canvas id)."""
    by_id: dict[str, str] = {}
    rows, left_out = [], []
    for row in view.rows:
        canvas_id = str(row.info.get("canvas_id", "")).strip()
        if not canvas_id:
            left_out.append(row.student if row.known else f"{row.student} (not in the roster)")
            continue
        if canvas_id in by_id:
            raise GraderError(f"the roster gives Canvas id {canvas_id} to both {by_id[canvas_id]} and {row.student}",
                              hint="fix the roster's canvas_id column: a Canvas import would give one student's grade to the other")
        by_id[canvas_id] = row.student
        score = "" if row.final is None else _points(row.final, row.max_score, points)
        rows.append([row.info.get("name") or row.student, canvas_id, row.info.get("sis_user_id", ""),
                     row.info.get("sis_login_id", ""), row.info.get("section", ""), score])
    return csv_text(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column], rows), left_out


def _points(final: float, max_score: float, points: float | None):
    value = final if points is None or not max_score else round(final / max_score * points, 2)
    return int(value) if float(value).is_integer() else value


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value):
    """`value` as a spreadsheet will show it: text that would start a formula (`=`, `+`,
    `-`, `@`, tab, carriage return) gets a leading single quote; numbers are kept."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header: list[str], rows: list[list]) -> str:
    """A CSV file's text, every cell passed through `spreadsheet_cell`: names of files,
    submissions and students are the students' to choose."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180; a text's bare CR is then quoted too
    for row in [header, *rows]:
        writer.writerow([spreadsheet_cell(value) for value in row])
    return buffer.getvalue()
