"""Pretrained weights for the frozen base: where Keras looks for them, and demo ones.

The student's unchanged `MobileNetV2(input_shape=[*IMAGE_SIZE, 3], include_top=False)`
asks Keras for ImageNet weights. Keras first looks for the file it would download in
`$KERAS_HOME/models/`; the grader puts a file there itself, so nothing is downloaded.
That file is either the real ImageNet file (when the instructor provides it) or the
project's demo weights, made by `make_demo_weights` from a texture task that has
nothing to do with flowers, so that transfer learning is really exercised.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np

from reference.hashing import file_sha256

KERAS_SIZES = (96, 128, 160, 192, 224)
DEMO_WEIGHTS = os.path.join(os.path.dirname(__file__), "assets", "mobilenet_v2_demo_no_top.h5")


@dataclasses.dataclass(frozen=True)
class Weights:
    """A weights file and what to call it in a scorecard."""

    path: str
    kind: str  # "demo" or "provided"

    @property
    def identity(self) -> str:
        return f"{self.kind} {os.path.basename(self.path)} sha256:{file_sha256(self.path)[:16]}"


class WeightsError(Exception):
    """The weights file is missing or cannot serve the requested model."""


def keras_file_name(image_size: int, alpha: float = 1.0) -> str:
    """The name of the no-top file Keras fetches for MobileNetV2 at this input size."""
    rows = image_size if image_size in KERAS_SIZES else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"


def resolve(path: str | None) -> Weights:
    """The provided weights file, or the demo weights shipped with the project."""
    if path is None:
        weights = Weights(DEMO_WEIGHTS, "demo")
    else:
        weights = Weights(os.path.abspath(path), "provided")
    if not os.path.isfile(weights.path):
        raise WeightsError(
            f"weights file {weights.path} not found; pass --weights with the path of "
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_<size>_no_top.h5, or "
            "rebuild the demo weights with `python -m reference.make_assets`"
        )
    return weights


def stage(weights: Weights, keras_home: str, image_size: int) -> str:
    """Put the weights where Keras looks before downloading; returns the models dir."""
    models = os.path.join(keras_home, "models")
    os.makedirs(models, exist_ok=True)
    target = os.path.join(models, keras_file_name(image_size))
    if not os.path.exists(target) or file_sha256(target) != file_sha256(weights.path):
        partial = target + ".partial"
        shutil.copyfile(weights.path, partial)
        os.replace(partial, target)
    return models


def pretrained_base(weights: Weights, image_size: int):
    """The reference MobileNetV2 without top, loaded with `weights`."""
    import keras

    return keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3), include_top=False, weights=weights.path
    )


# --- demo weights ------------------------------------------------------------------
#
# The source task: six kinds of texture (stripes in three directions, checks, rings,
# dots) crossed with four families of hue, 24 classes. The base learns edges,
# frequencies, shapes and colour, and nothing about flowers. (A first version drew
# textures in random colours; its features were colour-blind and transferred badly.)

TEXTURE_KINDS = 6
HUE_FAMILIES = (0.0, 0.14, 0.35, 0.65)  # red, yellow, green, blue
TEXTURES = TEXTURE_KINDS * len(HUE_FAMILIES)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.asarray([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def synthetic_texture(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    kind, family = divmod(label, len(HUE_FAMILIES))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    frequency = rng.uniform(3, 10)
    phase = rng.uniform(0, 2 * np.pi)
    if kind < 3:
        angle = kind * np.pi / 3 + rng.normal(0, 0.1)
        pattern = np.sin(2 * np.pi * frequency * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    elif kind == 3:
        pattern = np.sign(np.sin(np.pi * frequency * xx) * np.sin(np.pi * frequency * yy))
    elif kind == 4:
        cx, cy = rng.uniform(0.2, 0.8, size=2)
        pattern = np.sin(2 * np.pi * frequency * np.hypot(xx - cx, yy - cy) + phase)
    else:
        pattern = -np.ones_like(xx)
        for cx, cy in rng.uniform(0, 1, size=(int(frequency * 2), 2)):
            pattern[np.hypot(xx - cx, yy - cy) < 0.05] = 1
    hue = (HUE_FAMILIES[family] + rng.normal(0, 0.03)) % 1.0
    high = _hsv_to_rgb(hue, rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0))
    low = _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0, 0.5), rng.uniform(0, 0.4))
    image = low + (high - low) * (pattern[..., None] + 1) / 2
    image = image + rng.normal(0, 0.05, size=image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def make_demo_weights(out_path: str, size: int = 96, count: int = 3600, epochs: int = 6, seed: int = 7) -> str:
    """Pretrain MobileNetV2 on the texture task; save its base in Keras's no-top layout."""
    import keras
    from keras.src.legacy.saving import legacy_h5_format
    import h5py

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % TEXTURES
    rng.shuffle(labels)
    images = np.stack([synthetic_texture(rng, int(k), size) for k in labels])

    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=None)
    # Keras' MobileNetV2 uses BatchNorm momentum 0.999: its moving statistics would need
    # thousands of steps to settle, and the frozen base runs in inference mode on them.
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    inputs = keras.Input((size, size, 3))
    # MobileNetV2 expects inputs in [-1, 1]; the lab feeds [0, 1], which still works.
    features = keras.layers.GlobalAveragePooling2D()(base(inputs))
    model = keras.Model(inputs, keras.layers.Dense(TEXTURES, activation="softmax")(features))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, batch_size=32, epochs=epochs, validation_split=0.1, verbose=2)

    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    partial = out_path + ".partial"
    with h5py.File(partial, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, base)
    os.replace(partial, out_path)
    return out_path
