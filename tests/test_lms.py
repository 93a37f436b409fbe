"""The downloads Canvas, Moodle and Blackboard give, taken as they are (grader/store/lms.py):
each file's student found by the LMS's own ids, late markers and times kept, receipts and
worksheets read rather than graded, and every file that cannot be mapped said with why.
The downloads are made here in each LMS's shape; the last test grades them."""

import datetime
import os
import zipfile

import pytest

from grader.faults import GraderError
from grader.reports import classview
from grader.store import gradebook, lms, submissions

ROSTER = ("id,name,email,canvas_id,sis_user_id,username\n"
          "s1,Alice Anders,alice@school.example,10001,A-1,aanders\n"
          "s2,Bruno Brandt,bruno@school.example,10002,B-2,bbrandt\n"
          "s3,Chen Cao,chen@school.example,10003,C-3,c_cao\n"
          "s4,Alice Anders,alice.two@school.example,10004,D-4,aanders2\n")
WORKSHEET = ("Identifier,Full name,Email address,Status,Grade,Maximum Grade,Grade can be changed,Last modified (submission),"
             "Last modified (grade),Feedback comments\n"
             "Participant 7711,Alice Anders,alice@school.example,Submitted for grading,,100.00,Yes,\"Monday, 1 December 2026, 10:00 PM\",-,\n"
             "Participant 7712,Bruno Brandt,bruno@school.example,Submitted for grading,,100.00,Yes,\"Monday, 1 December 2026, 9:00 PM\",-,\n"
             "Participant 7713,Dana Doe,dana@school.example,Submitted for grading,,100.00,Yes,\"Monday, 1 December 2026, 9:00 PM\",-,\n")


def roster(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text(ROSTER)
    return submissions.read_roster(str(path))


def download(folder, names):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}" if not name.endswith(".csv") else WORKSHEET)
    return folder


def students(found, read, rule="auto"):
    return {os.path.relpath(s.path, found[0][1]): (s.student, s.known, s.late) for s in submissions.identify(found, read, rule)}


def test_each_lms_names_its_files_in_its_own_way():
    canvas = lms.named("andersalice_LATE_10001_5550001_lab-1.ipynb")
    assert (canvas.lms, canvas.key, canvas.shown, canvas.file, canvas.late) == ("Canvas", "10001", "andersalice", "lab-1.ipynb", True)
    assert lms.named("brandtbruno_10002_5550002_lab.ipynb").late is False
    assert lms.named("_10009_5550009_lab.ipynb").key == "10009"  # a name Canvas squashed to nothing
    flat = lms.named("Alice Anders_7711_assignsubmission_file_lab.ipynb")
    assert (flat.lms, flat.key, flat.shown, flat.file) == ("Moodle", "7711", "Alice Anders", "lab.ipynb")
    nested = lms.named(os.path.join("Alice Anders_7711_assignsubmission_file_", "lab.ipynb"))
    assert (nested.key, nested.file) == ("7711", "lab.ipynb")
    assert lms.named("Alice Anders_7711_assignsubmission_onlinetext_onlinetext.html") == lms.SKIPPED
    board = lms.named("Lab 1_aanders_attempt_2026-12-01-23-10-05_lab.ipynb")
    assert (board.lms, board.key, board.file) == ("Blackboard", "aanders", "lab.ipynb")
    assert board.when == datetime.datetime(2026, 12, 1, 23, 10, 5).timestamp()  # the server's clock, read here
    assert lms.named("Lab 1_aanders_attempt_2026-12-01-23-10-05.txt") == lms.SKIPPED  # the attempt's receipt
    # the assignment's name and the user name may hold underscores: the roster's user names say where one ends
    assert lms.named("Lab_1_c_cao_attempt_2026-12-01-23-10-05_lab.ipynb", frozenset({"c_cao"})).key == "c_cao"
    assert lms.named("Lab_1_c_cao_attempt_2026-12-01-23-10-05_lab.ipynb").key == "cao"
    for plain in ("lab.ipynb", "alice_lab.ipynb", "alice_2_lab.ipynb", "04_Keras_Flowers_transfer_learning_playground.ipynb"):
        assert lms.named(plain) is None, plain
    # a student's own name can have Canvas's shape: read as Canvas's only at the download's top, and only when asked
    assert lms.named(os.path.join("alice", "HW_3_2_final.ipynb")) is None and lms.named("HW_3_2_final.ipynb", canvas=False) is None
    assert lms.named(os.path.join("course", "Alice Anders_7711_assignsubmission_file_", "lab.ipynb")).key == "7711"  # one folder down
    assert lms.named("Lab 1_aanders_attempt_2026-02-30-10-00-00_lab.ipynb").when is None  # a day no calendar has: no time, no crash


def test_a_canvas_download_is_mapped_by_the_canvas_user_id_and_its_late_marker_kept(tmp_path):
    folder = download(tmp_path / "canvas", ["andersalice_LATE_10001_5550001_lab.ipynb", "brandtbruno_10002_5550002_lab.ipynb",
                                            "doedana_10099_5550099_lab.ipynb"])
    got = students(submissions.collect([str(folder)]), roster(tmp_path))
    assert got["andersalice_LATE_10001_5550001_lab.ipynb"] == ("s1", True, True)
    assert got["brandtbruno_10002_5550002_lab.ipynb"] == ("s2", True, False)
    assert got["doedana_10099_5550099_lab.ipynb"] == ("doedana-10099", False, False)
    why = {s.student: s.how for s in submissions.identify(submissions.collect([str(folder)]), roster(tmp_path))}
    assert why["doedana-10099"] == "Canvas user 10099 (doedana): no roster row has canvas_id 10099"
    assert why["s1"] == "Canvas user 10001 (andersalice)"


def test_a_moodle_download_is_mapped_through_its_grading_worksheet_or_else_by_full_name(tmp_path):
    names = [os.path.join("Alice Anders_7711_assignsubmission_file_", "lab.ipynb"), "Bruno Brandt_7712_assignsubmission_file_lab.ipynb",
             "Dana Doe_7713_assignsubmission_file_lab.ipynb", "Bruno Brandt_7712_assignsubmission_onlinetext_onlinetext.html"]
    with_sheet = download(tmp_path / "moodle", [*names, "grading_worksheet.csv"])
    got = students(submissions.collect([str(with_sheet)]), roster(tmp_path))
    assert got == {names[0]: ("s1", True, None), names[1]: ("s2", True, None), names[2]: ("Dana Doe-7713", False, None)}
    times = {s.student: s.submitted_at for s in submissions.identify(submissions.collect([str(with_sheet)]), roster(tmp_path))}
    assert times["s1"] == datetime.datetime(2026, 12, 1, 22).timestamp()  # the worksheet's time, not the file's
    why = {s.student: s.how for s in submissions.identify(submissions.collect([str(with_sheet)]), roster(tmp_path))}
    assert why["Dana Doe-7713"] == "Moodle participant 7713 (Dana Doe): the grading worksheet gives dana@school.example, which no roster row has"
    # without the worksheet, the full name: Alice Anders is two students of the roster, Bruno one
    bare = download(tmp_path / "bare", names)
    got = students(submissions.collect([str(bare)]), roster(tmp_path))
    assert got[names[1]] == ("s2", True, False) and got[names[0]] == ("Alice Anders-7711", False, False)  # no time: not late
    why = {s.student: s.how for s in submissions.identify(submissions.collect([str(bare)]), roster(tmp_path))}
    assert why["Alice Anders-7711"].startswith("Moodle participant 7711 (Alice Anders): 2 roster rows are named 'Alice Anders' (give Moodle's grading worksheet")
    assert why["s2"] == "Moodle participant 7712 (Bruno Brandt) (no time given: not counted late)"


def test_a_blackboard_download_is_mapped_by_user_name_with_its_attempt_time_and_receipts_left_out(tmp_path):
    folder = download(tmp_path / "board", ["Lab 1_aanders_attempt_2026-12-01-23-10-05_lab.ipynb", "Lab 1_aanders_attempt_2026-12-01-23-10-05.txt",
                                           "Lab 1_c_cao_attempt_2026-12-03-08-00-00_notebook.ipynb", "Lab 1_zz_attempt_2026-12-01-10-00-00_x.ipynb"])
    found = submissions.collect([str(folder)])
    chosen = submissions.identify(found, roster(tmp_path))
    assert sorted((s.student, s.known) for s in chosen) == [("s1", True), ("s3", True), ("zz", False)]
    times = {s.student: s.submitted_at for s in chosen}
    assert times["s3"] == datetime.datetime(2026, 12, 3, 8).timestamp()  # from the name, not the file's time
    assert {s.how for s in chosen if not s.known} == {"Blackboard user zz: no roster row has the username zz"}


def test_student_folders_whose_files_look_like_canvas_names_stay_their_folders_students(tmp_path):
    folder = download(tmp_path / "subs", [os.path.join("alice", "HW_3_2_final.ipynb"), os.path.join("bob", "HW_3_2_final.ipynb"),
                                          "week_2023_01_lab.ipynb"])
    plain = submissions.read_roster(str(tmp_path / "plain.csv")) if (tmp_path / "plain.csv").write_text("id\nalice\nbob\n") else None
    for read in (submissions.Roster.empty(), plain, roster(tmp_path)):
        got = sorted((s.student, s.how) for s in submissions.identify(submissions.collect([str(folder)]), read))
        assert got[:2] == [("alice", "folder"), ("bob", "folder")], got
    # without a Canvas roster, a top-level file of that shape is its own name; with one, it is read as Canvas's
    assert sorted(s.student for s in submissions.identify(submissions.collect([str(folder)]), plain))[2] == "week_2023_01_lab"


def test_a_download_file_with_no_time_from_its_lms_is_not_late_and_an_unread_time_is_said(tmp_path):
    folder = download(tmp_path / "moodle", ["Alice Anders_7711_assignsubmission_file_lab.ipynb", "grading_worksheet.csv"])
    (folder / "grading_worksheet.csv").write_text(WORKSHEET.replace("Monday, 1 December 2026, 10:00 PM", "lundi 1 décembre 2026, 22:00"))
    [chosen] = submissions.identify(submissions.collect([str(folder)]), roster(tmp_path))
    assert chosen.late is False and chosen.how.endswith("(its time 'lundi 1 décembre 2026, 22:00' could not be read: not counted late)")


def test_this_weeks_download_puts_a_students_file_at_the_same_path_as_last_weeks(tmp_path):
    paths = []
    for week, content in ((1, "{}"), (2, '{"cells": []}')):
        archive = tmp_path / f"week{week}" / "submissions.zip"
        archive.parent.mkdir()
        with zipfile.ZipFile(archive, "w") as handle:
            handle.writestr("andersalice_10001_5550001_lab.ipynb", content)
        [(path, root)] = submissions.collect([str(archive)], str(tmp_path / "staging"))
        paths.append(os.path.relpath(path, os.path.dirname(root)))  # as the gradebook keeps it
    assert paths == ["submissions/andersalice_10001_5550001_lab.ipynb"] * 2


def test_the_rule_lms_names_every_file_that_no_lms_named(tmp_path):
    folder = download(tmp_path / "mixed", ["andersalice_10001_5550001_lab.ipynb", "stray.ipynb"])
    got = {s.student: (s.known, s.how) for s in submissions.identify(submissions.collect([str(folder)]), roster(tmp_path), "lms")}
    assert got["s1"][0] is True
    assert got["stray"] == (False, "file name (not named as Canvas, Moodle or Blackboard name their downloads)")


def test_without_a_roster_the_lms_name_is_the_student(tmp_path):
    folder = download(tmp_path / "canvas", ["andersalice_10001_5550001_lab.ipynb", "Bruno Brandt_7712_assignsubmission_file_lab.ipynb"])
    chosen = submissions.identify(submissions.collect([str(folder)]), submissions.Roster.empty(), "lms")
    assert sorted((s.student, s.known) for s in chosen) == [("Bruno Brandt", True), ("andersalice", True)]
    # under auto, Canvas's shape is read only with a Canvas roster: a file of that shape is its own name
    chosen = submissions.identify(submissions.collect([str(folder)]), submissions.Roster.empty())
    assert sorted(s.student for s in chosen) == ["Bruno Brandt", "andersalice_10001_5550001_lab"]


def test_the_rosters_file_column_still_wins_over_an_lms_name(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text(ROSTER.splitlines()[0] + ",file,submitted_at\n" + ROSTER.splitlines()[2] + ",andersalice_LATE_10001_5550001_lab.ipynb,2026-12-01T10:00:00Z\n")
    folder = download(tmp_path / "canvas", ["andersalice_LATE_10001_5550001_lab.ipynb"])
    [chosen] = submissions.identify(submissions.collect([str(folder)]), submissions.read_roster(str(path)))
    assert (chosen.student, chosen.how, chosen.late) == ("s2", "roster", None)


def test_a_download_zip_is_unpacked_once_under_the_output_folder_and_nothing_outside_it(tmp_path):
    archive = tmp_path / "submissions.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("andersalice_10001_5550001_lab.ipynb", "{}")
        handle.writestr("../../escape_10002_5550002_lab.ipynb", "{}")  # a name that climbs out: kept inside
        handle.writestr("/abs_10003_5550003_lab.ipynb", "{}")
        link = zipfile.ZipInfo("linked_10004_5550004_lab.ipynb")
        link.external_attr = 0o120777 << 16  # a symbolic link
        handle.writestr(link, "/etc/passwd")
    staging = tmp_path / "out" / ".grader" / "downloads"
    found = submissions.collect([str(archive)], str(staging))
    names = sorted(os.path.relpath(path, root) for path, root in found)
    assert names == ["abs_10003_5550003_lab.ipynb", "andersalice_10001_5550001_lab.ipynb", "escape_10002_5550002_lab.ipynb"]
    assert all(os.path.realpath(path).startswith(str(staging)) for path, _ in found)
    assert not (tmp_path / "escape_10002_5550002_lab.ipynb").exists()
    again = submissions.collect([str(archive)], str(staging))
    assert again == found and len(os.listdir(staging)) == 1  # the same download: unpacked once
    with pytest.raises(GraderError, match="give it to `grader grade`"):
        submissions.collect([str(archive)])


def test_a_download_too_large_to_unpack_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("a_1_1_lab.ipynb", "x" * 1000)
    monkeypatch.setattr(submissions, "UNPACKED_BYTES", 999)
    with pytest.raises(GraderError, match="unpacks to more than"):
        submissions.collect([str(archive)], str(tmp_path / "staging"))
    assert not any(name.endswith(".ipynb") for _, _, names in os.walk(tmp_path / "staging") for name in names)


def test_the_gradebook_keeps_the_lms_late_marker_and_the_class_counts_it_as_one_day(tmp_path):
    book = gradebook.Gradebook(str(tmp_path / "book.sqlite"))
    try:
        book.record("a", gradebook.Stored("s1", "c/s1.ipynb", "11", 1e9, "Canvas user 10001", True, True))
        book.record("a", gradebook.Stored("s2", "c/s2.ipynb", "22", 2e9, "Canvas user 10002", True, False))
        book.record("a", gradebook.Stored("s3", "c/s3.ipynb", "33", 2e9, "file name", True))
        kept = {s.student: s for s in book.submissions("a")}
    finally:
        book.close()
    assert (kept["s1"].late, kept["s2"].late, kept["s3"].late) == (True, False, None)
    rules = classview.ClassRules(due=1.5e9, late_penalty_per_day=0.1)
    # Canvas's word is taken over the file's time (a download's files carry the time it was made)
    assert [classview._late_days(kept[s], rules) for s in ("s1", "s2", "s3")] == [1, 0, 5788]
    assert classview._late_days(kept["s1"], classview.ClassRules()) == 0  # no due date: nothing is late
    assert classview._late_days(kept["s1"], rules, extended=True) == 0  # Canvas's marker knew nothing of the student's own due date


@pytest.mark.slow
def test_the_three_lms_downloads_are_graded_as_they_come_with_the_late_policy_and_the_unmapped_said(tmp_path):
    """A Canvas zip, a Blackboard zip and a Moodle folder with its worksheet, given to
    `grader grade` as the LMSs give them (the tiny lab: nothing trains)."""
    import shutil

    import nbformat

    from grader import batch
    from grader.config import manifest as manifest_mod, release
    from grader.run import Options
    from conftest import ROOT

    due = datetime.datetime(2026, 12, 1, 23, 59)  # this machine's clock, as Blackboard's names are read
    assignment = tmp_path / "tiny"
    shutil.copytree(os.path.join(ROOT, "tests", "fixtures", "tiny_assignment"), assignment)
    with open(assignment / "assignment.toml", "a") as handle:
        handle.write(f'\n[class]\ndue = "{due.astimezone().isoformat()}"\nlate_penalty_per_day = 0.1\n')
    _, playground = release.build(manifest_mod.load(str(assignment)))
    answered = nbformat.from_dict(playground)
    next(cell for cell in answered.cells if cell.get("id") == "answer").source = "answer = 42"
    right = nbformat.writes(answered)
    canvas, board = tmp_path / "canvas.zip", tmp_path / "blackboard.zip"
    with zipfile.ZipFile(canvas, "w") as handle:
        handle.writestr("andersalice_LATE_10001_5550001_04_Keras_Flowers_transfer_learning_playground.ipynb", right)
        handle.writestr("brandtbruno_10002_5550002_04_Keras_Flowers_transfer_learning_playground.ipynb", right)
        handle.writestr("doedana_10099_5550099_lab.ipynb", right)
    when = (due + datetime.timedelta(days=1, hours=2)).strftime("%Y-%m-%d-%H-%M-%S")
    with zipfile.ZipFile(board, "w") as handle:
        handle.writestr(f"Lab 1_c_cao_attempt_{when}_lab.ipynb", right)
        handle.writestr(f"Lab 1_c_cao_attempt_{when}.txt", "Name: Chen Cao (c_cao)\nAssignment: Lab 1\n")
    moodle = tmp_path / "moodle"
    (moodle / "Alice Anders_7714_assignsubmission_file_").mkdir(parents=True)
    (moodle / "Alice Anders_7714_assignsubmission_file_" / "lab.ipynb").write_text(right)
    (moodle / "worksheet.csv").write_text(WORKSHEET.splitlines()[0] + "\n"
                                          "Participant 7714,Alice Anders,alice.two@school.example,Submitted for grading,,100.00,Yes,-,-,\n")
    (tmp_path / "roster.csv").write_text(ROSTER)
    graded = batch.grade(manifest_mod.load(str(assignment)), [str(canvas), str(board), str(moodle)],
                         Options(out_dir=str(tmp_path / "out"), quiet=True, jobs=1, roster=str(tmp_path / "roster.csv")))
    rows = {row.student: row for row in graded.view.rows}
    assert sorted(rows) == ["doedana-10099", "s1", "s2", "s3", "s4"]
    assert (rows["s1"].counted.late_days, rows["s1"].final) == (1, pytest.approx(0.9))  # Canvas's marker: one day
    assert (rows["s2"].counted.late_days, rows["s2"].final) == (0, 1.0)
    assert (rows["s3"].counted.late_days, rows["s3"].final) == (2, pytest.approx(0.8))  # Blackboard's time: a day and two hours
    assert (rows["s4"].counted.late_days, rows["s4"].final) == (0, 1.0)  # the worksheet gives no time: not counted late
    assert rows["s1"].counted.file.endswith("04_Keras_Flowers_transfer_learning_playground.ipynb")
    assert "not in the roster: doedana-10099 (no roster row has canvas_id 10099)" in graded.notes
    assert len(os.listdir(tmp_path / "out" / ".grader" / "downloads")) == 2  # each zip unpacked, under the output folder
