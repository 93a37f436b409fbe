"""The tf.data lab's own code: what "demo" means for its data (the flowers lab's synthetic
flowers as JPEG files, one folder per class), and the typical mistakes the demo grades
and the tests pin."""

from __future__ import annotations

from grader.scenarios import colab_cell, colab_notebook, edit, with_answer
from labs.flowers import demo_data  # noqa: F401 - what "demo" means for this lab's data

DECODE = "image = tf.io.decode_jpeg(bits)"
LABEL = "label = tf.strings.split(filename, sep='/')[-2]"


def index_labels(playground, key, solution) -> bytes:
    """The class's index where the lab asks for its name."""
    index = LABEL + "\n    label = tf.argmax(tf.cast(tf.equal(label, CLASSES), tf.int64))"
    return with_answer(playground, key, _replace(solution, LABEL, index))


def colab_download(playground, key, solution) -> bytes:
    """Laid out like the codelab's own solution downloaded from Colab: nbformat 4.0 with ids
    in metadata.id only, Colab metadata, outputs, the codelab's own cells (a bucket pattern,
    no environment variable), older TF idioms, the solution's heading, the codelab's own cell ids."""
    answer = (solution.replace(LABEL, "label = tf.strings.split(tf.expand_dims(filename, axis=-1), sep='/')\n"
                                      "    label = label.values[-2]")
              .replace(DECODE, "image = tf.image.decode_jpeg(bits)")
              .replace("num_parallel_calls=AUTOTUNE", "num_parallel_calls=AUTO"))

    printed = {"output_type": "stream", "name": "stdout", "text": "gs://flowers-public/tulips/100930342_92e8746431_n.jpg\n"}
    return colab_notebook("keras_flowers_tfdata_solution.ipynb", [
        colab_cell("markdown", "## Imports", "89B27-TGiDNB"),
        colab_cell("code", "import os, time\nimport numpy as np\nimport tensorflow as tf\nprint('Tensorflow version ' + tf.__version__)\n"
                     "AUTO = tf.data.experimental.AUTOTUNE", "U6rgexPXmY37"),
        colab_cell("markdown", "## Configuration", "w9S3uKC_iXY5"),
        colab_cell("code", "GCS_PATTERN = 'gs://flowers-public/*/*.jpg'\nCLASSES = ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']",
             "d8K6hL_kiWve"),
        colab_cell("markdown", "## Read pictures and labels [WORK WAS REQUIRED HERE]", "kvPXiovhi3ZZ"),
        colab_cell("code", answer, "nwsZ8X59mu24", [printed]),
        colab_cell("markdown", "## Useful code snippets", "ZX6Vg0YZwRCP"),
        colab_cell("markdown", "### Decode a JPEG", "FszNm593wnky"),
        colab_cell("code", "def decode_jpeg(filename):\n  bits = tf.io.read_file(filename)\n  return tf.image.decode_jpeg(bits)", "pmPz2WM2wTbS"),
    ])


def _replace(solution: str, old: str, new: str) -> str:
    if old not in solution:
        raise ValueError(f"the solution has no {old!r} to change")
    return solution.replace(old, new)


# file name -> (factory, what it shows); the solution, the playground and a file that is no
# notebook come from grader/scenarios.py
SCENARIOS = {
    "file_name_label.ipynb": (edit("sep='/')[-2]", "sep='/')[-1]"), "the label taken from the file's name, not its folder"),
    "not_decoded.ipynb": (edit(DECODE, "image = bits"), "the file's bytes, never decoded"),
    "index_labels.ipynb": (index_labels, "the class's index where the lab asks for its name"),
    "float_pictures.ipynb": (edit(DECODE, DECODE + "\n    image = tf.image.convert_image_dtype(image, tf.float32)"),
                             "pictures converted to floats, a later lab's step"),
    "batched.ipynb": (edit("num_parallel_calls=AUTOTUNE)", "num_parallel_calls=AUTOTUNE).batch(8)"), "batched already"),
    "colab_download.ipynb": (colab_download, "the codelab's own Colab layout"),
}
