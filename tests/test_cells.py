import pytest

from grader import cells
from grader.faults import ManifestError


def test_strip_solutions_keeps_indent_and_named_placeholder():
    source = "x = [\n    ### BEGIN SOLUTION  # YOUR LAYERS HERE\n    a,\n    b\n    ### END SOLUTION\n]\n"
    assert cells.strip_solutions(source) == "x = [\n    # YOUR LAYERS HERE\n]"


def test_strip_solutions_default_placeholder():
    assert cells.strip_solutions("### BEGIN SOLUTION\ny = 1\n### END SOLUTION") == "# YOUR CODE HERE"


@pytest.mark.parametrize("source, fragment", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without BEGIN"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
])
def test_strip_solutions_rejects_broken_markers(source, fragment):
    with pytest.raises(ManifestError, match=fragment):
        cells.strip_solutions(source)


def test_cell_key_prefers_top_level_id_then_colab_metadata():
    assert cells.cell_key({"id": "abc", "metadata": {"id": "colab"}}) == "abc"
    assert cells.cell_key({"metadata": {"id": "XLJNVGwHUDy1"}}) == "XLJNVGwHUDy1"
    assert cells.cell_key({"metadata": {}}) is None


def test_work_heading_accepts_both_markers():
    assert cells.is_work_heading({"cell_type": "markdown", "source": "## Model [WORK REQUIRED]"})
    assert cells.is_work_heading({"cell_type": "markdown", "source": ["## Model ", "[WORK WAS REQUIRED HERE]"]})
    assert not cells.is_work_heading({"cell_type": "code", "source": "# [WORK REQUIRED]"})


def test_assigns_name_reads_code_and_survives_syntax_errors():
    assert cells.assigns_name("model = tf.keras.Sequential([])", "model")
    assert not cells.assigns_name("my_model = 3\nprint(model)", "model")
    assert cells.assigns_name("model = Sequential([\n  Flatten(,\n])", "model")
    # the convnet lab builds its model inside the strategy's scope: still the notebook's `model`
    assert cells.assigns_name("with strategy.scope():\n    model = tf.keras.Sequential([])\n    model.compile()", "model")
    assert cells.assigns_name("with strategy.scope():\n    model = Sequential([\n      Flatten(,\n])", "model")
    assert cells.assigns_name("try:\n    import x\nexcept ImportError:\n    model = None", "model")
    assert not cells.assigns_name("def build():\n    model = Sequential()\n    return model", "model")
    assert cells.assigns_name("with strategy.scope():\n    model, history = build(), None", "model")
    assert cells.assigns_name("if (model := build()) is None:\n    pass", "model")
    assert not cells.assigns_name("model: tf.keras.Model\nprint(1)", "model")
    assert not cells.assigns_name("class Lab:\n    model = None\nlambda model=1: model", "model")
    assert not cells.assigns_name("if model == None:\n    print(", "model")  # a comparison, in a cell that does not parse


def test_checksum_ignores_trailing_whitespace_only():
    assert cells.checksum("a = 1  \n\n") == cells.checksum("a = 1")
    assert cells.checksum("a = 1") != cells.checksum("a = 2")


def test_imported_modules_of_a_cell():
    source = "%matplotlib inline\nimport os, numpy as np\nimport tensorflow as tf\nfrom matplotlib import pyplot as plt\nfrom . import x\n!ls\ndef f():\n    import json\n"
    assert cells.imported_modules(source) == ["os", "numpy", "tensorflow", "matplotlib.pyplot", "matplotlib"]
    assert cells.imported_modules("import (") == []
