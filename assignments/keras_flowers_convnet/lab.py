"""The convnet lab's own code: what "demo" means for its data (the flowers labs' synthetic
flowers), and the typical mistakes the demo grades and the tests pin."""

from __future__ import annotations

from grader.config.scenarios import colab_cell, colab_notebook, edit, with_answer
from labs import flowers


def demo_data(data_format: str) -> str:
    """What "demo" means for this lab's data: the flowers drawn at 64x64 (every model is
    trained in full, so the demo keeps its pictures small)."""
    return flowers.demo_data(data_format, size=64)


def dense_only(playground, key, solution) -> bytes:
    """Every convolution taken out: the picture flattened into one Dense layer."""
    start = solution.index("        tf.keras.layers.Conv2D(")
    end = solution.index("        tf.keras.layers.GlobalAveragePooling2D(),")
    return with_answer(playground, key, solution[:start] + "        tf.keras.layers.Flatten(),\n" + solution[end + len("        tf.keras.layers.GlobalAveragePooling2D(),\n"):])


def batch_norm_loop(playground, key, solution) -> bytes:
    """Built with model.add in a loop, a batch normalisation after every convolution: a
    correct answer whose running statistics the grader's short run must let settle."""
    return with_answer(playground, key, """with strategy.scope():
    model = tf.keras.Sequential()
    model.add(tf.keras.Input(shape=[*IMAGE_SIZE, 3]))
    for filters in [16, 24, 32, 48]:
        model.add(tf.keras.layers.Conv2D(kernel_size=3, filters=filters, padding='same', activation='relu'))
        model.add(tf.keras.layers.BatchNormalization())
        if filters != 48:  # no pooling after the last one
            model.add(tf.keras.layers.MaxPooling2D(pool_size=2))
    model.add(tf.keras.layers.GlobalAveragePooling2D())
    model.add(tf.keras.layers.Dense(5, activation='softmax'))

    model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])

model.summary()
""")


def colab_download(playground, key, solution) -> bytes:
    """Laid out like the codelab's own solution downloaded from Colab: nbformat 4.0 with ids
    in metadata.id only, Colab metadata, outputs, the codelab's own cells (a TPU asked for
    unconditionally, a bucket pattern), older Keras idioms (input_shape= on the first
    layer, no Input), the solution's heading, the codelab's own cell ids."""
    answer = (solution.replace("        tf.keras.Input(shape=[*IMAGE_SIZE, 3]),\n", "")
              .replace("filters=20, padding='same', activation='relu')", "filters=20, padding='same', activation='relu', input_shape=[*IMAGE_SIZE, 3])"))
    detection = ("try: # detect TPUs\n    tpu = tf.distribute.cluster_resolver.TPUClusterResolver()\n"
                 "    print('Running on TPU ', tpu.master())\nexcept ValueError:\n    tpu = None\n"
                 "if tpu:\n    tf.config.experimental_connect_to_cluster(tpu)\n    tf.tpu.experimental.initialize_tpu_system(tpu)\n"
                 "    strategy = tf.distribute.experimental.TPUStrategy(tpu)\nelse:\n    strategy = tf.distribute.get_strategy()\n"
                 "print('REPLICAS: ', strategy.num_replicas_in_sync)")
    printed = {"output_type": "stream", "name": "stdout", "text": "Running on TPU  grpc://10.0.0.2:8470\nREPLICAS:  8\n"}
    return colab_notebook("keras_flowers_convnet_tpu_solution.ipynb", [
        colab_cell("markdown", "## Imports", "89B27-TGiDNB"),
        colab_cell("code", "import os, math\nimport numpy as np\nimport tensorflow as tf\nprint('Tensorflow version ' + tf.__version__)\n"
                           "AUTO = tf.data.experimental.AUTOTUNE", "9u3d4Z7uQsmp"),
        colab_cell("markdown", "## TPU or GPU detection", "mPo10cahZXXQ"),
        colab_cell("code", detection, "FpvUOuC3j27n", [printed]),
        colab_cell("markdown", "## Configuration", "w9S3uKC_iXY5"),
        colab_cell("code", "GCS_PATTERN = 'gs://flowers-public/tfrecords-jpeg-192x192-2/*.tfrec'\nIMAGE_SIZE = [192, 192]\n"
                           "BATCH_SIZE = 16 * strategy.num_replicas_in_sync", "M3G-2aUBQJ-H"),
        colab_cell("markdown", "## Model [WORK WAS REQUIRED HERE]", "ALtRUlxhw8Vt"),
        colab_cell("code", answer, "XLJNVGwHUDy1"),
        colab_cell("markdown", "## Training", "dMfenMQcxAAb"),
        colab_cell("code", "history = model.fit(training_dataset, steps_per_epoch=steps_per_epoch, epochs=EPOCHS,\n"
                           "                    validation_data=validation_dataset, validation_steps=validation_steps)", "M-ID7vP5mIKs"),
    ])


# file name -> (factory, what it shows); the solution, the playground and a file that is no
# notebook come from grader/config/scenarios.py
SCENARIOS = {
    "batch_norm_loop.ipynb": (batch_norm_loop, "model.add in a loop, batch normalisation after every convolution"),
    "dense_only.ipynb": (dense_only, "no convolution at all: Flatten, then Dense(5, softmax)"),
    "flatten_head.ipynb": (edit("GlobalAveragePooling2D()", "Flatten()"), "Flatten where the lab asks for global pooling"),
    "sparse_loss.ipynb": (edit("'categorical_crossentropy'", "'sparse_categorical_crossentropy'"), "a sparse loss on one-hot labels"),
    "colab_download.ipynb": (colab_download, "the codelab's own Colab layout, TPU detection and all"),
    "no_softmax.ipynb": (edit("Dense(5, activation='softmax')", "Dense(5)"), "a head without softmax"),
}


# --- the population: answers as students write them, with a teacher's verdict ----------
# (grader calibrate and tests/test_convnet_lab.py grade them; docs/authoring.md shows how
# their accuracies lie against the threshold)

from grader.config.population import Answer  # noqa: E402

CONV = "tf.keras.layers.Conv2D(kernel_size={k}, filters={f}, padding='{p}', activation='relu'{s})"
POOL = "tf.keras.layers.MaxPooling2D(pool_size=2)"
GAP = "tf.keras.layers.GlobalAveragePooling2D()"
OUT = "tf.keras.layers.Dense(5, activation='softmax')"
COMPILE = "model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])"


def conv(filters: int, kernel: int = 3, padding: str = "same", strides: int = 1) -> str:
    return CONV.format(k=kernel, f=filters, p=padding, s=f", strides={strides}" if strides != 1 else "")


def scoped(*layers: str, compile_line: str = COMPILE, first: str = "tf.keras.Input(shape=[*IMAGE_SIZE, 3])") -> str:
    """An answer cell: a Sequential model of `layers` and its compile, inside strategy.scope()."""
    listed = "".join(f"        {layer},\n" for layer in (first, *layers) if layer)
    return f"with strategy.scope():\n    model = tf.keras.Sequential([\n{listed}    ])\n    {compile_line}\n\nmodel.summary()\n"


BLOCKS = [conv(16), POOL, conv(32), POOL, conv(64)]

POPULATION = [
    # --- correct: a stack of convolutions (the variants the lab's text allows), global pooling, softmax
    Answer("two_blocks", scoped(conv(20), POOL, conv(32), GAP, OUT)),
    Answer("three_blocks", scoped(*BLOCKS, GAP, OUT)),
    Answer("four_blocks", scoped(conv(16), POOL, conv(24), POOL, conv(32), POOL, conv(48), GAP, OUT)),
    Answer("codelab_like_with_1x1", scoped(conv(16), conv(30), POOL, conv(60), POOL, conv(90), POOL, conv(60, 1), GAP, OUT)),
    Answer("five_blocks", scoped(conv(16), POOL, conv(24), POOL, conv(32), POOL, conv(48), POOL, conv(64), GAP, OUT)),
    Answer("average_pooling", scoped(*(b.replace("MaxPooling2D", "AveragePooling2D") for b in BLOCKS), GAP, OUT)),
    Answer("valid_padding", scoped(*(b.replace("'same'", "'valid'") for b in BLOCKS), GAP, OUT)),
    Answer("dropout_between_blocks", scoped(conv(16), POOL, "tf.keras.layers.Dropout(0.2)", conv(32), POOL,
                                            "tf.keras.layers.Dropout(0.2)", conv(64), GAP, OUT)),
    Answer("batch_norm", scoped(conv(16), "tf.keras.layers.BatchNormalization()", POOL, conv(32),
                                "tf.keras.layers.BatchNormalization()", POOL, conv(64), "tf.keras.layers.BatchNormalization()", GAP, OUT)),
    Answer("strided_convolutions", scoped(conv(16, strides=2), conv(32, strides=2), conv(64, strides=2), GAP, OUT)),
    Answer("kernel_5", scoped(conv(16, 5), POOL, conv(32, 5), POOL, conv(64, 5), GAP, OUT)),
    Answer("separable", scoped(conv(16), POOL, "tf.keras.layers.SeparableConv2D(kernel_size=3, filters=32, padding='same', activation='relu')",
                               POOL, "tf.keras.layers.SeparableConv2D(kernel_size=3, filters=64, padding='same', activation='relu')", GAP, OUT)),
    Answer("hidden_dense", scoped(*BLOCKS, GAP, "tf.keras.layers.Dense(32, activation='relu')", OUT)),
    Answer("dense_then_dropout", scoped(*BLOCKS, GAP, "tf.keras.layers.Dense(32, activation='relu')", "tf.keras.layers.Dropout(0.3)", OUT)),
    Answer("activation_layers", scoped(*BLOCKS, GAP, "tf.keras.layers.Dense(5)", "tf.keras.layers.Activation('softmax')")),
    Answer("relu_layers", scoped("tf.keras.layers.Conv2D(16, 3, padding='same')", "tf.keras.layers.ReLU()", POOL,
                                 "tf.keras.layers.Conv2D(32, 3, padding='same')", "tf.keras.layers.ReLU()", GAP, OUT)),
    Answer("logits_from_logits", scoped(*BLOCKS, GAP, "tf.keras.layers.Dense(5)", compile_line=(
        "model.compile(optimizer='adam', loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True), metrics=['accuracy'])"))),
    Answer("input_layer_old_style", scoped(conv(16), POOL, conv(32), POOL, conv(64), GAP, OUT,
                                           first="tf.keras.layers.InputLayer(input_shape=[*IMAGE_SIZE, 3])")),
    Answer("layers_by_name", """from tensorflow.keras.layers import Conv2D, MaxPooling2D, GlobalAveragePooling2D, Dense

with strategy.scope():
    model = tf.keras.Sequential([
        tf.keras.Input(shape=[*IMAGE_SIZE, 3]),
        Conv2D(16, 3, padding='same', activation='relu'),
        MaxPooling2D(2),
        Conv2D(32, 3, padding='same', activation='relu'),
        MaxPooling2D(2),
        Conv2D(64, 3, padding='same', activation='relu'),
        GlobalAveragePooling2D(),
        Dense(5, activation='softmax'),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=0.001), loss='categorical_crossentropy', metrics=['accuracy'])
"""),
    Answer("model_add_in_a_loop", """with strategy.scope():
    model = tf.keras.Sequential()
    model.add(tf.keras.Input(shape=[*IMAGE_SIZE, 3]))
    for filters in [16, 32, 64]:
        model.add(tf.keras.layers.Conv2D(filters, kernel_size=3, padding='same', activation='relu'))
        model.add(tf.keras.layers.MaxPooling2D(pool_size=2))
    model.add(tf.keras.layers.GlobalAveragePooling2D())
    model.add(tf.keras.layers.Dense(5, activation='softmax'))
    model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
"""),
    Answer("functional_api", """with strategy.scope():
    inputs = tf.keras.Input(shape=[*IMAGE_SIZE, 3])
    x = tf.keras.layers.Conv2D(16, 3, padding='same', activation='relu')(inputs)
    x = tf.keras.layers.MaxPooling2D()(x)
    x = tf.keras.layers.Conv2D(32, 3, padding='same', activation='relu')(x)
    x = tf.keras.layers.MaxPooling2D()(x)
    x = tf.keras.layers.Conv2D(64, 3, padding='same', activation='relu')(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(5, activation='softmax')(x)
    model = tf.keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
"""),
    Answer("helper_in_an_added_cell", """with strategy.scope():
    model = tf.keras.Sequential([tf.keras.Input(shape=[*IMAGE_SIZE, 3]), *conv_block(16), *conv_block(32), *conv_block(64),
                                 tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(5, activation='softmax')])
    model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
""", above=("def conv_block(filters):\n    # a convolution, then half the picture\n    return [tf.keras.layers.Conv2D(filters, 3, padding='same', activation='relu'),\n            tf.keras.layers.MaxPooling2D(2)]",)),
    Answer("compile_in_a_cell_below", scoped(*BLOCKS, GAP, OUT, compile_line="pass"),
           below=("with strategy.scope():\n    model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])",)),

    # --- wrong: each fails the check that names its mistake
    Answer("untouched_playground", "", untouched=True, fails=("runs", "structure", "scope", "compile", "accuracy")),
    Answer("one_convolution_only", scoped(conv(32), GAP, OUT), fails=("structure",), may_fail=("accuracy",), says=("Conv2D",)),
    Answer("no_convolution", scoped("tf.keras.layers.Flatten()", OUT), fails=("structure",), may_fail=("accuracy",), says=("convolution",)),
    Answer("flatten_head", scoped(*BLOCKS, "tf.keras.layers.Flatten()", OUT), fails=("structure",), may_fail=("accuracy",),
           says=("GlobalAveragePooling2D",)),
    Answer("no_softmax", scoped(*BLOCKS, GAP, "tf.keras.layers.Dense(5)"), fails=("structure",), may_fail=("accuracy",), says=("softmax",)),
    Answer("relu_output", scoped(*BLOCKS, GAP, "tf.keras.layers.Dense(5, activation='relu')"), fails=("structure",),
           may_fail=("accuracy",), says=("softmax",)),
    Answer("sigmoid_output", scoped(*BLOCKS, GAP, "tf.keras.layers.Dense(5, activation='sigmoid')"), fails=("structure",),
           may_fail=("accuracy",), says=("softmax",)),
    Answer("ten_outputs", scoped(*BLOCKS, GAP, "tf.keras.layers.Dense(10, activation='softmax')"), fails=("structure", "accuracy"),
           says=("5",)),
    Answer("sparse_loss_on_one_hot", scoped(*BLOCKS, GAP, OUT, compile_line=COMPILE.replace("'categorical", "'sparse_categorical")),
           fails=("compile", "accuracy"), says=("one-hot",)),
    Answer("mse_loss", scoped(*BLOCKS, GAP, OUT, compile_line=COMPILE.replace("'categorical_crossentropy'", "'mse'")),
           fails=("compile",), may_fail=("accuracy",), says=("mse",)),
    Answer("no_compile", scoped(*BLOCKS, GAP, OUT, compile_line="pass"), fails=("compile", "accuracy"), says=("compile",)),
    Answer("built_outside_the_scope", f"model = tf.keras.Sequential([\n    tf.keras.Input(shape=[*IMAGE_SIZE, 3]),\n"
           + "".join(f"    {layer},\n" for layer in (*BLOCKS, GAP, OUT)) + f"])\n{COMPILE}\n", fails=("scope",), says=("strategy.scope()",)),
    Answer("compiled_outside_the_scope", scoped(*BLOCKS, GAP, OUT, compile_line="pass") + COMPILE + "\n", fails=("scope",),
           says=("compiles the model",)),
    Answer("frozen_convolutions", scoped(*(b.replace("activation='relu'", "activation='relu', trainable=False") for b in BLOCKS), GAP, OUT),
           fails=("accuracy",), says=("frozen", "trainable=False")),
    Answer("positional_compile", scoped(*BLOCKS, GAP, OUT, compile_line="model.compile('adam', 'categorical_crossentropy', ['accuracy'])"),
           fails=("compile", "accuracy"), says=("loss_weights",)),
    Answer("learning_rate_zero", scoped(*BLOCKS, GAP, OUT, compile_line=COMPILE.replace(
        "optimizer='adam'", "optimizer=tf.keras.optimizers.Adam(learning_rate=0.0)")), fails=("accuracy",), says=("learning rate",)),
    Answer("syntax_error", scoped(*BLOCKS, GAP, OUT).replace("GlobalAveragePooling2D(),", "GlobalAveragePooling2D()),"),
           fails=("runs", "structure", "scope", "compile", "accuracy"), says=("SyntaxError",)),
]
