"""What students see of each check, and when (grader/reports/visibility.py): the same on
the scorecards handed back, the workshop's pages and Gradescope's results (the bundle's
own test is in test_class.py). Classes are made by hand (a gradebook with results, nothing
graded), so these tests are fast."""

import dataclasses
import json
import os
import shutil
import time

import pytest

from conftest import ROOT
from grader.cli import main
from grader.config import manifest as manifest_mod
from grader.config.manifest import ClassRules
from grader.faults import ManifestError
from grader.reports import classreport, classview, visibility
from grader.results import CheckResult, SubmissionResult
from grader.store import gradebook

DAY = 86400.0
CHECKS = (("runs", "The cell runs", 10.0), ("structure", "The model's layers", 30.0), ("accuracy", "Validation accuracy", 60.0))
HELD = ClassRules(due=1000.0 * DAY, check_visibility=(("accuracy", "after_due_date"), ("structure", "after_published")))


def result(sha: str = "a1", scores=(10.0, 0.0, 30.0)) -> SubmissionResult:
    checks = tuple(CheckResult(check_id, title, "passed" if score == points else "partial" if score else "failed", score, points,
                               f"{check_id} said so", evidence={"threshold": 0.75, "val_accuracy": 0.7} if check_id == "accuracy" else {})
                   for (check_id, title, points), score in zip(CHECKS, scores))
    history = {"accuracy": [0.5, 0.7], "val_accuracy": [0.6, 0.7], "loss": [1.0, 0.8], "val_loss": [1.1, 0.9]}
    return SubmissionResult("lab", "1", "ada", "ada_lab.ipynb", sha, "graded", sum(scores), 100.0, checks,
                            training={"history": history, "val_accuracy": 0.7})


def test_each_visibility_is_shown_when_gradescope_shows_it():
    due = 100.0
    for setting, before, after_due, published in (("visible", True, True, True), ("after_due_date", False, True, False),
                                                  ("after_published", False, False, True), ("hidden", False, False, False)):
        assert visibility.shown(setting, due, False, due - 1) is before, setting
        assert visibility.shown(setting, due, False, due) is after_due, setting
        assert visibility.shown(setting, due, True, due - 1) is published, setting


def test_what_is_held_is_counted_in_checks_and_points_and_said_until_when():
    before = visibility.held(HELD, CHECKS, HELD.due, None, HELD.due - 1)
    assert (sorted(before.ids), before.points, before.total) == (["accuracy", "structure"], 90.0, False)
    assert before.sentences() == ["1 check (60 points) is hidden until the due date (1972-09-27 00:00 UTC).",
                                  "1 check (30 points) is hidden until your instructor publishes the grades."]
    after = visibility.held(HELD, CHECKS, HELD.due, None, HELD.due)
    assert (sorted(after.ids), after.total) == (["structure"], False)
    extended = visibility.held(HELD, CHECKS, HELD.due + 2 * DAY, None, HELD.due + DAY)  # a student's own due date counts
    assert "accuracy" in extended.ids
    published = visibility.held(HELD, CHECKS, HELD.due, 5.0, HELD.due)
    assert (published.checks, published.total) == ((), True)
    never = visibility.held(ClassRules(visibility="hidden"), CHECKS, None, 5.0, 0.0)
    assert (len(never.checks), never.total) == (3, True)  # published: the score as a whole is shown, the checks never
    assert never.sentences() == ["3 checks (100 points) are hidden from students (they count in the score)."]
    assert visibility.held(ClassRules(), CHECKS, None, None, 0.0) == visibility.Held()


def test_the_students_scorecard_leaves_out_what_is_held_and_never_reads_as_all_passed():
    held = visibility.held(HELD, CHECKS, HELD.due, None, HELD.due - 1)
    page = visibility.scorecard(result(scores=(10.0, 30.0, 60.0)), "/nonexistent", None, None, held)
    assert "10 / 10" in page and "from the checks shown so far" in page and "2 hidden" in page
    assert "accuracy said so" not in page and "structure said so" not in page
    assert "Training in the grader" not in page  # the held accuracy check rests on the grader's training
    assert "1 check (60 points) is hidden until the due date" in page and "passing the ones above is not the whole score" in page
    shown = json.loads(visibility.student_json(result(), held))
    assert [c["id"] for c in shown["checks"]] == ["runs"] and (shown["score"], shown["max_score"], shown["training"]) == (10.0, 10.0, {})
    after = visibility.held(HELD, CHECKS, HELD.due, None, HELD.due)
    page = visibility.scorecard(result(), "/nonexistent", None, None, after)
    assert "accuracy said so" in page and "Training in the grader" in page and "structure said so" not in page
    everything = visibility.scorecard(result(), "/nonexistent", None, None, visibility.Held())
    assert 'id="held"' not in everything and "40 / 100" in everything


def test_the_instructors_scorecard_shows_every_check_and_when_students_see_it():
    row = classview.Row("ada", {}, True, (), (), 100.0)
    attempt = classview.Attempt(gradebook.Stored("ada", "ada.ipynb", "a1", 1.0, "folder", True), result(), True, "submissions/ada/ada")
    about = classreport.about(row, attempt, HELD)
    assert about["marks"] == {"accuracy": "students see it after their due date", "structure": "students see it once you publish the grades"}
    from grader.reports import report

    page = report.render_scorecard(result(), about=about)
    assert "accuracy said so" in page and "students see it after their due date" in page and "40 / 100" in page
    assert classreport.about(row, attempt, ClassRules())["marks"] == {}


def test_a_manifests_visibility_is_checked_before_anything_is_graded(tmp_path):
    assignment = tmp_path / "tiny"
    shutil.copytree(os.path.join(ROOT, "tests", "fixtures", "tiny_assignment"), assignment)
    toml = assignment / "assignment.toml"
    base = toml.read_text()
    for table, said in (('check_visibility = { speed = "hidden" }', "no such check"),
                        ('check_visibility = { runs = "later" }', "'later' is not one of"),
                        ('visibility = "after_due_date"', "a check is shown after_due_date, and the class has no due date")):
        toml.write_text(base + f"\n[class]\n{table}\n")
        with pytest.raises(ManifestError, match=said):
            manifest_mod.load(str(assignment))
    toml.write_text(base + '\n[class]\ndue = "2026-01-10T23:59:00+00:00"\ncheck_visibility = { runs = "after_due_date" }\n')
    assert manifest_mod.load(str(assignment)).rules.visibility_of("runs") == "after_due_date"


@pytest.fixture
def out(tmp_path):
    """A class of one, graded by hand, whose accuracy is held until a due date to come and
    whose structure is held until the grades are published."""
    rules = ClassRules(due=time.time() + 10 * DAY, check_visibility=HELD.check_visibility)
    facts = classview.ClassFacts("lab", "1", "Lab 1", "f" * 16, CHECKS, rules)
    classreport.save_facts(facts, str(tmp_path))
    book = gradebook.Gradebook(str(tmp_path / "gradebook.sqlite"))
    try:
        book.put(facts.fingerprint, result())
        book.record("lab", gradebook.Stored("ada", "subs/ada/ada_lab.ipynb", "a1", 1.0, "folder", True))
    finally:
        book.close()
    assert main(["report", str(tmp_path)]) == 0
    return tmp_path


def test_feedback_hands_back_what_the_student_may_see_and_publishing_shows_the_rest(out, capsys):
    instructors = (out / "submissions" / "ada" / "ada_lab" / "scorecard.html").read_text()
    assert "structure said so" in instructors and "accuracy said so" in instructors
    assert "once the grades are published (`grader publish OUT`)" in (out / "index.html").read_text()
    assert main(["feedback", str(out)]) == 0
    assert "1 student(s)' feedback holds checks back" in capsys.readouterr().out
    page = (out / "feedback" / "ada" / "ada_lab" / "scorecard.html").read_text()
    kept = json.loads((out / "feedback" / "ada" / "ada_lab" / "result.json").read_text())
    assert "structure said so" not in page and "accuracy said so" not in page and "2 hidden" in page
    assert [c["id"] for c in kept["checks"]] == ["runs"]
    assert main(["publish", str(out), "--author", "TA Kim"]) == 0
    assert "the grades are published" in capsys.readouterr().out
    assert "(they are)" in (out / "index.html").read_text()
    assert main(["feedback", str(out)]) == 0
    page = (out / "feedback" / "ada" / "ada_lab" / "scorecard.html").read_text()
    assert "structure said so" in page and "accuracy said so" not in page  # published; the due date is still to come
    assert "40 / 100" in page and "1 check (60 points) is hidden until the due date" in page  # the whole score, once published
    assert main(["publish", str(out), "--undo"]) == 0
    assert "no longer published" in capsys.readouterr().out


def test_the_workshop_shows_a_student_what_they_may_see_and_the_instructor_everything(tmp_path):
    """The web layer in process (nothing graded: the result is put in the gradebook by hand)."""
    from starlette.testclient import TestClient

    from grader.serve import live, uploads, web
    from test_serve import join, tiny_notebook, upload

    assignment = tmp_path / "tiny"
    shutil.copytree(os.path.join(ROOT, "tests", "fixtures", "tiny_assignment"), assignment)
    with open(assignment / "assignment.toml", "a") as toml:
        toml.write('\n[[checks]]\nid = "again"\ncheck = "answer_cells_run"\ntitle = "It runs again"\npoints = 2\n'
                   '\n[class]\ncheck_visibility = { again = "after_published" }\n')
    manifest = manifest_mod.load(str(assignment))
    out = tmp_path / "out"
    queue = uploads.Queue(str(out))
    facts = classview.ClassFacts.of(manifest, "test")
    pages = live.Live(queue, str(out / "gradebook.sqlite"), facts, 1)
    server = web.Server(manifest, web.ServerOptions(max_upload_mb=1, uploads_per_minute=5, code="ABC123"), queue, pages, None, False)
    with TestClient(server.app(), follow_redirects=False) as client:
        token = join(client, "Ada")
        assert upload(client, token, tiny_notebook(), name="my_lab.ipynb").status_code in (200, 202)
        sent = queue.of_student(queue.holder(token))[0]
        graded = SubmissionResult("tiny", "1", "x", "x", sent.sha256, "graded", 1.0, 3.0, (
            CheckResult("runs", "The answer cell runs", "passed", 1.0, 1.0, "the cell ran"),
            CheckResult("again", "It runs again", "failed", 0.0, 2.0, "a held verdict")))
        book = gradebook.Gradebook(str(out / "gradebook.sqlite"))
        book.put("test", graded)
        book.record("tiny", gradebook.Stored(sent.student, f"{sent.name}.ipynb", sent.sha256, sent.submitted_at, "workshop", True))
        view = classview.build(book, facts)
        folder = out / next(r for r in view.rows if r.student == sent.student).attempts[0].folder
        from grader.reports import report

        report.write_submission(graded, str(folder), about=classreport.about(view.rows[0], view.rows[0].attempts[0], facts.rules))
        queue.finish(sent, uploads.DONE, "graded", 1.0, 3.0, "")
        pages.changed()
        mine = f"/s/{token}/a/{sent.name}"
        page = client.get(f"{mine}/scorecard.html").text
        assert "the cell ran" in page and "a held verdict" not in page and "1 / 1" in page and "from the checks shown so far" in page
        assert "1 check (2 points) is hidden until your instructor publishes the grades" in page and "my_lab.ipynb" in page
        assert [c["id"] for c in client.get(f"{mine}/result.json").json()["checks"]] == ["runs"]
        assert "1 / 1</strong> from the checks shown so far" in client.get(f"/s/{token}").text
        admin = queue.issue_link("instructor", uploads.ADMIN)
        instructors = client.get(f"/a/{admin}/a/{sent.name}/scorecard.html").text
        assert "a held verdict" in instructors and "students see it once you publish the grades" in instructors
        projector = queue.issue_link("projector", uploads.PROJECTOR)
        room = client.get(f"/p/{projector}/live").text
        assert "<td>runs</td>" in room and "again" not in room  # the room sees no held check's pass rate
        assert 'id="scores-held"' in room and 'id="distribution"' not in room  # nor a total that would tell it

        # a second upload the grader failed on: kept in no gradebook, its pages written all the same
        assert upload(client, token, tiny_notebook("answer = 7"), name="my_lab.ipynb").status_code in (200, 202)
        failed = queue.of_student(sent.student)[0]
        book.record("tiny", gradebook.Stored(sent.student, f"{failed.name}.ipynb", failed.sha256, failed.submitted_at, "workshop", True))
        view = classview.build(book, facts)
        attempt = next(a for a in view.rows[0].attempts if a.stored.path == f"{failed.name}.ipynb")
        report.write_submission(dataclasses.replace(graded, sha256=failed.sha256), str(out / attempt.folder))
        queue.finish(failed, uploads.FAILED, "graded", 1.0, 3.0, "")
        pages.changed()
        page = client.get(f"/s/{token}/a/{failed.name}/scorecard.html")
        assert page.status_code == 200 and "a held verdict" not in page.text and "the cell ran" in page.text
        assert "a held verdict" not in client.get(f"/s/{token}/a/{failed.name}/result.json").text
        book.set_published("tiny", True)
        book.close()
        time.sleep(1.2)  # the server reads whether the grades are published at most once a second
        page = client.get(f"{mine}/scorecard.html").text
        assert "a held verdict" in page and "1 / 3" in page and 'id="held"' not in page


def test_a_class_kept_before_checks_had_a_visibility_shows_students_everything():
    """`[class] visibility` was Gradescope's alone (default after_published): not a hold on every page."""
    kept = {"name": "lab", "version": "1", "title": "Lab", "fingerprint": "f", "checks": [list(c) for c in CHECKS],
            "rules": {"count": "latest", "due": None, "late_penalty_per_day": 0.0, "late_cap": 1.0, "visibility": "after_published"}}
    facts = classview.ClassFacts.from_json(kept)
    assert not visibility.restricted(facts.rules, [c[0] for c in CHECKS])
    again = classview.ClassFacts.from_json(json.loads(json.dumps(dataclasses.replace(facts, rules=HELD).to_json())))
    assert again.rules == HELD  # a class kept since: its checks' visibility read back as written


def test_the_score_of_the_checks_shown_counts_the_instructors_points_on_them():
    held = visibility.held(HELD, CHECKS, HELD.due, None, HELD.due - 1)
    assert visibility.for_student(result(scores=(0.0, 0.0, 0.0)), held, {"runs": 8.0}).score == 8.0
    about = {"points": {"runs": 8.0}, "overrides": [{"check": "The cell runs", "id": "runs", "points": 8.0, "comment": "ok", "author": ""},
                                                   {"check": "Validation accuracy", "id": "accuracy", "points": 60.0, "comment": "held",
                                                    "author": ""}],
             "marks": {}, "final": 68.0, "bonus": 0}
    seen = visibility.for_student_about(about, held)
    assert [o["id"] for o in seen["overrides"]] == ["runs"] and seen["final"] is None
    failed_accuracy = dataclasses.replace(result(), checks=tuple(
        dataclasses.replace(c, evidence={}, check="validation_accuracy(threshold=0.75)") if c.id == "accuracy" else c for c in result().checks))
    assert visibility.for_student(failed_accuracy, held).training == {}  # held by its kind, whatever evidence it has
