"""The acceptance verdicts, with real training on the demo data (one batch, graded once)."""

import json
import os

import pytest

from grader import batch
from grader.config import scenarios
from conftest import FULL_TRAINING, attempt, checks

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["solution", "global_pooling", "colab_download"])
def test_full_marks(graded, name):
    result = graded[0][name]
    assert result.status == "graded"
    assert result.score == result.max_score == 100, [(c.id, c.status, c.message) for c in result.checks]


def test_solution_summary_and_curves(graded):
    result = graded[0]["solution"]
    # MobileNetV2 at 96x96 without top: 2,257,984 weights; Flatten gives 3*3*1280 inputs to Dense(5).
    assert result.model["trainable_params"] == 3 * 3 * 1280 * 5 + 5
    assert result.model["total_params"] == 2_257_984 + 57_605
    trained, epochs = len(result.training["history"]["val_accuracy"]), result.provenance["epochs"]
    # every epoch, or fewer once the verdict was settled, said so
    assert trained == epochs or result.training["stopped"].startswith(f"stopped after {trained} of {epochs} epochs"), result.training


def test_categorical_loss_does_not_fit_the_labs_class_index_labels(graded):
    result = checks(graded[0]["categorical_loss"])
    assert result["compile"].status == "failed" and "expects one-hot labels, but this lab's labels are class indices" in result["compile"].message
    assert "use loss='sparse_categorical_crossentropy'" in result["compile"].message
    assert result["accuracy"].status == "failed" and "not trained" in result["accuracy"].message  # as the lab's own fit fails
    assert [c.id for c in graded[0]["categorical_loss"].checks if c.status == "passed"] == ["runs", "structure", "frozen"]


def test_colab_download_matched_by_the_codelabs_cell_ids(graded):
    result = graded[0]["colab_download"]
    assert result.provenance["matched_by"] == "ids"  # the codelab's own ids are the lab cells' aliases
    replaced = next(cell for cell in result.cells if cell["role"] == "replaced")
    assert "the codelab's own versions of the lab's cells (imports, config, train)" in replaced["note"]


def test_untouched_playground(graded):
    result = checks(graded[0]["untouched_playground"])
    assert graded[0]["untouched_playground"].score == 0 and graded[0]["untouched_playground"].training == {}  # nothing trained
    assert result["structure"].message.startswith("not checked: the answer is the playground's as it was given")
    assert result["accuracy"].score == 0
    assert result["runs"].status == "failed" and "placeholder" in result["runs"].message


def test_head_without_softmax(graded):
    result = checks(graded[0]["no_softmax"])
    assert result["structure"].status == "failed"
    assert "expected Dense with 5 units and softmax at the end; found Dense(5, linear)" in result["structure"].message


def test_fake_accuracy_printout_is_not_believed(graded):
    result = graded[0]["fake_accuracy"]
    cell = next(c for c in result.cells if c["key"] == "model")
    assert "val_accuracy: 0.9990" in cell["stdout"]  # it did print the claim
    accuracy = checks(result)["accuracy"]
    assert accuracy.status == "failed" and accuracy.evidence["val_accuracy"] < 0.5
    assert "learning rate is 0.0" in accuracy.message


def test_weights_fitted_in_the_notebook_do_not_carry_into_the_trusted_run(graded):
    prefit, solution = graded[0]["prefit_on_validation"], graded[0]["solution"]
    assert prefit.training["val_accuracy"] == solution.training["val_accuracy"]
    assert prefit.training["history"] == solution.training["history"]


def test_syntax_error_names_the_students_line(graded):
    result = graded[0]["syntax_error"]
    runs = checks(result)["runs"]
    assert runs.status == "failed" and "SyntaxError" in runs.message
    assert "at line 7 `tf.keras.layers.Dense(5, activation='softmax'))`" in runs.message
    assert os.path.isfile(os.path.join(attempt(graded[2], "syntax_error"), "scorecard.html"))


def test_not_a_notebook_gets_an_ungradable_scorecard(graded):
    result = graded[0]["not_a_notebook"]
    assert result.status == "ungradable" and "not a notebook" in result.reason
    page = open(os.path.join(attempt(graded[2], "not_a_notebook"), "scorecard.html")).read()
    assert "could not be graded" in page and "not a notebook" in page


def test_notebook_without_answer_cells_is_ungradable(graded):
    result = graded[0]["no_answers"]
    assert result.status == "ungradable" and "no answer cell found" in result.reason
    assert "[WORK REQUIRED]" in result.fix


def test_outputs_have_the_documented_shape(graded):
    results, paths, out = graded
    data = json.load(open(os.path.join(attempt(out, "solution"), "result.json")))
    assert {"assignment", "submission", "status", "score", "max_score", "checks"} <= set(data)
    assert all({"id", "title", "status", "score", "max_score", "message"} <= set(c) for c in data["checks"])
    rows = open(paths["grades"]).read().splitlines()
    assert rows[0].startswith("student,name,email,section,status,file,sha256,submitted_at,late_days,score,penalty,final,max_score,runs,structure")
    assert len(rows) == 1 + len(os.listdir(os.path.join(out, "submissions")))  # every student, graded or not
    index = open(paths["index"]).read()
    assert all(f'href="{os.path.relpath(attempt(out, name), out)}/scorecard.html"' in index for name in results)
    scorecard = open(os.path.join(attempt(out, "solution"), "scorecard.html")).read()
    assert "<polyline" in scorecard and 'id="trainable-params"' in scorecard


def test_fast_path_gives_the_verdicts_of_full_training(graded, graded_in_full):
    fast, full = graded[0], graded_in_full[0]
    assert set(full) == set(FULL_TRAINING)
    paths = {name: r.provenance.get("training", "") for name, r in fast.items()}
    assert paths["solution"].startswith("fast path")  # (a model it cannot take: unfrozen_base, tests/test_variants.py)
    fast = {name: fast[name] for name in full}
    assert all(r.provenance.get("training", "not trained").startswith(("full training", "not trained")) for r in full.values())
    for name in fast:
        assert [(c.id, c.status, c.score) for c in fast[name].checks] == [(c.id, c.status, c.score) for c in full[name].checks], name
        if fast[name].training:
            # Same batches, order, epochs and seed; the base's outputs differ only by float rounding.
            assert abs(fast[name].training["val_accuracy"] - full[name].training["val_accuracy"]) <= 0.05, name
