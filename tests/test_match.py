import json
import re

import nbformat

from grader.config import match, notebook, scenarios
from conftest import ASSIGNMENT, lab_scenarios


def manifest_of():
    from grader.config import manifest

    return manifest.load(ASSIGNMENT)


def load(content: bytes):
    return notebook.from_json(json.loads(content))


def test_by_ids(released):
    record, playground = released
    files = scenarios.make(record, playground, ["solution.ipynb"])
    found = match.match(load(files["solution.ipynb"]), record)
    assert found.how == "ids" and "Dense(5, activation='softmax')" in found.answers["model"]
    assert found.changed_locked == ()


def test_colab_layout_by_the_codelabs_ids_else_by_headings(released):
    record, playground = released
    files = scenarios.make(record, playground, ["colab_download.ipynb"], lab_scenarios(manifest_of()))
    found = match.match(load(files["colab_download.ipynb"]), record)
    assert found.how == "ids"  # the codelab's own ids are the lab cells' aliases
    assert "### QUESTION 1." in found.answers["model"] and found.skipped == () and found.added_above == ()
    nameless = json.loads(files["colab_download.ipynb"])
    for cell in nameless["cells"]:
        cell["metadata"].pop("id")
    found = match.match(notebook.from_json(nameless), record)
    assert found.how == "headings" and "### QUESTION 1." in found.answers["model"]
    # without ids, the cells above the answer cannot be told from the codelab's own: not run, and said so
    # (the display cell is the lab's own, word for word: known by its content, it is no one's to skip)
    assert [cell.source.splitlines()[0] for cell in found.skipped] == ["import os, math", "GCS_PATTERN = 'gs://flowers-public/tfrecords-jpeg-192x192-2/*.tfrec'"]
    assert all("no ids the lab knows" in cell.reason for cell in found.skipped)


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

    from grader.config import manifest, release
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
    assert [c.key for c in run] == ["imports", "config", "display-utilities", "read-tfrecords", "look", "datasets", "model"]
    assert "IMAGE_SIZE = [1, 1]" not in run[1].source


def test_unreadable_files_say_why(tmp_path):
    import pytest

    cases = {
        "text.ipynb": (b"not json at all", "not a notebook (a notebook is JSON, and this is plain text)"),
        "cut.ipynb": (b'{"cells": [\n  {"cell_type": "code",', "the notebook's JSON is broken at line 2 (perhaps it was cut off"),
        "report.pdf.ipynb": (b"%PDF-1.7\n%\xe2\xe3", "the file is a PDF, not a notebook; submit the .ipynb file itself"),
        "page.ipynb": (b"  <!DOCTYPE html><html><body>", "the file is a web page (HTML: perhaps the notebook printed or saved as a page)"),
        "word.ipynb": (b"PK\x03\x04\x14\x00", "the file is a zip archive (or a Word or Excel file), not a notebook"),
        "latin1.ipynb": (b"{\"cells\": \"\xe9\"}", "not UTF-8"),
        "list.ipynb": (b"[1, 2]", "has no list of cells"),
        "deep.ipynb": (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    }
    for name, (content, fragment) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(notebook.Unreadable, match=re.escape(fragment)):
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
                                         ("model-heading", 0, "print('above the heading, below the lab cell before it')")])
    found = match.match(nb, record)
    section = found.sections["model"]
    # everything between the lab's cell before the answer and the lab's cell after it is the answer's,
    # a cell above the answer's heading included (it was left out once, and its helper with it)
    assert [(c.key, c.role) for c in section] == [("model+1", "added"), ("model+2", "added"), ("model", "answer"),
                                                  ("model+3", "added"), ("model+4", "added")]
    assert section[0].source.startswith("print('above the heading") and section[1].source.startswith("def helper")
    run = match.run_cells(record, found)
    assert [c.key for c in run] == ["imports", "config", "display-utilities", "read-tfrecords", "look", "datasets", "model+1", "model+2", "model", "model+3", "model+4"]
    assert found.added_above == () and found.skipped == ()


def test_cells_added_further_up_run_after_the_lab_cell_they_follow_and_never_rebind_the_labs_names(released):
    record, playground = released
    nb = with_cells(record, playground, [("imports", 0, "import seaborn  # above every cell of the lab's"),
                                         ("config", 1, "def show(x):\n    return x"),
                                         ("config", 1, "GCS_PATTERN = 'gs://my-own-bucket/*.tfrec'"),
                                         ("read-tfrecords", 1, "   \n")])
    found = match.match(nb, record)
    assert [(c.key, c.role) for c in found.added_above] == [("start+1", "above"), ("config+1", "above")]
    assert [c.key for c in match.run_cells(record, found)] == ["start+1", "imports", "config", "config+1", "display-utilities", "read-tfrecords", "look", "datasets", "model"]
    (skipped,) = found.skipped
    assert "GCS_PATTERN" in skipped.source and "it sets `GCS_PATTERN`, which the lab's own cells set" in skipped.reason
    assert found.student_cells == found.sections["model"]  # the cells further up are not the answer's


def test_a_notebook_with_the_codelabs_ids_is_matched_cell_by_cell_through_aliases(tmp_path):
    import copy
    import dataclasses

    from grader.config import release

    manifest = manifest_of()
    source = nbformat.read(manifest.notebook_path, as_version=4)
    for cell in source.cells:  # the lab's cells, each known by a second id
        if cell.cell_type == "code":
            cell.metadata["grader"] = {"aliases": [f"codelab-{cell.id}"]}
    (tmp_path / "source.ipynb").write_text(nbformat.writes(source))
    record, playground = release.build(dataclasses.replace(manifest, directory=str(tmp_path), notebook="source.ipynb"))
    assert record.known("codelab-config") == "config" and record.known("config") == "config" and record.known("nope") is None
    download = copy.deepcopy(playground)
    for cell in download.cells:
        if cell.cell_type == "code":
            cell.id = f"codelab-{cell.id}"  # as the codelab's own notebook names them
    download.cells.insert(3, nbformat.v4.new_code_cell("x = 1"))
    found = match.match(download, record)
    assert found.how == "ids" and list(found.sections) == ["model"]
    assert [c.key for c in found.added_above] == ["imports+1"]


def test_a_lab_cell_that_only_defines_helpers_below_the_answer_runs_before_it(released):
    import dataclasses

    from grader.config.release import ReleasedCell

    record, playground = released
    snippet = ReleasedCell("snippets", "locked", 'def decode(x):\n    """a helper"""\n    return x\nimport os', "c")
    plot = ReleasedCell("plot", "locked", "def show():\n    pass\nshow()", "d")
    solution = scenarios.make(record, playground, ["solution.ipynb"])["solution.ipynb"]
    record = dataclasses.replace(record, cells=record.cells + (snippet, plot))
    assert match.helpers_after(record) == ("snippets",)
    found = match.match(load(solution), record)
    assert [c.key for c in match.run_cells(record, found)] == ["imports", "config", "display-utilities", "read-tfrecords", "look", "datasets", "snippets", "model"]


def test_an_added_cell_in_a_colab_download_ends_at_the_next_heading(released):
    record, playground = released
    nb = load(scenarios.make(record, playground, ["colab_download.ipynb"], lab_scenarios(manifest_of()))["colab_download.ipynb"])
    at = next(i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("id") == "XLJNVGwHUDy1")
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("model.summary()"))
    section = match.match(nb, record).sections["model"]
    assert [c.role for c in section] == ["answer", "added"] and section[1].source == "model.summary()"


def test_a_notebook_saved_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.ipynb"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode())
    assert notebook.read_submission(str(path)).cells == []
