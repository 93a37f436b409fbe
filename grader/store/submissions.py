"""From files and folders to students: who submitted what, and when.

The class is the roster (a CSV: `id`, `name`, `email`, optional `section`, and the
Canvas ids `canvas_id`, `sis_user_id`, `sis_login_id`). A submitted file's student comes
from a rule the instructor chooses (`--identify`):

- `folder`: the folder right under the submissions folder given (`submissions/<student
  id>/lab.ipynb`, the layout LMS downloads use);
- `roster`: the roster's optional `file` column (the file's name or its path under the
  submissions folder), for files that say nothing of their student;
- `file`: the file's own name without extension;
- `auto` (the default): the roster's `file` column if it names the file, else the
  folder for files in subfolders, else the file name.

So `alice/lab.ipynb` and `bob/lab.ipynb` are two students, and one student's two files
are two submissions of that student (the manifest's `[class] count` decides which
counts). A submission's time comes from the roster's `submitted_at` column when it has
one, else from the file's modification time (what an LMS download keeps).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import glob
import os
import re

from grader.faults import GraderError

RULES = ("auto", "folder", "roster", "file")
ROSTER_COLUMNS = ("id", "name", "email", "section", "canvas_id", "sis_user_id", "sis_login_id", "file", "submitted_at")


@dataclasses.dataclass(frozen=True)
class Student:
    id: str
    name: str = ""
    email: str = ""
    section: str = ""
    canvas_id: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""


@dataclasses.dataclass(frozen=True)
class Roster:
    students: dict[str, Student]
    files: dict[str, tuple[str, str]]  # file name or relative path -> (student id, submitted_at text)

    @classmethod
    def empty(cls) -> "Roster":
        return cls({}, {})

    def __bool__(self) -> bool:
        return bool(self.students)


@dataclasses.dataclass(frozen=True)
class Submission:
    path: str
    student: str  # the student's id (from the roster, the folder or the file name)
    submitted_at: float  # seconds since the epoch
    how: str  # how the student was found: "roster", "folder" or "file name"
    known: bool = True  # in the roster (always, without one)

    @property
    def file(self) -> str:
        return os.path.basename(self.path)


def read_roster(path: str) -> Roster:
    """The roster CSV: one row per student; `id` is required and unique."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # a spreadsheet's BOM is not part of the first column's name
            reader = csv.DictReader(handle)
            rows, header = list(reader), set(reader.fieldnames or ())
    except OSError as error:
        raise GraderError(f"cannot read the roster {path}: {error.strerror}") from None
    if "id" not in header:
        raise GraderError(f"the roster {path} has no `id` column", hint=f"its header must include id; known columns: {', '.join(ROSTER_COLUMNS)}")
    students: dict[str, Student] = {}
    files: dict[str, tuple[str, str]] = {}
    for number, row in enumerate(rows, start=2):
        student_id = (row.get("id") or "").strip()
        if not student_id:
            raise GraderError(f"the roster {path}, line {number}: the id is empty")
        if student_id not in students:
            fields = {f.name: (row.get(f.name) or "").strip() for f in dataclasses.fields(Student) if f.name != "id"}
            students[student_id] = Student(student_id, **fields)
        elif not (row.get("file") or "").strip():
            raise GraderError(f"the roster {path}, line {number}: the id {student_id!r} is there twice")
        mapped = (row.get("file") or "").strip()
        if mapped:
            if mapped in files and files[mapped][0] != student_id:
                raise GraderError(f"the roster {path}, line {number}: {mapped!r} is mapped to two students")
            files[mapped] = (student_id, (row.get("submitted_at") or "").strip())
    return Roster(students, files)


def roster_of(book, assignment: str, path: str | None) -> Roster:
    """The roster at `path` (kept in the gradebook `book` for later runs), else the one the
    gradebook kept from an earlier run."""
    if path:
        roster = read_roster(path)
        book.set_students(assignment, {key: dataclasses.asdict(s) for key, s in roster.students.items()})
        book.set_files(assignment, roster.files)
        return roster
    students = {key: Student(**fields) for key, fields in book.students(assignment).items()}
    return Roster(students, book.files(assignment))


def collect(paths: list[str]) -> list[tuple[str, str]]:
    """(file, the submissions folder it was found under) for the files named and every
    file inside the folders named; links are not followed."""
    found: list[tuple[str, str]] = []
    for path in paths:
        if os.path.isdir(path):
            files = sorted(
                p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True) if os.path.isfile(p) and not os.path.islink(p)
            )
            found += [(f, path) for f in files]
        elif os.path.isfile(path):
            found.append((path, os.path.dirname(path) or "."))
        else:
            raise GraderError(f"no such submission file or folder: {path}")
    if not found:
        raise GraderError(f"no submission files in {', '.join(paths)}")
    return found


def identify(found: list[tuple[str, str]], roster: Roster, rule: str = "auto") -> list[Submission]:
    """Each file's student, by the rule (see the module doc)."""
    if rule not in RULES:
        raise GraderError(f"unknown rule {rule!r} for finding a submission's student", hint=f"use one of {', '.join(RULES)}")
    if rule == "roster" and not roster.files:
        raise GraderError("the rule `roster` needs a roster with a `file` column")
    submissions = []
    for path, root in found:
        relative = os.path.relpath(path, root)
        student, how, when = _student_of(path, relative, roster, rule)
        stamp = _time(when, path)
        submissions.append(Submission(path, student, stamp, how, not roster or student in roster.students))
    return submissions


def _student_of(path: str, relative: str, roster: Roster, rule: str) -> tuple[str, str, str]:
    mapped = roster.files.get(relative) or roster.files.get(os.path.basename(path))
    if rule in ("auto", "roster") and mapped:
        return mapped[0], "roster", mapped[1]
    parts = relative.split(os.sep)
    if rule == "roster":
        return _from_name(os.path.splitext(parts[-1])[0]), "file name (not in the roster's file column)", ""
    if rule == "folder" or (rule == "auto" and len(parts) > 1):
        if len(parts) > 1:
            return _from_name(parts[0]), "folder", ""
    return _from_name(os.path.splitext(parts[-1])[0]), "file name", ""


def _from_name(text: str) -> str:
    return text.strip() or "unnamed"


def _time(text: str, path: str) -> float:
    if text:
        try:
            moment = datetime.datetime.fromisoformat(text.strip().upper())  # RFC 3339 allows 2026-12-01t10:00z too
        except ValueError:
            raise GraderError(f"the roster's submitted_at {text!r} is not a date and time", hint="write it as 2026-12-01T23:59:00+00:00") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.timestamp()
    return os.stat(path).st_mtime


def folder_name(student: str, taken: set[str]) -> str:
    """A safe, unique folder name for a student's pages."""
    name = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._@-]+", "_", student)).strip("._") or "student"
    name, unique, n = name[:80], name[:80], 2
    while unique in taken:
        unique, n = f"{name}-{n}", n + 1
    taken.add(unique)
    return unique
