"""`grader new` on a codelab-shaped pair of notebooks makes an assignment that grades like
the hand-made one."""

import json
import os

import nbformat
import pytest

from grader import cells, importer, manifest as manifest_mod, release
from grader.cli import main
from conftest import ASSIGNMENT, ROOT, assert_grades_like

TFDATA = os.path.join(ROOT, "assignments", "keras_flowers_tfdata")


def colab_pair(tmp_path, assignment=ASSIGNMENT):
    """A lab (the transfer lab by default) as the codelab ships it: a playground and a
    solution, nbformat 4.0, ids in metadata.id, the solution's headings saying [WORK WAS
    REQUIRED HERE]."""
    source = nbformat.read(os.path.join(assignment, "source.ipynb"), as_version=4)
    _, playground = release.build(manifest_mod.load(assignment))
    made = {}
    for name, notebook in (("playground", playground), ("solution", source)):
        data = json.loads(nbformat.writes(notebook))
        data["nbformat_minor"] = 0
        for index, cell in enumerate(data["cells"]):
            cell.pop("id", None)
            cell["metadata"] = {"id": f"colab{index:03d}xyz", "colab_type": "text" if cell["cell_type"] == "markdown" else "code"}
            text = "".join(cell["source"])
            if name == "solution":
                text = cells.solution_code(text).replace("[WORK REQUIRED]", "[WORK WAS REQUIRED HERE]")
            cell["source"] = text
        made[name] = tmp_path / f"{name}.ipynb"
        made[name].write_text(json.dumps(data))
    return made


def answer_index(assignment=ASSIGNMENT) -> int:
    """Where the lab's answer cell is in its notebook (the pair keeps the order)."""
    loaded = manifest_mod.load(assignment)
    source = nbformat.read(loaded.notebook_path, as_version=4)
    return next(i for i, c in enumerate(source.cells) if cells.cell_key(c) == loaded.answer_cells[0])


def test_the_answer_is_marked_so_that_release_gives_back_the_playground(tmp_path):
    pair = colab_pair(tmp_path)
    folder = tmp_path / "imported"
    from labs import flowers

    made = importer.new(str(folder), str(pair["playground"]), str(pair["solution"]), data=flowers.demo_data("tfrecord"),
                        weights=flowers.demo_weights(), image_size=96)
    at = answer_index()
    assert made.answers == [f"colab{at:03d}xyz"]
    loaded = manifest_mod.load(str(folder))
    assert loaded.lab.classes == ("daisy", "dandelion", "roses", "sunflowers", "tulips") and loaded.lab.base.application == "MobileNetV2"
    assert dict(loaded.lab.environment) == {"FLOWERS_TFREC": "{data_dir}/*.tfrec", "FLOWERS_IMAGE_SIZE": "{image_size}", "FLOWERS_BATCH_SIZE": "{batch_size}"}
    assert [c.check for c in loaded.checks] == ["answer_cells_run", "model_structure", "frozen_base", "compile_settings", "validation_accuracy"]
    record, playground = release.build(loaded)
    original = nbformat.read(str(pair["playground"]), as_version=4)
    answer = next(c for c in playground.cells if cells.cell_key(c) == f"colab{at:03d}xyz")
    assert cells.source_of(answer) == cells.source_of(original.cells[at])
    assert any("calibrate" in line for line in made.undecided)


@pytest.mark.slow
def test_it_grades_like_the_hand_made_assignment(tmp_path, graded, feature_cache):
    pair = colab_pair(tmp_path)
    folder = tmp_path / "imported"
    from labs import flowers

    assert main(["new", str(folder), "--playground", str(pair["playground"]), "--solution", str(pair["solution"]),
                 "--data", flowers.demo_data("tfrecord"), "--weights", flowers.demo_weights(), "--image-size", "96"]) == 0
    imported = manifest_mod.load(str(folder))
    names = ["solution.ipynb", "untouched_playground.ipynb", "no_softmax.ipynb", "syntax_error.ipynb"]
    assert_grades_like(imported, ASSIGNMENT, names, graded[0], tmp_path, cache_dir=feature_cache)


def imported_tfdata(tmp_path):
    """`grader new` on the tf.data lab's pair: (what it printed, the manifest it wrote)."""
    from labs import flowers

    pair = colab_pair(tmp_path, TFDATA)
    folder = tmp_path / "imported"
    made = importer.new(str(folder), str(pair["playground"]), str(pair["solution"]), data=flowers.demo_data("folders"))
    return made, manifest_mod.load(str(folder))


def test_a_dataset_lab_is_read_off_its_pair(tmp_path):
    made, loaded = imported_tfdata(tmp_path)
    at = answer_index(TFDATA)
    assert made.answers == [f"colab{at:03d}xyz"]
    assert (loaded.lab.answer, loaded.lab.kind, loaded.data_format) == ("dataset", "dataset", "folders")
    assert dict(loaded.lab.environment) == {"FLOWERS_JPEG": "{data_dir}/*/*.jpg"}
    assert [c.check for c in loaded.checks] == ["answer_cells_run", "dataset_elements", "dataset_pictures", "dataset_labels"]
    assert loaded.checks[1].params == {"labels": "name"}
    assert not any("[training]" in line for line in made.undecided)  # nothing is trained
    _, playground = release.build(loaded)
    given = nbformat.read(str(tmp_path / "playground.ipynb"), as_version=4)
    assert cells.source_of(playground.cells[at]) == cells.source_of(given.cells[at])
