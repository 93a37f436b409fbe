"""The convnet lab's own code: what "demo" means for its data (the flowers labs' synthetic
flowers), and the typical mistakes the demo grades and the tests pin."""

from __future__ import annotations

from grader.scenarios import colab_cell, colab_notebook, edit, with_answer
from labs.flowers import demo_data  # noqa: F401 - what "demo" means for this lab's data

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
# notebook come from grader/scenarios.py
SCENARIOS = {
    "batch_norm_loop.ipynb": (batch_norm_loop, "model.add in a loop, batch normalisation after every convolution"),
    "dense_only.ipynb": (dense_only, "no convolution at all: Flatten, then Dense(5, softmax)"),
    "flatten_head.ipynb": (edit("GlobalAveragePooling2D()", "Flatten()"), "Flatten where the lab asks for global pooling"),
    "sparse_loss.ipynb": (edit("'categorical_crossentropy'", "'sparse_categorical_crossentropy'"), "a sparse loss on one-hot labels"),
    "colab_download.ipynb": (colab_download, "the codelab's own Colab layout, TPU detection and all"),
    "no_softmax.ipynb": (edit("Dense(5, activation='softmax')", "Dense(5)"), "a head without softmax"),
}
