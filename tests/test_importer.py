"""`grader new` on a codelab-shaped pair of notebooks makes an assignment that grades like
the hand-made one."""

import json
import os
import re

import nbformat
import pytest

from grader.cli import main
from grader.config import cells, importer, manifest as manifest_mod, release
from grader.faults import GraderError
from conftest import ASSIGNMENT, ROOT, attempt

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
    assert made.answers == ["model"]  # named by its heading; the codelab's id is an alias
    loaded = manifest_mod.load(str(folder))
    assert loaded.lab.classes == ("daisy", "dandelion", "roses", "sunflowers", "tulips") and loaded.lab.base.application == "MobileNetV2"
    assert dict(loaded.lab.environment) == {"FLOWERS_TFREC": "{data_dir}/*.tfrec", "FLOWERS_IMAGE_SIZE": "{image_size}", "FLOWERS_BATCH_SIZE": "{batch_size}"}
    assert [c.check for c in loaded.checks] == ["answer_cells_run", "model_structure", "frozen_base", "compile_settings", "validation_accuracy"]
    record, playground = release.build(loaded)
    assert record.cell("model").aliases == (f"colab{at:03d}xyz",)
    original = nbformat.read(str(pair["playground"]), as_version=4)
    answer = next(c for c in playground.cells if cells.cell_key(c) == "model")
    assert cells.source_of(answer) == cells.source_of(original.cells[at])
    assert any("`grader check`" in line and "threshold" in line for line in made.undecided)


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
    assert len(made.answers) == 1 and release.build(loaded)[0].cell(made.answers[0]).aliases == (f"colab{at:03d}xyz",)
    assert (loaded.lab.answer, loaded.lab.kind, loaded.data_format) == ("dataset", "dataset", "folders")
    assert dict(loaded.lab.environment) == {"FLOWERS_JPEG": "{data_dir}/*/*.jpg"}
    assert [c.check for c in loaded.checks] == ["answer_cells_run", "dataset_elements", "dataset_pictures", "dataset_labels"]
    assert loaded.checks[1].params == {"labels": "name"}
    assert not any("[training]" in line for line in made.undecided)  # nothing is trained
    _, playground = release.build(loaded)
    given = nbformat.read(str(tmp_path / "playground.ipynb"), as_version=4)
    assert cells.source_of(playground.cells[at]) == cells.source_of(given.cells[at])


# --- a pair of notebooks of our own in the shape of the codelab's part 3 ---------------
#
# As the codelab ships them: nbformat 4.0, ids in metadata.id only (the strategy cell's
# differs between the two), Colab's name for each, a playground whose model cell holds a
# starting model (an input layer, one convolution, the placeholder comment and a list of
# layers to try, the head) and whose heading holds the instructions, a solution whose
# heading says [WORK WAS REQUIRED HERE] and whose compile differs by a space
# (`loss= '...'`), a strategy cell that leaves `tpu` undefined without a TPU, and a
# configuration that reads a gs:// bucket and a picture size of 192.

STRATEGY = """try:  # a TPU, where one answers
    tpu = tf.distribute.cluster_resolver.TPUClusterResolver.connect()
    strategy = tf.distribute.TPUStrategy(tpu)
except ValueError:  # else every GPU, or the CPU
    strategy = tf.distribute.MirroredStrategy()
print("replicas:", strategy.num_replicas_in_sync)"""

CONFIGURATION = """GCS_PATTERN = 'gs://our-flowers/tfrec-192/*.tfrec'
IMAGE_SIZE = [192, 192]

if tpu:
  BATCH_SIZE = 16 * strategy.num_replicas_in_sync
else:
  BATCH_SIZE = 32

VALIDATION_SPLIT = 0.19
CLASSES = ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']

filenames = sorted(tf.io.gfile.glob(GCS_PATTERN))
split = int(len(filenames) * VALIDATION_SPLIT)
training_filenames, validation_filenames = filenames[split:], filenames[:split]"""

READ = """def read_tfrecord(example):
    features = {"image": tf.io.FixedLenFeature([], tf.string), "one_hot_class": tf.io.VarLenFeature(tf.float32)}
    example = tf.io.parse_single_example(example, features)
    image = tf.cast(tf.io.decode_jpeg(example['image'], channels=3), tf.float32) / 255.0
    label = tf.reshape(tf.sparse.to_dense(example['one_hot_class']), [len(CLASSES)])
    return tf.reshape(image, [*IMAGE_SIZE, 3]), label

def get_batched_dataset(filenames, train=False):
    dataset = tf.data.TFRecordDataset(filenames).map(read_tfrecord).cache()
    if train:
        dataset = dataset.repeat()
    return dataset.batch(BATCH_SIZE).prefetch(AUTOTUNE)

training_dataset = get_batched_dataset(training_filenames, train=True)
validation_dataset = get_batched_dataset(validation_filenames)"""

STARTING_MODEL = """with strategy.scope():  # made where the strategy places it

  model = tf.keras.Sequential([

      ###
      tf.keras.layers.InputLayer(input_shape=[*IMAGE_SIZE, 3]),
      tf.keras.layers.Conv2D(kernel_size=3, filters=12, padding='same', activation='relu'),
      #
      # YOUR LAYERS HERE
      #
      # LAYERS TO TRY:
      # Conv2D(kernel_size=3, filters=24, padding='same', activation='relu')
      # MaxPooling2D(pool_size=2)
      #
      tf.keras.layers.GlobalAveragePooling2D(),
      tf.keras.layers.Dense(5, activation='softmax')
      ###
  ])

  model.compile(
    optimizer='adam',
    loss='categorical_crossentropy',
    metrics=['accuracy'])

  model.summary()"""

SOLVED_MODEL = """with strategy.scope():  # made where the strategy places it

  model = tf.keras.Sequential([
      tf.keras.layers.Conv2D(kernel_size=3, filters=16, padding='same', activation='relu', input_shape=[*IMAGE_SIZE, 3]),
      tf.keras.layers.MaxPooling2D(pool_size=2),
      tf.keras.layers.Conv2D(kernel_size=3, filters=32, padding='same', activation='relu'),
      tf.keras.layers.MaxPooling2D(pool_size=2),
      tf.keras.layers.Conv2D(kernel_size=3, filters=48, padding='same', activation='relu'),
      tf.keras.layers.GlobalAveragePooling2D(),
      tf.keras.layers.Dense(5, activation='softmax')
  ])

  model.compile(
    optimizer='adam',
    loss= 'categorical_crossentropy',
    metrics=['accuracy'])

  model.summary()"""

INSTRUCTIONS = """## Model [WORK REQUIRED]
1. Train the model as it is, with one convolution: not much better than chance.
2. Add convolutions with max-pooling between them, e.g.<br/>
`conv 3x3, 16 filters, relu`<br/>`max pool 2x2`<br/>`conv 3x3, 32 filters, relu`<br/>
3. Keep global average pooling before the last layer."""


def convnet_pair(tmp_path, colab_names: bool = True) -> dict:
    """Our own codelab-shaped pair (see above): {"playground": path, "solution": path}."""
    def cell(kind, source, cell_id):
        entry = {"cell_type": kind, "metadata": {"id": cell_id}, "source": source}
        return {**entry, "execution_count": None, "outputs": []} if kind == "code" else entry

    def notebook(name, model_heading, model, strategy_id):
        cells_ = [cell("markdown", "A convnet for the flowers, trained on a TPU.", "intro0000001"),
                  cell("markdown", "## Imports", "importsHead1"),
                  cell("code", "import os, math\nimport numpy as np\nimport tensorflow as tf\nprint('TensorFlow', tf.__version__)\nAUTOTUNE = tf.data.AUTOTUNE", "importsCode1"),
                  cell("markdown", "## TPU detection", "tpuHeading01"),
                  cell("code", STRATEGY, strategy_id),
                  cell("markdown", "## Configuration", "configHead01"),
                  cell("code", CONFIGURATION, "configCode01"),
                  cell("markdown", "## Read the TFRecords", "readHeading1"),
                  cell("code", READ, "readCode0001"),
                  cell("markdown", model_heading, "modelHeading"),
                  cell("code", model, "modelCode001"),
                  cell("markdown", "## Training", "trainHeading"),
                  cell("code", "EPOCHS = 12\nhistory = model.fit(training_dataset, steps_per_epoch=10, epochs=EPOCHS,\n                    validation_data=validation_dataset)", "trainCode001")]
        metadata = {"accelerator": "TPU", "kernelspec": {"name": "python3", "display_name": "Python 3"}}
        if colab_names:
            metadata["colab"] = {"name": f"Flower convnets on TPU ({name}).ipynb", "provenance": []}
        return {"nbformat": 4, "nbformat_minor": 0, "metadata": metadata, "cells": cells_}

    made = {}
    for name, heading, model, strategy_id in (("playground", INSTRUCTIONS, STARTING_MODEL, "tpuPlayCode1"),
                                              ("solution", "## Model [WORK WAS REQUIRED HERE]", SOLVED_MODEL, "tpuSolvCode1")):
        made[name] = tmp_path / f"07_Flower_convnets_{name}@2021-09-30_0000000.ipynb"
        made[name].write_text(json.dumps(notebook(name, heading, model, strategy_id), indent=1))
    return made


def imported_convnet(tmp_path, **options):
    """`grader new` on our codelab-shaped pair, with the demo data: (Imported, manifest, source notebook)."""
    from labs import flowers

    pair = convnet_pair(tmp_path, **{k: v for k, v in options.items() if k == "colab_names"})
    folder = tmp_path / "imported"
    made = importer.new(str(folder), str(pair["playground"]), str(pair["solution"]), data=flowers.demo_data("tfrecord"), image_size=96)
    return made, manifest_mod.load(str(folder)), nbformat.read(str(folder / "source.ipynb"), as_version=4)


def test_release_gives_back_the_codelabs_playground_starting_model_and_instructions_included(tmp_path):
    made, loaded, source = imported_convnet(tmp_path)
    record, playground = release.build(loaded)
    given = nbformat.read(str(convnet_pair(tmp_path)["playground"]), as_version=4)
    assert [cells.source_of(c) for c in playground.cells] == [cells.source_of(c) for c in given.cells]  # text equal, cell by cell
    model = source.cells[10]
    assert (made.answers, cells.cell_key(model)) == (["model"], "model")
    assert "### BEGIN GIVEN" in cells.source_of(model) and "# YOUR LAYERS HERE" in cells.source_of(model)
    # what the lab runs is the solution's code; what the playground shows is the starting model
    assert cells.code_lines(record.cell("model").source) == cells.code_lines(SOLVED_MODEL.replace("loss= ", "loss="))
    assert record.cell("model").given == STARTING_MODEL


def test_whitespace_never_makes_an_answer_block(tmp_path):
    _, _, source = imported_convnet(tmp_path)
    model = cells.source_of(source.cells[10])
    assert model.count("### BEGIN SOLUTION") == 1 and model.count("### BEGIN GIVEN") == 2  # the layers; the closing `###`
    compile_call = model[model.index("model.compile("):]
    assert "BEGIN" not in compile_call and "loss='categorical_crossentropy'" in compile_call  # the playground's words
    assert importer.marked("x = f(a, b)\ny  =  2\n", "x = f(a,b)\n\ny = 2   ") == "x = f(a, b)\ny  =  2"
    assert "BEGIN" in importer.marked("s = 'a b'", "s = 'ab'")  # a space inside a string is not whitespace that means nothing


def test_a_cell_that_differs_in_whitespace_only_is_no_answer(tmp_path):
    pair = convnet_pair(tmp_path)
    for name in ("playground", "solution"):
        data = json.loads(pair[name].read_text())
        data["cells"][10]["source"] = STARTING_MODEL if name == "playground" else STARTING_MODEL.replace("loss='", "loss = '")
        pair[name].write_text(json.dumps(data))
    with pytest.raises(GraderError, match="no answer cells"):
        importer.new(str(tmp_path / "imported"), str(pair["playground"]), str(pair["solution"]))


def test_title_and_points_come_from_the_notebooks(tmp_path):
    _, loaded, _ = imported_convnet(tmp_path)
    assert loaded.title == "Flower convnets on TPU"  # Colab's name for the notebook, without "(playground)"
    assert sum(spec.points for spec in loaded.checks) == 100
    assert {spec.id: spec.points for spec in loaded.checks} == {"runs": 10, "structure": 30, "scope": 10, "compile": 10, "accuracy": 40}
    (tmp_path / "unnamed").mkdir()
    _, unnamed, _ = imported_convnet(tmp_path / "unnamed", colab_names=False)
    assert unnamed.title == "Flower convnets"  # the file's name, without its number, part and version


def test_the_untouched_codelab_playground_is_known_by_its_checksum(tmp_path):
    _, loaded, source = imported_convnet(tmp_path)
    record, _ = release.build(loaded)
    assert record.cell("model").untouched == (cells.code_checksum(STARTING_MODEL),)
    assert record.cell("model").aliases == ("modelCode001",)
    assert record.cell("tpu-detection").aliases == ("tpuSolvCode1", "tpuPlayCode1")  # the two notebooks' ids for it


def test_the_to_do_names_each_cell_that_cannot_run_in_the_sandbox_and_the_change(tmp_path):
    made, loaded, _ = imported_convnet(tmp_path)
    about_cells = [line for line in made.undecided if line.startswith("cell `")]
    assert len(about_cells) == 3, about_cells
    undefined, bucket, size = about_cells
    assert undefined.startswith("cell `tpu-detection`") and "`tpu` undefined when no TPU answers" in undefined
    assert "cell `configuration`" in undefined and "write `tpu = None` before the `try:`" in undefined
    assert bucket.startswith("cell `configuration`") and "'gs://our-flowers/tfrec-192/*.tfrec'" in bucket
    assert "`GCS_PATTERN = os.environ.get('GCS_PATTERN', 'gs://our-flowers/tfrec-192/*.tfrec')`" in bucket
    assert size.startswith("cell `configuration`") and "`IMAGE_SIZE = [int(os.environ.get('IMAGE_SIZE', '192'))] * 2`" in size
    assert dict(loaded.lab.environment) == {"GCS_PATTERN": "{data_dir}/*.tfrec", "IMAGE_SIZE": "{image_size}"}
    assert any(line.startswith("cell `tpu-detection`") and "goes on without one" in line for line in made.decided)
    threshold = next(line for line in made.undecided if "accuracy" in line)
    assert "chance level" in threshold and "`grader check`" in threshold
    assert loaded.checks[-1].params["threshold"] == 0.2


def test_a_tpu_asked_for_without_a_fallback_is_a_to_do(tmp_path):
    from grader.config import portable

    found = portable.problems([portable.Cell("hardware", "## Hardware", "tpu = tf.distribute.cluster_resolver.TPUClusterResolver()")], 96)
    assert [p.said for p in found] == ["cell `hardware` (under 'Hardware') asks for a TPU, which the grader's machine does not have, "
                                       "and fails without one: ask in a `try:` and fall back to `tf.distribute.MirroredStrategy()` "
                                       "in `except ValueError:`"]
    fine = "tpu = None\ntry:\n    tpu = TPUClusterResolver()\nexcept ValueError:\n    pass"
    assert all(not p.to_do for p in portable.problems([portable.Cell("hardware", "", fine), portable.Cell("config", "", "if tpu: pass")], 96))


def _result(provenance: dict, owner):
    from grader.results import SubmissionResult

    return SubmissionResult("lab", "1", "reference-solution", "reference-solution.ipynb", "0" * 64, "ungradable", 0.0, 1.0,
                            reason="the lab's own cell 'configuration' failed in the sandbox: ...", provenance=provenance, owner=owner)


def test_a_failing_lab_cell_is_the_instructors_to_fix_named_and_quoted_never_retried():
    import types

    from grader import faults, preflight
    from grader.grading import pipeline
    from grader.scale.executors import Attempts, Done, Work

    # the pipeline: a lab cell's failure becomes the instructor's outcome, with the cell and its error
    context = types.SimpleNamespace(manifest=manifest_mod.load(os.path.join(ROOT, "tests", "fixtures", "tiny_assignment")), sandboxed=True)
    grader = types.SimpleNamespace(context=context)
    error = faults.LabCellFailed("configuration", "NameError: name 'tpu' is not defined")
    result = pipeline._failed("nowhere.ipynb", "reference-solution", grader, error, "grading failed", 0.0)
    assert result.owner is faults.Owner.INSTRUCTOR and not result.graders_fault
    assert result.provenance["lab_cell"] == {"key": "configuration", "error": "NameError: name 'tpu' is not defined"}
    # never tried again: it would fail the same way
    done = Done(Work("k", "p", "n"), result)
    assert Attempts(None, 3).settle(done) is done
    # the preflight names the cell and quotes its error, as the instructor's: exit code 2
    stop = preflight.not_graded(Work("k", "p", "reference-solution"), result)
    said = str(stop)
    assert "the lab's own cell 'configuration' failed" in said and "NameError: name 'tpu' is not defined" in said
    assert "the grader itself failed" not in said and "source notebook" in said
    assert stop.exit_code == 2


def test_the_threshold_suggested_sits_between_the_starting_code_and_the_solution():
    from grader.calibrate import Suggestion

    # the codelab's 07 pair, measured: the solution 0.956, the starting code 0.444
    found = Suggestion("accuracy", 0.2, 0.956, 0.444, 0.2)
    assert (found.threshold, found.band) == (0.75, 0.55) and 0.444 < found.threshold < 0.956
    assert "the threshold 0.2 lets the starting code pass" in "\n".join(found.lines())
    assert Suggestion("accuracy", 0.5, 0.85, None, 0.2).threshold == 0.59  # no model to start from: above chance
    assert "the threshold 0.2 lets a model that guesses pass" in "\n".join(Suggestion("accuracy", 0.2, 0.85, None, 0.2).lines())
    assert "cannot tell" in "\n".join(Suggestion("accuracy", 0.5, 0.47, 0.444, 0.2).lines())


@pytest.mark.slow
def test_the_imported_pair_after_its_to_do_grades_its_solution_100_and_its_playground_0(tmp_path, capsys):
    """Before the to-do, the lab's own `if tpu:` stops `grader check` (the instructor's, the cell
    named); after it, `grader check` suggests a threshold from grading the pair, and with
    it the codelab-shaped solution gets full marks and its untouched playground 0."""
    from labs import flowers

    pair = convnet_pair(tmp_path)
    folder = tmp_path / "imported"
    assert main(["new", str(folder), "--playground", str(pair["playground"]), "--solution", str(pair["solution"]),
                 "--data", flowers.demo_data("tfrecord"), "--image-size", "96"]) == 0
    capsys.readouterr()
    assert main(["check", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "the lab's own cell 'configuration' failed" in err and "NameError: name 'tpu' is not defined" in err
    assert "the grader itself failed" not in err

    source = nbformat.read(str(folder / "source.ipynb"), as_version=4)  # the to-do, as the instructor does it
    for cell in source.cells:
        if cells.cell_key(cell) == "tpu-detection":
            cell.source = "tpu = None\n" + cell.source
        if cells.cell_key(cell) == "configuration":
            cell.source = cell.source.replace("GCS_PATTERN = 'gs://our-flowers/tfrec-192/*.tfrec'",
                                              "GCS_PATTERN = os.environ.get('GCS_PATTERN', 'gs://our-flowers/tfrec-192/*.tfrec')")
            cell.source = cell.source.replace("IMAGE_SIZE = [192, 192]", "IMAGE_SIZE = [int(os.environ.get('IMAGE_SIZE', '192'))] * 2")
    nbformat.write(source, str(folder / "source.ipynb"))
    manifest_text = (folder / "assignment.toml").read_text().replace("epochs = 6", "epochs = 8").replace("batch_size = 32", "batch_size = 16")
    (folder / "assignment.toml").write_text(manifest_text)
    assert main(["check", str(folder)]) == 0
    said = capsys.readouterr().out
    reached = re.search(r"the solution reaches ([0-9.]+), the playground's starting code ([0-9.]+)", said)
    suggested = re.search(r"suggested: threshold = ([0-9.]+), bands = \[\[([0-9.]+), 0.5\]\]", said)
    assert reached and suggested, said
    solution, start, threshold, band = map(float, (*reached.groups(), *suggested.groups()))
    assert start < band < threshold < solution, said

    (folder / "assignment.toml").write_text(manifest_text.replace("threshold = 0.2", f"threshold = {threshold}\nbands = [[{band}, 0.5]]"))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for name, path in pair.items():
        (downloads / f"{name}.ipynb").write_bytes(path.read_bytes())
    assert main(["grade", str(folder), str(downloads), "--out", str(tmp_path / "out"), "--identify", "file", "--quiet"]) == 0
    results = {name: json.loads(open(os.path.join(attempt(tmp_path / "out", name), "result.json")).read()) for name in pair}
    assert (results["solution"]["score"], results["playground"]["score"]) == (100, 0), results
