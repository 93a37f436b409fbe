"""From files and folders to students: who submitted what, and when.

The class is the roster (a CSV: `id`, `name`, `email`, optional `section`, and the
Canvas ids `canvas_id`, `sis_user_id`, `sis_login_id`). A submitted file's student comes
from a rule the instructor chooses (`--identify`):

- `folder`: the folder right under the submissions folder given (`submissions/<student
  id>/lab.ipynb`, the layout LMS downloads use);
- `roster`: the roster's optional `file` column (the file's name or its path under the
  submissions folder), for files that say nothing of their student;
- `file`: the file's own name without extension;
- `lms`: the names Canvas, Moodle and Blackboard give the files of their downloads
  (grader/store/lms.py), mapped to the roster by the LMS's own ids: Canvas's user id
  (`canvas_id`), Moodle's participant number through its grading worksheet (`email`,
  `sis_user_id`, `username`) or else the full name, Blackboard's user name (`username`);
- `auto` (the default): the roster's `file` column if it names the file, else the LMS's
  name if it is one, else the folder for files in subfolders, else the file name.

A download is taken as the LMS gives it: its zip (unpacked under the output folder) or the
folder it unpacks to; receipts and Moodle's grading worksheet (a CSV beside it) are read,
not graded.

So `alice/lab.ipynb` and `bob/lab.ipynb` are two students, and one student's two files
are two submissions of that student (the manifest's `[class] count` decides which
counts). A submission's time comes from the roster's `submitted_at` column when it has
one, else from what the LMS says (Blackboard's attempt time; Canvas says only whether it
was late), else from the file's modification time.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import glob
import os
import re
import zipfile

from grader.faults import GraderError
from grader.store import lms

RULES = ("auto", "folder", "roster", "file", "lms")
ROSTER_COLUMNS = ("id", "name", "email", "section", "canvas_id", "sis_user_id", "sis_login_id", "username", "file", "submitted_at")


@dataclasses.dataclass(frozen=True)
class Student:
    id: str
    name: str = ""
    email: str = ""
    section: str = ""
    canvas_id: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""
    username: str = ""  # the LMS user name (Blackboard's, Moodle's)


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
    how: str  # how the student was found: "roster", "folder", "file name", or the LMS's id (and, if not known, why)
    known: bool = True  # in the roster (always, without one)
    late: bool | None = None  # what the LMS says of lateness when it gives no time (Canvas); None: it says nothing

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


def collect(paths: list[str], staging: str | None = None) -> list[tuple[str, str]]:
    """(file, the submissions folder it was found under) for the files named and every
    file inside the folders named; links are not followed. A zip named is an LMS's
    download: it is unpacked into a folder of its own under `staging` (needed then)."""
    found: list[tuple[str, str]] = []
    for path in paths:
        if os.path.isfile(path) and zipfile.is_zipfile(path) and path.lower().endswith(".zip"):
            if staging is None:
                raise GraderError(f"{path} is a zip: give it to `grader grade`, which unpacks it under its output folder")
            path = unpack(path, staging)
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


UNPACKED_BYTES = 4 * 2**30  # an LMS's download unpacked, at most
UNPACKED_FILES = 50_000


def unpack(path: str, staging: str) -> str:
    """Unpack the LMS download `path` into a folder of its own under `staging` (kept by the
    zip's name, size and time, so that the same download is unpacked once), its members'
    names kept as they are, none outside the folder, no link made; refused past
    UNPACKED_BYTES or UNPACKED_FILES. Returns the folder the files are in, named as the zip
    is: a student's file is then at the same path in this week's download and next week's
    (`submissions/...`), and the newer replaces the older in the gradebook."""
    stat = os.stat(path)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(path))[0])[:60] or "download"
    folder = os.path.join(staging, f"{stem}-{stat.st_size}-{int(stat.st_mtime)}")
    if os.path.isdir(folder):
        return os.path.join(folder, stem)
    partial = folder + ".partial"
    if os.path.isdir(partial):
        import shutil

        shutil.rmtree(partial)
    os.makedirs(os.path.join(partial, stem))
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) > UNPACKED_FILES or sum(m.file_size for m in members) > UNPACKED_BYTES:
                raise GraderError(f"{path} unpacks to more than {UNPACKED_FILES:,} files or {UNPACKED_BYTES // 2**30} GiB",
                                  hint="unpack it yourself and give the folder")
            for member in members:
                parts = [part for part in member.filename.replace("\\", "/").split("/") if part not in ("", ".", "..")]
                if not parts or (member.external_attr >> 16) & 0o170000 == 0o120000:  # a name of nothing, or a link
                    continue
                target = os.path.join(partial, stem, *parts)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with archive.open(member) as source, open(target, "xb") as sink:
                    copied = 0
                    while chunk := source.read(2**20):
                        copied += len(chunk)
                        if copied > member.file_size:  # a member larger than the zip says
                            raise GraderError(f"{path}: {member.filename} is larger than its zip entry says")
                        sink.write(chunk)
    except (zipfile.BadZipFile, OSError) as error:
        raise GraderError(f"cannot unpack {path}: {error}") from None
    try:
        os.replace(partial, folder)
    except OSError:  # another grader unpacked it meanwhile
        if not os.path.isdir(folder):
            raise
    return os.path.join(folder, stem)


def identify(found: list[tuple[str, str]], roster: Roster, rule: str = "auto") -> list[Submission]:
    """Each file's student, by the rule (see the module doc)."""
    if rule not in RULES:
        raise GraderError(f"unknown rule {rule!r} for finding a submission's student", hint=f"use one of {', '.join(RULES)}")
    if rule == "roster" and not roster.files:
        raise GraderError("the rule `roster` needs a roster with a `file` column")
    sheets = {path: sheet for path, _ in found if path.lower().endswith(".csv") and (sheet := lms.worksheet(path))}
    sheet = lms.Worksheet({key: person for one in sheets.values() for key, person in one.people.items()}) if sheets else None
    usernames = frozenset(s.username for s in roster.students.values() if s.username)
    # Canvas's names have a shape a student's own file name can have (`lab_1_2_final.ipynb`):
    # read as Canvas's only where asked for, or where the roster is Canvas's (it has its ids)
    canvas = rule == "lms" or any(s.canvas_id for s in roster.students.values())
    submissions = []
    for path, root in found:
        relative = os.path.relpath(path, root)
        if path in sheets:
            continue  # Moodle's grading worksheet: read above, not a submission
        named = lms.named(relative, usernames, canvas) if rule in ("auto", "lms") else None
        if named == lms.SKIPPED:
            continue
        mapped = roster.files.get(relative) or roster.files.get(os.path.basename(path))
        if isinstance(named, lms.Named) and not (rule == "auto" and mapped):
            student, how, known = _by_lms(named, roster, sheet)
            stamp, late = named.when, named.late
            if named.lms == "Moodle":
                written = (sheet.people.get(named.key, {}) if sheet is not None else {}).get("submitted", "")
                stamp = lms.moodle_time(written)
                if stamp is None and written.strip() not in ("", "-"):
                    how += f" (its time {written.strip()!r} could not be read: not counted late)"
            if stamp is None and late is None:  # the LMS says nothing of when: the file's time is the download's
                late = False
                if "could not be read" not in how:
                    how += " (no time given: not counted late)"
            submissions.append(Submission(path, student, stamp if stamp is not None else os.stat(path).st_mtime, how, known, late))
            continue
        student, how, when = _student_of(path, relative, roster, "file" if rule == "lms" else rule)
        if rule == "lms":
            how = "file name (not named as Canvas, Moodle or Blackboard name their downloads)"
        stamp = _time(when, path)
        submissions.append(Submission(path, student, stamp, how, (not roster or student in roster.students) and rule != "lms"))
    return submissions


def _by_lms(named: lms.Named, roster: Roster, sheet: lms.Worksheet | None) -> tuple[str, str, bool]:
    """(student, how they were found, whether they are in the roster) for a file its LMS named."""
    students = list(roster.students.values())
    if named.lms == "Canvas":
        match = [s for s in students if s.canvas_id == named.key]
        why = f"no roster row has canvas_id {named.key}"
    elif named.lms == "Blackboard":
        match = [s for s in students if named.key in (s.username, s.sis_login_id)]
        why = f"no roster row has the username {named.key}"
    else:
        person = sheet.people.get(named.key) if sheet is not None else None
        if person is not None:
            email, number, user = person["email"].casefold(), person["id_number"], person["username"]
            match = [s for s in students if (email and s.email.casefold() == email) or (number and number in (s.sis_user_id, s.id))
                     or (user and user == s.username)]
            why = f"the grading worksheet gives {person['email'] or person['id_number'] or person['username'] or 'nothing'}, which no roster row has"
        else:
            match = [s for s in students if s.name.strip().casefold() == named.shown.casefold()]
            why = (f"{len(match)} roster rows are named {named.shown!r}" if match else f"no roster row is named {named.shown!r}") \
                + " (give Moodle's grading worksheet beside the download: it says whose each participant number is)"
    if len(match) == 1:
        return match[0].id, named.said(), True
    if not roster:
        return named.shown or named.key, named.said(), True
    return f"{named.shown or named.lms.lower()}-{named.key}" if named.lms != "Blackboard" else named.key, f"{named.said()}: {why}", False


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
