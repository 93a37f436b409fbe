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
import json
import os
import tomllib

import grader
from grader import sandbox
from grader.config import labs, release as release_mod
from grader.config.manifest import Manifest
from grader.config.release import Release
from grader.faults import GraderError, ManifestError
from grader.store import gradebook
from grader.store.storage import STATE
from reference import data as data_mod
from reference import weights as weights_mod
from reference.hashing import file_sha256



@dataclasses.dataclass(frozen=True)
class Context:
    """Everything grading one submission depends on besides the notebook itself."""

    manifest: Manifest
    release: Release
    dataset: data_mod.Dataset
    weights: weights_mod.Weights | None  # None: the lab has no pretrained base
    keras_models: str  # the staged weights' folder, mounted read-only in the sandbox (empty without a base)
    sandboxed: bool
    cache_dir: str | None  # the feature cache (None: every model trained in full)
    fingerprint: str  # a hash of all of the above and of the grader's own code
    max_parameters: int = 0  # largest model rebuilt (0: no bound): the manifest's, else set by `budget.settled`
    budget: object = None  # the grader's own work on one notebook (a grader.grading.budget.Budget), set by `budget.settled`

    @property
    def lab(self):
        return self.manifest.lab

    @property
    def mounts(self) -> sandbox.Mounts:
        return sandbox.Mounts(data_dir=self.dataset.folder, keras_models=self.keras_models)

    def plan(self) -> sandbox.Plan:
        """How a submission's run is made: mounts, limits, what its cells read, the modules
        it imports while it waits for its cells (the assignment's locked cells' own)."""
        from grader.config import cells

        manifest = self.manifest
        warm = [name for c in self.release.cells if c.kind == "locked" for name in cells.imported_modules(c.source)]
        count_limit = len(self.dataset.files) + 1 if self.lab.kind == "dataset" else 0
        return sandbox.Plan(self.mounts, manifest.limits, manifest.image_size, manifest.batch_size, self.sandboxed,
                            tuple(dict.fromkeys(warm)), self.lab.environment, self.lab.answer, self.lab.kind, count_limit)


def user_cache() -> str:
    """The grader's folder in the user's cache ($XDG_CACHE_HOME or ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "keras-grader")


def default_cache_dir() -> str:
    """$GRADER_CACHE, else the user's cache folder."""
    return os.environ.get("GRADER_CACHE") or os.path.join(user_cache(), "features")


def resolve(manifest: Manifest, out_dir: str, *, data: str | None = None, weights: str | None = None,
            allow_unsandboxed: bool = False, cache_dir: str | None = None, use_cache: bool = True) -> Context:
    """Check and stage everything the assignment needs; raise a GraderError for what is missing."""
    sandboxed = sandbox.require_sandbox(allow_unsandboxed)
    labs.load(manifest)  # its checks register themselves; a broken module stops the run here
    release, _ = release_mod.build(manifest)
    dataset = dataset_for(manifest, data)
    chosen = weights_for(manifest, weights)
    keras_models = os.path.join(out_dir, STATE, "keras", "models")
    if chosen is not None:
        keras_models = weights_mod.stage(chosen, os.path.join(out_dir, STATE, "keras"), manifest.lab.base, manifest.image_size)
    else:
        os.makedirs(keras_models, exist_ok=True)
    context = Context(manifest, release, dataset, chosen, keras_models, sandboxed,
                      (cache_dir or default_cache_dir()) if use_cache else None, "", manifest.grader.max_parameters)
    return dataclasses.replace(context, fingerprint=fingerprint(context))


def dataset_for(manifest: Manifest, override: str | None) -> data_mod.Dataset:
    pattern = override or manifest.data_pattern
    if pattern == "demo":
        pattern = labs.demo(manifest, "demo_data", manifest.data_format)
    elif not os.path.isabs(pattern) and override is None:
        pattern = os.path.join(manifest.directory, pattern)
    if os.path.isdir(pattern):
        example = os.path.join(pattern, "*.tfrec" if manifest.data_format == "tfrecord" else "*/*.jpg")
        raise GraderError(f"{pattern} is a folder; name the files in it", hint=f"pass --data '{example}'")
    lab = manifest.lab
    try:
        dataset = data_mod.split_files(pattern, manifest.data_format, manifest.image_size, lab.classes, lab.validation_split,
                                       manifest.image_feature, manifest.label_feature)
    except data_mod.DataError as error:
        raise GraderError(str(error)) from None
    folders = {os.path.dirname(f) for f in dataset.files}
    if manifest.data_format == "folders":
        folders = {os.path.dirname(folder) for folder in folders}
    if len(folders) != 1:
        raise GraderError(f"the files of {pattern!r} must all be in one folder (it is mounted read-only in the sandbox)")
    return dataset


def check_assets(context: Context) -> None:
    """What takes TensorFlow to see: the data's format, the weights, the strategy."""
    _check_image_size(context.dataset, sized=context.lab.kind == "model")
    if context.weights is not None:
        check_weights(context.lab.base, context.weights, context.manifest.image_size)
    check_strategy(context.manifest.strategy)


def _check_image_size(dataset: data_mod.Dataset, sized: bool = True) -> None:
    """The data's pictures decode, and (`sized`: for a model the grader trains) have the
    manifest's size; a dataset lab decodes pictures of any size, as they are."""
    try:
        shape = data_mod.first_image_shape(dataset)
    except data_mod.DataError as error:
        raise GraderError(str(error)) from None
    if sized and shape[:2] != (dataset.image_size, dataset.image_size):
        raise GraderError(
            f"the dataset's images are {shape[0]}x{shape[1]} but the manifest's image_size is {dataset.image_size}",
            hint="set [data] image_size to the size of the images",
        )


def weights_for(manifest: Manifest, override: str | None) -> weights_mod.Weights | None:
    base = manifest.lab.base
    if base is None:
        if override is not None:  # the instructor meant another lab, or another manifest
            raise GraderError(f"--weights {override}: the lab {manifest.name} has no pretrained base ([lab.base]) to load weights into",
                             hint="leave out --weights, or declare the base in [lab.base]")
        return None
    if override is None and manifest.weights_file == "demo":
        path, kind = labs.demo(manifest, "demo_weights"), "demo"
    else:
        path, kind = override or os.path.join(manifest.directory, manifest.weights_file), "provided"
    try:
        return weights_mod.resolve(path, kind, base)
    except weights_mod.WeightsError as error:
        raise GraderError(str(error)) from None


def check_weights(base: weights_mod.Base, weights: weights_mod.Weights, image_size: int) -> None:
    """The weights file loads into the base the lab builds (else every student would fail)."""
    try:
        weights_mod.pretrained_base(base, weights, image_size)
    except Exception as error:
        raise GraderError(
            f"the weights file {weights.path} does not load into {base.application}(include_top=False) at "
            f"{image_size}x{image_size}: {type(error).__name__}: {str(error)[:300]}",
            hint=f"pass Keras's {base.keras_file.format(size='<size>')}, or \"demo\"",
        ) from None


def check_strategy(preference: str) -> None:
    """The manifest's strategy is one this machine can give."""
    from reference.strategy import StrategyError, available

    try:
        available(preference)
    except StrategyError as error:
        raise ManifestError(str(error), hint='set [training] strategy = "auto" to use what this machine has') from None


def grader_code_hash() -> str:
    """A hash of the grader's own Python code (grader/, reference/, labs/): a change regrades."""
    digest = hashlib.sha256()
    root = os.path.dirname(os.path.dirname(os.path.abspath(grader.__file__)))
    for package in ("grader", "reference", "labs"):
        for folder, dirs, files in sorted(os.walk(os.path.join(root, package))):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    digest.update(os.path.relpath(path, root).encode())
                    file_sha256(path, digest)
    return digest.hexdigest()[:16]


POLICY_TABLES = ("class",)  # the manifest's tables applied to stored results: a change re-scores, never regrades


def grading_part_hash(path: str) -> str:
    """The manifest's hash without its policy (`[class]`: the due date, the late policy,
    which submission counts, what students see): changing those re-scores the class from
    the gradebook in seconds; comments and layout change nothing either."""
    with open(path, "rb") as handle:
        values = tomllib.load(handle)
    kept = {table: value for table, value in values.items() if table not in POLICY_TABLES}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(context: Context) -> str:
    """What a grade depends on besides the notebook: a change here means grading again."""
    manifest = context.manifest
    manifest_hash = grading_part_hash(os.path.join(manifest.directory, "assignment.toml"))
    release_hash = hashlib.sha256(repr(context.release).encode()).hexdigest()
    module = os.path.join(manifest.directory, manifest.lab.module) if manifest.lab.module else ""
    module_hash = file_sha256(module) if module else "no module"
    return gradebook.fingerprint(
        manifest_hash,
        release_hash,
        module_hash,
        data_mod.dataset_identity(context.dataset),
        file_sha256(context.weights.path) if context.weights is not None else "no base",
        grader.__version__,
        grader_code_hash(),
        str(context.sandboxed),
        f"settled above {manifest.settled_above}",  # where training stops early (calibration trains in full)
    )
