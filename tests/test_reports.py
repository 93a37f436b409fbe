"""Reports: no executable markup from students, exports in shape, re-rendering byte for byte."""

import glob
import json
import os
import shutil
from html.parser import HTMLParser

import pytest

from grader.cli import main
from grader.reports import exports, report

pytestmark = pytest.mark.slow
SORT_SCRIPT = "// Sort the submissions table"


class Markup(HTMLParser):
    """What in a page could run: script elements, event-handler attributes, javascript: URLs."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.scripts, self.handlers, self.js_urls, self.text = [], [], [], []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._in_script = True
            self.scripts.append("")
        for name, value in attrs:
            if name.lower().startswith("on"):
                self.handlers.append((tag, name, value))
            if name.lower() in ("href", "src", "action") and (value or "").strip().lower().startswith("javascript:"):
                self.js_urls.append((tag, value))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


def parse(path):
    markup = Markup()
    markup.feed(open(path, encoding="utf-8").read())
    return markup


def injection_folder(graded):
    from conftest import INJECTION_NAME

    from conftest import attempt

    result = next(r for r in graded[0].values() if r.file == f"{INJECTION_NAME}.ipynb")
    return result, attempt(graded[2], result.submission)


def test_student_payloads_render_as_text(graded):
    result, folder = injection_folder(graded)
    scorecard = parse(os.path.join(folder, "scorecard.html"))
    assert scorecard.scripts == [] and scorecard.handlers == [] and scorecard.js_urls == []
    text = "".join(scorecard.text)
    assert "<script>alert('stdout')</script>" in text  # shown, as text
    assert "<img src=x onerror=alert('error')>" in text and "onerror=alert('file')" in text
    notebook = parse(os.path.join(folder, "notebook.html"))
    assert notebook.scripts == [] and notebook.handlers == [] and notebook.js_urls == []
    index = parse(os.path.join(graded[2], "index.html"))
    assert [s.strip()[: len(SORT_SCRIPT)] for s in index.scripts] == [SORT_SCRIPT]
    assert index.handlers == [] and index.js_urls == []


def test_report_rerenders_byte_identical_pages(graded, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(graded[2], copy)
    pages = sorted(glob.glob(str(copy / "**" / "*.html"), recursive=True)) + [str(copy / "grades.csv")]
    before = {p: open(p, "rb").read() for p in pages}
    for p in pages:
        if not p.endswith("notebook.html"):
            os.unlink(p)
    assert main(["report", str(copy)]) == 0
    assert {p: open(p, "rb").read() for p in pages} == before


def test_each_students_gradescope_results_have_the_documented_fields(graded):
    from grader.cli import _class

    view = _class(str(graded[2]))
    payloads = [exports.gradescope(row, view.rules) for row in view.rows if row.status != "missing"]
    assert len(payloads) == len(os.listdir(os.path.join(graded[2], "submissions")))  # every student with a submission
    for data in payloads:
        assert isinstance(data["score"], (int, float))
        assert data["visibility"] == "visible", data  # the default: a student sees their checks at once
        if "tests" not in data:
            continue
        for test in data["tests"]:
            assert set(test) == {"name", "score", "max_score", "status", "output", "visibility"}
            assert isinstance(test["name"], str) and isinstance(test["output"], str) and test["visibility"] == "visible"
            assert test["status"] in ("passed", "failed") and 0 <= test["score"] <= test["max_score"]
        assert data["score"] == pytest.approx(sum(t["score"] for t in data["tests"]))
    with pytest.raises(SystemExit):  # the per-student export Gradescope could not import is gone
        main(["export", "gradescope", str(graded[2])])


def test_canvas_export_matches_students_by_their_canvas_id(graded, tmp_path):
    from grader.reports import classreport, classview
    from grader.store import gradebook

    copy = tmp_path / "copy"
    shutil.copytree(graded[2], copy)
    book = gradebook.Gradebook(str(copy / "gradebook.sqlite"))
    facts = classreport.load_facts(str(copy))
    book.set_students(facts.name, {"solution": {"id": "solution", "name": "Ada Lovelace", "canvas_id": "101", "section": "A"},
                                   "not_a_notebook": {"id": "not_a_notebook", "name": "Ned", "canvas_id": "102"}})
    view = classview.build(book, facts)
    text, left_out = exports.canvas_csv(view, "Transfer learning (7)", points=20)
    lines = text.splitlines()
    assert lines[0] == "Student,ID,SIS User ID,SIS Login ID,Section,Transfer learning (7)"
    assert "Ada Lovelace,101,,,A,20" in lines  # 100 of 100, scaled to the Canvas assignment's 20 points
    assert "Ned,102,,,," in lines  # ungradable: blank, not 0
    assert len(lines) == 3 and "syntax_error (not in the roster)" in left_out
