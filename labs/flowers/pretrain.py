"""Demo weights for the transfer lab's pretrained base: MobileNetV2 pretrained on a
texture task (six kinds of texture crossed with four families of hue) that has nothing
to do with flowers, saved in Keras's no-top layout under the name Keras looks for."""

from __future__ import annotations

import os

import numpy as np

# # The source task: six kinds of texture (stripes in three directions, checks, rings,
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
