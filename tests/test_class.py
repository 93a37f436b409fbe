"""A class as an LMS hands it over: one folder per student, every file named alike, a roster,
second submissions, a student not on the roster, one without a submission, one late."""

import csv
import datetime
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile

import nbformat
import pytest

from grader import batch
from grader.cli import main
from grader.config import manifest as manifest_mod, release
from grader.reports import classreport, exports
from grader.run import Options
from grader.store import gradebook
from conftest import ROOT, missing_capability

pytestmark = pytest.mark.slow
TINY = os.path.join(ROOT, "tests", "fixtures", "tiny_assignment")
NAME = "04_Keras_Flowers_transfer_learning_playground.ipynb"  # what every Colab download is called
DUE = datetime.datetime(2026, 1, 10, 23, 59, tzinfo=datetime.timezone.utc)
CLASS = '\n[class]\ndue = "2026-01-10T23:59:00+00:00"\nlate_penalty_per_day = 0.1\nlate_cap = 0.3\ncount = "latest"\n'


def stamp(days: float) -> float:
    return (DUE + datetime.timedelta(days=days)).timestamp()


def notebook(playground, answer: str) -> str:
    copy = nbformat.from_dict(playground)
    for cell in copy.cells:
        if cell.get("id") == "answer":
            cell.source = answer
    return nbformat.writes(copy)


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    """The assignment (tiny, with a due date), the LMS download and the roster."""
    work = tmp_path_factory.mktemp("class")
    assignment = work / "tiny"
    shutil.copytree(TINY, assignment)
    (assignment / "assignment.toml").write_text((assignment / "assignment.toml").read_text() + CLASS)
    _, playground = release.build(manifest_mod.load(str(assignment)))
    right, wrong = notebook(playground, "answer = 42\nprint(answer)"), notebook(playground, "answer = 1 / 0")
    download = work / "download"
    students = [f"s{n:02d}" for n in range(1, 13)]
    for student in students[:-1]:  # s12 has not submitted
        (download / student).mkdir(parents=True)
        path = download / student / NAME
        path.write_text(wrong if student in ("s07", "s09") else right)
        os.utime(path, (stamp(-1), stamp(-1)))
    late = download / "s04" / NAME
    os.utime(late, (stamp(1.5), stamp(1.5)))  # two days (or parts of days) late
    for student, first, second in (("s02", wrong, right), ("s03", right, wrong)):  # a second try, a day later
        (download / student / NAME).write_text(first)
        os.utime(download / student / NAME, (stamp(-2), stamp(-2)))
        (download / student / "second_try.ipynb").write_text(second)
        os.utime(download / student / "second_try.ipynb", (stamp(-1), stamp(-1)))
    (download / "zz_unknown").mkdir()
    (download / "zz_unknown" / NAME).write_text(right)
    os.utime(download / "zz_unknown" / NAME, (stamp(-1), stamp(-1)))
    roster = work / "roster.csv"
    with open(roster, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "email", "section", "canvas_id"])
        for n, student in enumerate(students, start=1):
            writer.writerow([student, f"Student {n}", f"{student}@school.example", "A" if n % 2 else "B", str(1000 + n)])
    return assignment, download, roster, work


@pytest.fixture(scope="module")
def graded(lms):
    assignment, download, roster, work = lms
    out = work / "out"
    result = batch.grade(manifest_mod.load(str(assignment)), [str(download)],
                         Options(out_dir=str(out), quiet=True, jobs=1, roster=str(roster)))
    return result, out


def row_of(graded_class, student):
    return next(row for row in graded_class.view.rows if row.student == student)


def test_every_student_is_one_row_with_the_right_grade(graded):
    result, out = graded
    view = result.view
    assert [row.student for row in view.rows] == [f"s{n:02d}" for n in range(1, 13)] + ["zz_unknown"]
    finals = {row.student: row.final for row in view.rows}
    assert finals == {**{f"s{n:02d}": 1.0 for n in range(1, 12)}, "s03": 0.0, "s04": 0.8, "s07": 0.0, "s09": 0.0,
                      "s12": None, "zz_unknown": 1.0}
    assert row_of(result, "s04").counted.late_days == 2 and row_of(result, "s04").penalty == pytest.approx(0.2)
    s02, s03 = row_of(result, "s02"), row_of(result, "s03")
    assert len(s02.attempts) == 2 and s02.counted.file == "second_try.ipynb"  # the latest counts: right, 1/1
    assert len(s03.attempts) == 2 and s03.counted.file == "second_try.ipynb"  # the latest counts: wrong, 0/1
    assert all(a.result is not None for a in s02.attempts + s03.attempts)  # both kept, both graded
    assert row_of(result, "s12").status == "missing" and not row_of(result, "zz_unknown").known
    notes = " | ".join(result.notes)
    assert "not in the roster: zz_unknown" in notes and "no submission: s12" in notes and "s02 (2)" in notes and "s03 (2)" in notes


def test_the_csv_and_the_class_page_are_keyed_by_student(graded):
    result, out = graded
    table = list(csv.DictReader(io.StringIO(open(out / "grades.csv").read())))
    assert [r["student"] for r in table] == [row.student for row in result.view.rows]
    s04 = next(r for r in table if r["student"] == "s04")
    assert (s04["name"], s04["late_days"], s04["penalty"], s04["final"], s04["file"]) == ("Student 4", "2", "0.2", "0.8", NAME)
    assert next(r for r in table if r["student"] == "s12")["status"] == "missing"
    index = open(out / "index.html").read()
    assert "13 student(s), 12 with a submission" in index and "not in roster" in index and "no submission" in index
    for row in result.view.rows:
        for attempt in row.attempts:
            assert os.path.isfile(out / attempt.folder / "scorecard.html")
            assert f'href="{attempt.folder}/scorecard.html"' in index


def test_the_canvas_export_matches_by_id_leaves_out_the_unknown_and_blanks_the_missing(graded):
    result, out = graded
    text, left_out = exports.canvas_csv(result.view, "Lab 2 (77)", points=10)
    lines = text.splitlines()
    assert lines[0] == "Student,ID,SIS User ID,SIS Login ID,Section,Lab 2 (77)"
    assert "Student 1,1001,,,A,10" in lines and "Student 4,1004,,,B,8" in lines and "Student 12,1012,,,B," in lines
    assert len(lines) == 1 + 12 and left_out == ["zz_unknown (not in the roster)"]
    assert main(["export", "canvas", str(out), "--points", "10"]) == 1  # the unknown student is said, and the exit says so


def test_regrading_one_student_leaves_the_class_whole(lms, graded):
    assignment, download, roster, _ = lms
    result, out = graded
    before = open(out / "grades.csv").read()
    again = batch.grade(manifest_mod.load(str(assignment)), [str(download)],
                        Options(out_dir=str(out), quiet=True, jobs=1, student="s05"))
    assert len(again.view.rows) == 13 and open(out / "grades.csv").read() == before
    assert "13 student(s)" in open(out / "index.html").read()


def test_an_override_survives_regrading_and_reaches_every_page_and_export(lms, graded):
    assignment, download, roster, _ = lms
    result, out = graded
    assert main(["override", str(out), "--student", "s07", "--check", "runs", "--points", "0.5",
                 "--comment", "the idea was right", "--author", "TA Kim"]) == 0
    again = batch.grade(manifest_mod.load(str(assignment)), [str(download)],
                        Options(out_dir=str(out), quiet=True, jobs=1, regrade=True))
    s07 = row_of(again, "s07")
    assert s07.final == 0.5 and s07.counted.result.score == 0.0  # the grader's verdict is kept; the instructor's points count
    scorecard = open(out / s07.counted.folder / "scorecard.html").read()
    assert "From your instructor" in scorecard and "the idea was right" in scorecard and "TA Kim" in scorecard
    table = {r["student"]: r for r in csv.DictReader(io.StringIO(open(out / "grades.csv").read()))}
    assert (table["s07"]["final"], table["s07"]["runs"], table["s07"]["comment"]) == ("0.5", "0.5", "the idea was right")
    text, _ = exports.canvas_csv(again.view, "Lab", points=None)
    assert "Student 7,1007,,,A,0.5" in text.splitlines()
    payload = exports.gradescope(row_of(again, "s07"), again.view.rules)  # what the bundle writes for the student
    assert payload["score"] == 0.5 and "the idea was right" in payload["output"]
    assert main(["override", str(out), "--student", "s07", "--check", "runs", "--remove"]) == 0
    assert row_of(batch.rerender(str(out)), "s07").final == 0.0


def test_feedback_is_one_folder_per_student_with_only_their_pages(graded):
    result, out = graded
    assert main(["feedback", str(out), "--zip"]) == 0
    archives = sorted(os.listdir(out / "feedback"))
    assert archives == [f"{row.student}.zip" for row in result.view.rows if row.counted is not None]
    with zipfile.ZipFile(out / "feedback" / "s02.zip") as archive:
        names = archive.namelist()
    assert "s02/index.html" in names and "s02/second_try/scorecard.html" in names and "s02/04_Keras_Flowers_transfer_learning_playground/scorecard.html" in names
    assert not [n for n in names if not n.startswith("s02/")]


def test_the_gradescope_autograder_runs_in_a_gradescope_shaped_directory(lms, tmp_path):
    assignment, download, _, _ = lms
    if shutil.which("bwrap") is None:
        missing_capability("bubblewrap is needed to lay out /autograder")
    zip_path = tmp_path / "autograder.zip"
    assert main(["gradescope-autograder", str(assignment), "--out", str(zip_path)]) == 0
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(root / "source")
        assert {"setup.sh", "run_autograder", "assignment/assignment.toml", "project/pyproject.toml"} <= set(archive.namelist())
    (root / "submission").mkdir()
    (root / "results").mkdir()
    shutil.copy(download / "s04" / NAME, root / "submission" / NAME)
    command = ["bwrap", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for entry in sorted(os.listdir("/")):  # this machine, read-only, as the container's system; /autograder its own
        path = os.path.join("/", entry)
        if entry in ("dev", "proc", "tmp", "autograder"):
            continue
        command += ["--symlink", os.readlink(path), path] if os.path.islink(path) else ["--ro-bind", path, path]
    for path in sorted({os.path.realpath(sys.prefix), ROOT}):  # a clone (and its venv) under /tmp, hidden by the tmpfs above
        if path.startswith("/tmp/"):
            command += ["--ro-bind", path, path]
    command += ["--bind", str(root), "/autograder", "--setenv", "GRADER_VENV", sys.prefix, "bash", "/autograder/source/run_autograder"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    payload = json.load(open(root / "results" / "results.json"))
    # The fields of Gradescope's published results.json specification, and their types.
    assert set(payload) <= {"score", "execution_time", "output", "output_format", "visibility", "stdout_visibility", "tests", "leaderboard", "extra_data"}
    assert isinstance(payload["score"], (int, float)) and isinstance(payload["execution_time"], (int, float))
    assert payload["visibility"] in ("hidden", "after_due_date", "after_published", "visible")
    if "tests" not in payload:  # this container cannot make the sandbox: nothing ran, and the student is told
        assert payload["score"] == 0 and payload["visibility"] == "visible" and "was not graded" in payload["output"], payload
        return
    for test in payload["tests"]:
        assert set(test) <= {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format", "tags", "visibility", "extra_data"}
        assert test["status"] in ("passed", "failed") and isinstance(test["name"], str) and 0 <= test["score"] <= test["max_score"]
    assert payload["score"] == 1.0 and payload["tests"][0]["status"] == "passed"


def test_the_bundle_carries_its_preflight_so_a_submission_grades_one_notebook(lms, tmp_path, monkeypatch):
    """The preflight runs when the bundle is made; in the container, a submission reuses it
    (the pair is not graded again) and an empty submission is told at once, visibly."""
    from grader import gradescope, preflight

    assignment, download, _, _ = lms
    if shutil.which("bwrap") is None:
        missing_capability("bubblewrap is needed for the bundle's preflight")
    zip_path = tmp_path / "autograder.zip"
    gradescope.bundle(manifest_mod.load(str(assignment)), str(zip_path))
    source = tmp_path / "source"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(source)
        assert {"state/out/gradebook.sqlite", "state/out/.grader/reference.json"} <= set(archive.namelist())
    # what students see is the class's policy, not grading: held after the due date here, with no new preflight
    toml = source / "assignment" / "assignment.toml"
    toml.write_text(toml.read_text().replace("[class]\n", '[class]\nvisibility = "after_due_date"\n'))
    judged = []
    real = preflight.judge
    monkeypatch.setattr(preflight, "judge", lambda results, graded=frozenset(): judged.append(graded) or real(results, graded))
    (tmp_path / "submission").mkdir()
    shutil.copy(download / "s01" / NAME, tmp_path / "submission" / NAME)
    payload = gradescope.run(manifest_mod.load(str(source / "assignment")), str(tmp_path / "submission"), str(tmp_path / "results.json"))
    assert payload["score"] == 1.0 and judged == [frozenset()]  # judged, but nothing of the pair graded again
    assert payload["visibility"] == "visible" and [t["visibility"] for t in payload["tests"]] == ["after_due_date"]
    assert payload["output"].splitlines()[1:] == ["1 check (1 point) is hidden until the due date."], payload["output"]
    (tmp_path / "empty").mkdir()
    empty = gradescope.run(manifest_mod.load(str(source / "assignment")), str(tmp_path / "empty"), str(tmp_path / "results.json"))
    assert empty["visibility"] == "visible" and empty["output"].startswith("No .ipynb file was submitted")
