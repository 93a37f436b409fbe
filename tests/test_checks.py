"""A check's outcome: a student's missing fact is a failed check; a crash is the grader's fault."""

import dataclasses

import pytest

from grader import checks
from grader.evidence import Missing
from grader.faults import GraderFault
from grader.manifest import CheckSpec


@dataclasses.dataclass(frozen=True)
class Raises(checks.Check):
    error: Exception

    def __call__(self, evidence):
        raise self.error


SPEC = CheckSpec("c", "check", "A check", 10.0, {})


def test_a_missing_fact_is_a_failed_check_with_the_reason():
    result = checks.run_check(SPEC, Raises(Missing("the model is not compiled: call model.compile(...)")), evidence=None)
    assert (result.status, result.score, result.message) == ("failed", 0.0, "the model is not compiled: call model.compile(...)")


def test_a_check_that_crashes_is_the_graders_fault_not_a_grade():
    with pytest.raises(GraderFault, match="the check 'c' failed: ZeroDivisionError"):
        checks.run_check(SPEC, Raises(ZeroDivisionError("division by zero")), evidence=None)


def test_an_unknown_check_names_the_closest():
    from grader.errors import ManifestError

    with pytest.raises(ManifestError, match="did you mean 'frozen_base'"):
        checks.build(CheckSpec("f", "frozen_bse", "t", 1.0, {}))
