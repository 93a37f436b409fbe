"""Errors the grader raises when it cannot do its job (not a student's mistakes).

A student's mistake is never an exception here: it becomes a failed check or an
`ungradable` scorecard. These errors are for the instructor's side: a bad manifest,
a missing dataset or weights file, a bad flag, a sandbox that does not work.
"""

from __future__ import annotations


class GraderError(Exception):
    """Base of every error the CLI turns into a message and a non-zero exit."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  {self.hint}" if self.hint else self.message


class ManifestError(GraderError):
    """The assignment's manifest is missing, unparsable or inconsistent."""

    @classmethod
    def at(cls, path: str, where: str, problem: str, hint: str = "") -> "ManifestError":
        return cls(f"{path}: {where}: {problem}", hint=hint)


class AssetError(GraderError):
    """The dataset or the pretrained weights the assignment needs are not there."""


class SandboxUnavailable(GraderError):
    """Student code would have to run without isolation."""

    exit_code = 3
