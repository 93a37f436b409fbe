"""Outcomes as values: a check's result and a submission's result."""

from __future__ import annotations

import dataclasses
from typing import Any

from grader.faults import Owner

STATUSES = ("passed", "failed", "partial", "error", "skipped")


@dataclasses.dataclass(frozen=True)
class CheckResult:
    id: str
    title: str
    status: str
    score: float
    max_score: float
    message: str
    check: str = ""  # the check's readable repr, e.g. validation_accuracy(threshold=0.75)
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")


@dataclasses.dataclass(frozen=True)
class SubmissionResult:
    assignment: str
    version: str
    submission: str  # the name shown to people, unique in the batch
    file: str  # the submitted file's base name
    sha256: str
    status: str  # "graded" or "ungradable"
    score: float
    max_score: float
    checks: tuple[CheckResult, ...] = ()
    reason: str = ""  # why it is ungradable
    fix: str = ""  # what to do about it
    model: dict[str, Any] = dataclasses.field(default_factory=dict)  # summary of the rebuilt model
    training: dict[str, Any] = dataclasses.field(default_factory=dict)  # curves, accuracy, confusion
    cells: tuple[dict, ...] = ()  # the answer cells as they ran
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    review: tuple[str, ...] = ()  # for the instructor: how the run reached into the runner, what it forged (grader/grading/integrity.py)
    owner: Owner = Owner.STUDENT  # whose outcome it is: the grader's is never kept as a grade (grader/faults.py)

    def __post_init__(self):
        object.__setattr__(self, "owner", Owner(self.owner))  # from JSON: the string

    @property
    def graders_fault(self) -> bool:
        """Not a verdict on the notebook: the grader failed on it (tried again, never kept)."""
        return self.owner is Owner.GRADER

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "SubmissionResult":
        fields = dict(data)
        fields["checks"] = tuple(CheckResult(**check) for check in data.get("checks", []))
        fields["cells"] = tuple(data.get("cells", []))
        fields["review"] = tuple(str(note) for note in data.get("review", []))
        return cls(**fields)
