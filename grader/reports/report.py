"""Render one submission: result.json, scorecard.html and notebook.html, and what every
page shares (the base template, the Content-Security-Policy, the grouping of failures).
The class's pages are classreport's. Rendering reads only results, so `grader report`
re-renders byte for byte what grading wrote.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import os
import re
import sys

import jinja2

from grader.config import notebook as notebook_mod
from grader.reports import charts, render_notebook, wording
from grader.results import SubmissionResult
from grader.store.storage import STATE, write_atomic

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("grader.reports", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
SORT_SCRIPT = _ENV.loader.get_source(_ENV, "sort.js")[0]  # the class report's only script


def content_security_policy(scripts: tuple[str, ...] = (), live: bool = False) -> str:
    """The policy every page carries: nothing is fetched, framed or submitted; images only
    from data: URLs; styles inline; scripts only the `scripts` given, each allowed by its hash.
    A `live` page (the workshop server's) may also fetch from and post forms to its own server."""
    hashes = [f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts]
    script_src = " ".join(hashes) or "'none'"
    own = "'self'" if live else "'none'"
    return (
        f"default-src 'none'; script-src {script_src}; style-src 'unsafe-inline'; img-src data:; "
        f"connect-src {own}; base-uri 'none'; form-action {own}; frame-src 'none'"
    )


def page(template: str, scripts: tuple[str, ...] = (), live: bool = False, **context) -> str:
    """A page rendered from `template`, with its Content-Security-Policy."""
    return _ENV.get_template(template).render(csp=content_security_policy(scripts, live), **context)


def fragment(template: str, **context) -> str:
    """A part of a page (a live page's part, fetched by its script), without a page's policy."""
    return _ENV.get_template(template).render(**context)


def template_text(name: str) -> str:
    """A file of the templates folder as it is (a page's script, to inline and hash)."""
    return _ENV.loader.get_source(_ENV, name)[0]


def write_submission(result: SubmissionResult, folder: str, reference: SubmissionResult | None = None, about: dict | None = None) -> str:
    """result.json and scorecard.html of one submission, in `folder`; `about` holds the
    class's facts (whose it is, when, whether it counts; see classreport.about)."""
    write_atomic(os.path.join(folder, "result.json"), json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    try:
        text = render_scorecard(result, reference, os.path.exists(os.path.join(folder, "notebook.html")), about)
    except Exception as error:  # a rendering bug must cost one page its looks, never the batch
        text = page("fallback.html.j2", r=result, error=f"{type(error).__name__}: {error}")
    write_atomic(os.path.join(folder, "scorecard.html"), text)
    return folder


def threshold_of(result: SubmissionResult) -> float | None:
    return next((float(c.evidence["threshold"]) for c in result.checks if "threshold" in c.evidence), None)


def render_scorecard(result: SubmissionResult, reference: SubmissionResult | None = None, notebook: bool = False,
                     about: dict | None = None, held=None) -> str:
    """The scorecard; `held` (grader/reports/visibility.py): the student's view, `result` and
    `about` as the student may see them now, the held checks said in a sentence."""
    history = result.training.get("history", {})
    reference_history = reference.training.get("history", {}) if reference is not None else {}
    accuracy = {"train": history.get("accuracy", []), "validation": history.get("val_accuracy", [])}
    loss = {"train": history.get("loss", []), "validation": history.get("val_loss", [])}
    if reference_history:
        accuracy["solution, validation"] = reference_history.get("val_accuracy", [])
        loss["solution, validation"] = reference_history.get("val_loss", [])
    curves = [charts.line_chart("accuracy", accuracy, threshold_of(result), unit_range=True), charts.line_chart("loss", loss)] if history else []
    structure = next((c for c in result.checks if "expected" in c.evidence), None)
    return page(
        "scorecard.html.j2",
        r=result,
        curves=[c for c in curves if c is not None],
        confusion=_confusion(result.training),
        structure=structure,
        notebook=notebook,
        cells=[(cell, wording.cell_label(cell)) for cell in result.cells],
        provenance=wording.provenance(result.provenance),
        about=about,
        held=held,
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


# --- the student's notebook ----------------------------------------------------------


def write_notebook(notebook, folder: str, title: str, budget: render_notebook.Budget = render_notebook.BUDGET) -> str:
    """The submitted notebook as HTML beside its scorecard: outputs kept (each capped),
    rich HTML and JavaScript outputs dropped, markdown rendered and sanitised; rendered in
    a child process within `budget`, else shown as plain text with a note saying why."""
    return write_rendering(render_notebook.render(notebook, budget), folder, title)


def write_rendering(rendering: render_notebook.Rendering, folder: str, title: str) -> str:
    """notebook.html from a notebook rendered already (where it was graded)."""
    path = os.path.join(folder, "notebook.html")
    write_atomic(path, page("notebook.html.j2", title=title, rendering=rendering))
    return path


def rendering_of(path: str) -> render_notebook.Rendering | None:
    """The notebook at `path`, rendered within the budget; None for a file that is not a
    readable notebook (its scorecard says why). Never raises: a page is not worth a grade."""
    try:
        return render_notebook.render(notebook_mod.read_submission(path))
    except notebook_mod.Unreadable:
        return None
    except Exception as error:  # noqa: BLE001 - rendering a strange notebook must not stop the batch
        print(f"grader: could not render {path} as HTML: {type(error).__name__}: {error}", file=sys.stderr)
        return None


# --- the lab's solution, for the curves beside each student's -----------------------


def save_reference(result: SubmissionResult, out_dir: str) -> None:
    write_atomic(os.path.join(out_dir, STATE, "reference.json"), json.dumps(result.to_json(), sort_keys=True) + "\n")


def load_reference(out_dir: str) -> SubmissionResult | None:
    try:
        with open(os.path.join(out_dir, STATE, "reference.json")) as handle:
            return SubmissionResult.from_json(json.load(handle))
    except (OSError, ValueError):
        return None
