"""The transfer-learning lab's own code: what "demo" means for its data and weights (the
flowers lab's synthetic flowers and texture-pretrained MobileNetV2), and the typical
mistakes the demo grades and the tests pin."""

from __future__ import annotations

from grader.config.scenarios import colab_cell, colab_notebook, edit, with_answer
from labs.flowers import demo_data, demo_weights  # noqa: F401 - what "demo" means for this lab


def fake_accuracy(playground, key, solution) -> bytes:
    """A model that cannot learn (learning rate 0) and a printout that claims it did."""
    source = solution.replace("optimizer='adam'", "optimizer=tf.keras.optimizers.Adam(learning_rate=0.0)")
    source += "\nprint('Epoch 10/10 - loss: 0.0100 - accuracy: 0.9990 - val_loss: 0.0100 - val_accuracy: 0.9990')"
    return with_answer(playground, key, source)


def syntax_error(playground, key, solution) -> bytes:
    return with_answer(playground, key, solution.replace("activation='softmax')", "activation='softmax'))"))


def colab_download(playground, key, solution) -> bytes:
    """Laid out like the codelab's own notebook downloaded from Colab: nbformat 4.0 with
    ids in metadata.id (the codelab's own ids, which the lab's cells know as aliases),
    colab metadata, outputs, older TF idioms, the solution heading."""
    answer = solution.replace("model = tf.keras.Sequential([", "### QUESTION 1.\nmodel = tf.keras.Sequential([", 1)

    stream = {"output_type": "stream", "name": "stdout", "text": "Tensorflow version 2.15.0\n"}
    image = {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo" + "A" * 4000, "text/plain": "<Figure>"}, "metadata": {}}
    return colab_notebook("keras_flowers_transfer_learning_solution.ipynb", [
        colab_cell("markdown", "## Imports", "89B27-TGiDNB"),
        colab_cell("code", "import os, math\nimport numpy as np\nimport tensorflow as tf\nprint('Tensorflow version ' + tf.__version__)\nAUTO = tf.data.experimental.AUTOTUNE", "9u3d4Z7uQsmp", [stream]),
        colab_cell("markdown", "## Configuration", "w9S3uKC_iXY5"),
        colab_cell("code", "GCS_PATTERN = 'gs://flowers-public/tfrecords-jpeg-192x192-2/*.tfrec'\nIMAGE_SIZE = [192, 192]\nBATCH_SIZE = 64", "M3G-2aUBQJ-H"),
        colab_cell("code", "display_9_images_from_dataset(load_dataset(training_filenames))", "xb-b4PRz-V6O", [image]),
        colab_cell("markdown", "## Model [WORK WAS REQUIRED HERE]\nUse the pretrained MobileNetV2.", "ALtRUlxhw8Vt"),
        colab_cell("code", answer, "XLJNVGwHUDy1", [stream]),
        colab_cell("markdown", "## Training", "dMfenMQcxAAb"),
        colab_cell("code", "history = model.fit(training_dataset, steps_per_epoch=steps_per_epoch, epochs=10,\n                    validation_data=validation_dataset, validation_steps=validation_steps)", "M-ID7vP5mIKs", [stream]),
    ])


# file name -> (factory, what it shows); the solution, the playground and a file that is no
# notebook come from grader/config/scenarios.py
SCENARIOS = {
    "unfrozen_base.ipynb": (edit("pretrained_model.trainable = False", "pretrained_model.trainable = True"), "the base left trainable"),
    "global_pooling.ipynb": (edit("Flatten()", "GlobalAveragePooling2D()"), "GlobalAveragePooling2D instead of Flatten"),
    "categorical_loss.ipynb": (edit("'sparse_categorical_crossentropy'", "'categorical_crossentropy'"), "categorical_crossentropy instead of the sparse loss"),
    "no_softmax.ipynb": (edit("Dense(5, activation='softmax')", "Dense(5)"), "a head without softmax"),
    "fake_accuracy.ipynb": (fake_accuracy, "prints a fake val_accuracy; learning rate 0"),
    "syntax_error.ipynb": (syntax_error, "a syntax error in the model cell"),
    "colab_download.ipynb": (colab_download, "the codelab's own Colab layout"),
}




# --- the population: answers as students write them, with a teacher's verdict ----------
# (grader calibrate and tests/test_variants.py grade them; the verdicts come from the lab's
# text, ../shared/CODELAB.md, not from what the grader did when they were written down)

from grader.config.population import Answer  # noqa: E402

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
    Answer("functional_flatten", """from tensorflow import keras

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
    Answer("functional_gap_import_keras", """import keras

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
    Answer("per_layer_freezing", model_of(
        "pretrained_model", FLATTEN, SOFTMAX5,
        before=PRETRAINED + "for layer in pretrained_model.layers:\n    layer.trainable = False\n",
    )),
    # Keras reads `trainable` when the model is compiled, not when it is built
    Answer("frozen_after_building", model_of(
        "pretrained_model", FLATTEN, SOFTMAX5,
        before=PRETRAINED, after="pretrained_model.trainable = False\n" + COMPILE,
    )),
    Answer("activation_layer", model_of("pretrained_model", FLATTEN, "tf.keras.layers.Dense(5)", "tf.keras.layers.Activation('softmax')")),
    Answer("softmax_layer", model_of("pretrained_model", GAP, "tf.keras.layers.Dense(5)", "tf.keras.layers.Softmax()")),
    Answer("tf_nn_softmax", model_of("pretrained_model", FLATTEN, "tf.keras.layers.Dense(5, activation=tf.nn.softmax)")),
    Answer("tf_nn_relu_hidden", model_of(
        "pretrained_model", GAP, "tf.keras.layers.Dense(64, activation=tf.nn.relu)", "tf.keras.layers.Dense(5, activation=tf.nn.softmax)",
    )),
    # the lab's third step: "Use 'relu' activation on all dense layers but the last one"
    Answer("hidden_relu", model_of("pretrained_model", FLATTEN, "tf.keras.layers.Dense(64, activation='relu')", SOFTMAX5)),
    Answer("dropout_head", model_of("pretrained_model", GAP, "tf.keras.layers.Dropout(0.2)", SOFTMAX5)),
    Answer("placeholders_left", FROZEN + """
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
    Answer("comments_and_blank_lines", """# the pretrained model, without its top, frozen
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
    Answer("from_logits_on_linear_output", compiled_with(
        head="tf.keras.layers.Dense(5)", loss="tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)",
    )),
    Answer("model_add", FROZEN + """
model = tf.keras.Sequential()
model.add(pretrained_model)
model.add(tf.keras.layers.Flatten())
model.add(tf.keras.layers.Dense(5, activation='softmax'))
""" + COMPILE),
    Answer("layers_imported_by_name", """from tensorflow.keras.models import Sequential
from tensorflow.keras.layers import Dense, Flatten

""" + FROZEN + """
model = Sequential([
    pretrained_model,
    Flatten(),
    Dense(5, activation='softmax')
])
""" + COMPILE),
    Answer("import_keras_sequential", """import keras

""" + FROZEN + """
model = keras.Sequential([
    pretrained_model,
    keras.layers.GlobalAveragePooling2D(),
    keras.layers.Dense(5, activation='softmax'),
])
""" + COMPILE),
    Answer("optimizer_object", compiled_with(optimizer="tf.keras.optimizers.Adam(learning_rate=1e-3)")),
    Answer("loss_object", compiled_with(loss="tf.keras.losses.SparseCategoricalCrossentropy()")),
    Answer("loss_function", compiled_with(loss="tf.keras.losses.sparse_categorical_crossentropy")),
    Answer("metrics_acc", compiled_with(metrics="['acc']")),
    Answer("metrics_object", compiled_with(metrics="[tf.keras.metrics.SparseCategoricalAccuracy()]")),
    Answer("nested_augmentation", FROZEN + """
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
    Answer("compile_in_added_cell", model_of("pretrained_model", FLATTEN, SOFTMAX5, after="\nmodel.summary()\n"), below=(COMPILE.strip(),)),
    Answer(
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

CORRECT += [
    # batch normalisation in the head, as dropout is: a teacher accepts both
    Answer("batch_norm_head", model_of("pretrained_model", GAP, "tf.keras.layers.BatchNormalization()", SOFTMAX5)),
    Answer("batch_norm_then_dropout", model_of("pretrained_model", FLATTEN, "tf.keras.layers.BatchNormalization()",
                                               "tf.keras.layers.Dropout(0.3)", SOFTMAX5)),
    # the base's own pooling: its output is already one vector per image (None, 1280)
    Answer("base_pooling_avg", model_of("pretrained_model", SOFTMAX5, before=FROZEN.replace("include_top=False)", "include_top=False, pooling='avg')"))),
    Answer("base_pooling_max_hidden_dense", model_of(
        "pretrained_model", "tf.keras.layers.Dense(32, activation='relu')", SOFTMAX5,
        before=FROZEN.replace("include_top=False)", "include_top=False, pooling='max')"))),
    Answer("global_max_pooling", model_of("pretrained_model", "tf.keras.layers.GlobalMaxPooling2D()", SOFTMAX5)),
    Answer("regularized_hidden_dense", model_of(
        "pretrained_model", GAP, "tf.keras.layers.Dense(64, activation='relu', kernel_regularizer=tf.keras.regularizers.l2(1e-4))", SOFTMAX5)),
]

WRONG = [
    # (the freezing line deleted is the scenario unfrozen_base, graded in tests/test_grading.py:
    # its training goes through the whole base, minutes that one batch pays once)
    Answer(
        "weights_none",
        model_of("pretrained_model", FLATTEN, SOFTMAX5, before=FROZEN.replace("include_top=False)", "include_top=False, weights=None)")),
        fails=("structure|frozen",), may_fail=("accuracy",), says=("pretrained",),
    ),
    # the lab's part 1: a dense model without the pretrained base
    Answer(
        "dense_only_no_base",
        model_of("tf.keras.layers.Flatten(input_shape=[*IMAGE_SIZE, 3])", SOFTMAX5, before=""),
        fails=("structure", "frozen"), may_fail=("accuracy",), says=("MobileNetV2",),
    ),
    Answer("dense_10", model_of("pretrained_model", FLATTEN, "tf.keras.layers.Dense(10, activation='softmax')"), fails=("structure",), may_fail=("accuracy",), says=("class",)),
    Answer("no_flatten", model_of("pretrained_model", SOFTMAX5), fails=("structure",), may_fail=("accuracy",), says=("Flatten",)),
    Answer(
        "hidden_softmax_output_relu",
        model_of("pretrained_model", FLATTEN, "tf.keras.layers.Dense(64, activation='softmax')", "tf.keras.layers.Dense(5, activation='relu')"),
        fails=("structure",), may_fail=("accuracy",), says=("relu", "64"),
    ),
    Answer("no_softmax_no_from_logits", model_of("pretrained_model", FLATTEN, "tf.keras.layers.Dense(5)"), fails=("structure",), may_fail=("accuracy",), says=("softmax",)),
    Answer(
        "softmax_with_from_logits",
        compiled_with(loss="tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)"),
        fails=("compile",), may_fail=("accuracy",), says=("from_logits",),
    ),
    # with this lab's class-index labels the student's own fit fails
    Answer("categorical_loss_on_class_indices", compiled_with(loss="'categorical_crossentropy'"), fails=("compile",), may_fail=("accuracy",), says=("one-hot",)),
    Answer("binary_crossentropy", compiled_with(loss="'binary_crossentropy'"), fails=("compile",), may_fail=("accuracy",), says=("binary",)),
    Answer("mse_loss", compiled_with(loss="'mse'"), fails=("compile",), may_fail=("accuracy",), says=("mse",)),
    Answer("no_metrics", model_of("pretrained_model", FLATTEN, SOFTMAX5, after="\nmodel.compile(optimizer='adam', loss='sparse_categorical_crossentropy')\n"), fails=("compile",), says=("metric",)),
    # the layers written, the compile placeholder left as released: compile() has no loss
    Answer(
        "empty_compile",
        model_of("pretrained_model", FLATTEN, SOFTMAX5, after="\nmodel.compile(\n    # YOUR CODE HERE\n)\n\nmodel.summary()\n"),
        fails=("compile", "accuracy"), says=("loss",),
    ),
    Answer("no_compile", model_of("pretrained_model", FLATTEN, SOFTMAX5, after="\nmodel.summary()\n"), fails=("compile", "accuracy"), says=("compile",)),
    # a hand-made global average pooling: code the grader will not run in its own process
    Answer(
        "lambda_pooling",
        model_of("pretrained_model", "tf.keras.layers.Lambda(lambda x: tf.reduce_mean(x, axis=[1, 2]))", SOFTMAX5),
        fails=("structure",), may_fail=("frozen", "compile", "accuracy"), says=("Lambda",),
    ),
    Answer("untouched_playground", "", fails=CHECKS, untouched=True),
]

WRONG += [
    # Keras 3: compile's third positional argument is loss_weights, so ['accuracy'] lands there and the student's own fit raises
    Answer("positional_compile", model_of("pretrained_model", FLATTEN, SOFTMAX5,
                                          after="\nmodel.compile('adam', 'sparse_categorical_crossentropy', ['accuracy'])\n"),
           fails=("compile", "accuracy"), says=("loss_weights", "metrics=['accuracy']")),
    # a comparison where an assignment was meant: the base stays trainable
    Answer("trainable_compared", model_of("pretrained_model", FLATTEN, SOFTMAX5, before=PRETRAINED + "pretrained_model.trainable == False\n"),
           fails=("frozen",), may_fail=("accuracy",), says=("compares", "pretrained_model.trainable = False")),
    # the freezing line left commented out (tried both ways, the wrong one kept)
    Answer("freeze_commented_out", model_of("pretrained_model", FLATTEN, SOFTMAX5, before=PRETRAINED + "# pretrained_model.trainable = False\n"),
           fails=("frozen",), may_fail=("accuracy",), says=("is a comment", "take out the #")),
]

POPULATION = CORRECT + WRONG
