"""Grade a batch: resolve the assignment, grade each submission in workers, write every report.

Each submission's result.json and scorecard.html are written as soon as it is graded
(atomically), so a batch that is stopped keeps what it finished. The gradebook keeps
every verdict (never a failure of the grader's own), so a rerun grades only what is new.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import sys

import tqdm

from grader import cgroups, gradebook, notebook, preflight, report, sandbox
from grader import context as context_mod
from grader.context import Context
from grader.errors import GraderError
from grader.executors import LocalPool, Work
from grader.manifest import Manifest
from grader.results import SubmissionResult
from reference.hashing import file_sha256

BUDGET_MULTIPLE = 10  # default largest model: this many times the lab's solution's parameters
GIVE_UP_AFTER = 3  # notebooks in a row the grader failed on (each after its attempts) before the batch stops


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
    worker: object = None  # the workers' main function (default: executors.serve; tests inject faults here)


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


def grade(manifest: Manifest, submissions: list[str], options: Options) -> tuple[list[SubmissionResult], dict[str, str]]:
    """Grade every submission not already in the gradebook; write every report."""
    files = collect(submissions)
    os.makedirs(options.out_dir, exist_ok=True)
    cgroups.sweep_stale()
    sandbox.sweep_stale_runs()
    context = context_mod.resolve(
        manifest, options.out_dir, data=options.data, weights=options.weights, allow_unsandboxed=options.allow_unsandboxed,
        cache_dir=options.cache_dir, use_cache=options.use_cache,
    )
    book = gradebook.Gradebook(os.path.join(options.out_dir, "gradebook.sqlite"))
    try:
        return _grade_batch(context, files, options, book)
    finally:
        book.close()


def check(manifest: Manifest, options: Options) -> preflight.Preflight:
    """Preflight alone: everything `grade` checks before grading anyone (see grader/preflight.py)."""
    os.makedirs(options.out_dir, exist_ok=True)
    context = context_mod.resolve(
        manifest, options.out_dir, data=options.data, weights=options.weights, allow_unsandboxed=options.allow_unsandboxed,
        cache_dir=options.cache_dir, use_cache=options.use_cache,
    )
    book = gradebook.Gradebook(os.path.join(options.out_dir, "gradebook.sqlite"))
    workers = _Workers(context, 1, options.worker)
    try:
        return preflight.run(context, workers.get, book, options.out_dir, options.regrade)
    finally:
        workers.close()
        book.close()


class _Workers:
    """The pool, started only when something needs grading."""

    def __init__(self, context: Context, jobs: int, worker=None):
        self.context, self.jobs, self.worker, self.pool = context, jobs, worker, None

    def get(self) -> LocalPool:
        if self.pool is None:
            limits = self.context.manifest.grader
            extra = {"worker": self.worker} if self.worker else {}
            self.pool = LocalPool(self.context, self.jobs, limits.attempts, limits.memory_mb, **extra).__enter__()
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.__exit__(None, None, None)


def _grade_batch(context: Context, files: list[str], options: Options, book: gradebook.Gradebook):
    manifest = context.manifest
    results: dict[str, SubmissionResult] = {}
    paths: dict[str, str] = {}  # name -> submitted file
    todo: dict[str, list[tuple[str, str]]] = {}  # sha256 -> [(path, name)], graded once per content
    for path, name in zip(files, display_names(files)):
        digest = file_sha256(path)
        stored = None if options.regrade else book.get(manifest.name, manifest.version, context.fingerprint, digest)
        if stored is not None:
            results[name], paths[name] = _as_submitted(stored[0], path, name), path
        else:
            todo.setdefault(digest, []).append((path, name))
    workers = _Workers(context, min(options.jobs or default_jobs(), max(1, len(todo))), options.worker)
    progress = None
    try:
        reference = preflight.run(context, workers.get, book, options.out_dir, options.regrade).solution
        report.save_reference(reference, options.out_dir)
        for name, result in results.items():
            _write_reports(result, paths[name], options.out_dir, reference)
        budget = manifest.grader.max_parameters or BUDGET_MULTIPLE * int(reference.model.get("total_params", 0))
        progress = tqdm.tqdm(total=len(files), initial=len(results), unit="notebook", disable=options.quiet, file=sys.stderr, dynamic_ncols=True)
        if todo:
            pool = workers.get()
            pool.set("max_parameters", budget)
            failed_in_a_row = 0
            for work, result in pool.grade(Work(digest, *places[0]) for digest, places in todo.items()):
                if not result.provenance.get("grader_error"):
                    book.put(context.fingerprint, result)
                    failed_in_a_row = 0
                else:
                    failed_in_a_row += 1
                    if failed_in_a_row >= GIVE_UP_AFTER:
                        raise GraderError(
                            f"the grader failed on {failed_in_a_row} notebooks in a row ({result.reason}); "
                            "the batch stops rather than give the rest of the class that scorecard",
                            hint="the results so far are kept; fix the cause and run again: what is done is not graded twice",
                        )
                for path, name in todo[work.key]:
                    results[name] = _as_submitted(result, path, name)
                    _write_reports(results[name], path, options.out_dir, reference)
                    progress.update(1)
                shown = f"{result.score:g}/{result.max_score:g}" if result.status == "graded" else "ungradable"
                progress.set_postfix_str(f"{work.name}: {shown}")
    finally:
        if progress is not None:
            progress.close()
        workers.close()
    ordered = [results[name] for name in sorted(results)]
    return ordered, report.write_class(ordered, options.out_dir, manifest.title)


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
