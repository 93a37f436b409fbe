"""Who owns an outcome: the student, the instructor or the grader. One place decides.

- The **student's** mistakes are grades: a failed check with the fix, or an
  "ungradable" scorecard that says why. Inside the trusted process they travel as
  `StudentMistake`s (`Missing`, `Refused`, `Unreadable`), which the pipeline always
  turns into a result: they never leave a submission.
- The **instructor's** mistakes (a bad manifest, missing data or weights, a strategy
  this machine cannot give, a sandbox that cannot start, a lab whose own solution fails)
  stop the run before anyone is graded: they are `GraderError`s, which the CLI turns
  into a message and an exit code.
- The **grader's** own failures (a bug, a full disk, a worker that died, a host so
  loaded that a run was starved) are `GraderFault`s. They are never stored as a grade:
  the notebook is tried again, a bounded number of times, then gets an "ungradable:
  the grader's fault" scorecard that says to grade it again.

Every result says whose it is (`SubmissionResult.owner`, an `Owner`), set here
(`owner_of`); the grading run keeps a result only when it is not the grader's.
"""

from __future__ import annotations

import enum


class Owner(enum.StrEnum):
    """Whose an outcome is (a string in result.json)."""

    STUDENT = "student"
    INSTRUCTOR = "instructor"
    GRADER = "grader"


# --- the instructor's: stop the run -------------------------------------------------


class GraderError(Exception):
    """The instructor's (or the machine's) problem: the run stops before anyone is graded,
    and the CLI prints the message, the fix, and exits with `exit_code`."""

    owner = Owner.INSTRUCTOR
    exit_code = 2

    def __init__(self, message: str, *, hint: str = "", exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message}\n  {self.hint}" if self.hint else self.message

    def __reduce__(self):  # picklable with its hint and exit code (a worker reports it to the parent)
        return _rebuilt, (type(self), self.message, self.hint, self.exit_code)


def _rebuilt(kind, message: str, hint: str, exit_code: int):
    return kind(message, hint=hint, exit_code=exit_code)


class ManifestError(GraderError):
    """The assignment's manifest, source notebook or rules are missing, unparsable or inconsistent."""

    @classmethod
    def at(cls, path: str, where: str, problem: str, hint: str = "") -> "ManifestError":
        return cls(f"{path}: {where}: {problem}", hint=hint)


class SandboxUnavailable(GraderError):
    """Student code would have to run without isolation."""

    exit_code = 3


# --- the student's: a grade, never an escape ---------------------------------------------


class StudentMistake(Exception):
    """Something about a submission that is the student's to fix; the message says what,
    for the student. Always turned into a failed check or an ungradable result."""

    owner = Owner.STUDENT


class Missing(StudentMistake):
    """A fact a check needs is not there because of the submission (no model, a model that
    cannot take the lab's images, compile choices that cannot train)."""


class Refused(StudentMistake):
    """What the run left is refused: the model (a layer outside the allow-list, too many
    parameters, weights that do not fit), or one of its files (a link, too large)."""

    def __init__(self, message: str, *, name: str = "", why: str = ""):
        super().__init__(message)
        self.name, self.why = name, why

    @classmethod
    def file(cls, name: str, why: str) -> "Refused":
        """A file of the run that is not read: `name` and why (`is a link`, `is larger than ...`)."""
        return cls(f"{name} {why}", name=name, why=why)


class Unreadable(StudentMistake):
    """The submitted file is not a notebook the grader can read; the message says why."""


# --- the grader's: retried, never a grade ---------------------------------------------


class GraderFault(Exception):
    """The grader failed on a submission through no fault of the student's; the message says how."""

    owner = Owner.GRADER

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    @classmethod
    def from_error(cls, error: BaseException, doing: str) -> "GraderFault":
        if isinstance(error, GraderFault):
            return error
        return cls(f"{doing}: {type(error).__name__}: {str(error)[:300]}")


class LabCellFailed(Exception):
    """A cell of the lab's own, run before any of the student's, failed in the sandbox: it
    fails the same way for every notebook, so it is the instructor's to fix (the preflight
    names it and stops), and trying the notebook again would change nothing. Its result is
    never kept as a grade."""

    owner = Owner.INSTRUCTOR

    def __init__(self, key: str, error: str):
        super().__init__(f"the lab's own cell {key!r} failed in the sandbox: {error}")
        self.message, self.key, self.error = str(self), key, error

    def record(self) -> dict:
        """What a result keeps of it (under provenance `lab_cell`), for the preflight to say."""
        return {"key": self.key, "error": self.error}


def owner_of(error: BaseException) -> Owner:
    """Whose an exception raised while grading a submission is: what is not declared the
    student's or the instructor's is the grader's own (a bug is never the student's)."""
    return getattr(error, "owner", Owner.GRADER)


def retry_message(attempts: int, last: str) -> tuple[str, str]:
    """The reason and fix on the scorecard of a notebook the grader failed on every time."""
    return (
        f"the grader itself failed on this notebook {attempts} time(s) (last: {last})",
        "this is the grader's fault, not yours: tell your instructor, who can grade it again (grader grade ... --regrade)",
    )
