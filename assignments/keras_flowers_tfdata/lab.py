"""The tf.data lab's own code: what "demo" means for its data (the flowers lab's synthetic
flowers as JPEG files, one folder per class), and the typical mistakes the demo grades
and the tests pin."""

from __future__ import annotations

from grader.config.scenarios import colab_cell, colab_notebook, edit, with_answer
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
# notebook come from grader/config/scenarios.py
SCENARIOS = {
    "file_name_label.ipynb": (edit("sep='/')[-2]", "sep='/')[-1]"), "the label taken from the file's name, not its folder"),
    "not_decoded.ipynb": (edit(DECODE, "image = bits"), "the file's bytes, never decoded"),
    "index_labels.ipynb": (index_labels, "the class's index where the lab asks for its name"),
    "float_pictures.ipynb": (edit(DECODE, DECODE + "\n    image = tf.image.convert_image_dtype(image, tf.float32)"),
                             "pictures converted to floats, a later lab's step"),
    "batched.ipynb": (edit("num_parallel_calls=AUTOTUNE)", "num_parallel_calls=AUTOTUNE).batch(8)"), "batched already"),
    "colab_download.ipynb": (colab_download, "the codelab's own Colab layout"),
}


# --- the population: answers as students write them, with a teacher's verdict ----------
# (grader calibrate and tests/test_tfdata_lab.py grade them)

from grader.config.population import Answer  # noqa: E402

LIST = "filenames_dataset = tf.data.Dataset.list_files(GCS_PATTERN)\n"


def pipeline(decode: str = "image = tf.io.decode_jpeg(bits)", label: str = "label = tf.strings.split(filename, sep='/')[-2]",
             after: str = "", listing: str = LIST, returns: str = "return image, label") -> str:
    """An answer cell: list the files, a decode_jpeg_and_label of the given lines, the map, and `after` it."""
    return (f"{listing}\ndef decode_jpeg_and_label(filename):\n    bits = tf.io.read_file(filename)\n    {decode}\n    {label}\n"
            f"    {returns}\n\ndataset = filenames_dataset.map(decode_jpeg_and_label){after}\n")


CHECKS_ALL = ("runs", "elements", "pictures", "labels")

POPULATION = [
    # --- correct: every photo once, decoded as it is, with its folder's name
    Answer("plain", pipeline()),
    Answer("codelab_expand_dims", pipeline(label="label = tf.strings.split(tf.expand_dims(filename, axis=-1), sep='/')\n"
                                                 "    label = label.values[-2]")),
    Answer("split_positional_sep", pipeline(label="label = tf.strings.split(filename, '/')[-2]")),
    Answer("channels_3", pipeline(decode="image = tf.io.decode_jpeg(bits, channels=3)")),
    Answer("dct_integer_accurate", pipeline(decode="image = tf.io.decode_jpeg(bits, dct_method='INTEGER_ACCURATE')")),
    Answer("dct_integer_fast", pipeline(decode="image = tf.io.decode_jpeg(bits, dct_method='INTEGER_FAST')")),
    Answer("decode_image", pipeline(decode="image = tf.io.decode_image(bits, channels=3, expand_animations=False)")),
    Answer("tf_image_decode_jpeg", pipeline(decode="image = tf.image.decode_jpeg(bits)")),
    Answer("parallel_map", pipeline(after=".cache()").replace(".map(decode_jpeg_and_label)", ".map(decode_jpeg_and_label, num_parallel_calls=AUTO)")),
    Answer("cache_and_prefetch", pipeline(after=".cache().prefetch(tf.data.AUTOTUNE)")),
    Answer("not_shuffled", pipeline(listing="filenames_dataset = tf.data.Dataset.list_files(GCS_PATTERN, shuffle=False)\n")),
    Answer("from_tensor_slices", pipeline(listing="filenames_dataset = tf.data.Dataset.from_tensor_slices(tf.io.gfile.glob(GCS_PATTERN))\n")),
    Answer("regex_label", pipeline(label="label = tf.strings.regex_replace(filename, r'.*/([^/]+)/[^/]+$', r'\\1')")),
    Answer("lookup_and_back", pipeline(label="index = tf.argmax(tf.cast(tf.strings.split(filename, sep='/')[-2] == CLASSES, tf.int32))\n"
                                             "    label = tf.gather(tf.constant(CLASSES), index)")),
    Answer("pil_decode", """import PIL.Image
import numpy as np

filenames_dataset = tf.data.Dataset.list_files(GCS_PATTERN)

def read_with_pil(filename):
    return np.asarray(PIL.Image.open(filename.numpy().decode('utf-8')).convert('RGB'))

def decode_jpeg_and_label(filename):
    image = tf.py_function(read_with_pil, [filename], tf.uint8)
    label = tf.strings.split(filename, sep='/')[-2]
    return image, label

dataset = filenames_dataset.map(decode_jpeg_and_label)
"""),
    Answer("two_maps", LIST + "\ndef read(filename):\n    return tf.io.read_file(filename), tf.strings.split(filename, '/')[-2]\n\n"
           "def decode(bits, label):\n    return tf.io.decode_jpeg(bits), label\n\ndataset = filenames_dataset.map(read).map(decode)\n"),
    Answer("lambda_map", LIST + "dataset = filenames_dataset.map(lambda f: (tf.io.decode_jpeg(tf.io.read_file(f)), tf.strings.split(f, '/')[-2]))\n"),
    Answer("snippets_called", LIST + "dataset = filenames_dataset.map(decode_jpeg_and_label)  # the lab's snippet, further down\n"),
    Answer("helper_in_an_added_cell", LIST + "dataset = filenames_dataset.map(my_decode)\n",
           above=("def my_decode(filename):\n    image = tf.io.decode_jpeg(tf.io.read_file(filename))\n"
                  "    return image, tf.strings.split(filename, sep='/')[-2]",)),
    Answer("display_called", pipeline(after="\ndisplay_9_images_from_dataset(dataset)")),
    Answer("printing_as_it_goes", LIST + "for f in filenames_dataset.take(3):\n    print(f.numpy())\n\n"
           + pipeline(listing="") + "for image, label in dataset.take(3):\n    print(image.shape, label.numpy())\n"),

    # --- wrong: each fails the check that names its mistake
    Answer("untouched_playground", "", untouched=True, fails=CHECKS_ALL),
    Answer("not_decoded", pipeline(decode="image = bits"), fails=("pictures",), says=("decode",)),
    Answer("file_name_label", pipeline(label="label = tf.strings.split(filename, sep='/')[-1]"), fails=("labels",), says=("file name",)),
    Answer("whole_path_label", pipeline(label="label = filename"), fails=("labels",), says=("path",)),
    Answer("parent_of_the_folders", pipeline(label="label = tf.strings.split(filename, sep='/')[-3]"), fails=("labels",),
           says=("none of the classes",)),
    Answer("index_labels", pipeline(label="label = tf.argmax(tf.cast(tf.strings.split(filename, sep='/')[-2] == CLASSES, tf.int64))"),
           fails=("elements",), says=("class names",)),
    Answer("float_pictures", pipeline(decode="image = tf.image.convert_image_dtype(tf.io.decode_jpeg(bits), tf.float32)"),
           fails=("pictures",), says=("float32",)),
    Answer("resized_then_cast", pipeline(decode="image = tf.cast(tf.image.resize(tf.io.decode_jpeg(bits), [96, 96]), tf.uint8)"),
           fails=("pictures",), says=("resiz",)),
    Answer("grey", pipeline(decode="image = tf.io.decode_jpeg(bits, channels=1)"), fails=("pictures",), says=("channel",)),
    Answer("batched", pipeline(after=".batch(8)"), fails=("elements",), may_fail=("pictures", "labels"), says=("batch",)),
    Answer("nine_only", pipeline(after=".take(9)"), fails=("pictures",), says=("every file",)),
    Answer("repeated", pipeline(after=".repeat()"), fails=("pictures",), says=("never ends",)),
    Answer("one_class_filtered_out", pipeline(after=".filter(lambda image, label: label != 'roses')"), fails=("pictures",),
           says=("every file",)),
    Answer("swapped_pair", pipeline(returns="return label, image"), fails=("elements",), says=("picture first",)),
    Answer("no_label", pipeline(returns="return image"), fails=("elements", "labels"), says=("without their labels",)),
    Answer("zipped_separately_shuffled", LIST + "images = filenames_dataset.map(lambda f: tf.io.decode_jpeg(tf.io.read_file(f)))\n"
           "labels = filenames_dataset.map(lambda f: tf.strings.split(f, '/')[-2])\ndataset = tf.data.Dataset.zip((images, labels))\n",
           fails=("labels",), says=("another picture",)),
    Answer("wrong_pattern", pipeline(listing="filenames_dataset = tf.data.Dataset.list_files(GCS_PATTERN.replace('.jpg', '.png'))\n"),
           fails=("runs|elements",), may_fail=("runs", "elements", "pictures", "labels"), says=()),
    Answer("named_otherwise", pipeline().replace("dataset = filenames_dataset.map", "ds = filenames_dataset.map"),
           fails=("elements", "pictures", "labels"), says=("dataset",)),
    Answer("syntax_error", pipeline().replace("return image, label", "return image, label)"), fails=CHECKS_ALL, says=("SyntaxError",)),
]
