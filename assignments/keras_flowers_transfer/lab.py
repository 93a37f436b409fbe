"""The transfer-learning lab's own code: what "demo" means for its data and weights (the
flowers lab's synthetic flowers and texture-pretrained MobileNetV2), and the typical
mistakes the demo grades and the tests pin."""

from __future__ import annotations

from grader.scenarios import colab_cell, colab_notebook, edit, with_answer
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
# notebook come from grader/scenarios.py
SCENARIOS = {
    "unfrozen_base.ipynb": (edit("pretrained_model.trainable = False", "pretrained_model.trainable = True"), "the base left trainable"),
    "global_pooling.ipynb": (edit("Flatten()", "GlobalAveragePooling2D()"), "GlobalAveragePooling2D instead of Flatten"),
    "categorical_loss.ipynb": (edit("'sparse_categorical_crossentropy'", "'categorical_crossentropy'"), "categorical_crossentropy instead of the sparse loss"),
    "no_softmax.ipynb": (edit("Dense(5, activation='softmax')", "Dense(5)"), "a head without softmax"),
    "fake_accuracy.ipynb": (fake_accuracy, "prints a fake val_accuracy; learning rate 0"),
    "syntax_error.ipynb": (syntax_error, "a syntax error in the model cell"),
    "colab_download.ipynb": (colab_download, "the codelab's own Colab layout"),
}


