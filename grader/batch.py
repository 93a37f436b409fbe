"""Grade a batch: stage the assets, grade each submission, write every report.

Each submission's result.json and scorecard.html are written as soon as it is graded
(atomically), so a batch that is stopped keeps what it finished.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import hashlib
import multiprocessing
import multiprocessing.util
import os
import re
import sys

import tqdm

import grader
from grader import cgroups, gradebook, notebook, pipeline, release as release_mod, report, sandbox
from grader.errors import AssetError, GraderError
from grader.evidence import Setting
from grader.manifest import Manifest
from grader.results import SubmissionResult
from grader.storage import write_atomic
from reference import data as flower_data
from reference.cache import FeatureCache
from reference.hashing import file_sha256
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
    jobs: int = 0  # worker processes; 0: from cores and memory
    regrade: bool = False  # grade again what the gradebook already holds


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
        name = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "_", stem)).strip("._") or "submission"
        name = name[:80]
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name}-{n}", n + 1
        taken.add(unique)
        names.append(unique)
    return names


def prepare(manifest: Manifest, options: Options) -> pipeline.Batch:
    sandboxed = sandbox.require_sandbox(options.allow_unsandboxed)
    cgroups.sweep_stale()
    sandbox.sweep_stale_runs()
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
    return pipeline.Batch.create(manifest, release, setting, mounts, sandboxed, ahead=True)


def default_jobs() -> int:
    """One worker per two cores, and no more than one per 4 GiB of memory.

    A worker keeps about two cores busy: its pipeline runs the next submission's sandbox
    while it trains the last one's model (measured: a batch of 30 on two cores took
    195 s with one worker and 199 s with two)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 8 * 2**30
    return max(1, min((os.cpu_count() or 1) // 2, memory // (4 * 2**30)))


def setting_fingerprint(manifest: Manifest, batch: pipeline.Batch) -> str:
    """What a grade depends on besides the notebook: a change here means regrading."""
    with open(os.path.join(manifest.directory, "assignment.toml"), "rb") as handle:
        manifest_hash = hashlib.sha256(handle.read()).hexdigest()
    setting = batch.setting
    return gradebook.fingerprint(
        manifest_hash,
        flower_data.dataset_identity(setting.dataset),
        file_sha256(setting.weights.path),
        grader.__version__,
        str(batch.sandboxed),
    )


def grade(manifest: Manifest, submissions: list[str], options: Options) -> tuple[list[SubmissionResult], dict[str, str]]:
    """Grade every submission not already in the gradebook; write every report."""
    files = collect(submissions)
    batch = prepare(manifest, options)
    try:
        return _grade_batch(manifest, batch, files, options)
    finally:
        batch.close()


def _grade_batch(manifest: Manifest, batch: pipeline.Batch, files: list[str], options: Options):
    setting = setting_fingerprint(manifest, batch)
    os.makedirs(options.out_dir, exist_ok=True)
    book = gradebook.Gradebook(os.path.join(options.out_dir, "gradebook.sqlite"))
    results: dict[str, SubmissionResult] = {}
    todo: dict[str, list[tuple[str, str]]] = {}  # sha256 -> [(path, name)], graded once per content
    # With workers, this process grades only the reference: no sandbox to start ahead here.
    batch.runner.ahead = min(options.jobs or default_jobs(), len(files)) <= 1
    reference = _reference(manifest, batch, book, setting, options)
    for path, name in zip(files, display_names(files)):
        digest = file_sha256(path)
        stored = None if options.regrade else book.get(manifest.name, manifest.version, setting, digest)
        if stored is not None:
            results[name] = _as_submitted(stored[0], path, name)
            _write_reports(results[name], path, options.out_dir, reference)
        else:
            todo.setdefault(digest, []).append((path, name))
    progress = tqdm.tqdm(total=len(files), initial=len(results), unit="notebook", disable=options.quiet, file=sys.stderr, dynamic_ncols=True)
    try:
        for digest, result in _grade_each(manifest, batch, options, [(d, places[0]) for d, places in todo.items()]):
            if not result.provenance.get("grader_error"):
                book.put(setting, result)
            for path, name in todo[digest]:
                results[name] = _as_submitted(result, path, name)
                _write_reports(results[name], path, options.out_dir, reference)
                progress.update(1)
            shown = f"{result.score:g}/{result.max_score:g}" if result.status == "graded" else "ungradable"
            progress.set_postfix_str(f"{todo[digest][0][1]}: {shown}")
    finally:
        progress.close()
        book.close()
    ordered = [results[name] for name in sorted(results)]
    return ordered, report.write_class(ordered, options.out_dir, manifest.title)


def _reference(manifest: Manifest, batch: pipeline.Batch, book, setting: str, options: Options) -> SubmissionResult:
    """The lab's solution graded in the same harness: its curves go beside each student's."""
    from grader import scenarios

    path = os.path.join(options.out_dir, report.STATE, "solution.ipynb")
    content = scenarios.make(batch.release, release_mod.build(manifest)[1], ["solution.ipynb"])["solution.ipynb"]
    write_atomic(path, content)
    stored = None if options.regrade else book.get(manifest.name, manifest.version, setting, file_sha256(path))
    if stored is not None:
        result = stored[0]
    else:
        result = pipeline.grade_safely(path, "reference-solution", batch)
        book.put(setting, result)
    report.save_reference(result, options.out_dir)
    return result


def _write_reports(result: SubmissionResult, path: str, out_dir: str, reference: SubmissionResult) -> None:
    folder = os.path.join(out_dir, result.submission)
    try:
        report.write_notebook(notebook.read_submission(path), folder, result.submission)
    except notebook.Unreadable:
        pass  # the scorecard says why
    except Exception as error:  # rendering a strange notebook must not stop the batch
        print(f"grader: could not render {path} as HTML: {type(error).__name__}: {error}", file=sys.stderr)
    report.write_submission(result, out_dir, reference)


def _as_submitted(result: SubmissionResult, path: str, name: str) -> SubmissionResult:
    return dataclasses.replace(result, submission=name, file=os.path.basename(path))


def _grade_each(manifest: Manifest, batch: pipeline.Batch, options: Options, work):
    """(sha256, result) for each (sha256, (path, name)), in this process or in a pool."""
    jobs = min(options.jobs or default_jobs(), len(work))
    if jobs <= 1:
        yield from pipeline.grade_all([(digest, path, name) for digest, (path, name) in work], batch)
        return
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: TensorFlow does not survive fork
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(manifest.directory, options)) as pool:
        futures = {pool.submit(_grade_in_worker, path, name): digest for digest, (path, name) in work}
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], gradebook.result_from_json(future.result())


_WORKER_BATCH: pipeline.Batch | None = None


def _start_worker(assignment_dir: str, options: Options) -> None:
    """Each worker imports TensorFlow and stages the assets once, then grades many notebooks."""
    global _WORKER_BATCH
    from grader import manifest as manifest_mod
    from reference.training import quiet_tensorflow

    quiet_tensorflow()
    _WORKER_BATCH = prepare(manifest_mod.load(assignment_dir), options)
    # A worker ends by os._exit, without atexit: stop its waiting sandbox as it goes.
    multiprocessing.util.Finalize(None, _WORKER_BATCH.close, exitpriority=10)


def _grade_in_worker(path: str, name: str) -> dict:
    return pipeline.grade_safely(path, name, _WORKER_BATCH).to_json()
