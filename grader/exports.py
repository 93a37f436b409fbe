"""Exports for other gradebooks, from stored results.

- Gradescope: one `results.json` per submission in the autograder's format
  (`score`, and `tests`: `name`, `score`, `max_score`, `status`, `output`).
- Canvas: a CSV in the shape of Canvas's gradebook import: `Student`, `ID`,
  `SIS User ID`, `SIS Login ID`, `Section`, then one column named for the assignment.

Which student a submission belongs to comes from a roster CSV with the columns
`file` (the submitted file's name, as in grades.csv), `student` (the name Canvas
shows), `id` (Canvas's user id) and, optionally, `sis_user_id`, `sis_login_id` and
`section`. A submission missing from the roster is exported under its file name
with an empty id, and listed as unmatched.
"""

from __future__ import annotations

import csv
import io
import json
import os

from grader.errors import GraderError
from grader.results import SubmissionResult
from grader.storage import write_atomic

GRADESCOPE_STATUS = {"passed": "passed", "partial": "failed", "failed": "failed", "error": "failed", "skipped": "failed"}


def gradescope(result: SubmissionResult) -> dict:
    tests = [
        {"name": c.title, "score": c.score, "max_score": c.max_score, "status": GRADESCOPE_STATUS[c.status], "output": c.message}
        for c in result.checks
    ]
    payload = {"score": result.score, "tests": tests, "output": f"{result.assignment} version {result.version}, {result.status}"}
    if result.status == "ungradable":
        payload["output"] += f": {result.reason}. {result.fix}."
    return payload


def write_gradescope(results: list[SubmissionResult], out_dir: str) -> list[str]:
    paths = []
    for result in results:
        path = os.path.join(out_dir, "exports", "gradescope", result.submission, "results.json")
        write_atomic(path, json.dumps(gradescope(result), indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths


def read_roster(path: str) -> dict[str, dict]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise GraderError(f"cannot read the roster {path}: {error.strerror}") from None
    missing = {"file", "student", "id"} - set(rows[0].keys() if rows else [])
    if missing:
        raise GraderError(f"the roster {path} lacks the column(s) {', '.join(sorted(missing))}", hint="its header must be file,student,id[,sis_user_id,sis_login_id,section]")
    return {row["file"]: row for row in rows}


def canvas_csv(results: list[SubmissionResult], roster: dict[str, dict], column: str) -> tuple[str, list[str]]:
    rows, unmatched = [], []
    for result in sorted(results, key=lambda r: r.submission):
        row = roster.get(result.file)
        if row is None:
            unmatched.append(result.file)
            row = {"student": result.submission, "id": ""}
        points = int(result.score) if float(result.score).is_integer() else result.score
        rows.append([row["student"], row["id"], row.get("sis_user_id", ""), row.get("sis_login_id", ""), row.get("section", ""), points])
    return csv_text(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column], rows), unmatched


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
