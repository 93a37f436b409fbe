"""The submissions an LMS hands over for an assignment, read as it names them.

Canvas, Moodle and Blackboard each give a zip (or the folder it unpacks to) of every
student's files, each named after its student in the LMS's own way:

- Canvas ("Download Submissions"): `andersalice_10001_5550001_lab.ipynb`, that is the
  student's sortable name squashed, `_LATE` when Canvas marked the submission late, the
  Canvas user id, the submission's id, then the student's own file name (`lab-1.ipynb`
  for a second upload of `lab.ipynb`). The user id is the roster's `canvas_id`.
- Moodle ("Download all submissions"): `Alice Anders_123456_assignsubmission_file_lab.ipynb`,
  or, with "download submissions in folders", the folder `Alice Anders_123456_assignsubmission_file_`
  holding `lab.ipynb`. The number is the student's participant number for this
  assignment, not a user id: Moodle's grading worksheet (its CSV, given beside the
  download) says whose it is (`Identifier` "Participant 123456", with the `Email address`
  and `ID number` Moodle shows, and when it was submitted, "Last modified (submission)", in
  Moodle's own English form, read in this machine's time zone); without one, the full
  name is held against the roster's, and the file is not counted late (its time in the
  download is the download's).
- Blackboard ("Download Assignment"): `Lab 1_aanders_attempt_2026-12-01-23-10-05_lab.ipynb`
  beside a receipt `Lab 1_aanders_attempt_2026-12-01-23-10-05.txt`: the assignment's
  name, the student's user name (the roster's `username`), and when the attempt was made
  (the server's clock; read here in this machine's time zone).

A file whose name follows none of these is not an LMS's (None). Receipts and what is not
a file a student uploaded (Moodle's online text) are `SKIPPED`.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import os
import re

CANVAS = re.compile(r"^(?P<name>[^_]*?)(?P<late>_LATE)?_(?P<user>\d+)_(?P<attempt>\d+)_(?P<file>.+)$")
MOODLE = re.compile(r"^(?P<name>.+)_(?P<participant>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<file>.*)$")
BLACKBOARD = re.compile(r"^(?P<prefix>.+)_attempt_(?P<when>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})(?:_(?P<file>.+)|\.txt)$")
SKIPPED = "skipped"


@dataclasses.dataclass(frozen=True)
class Named:
    """A file as its LMS named it."""

    lms: str  # "Canvas", "Moodle" or "Blackboard"
    key: str  # whose it is in the LMS: Canvas's user id, Moodle's participant number, Blackboard's user name
    shown: str  # the student as the LMS wrote them: Canvas's squashed name, Moodle's full name, the user name
    file: str  # the student's own file name
    late: bool | None = None  # Canvas's marker (None: the LMS's name says nothing of it)
    when: float | None = None  # when the LMS says it was submitted (Blackboard), seconds since the epoch

    def said(self) -> str:
        """The file's student as the LMS names them, for messages."""
        if self.lms == "Canvas":
            return f"Canvas user {self.key} ({self.shown or 'no name'})"
        if self.lms == "Moodle":
            return f"Moodle participant {self.key} ({self.shown})"
        return f"Blackboard user {self.key}"


def named(relative: str, usernames: frozenset[str] = frozenset(), canvas: bool = True) -> Named | str | None:
    """How an LMS named the file at `relative` (its path under the download): a Named, or
    SKIPPED for a file that is not a student's upload, or None for a name no LMS gives.
    `usernames`: the roster's user names, to find where a Blackboard name ends when the
    assignment's name or the user name holds an underscore. `canvas`: whether to read
    Canvas's names, whose shape (`word_3_2_rest`) a student's own file name can have too:
    only files at the top of the download are read as Canvas's."""
    parts = relative.replace(os.sep, "/").split("/")
    for at, part in enumerate(parts):  # the download may sit in a folder of its own
        found = MOODLE.match(part)
        if found and (found["file"] or at < len(parts) - 1):
            if found["plugin"] != "file":
                return SKIPPED
            return Named("Moodle", found["participant"], found["name"].strip(), found["file"] or parts[-1])
    name = parts[-1]
    found = BLACKBOARD.match(name)
    if found:
        if found["file"] is None:
            return SKIPPED  # the attempt's receipt
        try:
            when: float | None = datetime.datetime.strptime(found["when"], "%Y-%m-%d-%H-%M-%S").timestamp()
        except ValueError:  # a day no calendar has: no time, not a reason to stop the batch
            when = None
        user = _blackboard_user(found["prefix"], usernames)
        return Named("Blackboard", user, user, found["file"], when=when)
    found = CANVAS.match(name) if canvas and len(parts) == 1 else None
    if found:
        return Named("Canvas", found["user"], found["name"], found["file"], late=bool(found["late"]))
    return None


def _blackboard_user(prefix: str, usernames: frozenset[str]) -> str:
    """The user name at the end of `assignment_username`: the longest roster user name it
    ends with, else what follows its last underscore."""
    known = [user for user in usernames if prefix.endswith("_" + user)]
    return max(known, key=len) if known else prefix.rsplit("_", 1)[-1]


@dataclasses.dataclass(frozen=True)
class Worksheet:
    """Moodle's grading worksheet: participant number -> what Moodle shows of the student."""

    people: dict[str, dict[str, str]]  # participant -> {"name", "email", "id_number", "username"}


WORKSHEET_COLUMNS = {"Full name": "name", "Email address": "email", "ID number": "id_number", "Username": "username",
                     "Last modified (submission)": "submitted"}
MOODLE_TIMES = ("%A, %d %B %Y, %I:%M %p", "%A, %d %B %Y, %H:%M", "%d %B %Y, %I:%M %p", "%d %B %Y, %H:%M")


def moodle_time(text: str) -> float | None:
    """A worksheet's time ("Monday, 1 December 2026, 10:00 PM"), in this machine's time zone; None if it is none."""
    for form in MOODLE_TIMES:
        try:
            return datetime.datetime.strptime(text.strip(), form).timestamp()
        except ValueError:
            continue
    return None


def worksheet(path: str) -> Worksheet | None:
    """The Moodle grading worksheet at `path`, or None if the CSV is not one."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = set(reader.fieldnames or ())
            if not {"Identifier", "Full name"} <= header:
                return None
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    people = {}
    for row in rows:
        number = re.search(r"(\d+)\s*$", row.get("Identifier") or "")
        if number:
            people[number[1]] = {field: (row.get(column) or "").strip() for column, field in WORKSHEET_COLUMNS.items()}
    return Worksheet(people)
