"""Each lab's notebook is the codelab's, cell by cell: its locked cells define every name the
codelab's own locked cells define (an answer that calls one must not meet a NameError the
student never saw), and each cell knows the codelab's ids for it, so that a notebook
downloaded from the codelab's Colab page is matched cell by cell."""

import os

import pytest

from grader.config import cells, manifest as manifest_mod, release
from conftest import ROOT

# The names the codelab's locked cells define, as ../shared/CODELAB.md lists them (parts 2 and 3),
# and the helper part 1's "[RUN ME]" cell defines.
HELPERS = ("dataset_to_numpy_util title_from_label_and_target display_one_flower display_9_images_from_dataset "
           "display_9_images_with_predictions display_training_curves read_tfrecord load_dataset get_batched_dataset").split()
CONSTANTS = ("AUTOTUNE BATCH_SIZE CLASSES EPOCHS GCS_PATTERN IMAGE_SIZE VALIDATION_SPLIT filenames split training_filenames "
             "validation_filenames steps_per_epoch validation_steps training_dataset validation_dataset").split()
NAMES = {
    "keras_flowers_tfdata": ["display_9_images_from_dataset", "GCS_PATTERN", "CLASSES", "AUTO", "AUTOTUNE"],
    "keras_flowers_transfer": HELPERS + CONSTANTS + ["AUTO"],
    "keras_flowers_convnet": HELPERS + CONSTANTS + ["AUTO", "strategy", "tpu"],
}
# the codelab's own ids of its cells before the answer, every version since TF 2.1 (its answer cell's id last)
CODELAB_IDS = {
    "keras_flowers_tfdata": ["U6rgexPXmY37", "MPkvHdAYNt9J", "d8K6hL_kiWve", "nwsZ8X59mu24"],
    "keras_flowers_transfer": ["9u3d4Z7uQsmp", "M3G-2aUBQJ-H", "MPkvHdAYNt9J", "LtAVr-4CP1rp", "xb-b4PRz-V6O", "N5Y9XywVRHtK", "XLJNVGwHUDy1"],
    "keras_flowers_convnet": ["9u3d4Z7uQsmp", "FpvUOuC3j27n", "tmv6p137kgob", "M3G-2aUBQJ-H", "tMy0zz6FXnJY", "LtAVr-4CP1rp",
                              "xb-b4PRz-V6O", "7wxKyCklR4Gh", "XLJNVGwHUDy1"],
}


def released(lab: str):
    return release.build(manifest_mod.load(os.path.join(ROOT, "assignments", lab)))


@pytest.mark.parametrize("lab", sorted(NAMES))
def test_the_locked_cells_before_the_answer_define_every_name_the_codelabs_do(lab):
    record, _ = released(lab)
    defined: set[str] = set()
    for cell in record.cells:
        if cell.kind == "answer":
            break
        if cell.kind == "locked":
            defined |= cells.assigned_names(cell.source)
    assert sorted(set(NAMES[lab]) - defined) == []


@pytest.mark.parametrize("lab", sorted(CODELAB_IDS))
def test_every_codelab_cell_before_the_answer_is_known_by_its_id(lab):
    record, _ = released(lab)
    known = [record.known(key) for key in CODELAB_IDS[lab]]
    assert None not in known
    assert record.cell(known[-1]).kind == "answer"
    assert all(record.cell(key).kind == "locked" for key in known[:-1])


@pytest.mark.parametrize("lab", sorted(CODELAB_IDS))
def test_the_released_playground_is_known_untouched_and_the_solution_is_not(lab):
    record, playground = released(lab)
    answer = record.cell(record.answer_keys[0])
    given = next(cells.source_of(c) for c in playground.cells if cells.cell_key(c) == answer.key)
    assert cells.unanswered(given, answer.given, answer.untouched)
    assert not cells.unanswered(answer.source, answer.given, answer.untouched)
    assert len(answer.untouched) == 1  # the codelab's playground cell, the same code in every version since TF 2.1
