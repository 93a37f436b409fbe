"""The gradebook: reruns skip what is done; a batch killed with SIGKILL resumes exactly."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

import nbformat
import pytest

from grader import batch
from grader.config import manifest as manifest_mod, release
from grader.results import CheckResult, SubmissionResult
from grader.run import Options
from grader.store import gradebook
from conftest import ROOT, attempt

TINY = os.path.join(ROOT, "tests", "fixtures", "tiny_assignment")


def test_results_round_trip_through_json():
    result = SubmissionResult("a", "1", "s", "s.ipynb", "ab" * 32, "graded", 1.0, 2.0,
                              checks=(CheckResult("c", "C", "passed", 1.0, 1.0, "ok", "check()", {"x": 1}),), cells=({"key": "k"},))
    assert SubmissionResult.from_json(json.loads(json.dumps(result.to_json()))) == result


def stored_result(sha, score, version="1", assignment="a"):
    return SubmissionResult(assignment, version, f"s{score:g}", "s.ipynb", sha, "graded", score, 2.0)


def test_the_store_keeps_each_result_under_its_whole_key_and_knows_an_earlier_graders_from_the_current_one(tmp_path):
    book = gradebook.Gradebook(str(tmp_path / "book.sqlite"))
    # readers (the class pages, the workshop) beside a batch that writes, each result on disk once put
    assert [book.connection.execute(f"PRAGMA {name}").fetchone()[0] for name in ("journal_mode", "synchronous")] == ["wal", 2]
    one, two = "ab" * 32, "cd" * 32
    book.put("old", stored_result(one, 1.0))
    time.sleep(0.01)  # graded_at orders the earlier fingerprints' results
    book.put("older", stored_result(one, 0.5))
    book.put("now", stored_result(two, 2.0))
    book.put("now", stored_result(two, 2.0, version="2"))
    assert book.get("a", "1", "now", two)[0].score == 2.0
    for key in (("b", "1", "now", two), ("a", "3", "now", two), ("a", "1", "old", two), ("a", "1", "now", one)):
        assert book.get(*key) is None, key
    assert book.latest("a", "1", "now", two) == (stored_result(two, 2.0), True)  # graded under the current fingerprint
    assert book.latest("a", "1", "now", one) == (stored_result(one, 0.5), False)  # the newest of the earlier ones
    assert book.latest("a", "2", "now", one) is None and book.latest("b", "1", "old", one) is None
    book.close()
    again = gradebook.Gradebook(str(tmp_path / "book.sqlite"))  # every result was committed as it came
    assert again.get("a", "1", "old", one)[0].score == 1.0


def test_a_roster_that_cannot_be_saved_leaves_the_one_kept_before(tmp_path):
    """Replacing the roster is one change: all of it, or none (a failure between the old
    rows' removal and the new ones' insertion once left the class with no roster)."""
    book = gradebook.Gradebook(str(tmp_path / "book.sqlite"))
    book.set_students("a", {"s1": {"name": "Ada"}})
    book.set_files("a", {"ada.ipynb": ("s1", "")})
    with pytest.raises(TypeError):
        book.set_students("a", {"s2": {"name": object()}})  # a field that is not JSON
    with pytest.raises(ValueError):
        book.set_files("a", {"bob.ipynb": ("s2",)})  # a malformed row
    assert book.students("a") == {"s1": {"name": "Ada"}} and book.files("a") == {"ada.ipynb": ("s1", "")}
    book.set_students("a", {"s2": {"name": "Bob"}})  # and the database is not left mid-transaction
    assert book.students("a") == {"s2": {"name": "Bob"}}
    book.close()


def test_the_store_keeps_the_newest_file_at_a_path_the_roster_as_given_and_the_overrides_by_student(tmp_path):
    book = gradebook.Gradebook(str(tmp_path / "book.sqlite"))
    book.record("a", gradebook.Stored("bob", "bob/lab.ipynb", "11", 5.0, "folder", True))
    book.record("a", gradebook.Stored("ada", "ada.ipynb", "22", 3.0, "file name", False))
    book.record("a", gradebook.Stored("bob", "bob/lab.ipynb", "33", 7.0, "folder", True))  # a newer file at the same path
    book.record("a", gradebook.Stored("bob", "bob/late.ipynb", "44", 6.0, "folder", True))
    book.record("other", gradebook.Stored("cy", "cy.ipynb", "55", 1.0, "file name", True))
    assert book.submissions("a") == [gradebook.Stored("ada", "ada.ipynb", "22", 3.0, "file name", False),
                                     gradebook.Stored("bob", "bob/late.ipynb", "44", 6.0, "folder", True),
                                     gradebook.Stored("bob", "bob/lab.ipynb", "33", 7.0, "folder", True)]
    book.set_students("a", {"zed": {"name": "Zed"}, "ada": {"name": "Ada"}})
    book.set_students("other", {"cy": {}})
    book.set_students("a", {"bob": {"name": "Bob"}, "ada": {"name": "Ada L", "section": "2"}})  # the roster replaced
    book.add_student("a", "dee", {"name": "Dee"})
    book.add_student("a", "bob", {"name": "Bob M"})
    assert book.students("a") == {"ada": {"name": "Ada L", "section": "2"}, "bob": {"name": "Bob M"}, "dee": {"name": "Dee"}}
    assert book.students("other") == {"cy": {}}
    book.set_override("a", gradebook.Override("bob", "structure", 25.0, "the idea was right", "TA", 1.0))
    book.set_override("a", gradebook.Override("bob", "", None, "see me", "TA", 2.0))
    book.set_override("a", gradebook.Override("ada", "runs", 5.0, "", "Prof", 3.0))
    book.set_override("a", gradebook.Override("bob", "structure", 20.0, "on second thought", "Prof", 4.0))
    book.set_override("other", gradebook.Override("cy", "runs", 0.0, "", "Prof", 5.0))
    assert book.overrides("a") == {"ada": [gradebook.Override("ada", "runs", 5.0, "", "Prof", 3.0)],
                                   "bob": [gradebook.Override("bob", "", None, "see me", "TA", 2.0),
                                           gradebook.Override("bob", "structure", 20.0, "on second thought", "Prof", 4.0)]}
    assert book.remove_override("a", "bob", "structure") and not book.remove_override("a", "bob", "structure")
    assert [o.check_id for o in book.overrides("a")["bob"]] == [""]


def make_submissions(folder, count, slow_at=None):
    """`count` tiny notebooks, student00..; the one at `slow_at` sleeps 4 s first (a batch is
    then surely mid-way while it runs, however fast the machine)."""
    built, playground = release.build(manifest_mod.load(TINY))
    folder.mkdir()
    for index in range(count):
        notebook = nbformat.from_dict(playground)
        for cell in notebook.cells:
            if cell.get("id") == "answer":
                cell.source = ("import time\ntime.sleep(4)\n" if index == slow_at else "") + f"answer = {index}\nprint(answer)"
        nbformat.write(notebook, str(folder / f"student{index:02d}.ipynb"))
    return folder


def rows(out):
    with sqlite3.connect(os.path.join(out, "gradebook.sqlite")) as db:
        return {sha: at for sha, at in db.execute("SELECT sha256, graded_at FROM results")}


def rows_so_far(out) -> int:
    """Results in a gradebook a running batch writes (none while it is still being made)."""
    try:
        return len(rows(out))
    except sqlite3.OperationalError:  # the file is there, its table not yet
        return 0


@pytest.mark.slow
def test_a_rerun_grades_nothing_again_and_regrade_does(tmp_path):
    folder = make_submissions(tmp_path / "subs", 3)
    options = Options(out_dir=str(tmp_path / "out"), quiet=True, jobs=1)
    first = batch.grade(manifest_mod.load(TINY), [str(folder)], options)
    before = rows(options.out_dir)
    again = batch.grade(manifest_mod.load(TINY), [str(folder)], options)
    assert rows(options.out_dir) == before and [r.score for r in again.results] == [r.score for r in first.results]
    batch.grade(manifest_mod.load(TINY), [str(folder)], Options(**{**options.__dict__, "regrade": True}))
    after = rows(options.out_dir)
    assert after.keys() == before.keys() and all(after[k] > before[k] for k in before)


@pytest.mark.slow
def test_sigkill_mid_batch_then_resume(tmp_path):
    students = 10
    folder = make_submissions(tmp_path / "subs", students, slow_at=4)
    command = [sys.executable, "-m", "grader", "grade", TINY, str(folder), "--quiet", "--jobs", "1"]
    killed_out, whole_out = str(tmp_path / "killed"), str(tmp_path / "whole")
    process = subprocess.Popen(command + ["--out", killed_out], cwd=ROOT)
    book = os.path.join(killed_out, "gradebook.sqlite")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if os.path.exists(book) and rows_so_far(killed_out) >= 5:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = rows(killed_out)
    assert 5 <= len(done_before) < students + 2  # the preflight's two and some students: killed mid-batch
    subprocess.run(command + ["--out", killed_out], cwd=ROOT, check=True)
    subprocess.run(command + ["--out", whole_out], cwd=ROOT, check=True)
    resumed, whole = rows(killed_out), rows(whole_out)
    assert len(resumed) == students + 2 and resumed.keys() == whole.keys()  # the students, the solution and the playground
    assert all(resumed[sha] == at for sha, at in done_before.items())  # not graded a second time
    for name in sorted(os.listdir(folder)):
        stem = name[: -len(".ipynb")]
        a = json.load(open(os.path.join(attempt(killed_out, stem), "result.json")))
        b = json.load(open(os.path.join(attempt(whole_out, stem), "result.json")))
        assert (a["score"], a["status"], [c["status"] for c in a["checks"]]) == (b["score"], b["status"], [c["status"] for c in b["checks"]])
    assert len(open(os.path.join(killed_out, "grades.csv")).read().splitlines()) == students + 1


@pytest.mark.slow
def test_two_workers_give_the_scores_of_one(tmp_path):
    folder = make_submissions(tmp_path / "subs", 4)
    one = batch.grade(manifest_mod.load(TINY), [str(folder)], Options(out_dir=str(tmp_path / "one"), quiet=True, jobs=1))
    two = batch.grade(manifest_mod.load(TINY), [str(folder)], Options(out_dir=str(tmp_path / "two"), quiet=True, jobs=2))
    assert [(r.submission, r.score) for r in one.results] == [(r.submission, r.score) for r in two.results]


def _faulty_worker(connection, context, group, fault):
    """A grading worker in which `fault()` happens (once, or always) while it checks the
    notebook named in $GRADER_TEST_FAIL ("name:once|always:marker file")."""
    from grader.grading import pipeline
    from grader.scale import executors

    real = pipeline.finish_submission
    target, mode, marker = os.environ["GRADER_TEST_FAIL"].split(":")

    def faulty(started, batch_):
        if started.base.submission == target and (mode == "always" or not os.path.exists(marker)):
            open(marker, "a").close()
            fault()
        return real(started, batch_)

    pipeline.finish_submission = faulty
    executors.serve(connection, context, group)


def _disk_on_fire():
    raise RuntimeError("disk on fire")  # while the next submission's sandbox runs


def failing_worker(connection, context, group):
    _faulty_worker(connection, context, group, _disk_on_fire)


def dying_worker(connection, context, group):
    """Killed, as by the kernel's OOM killer."""
    _faulty_worker(connection, context, group, lambda: os.kill(os.getpid(), signal.SIGKILL))


@pytest.mark.slow
@pytest.mark.parametrize("worker, jobs", [(failing_worker, 1), (dying_worker, 1), (dying_worker, 2)])
def test_a_failure_of_the_graders_own_is_retried_and_costs_nothing(tmp_path, monkeypatch, worker, jobs):
    folder = make_submissions(tmp_path / "subs", 3)
    monkeypatch.setenv("GRADER_TEST_FAIL", f"student01:once:{tmp_path / 'failed-once'}")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    os.makedirs(tempfile.tempdir)
    options = Options(out_dir=str(tmp_path / "out"), quiet=True, jobs=jobs, worker=worker)
    results = batch.grade(manifest_mod.load(TINY), [str(folder)], options).results
    assert os.path.exists(tmp_path / "failed-once")  # it did fail, once
    assert [(r.submission, r.status, r.score) for r in results] == [(f"student0{i}", "graded", 1.0) for i in range(3)]
    assert len(rows(str(tmp_path / "out"))) == 3 + 2  # the students, the solution and the playground
    assert not [n for n in os.listdir(tempfile.tempdir) if n.startswith("grader-run-")]  # no abandoned run's folder


@pytest.mark.slow
@pytest.mark.parametrize("worker", [failing_worker, dying_worker])
def test_a_notebook_the_grader_always_fails_on_is_ungradable_and_not_stored(tmp_path, monkeypatch, worker):
    folder = make_submissions(tmp_path / "subs", 3)
    monkeypatch.setenv("GRADER_TEST_FAIL", f"student01:always:{tmp_path / 'failed'}")
    results = batch.grade(manifest_mod.load(TINY), [str(folder)], Options(out_dir=str(tmp_path / "out"), quiet=True, jobs=1, worker=worker)).results
    by_name = {r.submission: r for r in results}
    assert by_name["student01"].status == "ungradable" and "failed on this notebook 3 time(s)" in by_name["student01"].reason
    assert "grader's fault" in by_name["student01"].fix
    assert by_name["student00"].status == by_name["student02"].status == "graded"
    assert len(rows(str(tmp_path / "out"))) == 2 + 2  # not remembered: a rerun tries again


@pytest.mark.slow
def test_editing_a_locked_cell_grades_everything_again(tmp_path):
    import shutil

    assignment = tmp_path / "tiny"
    shutil.copytree(TINY, assignment)
    folder = make_submissions(tmp_path / "subs", 2)
    options = Options(out_dir=str(tmp_path / "out"), quiet=True, jobs=1)
    batch.grade(manifest_mod.load(str(assignment)), [str(folder)], options)
    batch.grade(manifest_mod.load(str(assignment)), [str(folder)], options)  # nothing changed: nothing graded
    with sqlite3.connect(os.path.join(options.out_dir, "gradebook.sqlite")) as db:
        assert db.execute("SELECT COUNT(DISTINCT setting), COUNT(*) FROM results").fetchone() == (1, 4)
    source = assignment / "source.ipynb"
    source.write_text(source.read_text().replace("GREETING = 'hello'", "GREETING = 'hello, class'"))
    batch.grade(manifest_mod.load(str(assignment)), [str(folder)], options)
    with sqlite3.connect(os.path.join(options.out_dir, "gradebook.sqlite")) as db:
        assert db.execute("SELECT COUNT(DISTINCT setting), COUNT(*) FROM results").fetchone() == (2, 8)  # all graded again


@pytest.mark.slow
def test_the_solution_handed_in_as_released_is_graded_once_by_the_preflight(tmp_path):
    """A fresh batch grades the lab's solution and playground in its preflight; the same
    files handed in (the demo's, a student's unchanged playground) take those results, with
    their pages, instead of being graded a second time."""
    from grader.config import scenarios

    loaded = manifest_mod.load(TINY)
    record, playground = release.build(loaded)
    folder = tmp_path / "subs"
    folder.mkdir()
    for name, content in scenarios.make(record, playground, ["solution.ipynb", "untouched_playground.ipynb"]).items():
        (folder / name).write_bytes(content)
    out = tmp_path / "out"
    graded = batch.grade(loaded, [str(folder)], Options(out_dir=str(out), quiet=True, jobs=1))
    assert json.load(open(out / ".grader" / "batch.json"))["graded"] == 0
    assert len(rows(str(out))) == 2  # the preflight's two results, nothing else
    scores = {r.submission: (r.score, r.max_score) for r in graded.results}
    assert scores["solution"][0] == scores["solution"][1] and scores["untouched_playground"][0] < scores["untouched_playground"][1]
    for student in ("solution", "untouched_playground"):
        assert {"scorecard.html", "notebook.html"} <= set(os.listdir(attempt(str(out), student)))


def test_whose_a_result_is_travels_with_it_as_a_value():
    from grader.faults import Owner

    result = SubmissionResult("a", "1", "s", "s.ipynb", "ab" * 32, "ungradable", 0.0, 2.0, reason="the grader failed", owner=Owner.GRADER)
    back = SubmissionResult.from_json(json.loads(json.dumps(result.to_json())))
    assert back == result and back.owner is Owner.GRADER and back.graders_fault
    assert json.loads(json.dumps(result.to_json()))["owner"] == "grader"
    assert SubmissionResult.from_json({**result.to_json(), "owner": "student"}).owner is Owner.STUDENT
