"""The instructor's word on a submission (`grader override`), on a class made by hand (a
gradebook with results, no grading): bounded by each check's points or said as a bonus,
shown as the final score on the scorecard's headline and in every export, counted on an
ungradable submission the instructor graded by hand, and kept to the submission it was
written for unless carried over."""

import csv
import dataclasses
import io

import pytest

from grader.cli import main
from grader.config.manifest import ClassRules
from grader.reports import classreport, classview, exports
from grader.results import CheckResult, SubmissionResult
from grader.store import gradebook

CHECKS = (("runs", "The cell runs", 10.0), ("structure", "The model's layers", 30.0), ("accuracy", "Validation accuracy", 60.0))
FACTS = classview.ClassFacts("lab", "1", "Lab 1", "f" * 16, CHECKS, ClassRules())


def result(sha: str, scores=(10.0, 0.0, 30.0), status="graded") -> SubmissionResult:
    checks = tuple(CheckResult(check_id, title, "passed" if score == points else "failed", score, points, f"{check_id} said")
                   for (check_id, title, points), score in zip(CHECKS, scores)) if status == "graded" else ()
    return SubmissionResult("lab", "1", "x", "lab.ipynb", sha, status, sum(scores) if status == "graded" else 0.0, 100.0, checks,
                            reason="not JSON" if status != "graded" else "", fix="submit the .ipynb" if status != "graded" else "")


@pytest.fixture
def out(tmp_path):
    """A class of three: ada (40/100), bob (an unreadable file), cy (two submissions)."""
    classreport.save_facts(FACTS, str(tmp_path))
    book = gradebook.Gradebook(str(tmp_path / "gradebook.sqlite"))
    try:
        for student, sha, at, graded in (("ada", "a1", 1.0, result("a1")), ("bob", "b1", 1.0, result("b1", status="ungradable")),
                                         ("cy", "c1", 1.0, result("c1")), ("cy", "c2", 2.0, result("c2", (10.0, 30.0, 60.0)))):
            book.put(FACTS.fingerprint, graded)
            book.record("lab", gradebook.Stored(student, f"subs/{student}/{sha}.ipynb", sha, at, "folder", True))
    finally:
        book.close()
    return tmp_path


def row(out, student):
    book = gradebook.Gradebook(str(out / "gradebook.sqlite"))
    try:
        return next(r for r in classview.build(book, classreport.load_facts(str(out))).rows if r.student == student)
    finally:
        book.close()


def override(out, *args):
    return main(["override", str(out), "--author", "TA Kim", *args])


def refused(capsys, code: int) -> str:
    """What `grader` said on stderr when it refused (a non-zero exit)."""
    assert code != 0
    return capsys.readouterr().err


def test_a_checks_points_are_bounded_by_the_check_and_more_is_a_bonus_said_as_one(out, capsys):
    for args, said in ((["--check", "structure", "--points", "45"], "structure is worth 0 to 30 points, not 45"),
                       (["--check", "structure", "--points", "-50"], "structure is worth 0 to 30 points, not -50"),
                       (["--bonus", "-5"], "a bonus is more points, not -5"),
                       (["--check", "runs", "--bonus", "5"], "--bonus is on the whole submission: leave out --check"),
                       (["--points", "5"], "--points needs --check"),
                       (["--check", "speed", "--points", "5"], "no check 'speed' in lab")):
        assert said in refused(capsys, override(out, "--student", "ada", *args))
    assert row(out, "ada").overrides == ()  # nothing refused was kept
    assert override(out, "--student", "ada", "--check", "structure", "--points", "15", "--comment", "the idea was right") == 0
    assert override(out, "--student", "ada", "--bonus", "5", "--comment", "for the write-up") == 0
    ada = row(out, "ada")
    assert (ada.score, ada.final, ada.points["structure"]) == (60.0, 60.0, 15.0)  # 10 + 15 + 30, and 5 on the whole


def test_the_headline_and_every_export_show_the_final_score(out):
    assert override(out, "--student", "ada", "--check", "structure", "--points", "15", "--comment", "the idea was right") == 0
    folder = row(out, "ada").counted.folder
    page = open(out / folder / "scorecard.html").read()
    assert '<span class="score" id="headline">55 / 100</span>' in page
    assert "(the grader's: 40)" in page
    assert "15 / 30 <span class=\"muted\">(your instructor's; the grader's 0)</span>" in page
    table = {r["student"]: r for r in csv.DictReader(io.StringIO(open(out / "grades.csv").read()))}
    assert (table["ada"]["final"], table["ada"]["structure"]) == ("55.0", "15.0")
    book = gradebook.Gradebook(str(out / "gradebook.sqlite"))
    try:
        view = classview.build(book, FACTS)
    finally:
        book.close()
    ada = next(r for r in view.rows if r.student == "ada")
    payload = exports.gradescope(ada, ClassRules())
    assert payload["score"] == 55.0 and [t["score"] for t in payload["tests"]] == [10.0, 15.0, 30.0]
    assert payload["output"].splitlines()[-1] == "From your instructor: the idea was right"


def test_points_on_an_ungradable_submission_count_as_graded_by_hand(out):
    assert row(out, "bob").final is None
    assert override(out, "--student", "bob", "--check", "runs", "--points", "10", "--comment", "sent me the notebook by mail") == 0
    assert override(out, "--student", "bob", "--check", "accuracy", "--points", "45") == 0
    bob = row(out, "bob")
    assert (bob.by_hand, bob.score, bob.final, bob.status) == (True, 55.0, 55.0, "ungradable")
    page = open(out / bob.counted.folder / "scorecard.html").read()
    assert '<span class="score" id="headline">55 / 100</span>' in page and "graded by your instructor" in page
    table = {r["student"]: r for r in csv.DictReader(io.StringIO(open(out / "grades.csv").read()))}
    assert table["bob"]["final"] == "55.0"
    text, _ = exports.canvas_csv(type("View", (), {"rows": (dataclasses.replace(bob, info={"name": "Bob", "canvas_id": "7"}),)})(),
                                 "Lab (1)", points=None)
    assert text.splitlines()[-1] == "Bob,7,,,,55"


def test_the_instructors_word_belongs_to_the_submission_it_was_written_for_and_carrying_it_is_asked_for(out):
    book = gradebook.Gradebook(str(out / "gradebook.sqlite"))
    try:  # cy's word written when c1 counted; c2 came later and counts now
        book.set_override("lab", gradebook.Override("cy", "structure", 20.0, "see me about the pooling", "TA Kim", 1.0, "c1"))
    finally:
        book.close()
    cy = row(out, "cy")
    assert cy.counted.stored.sha256 == "c2" and cy.applied == () and [o.comment for o in cy.set_aside] == ["see me about the pooling"]
    assert cy.final == 100.0  # c2's own points: the word on c1 is not applied
    assert override(out, "--student", "ada", "--comment", "fine") == 0  # rerenders the class
    book = gradebook.Gradebook(str(out / "gradebook.sqlite"))
    try:
        notes = classview.build(book, FACTS).notes()
    finally:
        book.close()
    assert any(note.endswith(": cy") and "--carry" in note for note in notes), notes
    page = open(out / cy.counted.folder / "scorecard.html").read()
    assert "see me about the pooling" not in page and 'id="set-aside"' in page
    assert override(out, "--student", "cy", "--carry") == 0
    cy = row(out, "cy")
    assert [o.comment for o in cy.applied] == ["see me about the pooling"] and cy.set_aside == () and cy.final == 90.0
    assert "see me about the pooling" in open(out / cy.counted.folder / "scorecard.html").read()


def test_under_best_the_word_on_a_submission_stays_with_it_and_ranks_it(out):
    """The instructor takes a check's points from cy's better submission (c2, 100): the other
    (c1, 40) may then count, and the word on c2 is not 'an earlier submission' to carry."""
    classreport.save_facts(dataclasses.replace(FACTS, rules=ClassRules(count="best")), str(out))
    assert row(out, "cy").counted.stored.sha256 == "c2"
    book = gradebook.Gradebook(str(out / "gradebook.sqlite"))
    try:
        book.set_override("lab", gradebook.Override("cy", "accuracy", 0.0, "copied", "TA Kim", 1.0, "c2"))
        book.set_override("lab", gradebook.Override("cy", "structure", 0.0, "", "TA Kim", 1.0, "c2"))
    finally:
        book.close()
    cy = row(out, "cy")
    assert (cy.counted.stored.sha256, cy.final, cy.set_aside, cy.applied) == ("c1", 40.0, (), ())  # c2 is 10 now: c1 counts
    assert len(cy.overrides) == 2  # kept, with the submission they rank


def test_a_gradebook_made_before_overrides_had_a_submission_applies_them_to_whichever_counts(tmp_path):
    import sqlite3

    path = str(tmp_path / "old.sqlite")
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE overrides (assignment TEXT NOT NULL, student TEXT NOT NULL, check_id TEXT NOT NULL, points REAL, "
                "comment TEXT NOT NULL, author TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (assignment, student, check_id))")
    old.execute("INSERT INTO overrides VALUES ('lab', 'ada', 'runs', 5.0, 'ok', 'TA', 1.0)")
    old.commit()
    old.close()
    book = gradebook.Gradebook(path)
    try:
        assert book.overrides("lab") == {"ada": [gradebook.Override("ada", "runs", 5.0, "ok", "TA", 1.0, "")]}
    finally:
        book.close()


def test_an_extension_is_a_due_date_of_the_students_own_and_the_class_is_scored_again_without_grading(out, tmp_path, capsys):
    classreport.save_facts(dataclasses.replace(FACTS, rules=ClassRules(due=-86400.0 * 2, late_penalty_per_day=0.1)), str(out))
    assert override(out, "--student", "ada", "--comment", "fine") == 0  # the class scored under the new facts
    assert (row(out, "ada").counted.late_days, row(out, "ada").final) == (3, 10.0)  # 40 less 30 for three days
    assert main(["extend", str(out), "--student", "ada", "--due", "1970-01-02T00:00:00Z"]) == 0
    said = capsys.readouterr().out
    assert "1 due date(s) set; the class scored again in" in said and "nothing graded" in said
    with capsys.disabled():
        print(f"\n{said.strip()}")  # the time it took, for the record (-s shows it)
    ada = row(out, "ada")
    assert (ada.extended, ada.counted.late_days, ada.final) == (True, 0, 40.0)
    page = open(out / ada.counted.folder / "scorecard.html").read()
    assert "(due 1970-01-02 00:00 UTC, your own due date)" in page
    assert row(out, "cy").counted.late_days == 3  # the others keep the class's
    extensions = tmp_path / "extensions.csv"
    extensions.write_text("student,due\nada,\ncy,1970-01-05T00:00:00\n")
    assert main(["extend", str(out), "--file", str(extensions)]) == 0
    assert (row(out, "ada").extended, row(out, "ada").counted.late_days, row(out, "cy").counted.late_days) == (False, 3, 0)
    for args, said in ((["--student", "ada"], "give --student with --due or --remove"),
                       (["--student", "zed", "--due", "1970-01-02T00:00:00Z"], "no student 'zed' in this class"),
                       (["--student", "ada", "--due", "next week"], "'next week' is not a date and time")):
        assert said in refused(capsys, main(["extend", str(out), *args]))


def test_the_class_policy_is_not_part_of_what_a_grade_depends_on(tmp_path):
    from grader.context import grading_part_hash

    base = '[assignment]\nname = "lab"\n\n[training]\nepochs = 3\n'
    path = tmp_path / "assignment.toml"
    path.write_text(base)
    first = grading_part_hash(str(path))
    path.write_text("# a comment\n" + base + '\n[class]\ndue = "2026-12-01T23:59:00+00:00"\nlate_penalty_per_day = 0.1\n')
    assert grading_part_hash(str(path)) == first  # a due date, a policy, a comment: the same grades, scored again
    path.write_text(base.replace("epochs = 3", "epochs = 4"))
    assert grading_part_hash(str(path)) != first  # the training: graded again
