"""A check's outcome: a student's missing fact is a failed check; a crash is the grader's fault."""

import dataclasses

import pytest

from grader.config.manifest import CheckSpec
from grader.faults import GraderFault
from grader.grading import checks
from grader.grading.evidence import Missing
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

    from grader.grading.budget import OverBudget

    said = checks.run_check(SPEC, Raises(OverBudget()), SimpleNamespace(over_budget=lambda: "over the 60 s of CPU this lab allows"))
    assert (said.status, said.score, said.message) == ("failed", 0.0, "over the 60 s of CPU this lab allows")


def test_a_check_that_crashes_is_the_graders_fault_not_a_grade():
    with pytest.raises(GraderFault, match="the check 'c' failed: ZeroDivisionError"):
        checks.run_check(SPEC, Raises(ZeroDivisionError("division by zero")), evidence=None)


def test_an_unknown_check_names_the_closest():
    from grader.faults import ManifestError

    with pytest.raises(ManifestError, match="did you mean 'frozen_base'"):
        checks.build(CheckSpec("f", "frozen_bse", "t", 1.0, {}))
    with pytest.raises(ManifestError, match="check 'f': unknown check 'zzz'") as nothing_close:
        checks.build(CheckSpec("f", "zzz", "t", 1.0, {}))
    assert nothing_close.value.hint.startswith("known checks: ")  # no guess when nothing is close
    assert "answer_cells_run, compile_settings, dataset_elements" in nothing_close.value.hint


def test_a_check_is_built_by_its_manifest_name_and_its_result_shows_it_with_its_parameters():
    from grader.faults import ManifestError

    accuracy = checks.build(CheckSpec("acc", "validation_accuracy", "Accuracy", 10.0, {"threshold": 0.6}))
    said = checks.run_check(CheckSpec("acc", "validation_accuracy", "Accuracy", 10.0, {}), accuracy, accuracy_evidence(0.7))
    assert said.status == "passed" and said.check == "validation_accuracy(threshold=0.6, bands=())"  # the manifest's name
    assert isinstance(checks.build(CheckSpec("f", "frozen_base", "t", 1.0, {})), checks.FrozenBase)
    structure = checks.build(CheckSpec("s", "model_structure", "t", 1.0, {"layers": ["Flatten", "Dense(5, softmax)"],
                                                                          "parameters": [0, 10], "expected": "a flat head"}))
    assert repr(structure) == "model_structure(layers=('Flatten', 'Dense(5, softmax)'), parameters=(0, 10), expected='a flat head')"
    with pytest.raises(ManifestError, match=r"check 'acc' \(validation_accuracy\): bad parameters: threshold must be in"):
        checks.build(CheckSpec("acc", "validation_accuracy", "Accuracy", 10.0, {"threshold": 2}))


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

    from grader.config.match import RunCell

    def evidence(source: str, scopes=("strategy",), role="answer"):
        return SimpleNamespace(setting=SimpleNamespace(lab=SimpleNamespace(answer="model")), model=lambda: None,
                               student_cells=(RunCell("model", role, source),), artifact=SimpleNamespace(export={"scopes": list(scopes)}))

    check = checks.StrategyScope()
    good = "with strategy.scope():\n    model = make()\n    model.compile(loss='categorical_crossentropy')\n"
    assert check(evidence(good)).status == "passed"
    assert check(evidence(good)).message == "the model is built and compiled inside `with strategy.scope():`"
    outside = check(evidence("model = make()\nmodel.compile(loss='x')\n"))
    assert outside.status == "failed" and "line 1 of the answer cell, `model = make()`, makes the model outside `with strategy.scope():`" in outside.message
    fix = "build the model and compile it inside `with strategy.scope():`, so that its variables are made on the TPU (or mirrored on every GPU)"
    assert outside.message.endswith(fix)
    compiled = check(evidence("with strategy.scope():\n    model = make()\nmodel.compile(loss='x')\n", role="added"))
    assert "line 3 of a cell you added, `model.compile(loss='x')`, compiles the model outside" in compiled.message
    # the source looks right, but the run's model was made under no strategy the notebook names
    elsewhere = check(evidence(good, scopes=()))
    assert elsewhere.status == "failed" and "the model's variables were not made under `strategy`" in elsewhere.message
    assert elsewhere.message.endswith(fix)
    assert check(evidence(good, scopes=("strategy", "s"))).status == "passed"


def test_the_parameter_budget_is_never_below_a_bound_the_manifest_declares():
    from types import SimpleNamespace

    from grader.grading.budget import model_budget

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

    from grader.config.match import Skipped

    skipped = Skipped("config+1", "GCS_PATTERN = 'gs://mine/*.tfrec'\ndef my_helper():\n    pass", "it sets `GCS_PATTERN`, which the lab's own cells set")
    evidence = SimpleNamespace(match=SimpleNamespace(skipped=(skipped,)))
    said = checks._not_run_definer(evidence, {"name": "NameError", "message": "name 'my_helper' is not defined"})
    assert "`my_helper` is set in a cell of your notebook that the grader did not run: it sets `GCS_PATTERN`" in said
    assert said.endswith("move what the answer needs into a cell of its own, next to the answer)")  # the fix
    assert "`GCS_PATTERN` is set in a cell" in checks._not_run_definer(evidence, {"name": "NameError", "message": "name 'GCS_PATTERN' is not defined"})
    assert checks._not_run_definer(evidence, {"name": "NameError", "message": "name 'other' is not defined"}) == ""
    assert checks._not_run_definer(evidence, {"name": "ValueError", "message": "name 'my_helper' is not defined"}) == ""


def test_cells_added_above_the_answer_are_named_by_their_first_line_not_the_graders_key():
    from types import SimpleNamespace

    from grader.config.match import Match, RunCell

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


def test_an_added_cell_is_named_by_at_most_sixty_characters_of_its_first_line_and_all_its_failures_are_listed():
    from types import SimpleNamespace

    from grader.config.match import Match, RunCell

    sixty, longer = "x = " + "1" * 56, "y = " + "2" * 57
    cells_ = (RunCell("start+1", "above", sixty + "\n"), RunCell("start+2", "above", longer + "\n"))
    evidence = SimpleNamespace(match=Match("ids", {}, above={"start": cells_}), artifact=SimpleNamespace(
        cell={"start+1": {"status": "error"}, "start+2": {"status": "error"}}.get))
    assert checks._added_cell(evidence, "start+1") == f"the one that begins `{sixty}`"
    assert checks._added_cell(evidence, "start+2") == f"the one that begins `{longer[:57]}...`"
    said = checks._above_failures(evidence)
    assert f"the one that begins `{sixty}`, the one that begins `{longer[:57]}...`, raised an error" in said
    assert said.endswith("that is not graded: it may be a line only Colab runs)")  # said, but no points lost


def test_a_labs_cell_that_failed_is_quoted_up_to_three_hundred_characters():
    from types import SimpleNamespace

    from grader.config.match import Match, RunCell

    log = [{"role": "above", "key": "start+1"}, {"role": "locked", "key": "config", "status": "error", "error": {"message": "e" * 400}}]
    evidence = SimpleNamespace(match=Match("ids", {}, above={"start": (RunCell("start+1", "above", "AUTO = 1\n"),)}),
                               artifact=SimpleNamespace(log=log))
    assert f"ran: {'e' * 300}; take that cell out" in checks._lab_cell_broken_after_added(evidence)


def test_the_frozen_check_gives_each_of_its_verdicts_on_the_evidence_it_reads():
    """Every branch of the frozen-base check, on hand-built evidence: trainable weights (how
    the student's line went wrong, if it can be seen), weights not the pretrained ones,
    not trained, weights changed in training although none was trainable, and frozen."""
    from types import SimpleNamespace

    from grader.config.match import RunCell
    from grader.grading.evidence import Missing

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


def compile_evidence(loss="sparse_categorical_crossentropy", metrics=("accuracy",), from_logits=False, one_hot=False, labels="index",
                     output="softmax", label_problem="", learning_rate=0.001, last=None, base_trainable=(), head=()):
    """Hand-built evidence of what the model was compiled with, as the compile and accuracy checks read it."""
    from types import SimpleNamespace

    def output_activation():
        if output is None:
            raise Missing("no model")
        return output

    choices = SimpleNamespace(loss=loss, metrics=list(metrics), from_logits=from_logits, one_hot=one_hot, learning_rate=learning_rate)
    return SimpleNamespace(compile_choices=lambda: choices, output_activation=output_activation, label_problem=lambda: label_problem,
                           setting=SimpleNamespace(labels=labels, training=SimpleNamespace(epochs=6)),
                           layers=[last] if last is not None else [],
                           chain=SimpleNamespace(base_layer=SimpleNamespace(trainable_weights=list(base_trainable)), head=list(head)))


def test_the_compile_check_gives_each_of_its_verdicts():
    check = checks.CompileSettings()
    said = check(compile_evidence())
    assert (said.status, said.message) == ("passed", "loss sparse_categorical_crossentropy on the lab's class-index labels, with the accuracy metric")
    said = check(compile_evidence(loss="categorical_crossentropy", one_hot=True, labels="one_hot", from_logits=True, output="linear"))
    assert (said.status, said.message) == ("passed", "loss categorical_crossentropy from the model's logits (from_logits=True) on the lab's "
                                                     "one-hot labels, with the accuracy metric")
    forgiven = check(compile_evidence(loss="categorical_crossentropy", one_hot=True))  # a loss for one-hot labels, where the lab has indices
    assert forgiven.status == "passed" and forgiven.message.endswith(
        "; the grader feeds it one-hot labels (this assignment forgives a loss that does not fit the lab's labels), with the accuracy metric")
    other_way = check(compile_evidence(loss="sparse_categorical_crossentropy", one_hot=False, labels="one_hot"))  # and the other way round
    assert other_way.status == "passed" and "; the grader feeds it class-index labels (this assignment forgives" in other_way.message
    for metrics in (["acc"], ["sparse_categorical_accuracy"], ["categorical_accuracy"], ["AUC", "accuracy"]):
        assert check(compile_evidence(metrics=metrics)).status == "passed", metrics
    twice = check(compile_evidence(from_logits=True))
    assert (twice.status, twice.message) == ("failed", "the model already ends in softmax, and the loss has from_logits=True, so softmax "
                                                       "would be applied twice: drop from_logits=True (it is for a last layer without activation)")
    assert check(compile_evidence(from_logits=True, output=None)).status == "passed"  # no output to read: nothing said twice
    assert (check(compile_evidence(label_problem="the loss expects one-hot labels")).status,
            check(compile_evidence(label_problem="the loss expects one-hot labels")).message) == ("failed", "the loss expects one-hot labels")
    none = check(compile_evidence(metrics=()))
    assert (none.status, none.message) == ("failed", "metrics are [none]: add metrics=['accuracy'] so training reports accuracy")
    other = checks.CompileSettings(metric="auc")(compile_evidence(metrics=("mse", "accuracy")))
    assert (other.status, other.message) == ("failed", "metrics are [mse, accuracy]: add metrics=['auc'] so training reports accuracy")


def accuracy_evidence(accuracy, **compiled):
    from types import SimpleNamespace

    evidence = compile_evidence(**compiled)
    evidence.training = lambda: SimpleNamespace(val_accuracy=accuracy, history={})
    return evidence


def test_the_accuracy_check_passes_at_its_threshold_gives_each_bands_share_below_it_and_says_why_a_model_cannot_learn():
    from types import SimpleNamespace

    check = checks.ValidationAccuracy(0.6, bands=[(0.4, 0.5), (0.5, 0.75)])
    assert check.bands == ((0.5, 0.75), (0.4, 0.5))
    said = check(accuracy_evidence(0.6))
    assert (said.status, said.message, said.evidence) == (
        "passed", "validation accuracy 0.600 after 6 epochs of training in the grader (needed 0.60)", {"val_accuracy": 0.6, "threshold": 0.6})
    upper = check(accuracy_evidence(0.55))
    assert (upper.status, upper.fraction, upper.message) == (
        "partial", 0.75, "validation accuracy 0.550 after 6 epochs of training in the grader: 0.60 earns all points, 0.50 earns 75%")
    assert (check(accuracy_evidence(0.5)).status, check(accuracy_evidence(0.5)).fraction) == ("partial", 0.75)
    assert (check(accuracy_evidence(0.45)).status, check(accuracy_evidence(0.45)).fraction) == ("partial", 0.5)
    assert upper.evidence == {"val_accuracy": 0.55, "threshold": 0.6}  # the scorecard shows what was measured, whatever the verdict
    low = check(accuracy_evidence(0.2))
    assert (low.status, low.message) == ("failed", "validation accuracy 0.200 after 6 epochs of training in the grader, below the 0.60 the lab expects")
    assert low.evidence == {"val_accuracy": 0.2, "threshold": 0.6}
    assert check(accuracy_evidence(0.2, learning_rate=0)).message.endswith(
        "; the optimizer's learning rate is 0, so the model cannot learn: use optimizer='adam'")
    from grader.grading.structure import Found

    linear = Found("Dense", 5, "linear")
    assert check(accuracy_evidence(0.2, last=linear)).message.endswith(
        "; the last layer is Dense(5, linear), so the loss reads its raw outputs as probabilities: use activation='softmax'")
    assert check(accuracy_evidence(0.2, last=linear, from_logits=True)).message.endswith("the lab expects")  # logits read as logits
    assert check(accuracy_evidence(0.2, base_trainable=("kernel",))).message.endswith(
        "; training the whole pretrained base on this little data spoils its features: freeze it")
    frozen = [SimpleNamespace(name=f"dense_{i}", weights=["w"], trainable=False) for i in range(4)]
    assert check(accuracy_evidence(0.2, head=[SimpleNamespace(name="flatten", weights=[], trainable=False), *frozen])).message.endswith(
        "; 4 of your own layers are frozen (trainable=False: dense_0, dense_1, dense_2, ...): they keep their random starting weights and "
        "never learn, so the model cannot either: take trainable=False out")
    assert "(trainable=False: dense_0, dense_1, dense_2): they keep" in check(accuracy_evidence(0.2, head=frozen[:3])).message  # all named
    assert checks.ValidationAccuracy(1).threshold == 1.0  # a perfect score may be asked for
    for threshold in (0, 1.5):
        with pytest.raises(ValueError, match="threshold must be in"):
            checks.ValidationAccuracy(threshold)


def run_evidence(log=None, stopped_by="", stopped_cell="", last_started="", exit_code=0, unanswered=(), cells_=None, above=(), lab_log=()):
    """Hand-built evidence of a run: the student's cells (the answer, and a cell added below it),
    what the run's log says of each (`lab_log`: the whole log, in order), how the run ended,
    and the keys of the cells that hold only the playground's placeholders."""
    from types import SimpleNamespace

    from grader.config.match import Match, RunCell

    student = cells_ or (RunCell("model", "answer", "import tensorflow as tf\nmodel = tf.keras.Sequential([\n    Dense(5)\n])\n"),
                         RunCell("model+1", "added", "model.summary()\n"))
    entries = {"model": {"status": "ok"}, "model+1": {"status": "ok"}} if log is None else log
    return SimpleNamespace(
        outcome=SimpleNamespace(stopped_by=stopped_by, stopped_cell=stopped_cell, last_started=last_started, exit_code=exit_code),
        student_cells=student, unanswered=lambda cell: cell.key in unanswered, stopped_message=lambda: f"stopped: over its {stopped_by} limit",
        why_not_run=lambda: "a cell before it stopped the run", match=Match("ids", {}, above={"start": tuple(above)} if above else {}),
        artifact=SimpleNamespace(cell=entries.get, log=list(lab_log)))


def test_the_runs_check_names_the_cell_that_went_wrong_and_how():
    from grader.config.match import RunCell

    check = checks.AnswerCellsRun()
    said = check(run_evidence())
    assert (said.status, said.message) == ("passed", "the answer cell ran without errors, with the 1 cell(s) you added to it")
    alone = check(run_evidence(cells_=(RunCell("model", "answer", "model = make()\n"),)))
    assert (alone.status, alone.message) == ("passed", "the answer cell ran without errors")
    for limit in ("memory", "processes", "cpu", "disk_full", "tampered"):
        assert check(run_evidence(stopped_by=limit)) == checks.Verdict("failed", f"stopped: over its {limit} limit")
    placeholder = check(run_evidence(unanswered=("model",), cells_=(RunCell("model", "answer", "# YOUR CODE GOES HERE\n"),)))
    assert placeholder == checks.Verdict(
        "failed", "the answer cell holds only the playground's placeholders (`# YOUR CODE GOES HERE`): write your code in it")
    assert check(run_evidence(unanswered=("model",), cells_=(RunCell("model", "answer", "pass\n"),))).message.endswith(
        "holds only the playground's placeholders: write your code in it")
    assert check(run_evidence(unanswered=("other",))).status == "passed"  # the question is asked of the answer cell itself
    error = {"name": "NameError", "message": "name 'Dense' is not defined", "line": 3, "traceback": "Traceback ..."}
    raised = check(run_evidence(log={"model": {"status": "error", "error": error}}))
    assert (raised.status, raised.message, raised.evidence) == (
        "failed", "the answer cell raised NameError at line 3 `Dense(5)`: name 'Dense' is not defined", {"traceback": "Traceback ..."})
    below = check(run_evidence(log={"model": {"status": "ok"}, "model+1": {"status": "error", "error": {"message": "no"}}}))
    assert below.message == "the cell you added raised an error: no"
    batching = check(run_evidence(log={"model": {"status": "error", "error": {
        "name": "InvalidArgumentError", "message": "Cannot batch tensors with different shapes in component 0"}}}))
    assert batching.message.endswith("(the pictures are not all the same size, so they cannot go in one batch: leave batching for "
                                     "later, after they are resized to one size)")
    assert check(run_evidence(log={}, stopped_by="wall")) == checks.Verdict("failed", "the answer cell did not finish: stopped: over its wall limit")
    assert check(run_evidence(log={}, last_started="model", exit_code=-9)) == checks.Verdict(
        "failed", "the run ended in the middle of the answer cell (exit code -9), so nothing after it ran")
    helper = RunCell("start+1", "above", "import os\nos._exit(3)\n")
    assert check(run_evidence(log={}, last_started="start+1", exit_code=3, above=(helper,))) == checks.Verdict(
        "failed", "the run ended in the middle of the cell you added above the answer (the one that begins `import os`, exit code 3), "
                  "so the answer never ran: take that cell out")
    assert check(run_evidence(log={})) == checks.Verdict("failed", "the answer cell did not run: a cell before it stopped the run")
    timed_out = check(run_evidence(stopped_by="wall", stopped_cell="model+1"))
    assert (timed_out.status, timed_out.message) == ("failed", "stopped: over its wall limit")


def test_a_run_stopped_after_the_students_cells_ran_passes_the_runs_check():
    said = checks.AnswerCellsRun()(run_evidence(stopped_by="wall", stopped_cell="train"))  # the lab's training cell ran out of time
    assert said.status == "passed"


def test_an_error_is_quoted_at_its_line_first_to_last_and_one_from_the_runners_record_has_an_empty_traceback():
    from grader.config.match import RunCell

    two_lines = (RunCell("model", "answer", "model = make()\nmodel.fit(x)\n"),)

    def raised(line):
        error = {"name": "ValueError", "message": "bad", "line": line}
        return checks.AnswerCellsRun()(run_evidence(log={"model": {"status": "error", "error": error}}, cells_=two_lines))

    assert raised(1).message == "the answer cell raised ValueError at line 1 `model = make()`: bad"
    assert raised(2).message == "the answer cell raised ValueError at line 2 `model.fit(x)`: bad"
    assert raised(3).message == "the answer cell raised ValueError: bad"  # a line the cell does not have: not quoted
    assert raised(0).message == "the answer cell raised ValueError: bad"
    assert raised(2).evidence == {"traceback": ""}  # the runner's record of an error (grader/grading/integrity.py) has no traceback


def test_a_labs_cell_that_fails_after_a_cell_added_above_the_answer_fails_the_runs_check_and_names_that_cell():
    from grader.config.match import RunCell

    helper = RunCell("start+1", "above", "AUTO = None\n")
    ran = [{"role": "above", "key": "start+1", "status": "ok"},
           {"role": "locked", "key": "config", "status": "error", "error": {"name": "TypeError", "message": "AUTO is None"}},
           {"role": "answer", "key": "model", "status": "ok"}, {"role": "added", "key": "model+1", "status": "ok"}]
    said = checks.AnswerCellsRun()(run_evidence(above=(helper,), log={entry["key"]: entry for entry in ran}, lab_log=ran))
    assert said.status == "failed" and said.message.startswith(
        "the lab's cell 'config' raised TypeError after the cell you added above the answer (the one that begins `AUTO = None`) ran")


def structure_evidence(layers, image_size=96, count=0):
    from types import SimpleNamespace

    return SimpleNamespace(layers=layers, model=lambda: SimpleNamespace(count_params=lambda: count),
                           setting=SimpleNamespace(base_name="MobileNetV2", image_size=image_size,
                                                   lab=SimpleNamespace(hint=lambda name, default: f"[{name}] {default}")))


def test_the_structure_check_reads_the_rule_the_input_size_and_the_parameter_bounds():
    from grader.grading.structure import Found

    rule = ["pretrained MobileNetV2(include_top=False)", "Flatten | GlobalAveragePooling2D", "Dense(5, softmax)"]
    base = Found("MobileNetV2", options=(("include_top", "False"), ("input", "96x96x3")), pretrained=True)
    head = [Found("GlobalAveragePooling2D"), Found("Dense", 5, "softmax")]
    said = checks.ModelStructure(rule)(structure_evidence([base, *head]))
    assert (said.status, said.evidence["layers"], said.evidence["expected"], said.evidence["differs_at"]) == (
        "passed", [str(base), "GlobalAveragePooling2D", "Dense(5, softmax)"], rule, None)
    wrong = checks.ModelStructure(rule, expected="the base, pooling, then Dense(5, softmax)")(structure_evidence([base, head[1]]))
    assert (wrong.status, wrong.evidence["differs_at"]) == ("failed", 1)
    assert wrong.message == "expected Flatten or GlobalAveragePooling2D as layer 2, before Dense(5, softmax); add it"
    unpretrained = checks.ModelStructure(rule)(structure_evidence([Found("MobileNetV2", options=base.options, pretrained=False), *head]))
    assert f"[pretrained_weights] {checks.PRETRAINED_FIX}" in unpretrained.message  # the lab's own words for getting the pretrained weights
    other_size = checks.ModelStructure(rule)(structure_evidence([base, *head], image_size=192))
    assert (other_size.status, other_size.message, other_size.evidence["layers"]) == (
        "failed", "the pretrained model's input is 96x96x3; [input_shape] build it for the lab's images (192x192x3)", said.evidence["layers"])
    bounded = checks.ModelStructure(rule, parameters=[1000, 1_000_000])
    assert bounded(structure_evidence([base, *head], count=1_000_000)).status == "passed"
    at_least = bounded(structure_evidence([base, *head], count=1000))
    assert (at_least.status, at_least.evidence["parameters"]) == ("passed", 1000)
    big = bounded(structure_evidence([base, *head], count=1_000_001))
    assert (big.status, big.message) == ("failed", "the model has 1,000,001 parameters; the lab asks for at most 1,000,000")
    assert (big.evidence["parameters"], big.evidence["layers"]) == (1_000_001, said.evidence["layers"])  # the scorecard shows the model
    assert checks.ModelStructure(rule, parameters=[0, 1000])(structure_evidence([base, *head], count=0)).status == "passed"
    assert bounded(structure_evidence([base, *head], count=999)).message == "the model has 999 parameters; the lab asks for at least 1,000"
    assert checks.ModelStructure(rule, parameters=[1000, 1000]).parameters == (1000, 1000)  # exactly so many
    for parameters in ([1000], [1000, -1], [1.5, 2], [1000, 10]):  # at least, at most: not the other way round
        with pytest.raises(ValueError, match="parameters must be"):
            checks.ModelStructure(rule, parameters=parameters)
    with pytest.raises(ValueError, match="expected must be a sentence"):
        checks.ModelStructure(rule, expected=["a list"])


def test_the_structure_check_says_the_model_the_lab_asks_for_in_the_labs_words_else_the_rules():
    from grader.grading.structure import Found

    rule = ["Flatten", "Dense(5, softmax)"]
    empty = checks.ModelStructure(rule, expected="a Flatten layer, then Dense(5, softmax)")(structure_evidence([]))
    assert (empty.status, empty.message) == ("failed", "the model is empty: put the layers in tf.keras.Sequential([...]): a Flatten "
                                                       "layer, then Dense(5, softmax)")
    in_rules_words = checks.ModelStructure(rule)(structure_evidence([]))
    assert in_rules_words.message.startswith("the model is empty: put the layers in tf.keras.Sequential([...]): Flatten")
    no_base = checks.ModelStructure(rule)(structure_evidence([Found("Flatten"), Found("Dense", 5, "softmax")]))  # a lab without a pretrained base
    assert no_base.status == "passed"


def test_a_dataset_that_skips_repeats_or_never_ends_is_told_which_and_why():
    from grader.grading.sample import Sample

    def problem(cardinality, counted=None, files=10):
        return checks._coverage_problem(Sample((), "", cardinality, counted), files)

    assert problem(10) == "" and problem(-2, counted=10) == "" and problem(-2) == ""  # one per file; or not known
    assert problem(-1) == "the dataset never ends (a repeat()): this step yields each file's picture once; repeating is for training, later"
    assert problem(9) == ("the dataset yields 9 pictures, but the data has 10 files: keep every file (no take(), skip() or filter() "
                          "in this step)")
    assert problem(-2, counted=3) .startswith("the dataset yields 3 pictures, but the data has 10 files")
    assert problem(20) == "the dataset yields 20 elements, but the data has 10 files: each file once (no repeat() in this step)"
    assert problem(-2, counted=11) == ("the dataset yields more than 10 elements, but the data has 10 files: each file once "
                                       "(no repeat() in this step)")


def test_a_dataset_that_yields_nothing_fails_each_dataset_check_with_where_to_look():
    from types import SimpleNamespace

    from grader.grading.sample import Sample

    empty = SimpleNamespace(sample=lambda: Sample((), "", 0), setting=SimpleNamespace(lab=SimpleNamespace(answer="dataset")))
    for check in (checks.DatasetElements(), checks.DatasetPictures(), checks.DatasetLabels()):
        said = check(empty)
        assert (said.status, said.message) == ("failed", "`dataset` yields no element: check that the pattern you list matches the "
                                                         "data's files, and that no filter drops everything"), check
    with pytest.raises(ValueError, match="labels must be one of name, index, one_hot, got 'names'"):
        checks.DatasetElements(labels="names")


class Flowers:
    """Three of the data's pictures in two classes, and the parts a sampled element is made of."""

    def __init__(self):
        from reference.data import Picture

        self.classes = ["daisy", "roses"]
        self.thumbs = {"h1": (10.0,) * 192, "h2": (200.0,) * 192, "h3": (100.0,) * 192}
        self.pictures = {"h1": Picture(0, "daisy/1.jpg", (4, 5, 3), self.thumbs["h1"]),
                         "h2": Picture(1, "roses/2.jpg", (6, 5, 3), self.thumbs["h2"]),
                         "h3": Picture(0, "daisy/3.jpg", (4, 5, 3), self.thumbs["h3"])}

    def image(self, sha, shape=None, thumb=None, dtype="uint8"):
        from grader.grading.sample import Part

        known = self.pictures.get(sha)
        return Part(dtype, shape or known.shape, sha, thumb=thumb if thumb is not None else known.thumb)

    @staticmethod
    def name(text):
        from grader.grading.sample import Part

        return Part("string", (), values=(text,))

    def evidence(self, *elements, cardinality=None):
        from types import SimpleNamespace

        from grader.grading.sample import Sample

        sample = Sample(tuple(elements), "", len(elements) if cardinality is None else cardinality)
        return SimpleNamespace(sample=lambda: sample, setting=SimpleNamespace(
            pictures=self.pictures, lab=SimpleNamespace(answer="dataset"),
            dataset=SimpleNamespace(files=list(self.pictures), classes=self.classes)))


def test_the_pictures_check_knows_each_picture_however_decoded_and_names_each_way_it_went_wrong():
    from grader.grading.sample import Part

    f = Flowers()
    whole = [(f.image(h), f.name(f.classes[p.label])) for h, p in f.pictures.items()]
    check = checks.DatasetPictures()
    said = check(f.evidence(*whole))
    assert (said.status, said.message) == ("passed", "the 3 pictures read are 3 different files of the data, decoded as they are, and "
                                                     "the dataset has one picture for each of its 3 files")
    other_decoder = f.image("zz", (4, 5, 3), tuple(v + 2 for v in f.thumbs["h1"]))  # two levels off everywhere: another JPEG decoder
    said = check(f.evidence((other_decoder, f.name("daisy")), *whole[1:]))
    assert said.status == "passed" and "(1 by another JPEG decoder, a level or two apart, as decoders are)" in said.message
    assert check(f.evidence((f.name("daisy"), f.image("h1")), *whole[1:])).status == "passed"  # (label, picture): its picture is right
    assert check(f.evidence(*[(f.image(h),) for h in f.pictures])).status == "passed"  # pictures without labels: the labels' check says so
    twice = check(f.evidence(whole[0], whole[0], whole[1]))
    assert twice == checks.Verdict("failed", "daisy/1.jpg comes 2 times in the first 3 elements: list each file once (no repeat() in this step)")
    fewer = check(f.evidence(*whole[:2]))
    assert fewer.status == "failed" and fewer.message.startswith("the dataset yields 2 pictures, but the data has 3 files")
    resized = f.image("rs", (8, 8, 3), tuple(v + 10 for v in f.thumbs["h1"]))
    assert check(f.evidence((resized, f.name("daisy")))).message == (
        "a picture of 8x8 is daisy/1.jpg, which is 4x5: decode each file as it is, without resizing or cropping it (the photos have "
        "different sizes)")
    floats = checks.DatasetPictures(dtype="float32")  # a lab whose pictures are converted to floats in this step
    assert floats(f.evidence((f.image("rs", (8, 8, 3), resized.thumb, dtype="float32"), f.name("daisy")))).message.startswith(
        "a picture of 8x8 is daisy/1.jpg, which is 4x5: decode each file as it is")
    forms = {
        Part("string", (), values=("flowers/daisy/1.jpg",)): "the image is still the file's name ('flowers/daisy/1.jpg'): read the file "
                                                              "with tf.io.read_file, then decode its bytes with tf.io.decode_jpeg",
        Part("string", (), values=("\xff\xd8\xff",)): "the image is a string (the file's bytes, not decoded): decode it with tf.io.decode_jpeg",
        f.image("h1", dtype="float32"): "the images are float32; the lab's are uint8, as tf.io.decode_jpeg gives them (converting them "
                                        "comes in a later lab)",
        Part("uint8", (2, 4, 5, 3)): "the images come in batches (uint8 [2, 4, 5, 3]): this step yields one picture per element, so "
                                     "leave batching for later",
        f.image("gr", (4, 5, 1), (10.0,) * 64): "the pictures were decoded with 1 channel(s) (grey): decode them in colour, with 3 "
                                                 "channels (tf.io.decode_jpeg(bits), or channels=3)",
    }
    for image, message in forms.items():
        assert check(f.evidence((image, f.name("daisy")))) == checks.Verdict("failed", message), image


def test_the_labels_check_reads_each_form_of_label_and_names_each_way_one_went_wrong():
    from grader.grading.sample import Part

    f = Flowers()
    check = checks.DatasetLabels()
    for label in (f.name, lambda c: Part("int32", (), values=(f.classes.index(c),)),
                  lambda c: Part("float32", (2,), values=(1.0, 0.0) if c == "daisy" else (0.0, 1.0))):
        said = check(f.evidence(*[(f.image(h), label(f.classes[p.label])) for h, p in f.pictures.items()]))
        assert (said.status, said.message) == ("passed", "each of the 3 labels names its picture's folder (3 checked against the file "
                                                         "they came from)")
    wrong = {
        "roses": "a picture is labelled 'roses', the class of another picture (daisy/1.jpg is a picture of daisy): take the picture and "
                 "its label from the same file name, in the function you map (two datasets listed separately are shuffled differently)",
        "1.jpg": "the labels are file names ('1.jpg'), not class names (daisy/1.jpg is a picture of daisy): take the name of the folder "
                 "that holds the file, the part of the path before the file's name",
        "flowers/daisy/1.jpg": "the labels are whole paths ('flowers/daisy/1.jpg') (daisy/1.jpg is a picture of daisy): keep only the "
                               "folder's name, the part before the file's name",
        "tulips": "the label 'tulips' is none of the classes (daisy, roses) (daisy/1.jpg is a picture of daisy)",
    }
    for text, message in wrong.items():
        assert check(f.evidence((f.image("h1"), f.name(text)))) == checks.Verdict("failed", message), text
    alone = check(f.evidence((f.image("h1"),)))
    assert alone.status == "failed" and alone.message.endswith(", with no label beside its picture: return image, label from the function you map")
    batches = check(f.evidence((Part("uint8", (2, 4, 5, 3)), Part("string", (2,)))))
    assert (batches.status, batches.fraction) == ("partial", 0.5) and batches.message.startswith("the elements come in batches")
    assert batches.message.endswith(": leave batching for later (see the elements' check)")
    unknown = check(f.evidence((Part("uint8", (9, 9, 3), "nope"), f.name("daisy"))))
    assert (unknown.status, unknown.fraction) == ("partial", 0.5) and unknown.message.startswith(
        "every label is one of the classes, but no picture is one of the data's files")
    assert unknown.message.endswith(": fix the pictures (see their check)")


def test_the_elements_check_wants_one_picture_label_pair_per_element_with_the_labs_labels():
    from grader.grading.sample import Part

    f = Flowers()
    said = checks.DatasetElements("name")(f.evidence((f.image("h1"), f.name("daisy"))))
    assert (said.status, said.message) == ("passed", "1 elements read, each a (picture, label) pair with class names (one string per "
                                                     "picture), e.g. (uint8 [4, 5, 3], string 'daisy')")
    index = checks.DatasetElements("index")(f.evidence((f.image("h1"), f.name("daisy"))))
    assert index == checks.Verdict("failed", "the label is string 'daisy'; the lab's labels are class indices (one integer per "
                                             "picture): turn the class name into its index in the list of classes")
    swapped = checks.DatasetElements("name")(f.evidence((f.name("daisy"), f.image("h1"))))
    assert swapped.message.startswith("each element is (label, picture), (string 'daisy', uint8 [4, 5, 3]): the lab's elements are "
                                      "(picture, label) pairs, picture first")
    names = checks.DatasetElements("name")(f.evidence((Part("string", (), values=("daisy/1.jpg",)),)))
    assert names.message.startswith("the dataset yields file names ('daisy/1.jpg'), not (picture, label) pairs")
