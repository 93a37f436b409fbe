"""Render results: result.json, scorecard.html per submission; index.html, grades.csv per class."""

from __future__ import annotations

import csv
import io
import json
import os

import jinja2

from grader import charts
from grader.results import SubmissionResult
from grader.storage import write_atomic

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("grader", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def write_submission(result: SubmissionResult, out_dir: str, threshold: float | None) -> str:
    folder = os.path.join(out_dir, result.submission)
    write_atomic(os.path.join(folder, "result.json"), json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    write_atomic(os.path.join(folder, "scorecard.html"), render_scorecard(result, threshold))
    return folder


def render_scorecard(result: SubmissionResult, threshold: float | None) -> str:
    history = result.training.get("history", {})
    curves = [
        charts.line_chart("accuracy", {"train": history.get("accuracy", []), "validation": history.get("val_accuracy", [])}, threshold, unit_range=True),
        charts.line_chart("loss", {"train": history.get("loss", []), "validation": history.get("val_loss", [])}),
    ]
    return _ENV.get_template("scorecard.html.j2").render(r=result, curves=[c for c in curves if c is not None])


def write_class(results: list[SubmissionResult], out_dir: str, title: str) -> dict[str, str]:
    paths = {"index": os.path.join(out_dir, "index.html"), "grades": os.path.join(out_dir, "grades.csv")}
    write_atomic(paths["index"], render_index(results, title))
    write_atomic(paths["grades"], grades_csv(results))
    return paths


def render_index(results: list[SubmissionResult], title: str) -> str:
    check_ids = _check_ids(results)
    graded = [r for r in results if r.status == "graded"]
    pass_rates = {
        check: sum(1 for r in graded for c in r.checks if c.id == check and c.status == "passed") / len(graded) if graded else 0.0
        for check in check_ids
    }
    max_score = max((r.max_score for r in results), default=0.0)
    chart = charts.histogram("scores", [r.score for r in graded], max_score) if graded else None
    return _ENV.get_template("index.html.j2").render(
        title=title, results=sorted(results, key=lambda r: r.submission), check_ids=check_ids, pass_rates=pass_rates, chart=chart
    )


def grades_csv(results: list[SubmissionResult]) -> str:
    """One row per submission; columns: submission, file, sha256, status, score, max_score,
    then one column per check id holding that check's points."""
    check_ids = _check_ids(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["submission", "file", "sha256", "status", "score", "max_score", *check_ids])
    for r in sorted(results, key=lambda r: r.submission):
        scores = {c.id: c.score for c in r.checks}
        writer.writerow([r.submission, r.file, r.sha256, r.status, r.score, r.max_score, *(scores.get(c, "") for c in check_ids)])
    return buffer.getvalue()


def _check_ids(results: list[SubmissionResult]) -> list[str]:
    ids: list[str] = []
    for result in results:
        ids += [c.id for c in result.checks if c.id not in ids]
    return ids
