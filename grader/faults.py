"""Who owns a failure: the student, the instructor or the grader. One place decides.

- The **student's** mistakes are grades: a failed check with the fix (`Missing`,
  `Refused`, a cell's error, a limit the run reached). They are never exceptions here.
- The **instructor's** mistakes (a bad manifest, missing data or weights, a strategy
  this machine cannot give, a sandbox that cannot start) stop the run before anyone is
  graded: they are `GraderError`s, which the CLI turns into a message and an exit code.
- The **grader's** own failures (a bug, a full disk, a worker that died, a host so
  loaded that a run was starved) are never stored as a grade: the notebook is tried
  again, a bounded number of times, then gets an "ungradable: the grader's fault"
  scorecard that says to grade it again.
"""

from __future__ import annotations

from grader.errors import GraderError

STUDENT, INSTRUCTOR, GRADER = "student", "instructor", "grader"


class GraderFault(Exception):
    """The grader failed on a submission through no fault of the student's; the message says how."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    @classmethod
    def from_error(cls, error: BaseException, doing: str) -> "GraderFault":
        if isinstance(error, GraderFault):
            return error
        return cls(f"{doing}: {type(error).__name__}: {str(error)[:300]}")


class LabCellFailed(GraderFault):
    """A cell of the lab's own, run before any of the student's, failed in the sandbox: it
    fails the same way for every notebook, so it is the instructor's to fix (the preflight
    names it), and trying the notebook again would change nothing."""

    def __init__(self, key: str, error: str):
        super().__init__(f"the assignment's own cell {key!r} failed in the sandbox: {error}")
        self.key, self.error = key, error

    def record(self) -> dict:
        """What a result keeps of it (under provenance `lab_cell`), for the preflight to say."""
        return {"key": self.key, "error": self.error}


def owner(error: BaseException) -> str:
    """Whose fault an exception raised while grading a submission is."""
    if isinstance(error, GraderError):
        return INSTRUCTOR
    return GRADER


def retry_message(attempts: int, last: str) -> tuple[str, str]:
    """The reason and fix on the scorecard of a notebook the grader failed on every time."""
    return (
        f"the grader itself failed on this notebook {attempts} time(s) (last: {last})",
        "this is the grader's fault, not yours: tell your instructor, who can grade it again (grader grade ... --regrade)",
    )
