"""The tf.data lab (part 1): no model; the sandbox exports a sample of what the student's
dataset yields, and the trusted checks compare it with the data's own pictures.
One batch of the lab's scenarios, graded once (no training: a minute or so)."""

import json
import os
import re

import pytest

from conftest import ROOT, assert_grades_like, assert_teachers_verdict, attempt, calibrated, checks, failing, grade_lab, population_names

TFDATA = os.path.join(ROOT, "assignments", "keras_flowers_tfdata")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tfdata_graded(tmp_path_factory):
    return grade_lab(TFDATA, tmp_path_factory)


@pytest.mark.parametrize("name", ["solution", "colab_download"])
def test_full_marks(tfdata_graded, name):
    result = tfdata_graded[0][name]
    assert result.status == "graded"
    assert result.score == result.max_score == 100, [(c.id, c.status, c.message) for c in result.checks]


def test_colab_download_is_matched_by_the_codelabs_cell_ids(tfdata_graded):
    assert tfdata_graded[0]["colab_download"].provenance["matched_by"] == "ids"


def test_solution_sample_is_shown_as_data(tfdata_graded):
    result = tfdata_graded[0]["solution"]
    rows = result.model["sample"]
    assert len(rows) == 24
    # the lab's photos are JPEGs of many sizes, as the codelab's are: each is shown as it was decoded
    assert all(re.match(r"\(uint8 \[\d+, \d+, 3\], string '", row["element"]) for row in rows), rows[0]["element"]
    assert len({row["element"].split("]")[0] for row in rows}) > 1
    assert all(row["picture"].endswith(")") and "none of" not in row["picture"] for row in rows)
    assert result.training == {} and result.provenance["training"] == "not trained"


def test_untouched_playground_gets_nothing(tfdata_graded):
    result = tfdata_graded[0]["untouched_playground"]
    assert result.score == 0
    found = checks(result)
    assert "placeholder" in found["runs"].message
    assert all(found[check].message.startswith("not checked: the answer is the playground's as it was given")
               for check in ("elements", "pictures", "labels"))


def test_label_from_the_file_name_fails_the_labels_check(tfdata_graded):
    result = tfdata_graded[0]["file_name_label"]
    assert failing(result) == ["labels"]
    message = checks(result)["labels"].message
    assert "the labels are file names" in message and "take the name of the folder that holds the file" in message


def test_bytes_never_decoded_fail_the_pictures_check(tfdata_graded):
    result = tfdata_graded[0]["not_decoded"]
    # the solution's own lines after the map read the pictures' shapes: on bytes, they raise
    assert failing(result) == ["runs", "pictures"]
    assert "not decoded): decode it with tf.io.decode_jpeg" in checks(result)["pictures"].message


def test_class_index_where_the_name_is_asked_fails_the_elements_check(tfdata_graded):
    result = tfdata_graded[0]["index_labels"]
    assert failing(result) == ["elements"]  # the index is its picture's class: the labels check passes
    message = checks(result)["elements"].message
    assert "the lab's labels are class names" in message and "return the folder's name itself" in message


def test_float_pictures_and_batches(tfdata_graded):
    graded = tfdata_graded[0]
    assert failing(graded["float_pictures"]) == ["pictures"]  # the labels are judged on their own: the photos are still known
    assert "the images are float32; the lab's are uint8" in checks(graded["float_pictures"])["pictures"].message
    # the photos are of many sizes, as the codelab's: batching them before resizing raises in the student's own cell
    assert failing(graded["batched"]) == ["runs", "elements", "pictures", "labels"]
    assert "leave batching for later, after they are resized" in checks(graded["batched"])["runs"].message


def test_scorecard_shows_the_sample(tfdata_graded):
    results, _, out = tfdata_graded
    page = open(os.path.join(attempt(out, "solution"), "scorecard.html"), encoding="utf-8").read()
    assert 'id="sample"' in page and "What your dataset yields" in page
    stored = json.load(open(os.path.join(attempt(out, "not_decoded"), "result.json")))
    assert stored["model"]["what"] == "dataset" and len(stored["model"]["sample"]) == 24


# --- the population: answers as students write them, each with a teacher's verdict ------


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    return calibrated(TFDATA, tmp_path_factory)


@pytest.mark.parametrize("name", population_names(TFDATA))
def test_population_verdict(population, name):
    assert_teachers_verdict(population[1], name)


def test_the_population_is_large_and_mixed():
    from grader.config import labs, manifest as manifest_mod

    answers = labs.population(manifest_mod.load(TFDATA))
    assert len(answers) >= 40 and sum(a.correct for a in answers) >= 20 and len({a.name for a in answers}) == len(answers)


def test_another_jpeg_decoder_is_said_to_be_one(population):
    _, found = population
    message = checks(found.results["pil_decode"])["pictures"].message
    assert "by another JPEG decoder" in message  # PIL's pixels are not tf.io.decode_jpeg's, but within what decoders differ by


# --- `grader new` on the lab's pair, as the codelab ships it ---------------------------


def test_the_imported_assignment_grades_like_the_hand_made_one(tmp_path, tfdata_graded):
    from test_importer import imported_tfdata

    _, loaded = imported_tfdata(tmp_path)
    names = ["solution.ipynb", "untouched_playground.ipynb", "index_labels.ipynb"]  # index_labels: the elements check's own parameter
    assert_grades_like(loaded, TFDATA, names, tfdata_graded[0], tmp_path, use_cache=False)
