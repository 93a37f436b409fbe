"""Resolve an assignment once: its release, data, weights, sandbox and fingerprint.

A `Context` is what every grading worker needs, made once by the batch (in the
parent process, without TensorFlow) and sent to the workers as data: it is frozen and
picklable. Every instructor's mistake found here or by `check_assets` (which each
worker runs first, with TensorFlow: data in the wrong format, weights that do not load,
a strategy this machine cannot give) stops the run before anyone is graded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import grader
from grader import gradebook, release as release_mod, sandbox
from grader.errors import AssetError, ManifestError
from grader.manifest import Manifest
from grader.release import Release
from reference import data as flower_data
from reference import weights as weights_mod
from reference.hashing import file_sha256
from reference.make_assets import DEMO_FLOWERS

STATE = ".grader"  # the output folder's own folder: staged weights, the solution notebook, class facts


@dataclasses.dataclass(frozen=True)
class Context:
    """Everything grading one submission depends on besides the notebook itself."""

    manifest: Manifest
    release: Release
    dataset: flower_data.FlowerData
    weights: weights_mod.Weights
    keras_models: str  # the staged weights' folder, mounted read-only in the sandbox
    sandboxed: bool
    cache_dir: str | None  # the feature cache (None: every model trained in full)
    fingerprint: str  # a hash of all of the above and of the grader's own code
    max_parameters: int = 0  # largest model rebuilt (0: not known yet)

    @property
    def mounts(self) -> sandbox.Mounts:
        return sandbox.Mounts(data_dir=os.path.dirname(self.dataset.files[0]), keras_models=self.keras_models)


def default_cache_dir() -> str:
    """$GRADER_CACHE, else the user's cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("GRADER_CACHE") or os.path.join(base, "keras-grader", "features")


def resolve(manifest: Manifest, out_dir: str, *, data: str | None = None, weights: str | None = None,
            allow_unsandboxed: bool = False, cache_dir: str | None = None, use_cache: bool = True) -> Context:
    """Check and stage everything the assignment needs; raise a GraderError for what is missing."""
    sandboxed = sandbox.require_sandbox(allow_unsandboxed)
    release, _ = release_mod.build(manifest)
    dataset = dataset_for(manifest, data)
    chosen = weights_for(manifest, weights)
    keras_models = weights_mod.stage(chosen, os.path.join(out_dir, STATE, "keras"), manifest.image_size)
    context = Context(manifest, release, dataset, chosen, keras_models, sandboxed,
                      (cache_dir or default_cache_dir()) if use_cache else None, "", manifest.grader.max_parameters)
    return dataclasses.replace(context, fingerprint=fingerprint(context))


def dataset_for(manifest: Manifest, override: str | None) -> flower_data.FlowerData:
    pattern = override or manifest.data_pattern
    if pattern == "demo":
        pattern = os.path.join(DEMO_FLOWERS, "*.tfrec")
    elif not os.path.isabs(pattern) and override is None:
        pattern = os.path.join(manifest.directory, pattern)
    if os.path.isdir(pattern):
        raise AssetError(f"{pattern} is a folder; name the files in it", hint=f"pass --data '{os.path.join(pattern, '*.tfrec')}'")
    try:
        dataset = flower_data.split_files(pattern, manifest.image_size)
    except flower_data.DataError as error:
        raise AssetError(str(error)) from None
    if len({os.path.dirname(f) for f in dataset.files}) != 1:
        raise AssetError(f"the files of {pattern!r} must all be in one folder (it is mounted read-only in the sandbox)")
    return dataset


def check_assets(context: Context) -> None:
    """What takes TensorFlow to see: the data's format, the weights, the strategy."""
    _check_image_size(context.dataset)
    check_weights(context.weights, context.manifest.image_size)
    check_strategy(context.manifest.strategy)


def _check_image_size(dataset: flower_data.FlowerData) -> None:
    import tensorflow as tf

    record = next(iter(tf.data.TFRecordDataset(dataset.files[:1])), None)
    if record is None:
        raise AssetError(f"{dataset.files[0]} holds no records")
    try:
        parsed = tf.io.parse_single_example(record, {"image": tf.io.FixedLenFeature([], tf.string)})
        shape = tuple(tf.io.decode_jpeg(parsed["image"], channels=3).shape)
    except (tf.errors.OpError, ValueError) as error:
        raise AssetError(f"{dataset.files[0]} is not in the lab's TFRecord format (image as JPEG bytes): {error}") from None
    if shape[:2] != (dataset.image_size, dataset.image_size):
        raise AssetError(
            f"the dataset's images are {shape[0]}x{shape[1]} but the manifest's image_size is {dataset.image_size}",
            hint="set [data] image_size to the size of the images in the TFRecords",
        )


def weights_for(manifest: Manifest, override: str | None) -> weights_mod.Weights:
    chosen = override or (None if manifest.weights_file == "demo" else os.path.join(manifest.directory, manifest.weights_file))
    try:
        return weights_mod.resolve(chosen)
    except weights_mod.WeightsError as error:
        raise AssetError(str(error)) from None


def check_weights(weights: weights_mod.Weights, image_size: int) -> None:
    """The weights file loads into the base the lab builds (else every student would fail)."""
    try:
        weights_mod.pretrained_base(weights, image_size)
    except Exception as error:
        raise AssetError(
            f"the weights file {weights.path} does not load into MobileNetV2(include_top=False) at "
            f"{image_size}x{image_size}: {type(error).__name__}: {str(error)[:300]}",
            hint="pass Keras's mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_<size>_no_top.h5, or \"demo\"",
        ) from None


def check_strategy(preference: str) -> None:
    """The manifest's strategy is one this machine can give."""
    from reference.strategy import StrategyError, available

    try:
        available(preference)
    except StrategyError as error:
        raise ManifestError(str(error), hint='set [training] strategy = "auto" to use what this machine has') from None


def grader_code_hash() -> str:
    """A hash of the grader's own Python code (grader/ and reference/): a change regrades."""
    digest = hashlib.sha256()
    root = os.path.dirname(os.path.dirname(os.path.abspath(grader.__file__)))
    for package in ("grader", "reference"):
        for folder, dirs, files in sorted(os.walk(os.path.join(root, package))):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    digest.update(os.path.relpath(path, root).encode())
                    file_sha256(path, digest)
    return digest.hexdigest()[:16]


def fingerprint(context: Context) -> str:
    """What a grade depends on besides the notebook: a change here means grading again."""
    manifest = context.manifest
    with open(os.path.join(manifest.directory, "assignment.toml"), "rb") as handle:
        manifest_hash = hashlib.sha256(handle.read()).hexdigest()
    release_hash = hashlib.sha256(repr(context.release).encode()).hexdigest()
    return gradebook.fingerprint(
        manifest_hash,
        release_hash,
        flower_data.dataset_identity(context.dataset),
        file_sha256(context.weights.path),
        grader.__version__,
        grader_code_hash(),
        str(context.sandboxed),
    )
