"""A tf.data answer's sample (grader/sample.py): read as data, judged by pure functions;
and the runner's hashes agree with the reference pipeline's on the same files."""

import json

import pytest

from grader import sample
from grader.faults import ManifestError
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
    from grader import checks
    from grader.manifest import CheckSpec

    assert "labels='name'" in repr(checks.build(CheckSpec("e", "dataset_elements", "", 1, {"labels": "name"})))
    with pytest.raises(ManifestError, match="labels must be one of name, index, one_hot"):
        checks.build(CheckSpec("e", "dataset_elements", "", 1, {"labels": "names"}))


def test_the_runners_sample_is_the_reference_pipelines_pictures(tmp_path):
    """What the sandbox exports of the lab's pipeline is known, picture by picture, to the
    reference pipeline on the same demo files (run here in process, without a sandbox)."""
    import tensorflow as tf

    from grader import sandbox_runner
    from labs.flowers import CLASSES as FLOWERS, demo_data
    from reference import data

    pattern = demo_data("folders")
    dataset = data.split_files(pattern, "folders", 96, FLOWERS, 0.19)

    def decode(filename):
        return tf.io.decode_jpeg(tf.io.read_file(filename)), tf.strings.split(filename, sep="/")[-2]

    answer = tf.data.Dataset.list_files(pattern, seed=1).map(decode)
    sandbox_runner.export_dataset(answer, "dataset", str(tmp_path), 6)
    found = sample.read(json.loads((tmp_path / "export.json").read_text()))
    pictures = data.decoded_pictures(dataset)
    assert len(found.elements) == 6
    for image, label in found.elements:
        picture = pictures[image.sha256]
        assert FLOWERS[picture.label] == label.text == picture.source.split("/")[0]
