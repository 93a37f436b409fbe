import json

import nbformat

from grader import match, notebook, scenarios
from conftest import ASSIGNMENT, lab_scenarios


def manifest_of():
    from grader import manifest

    return manifest.load(ASSIGNMENT)


def load(content: bytes):
    return notebook.from_json(json.loads(content))


def test_by_ids(released):
    record, playground = released
    files = scenarios.make(record, playground, ["solution.ipynb"])
    found = match.match(load(files["solution.ipynb"]), record)
    assert found.how == "ids" and "Dense(5, activation='softmax')" in found.answers["model"]
    assert found.changed_locked == ()


def test_colab_layout_by_headings(released):
    record, playground = released
    files = scenarios.make(record, playground, ["colab_download.ipynb"], lab_scenarios(manifest_of()))
    found = match.match(load(files["colab_download.ipynb"]), record)
    assert found.how == "headings"
    assert "### QUESTION 1." in found.answers["model"]


def test_by_code_when_no_ids_or_headings(released):
    record, _ = released
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import tensorflow as tf"), nbformat.v4.new_code_cell("model = tf.keras.Sequential([])")])
    for cell in nb.cells:
        del cell["id"]
    found = match.match(nb, record)
    assert found.how == "code" and found.answers["model"] == "model = tf.keras.Sequential([])"


def test_by_code_finds_the_labs_own_answer_name():
    """A dataset lab's answer cell is the one that assigns `dataset`, not `model`."""
    import os

    from grader import manifest, release
    from conftest import ROOT

    record, _ = release.build(manifest.load(os.path.join(ROOT, "assignments", "keras_flowers_tfdata")))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import tensorflow as tf"),
                                         nbformat.v4.new_code_cell("dataset = tf.data.Dataset.list_files('*/*.jpg')")])
    for cell in nb.cells:
        del cell["id"]
    assert not match.match(nb, record).found
    found = match.match(nb, record, "dataset")
    assert found.how == "code" and found.answers == {record.answer_keys[0]: "dataset = tf.data.Dataset.list_files('*/*.jpg')"}


def test_nothing_found(released):
    record, _ = released
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("hello")])
    assert not match.match(nb, record).found


def test_changed_locked_cells_are_reported_and_reference_runs(released):
    record, playground = released
    nb = nbformat.reads(scenarios.make(record, playground, ["solution.ipynb"])["solution.ipynb"].decode(), 4)
    config = next(c for c in nb.cells if c.get("id") == "config")
    config.source = "IMAGE_SIZE = [1, 1]"
    found = match.match(nb, record)
    assert found.changed_locked == ("config",)
    run = match.run_cells(record, found)
    assert [c.key for c in run] == ["imports", "config", "read-tfrecords", "datasets", "model"]
    assert "IMAGE_SIZE = [1, 1]" not in run[1].source


def test_unreadable_files_say_why(tmp_path):
    import pytest

    cases = {
        "text.ipynb": (b"not json at all", "not a notebook (not JSON"),
        "latin1.ipynb": (b"{\"cells\": \"\xe9\"}", "not UTF-8"),
        "list.ipynb": (b"[1, 2]", "has no list of cells"),
        "deep.ipynb": (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    }
    for name, (content, fragment) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(notebook.Unreadable, match=fragment.replace("(", r"\(")):
            notebook.read_submission(str(path))


def with_cells(record, playground, inserts):
    """The solution notebook with code cells inserted at (index of a cell id, offset) positions."""
    nb = nbformat.reads(scenarios.make(record, playground, ["solution.ipynb"])["solution.ipynb"].decode(), 4)
    for anchor, offset, source in inserts:
        at = next(i for i, c in enumerate(nb.cells) if c.get("id") == anchor) + offset
        nb.cells.insert(at, nbformat.v4.new_code_cell(source))
    return nb


def test_cells_the_student_added_to_the_answer_run_with_it_in_order(released):
    record, playground = released
    nb = with_cells(record, playground, [("model", 0, "def helper():\n    return 1"), ("model", 1, "model.summary()"),
                                         ("train-heading", 1, "print('after the heading, before the next locked cell')"),
                                         ("model-heading", 0, "print('above the heading: not part of the answer')")])
    found = match.match(nb, record)
    section = found.sections["model"]
    assert [(c.key, c.role) for c in section] == [("model+1", "added"), ("model", "answer"), ("model+2", "added"), ("model+3", "added")]
    assert section[0].source.startswith("def helper") and section[3].source.startswith("print('after the heading")
    run = match.run_cells(record, found)
    assert [c.key for c in run] == ["imports", "config", "read-tfrecords", "datasets", "model+1", "model", "model+2", "model+3"]
    assert not any("above the heading" in c.source for c in run)


def test_an_added_cell_in_a_colab_download_ends_at_the_next_heading(released):
    record, playground = released
    nb = load(scenarios.make(record, playground, ["colab_download.ipynb"], lab_scenarios(manifest_of()))["colab_download.ipynb"])
    at = next(i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("id") == "XLJNVGwHUDy1")
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("model.summary()"))
    section = match.match(nb, record).sections["model"]
    assert [c.role for c in section] == ["answer", "added"] and section[1].source == "model.summary()"
