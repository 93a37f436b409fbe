"""A check's outcome: a student's missing fact is a failed check; a crash is the grader's fault."""

import dataclasses

import pytest

from grader import checks
from grader.evidence import Missing
from grader.faults import GraderFault
from grader.manifest import CheckSpec
from grader.results import CheckResult


@dataclasses.dataclass(frozen=True)
class Raises(checks.Check):
    error: Exception

    def __call__(self, evidence):
        raise self.error


SPEC = CheckSpec("c", "check", "A check", 10.0, {})


def test_a_missing_fact_is_a_failed_check_with_the_reason():
    result = checks.run_check(SPEC, Raises(Missing("the model is not compiled: call model.compile(...)")), evidence=None)
    assert (result.status, result.score, result.message) == ("failed", 0.0, "the model is not compiled: call model.compile(...)")


@dataclasses.dataclass(frozen=True)
class Says(checks.Check):
    verdict: checks.Verdict

    def __call__(self, evidence):
        assert evidence == "the evidence"
        return self.verdict


def test_a_verdict_scores_all_its_points_its_fraction_of_them_or_none_and_keeps_what_the_check_said():
    spec = CheckSpec("acc", "validation_accuracy", "Accuracy", 10.0, {})
    passed = checks.run_check(spec, Says(checks.Verdict("passed", "0.91 >= 0.60", 0.2, {"accuracy": 0.91})), "the evidence")
    assert passed == CheckResult("acc", "Accuracy", "passed", 10.0, 10.0, "0.91 >= 0.60",
                                 "Says(verdict=Verdict(status='passed', message='0.91 >= 0.60', fraction=0.2, evidence={'accuracy': 0.91}))",
                                 {"accuracy": 0.91})
    assert checks.run_check(spec, Says(checks.Verdict("partial", "close", 1 / 3)), "the evidence").score == 3.33
    assert checks.run_check(spec, Says(checks.Verdict("failed", "low", 0.9)), "the evidence").score == 0.0


def test_a_notebook_over_the_graders_budget_fails_the_check_with_the_budgets_words():
    from types import SimpleNamespace

    from grader.budget import OverBudget

    said = checks.run_check(SPEC, Raises(OverBudget()), SimpleNamespace(over_budget=lambda: "over the 60 s of CPU this lab allows"))
    assert (said.status, said.score, said.message) == ("failed", 0.0, "over the 60 s of CPU this lab allows")


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


def test_the_scope_check_reads_the_source_and_the_run():
    from types import SimpleNamespace

    from grader.match import RunCell

    def evidence(source: str, scopes=("strategy",), role="answer"):
        return SimpleNamespace(setting=SimpleNamespace(lab=SimpleNamespace(answer="model")), model=lambda: None,
                               student_cells=(RunCell("model", role, source),), artifact=SimpleNamespace(export={"scopes": list(scopes)}))

    check = checks.StrategyScope()
    good = "with strategy.scope():\n    model = make()\n    model.compile(loss='categorical_crossentropy')\n"
    assert check(evidence(good)).status == "passed"
    outside = check(evidence("model = make()\nmodel.compile(loss='x')\n"))
    assert outside.status == "failed" and "line 1 of the answer cell, `model = make()`, makes the model outside `with strategy.scope():`" in outside.message
    compiled = check(evidence("with strategy.scope():\n    model = make()\nmodel.compile(loss='x')\n", role="added"))
    assert "line 3 of a cell you added, `model.compile(loss='x')`, compiles the model outside" in compiled.message
    # the source looks right, but the run's model was made under no strategy the notebook names
    assert "the model's variables were not made under `strategy`" in check(evidence(good, scopes=())).message
    assert check(evidence(good, scopes=("strategy", "s"))).status == "passed"


def test_the_parameter_budget_is_never_below_a_bound_the_manifest_declares():
    from types import SimpleNamespace

    from grader.context import model_budget

    def manifest(max_parameters=0, bound=None):
        params = {"parameters": [1000, bound]} if bound else {}
        return SimpleNamespace(grader=SimpleNamespace(max_parameters=max_parameters), checks=(CheckSpec("s", "model_structure", "t", 1.0, params),))

    solution = SimpleNamespace(model={"total_params": 24_989})
    assert model_budget(manifest(), solution) == 249_890  # ten times the lab's solution
    assert model_budget(manifest(bound=1_000_000), solution) == 1_000_000  # the lab's own text wins over the default
    assert model_budget(manifest(max_parameters=50_000, bound=1_000_000), solution) == 50_000  # the instructor's explicit setting wins


def test_keras_3s_positional_compile_is_named_and_cannot_train():
    from reference.training import CompileProblem, compile_choices

    config = {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "loss_weights": ["accuracy"], "metrics": None}
    with pytest.raises(CompileProblem, match=r"third argument, which Keras 3 reads as loss_weights, not metrics.*metrics=\['accuracy'\]"):
        compile_choices(config)
    assert compile_choices({**config, "loss_weights": [1.0], "metrics": ["accuracy"]}).metrics == ("accuracy",)  # numbers are weights


def test_a_name_error_for_a_name_set_in_a_cell_that_did_not_run_says_which_and_why():
    from types import SimpleNamespace

    from grader.match import Skipped

    skipped = Skipped("config+1", "GCS_PATTERN = 'gs://mine/*.tfrec'\ndef my_helper():\n    pass", "it sets `GCS_PATTERN`, which the lab's own cells set")
    evidence = SimpleNamespace(match=SimpleNamespace(skipped=(skipped,)))
    said = checks._not_run_definer(evidence, {"name": "NameError", "message": "name 'my_helper' is not defined"})
    assert "`my_helper` is set in a cell of your notebook that the grader did not run: it sets `GCS_PATTERN`" in said
    assert checks._not_run_definer(evidence, {"name": "NameError", "message": "name 'other' is not defined"}) == ""
    assert checks._not_run_definer(evidence, {"name": "ValueError", "message": "name 'my_helper' is not defined"}) == ""


def test_cells_added_above_the_answer_are_named_by_their_first_line_not_the_graders_key():
    from types import SimpleNamespace

    from grader.match import Match, RunCell

    helper = RunCell("start+1", "above", "\n# my helpers\ndef show(ds):\n    pass\n")
    colab = RunCell("imports+1", "above", "from google.colab import auth\nauth.authenticate_user()\n")
    log = {"start+1": {"status": "ok"}, "imports+1": {"status": "error"}}
    evidence = SimpleNamespace(match=Match("ids", {}, above={"start": (helper,), "imports": (colab,)}),
                               artifact=SimpleNamespace(cell=log.get, log=[
                                   {"role": "above", "key": "start+1", "status": "ok"},
                                   {"role": "locked", "key": "config", "status": "error", "error": {"name": "NameError", "message": "AUTO"}}]))
    said = checks._above_failures(evidence)
    assert "the cell(s) you added above the answer, the one that begins `from google.colab import auth`, raised" in said
    assert "+1" not in said
    broken = checks._lab_cell_broken_after_added(evidence)
    assert broken == ("the lab's cell 'config' raised NameError after the cell you added above the answer (the one that begins "
                      "`# my helpers`) ran: AUTO; take that cell out, or make it leave the lab's names as they are")

    def broken_after(*entries):
        return checks._lab_cell_broken_after_added(SimpleNamespace(match=evidence.match, artifact=SimpleNamespace(log=list(entries))))

    added, other = {"role": "above", "key": "start+1"}, {"role": "above", "key": "imports+1"}
    failed = {"role": "locked", "key": "data", "status": "error", "error": {"message": "boom"}}
    assert broken_after(failed, added) == ""  # the lab's cell failed before any cell of the student's ran
    assert broken_after(added, {**failed, "status": "ok"}, {"role": "answer", "key": "model", "status": "error"}) == ""
    assert broken_after(added, other, failed).startswith(
        "the lab's cell 'data' raised an error after the cell you added above the answer (the one that begins `# my helpers`) ran: boom;")
    assert checks._added_cell(evidence, "nowhere") == "an empty one"


def test_the_frozen_check_gives_each_of_its_verdicts_on_the_evidence_it_reads():
    """Every branch of the frozen-base check, on hand-built evidence: trainable weights (how
    the student's line went wrong, if it can be seen), weights not the pretrained ones,
    not trained, weights changed in training although none was trainable, and frozen."""
    from types import SimpleNamespace

    from grader.evidence import Missing
    from grader.match import RunCell

    def evidence(trainable=(), source="base.trainable = False\n", pretrained=True, after="same"):
        def trained():
            if after is None:
                raise Missing("not trained")
            return after

        weights = [SimpleNamespace(path=f"mobilenet/{layer}/kernel") for layer in trainable]
        return SimpleNamespace(base=lambda: SimpleNamespace(name="mobilenet", trainable_weights=weights),
                               student_cells=(RunCell("model", "answer", source),), base_is_pretrained=pretrained,
                               trained_base_weights=trained, matches_pretrained=lambda weights: weights == "same",
                               setting=SimpleNamespace(lab=SimpleNamespace(hint=lambda name, default: f"[{name}] {default}")))

    check = checks.FrozenBase()
    said = check(evidence(trainable=("Conv1", "bn1"), source="base.trainable = True\n"))
    assert said.status == "failed" and said.message.startswith("2 weight tensors of the pretrained base mobilenet would change in training, e.g. in Conv1: ")
    assert said.message.endswith("[freeze] set the base's trainable to False before building the model")  # the lab's own hint, by its name
    assert "would change in training: [freeze]" in check(SimpleNamespace(**{**vars(evidence()), "base": lambda: SimpleNamespace(
        name="mobilenet", trainable_weights=[SimpleNamespace(path="kernel")])})).message  # no layer to name: no example
    compared = check(evidence(trainable=("Conv1",), source="base = make()\nbase.trainable == False\n"))
    assert compared.status == "failed" and compared.message.endswith(
        ": line 2, `base.trainable == False`, compares the flag with False (==) and sets nothing: assign it with one =, `base.trainable = False`")
    assert check(evidence(trainable=("Conv1",), source="base.trainable is False\n")).message.endswith(
        "assign it with one =, `base.trainable = False`")
    commented = check(evidence(trainable=("Conv1",), source="# base.trainable = False\n"))
    assert commented.status == "failed" and commented.message.endswith(
        ": line 1, `# base.trainable = False`, is a comment, so it does not run: take out the # at its start")
    not_pretrained = check(evidence(pretrained=False))
    assert not_pretrained.status == "failed" and not_pretrained.message == (
        f"mobilenet's weights are not the pretrained ones: [pretrained_weights] {checks.PRETRAINED_FIX}")
    untrained = check(evidence(after=None))  # not trained: the other checks say why
    assert (untrained.status, untrained.message) == ("passed", "the base is frozen and holds the pretrained weights (not trained: see the other checks)")
    changed = check(evidence(after="moved"))
    assert changed.status == "failed" and changed.message == "mobilenet's weights changed during training although none of them is trainable"
    frozen = check(evidence())
    assert (frozen.status, frozen.message) == ("passed", "the base is frozen: its weights are the pretrained ones before and after training")
