import pytest

from grader.config import cells
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


GIVEN = """model = Sequential([
    ### BEGIN GIVEN
    # Conv2D(8),   # the starting model
    #
    # # YOUR LAYERS HERE

    ### END GIVEN
    ### BEGIN SOLUTION
    Conv2D(16),
    Conv2D(32),
    ### END SOLUTION
    Dense(5),
    ### BEGIN GIVEN
    # # (end of the list)
    ### END GIVEN
])"""


def test_a_given_block_is_what_the_playground_shows_in_place_of_the_solution():
    assert cells.strip_solutions(GIVEN) == "model = Sequential([\n    Conv2D(8),   # the starting model\n    \n    # YOUR LAYERS HERE\n\n    Dense(5),\n    # (end of the list)\n])"
    assert cells.solution_code(GIVEN) == "model = Sequential([\n    Conv2D(16),\n    Conv2D(32),\n    Dense(5),\n])"


def test_given_block_writes_what_strip_solutions_reads_back():
    lines = ["  x = 1  ", "", "    # YOUR CODE HERE", "  # ###"]
    block = cells.given_block(lines)
    assert block[0] == "  ### BEGIN GIVEN" and block[-1] == "  ### END GIVEN"
    assert cells.strip_solutions("\n".join(block)) == "\n".join(lines) and cells.solution_code("\n".join(block)) == ""
    assert cells.given_block([], "    ") == ["    ### BEGIN GIVEN", "    ### END GIVEN"]  # the playground shows nothing there
    assert cells.strip_solutions("\n".join([*cells.given_block([], "    "), "    ### BEGIN SOLUTION", "    y = 2", "    ### END SOLUTION"])) == ""


@pytest.mark.parametrize("source, fragment", [
    ("### BEGIN GIVEN\n# x = 1", "never closed by END GIVEN"),
    ("### END GIVEN", "without BEGIN GIVEN"),
    ("### BEGIN GIVEN\nx = 1\n### END GIVEN", "commented out"),
    ("### BEGIN GIVEN\n# x\n### BEGIN SOLUTION\n### END SOLUTION\n### END GIVEN", "inside a GIVEN block"),
    ("### BEGIN SOLUTION\n### BEGIN GIVEN\n### END GIVEN\n### END SOLUTION", "just before the block"),
    ("### BEGIN GIVEN\n# x\n### END GIVEN\n### BEGIN SOLUTION  # YOUR CODE HERE\ny\n### END SOLUTION", "remove '# YOUR CODE HERE'"),
])
def test_broken_given_blocks_are_refused_with_the_fix(source, fragment):
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


def test_what_makes_or_compiles_the_model_outside_a_strategys_scope_is_found_by_line():
    inside = "with strategy.scope():\n    model = tf.keras.Sequential([])\n    model.compile(optimizer='adam')\n\nmodel.summary()\n"
    assert cells.outside_scope(inside, "model") == []
    assert cells.outside_scope("model = build()\nwith strategy.scope():\n    model.compile(loss='x')\n", "model") == [(1, "model = build()")]
    assert cells.outside_scope("with strategy.scope():\n    model = build()\nmodel.compile()\n", "model") == [(3, "model.compile()")]
    # a function that makes the model is judged where it is called, not where it is defined
    called = "def build():\n    model = tf.keras.Sequential([])\n    return model\n\nwith tpu_strategy.scope():\n    model = build()\n    model.compile()\n"
    assert cells.outside_scope(called, "model") == []
    nested = "if True:\n    with strategy.scope():\n        for _ in range(1):\n            model = 1\n"
    assert cells.outside_scope(nested, "model") == []
    assert cells.outside_scope("model = (", "model") == []  # does not parse: nothing said here (the run says it)


def test_the_names_a_cell_binds_and_whether_it_only_defines():
    assert cells.assigned_names("x = 1\nwith s.scope():\n    model = f()\ndef g():\n    y = 2\nimport tf\nfor i in r:\n    pass\n") == {"x", "model", "g", "i"}
    assert cells.defines_only("import os\ndef a():\n    '''doc'''\n    return 1\nclass B:\n    pass\n")
    assert not cells.defines_only("def a():\n    pass\na()\n") and not cells.defines_only("") and not cells.defines_only("x = (")


def test_a_comparison_where_an_assignment_was_meant_is_found():
    source = "pretrained_model = make()\npretrained_model.trainable == False\nok = layer.trainable == False\nif base.trainable is False:\n    pass\n"
    assert cells.compared_not_set(source, "trainable") == [(2, "pretrained_model.trainable == False")]
    assert cells.compared_not_set("pretrained_model.trainable is False", "trainable") == [(1, "pretrained_model.trainable is False")]


def test_a_freezing_line_left_as_a_comment_is_found():
    source = "base = make()\n  # base.trainable = False\n# base is frozen = no\n# note: trainable layers\nbase.trainable = True\n"
    assert cells.commented_out_assignments(source, "trainable") == [(2, "# base.trainable = False")]
    assert cells.commented_out_assignments("#", "trainable") == [] and cells.commented_out_assignments("# x = (", "trainable") == []
