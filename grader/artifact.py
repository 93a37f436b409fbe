"""What came back from the sandbox, read as data: capped JSON, HDF5 weights, no pickle.

The model is rebuilt in the grader's process from its Keras config with
`safe_mode=True`, after an allow-list of layer classes: a Lambda layer, a class the
student defined, or anything unknown is refused with a message, never run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from grader import runfiles

MAX_JSON_BYTES = 8 * 2**20
MAX_WEIGHTS_BYTES = 256 * 2**20

ALLOWED_LAYERS = frozenset(
    """Sequential Functional Model InputLayer Conv2D DepthwiseConv2D SeparableConv2D
    BatchNormalization LayerNormalization ReLU Activation ZeroPadding2D Add Multiply
    Concatenate Dense Flatten GlobalAveragePooling2D GlobalMaxPooling2D MaxPooling2D
    AveragePooling2D Dropout SpatialDropout2D GaussianNoise GaussianDropout Reshape
    Rescaling Resizing RandomFlip RandomRotation RandomZoom RandomTranslation
    RandomContrast RandomBrightness Softmax""".split()
)


class Refused(Exception):
    """The artifact cannot be believed or rebuilt; the message says why, for the student."""


@dataclasses.dataclass(frozen=True)
class Artifact:
    log: tuple[dict, ...]  # one entry per cell that started
    export: dict  # what the export step found (`found`, `problem`, ...)
    model_json: str | None
    compile_config: dict | None
    weights_path: str | None

    def cell(self, key: str) -> dict | None:
        return next((entry for entry in self.log if entry.get("key") == key), None)


def read(out_dir: str) -> Artifact:
    """What the run left in `out_dir`, read as data. Each file is opened by `runfiles`:
    no link followed, regular files only, size-checked before reading; a file that
    fails that counts as absent. `weights_path` is set only for a regular file within
    its cap, in a folder the grader made (the sandbox copies the run's files out of
    its scratch folder after the run), so a path is safe to hand to h5py."""
    log = _json(out_dir, "log.json", default=[])
    if not isinstance(log, list):
        log = []
    export = _json(out_dir, "export.json", default={})
    if not isinstance(export, dict):
        export = {}
    try:
        model_json = _text(out_dir, "model.json")
    except Refused:
        model_json = None
    compile_config = _json(out_dir, "compile.json", default=None)
    return Artifact(
        log=tuple(entry for entry in log if isinstance(entry, dict)),
        export=export,
        model_json=model_json,
        compile_config=compile_config if isinstance(compile_config, dict) else None,
        weights_path=_checked_path(out_dir, "model.weights.h5", MAX_WEIGHTS_BYTES),
    )


def _checked_path(out_dir: str, name: str, limit: int) -> str | None:
    """The file's path if it is a regular file of at most `limit` bytes, reached without a link."""
    try:
        os.close(runfiles.open_regular(out_dir, name, limit))
    except (runfiles.Refused, OSError):
        return None
    return os.path.join(out_dir, name)


def _text(out_dir: str, name: str) -> str | None:
    """The file's text (None if there is none); Refused if it is a link, not a regular
    file, or over MAX_JSON_BYTES."""
    try:
        data = runfiles.read(out_dir, name, MAX_JSON_BYTES)
    except runfiles.Refused as refusal:
        raise Refused(str(refusal)) from None
    except OSError as error:
        raise Refused(f"{name} cannot be read ({error.strerror})") from None
    return None if data is None else data.decode("utf-8", errors="replace")


def _json(out_dir: str, name: str, default: Any) -> Any:
    try:
        text = _text(out_dir, name)
        return default if text is None else json.loads(text)
    except (ValueError, RecursionError, Refused):
        return default


def layer_classes(config: Any) -> list[str]:
    """Every class_name that stands for a layer or model in a Keras config, nested too."""
    found = []

    def walk(node: Any, depth: int) -> None:
        if depth > 64:
            raise Refused("the model config is nested too deeply")
        if isinstance(node, dict):
            if "class_name" in node and isinstance(node.get("config"), dict) and "layers" in node["config"]:
                found.append(node["class_name"])
                for layer in node["config"]["layers"]:
                    found.append(layer.get("class_name") if isinstance(layer, dict) else repr(layer))
                    if isinstance(layer, dict):
                        walk(layer.get("config"), depth + 1)
            else:
                for value in node.values():
                    walk(value, depth + 1)
        elif isinstance(node, list):
            for value in node:
                walk(value, depth + 1)

    walk(config, 0)
    return found


class _Rebuilt:
    """The last few models rebuilt from their configs, by the config's hash.

    Most of a class submits the same config (same layers, same names: every run is a
    fresh interpreter), and building MobileNetV2 from its config takes about a second.
    A model taken from here is zeroed before the next submission's weights are loaded
    into it, so nothing of an earlier submission can remain in it."""

    def __init__(self, size: int = 2):
        self.size, self.models = size, {}

    def take(self, key: str):
        model = self.models.pop(key, None)
        if model is not None:
            self.models[key] = model  # most recently used last
            for variable in model.weights:
                variable.assign(_zeros(variable))
        return model

    def keep(self, key: str, model) -> None:
        self.models[key] = model
        while len(self.models) > self.size:
            self.models.pop(next(iter(self.models)))


def _zeros(variable):
    import numpy as np

    return np.zeros(tuple(variable.shape), dtype=str(getattr(variable.dtype, "name", variable.dtype)))


REBUILT = _Rebuilt()


def rebuild(model_json: str, weights_path: str | None):
    """The student's model, rebuilt from its config with safe_mode and its weights loaded."""
    key = hashlib.sha256(model_json.encode("utf-8", errors="replace")).hexdigest()
    model = REBUILT.take(key) if weights_path is not None else None
    if model is None:
        model = _from_config(model_json)
        REBUILT.keep(key, model)
    if weights_path is not None and model.weights:
        try:
            model.load_weights(weights_path)
        except Exception as error:
            raise Refused(f"the model's weights do not fit its layers: {type(error).__name__}: {error}") from None
    return model


def _from_config(model_json: str):
    import keras

    try:
        config = json.loads(model_json)
    except (ValueError, RecursionError) as error:
        raise Refused(f"the model's config is not valid JSON ({error})") from None
    refused = sorted({name for name in layer_classes(config) if name not in ALLOWED_LAYERS})
    if refused:
        raise Refused(
            f"the model uses {', '.join(map(str, refused))}, which the grader does not rebuild: "
            "use the built-in Keras layers of the lab (a Lambda layer or a layer class of your own "
            "cannot be checked safely)"
        )
    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except Exception as error:
        raise Refused(f"the model cannot be rebuilt from its config: {type(error).__name__}: {error}") from None
    _restore_trainable(model, config)
    return model


def _restore_trainable(model, config: dict) -> None:
    """Set each layer's `trainable` flag as the config says (nested models included)."""
    layers = config.get("config", {}).get("layers", [])
    by_name = {layer.name: layer for layer in getattr(model, "layers", [])}
    for entry in layers:
        if not isinstance(entry, dict):
            continue
        inner = entry.get("config", {})
        layer = by_name.get(inner.get("name"))
        if layer is None:
            continue
        if isinstance(inner.get("trainable"), bool):
            layer.trainable = inner["trainable"]
        if "layers" in inner:
            _restore_trainable(layer, entry)
