"""A tf.data answer's sample (grader/grading/sample.py): read as data, judged by pure functions;
and the runner's hashes agree with the reference pipeline's on the same files."""

import json

import pytest

from grader.faults import ManifestError
from grader.grading import sample
from reference.data import Picture

CLASSES = ("a", "b", "c")


def part(dtype, shape, value=(), sha="", kind="Tensor"):
    return sample.Part(dtype, shape, sha, tuple(value), kind)


IMAGE = part("uint8", (4, 4, 3), sha="img")
PICTURES = {"img": Picture(1, "b/one.jpg", (4, 4, 3)), "raw": Picture(1, "b/one.jpg", ())}


def test_read_refuses_what_the_runner_does_not_write():
    with pytest.raises(ValueError, match="not a list of elements"):
        sample.read({"sample": "x"})
    with pytest.raises(ValueError, match="shape is not a list"):
        sample.read({"sample": [[{"dtype": "uint8", "shape": "big"}]]})
    read = sample.read({"sample": [[{"dtype": "string", "shape": [], "value": ["b"], "sha256": "s"}]], "cardinality": True})
    assert read.cardinality == -2 and read.elements[0][0].text == "b"


def test_element_forms():
    name = part("string", (), ["b"])
    assert sample.element_problem((IMAGE, name), "name") == ""
    assert "yields file names" in sample.element_problem((part("string", (), ["/data/b/one.jpg"]),), "name")
    assert "without their labels" in sample.element_problem((IMAGE,), "name")
    assert "leave batching for later" in sample.element_problem((part("uint8", (8, 4, 4, 3)), part("string", (8,))), "name")
    index = sample.element_problem((IMAGE, part("int64", (), [1])), "name")
    assert "the lab's labels are class names" in index and "return the folder's name itself" in index
    split = sample.element_problem((IMAGE, part("string", (3,), ["data", "b", "one.jpg"])), "name")
    assert "a list of strings (the split path?)" in split
    assert "turn the class name into its index" in sample.element_problem((IMAGE, name), "index")
    assert str(part("int64", (), [2])) == "int64 2" and str(part("float32", (3,), [0, 1, 0])) == "float32 [3] [0, 1, 0]"


def test_image_forms():
    assert sample.image_form_problem(IMAGE, "uint8") == ""
    assert "not decoded): decode it with tf.io.decode_jpeg" in sample.image_form_problem(part("string", (), ["\xff\xd8"]), "uint8")
    assert "still the file's name" in sample.image_form_problem(part("string", (), ["b/one.jpg"]), "uint8")
    assert "the images are float32; the lab's are uint8" in sample.image_form_problem(part("float32", (4, 4, 3)), "uint8")
    assert "(grey)" in sample.image_mismatch(part("uint8", (4, 4, 1)), PICTURES)
    assert "without resizing or cropping" in sample.image_mismatch(part("uint8", (8, 8, 3)), PICTURES)


def test_labels_name_their_class_in_any_form():
    assert sample.class_of(part("string", (), ["b"]), CLASSES) == "b"
    assert sample.class_of(part("int64", (), [2]), CLASSES) == "c"
    assert sample.class_of(part("float32", (3,), [0.0, 1.0, 0.0]), CLASSES) == "b"
    assert sample.class_of(part("string", (), ["one.jpg"]), CLASSES) is None
    picture = PICTURES["img"]
    assert "the labels are file names ('one.jpg')" in sample.label_mismatch(part("string", (), ["one.jpg"]), None, picture, CLASSES)
    assert "whole paths" in sample.label_mismatch(part("string", (), ["/data/b/one.jpg"]), None, picture, CLASSES)
    assert "the class of another picture" in sample.label_mismatch(part("string", (), ["a"]), "a", picture, CLASSES)


def test_read_hints_say_the_fix():
    assert "assign your final dataset" in sample.read_hint("no variable named `dataset` after the answer cells ran")
    assert sample.read_hint("something else") == ""


def test_dataset_checks_are_declared_with_known_label_forms():
    from grader.config.manifest import CheckSpec
    from grader.grading import checks

    assert "labels='name'" in repr(checks.build(CheckSpec("e", "dataset_elements", "", 1, {"labels": "name"})))
    with pytest.raises(ManifestError, match="labels must be one of name, index, one_hot"):
        checks.build(CheckSpec("e", "dataset_elements", "", 1, {"labels": "names"}))


def test_the_runners_sample_is_the_reference_pipelines_pictures(tmp_path):
    """What the sandbox exports of the lab's pipeline is known, picture by picture, to the
    reference pipeline on the same demo files (run here in process, without a sandbox)."""
    import tensorflow as tf

    from grader.sandbox import inside
    from labs.flowers import CLASSES as FLOWERS, demo_data
    from reference import data

    pattern = demo_data("folders")
    dataset = data.split_files(pattern, "folders", 96, FLOWERS, 0.19)

    def decode(filename):
        return tf.io.decode_jpeg(tf.io.read_file(filename)), tf.strings.split(filename, sep="/")[-2]

    answer = tf.data.Dataset.list_files(pattern, seed=1).map(decode)
    path = tmp_path / "export.json"
    with open(path, "wb") as handle:
        inside.export_dataset(answer, "dataset", {"export.json": handle.fileno()}, 6, {})
    found = sample.read(json.loads(path.read_text()))
    pictures = data.decoded_pictures(dataset)
    assert len(found.elements) == 6
    for image, label in found.elements:
        picture = pictures[image.sha256]
        assert FLOWERS[picture.label] == label.text == picture.source.split("/")[0]


# --- another decoder, a changed picture, a swapped pair, the dataset's size ---------------

THUMB = tuple(float(v % 200) for v in range(48))  # a 4x4 picture's thumbnail, 3 channels (the grid's size does not matter here)
DATA = {"img": Picture(1, "b/one.jpg", (4, 4, 3), THUMB), "other": Picture(2, "c/two.jpg", (4, 4, 3), tuple(v + 90 for v in THUMB))}


def thumbed(dtype, shape, thumb, sha="nothing known"):
    return sample.Part(dtype, shape, sha, (), "Tensor", tuple(thumb))


def test_a_picture_another_decoder_gave_is_the_same_picture_and_a_changed_one_is_only_like_it():
    assert sample.picture_of(thumbed("uint8", (4, 4, 3), THUMB, sha="img"), DATA) is DATA["img"]  # the same tensor
    near = thumbed("uint8", (4, 4, 3), [v + (1.5 if n % 2 else -2.0) for n, v in enumerate(THUMB)])
    assert sample.picture_of(near, DATA) is DATA["img"]  # a level or two apart: another JPEG decoder
    far = thumbed("uint8", (4, 4, 3), [v + 9 for v in THUMB])
    assert sample.picture_of(far, DATA) is None and sample.resembles(far, DATA) is DATA["img"]  # changed (brighter), still that photo
    resized = thumbed("uint8", (8, 8, 3), THUMB)
    assert sample.picture_of(resized, DATA) is None and sample.resembles(resized, DATA) is DATA["img"]
    assert "is b/one.jpg, which is 4x4: decode each file as it is, without resizing" in sample.image_mismatch(resized, DATA)
    floats = thumbed("float32", (4, 4, 3), [v / 255 for v in THUMB])
    assert sample.picture_of(floats, DATA) is None and sample.resembles(floats, DATA) is DATA["img"]  # in [0, 1], known all the same
    grey = thumbed("uint8", (4, 4, 1), [0.299 * r + 0.587 * g + 0.114 * b for r, g, b in zip(THUMB[0::3], THUMB[1::3], THUMB[2::3])])
    assert sample.resembles(grey, DATA) is DATA["img"]
    assert sample.resembles(thumbed("uint8", (4, 4, 3), [255.0] * 48), DATA) is None  # no photo of the data


def test_a_pair_written_label_first_is_read_the_right_way_round_and_said_to_be_swapped():
    label = part("string", (), ["b"])
    assert sample.pair((IMAGE, label)) == (IMAGE, label, False)
    assert sample.pair((label, IMAGE)) == (IMAGE, label, True)
    assert sample.pair((part("string", (), ["b/one.jpg"]), label)) == (part("string", (), ["b/one.jpg"]), label, False)  # not a picture
    assert sample.pair((IMAGE,)) is None
    assert "picture first: return image, label" in sample.element_problem((label, IMAGE), "name")


def test_the_size_of_the_dataset_is_its_cardinality_else_what_was_counted():
    read = lambda **facts: sample.read({"sample": [], **facts})  # noqa: E731
    assert read(cardinality=240).size == 240 and read(cardinality=-1).size == -1
    assert read(cardinality=-2, counted=9).size == 9 and read(cardinality=-2).size is None
    assert read(cardinality=-2, counted=True).size is None  # what the runner does not write is not believed
    from grader.grading.checks import _coverage_problem

    assert _coverage_problem(read(cardinality=240), 240) == ""
    assert "yields 9 pictures, but the data has 240 files: keep every file" in _coverage_problem(read(cardinality=9), 240)
    assert "never ends" in _coverage_problem(read(cardinality=-1), 240)
    assert "yields more than 240 elements" in _coverage_problem(read(cardinality=-2, counted=241), 240)
    assert "yields 480 elements" in _coverage_problem(read(cardinality=480), 240)
    assert _coverage_problem(read(cardinality=-2), 240) == ""  # not known (counting failed): said by the other checks
