"""Fast tests of who a file belongs to (the roster's columns, the rules) and of the Canvas
export's strict matching, on hand-made rosters and class views: no grading."""

import datetime
import os
import time
from types import SimpleNamespace

import pytest

from grader.faults import GraderError
from grader.config.manifest import ClassRules
from grader.reports import exports
from grader.store import submissions


def roster(tmp_path, text: str):
    path = tmp_path / "roster.csv"
    path.write_text(text)
    return submissions.read_roster(str(path))


def found(tmp_path, *relative):
    files = []
    for name in relative:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        files.append((str(path), str(tmp_path / "in")))
    return files


def test_the_rosters_file_column_names_the_student_of_a_file_whatever_its_name_or_folder(tmp_path):
    read = roster(tmp_path, "id,name,file,submitted_at\nada,Ada L,lab_final_v2.ipynb,2026-12-01T10:00:00+00:00\n"
                            "bob,Bob M,bob/lab.ipynb,\ncy,Cy N,,\n")
    assert read.files == {"lab_final_v2.ipynb": ("ada", "2026-12-01T10:00:00+00:00"), "bob/lab.ipynb": ("bob", "")}
    got = {os.path.relpath(s.path, tmp_path / "in"): s for s in submissions.identify(
        found(tmp_path, "lab_final_v2.ipynb", "bob/lab.ipynb", "cy.ipynb", "zed/lab.ipynb"), read)}
    assert (got["lab_final_v2.ipynb"].student, got["lab_final_v2.ipynb"].how) == ("ada", "roster")
    when = datetime.datetime(2026, 12, 1, 10, tzinfo=datetime.timezone.utc).timestamp()
    assert got["lab_final_v2.ipynb"].submitted_at == when  # the roster's time, not the file's
    assert (got["bob/lab.ipynb"].student, got["bob/lab.ipynb"].how) == ("bob", "roster")
    assert (got["cy.ipynb"].student, got["cy.ipynb"].how, got["cy.ipynb"].known) == ("cy", "file name", True)
    assert (got["zed/lab.ipynb"].student, got["zed/lab.ipynb"].how, got["zed/lab.ipynb"].known) == ("zed", "folder", False)
    strict = {s.student: s.how for s in submissions.identify(found(tmp_path, "lab_final_v2.ipynb", "cy.ipynb"), read, "roster")}
    assert strict == {"ada": "roster", "cy": "file name (not in the roster's file column)"}


def test_a_roster_that_would_give_one_file_or_one_id_to_two_students_is_refused(tmp_path):
    with pytest.raises(GraderError, match="'lab.ipynb' is mapped to two students"):
        roster(tmp_path, "id,file\nada,lab.ipynb\nbob,lab.ipynb\n")
    with pytest.raises(GraderError, match="the id 'ada' is there twice"):
        roster(tmp_path, "id,name\nada,Ada\nada,Ada again\n")
    assert roster(tmp_path, "id,file\nada,one.ipynb\nada,two.ipynb\n").files.keys() == {"one.ipynb", "two.ipynb"}  # two files of one student
    again = roster(tmp_path, "id,file,submitted_at\nada,lab.ipynb,2026-12-01T10:00:00Z\nada,lab.ipynb,2026-12-02T10:00:00Z\n")
    assert again.files == {"lab.ipynb": ("ada", "2026-12-02T10:00:00Z")}  # one student's file listed twice: the later line's time


def row(student, canvas_id="", final=None, known=True, **info):
    return SimpleNamespace(student=student, known=known, final=final, max_score=100.0, info={"canvas_id": canvas_id, **info})


def test_the_canvas_export_matches_by_canvas_id_only_and_refuses_one_id_for_two_students():
    view = SimpleNamespace(rows=[row("ada", "10001", 80.0, name="Ada L", sis_user_id="S1", section="A"),
                                 row("bob", "10002", None, name="Bob M"), row("cy"), row("zed", known=False)])
    text, left_out = exports.canvas_csv(view, "Lab 2 (77)", points=10)
    assert text.splitlines() == ["Student,ID,SIS User ID,SIS Login ID,Section,Lab 2 (77)", "Ada L,10001,S1,,A,8", "Bob M,10002,,,,"]
    assert left_out == ["cy", "zed (not in the roster)"]
    twice = SimpleNamespace(rows=[row("ada", "10001", 80.0), row("bob", " 10001 ", 50.0)])
    with pytest.raises(GraderError, match="the roster gives Canvas id 10001 to both ada and bob"):
        exports.canvas_csv(twice, "Lab")


def test_the_canvas_export_fills_each_roster_column_leaves_out_a_student_the_roster_gives_no_id_and_says_how_to_fix_a_clash():
    no_column = SimpleNamespace(student="dee", known=True, final=90.0, max_score=100.0, info={"name": "Dee"})  # no canvas_id column
    view = SimpleNamespace(rows=[row("ada", "10001", 87.0, name="Ada L", sis_user_id="S1", sis_login_id="ada@uni", section="A"),
                                 row("bob", "10002", 100.0), no_column])
    text, left_out = exports.canvas_csv(view, "Lab", points=7)
    assert text.split("\r\n") == ["Student,ID,SIS User ID,SIS Login ID,Section,Lab", "Ada L,10001,S1,ada@uni,A,6.09", "bob,10002,,,,7", ""]
    assert left_out == ["dee"]
    assert exports.canvas_csv(view, "Lab")[0].splitlines()[1:] == ["Ada L,10001,S1,ada@uni,A,87", "bob,10002,,,,100"]
    with pytest.raises(GraderError) as raised:
        exports.canvas_csv(SimpleNamespace(rows=[row("ada", "7"), row("bob", "7")]), "Lab")
    assert raised.value.hint == "fix the roster's canvas_id column: a Canvas import would give one student's grade to the other"


def test_a_canvas_score_scaled_to_the_assignments_points_is_rounded_to_the_hundredth():
    thirds = [row("ada", "10001", 1.0), row("bob", "10002", 2.0), row("cy", "10003", 3.0)]
    for each in thirds:
        each.max_score = 3.0
    text, _ = exports.canvas_csv(SimpleNamespace(rows=thirds), "Lab", points=10)
    assert [line.split(",")[-1] for line in text.splitlines()[1:]] == ["3.33", "6.67", "10"]


def graded_row(student, status="graded", final=None, penalty=0.0, comments=(), missing=False):
    checks = [SimpleNamespace(id="runs", title="The cell runs", score=10.0, max_score=10.0, status="passed", message="ran"),
              SimpleNamespace(id="acc", title="Accuracy", score=0.0, max_score=30.0, status="failed", message="0.41 < 0.60")]
    result = SimpleNamespace(assignment="lab", version=3, status=status, reason="not a notebook", fix="upload the .ipynb",
                             checks=checks if status == "graded" else [], provenance={"seconds": 12.345})
    return SimpleNamespace(student=student, status="missing" if missing else status, final=final, penalty=penalty,
                           counted=None if missing else SimpleNamespace(result=result, late_days=2),
                           applied=[SimpleNamespace(comment=c) for c in comments], check_points=lambda: {"acc": 12.0}, by_hand=False)


def test_the_gradescope_results_give_the_student_their_checks_their_final_score_and_what_was_said():
    ada = exports.gradescope(graded_row("ada", final=52.0, penalty=20.0, comments=("well argued",)), ClassRules())
    assert (ada["score"], ada["execution_time"], ada["visibility"]) == (52.0, 12.35, "visible")
    assert [(t["name"], t["score"], t["max_score"], t["status"], t["output"]) for t in ada["tests"]] == [
        ("The cell runs", 10.0, 10.0, "passed", "ran"), ("Accuracy", 12.0, 30.0, "failed", "0.41 < 0.60")]
    assert ada["output"] == ("lab version 3: your notebook was received and graded.\n20 points off: 2 day(s) late.\n"
                             "From your instructor: well argued")
    bob = exports.gradescope(graded_row("bob", status="ungradable"), ClassRules())
    assert (bob["score"], bob["tests"], bob["visibility"]) == (0, [], "visible")
    assert bob["output"] == "lab version 3: your notebook was received and ungradable.\nnot a notebook. upload the .ipynb."
    assert exports.gradescope(graded_row("cy", missing=True), ClassRules(visibility="hidden")) == {
        "score": 0, "visibility": "visible", "output": "No submission was graded for this student."}


def test_each_gradescope_test_has_its_checks_visibility_and_the_output_says_what_is_held_and_until_when():
    ada = graded_row("ada", final=40.0)
    rules = ClassRules(due=0.0, check_visibility=(("acc", "after_due_date"),))
    results = exports.gradescope(ada, rules)
    assert (results["visibility"], results["stdout_visibility"]) == ("visible", "hidden")  # received and ran: seen at once
    assert [t["visibility"] for t in results["tests"]] == ["visible", "after_due_date"]
    assert results["output"].splitlines()[1] == "1 check (30 points) is hidden until the due date."
    everything = exports.gradescope(ada, ClassRules(visibility="after_published"))
    assert [t["visibility"] for t in everything["tests"]] == ["after_published", "after_published"]
    assert everything["output"].splitlines()[1] == "2 checks (40 points) are hidden until your instructor publishes the grades."
    assert len(exports.gradescope(ada, ClassRules())["output"].splitlines()) == 1  # nothing held: nothing said of it
    for provenance in ({}, {"seconds": None}, {"seconds": 0}):
        ada.counted.result.provenance = provenance
        assert exports.gradescope(ada, ClassRules())["execution_time"] == 0


def test_a_roster_is_read_as_a_spreadsheet_saves_it_and_each_mistake_is_named_with_its_line(tmp_path):
    saved = tmp_path / "saved.csv"  # Excel's "CSV UTF-8": a byte-order mark, CRLF lines
    saved.write_bytes("id,name,email,section,canvas_id,sis_user_id,sis_login_id\r\nada, Ada L ,ada@uni,A,1,S1,L1\r\nbob,Bob,,,,,\r\n"
                      .encode("utf-8-sig"))
    read = submissions.read_roster(str(saved))
    assert read.students == {"ada": submissions.Student("ada", "Ada L", "ada@uni", "A", "1", "S1", "L1"), "bob": submissions.Student("bob", "Bob")}
    assert roster(tmp_path, "id\ncy\n").students == {"cy": submissions.Student("cy")}  # the columns it lacks are empty
    assert not roster(tmp_path, "id,name\n")  # a header alone: no student
    with pytest.raises(GraderError, match=r"cannot read the roster .*missing.csv: No such file or directory"):
        submissions.read_roster(str(tmp_path / "missing.csv"))
    with pytest.raises(GraderError, match=r"the roster .* has no `id` column") as raised:
        roster(tmp_path, "student,name\nada,Ada\n")
    assert "known columns: id, name, email, section, canvas_id" in raised.value.hint
    for text, said in (("id,name\nada,A\n ,B\n", "line 3: the id is empty"), ("id,name\nada,A\n,B\n", "line 3: the id is empty"), ("id,name\nada,A\nbob,B\nada,C\n", "line 4: the id 'ada' is there twice"),
                       ("id,file\nada,x.ipynb\nbob,y.ipynb\ncy,x.ipynb\n", "line 4: 'x.ipynb' is mapped to two students")):
        with pytest.raises(GraderError, match=f"the roster .*roster.csv, {said}"):
            roster(tmp_path, text)


def test_each_rule_finds_the_student_it_says_and_a_roster_time_is_read_as_written(tmp_path):
    read = roster(tmp_path, "id,file,submitted_at\nada,final.ipynb,2026-12-01T10:00:00Z\nbob,b.ipynb,2026-12-01T10:00:00\n")
    files = found(tmp_path, "sub/final.ipynb", "ada/lab.ipynb", "top.ipynb", " .ipynb", "b.ipynb")
    def students(rule):
        return [(s.student, s.how) for s in submissions.identify(files, read, rule)]
    assert students("auto") == [("ada", "roster"), ("ada", "folder"), ("top", "file name"), ("unnamed", "file name"), ("bob", "roster")]
    assert students("folder") == [("sub", "folder"), ("ada", "folder"), ("top", "file name"), ("unnamed", "file name"), ("b", "file name")]
    assert students("file") == [("final", "file name"), ("lab", "file name"), ("top", "file name"), ("unnamed", "file name"), ("b", "file name")]
    when = datetime.datetime(2026, 12, 1, 10, tzinfo=datetime.timezone.utc).timestamp()
    assert [s.submitted_at for s in submissions.identify(files, read) if s.how == "roster"] == [when, when]  # Z and no zone: UTC
    with pytest.raises(GraderError, match="unknown rule 'name' for finding a submission's student") as raised:
        submissions.identify(files, read, "name")
    assert raised.value.hint == "use one of auto, folder, roster, file, lms"
    with pytest.raises(GraderError, match="^the rule `roster` needs a roster with a `file` column$"):
        submissions.identify(files, roster(tmp_path, "id\nada\n"), "roster")
    with pytest.raises(GraderError, match="the roster's submitted_at 'yesterday' is not a date and time") as raised:
        submissions.identify(files, roster(tmp_path, "id,file,submitted_at\nada,top.ipynb,yesterday\n"))
    assert raised.value.hint == "write it as 2026-12-01T23:59:00+00:00"


@pytest.fixture
def local_time_five_hours_behind_utc(monkeypatch):
    """The machine's time zone set far from UTC, so that a time read as local shows."""
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_roster_time_keeps_the_zone_it_was_written_in_and_one_without_a_zone_is_utc_whatever_the_machines(
        tmp_path, local_time_five_hours_behind_utc):
    read = roster(tmp_path, "id,file,submitted_at\nada,a.ipynb,2026-12-01T12:00:00+02:00\nbob,b.ipynb,2026-12-01T10:00:00\n"
                            "cy,c.ipynb,2026-12-01T05:00:00-05:00\ndee,d.ipynb,2026-12-01T10:00:00Z\neve,e.ipynb,2026-12-01t10:00:00z\n")
    when = datetime.datetime(2026, 12, 1, 10, tzinfo=datetime.timezone.utc).timestamp()
    times = {s.student: s.submitted_at for s in submissions.identify(found(tmp_path, *(f"{c}.ipynb" for c in "abcde")), read)}
    assert times == {"ada": when, "bob": when, "cy": when, "dee": when, "eve": when}


def test_a_students_folder_name_is_safe_readable_and_unique():
    taken: set[str] = set()
    names = [submissions.folder_name(student, taken) for student in
             ("Ada Lovelace", "../../etc/passwd", "ada@uni.edu", "a..b", "...", "", "José", "x" * 100, "Ada Lovelace", "Ada_Lovelace",
              "Xu X", "x" * 100)]
    assert names == ["Ada_Lovelace", "etc_passwd", "ada@uni.edu", "a.b", "student", "student-2", "Jos", "x" * 80,
                     "Ada_Lovelace-2", "Ada_Lovelace-3", "Xu_X", "x" * 80 + "-2"]
    assert taken == set(names)
