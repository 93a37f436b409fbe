"""Answers written the ways students write them, each with the verdict a teacher of the lab
would give: a correct answer gets full marks, a wrong one fails the check that names its
mistake and passes the others. Graded in one batch, with real training on the demo data.

The verdicts come from the lab's text (docs: shared CODELAB.md), not from what the grader
did when they were written down.
"""

import dataclasses

import nbformat
import pytest

from grader import scenarios
from conftest import grade_all

pytestmark = pytest.mark.slow

CHECKS = ("runs", "structure", "frozen", "compile", "accuracy")

PRETRAINED = "pretrained_model = tf.keras.applications.MobileNetV2(input_shape=[*IMAGE_SIZE, 3], include_top=False)\n"
FROZEN = PRETRAINED + "pretrained_model.trainable = False\n"
COMPILE = """
model.compile(
    optimizer='adam',
    loss='sparse_categorical_crossentropy',
    metrics=['accuracy']
)

model.summary()
"""


@dataclasses.dataclass(frozen=True)
class Variant:
    """One student's answer and the teacher's verdict on it.

    `fails` empty means full marks. Otherwise each entry names a check that must not pass,
    or alternatives ("structure|frozen") of which at least one must not pass; every check
    not named there or in `may_fail` must pass. `may_fail` holds checks that a teacher
    could defend either way, as consequences of the mistake (accuracy after a broken
    compile). The message of the first entry's failing check contains each of `says`.
    """

    name: str
    answer: str  # the answer cell's source
    fails: tuple[str, ...] = ()
    may_fail: tuple[str, ...] = ()
    says: tuple[str, ...] = ()
    above: tuple[str, ...] = ()  # code cells the student inserted just above the answer cell
    below: tuple[str, ...] = ()  # ... and just below it
    untouched: bool = False  # the playground as released


def model_of(*layers: str, before: str = FROZEN, after: str = COMPILE) -> str:
    """An answer cell that builds `tf.keras.Sequential([...])` from the layers' sources."""
    listed = "".join(f"    {layer},\n" for layer in layers)
    return f"{before}\nmodel = tf.keras.Sequential([\n{listed}])\n{after}"


def compiled_with(optimizer="'adam'", loss="'sparse_categorical_crossentropy'", metrics="['accuracy']", head="tf.keras.layers.Dense(5, activation='softmax')") -> str:
    return model_of(
        "pretrained_model",
        "tf.keras.layers.Flatten()",
        head,
        after=f"\nmodel.compile(optimizer={optimizer}, loss={loss}, metrics={metrics})\n\nmodel.summary()\n",
    )


GAP = "tf.keras.layers.GlobalAveragePooling2D()"
FLATTEN = "tf.keras.layers.Flatten()"
SOFTMAX5 = "tf.keras.layers.Dense(5, activation='softmax')"

CORRECT = [
    Variant("functional_flatten", """from tensorflow import keras

pretrained_model = tf.keras.applications.MobileNetV2(input_shape=[*IMAGE_SIZE, 3], include_top=False)
pretrained_model.trainable = False

inputs = keras.Input(shape=[*IMAGE_SIZE, 3])
x = pretrained_model(inputs)
x = keras.layers.Flatten()(x)
outputs = keras.layers.Dense(5, activation='softmax')(x)
model = keras.Model(inputs, outputs)

model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
model.summary()
"""),
    # as in the Keras transfer-learning guide: the base called with training=False
    Variant("functional_gap_import_keras", """import keras

pretrained_model = tf.keras.applications.MobileNetV2(input_shape=[*IMAGE_SIZE, 3], include_top=False)
pretrained_model.trainable = False

inputs = keras.Input(shape=(IMAGE_SIZE[0], IMAGE_SIZE[1], 3))
x = pretrained_model(inputs, training=False)
x = keras.layers.GlobalAveragePooling2D()(x)
outputs = keras.layers.Dense(5, activation='softmax')(x)
model = keras.Model(inputs=inputs, outputs=outputs)

model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
model.summary()
"""),
    Variant("per_layer_freezing", model_of(
        "pretrained_model", FLATTEN, SOFTMAX5,
        before=PRETRAINED + "for layer in pretrained_model.layers:\n    layer.trainable = False\n",
    )),
    # Keras reads `trainable` when the model is compiled, not when it is built
    Variant("frozen_after_building", model_of(
        "pretrained_model", FLATTEN, SOFTMAX5,
        before=PRETRAINED, after="pretrained_model.trainable = False\n" + COMPILE,
    )),
    Variant("activation_layer", model_of("pretrained_model", FLATTEN, "tf.keras.layers.Dense(5)", "tf.keras.layers.Activation('softmax')")),
    Variant("softmax_layer", model_of("pretrained_model", GAP, "tf.keras.layers.Dense(5)", "tf.keras.layers.Softmax()")),
    Variant("tf_nn_softmax", model_of("pretrained_model", FLATTEN, "tf.keras.layers.Dense(5, activation=tf.nn.softmax)")),
    Variant("tf_nn_relu_hidden", model_of(
        "pretrained_model", GAP, "tf.keras.layers.Dense(64, activation=tf.nn.relu)", "tf.keras.layers.Dense(5, activation=tf.nn.softmax)",
    )),
    # the lab's third step: "Use 'relu' activation on all dense layers but the last one"
    Variant("hidden_relu", model_of("pretrained_model", FLATTEN, "tf.keras.layers.Dense(64, activation='relu')", SOFTMAX5)),
    Variant("dropout_head", model_of("pretrained_model", GAP, "tf.keras.layers.Dropout(0.2)", SOFTMAX5)),
    Variant("placeholders_left", FROZEN + """
model = tf.keras.Sequential([
    # YOUR LAYERS HERE
    pretrained_model,
    tf.keras.layers.Flatten(),
    tf.keras.layers.Dense(5, activation='softmax')
])

model.compile(
    # YOUR CODE HERE
    optimizer='adam',
    loss='sparse_categorical_crossentropy',
    metrics=['accuracy']
)

model.summary()
"""),
    Variant("comments_and_blank_lines", """# the pretrained model, without its top, frozen
pretrained_model = tf.keras.applications.MobileNetV2(input_shape=[*IMAGE_SIZE, 3], include_top=False)
pretrained_model.trainable = False  # do not retrain the convolutional layers


model = tf.keras.Sequential([

    pretrained_model,                # features
    # tf.keras.layers.Dense(10),    (first try)
    tf.keras.layers.Flatten(),

    tf.keras.layers.Dense(5, activation='softmax')  # one output per class
])

model.compile(
    optimizer='adam',  # as in the lab
    loss='sparse_categorical_crossentropy',  # labels are class indices

    metrics=['accuracy']
)
# model.summary()
"""),
    Variant("from_logits_on_linear_output", compiled_with(
        head="tf.keras.layers.Dense(5)", loss="tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)",
    )),
    Variant("model_add", FROZEN + """
model = tf.keras.Sequential()
model.add(pretrained_model)
model.add(tf.keras.layers.Flatten())
model.add(tf.keras.layers.Dense(5, activation='softmax'))
""" + COMPILE),
    Variant("layers_imported_by_name", """from tensorflow.keras.models import Sequential
from tensorflow.keras.layers import Dense, Flatten

""" + FROZEN + """
model = Sequential([
    pretrained_model,
    Flatten(),
    Dense(5, activation='softmax')
])
""" + COMPILE),
    Variant("import_keras_sequential", """import keras

""" + FROZEN + """
model = keras.Sequential([
    pretrained_model,
    keras.layers.GlobalAveragePooling2D(),
    keras.layers.Dense(5, activation='softmax'),
])
""" + COMPILE),
    Variant("optimizer_object", compiled_with(optimizer="tf.keras.optimizers.Adam(learning_rate=1e-3)")),
    Variant("loss_object", compiled_with(loss="tf.keras.losses.SparseCategoricalCrossentropy()")),
    Variant("loss_function", compiled_with(loss="tf.keras.losses.sparse_categorical_crossentropy")),
    Variant("metrics_acc", compiled_with(metrics="['acc']")),
    Variant("metrics_object", compiled_with(metrics="[tf.keras.metrics.SparseCategoricalAccuracy()]")),
    Variant("nested_augmentation", FROZEN + """
data_augmentation = tf.keras.Sequential([
    tf.keras.layers.RandomFlip('horizontal'),
    tf.keras.layers.RandomRotation(0.1),
])

model = tf.keras.Sequential([
    data_augmentation,
    pretrained_model,
    tf.keras.layers.GlobalAveragePooling2D(),
    tf.keras.layers.Dense(5, activation='softmax')
])
""" + COMPILE),
    # the student moved the compile into a new cell below the answer
    Variant("compile_in_added_cell", model_of("pretrained_model", FLATTEN, SOFTMAX5, after="\nmodel.summary()\n"), below=(COMPILE.strip(),)),
    Variant(
        "helper_in_added_cell_above",
        FROZEN + "\nmodel = make_model(pretrained_model, len(CLASSES))\n" + COMPILE,
        above=("""def make_model(base, n_classes):
    return tf.keras.Sequential([
        base,
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(n_classes, activation='softmax'),
    ])""",),
    ),
]

WRONG = [
    # (the freezing line deleted is the scenario unfrozen_base, graded in tests/test_grading.py:
    # its training goes through the whole base, minutes that one batch pays once)
    Variant(
        "weights_none",
        model_of("pretrained_model", FLATTEN, SOFTMAX5, before=FROZEN.replace("include_top=False)", "include_top=False, weights=None)")),
        fails=("structure|frozen",), may_fail=("accuracy",), says=("pretrained",),
    ),
    # the lab's part 1: a dense model without the pretrained base
    Variant(
        "dense_only_no_base",
        model_of("tf.keras.layers.Flatten(input_shape=[*IMAGE_SIZE, 3])", SOFTMAX5, before=""),
        fails=("structure", "frozen"), may_fail=("accuracy",), says=("MobileNetV2",),
    ),
    Variant("dense_10", model_of("pretrained_model", FLATTEN, "tf.keras.layers.Dense(10, activation='softmax')"), fails=("structure",), may_fail=("accuracy",), says=("class",)),
    Variant("no_flatten", model_of("pretrained_model", SOFTMAX5), fails=("structure",), may_fail=("accuracy",), says=("Flatten",)),
    Variant(
        "hidden_softmax_output_relu",
        model_of("pretrained_model", FLATTEN, "tf.keras.layers.Dense(64, activation='softmax')", "tf.keras.layers.Dense(5, activation='relu')"),
        fails=("structure",), may_fail=("accuracy",), says=("relu", "64"),
    ),
    Variant("no_softmax_no_from_logits", model_of("pretrained_model", FLATTEN, "tf.keras.layers.Dense(5)"), fails=("structure",), may_fail=("accuracy",), says=("softmax",)),
    Variant(
        "softmax_with_from_logits",
        compiled_with(loss="tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)"),
        fails=("compile",), may_fail=("accuracy",), says=("from_logits",),
    ),
    # with this lab's class-index labels the student's own fit fails
    Variant("categorical_loss_on_class_indices", compiled_with(loss="'categorical_crossentropy'"), fails=("compile",), may_fail=("accuracy",), says=("one-hot",)),
    Variant("binary_crossentropy", compiled_with(loss="'binary_crossentropy'"), fails=("compile",), may_fail=("accuracy",), says=("binary",)),
    Variant("mse_loss", compiled_with(loss="'mse'"), fails=("compile",), may_fail=("accuracy",), says=("mse",)),
    Variant("no_metrics", model_of("pretrained_model", FLATTEN, SOFTMAX5, after="\nmodel.compile(optimizer='adam', loss='sparse_categorical_crossentropy')\n"), fails=("compile",), says=("metric",)),
    # the layers written, the compile placeholder left as released: compile() has no loss
    Variant(
        "empty_compile",
        model_of("pretrained_model", FLATTEN, SOFTMAX5, after="\nmodel.compile(\n    # YOUR CODE HERE\n)\n\nmodel.summary()\n"),
        fails=("compile", "accuracy"), says=("loss",),
    ),
    Variant("no_compile", model_of("pretrained_model", FLATTEN, SOFTMAX5, after="\nmodel.summary()\n"), fails=("compile", "accuracy"), says=("compile",)),
    # a hand-made global average pooling: code the grader will not run in its own process
    Variant(
        "lambda_pooling",
        model_of("pretrained_model", "tf.keras.layers.Lambda(lambda x: tf.reduce_mean(x, axis=[1, 2]))", SOFTMAX5),
        fails=("structure",), may_fail=("frozen", "compile", "accuracy"), says=("Lambda",),
    ),
    Variant("untouched_playground", "", fails=CHECKS, untouched=True),
]

VARIANTS = CORRECT + WRONG


def notebook_of(variant: Variant, playground) -> bytes:
    """The playground with the variant's answer in the answer cell, and its added cells
    inserted around it as Colab's "+ Code" would."""
    if variant.untouched:
        return nbformat.writes(playground).encode()
    notebook = nbformat.reads(scenarios.with_answer(playground, "model", variant.answer).decode(), 4)
    at = next(i for i, cell in enumerate(notebook.cells) if cell.get("id") == "model")
    added = lambda sources, where: [nbformat.v4.new_code_cell(s, id=f"{variant.name[:40]}-{where}{n}") for n, s in enumerate(sources)]
    notebook.cells[at + 1 : at + 1] = added(variant.below, "below")
    notebook.cells[at:at] = added(variant.above, "above")
    return nbformat.writes(notebook).encode()


@pytest.fixture(scope="module")
def variant_results(manifest, released, tmp_path_factory):
    """Every variant graded once, in one batch (fast path, a fresh feature cache)."""
    _, playground = released
    folder = tmp_path_factory.mktemp("variants")
    for variant in VARIANTS:
        (folder / f"{variant.name}.ipynb").write_bytes(notebook_of(variant, playground))
    out, cache = tmp_path_factory.mktemp("variants-graded"), tmp_path_factory.mktemp("variants-cache")
    return grade_all(manifest, folder, out, cache_dir=str(cache), jobs=2)[0]


def test_the_table_names_the_manifests_checks(manifest):
    assert tuple(spec.id for spec in manifest.checks) == CHECKS
    for variant in VARIANTS:
        named = [c for entry in variant.fails for c in entry.split("|")] + list(variant.may_fail)
        assert set(named) <= set(CHECKS), variant.name
    assert len({v.name for v in VARIANTS}) == len(VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_verdict(variant_results, variant):
    result = variant_results[variant.name]
    assert result.status == "graded", f"{result.reason} {result.fix}"
    checks = {c.id: c for c in result.checks}
    seen = "\n".join(f"  {c.id}: {c.status} {c.score:g}/{c.max_score:g} {c.message}" for c in result.checks)
    if not variant.fails:
        assert result.score == result.max_score and all(c.status == "passed" for c in result.checks), f"expected full marks:\n{seen}"
        return
    for entry in variant.fails:
        assert any(checks[c].status != "passed" for c in entry.split("|")), f"expected {entry} to fail:\n{seen}"
    named = {c for entry in variant.fails for c in entry.split("|")} | set(variant.may_fail)
    wrongly_failed = [c for c in checks if c not in named and checks[c].status != "passed"]
    assert not wrongly_failed, f"expected {', '.join(wrongly_failed)} to pass:\n{seen}"
    failing = [checks[c] for c in variant.fails[0].split("|") if checks[c].status != "passed"]
    for fragment in variant.says:
        assert any(fragment.lower() in c.message.lower() for c in failing), f"expected {fragment!r} in the message:\n{seen}"
