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
    from grader.faults import ManifestError

    with pytest.raises(ManifestError, match="did you mean 'frozen_base'"):
        checks.build(CheckSpec("f", "frozen_bse", "t", 1.0, {}))


def test_a_compile_problem_names_the_loss_that_fits_the_labs_labels():
    from reference.training import CompileProblem, compile_choices

    for one_hot, fitting in ((False, "sparse_categorical_crossentropy"), (True, "categorical_crossentropy")):
        with pytest.raises(CompileProblem, match=f"has no loss: add loss='{fitting}'"):
            compile_choices({"optimizer": "adam", "loss": None}, one_hot_labels=one_hot)
        with pytest.raises(CompileProblem, match=f"use loss='{fitting}'"):
            compile_choices({"optimizer": "adam", "loss": "mse"}, one_hot_labels=one_hot)
    assert compile_choices({"optimizer": "adam", "loss": "categorical_crossentropy"}, one_hot_labels=True).one_hot
