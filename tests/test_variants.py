"""Answers written the ways students write them, each with the verdict a teacher of the lab
would give: a correct answer gets full marks, a wrong one fails the check that names its
mistake and passes the others. The answers are the transfer lab's population (its lab
module's POPULATION, which `grader calibrate` grades too), graded in one batch, with real
training on the demo data.
"""

import pytest

from grader.config import labs, manifest as manifest_mod
from conftest import ASSIGNMENT, assert_teachers_verdict, calibrated, population_names

pytestmark = pytest.mark.slow

POPULATION = labs.population(manifest_mod.load(ASSIGNMENT))
CHECKS = ("runs", "structure", "frozen", "compile", "accuracy")



@pytest.fixture(scope="module")
def variant_results(feature_cache, tmp_path_factory):
    """Every answer graded once, in one batch (fast path, the session's feature cache), with the
    lab's unfrozen_base scenario, by one grading worker: the scenario and the answers that leave
    the base trainable are one model, trained in full once (about 80 CPU seconds each time)."""
    return calibrated(ASSIGNMENT, tmp_path_factory, scenarios_too=("unfrozen_base.ipynb",), cache_dir=feature_cache, jobs=1)[1]


def test_the_table_names_the_manifests_checks(manifest):
    assert tuple(spec.id for spec in manifest.checks) == CHECKS
    for answer in POPULATION:
        named = [c for entry in answer.fails for c in entry.split("|")] + list(answer.may_fail)
        assert set(named) <= set(CHECKS), answer.name
    assert len({a.name for a in POPULATION}) == len(POPULATION)


@pytest.mark.parametrize("name", population_names(ASSIGNMENT))
def test_verdict(variant_results, name):
    assert_teachers_verdict(variant_results, name)


def test_every_correct_answer_clears_the_threshold_with_a_margin(variant_results, manifest):
    correct = [variant_results.results[a.name].training["val_accuracy"] for a in POPULATION if a.correct]
    threshold = next(c for c in manifest.checks if c.id == "accuracy").params["threshold"]
    assert min(correct) >= threshold + 0.05, sorted(correct)  # at least 5 points: a few pictures are not the verdict
    assert len(POPULATION) >= 40 and len(correct) >= 20


def test_the_unfrozen_base_scenario_fails_the_frozen_check_and_is_trained_in_full_once_with_the_answers_like_it(variant_results):
    result = variant_results.results["unfrozen_base"]
    verdicts = {c.id: c for c in result.checks}
    assert verdicts["frozen"].status == "failed" and "pretrained_model.trainable = False" in verdicts["frozen"].message
    assert verdicts["structure"].status == "passed"
    assert result.provenance["training"].startswith("full training (")  # a model the fast path cannot take
    alike = variant_results.results["freeze_commented_out"]
    assert result.training["history"] == alike.training["history"]  # the same model, compiled the same way: one run
