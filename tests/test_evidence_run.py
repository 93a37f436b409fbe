"""Fast tests of Evidence over the files a run leaves (grader/grading/evidence.py): what the checks
read from model.json, model.weights.h5, compile.json, export.json and log.json, made here
as the sandbox runner writes them (without running a notebook): the model rebuilt, its
pretrained base found and compared with the grader's own weights, the layers as the
structure rules see them, the compile choices against the lab's labels, whether the model
takes the lab's pictures, and why a run that left nothing left nothing."""

import json
import os

import keras
import numpy as np
import pytest

from grader import context as context_mod
from grader.config import manifest as manifest_mod
from grader.config.match import Match, RunCell
from grader.faults import Missing
from grader.grading import artifact
from grader.grading.evidence import Evidence, Trusted
from grader.sandbox import Outcome
from conftest import ASSIGNMENT
from reference.weights import pretrained_base

L = keras.layers
ANSWER = RunCell("model", "answer", "model = tf.keras.Sequential([pretrained_model, Flatten(), Dense(5, activation='softmax')])\n"
                 "pretrained_model.trainable = False")
COMPILED = {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}


@pytest.fixture(scope="module")
def trusted(tmp_path_factory):
    manifest = manifest_mod.load(ASSIGNMENT)
    out = str(tmp_path_factory.mktemp("evidence-context"))
    return Trusted(context_mod.resolve(manifest, out, allow_unsandboxed=True, use_cache=False))


@pytest.fixture(scope="module")
def shared_base(trusted):
    """The lab's base with the grader's own weights, built once: the models here share it."""
    return pretrained_base(trusted.lab.base, trusted.weights, trusted.image_size)


def base_of(trusted, pretrained: bool = True):
    base = pretrained_base(trusted.lab.base, trusted.weights, trusted.image_size)
    if not pretrained:
        base.set_weights([w + 0.5 for w in base.get_weights()])
    return base


def run_folder(folder, model=None, compiled=COMPILED, log=None, export=None):
    """The files a run leaves, as the runner writes them."""
    os.makedirs(folder, exist_ok=True)
    if model is not None:
        with open(os.path.join(folder, "model.json"), "w") as handle:
            handle.write(model.to_json())
        model.save_weights(os.path.join(folder, "model.weights.h5"))
    if compiled is not None:
        with open(os.path.join(folder, "compile.json"), "w") as handle:
            json.dump(compiled, handle)
    with open(os.path.join(folder, "export.json"), "w") as handle:
        json.dump({"found": model is not None} if export is None else export, handle)
    with open(os.path.join(folder, "log.json"), "w") as handle:
        json.dump([{"key": "model", "role": "answer", "status": "ok"}] if log is None else log, handle)
    return str(folder)


def evidence_of(trusted, folder, outcome=None, cells=(ANSWER,)):
    outcome = outcome or Outcome(folder, 0, None, None, "model", 1.0, "", True)
    return Evidence(trusted, Match("ids", {"model": tuple(cells)}), outcome, artifact.read(folder), {})


def transfer_model(base, *head):
    return keras.Sequential([keras.Input((96, 96, 3)), base, *head])


def test_the_models_pretrained_base_is_found_and_known_for_the_graders_own_weights_or_not(trusted, shared_base, tmp_path):
    kept = evidence_of(trusted, run_folder(tmp_path / "kept", transfer_model(shared_base, L.Flatten(), L.Dense(5, activation="softmax"))))
    assert [(f.kind, f.units, f.activation) for f in kept.layers] == [
        ("MobileNetV2", None, None), ("Flatten", None, None), ("Dense", 5, "softmax")]
    assert kept.chain.base == 0 and kept.layers[0].pretrained is True and kept.base_is_pretrained
    assert dict(kept.layers[0].options) == {"include_top": "False", "input": "96x96x3"}
    assert kept.output_activation() == "softmax" and kept._applies == ""
    retrained = evidence_of(trusted, run_folder(tmp_path / "changed", transfer_model(
        base_of(trusted, pretrained=False), L.GlobalAveragePooling2D(), L.Dense(5, activation="softmax"))))
    assert retrained.chain.base == 0 and retrained.layers[0].pretrained is False and not retrained.base_is_pretrained
    assert not retrained.matches_pretrained(retrained.base().get_weights()[:-1])  # one array short is not the same weights


def test_a_model_without_the_base_says_so_and_one_that_cannot_classify_says_why(trusted, shared_base, tmp_path):
    no_base = evidence_of(trusted, run_folder(tmp_path / "no-base", keras.Sequential([
        keras.Input((96, 96, 3)), L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(5, activation="softmax")])))
    assert no_base.chain.base is None
    with pytest.raises(Missing, match="no pretrained MobileNetV2 base"):
        no_base.base()
    ten = evidence_of(trusted, run_folder(tmp_path / "ten", transfer_model(shared_base, L.GlobalAveragePooling2D(), L.Dense(10))))
    assert "10 outputs per image" in ten._applies and "5 classes" in ten._applies
    unflattened = evidence_of(trusted, run_folder(tmp_path / "map", transfer_model(shared_base, L.Dense(5, activation="softmax"))))
    assert "of shape (3, 3, 5) per image" in unflattened._applies


def test_the_compile_choices_are_read_and_judged_against_the_labs_class_index_labels(trusted, shared_base, tmp_path):
    model = transfer_model(shared_base, L.Flatten(), L.Dense(5))
    fine = evidence_of(trusted, run_folder(tmp_path / "fine", model, {**COMPILED, "loss": {
        "module": "keras.losses", "class_name": "SparseCategoricalCrossentropy", "config": {"from_logits": True}, "registered_name": None}}))
    choices = fine.compile_choices()
    assert (choices.loss, choices.from_logits, choices.one_hot) == ("SparseCategoricalCrossentropy", True, False)
    assert fine.label_problem() == ""
    # linear output, softmax in the loss: the structure rules read it as softmax, and say why
    assert fine.layers[-1].activation == "softmax" and "from_logits=True" in fine.layers[-1].note
    assert fine.output_activation() == "linear"
    one_hot = evidence_of(trusted, run_folder(tmp_path / "one-hot", model, {**COMPILED, "loss": "categorical_crossentropy"}))
    assert "one-hot labels" in one_hot.label_problem() and "sparse_categorical_crossentropy" in one_hot.label_problem()
    with pytest.raises(Missing):
        evidence_of(trusted, run_folder(tmp_path / "not-compiled", model, compiled=None)).compile_choices()


def test_a_run_that_left_no_model_says_what_stopped_it(trusted, tmp_path):
    raised = evidence_of(trusted, run_folder(tmp_path / "raised", log=[{"key": "model", "role": "answer", "status": "error",
                                                                          "error": {"name": "NameError"}}]))
    with pytest.raises(Missing, match="the answer cell raised NameError, so there is no model to check"):
        raised.model()
    added = RunCell("mine", "added", "x = 1")
    raised_below = evidence_of(trusted, run_folder(tmp_path / "added", log=[
        {"key": "model", "role": "answer", "status": "ok"}, {"key": "mine", "role": "added", "status": "error", "error": {"name": "ValueError"}}]),
        cells=(ANSWER, added))
    assert raised_below.answer_failure().startswith("a cell you added to the answer raised ValueError")
    folder = run_folder(tmp_path / "stopped", log=[])
    stopped = evidence_of(trusted, folder, Outcome(folder, None, "cell_timeout", "model", "model", 120.0, "", True,
                                                   limit_message="the cell ran past its 120 s"))
    assert stopped.why_not_run() == stopped.stopped_message() == "the cell ran past its 120 s (in cell model)"
    crashed = evidence_of(trusted, folder, Outcome(folder, 139, None, None, None, 1.0, "warming up\nSegmentation fault\n\n", True))
    assert crashed.why_not_run() == "the run stopped before any cell ran (exit code 139: Segmentation fault)"
    assert crashed.stopped_message() == ""
    ended = evidence_of(trusted, run_folder(tmp_path / "ended"))
    assert ended.why_not_run() == "the run ended before the model could be exported (the answer cell failed, or the run crashed)"


def test_what_the_rebuilt_model_has_and_no_cell_wrote_is_noted_for_the_instructor(trusted, tmp_path):
    base = base_of(trusted)
    base.trainable = False
    evidence = evidence_of(trusted, run_folder(tmp_path / "frozen", transfer_model(base, L.Flatten(), L.Dense(5, activation="softmax"))))
    assert evidence.source_notes([ANSWER]) == ()
    plain = RunCell("model", "answer", "model = build()")
    assert evidence.source_notes([plain]) == ("the rebuilt model ends in softmax, which no cell of the run writes",
                                              "the rebuilt model's base is frozen, but no cell of the run sets trainable")
    assert not evidence.untouched()


def test_a_base_made_with_its_own_pooling_is_read_as_the_base_then_that_pooling(trusted, shared_base, tmp_path):
    for pooling, kind in (("avg", "GlobalAveragePooling2D"), ("max", "GlobalMaxPooling2D")):
        base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=None, pooling=pooling)
        base.set_weights(shared_base.get_weights())
        model = transfer_model(L.Rescaling(1.0), base, L.Dense(5, activation="softmax"))
        evidence = evidence_of(trusted, run_folder(tmp_path / pooling, model))
        assert [(f.kind, f.index, f.note) for f in evidence.layers] == [
            ("Rescaling", 0, ""), ("MobileNetV2", 1, ""), (kind, 1, f"the base's own pooling='{pooling}'"), ("Dense", 2, "")]
        assert evidence.layers[1].pretrained and evidence._applies == ""


def test_an_answer_is_unanswered_while_it_holds_only_what_the_playground_gave(trusted, tmp_path):
    import types

    from grader.config.cells import code_checksum

    codelab = "model = None  # the codelab's own"
    given = {"model": types.SimpleNamespace(given="model = ...  # your model here", untouched=(code_checksum(codelab),))}
    folder = run_folder(tmp_path / "given")
    placeholder = RunCell("model", "answer", "model = ...  # your model here")
    same = Evidence(trusted, Match("ids", {"model": (placeholder,)}), Outcome(folder, 0, None, None, "model", 1.0, "", True),
                    artifact.read(folder), given)
    assert same.unanswered(placeholder) and same.untouched()
    written = Evidence(trusted, Match("ids", {"model": (ANSWER,)}), Outcome(folder, 0, None, None, "model", 1.0, "", True),
                       artifact.read(folder), given)
    assert not written.unanswered(ANSWER) and not written.untouched()
    assert written.unanswered(RunCell("model", "answer", codelab))  # the codelab's own playground, as it gives the cell
    added = Evidence(trusted, Match("ids", {"model": (placeholder, RunCell("mine", "added", "model = build()"))}),
                     Outcome(folder, 0, None, None, "model", 1.0, "", True), artifact.read(folder), given)
    assert not added.untouched()  # a cell of the student's own is work
