"""The "Keras on TPU" series' flowers: five classes, the lab's data layouts, and demo
stand-ins the project makes itself (nothing is downloaded).

- The classes and the TFRecord layout of the lab's own data (`image` as JPEG bytes,
  `class` as an int64 index, `one_hot_class` as 5 floats; the first 19% of the files
  validate), and the JPEG-folder layout of part 1 (`<class>/<name>.jpg`).
- Synthetic flowers in those layouts (`assets/flowers-demo`: 480 flowers at 96x96 in 16
  files, so 90 validate; `assets/flowers-demo-64`: the same flowers drawn at 64x64, for
  the convnet lab, which trains every model in full; `assets/flowers-jpeg`: 240 photos of
  varied sizes),
  and a MobileNetV2 pretrained on a texture task that has nothing to do with flowers
  (`assets/mobilenet_v2_demo_no_top.h5`), so transfer learning is really exercised.
  `python -m labs.flowers.make_assets` makes them again.
"""

from __future__ import annotations

import os

import numpy as np

from reference import data

CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
VALIDATION_SPLIT = 0.19
ASSETS = os.path.join(os.path.dirname(__file__), "assets")
DEMO_TFRECORDS = os.path.join(ASSETS, "flowers-demo")
DEMO_SIZES = (96, 64)  # the sizes the demo TFRecords are drawn at: 96 in flowers-demo, others in flowers-demo-SIZE
DEMO_JPEGS = os.path.join(ASSETS, "flowers-jpeg")
DEMO_WEIGHTS = os.path.join(ASSETS, "mobilenet_v2_demo_no_top.h5")


def demo_data(data_format: str, size: int = 96) -> str:
    """The demo flowers' glob in a layout: `tfrecord` (drawn at `size`, one of DEMO_SIZES)
    or `folders`."""
    return os.path.join(demo_tfrecords(size), "*.tfrec") if data_format == "tfrecord" else os.path.join(DEMO_JPEGS, "*", "*.jpg")


def demo_tfrecords(size: int = 96) -> str:
    """The folder of the demo TFRecords drawn at `size`."""
    if size not in DEMO_SIZES:
        raise ValueError(f"the demo flowers are drawn at {DEMO_SIZES}, not {size}")
    return DEMO_TFRECORDS if size == 96 else f"{DEMO_TFRECORDS}-{size}"


def demo_weights() -> str:
    return DEMO_WEIGHTS


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


def synthetic_flower(rng: np.random.Generator, label: int, size: int, width: int | None = None) -> np.ndarray:
    """One synthetic flower picture of class `label`, as a uint8 [size, width, 3] array
    (square unless `width` is given: the flower is drawn across the whole frame)."""
    name = CLASSES[label]
    (low, high), petal_colours, heart_colour, heart = _LOOKS[name]
    width = width or size
    yy, xx = np.mgrid[0:size, 0:width].astype(np.float32)
    yy, xx = yy / size, xx / width
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
    background = background * (0.8 + 0.4 * yy[..., None]) + rng.normal(0, 0.04, size=(size, width, 3))

    image = np.where(flower[..., None], colour * shade[..., None], background)
    if heart > 0:
        centre = r < heart * rng.uniform(0.85, 1.15)
        dots = 0.85 + 0.15 * (rng.random((size, width)) > 0.5)
        image = np.where(centre[..., None], np.asarray(heart_colour) * dots[..., None], image)
    image = image + rng.normal(0, 0.03, size=image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def synthetic_flowers(size: int, count: int, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic set of synthetic flowers: uint8 images and their class indices."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    return np.stack([synthetic_flower(rng, int(label), size) for label in labels]), labels


def make_synthetic_flowers(directory: str, size: int, count: int, n_files: int = 16, seed: int = 2) -> list[str]:
    """Write a deterministic synthetic flower set in the lab's TFRecord format."""
    images, labels = synthetic_flowers(size, count, seed)
    return data.write_tfrecords(directory, images, labels, n_files, len(CLASSES), prefix="flowers")


def make_flower_folders(directory: str, count: int, sizes: tuple[int, int] = (64, 144), seed: int = 3) -> list[str]:
    """Flowers as JPEG files in one folder per class (the tf.data lab's layout), each of its
    own height and width in `sizes`, as the codelab's photos are: a pipeline that resizes,
    or assumes one size, is told from one that keeps each picture as it decodes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    low, high = sizes
    images = [synthetic_flower(rng, int(label), int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))) for label in labels]
    return data.write_folders(directory, images, labels, CLASSES, prefix="flower")
