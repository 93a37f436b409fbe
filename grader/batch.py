"""Grade a batch: stage the assets, grade each submission, write every report.

Each submission's result.json and scorecard.html are written as soon as it is graded
(atomically), so a batch that is stopped keeps what it finished.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import sys
import time

from grader import pipeline, release as release_mod, report, sandbox
from grader.errors import AssetError, GraderError
from grader.evidence import Setting
from grader.manifest import Manifest
from grader.results import SubmissionResult
from reference import data as flower_data
from reference.cache import FeatureCache
from reference import training, weights as weights_mod
from reference.make_assets import DEMO_FLOWERS


@dataclasses.dataclass(frozen=True)
class Options:
    out_dir: str
    data: str | None = None  # a glob of .tfrec files, overriding the manifest
    weights: str | None = None  # a weights file, overriding the manifest
    allow_unsandboxed: bool = False
    quiet: bool = False
    cache_dir: str | None = None  # None: the user's cache folder
    use_cache: bool = True  # the fast path; off trains every model in full


def default_cache_dir() -> str:
    """$GRADER_CACHE, else the user's cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("GRADER_CACHE") or os.path.join(base, "keras-grader", "features")


def dataset_for(manifest: Manifest, override: str | None) -> flower_data.FlowerData:
    pattern = override or manifest.data_pattern
    if pattern == "demo":
        pattern = os.path.join(DEMO_FLOWERS, "*.tfrec")
    elif not os.path.isabs(pattern) and override is None:
        pattern = os.path.join(manifest.directory, pattern)
    try:
        dataset = flower_data.split_files(pattern, manifest.image_size)
    except flower_data.DataError as error:
        raise AssetError(str(error)) from None
    if len({os.path.dirname(f) for f in dataset.files}) != 1:
        raise AssetError(f"the files of {pattern!r} must all be in one folder (it is mounted read-only in the sandbox)")
    _check_image_size(dataset)
    return dataset


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


def collect(paths: list[str]) -> list[str]:
    """Submission files: the files named, and every file inside the folders named."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(
                p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True) if os.path.isfile(p) and not os.path.islink(p)
            )
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise GraderError(f"no such submission file or folder: {path}")
    if not files:
        raise GraderError(f"no submission files in {', '.join(paths)}")
    return files


def display_names(files: list[str]) -> list[str]:
    """A safe, unique folder name for each submission, from its file name."""
    names, taken = [], set()
    for path in files:
        stem = os.path.splitext(os.path.basename(path))[0]
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "submission"
        name = name[:80]
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name}-{n}", n + 1
        taken.add(unique)
        names.append(unique)
    return names


def prepare(manifest: Manifest, options: Options) -> pipeline.Batch:
    sandboxed = sandbox.require_sandbox(options.allow_unsandboxed)
    release, _ = release_mod.build(manifest)
    dataset = dataset_for(manifest, options.data)
    weights = weights_for(manifest, options.weights)
    keras_models = weights_mod.stage(weights, os.path.join(options.out_dir, ".grader", "keras"), manifest.image_size)
    setting = Setting(
        image_size=manifest.image_size,
        training=training.Settings(manifest.epochs, manifest.batch_size, manifest.seed, manifest.image_size),
        dataset=dataset,
        weights=weights,
        placement_preference=manifest.strategy,
        cache=FeatureCache(options.cache_dir or default_cache_dir()) if options.use_cache else None,
    )
    mounts = sandbox.Mounts(data_dir=os.path.dirname(dataset.files[0]), keras_models=keras_models)
    return pipeline.Batch.create(manifest, release, setting, mounts, sandboxed)


def grade(manifest: Manifest, submissions: list[str], options: Options) -> tuple[list[SubmissionResult], dict[str, str]]:
    files = collect(submissions)
    batch = prepare(manifest, options)
    threshold = _threshold(manifest)
    results = []
    started = time.monotonic()
    for index, (path, name) in enumerate(zip(files, display_names(files)), start=1):
        result = pipeline.grade_submission(path, name, batch)
        report.write_submission(result, options.out_dir, threshold)
        results.append(result)
        if not options.quiet:
            elapsed = time.monotonic() - started
            eta = elapsed / index * (len(files) - index)
            shown = f"{result.score:g}/{result.max_score:g}" if result.status == "graded" else "ungradable"
            print(f"[{index}/{len(files)}] {name}: {shown}  ({elapsed:.0f}s elapsed, ~{eta:.0f}s left)", file=sys.stderr, flush=True)
    paths = report.write_class(results, options.out_dir, manifest.title)
    return results, paths


def _threshold(manifest: Manifest) -> float | None:
    return next((float(c.params["threshold"]) for c in manifest.checks if "threshold" in c.params), None)
