"""Labelled image data as the labs store it, and readers for it.

Two layouts, declared by each lab (`[data] format`):

- `tfrecord`: TFRecord files whose records hold an image as JPEG bytes and its class
  index as an int64 (the feature names are the lab's: `[data] image_feature`,
  `label_feature`); split by files, the lab's first fraction validating.
- `folders`: JPEG files in one folder per class (`<class>/<name>.jpg`), the class
  read from the folder's name; split by files the same way.

Everything a lab knows about its data (its classes, its split, its feature names)
comes from the assignment; nothing here knows a lab.
"""

from __future__ import annotations

import dataclasses
import glob
import functools
import hashlib
import math
import os

import numpy as np

from reference.hashing import file_sha256

FORMATS = ("tfrecord", "folders")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A lab's labelled images, split as the lab splits them."""

    pattern: str
    format: str  # "tfrecord" or "folders"
    image_size: int
    classes: tuple[str, ...]
    train_files: tuple[str, ...]
    validation_files: tuple[str, ...]
    image_feature: str = "image"
    label_feature: str = "class"

    @property
    def files(self) -> tuple[str, ...]:
        return self.validation_files + self.train_files

    @property
    def folder(self) -> str:
        """The one folder holding the data (mounted read-only in the sandbox)."""
        files = self.files
        if self.format == "folders":
            return os.path.dirname(os.path.dirname(files[0]))
        return os.path.dirname(files[0])


class DataError(Exception):
    """The data cannot be read as the lab's format; the message says what to fix."""


def split_files(pattern: str, data_format: str, image_size: int, classes, validation_split: float,
                image_feature: str = "image", label_feature: str = "class") -> Dataset:
    """Find the files of `pattern` and split them by file, as the labs do."""
    files = tuple(sorted(glob.glob(pattern)))
    if not files:
        what = "TFRecord files" if data_format == "tfrecord" else "image files"
        raise DataError(f"no {what} match {pattern!r}; point the manifest's [data] pattern (or --data) at the lab's data")
    if data_format == "folders":
        strays = [f for f in files if os.path.basename(os.path.dirname(f)) not in classes]
        if strays:
            raise DataError(f"{strays[0]} is not in a folder named after one of the classes ({', '.join(classes)})")
    split = max(1, int(len(files) * validation_split))
    if split >= len(files):
        raise DataError(f"{pattern!r} has {len(files)} file(s); the lab's split needs at least 2")
    return Dataset(pattern, data_format, image_size, tuple(classes), files[split:], files[:split], image_feature, label_feature)


def dataset_identity(data: Dataset) -> str:
    """A short content hash of the data's files: names the data in every scorecard (hashed
    once per files, sizes and times: a batch asks for it at every submission)."""
    stamps = tuple((path, *_stamp(path)) for path in data.files)
    return _identity(data.folder, stamps)


def _stamp(path: str) -> tuple[int, int]:
    found = os.stat(path)
    return found.st_size, found.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _identity(folder: str, stamps: tuple) -> str:
    digest = hashlib.sha256()
    for path, _, _ in stamps:
        digest.update(os.path.relpath(path, folder).encode())
        file_sha256(path, digest)
    return digest.hexdigest()[:16]


# --- reading ---------------------------------------------------------------------


def read_labeled(data: Dataset, files, one_hot: bool):
    """A tf.data pipeline of (image in [0,1], label) in file order, never shuffled."""
    import tensorflow as tf

    size, classes = data.image_size, len(data.classes)

    def finish(jpeg, label):
        image = tf.io.decode_jpeg(jpeg, channels=3)
        image = tf.cast(image, tf.float32) / 255.0
        image = tf.reshape(image, [size, size, 3])
        return image, tf.one_hot(label, classes) if one_hot else label

    if data.format == "folders":
        labels = [data.classes.index(os.path.basename(os.path.dirname(f))) for f in files]
        pairs = tf.data.Dataset.from_tensor_slices((list(files), labels))
        return pairs.map(lambda path, label: finish(tf.io.read_file(path), tf.cast(label, tf.int64)))
    features = {data.image_feature: tf.io.FixedLenFeature([], tf.string), data.label_feature: tf.io.FixedLenFeature([], tf.int64)}

    def parse(example):
        record = tf.io.parse_single_example(example, features)
        return finish(record[data.image_feature], record[data.label_feature])

    return tf.data.TFRecordDataset(list(files)).map(parse)


def original_images(data: Dataset, files, indices) -> dict[int, bytes]:
    """The original JPEG bytes of the images at `indices` (in file order)."""
    wanted, found = set(indices), {}
    if data.format == "folders":
        for index in sorted(wanted):
            if index < len(files):
                with open(files[index], "rb") as handle:
                    found[index] = handle.read()
        return found
    import tensorflow as tf

    for index, record in enumerate(tf.data.TFRecordDataset(list(files))):
        if index in wanted:
            parsed = tf.io.parse_single_example(record, {data.image_feature: tf.io.FixedLenFeature([], tf.string)})
            found[index] = parsed[data.image_feature].numpy()
            if len(found) == len(wanted):
                break
    return found


def first_image_shape(data: Dataset) -> tuple[int, ...]:
    """The shape of the first image, decoded (to check the manifest's image size)."""
    import tensorflow as tf

    jpeg = original_images(data, data.files[:1], [0]).get(0)
    if jpeg is None:
        raise DataError(f"{data.files[0]} holds no images")
    try:
        return tuple(tf.io.decode_jpeg(jpeg, channels=3).shape)
    except (tf.errors.OpError, ValueError) as error:
        raise DataError(f"{data.files[0]} does not hold JPEG images in the lab's format: {error}") from None


@dataclasses.dataclass(frozen=True)
class Picture:
    """One picture of the data, as a pipeline that decodes it yields it."""

    label: int  # its class's index
    source: str  # its file, relative to the data's folder (a record: `file#index`)
    shape: tuple[int, ...]  # () for the file's undecoded bytes
    thumb: tuple[float, ...] = ()  # a decoded picture's thumbnail (see thumbnail), () for the bytes


THUMB = 8  # a thumbnail is the picture's area average on a THUMB x THUMB grid, per channel


def thumbnail(tensor) -> tuple[float, ...]:
    """A decoded picture's thumbnail: its pixels averaged over a THUMB x THUMB grid per channel,
    in the picture's own units (0-255 for uint8), rounded to 2 decimals. Two JPEG decoders
    give a picture's pixels a level or two apart; their thumbnails are within a fraction of
    a level. The sandbox's runner computes the same with the same operation."""
    import tensorflow as tf

    small = tf.image.resize(tf.cast(tensor, tf.float32), [THUMB, THUMB], method="area")
    return tuple(round(float(v), 2) for v in tf.reshape(small, [-1]).numpy())


def decoded_pictures(data: Dataset) -> dict[str, Picture]:
    """The reference pipeline's pictures: every picture of the data decoded by
    `tf.io.decode_jpeg` (uint8, with the file's own channels, and with channels=3 where
    that differs), by the sha256 of the decoded tensor serialized with
    `tf.io.serialize_tensor`, the way the sandbox hashes what a student's pipeline yields.
    The file's undecoded bytes are known too (as a string picture of shape ()), so that a
    label can be checked even when its picture was not decoded."""
    import tensorflow as tf

    found: dict[str, Picture] = {}

    def add(tensor, label, source, thumb=()):
        digest = hashlib.sha256(tf.io.serialize_tensor(tensor).numpy()).hexdigest()
        found.setdefault(digest, Picture(label, source, tuple(int(d) for d in tensor.shape), thumb))

    for source, jpeg, label in _jpegs(data):
        for channels in (0, 3):
            decoded = tf.io.decode_jpeg(jpeg, channels=channels)
            add(decoded, label, source, thumbnail(decoded))
        add(tf.constant(jpeg), label, source)
    return found


def _jpegs(data: Dataset):
    """(source, JPEG bytes, class index) of every picture, in file order."""
    import tensorflow as tf

    for path in data.files:
        name = os.path.relpath(path, data.folder)
        if data.format == "folders":
            with open(path, "rb") as handle:
                yield name, handle.read(), data.classes.index(os.path.basename(os.path.dirname(path)))
            continue
        features = {data.image_feature: tf.io.FixedLenFeature([], tf.string), data.label_feature: tf.io.FixedLenFeature([], tf.int64)}
        for index, record in enumerate(tf.data.TFRecordDataset([path])):
            parsed = tf.io.parse_single_example(record, features)
            yield f"{name}#{index}", parsed[data.image_feature].numpy(), int(parsed[data.label_feature].numpy())


# --- writing ---------------------------------------------------------------------


def write_tfrecords(directory: str, images, labels, n_files: int, classes: int, prefix: str = "data",
                    image_feature: str = "image", label_feature: str = "class", one_hot_feature: str = "one_hot_class") -> list[str]:
    """Write uint8 images with their class indices (and one-hot vectors) as TFRecord files
    named `<prefix>NN-<count>.tfrec`."""
    import tensorflow as tf

    os.makedirs(directory, exist_ok=True)
    per_file = math.ceil(len(images) / n_files)
    paths = []
    for index in range(n_files):
        chunk = slice(index * per_file, (index + 1) * per_file)
        path = os.path.join(directory, f"{prefix}{index:02d}-{len(images[chunk])}.tfrec")
        with tf.io.TFRecordWriter(path) as writer:
            for image, label in zip(images[chunk], labels[chunk]):
                jpeg = tf.io.encode_jpeg(image, quality=90).numpy()
                feature = {
                    image_feature: tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
                    label_feature: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                    one_hot_feature: tf.train.Feature(float_list=tf.train.FloatList(value=np.eye(classes, dtype=np.float32)[int(label)])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
        paths.append(path)
    return paths


def write_folders(directory: str, images, labels, classes, prefix: str = "image") -> list[str]:
    """Write uint8 images as JPEG files in one folder per class."""
    import tensorflow as tf

    paths = []
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = os.path.join(directory, classes[int(label)])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{prefix}{index:04d}.jpg")
        with open(path, "wb") as handle:
            handle.write(tf.io.encode_jpeg(image, quality=90).numpy())
        paths.append(path)
    return paths
