"""Fast tests of who a file belongs to (the roster's columns, the rules) and of the Canvas
export's strict matching, on hand-made rosters and class views: no grading."""

import datetime
import os
from types import SimpleNamespace

import pytest

from grader import exports, submissions
from grader.faults import GraderError


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
