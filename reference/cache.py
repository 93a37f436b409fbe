"""The fast path: cache what a frozen, deterministic prefix makes of each image.

With the pretrained base frozen, its output for an image never changes: compute it
once per dataset and train only the rest of the model on it. The cache is a folder of
`.npz` files (no pickle) keyed by a hash of the prefix's config and weights, the
dataset's content, the image size and the preprocessing; files are written under a
temporary name and renamed, so concurrent writers of one key are safe, and the
least recently used files go first when the folder outgrows its bound.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile

import numpy as np

PREPROCESSING = "jpeg->rgb->float/255 v1"  # change when reference.data's decoding changes
RANDOM_LAYERS = frozenset(
    "Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D GaussianNoise GaussianDropout AlphaDropout "
    "RandomFlip RandomRotation RandomZoom RandomTranslation RandomContrast RandomBrightness RandomCrop "
    "RandomHeight RandomWidth RandomGrayscale RandomHue RandomSaturation RandomSharpness RandomShear "
    "RandomColorJitter RandomErasing RandomGaussianBlur RandomPerspective RandomInvert RandomPosterization "
    "RandomElasticTransform AutoContrast Solarization AugMix RandAugment MixUp CutMix".split()
)
DEFAULT_MAX_BYTES = 8 * 2**30


@dataclasses.dataclass(frozen=True)
class Split:
    """Where a model splits into a cached prefix and a trained head, or why it cannot."""

    prefix: int  # number of leading layers computed once (0: no fast path)
    reason: str  # why not, when prefix == 0

    @property
    def fast(self) -> bool:
        return self.prefix > 0


def split(chain) -> Split:
    """The chain's layers up to and including the pretrained base, if they are all frozen
    and deterministic in training; else the reason full training is needed."""
    if chain.base is None:
        return Split(0, chain.problem or "the model has no pretrained base")
    for layer in chain.layers[: chain.base + 1]:
        problem = _not_cacheable(layer)
        if problem:
            return Split(0, problem)
        if layer is not chain.base_layer and layer.weights:
            return Split(0, f"{layer.name} before the base has weights of its own")
    if not chain.head:
        return Split(0, "nothing follows the base to train")
    return Split(chain.base + 1, "")


def _not_cacheable(layer) -> str:
    if layer.trainable_weights:
        return f"{layer.name} is trainable"
    for inner in [layer, *getattr(layer, "_flatten_layers", lambda: [])()]:
        kind = type(inner).__name__
        if kind in RANDOM_LAYERS:
            return f"{inner.name} ({kind}) is random in training"
        if kind == "BatchNormalization" and inner.trainable:
            return f"{inner.name} would run BatchNormalization in training mode"
    return ""


def prefix_key(layers, weights, dataset_identity: str, image_size: int) -> str:
    """The cache key of what `layers`, holding `weights`, make of a dataset: of what they
    compute, not of what they were called (`canonical`)."""
    digest = hashlib.sha256()
    for layer in layers:
        digest.update(json.dumps([type(layer).__name__, canonical(layer.get_config())], sort_keys=True, default=str).encode())
    digest.update(weights_digest(weights).encode())
    digest.update(f"{dataset_identity}|{image_size}|{PREPROCESSING}".encode())
    return digest.hexdigest()[:40]


def canonical(config):
    """A layer's config as what it computes: every layer name (the layer's own, its inner
    layers', and the names its wiring refers to) replaced by its order of first appearance,
    and the `trainable` flags left out. A base made twice in one notebook has inner names
    with a suffix (input_layer_1), and a base frozen layer by layer says trainable at its
    top: neither changes what a frozen prefix (`split` took only those) makes of an image."""
    names: dict[str, str] = {}

    def name(value):
        return names.setdefault(value, f"layer{len(names)}") if isinstance(value, str) else value

    def walk(value, key=""):
        if isinstance(value, dict):
            out = {}
            for k in sorted(value):
                if k == "trainable":
                    continue
                item = value[k]
                if k == "name":
                    out[k] = name(item)
                elif k == "keras_history" and isinstance(item, (list, tuple)) and item:
                    out[k] = [name(item[0]), *item[1:]]
                elif k in ("input_layers", "output_layers"):
                    out[k] = walk_refs(item)
                else:
                    out[k] = walk(item, k)
            return out
        if isinstance(value, (list, tuple)):
            return [walk(item, key) for item in value]
        return value

    def walk_refs(value):  # [name, node, tensor], or a list of them
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
            return [name(value[0]), *value[1:]]
        if isinstance(value, (list, tuple)):
            return [walk_refs(item) for item in value]
        return value

    return walk(config)


_DIGESTS: list = []  # [(weights, its arrays' ids, digest)]: the last few lists hashed, held so that identity stays meaningful


def weights_digest(weights) -> str:
    """A hash of the arrays' types, shapes and bytes; remembered for the same list of
    read-only NumPy arrays, as the grader's own base weights are for every submission of
    a batch (the list itself is not to be changed either)."""
    for known, arrays, digest in _DIGESTS:
        if known is weights and arrays == tuple(map(id, weights)) and _read_only(weights):
            return digest
    hashed = hashlib.sha256()
    for weight in weights:
        value = np.ascontiguousarray(np.asarray(weight))
        hashed.update(str((value.dtype, value.shape)).encode())
        hashed.update(value.tobytes())
    digest = hashed.hexdigest()
    if _read_only(weights):
        _DIGESTS.insert(0, (weights, tuple(map(id, weights)), digest))
        del _DIGESTS[2:]
    return digest


def _read_only(weights) -> bool:
    return isinstance(weights, list) and all(isinstance(weight, np.ndarray) and not weight.flags.writeable for weight in weights)


class FeatureCache:
    """A bounded folder of feature arrays, with an in-process copy of the last one used.

    `get_or_build(key, build, keep)` keeps `keep(arrays)` in memory (say, the arrays as
    tensors, made once per process rather than once per submission) and returns it."""

    def __init__(self, directory: str, max_bytes: int = DEFAULT_MAX_BYTES):
        self.directory, self.max_bytes = directory, max_bytes
        self._memory: tuple[str, object] | None = None

    def path(self, key: str) -> str:
        return os.path.join(self.directory, f"features-{key}.npz")

    def get_or_build(self, key: str, build, keep=lambda arrays: arrays):
        if self._memory is not None and self._memory[0] == key:
            return self._memory[1]
        self._memory = None  # let the previous copy go before loading the next
        arrays = self._load(key)
        if arrays is None:
            arrays = build()
            self._store(key, arrays)
        self._memory = (key, keep(arrays))
        return self._memory[1]

    def _load(self, key: str):
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
        except (OSError, ValueError):
            return None
        os.utime(path)  # recently used
        return arrays

    def _store(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        os.makedirs(self.directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, **arrays)
            os.replace(temporary, self.path(key))
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        self.evict()

    def entries(self) -> list[dict]:
        if not os.path.isdir(self.directory):
            return []
        found = []
        for name in os.listdir(self.directory):
            if name.startswith("features-") and name.endswith(".npz"):
                stat = os.stat(os.path.join(self.directory, name))
                found.append({"key": name[len("features-"):-4], "bytes": stat.st_size, "used": stat.st_mtime})
        return sorted(found, key=lambda e: e["used"], reverse=True)

    def evict(self) -> list[str]:
        """Remove least recently used entries until the folder fits its bound."""
        removed, total = [], 0
        for entry in self.entries():
            total += entry["bytes"]
            if total > self.max_bytes:
                try:
                    os.unlink(self.path(entry["key"]))
                    removed.append(entry["key"])
                except FileNotFoundError:
                    pass  # another process evicted it first
        return removed

    def clear(self) -> int:
        entries = self.entries()
        for entry in entries:
            try:
                os.unlink(self.path(entry["key"]))
            except FileNotFoundError:
                pass
        self._memory = None
        return len(entries)


def compute_features(prefix_layers, images_batches) -> np.ndarray:
    """The prefix's output for every batch, in order, in inference mode."""
    outputs = []
    for images in images_batches:
        value = images
        for layer in prefix_layers:
            value = layer(value, training=False)
        outputs.append(np.asarray(value))
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)

