"""Render results: result.json, scorecard.html (and the notebook) per submission;
index.html and grades.csv per class. Rendering reads only results, so `grader report`
re-renders byte for byte what grading wrote.
"""

from __future__ import annotations

import base64
import collections
import glob
import hashlib
import json
import os
import re

import jinja2

from grader import charts, exports, render_notebook, wording
from grader.results import SubmissionResult
from grader.storage import write_atomic

STATE = ".grader"  # the folder, inside the output folder, for what rendering needs besides results

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("grader", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
SORT_SCRIPT = _ENV.loader.get_source(_ENV, "sort.js")[0]  # the class report's only script


def content_security_policy(scripts: tuple[str, ...] = ()) -> str:
    """The policy every page carries: nothing is fetched, framed or submitted; images only
    from data: URLs; styles inline; scripts only the `scripts` given, each allowed by its hash."""
    hashes = [f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts]
    script_src = " ".join(hashes) or "'none'"
    return (
        f"default-src 'none'; script-src {script_src}; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-src 'none'"
    )


def _page(template: str, scripts: tuple[str, ...] = (), **context) -> str:
    """A page rendered from `template`, with its Content-Security-Policy."""
    return _ENV.get_template(template).render(csp=content_security_policy(scripts), **context)


def write_submission(result: SubmissionResult, out_dir: str, reference: SubmissionResult | None = None) -> str:
    folder = os.path.join(out_dir, result.submission)
    write_atomic(os.path.join(folder, "result.json"), json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    try:
        page = render_scorecard(result, reference, os.path.exists(os.path.join(folder, "notebook.html")))
    except Exception as error:  # a rendering bug must cost one page its looks, never the batch
        page = _page("fallback.html.j2", r=result, error=f"{type(error).__name__}: {error}")
    write_atomic(os.path.join(folder, "scorecard.html"), page)
    return folder


def threshold_of(result: SubmissionResult) -> float | None:
    return next((float(c.evidence["threshold"]) for c in result.checks if "threshold" in c.evidence), None)


def render_scorecard(result: SubmissionResult, reference: SubmissionResult | None = None, notebook: bool = False) -> str:
    history = result.training.get("history", {})
    reference_history = reference.training.get("history", {}) if reference is not None else {}
    accuracy = {"train": history.get("accuracy", []), "validation": history.get("val_accuracy", [])}
    loss = {"train": history.get("loss", []), "validation": history.get("val_loss", [])}
    if reference_history:
        accuracy["solution, validation"] = reference_history.get("val_accuracy", [])
        loss["solution, validation"] = reference_history.get("val_loss", [])
    curves = [charts.line_chart("accuracy", accuracy, threshold_of(result), unit_range=True), charts.line_chart("loss", loss)] if history else []
    structure = next((c for c in result.checks if "expected" in c.evidence), None)
    return _page(
        "scorecard.html.j2",
        r=result,
        curves=[c for c in curves if c is not None],
        confusion=_confusion(result.training),
        structure=structure,
        notebook=notebook,
        cells=[(cell, wording.cell_label(cell)) for cell in result.cells],
        provenance=wording.provenance(result.provenance),
    )


def _confusion(training: dict) -> dict | None:
    matrix, classes = training.get("confusion"), training.get("classes")
    if not matrix or not classes:
        return None
    rows = []
    for name, counts in zip(classes, matrix):
        total = sum(counts) or 1
        rows.append({"name": name, "cells": [{"count": n, "shade": round(n / total, 2)} for n in counts]})
    return {"classes": classes, "rows": rows}


def write_class(results: list[SubmissionResult], out_dir: str, title: str) -> dict[str, str]:
    write_atomic(os.path.join(out_dir, STATE, "class.json"), json.dumps({"title": title}) + "\n")
    paths = {"index": os.path.join(out_dir, "index.html"), "grades": os.path.join(out_dir, "grades.csv")}
    write_atomic(paths["index"], render_index(results, title))
    write_atomic(paths["grades"], grades_csv(results))
    return paths


def render_index(results: list[SubmissionResult], title: str) -> str:
    results = sorted(results, key=lambda r: r.submission)
    check_ids = _check_ids(results)
    graded = [r for r in results if r.status == "graded"]
    pass_rates = {
        check: sum(1 for r in graded for c in r.checks if c.id == check and c.status == "passed") / len(graded) if graded else 0.0
        for check in check_ids
    }
    max_score = max((r.max_score for r in results), default=0.0)
    chart = charts.histogram("scores", [r.score for r in graded], max_score) if graded else None
    return _page(
        "index.html.j2",
        (SORT_SCRIPT,),
        sort_script=SORT_SCRIPT,
        title=title, results=results, check_ids=check_ids, pass_rates=pass_rates, chart=chart, failures=common_failures(graded)
    )


FIGURE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?%?|\b(?:nan|inf)\b")
CODE = re.compile(r"`[^`]*`")  # a student's line of code, quoted in a message


def common_failures(results: list[SubmissionResult], limit: int = 10) -> list[dict]:
    """Failed checks grouped by kind (see `failure_kind`), most common first; `who` names
    each student, with the figure measured against a threshold, if any."""
    groups: dict[tuple[str, str], list] = collections.defaultdict(list)
    for result in results:
        for check in result.checks:
            if check.status in ("failed", "partial", "error"):
                groups[failure_kind(check)].append((result.submission, check))
    ranked = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [
        {
            "check": title,
            "count": len(members),
            "example": members[0][1].message,
            "students": [name for name, _ in members],
            "who": [f"{name} ({figure})" if figure else name for name, figure in ((n, _measured(c)) for n, c in members)],
        }
        for (title, _), members in ranked[:limit]
    ]


def failure_kind(check) -> tuple[str, str]:
    """What a failed check said, its figures and quoted code folded: one kind, one key.
    A figure measured against a threshold (its evidence has "threshold") earns partial
    credit or none depending on where it fell, and the message says so before its "; ";
    the kind is what follows: why the figure is low."""
    message = check.message.partition("; ")[2] if "threshold" in check.evidence else check.message
    return check.title, CODE.sub("`…`", FIGURE.sub("#", message))


def _measured(check) -> str:
    if "threshold" not in check.evidence:
        return ""
    figure = next((v for k, v in check.evidence.items() if k != "threshold" and isinstance(v, (int, float))), None)
    return f"{figure:.3f}" if figure is not None else ""


def grades_csv(results: list[SubmissionResult]) -> str:
    """One row per submission. Columns: submission, file, sha256, status, score, max_score,
    then one column per check id holding that check's points. Text that a spreadsheet
    would take for a formula starts with a single quote."""
    check_ids = _check_ids(results)
    rows = []
    for r in sorted(results, key=lambda r: r.submission):
        scores = {c.id: c.score for c in r.checks}
        rows.append([r.submission, r.file, r.sha256, r.status, r.score, r.max_score, *(scores.get(c, "") for c in check_ids)])
    return exports.csv_text(["submission", "file", "sha256", "status", "score", "max_score", *check_ids], rows)


def _check_ids(results: list[SubmissionResult]) -> list[str]:
    ids: list[str] = []
    for result in results:
        ids += [c.id for c in result.checks if c.id not in ids]
    return ids


# --- the student's notebook ----------------------------------------------------------


def write_notebook(notebook, folder: str, title: str, budget: render_notebook.Budget = render_notebook.BUDGET) -> str:
    """The submitted notebook as HTML beside its scorecard: outputs kept (each capped),
    rich HTML and JavaScript outputs dropped, markdown rendered and sanitised; rendered in
    a child process within `budget`, else shown as plain text with a note saying why."""
    rendering = render_notebook.render(notebook, budget)
    path = os.path.join(folder, "notebook.html")
    write_atomic(path, _page("notebook.html.j2", title=title, rendering=rendering))
    return path


# --- re-rendering ------------------------------------------------------------------------


def load_results(out_dir: str) -> list[SubmissionResult]:
    """Every submission's result.json under a grading run's output folder."""
    from grader.errors import GraderError
    from grader.gradebook import result_from_json

    paths = sorted(glob.glob(os.path.join(out_dir, "*", "result.json")))
    if not paths:
        raise GraderError(f"{out_dir} holds no results", hint="pass the --out folder of a `grader grade` run")
    results = []
    for path in paths:
        with open(path) as handle:
            results.append(result_from_json(json.load(handle)))
    return results


def rerender(out_dir: str) -> dict[str, str]:
    """Render every report again from the stored results, without grading."""
    try:
        with open(os.path.join(out_dir, STATE, "class.json")) as handle:
            title = json.load(handle)["title"]
    except (OSError, ValueError, KeyError):
        from grader.errors import GraderError

        raise GraderError(f"{out_dir} holds no graded batch", hint="pass the --out folder of a `grader grade` run") from None
    reference = load_reference(out_dir)
    results = load_results(out_dir)
    for result in results:
        write_submission(result, out_dir, reference)
    return write_class(results, out_dir, title)


def save_reference(result: SubmissionResult, out_dir: str) -> None:
    write_atomic(os.path.join(out_dir, STATE, "reference.json"), json.dumps(result.to_json(), sort_keys=True) + "\n")


def load_reference(out_dir: str) -> SubmissionResult | None:
    from grader.gradebook import result_from_json

    try:
        with open(os.path.join(out_dir, STATE, "reference.json")) as handle:
            return result_from_json(json.load(handle))
    except (OSError, ValueError):
        return None
