"""The class as the gradebook holds it: one row per student, whatever the last run graded.

Pure functions of what the gradebook keeps (the roster, the submissions, the results,
the instructor's overrides) and the manifest's `[class]` rules (which submission
counts, the due date and the late policy). Every class page, CSV and export is made
from these rows, so they all agree, and all are keyed by student.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

from grader.config.manifest import ClassRules, Manifest
from grader.results import SubmissionResult
from grader.store.gradebook import Gradebook, Override, Stored
from grader.store.submissions import folder_name

DAY = 86400.0
SUBMISSIONS = "submissions"  # the output folder's folder of every submission's pages: never a grader file's name


@dataclasses.dataclass(frozen=True)
class ClassFacts:
    """What the class pages need of the assignment; kept in the output folder so that
    `grader report`, `override` and the exports work without the assignment folder."""

    name: str
    version: str
    title: str
    fingerprint: str
    checks: tuple[tuple[str, str, float], ...]  # (id, title, points)
    rules: ClassRules

    @classmethod
    def of(cls, manifest: Manifest, fingerprint: str) -> "ClassFacts":
        checks = tuple((spec.id, spec.title, spec.points) for spec in manifest.checks)
        return cls(manifest.name, manifest.version, manifest.title, fingerprint, checks, manifest.rules)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ClassFacts":
        rules = dict(data["rules"])
        if "check_visibility" not in rules:  # kept before checks had a visibility: `visibility` was Gradescope's alone
            rules["visibility"] = "visible"
        return cls(data["name"], data["version"], data["title"], data["fingerprint"],
                   tuple(tuple(c) for c in data["checks"]), ClassRules(**rules))


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One submission of a student, with its result (None: not graded yet)."""

    stored: Stored
    result: SubmissionResult | None
    current: bool  # graded under the current fingerprint (else by an earlier grader or assignment)
    folder: str  # its pages, relative to the output folder: submissions/<student>/<attempt>
    counts: bool = False
    late_days: int = 0

    @property
    def file(self) -> str:
        return os.path.basename(self.stored.path)


@dataclasses.dataclass(frozen=True)
class Row:
    student: str
    info: dict  # the roster's fields (name, email, section, Canvas ids); {} if not in the roster
    known: bool  # in the roster (always, without one)
    attempts: tuple[Attempt, ...]
    overrides: tuple[Override, ...]
    max_score: float
    counted: Attempt | None = None
    score: float | None = None  # the result's, with the instructor's points; None if nothing gradable
    penalty: float = 0.0  # points taken for lateness
    final: float | None = None  # what goes into the gradebooks
    points: dict = dataclasses.field(default_factory=dict)  # check id -> the counted submission's points, the instructor's where set
    applied: tuple[Override, ...] = ()  # the instructor's word on the submission that counts (of `overrides`: all of theirs)
    set_aside: tuple[Override, ...] = ()  # the word on a submission that no longer counts ("latest"): not applied
    by_hand: bool = False  # an ungradable submission the instructor gave points to
    due: float | None = None  # the student's due date: the class's, or their extension
    extended: bool = False  # the due date is the student's own

    @property
    def status(self) -> str:
        if not self.attempts:
            return "missing"
        if self.counted is None or self.counted.result is None:
            return "not graded"
        return self.counted.result.status

    @property
    def name(self) -> str:
        return self.info.get("name", "")

    def check_points(self) -> dict[str, float]:
        """Each check's points for the counted submission, the instructor's where they set them
        (a row not scored yet: the grader's)."""
        if self.points or self.counted is None or self.counted.result is None:
            return dict(self.points)
        return {c.id: c.score for c in self.counted.result.checks}


@dataclasses.dataclass(frozen=True)
class ClassView:
    title: str
    rows: tuple[Row, ...]
    check_ids: tuple[str, ...]
    rules: ClassRules
    published: float | None = None  # when the instructor published the grades (grader/reports/visibility.py)
    checks: tuple[tuple[str, str, float], ...] = ()  # (id, title, points), as the class's facts hold them
    # time.monotonic() when its build began: it shows everything kept before then
    began: float = dataclasses.field(default=0.0, compare=False)

    def notes(self) -> list[str]:
        """What the instructor should know: unknown students, students without a submission,
        students with more than one, submissions not graded by this version."""
        found = []
        unknown = [r.student + _why_unknown(r) for r in self.rows if not r.known]
        missing = [r.student for r in self.rows if r.status == "missing"]
        several = [f"{r.student} ({len(r.attempts)})" for r in self.rows if len(r.attempts) > 1]
        stale = [r.student for r in self.rows if any(a.result is not None and not a.current for a in r.attempts)]
        if unknown:
            found.append(f"not in the roster: {', '.join(unknown)}")
        if missing:
            found.append(f"no submission: {', '.join(missing)}")
        if several:
            found.append(f"more than one submission (the {self.rules.count} counts): {', '.join(several)}")
        if stale:
            found.append(f"graded by an earlier version of the grader or the assignment (grade them again): {', '.join(stale)}")
        held = [(title, self.rules.visibility_of(check_id)) for check_id, title, _ in self.checks
                if self.rules.visibility_of(check_id) != "visible"]
        if held:
            when = {"after_due_date": "after their due date", "hidden": "never",
                    "after_published": "once the grades are published" + (" (they are)" if self.published else " (`grader publish OUT`)")}
            found.append("what students see of these checks: " + "; ".join(f"{title}: {when[setting]}" for title, setting in held))
        aside = [r.student for r in self.rows if r.set_aside]
        if aside:
            found.append(f"the instructor's word on an earlier submission, not applied to the one that counts "
                         f"(`grader override OUT --student ID --carry` applies it): {', '.join(aside)}")
        return found


def _why_unknown(row: Row) -> str:
    """Why a student's files were not mapped to the roster, where the way they were found
    says it (an LMS's id that no roster row has): " (why)", else nothing."""
    said = sorted({a.stored.how.split(": ", 1)[1] for a in row.attempts if ": " in a.stored.how})
    return f" ({'; '.join(said)})" if said else ""


def build(book: Gradebook, facts: ClassFacts) -> ClassView:
    """The class now, from everything the gradebook keeps for the assignment."""
    began = time.monotonic()
    roster = book.students(facts.name)
    overrides = book.overrides(facts.name)
    extended = book.extensions(facts.name)
    by_student: dict[str, list[Stored]] = {}
    for stored in book.submissions(facts.name):
        by_student.setdefault(stored.student, []).append(stored)
    max_score = sum(points for _, _, points in facts.checks)
    taken: set[str] = set()
    rows = []
    for student in sorted(set(roster) | set(by_student)):
        folder = folder_name(student, taken)
        rules = dataclasses.replace(facts.rules, due=extended[student]) if student in extended else facts.rules
        attempts = _attempts(book, facts, folder, by_student.get(student, []), rules, student in extended)
        row = Row(student, roster.get(student, {}), student in roster or not roster, attempts,
                  tuple(overrides.get(student, ())), max_score, due=rules.due, extended=student in extended)
        rows.append(_score(row, rules, facts.checks))
    return ClassView(facts.title, tuple(rows), tuple(c[0] for c in facts.checks), facts.rules, book.published(facts.name),
                     facts.checks, began)


def refreshed(book: Gradebook, facts: ClassFacts, row: Row) -> Row:
    """`row` again with the results the gradebook holds now (the same submissions, the
    same folders): what one result changes, without building the whole class again."""
    folder = row.attempts[0].folder.split("/")[1] if row.attempts else ""
    rules = dataclasses.replace(facts.rules, due=row.due)
    attempts = _attempts(book, facts, folder, [attempt.stored for attempt in row.attempts], rules, row.extended)
    return _score(Row(row.student, row.info, row.known, attempts, row.overrides, row.max_score, due=row.due,
                      extended=row.extended), rules, facts.checks)


def _attempts(book: Gradebook, facts: ClassFacts, folder: str, stored: list[Stored], rules: ClassRules,
              extended: bool = False) -> tuple[Attempt, ...]:
    taken: set[str] = set()
    attempts = []
    for item in stored:
        found = book.latest(facts.name, facts.version, facts.fingerprint, item.sha256)
        name = folder_name(os.path.splitext(os.path.basename(item.path))[0], taken)
        attempts.append(Attempt(item, found[0] if found else None, bool(found and found[1]),
                                f"{SUBMISSIONS}/{folder}/{name}", late_days=_late_days(item, rules, extended)))
    return tuple(attempts)


def _late_days(item: Stored, rules: ClassRules, extended: bool = False) -> int:
    """Days (or parts of one) late. Where the LMS says whether it was late but not when
    (Canvas), its word is taken: on time, or one day late, the least its marker proves;
    but not against a due date of the student's own (`extended`), which it knew nothing of:
    a file the LMS dates only by its marker is then on time."""
    if rules.due is None:
        return 0
    if item.late is not None:
        return 1 if item.late and not extended else 0
    if item.submitted_at <= rules.due:
        return 0
    return math.ceil((item.submitted_at - rules.due) / DAY)


def _score(row: Row, rules: ClassRules, checks: tuple) -> Row:
    """Which attempt counts, and the student's score with the instructor's points and the
    late penalty. The instructor's word counts for the submission it was written for (an
    override of no submission, for whichever counts); under "latest", the word on one that
    no longer counts is set aside and said."""
    graded = [a for a in row.attempts if a.result is not None]
    if not graded:  # nothing graded: the instructor's word (a comment) is the whole of it
        return dataclasses.replace(row, applied=row.overrides)
    if rules.count == "best":
        counted = max(graded, key=lambda a: (_points(a.result, _for(a, row.overrides), checks)[1] - _penalty(a, row.max_score, rules),
                                             a.stored.submitted_at))
    else:
        counted = max(graded, key=lambda a: (a.stored.submitted_at, a.stored.path))
    attempts = tuple(dataclasses.replace(a, counts=a is counted) for a in row.attempts)
    counted = next(a for a in attempts if a.counts)
    mine = _for(counted, row.overrides)
    # under "latest", the word on a submission that no longer counts waits to be carried over;
    # under "best", it stays with its own submission, which it helped rank
    aside = tuple(o for o in row.overrides if o not in mine) if rules.count != "best" else ()
    row = dataclasses.replace(row, attempts=attempts, counted=counted, applied=mine, set_aside=aside)
    by_hand = counted.result.status != "graded" and any(o.points is not None for o in mine)
    if counted.result.status != "graded" and not by_hand:
        return row
    points, score = _points(counted.result, mine, checks)
    penalty = _penalty(counted, row.max_score, rules)
    return dataclasses.replace(row, score=score, penalty=penalty, final=max(0.0, round(score - penalty, 2)), points=points, by_hand=by_hand)


def _for(attempt: Attempt, overrides: tuple[Override, ...]) -> tuple[Override, ...]:
    """The instructor's word on this submission (or on none in particular)."""
    return tuple(o for o in overrides if o.sha256 in ("", attempt.stored.sha256))


def _points(result: SubmissionResult, overrides: tuple[Override, ...], checks: tuple) -> tuple[dict[str, float], float]:
    """(each check's points, the score): the grader's, the instructor's where set (within the
    check's points), and a bonus the instructor gave the whole. An ungradable submission's
    checks have no points but the instructor's."""
    bounds = {check_id: points for check_id, _, points in checks}
    points = {c.id: c.score for c in result.checks} if result.status == "graded" else dict.fromkeys(bounds, 0.0)
    for o in overrides:
        if o.check_id in bounds and o.points is not None:
            points[o.check_id] = min(max(o.points, 0.0), bounds[o.check_id])
    bonus = sum(max(o.points, 0.0) for o in overrides if not o.check_id and o.points is not None)
    return points, round(sum(points.values()) + bonus, 2)


def _penalty(attempt: Attempt, max_score: float, rules: ClassRules) -> float:
    if not attempt.late_days or rules.late_penalty_per_day <= 0:
        return 0.0
    return round(min(rules.late_cap, rules.late_penalty_per_day * attempt.late_days) * max_score, 2)
