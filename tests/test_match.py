import json

import nbformat

from grader import match, notebook, scenarios


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
    files = scenarios.make(record, playground, ["colab_download.ipynb"])
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
    run = match.run_cells(record, found.answers)
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
