"""The codelab's flower data: its TFRecord format, a reader, and a synthetic stand-in.

The lab reads JPEG-encoded 192x192 flower photos from TFRecord files whose records
hold `image` (JPEG bytes), `class` (int64 index) and, from part 3 on,
`one_hot_class` (5 floats). It validates on the first 19% of the files and trains
on the rest. Everything here keeps to that format so that a real copy of the
dataset and the synthetic demo set go through the same code.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import math
import os

import numpy as np

from reference.hashing import file_sha256

CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
VALIDATION_SPLIT = 0.19


@dataclasses.dataclass(frozen=True)
class FlowerData:
    """A set of TFRecord files split as the lab splits them."""

    pattern: str
    image_size: int
    train_files: tuple[str, ...]
    validation_files: tuple[str, ...]

    @property
    def files(self) -> tuple[str, ...]:
        return self.validation_files + self.train_files


class DataError(Exception):
    """The dataset cannot be read as the lab's TFRecord format."""


def split_files(pattern: str, image_size: int) -> FlowerData:
    """Find the files of `pattern` and split them by file, as the lab does."""
    files = tuple(sorted(glob.glob(pattern)))
    if not files:
        raise DataError(
            f"no TFRecord files match {pattern!r}; point the manifest's [data] pattern "
            "(or --data) at the .tfrec files of the flowers dataset"
        )
    split = max(1, int(len(files) * VALIDATION_SPLIT))
    if split >= len(files):
        raise DataError(f"{pattern!r} has {len(files)} file(s); the lab's split needs at least 2")
    return FlowerData(pattern, image_size, files[split:], files[:split])


def dataset_identity(data: FlowerData) -> str:
    """A short content hash of the dataset files: names the data in every scorecard."""
    digest = hashlib.sha256()
    for path in data.files:
        digest.update(os.path.basename(path).encode())
        file_sha256(path, digest)
    return digest.hexdigest()[:16]


# --- reading ---------------------------------------------------------------------


def read_labeled_tfrecords(files, image_size: int, one_hot: bool):
    """A tf.data pipeline of (image in [0,1], label) in file order, never shuffled."""
    import tensorflow as tf

    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "class": tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(example):
        record = tf.io.parse_single_example(example, features)
        image = tf.io.decode_jpeg(record["image"], channels=3)
        image = tf.cast(image, tf.float32) / 255.0
        image = tf.reshape(image, [image_size, image_size, 3])
        label = record["class"]
        if one_hot:
            label = tf.one_hot(label, len(CLASSES))
        return image, label

    dataset = tf.data.TFRecordDataset(list(files))
    return dataset.map(parse)


def jpeg_records(files, indices) -> dict[int, bytes]:
    """The original JPEG bytes of the records at `indices` (in file order)."""
    import tensorflow as tf

    wanted, found = set(indices), {}
    for index, record in enumerate(tf.data.TFRecordDataset(list(files))):
        if index in wanted:
            parsed = tf.io.parse_single_example(record, {"image": tf.io.FixedLenFeature([], tf.string)})
            found[index] = parsed["image"].numpy()
            if len(found) == len(wanted):
                break
    return found


def load_arrays(files, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All images and integer labels of `files`, in order, as numpy arrays."""
    images, labels = [], []
    for image, label in read_labeled_tfrecords(files, image_size, one_hot=False):
        images.append(image.numpy())
        labels.append(int(label.numpy()))
    if not images:
        raise DataError(f"the files {list(files)} hold no records")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


# --- writing ---------------------------------------------------------------------


def write_tfrecords(directory: str, images, labels, n_files: int, prefix: str = "flowers") -> list[str]:
    """Write uint8 images with their class indices as the lab's TFRecord files."""
    import tensorflow as tf

    os.makedirs(directory, exist_ok=True)
    per_file = math.ceil(len(images) / n_files)
    paths = []
    for index in range(n_files):
        chunk = slice(index * per_file, (index + 1) * per_file)
        path = os.path.join(directory, f"{prefix}{index:02d}-{len(images[chunk])}.tfrec")
        with tf.io.TFRecordWriter(path) as writer:
            for image, label in zip(images[chunk], labels[chunk]):
                writer.write(_example(image, int(label)).SerializeToString())
        paths.append(path)
    return paths


def _example(image: np.ndarray, label: int):
    import tensorflow as tf

    jpeg = tf.io.encode_jpeg(image, quality=90).numpy()
    one_hot = np.eye(len(CLASSES), dtype=np.float32)[label]
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
        "class": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "one_hot_class": tf.train.Feature(float_list=tf.train.FloatList(value=one_hot)),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


# --- the synthetic flowers -----------------------------------------------------------
#
# Each class is a drawn flower whose look follows the real one: daisies have many
# white petals round a small yellow heart, dandelions a dense yellow puff, roses a
# red or pink spiral, sunflowers yellow petals round a large dark heart, tulips a cup
# of three broad petals. Colours, size, position, rotation and noise vary, and the
# colour ranges of some classes overlap, so that shape must be read, not just hue.

_LOOKS = {
    # petals (min, max), petal colours, heart colour, heart size (fraction of radius)
    "daisy": ((11, 16), [(0.95, 0.95, 0.92), (0.9, 0.85, 0.95)], (0.95, 0.8, 0.1), 0.28),
    "dandelion": ((34, 48), [(0.98, 0.85, 0.1), (0.95, 0.75, 0.05)], (0.9, 0.7, 0.05), 0.12),
    "roses": ((3, 5), [(0.85, 0.1, 0.15), (0.95, 0.45, 0.6), (0.7, 0.05, 0.1)], (0.6, 0.05, 0.1), 0.0),
    "sunflowers": ((18, 24), [(0.98, 0.8, 0.05), (0.95, 0.65, 0.05)], (0.35, 0.2, 0.05), 0.5),
    "tulips": ((3, 3), [(0.9, 0.15, 0.15), (0.95, 0.5, 0.05), (0.6, 0.2, 0.7), (0.95, 0.45, 0.6)], (0.2, 0.5, 0.1), 0.0),
}


def synthetic_flower(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """One synthetic flower picture of class `label`, as a uint8 [size, size, 3] array."""
    name = CLASSES[label]
    (low, high), petal_colours, heart_colour, heart = _LOOKS[name]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx, cy = rng.uniform(0.35, 0.65, size=2)
    radius = rng.uniform(0.22, 0.4)
    dx, dy = xx - cx, yy - cy
    r = np.sqrt(dx * dx + dy * dy) / radius
    theta = np.arctan2(dy, dx) + rng.uniform(0, 2 * np.pi)
    petals = rng.integers(low, high + 1)

    if name == "roses":
        swirl = np.cos(petals * theta + 9.0 * np.log(r + 1e-3))
        flower = r < 1.0
        shade = 0.75 + 0.25 * swirl
    elif name == "tulips":
        cup = (np.abs(dx) < radius * 0.75) & (dy > -radius * 0.9) & (dy < radius * 0.8)
        edge = dy > -radius * 0.9 + 0.25 * radius * np.abs(np.sin(1.5 * np.pi * dx / radius))
        flower = cup & edge
        shade = 0.8 + 0.2 * np.cos(6 * dx / radius)
    else:
        sharp = 0.5 if name != "dandelion" else 0.15
        outline = (1 - sharp) + sharp * np.abs(np.cos(petals * theta / 2))
        if name == "dandelion":
            outline = outline * (1 + 0.08 * rng.standard_normal(r.shape))
        flower = r < outline
        shade = 0.8 + 0.2 * np.abs(np.cos(petals * theta / 2))

    colour = np.asarray(petal_colours[rng.integers(len(petal_colours))])
    colour = np.clip(colour + rng.normal(0, 0.06, size=3), 0, 1)
    background = np.asarray([0.2, 0.45, 0.15]) + rng.normal(0, 0.08, size=3)
    background = background * (0.8 + 0.4 * yy[..., None]) + rng.normal(0, 0.04, size=(size, size, 3))

    image = np.where(flower[..., None], colour * shade[..., None], background)
    if heart > 0:
        centre = r < heart * rng.uniform(0.85, 1.15)
        dots = 0.85 + 0.15 * (rng.random((size, size)) > 0.5)
        image = np.where(centre[..., None], np.asarray(heart_colour) * dots[..., None], image)
    image = image + rng.normal(0, 0.03, size=image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def make_synthetic_flowers(directory: str, size: int, count: int, n_files: int = 16, seed: int = 2) -> list[str]:
    """Write a deterministic synthetic flower set in the lab's TFRecord format."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    images = np.stack([synthetic_flower(rng, int(label), size) for label in labels])
    return write_tfrecords(directory, images, labels, n_files)
