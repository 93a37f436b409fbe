"""Grade a class: find each file's student, grade what is new in workers, write every page.

    submissions (files, folders, roster) -> students -> gradebook -> preflight ->
    workers grade what is new -> gradebook -> the class's pages, from the gradebook

Each result goes into the gradebook as soon as it exists, and each submission's pages
are written as soon as it is graded (atomically), so a batch that is stopped keeps
what it finished. The class pages are made from the gradebook at the end, so they show
the whole class, whatever subset this run graded. The gradebook keeps every verdict
and never a failure of the grader's own, so a rerun grades only what is new.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import tqdm

from grader import budget, cgroups, classreport, classview, gradebook, notebook, preflight, report, sandbox, submissions
from grader import context as context_mod
from grader.context import Context
from grader.errors import GraderError
from grader.executors import Executor, LocalPool, Work
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
    roster: str | None = None  # the class's roster CSV (kept in the gradebook for later runs)
    identify: str = "auto"  # how a file's student is found (see grader/submissions.py)
    student: str | None = None  # grade again only this student's submissions
    worker: object = None  # the workers' main function (default: executors.serve; tests inject faults here)
    cluster: str | None = None  # a Dask scheduler's address, or local:N (grader/cluster.py); None: worker processes here


@dataclasses.dataclass(frozen=True)
class Graded:
    """What a run leaves: each student's counted result, the pages, and what to look at."""

    results: list[SubmissionResult]  # one per student with a graded submission, the one that counts
    paths: dict[str, str]  # "index", "grades"
    notes: list[str]  # unknown students, students without a submission, ...
    view: classview.ClassView


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


def prepare_output(out_dir: str) -> None:
    """The output folder, made and checked writable before anything slow starts."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, ".grader-write-test")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as error:
        raise GraderError(f"cannot write to the output folder {out_dir}: {error.strerror}",
                          hint="pass --out a folder you can write to") from None


def grade(manifest: Manifest, paths: list[str], options: Options) -> Graded:
    """Grade every submission not already in the gradebook; write every page of the class."""
    found = submissions.collect(paths)
    prepare_output(options.out_dir)
    book = gradebook.Gradebook(os.path.join(options.out_dir, "gradebook.sqlite"))
    try:
        roster = roster_of(book, manifest, options)
        chosen = submissions.identify(found, roster, options.identify)
        if options.student is not None:
            chosen = [s for s in chosen if s.student == options.student]
            if not chosen:
                raise GraderError(f"no submission of {options.student!r} in {', '.join(paths)}",
                                  hint="pass the class's submissions folder and a student id as the roster or folder names it")
        context = start(manifest, options)
        return _grade_class(context, chosen, found, options, book)
    finally:
        book.close()


def start(manifest: Manifest, options: Options) -> Context:
    """Sweep what a killed grader left, then resolve the assignment (see grader/context.py)."""
    cgroups.sweep_stale()
    sandbox.sweep_stale_runs()
    return _resolve(manifest, options)


def _resolve(manifest: Manifest, options: Options) -> Context:
    return context_mod.resolve(
        manifest, options.out_dir, data=options.data, weights=options.weights, allow_unsandboxed=options.allow_unsandboxed,
        cache_dir=options.cache_dir, use_cache=options.use_cache,
    )


def roster_of(book: gradebook.Gradebook, manifest: Manifest, options: Options) -> submissions.Roster:
    """The roster given (and keep it), else the one the gradebook kept from an earlier run."""
    if options.roster:
        roster = submissions.read_roster(options.roster)
        book.set_students(manifest.name, {key: dataclasses.asdict(s) for key, s in roster.students.items()})
        book.set_files(manifest.name, roster.files)
        return roster
    students = {key: submissions.Student(**fields) for key, fields in book.students(manifest.name).items()}
    return submissions.Roster(students, book.files(manifest.name))


def check(manifest: Manifest, options: Options) -> preflight.Preflight:
    """Preflight alone: everything `grade` checks before grading anyone (see grader/preflight.py)."""
    prepare_output(options.out_dir)
    context = _resolve(manifest, options)
    book = gradebook.Gradebook(os.path.join(options.out_dir, "gradebook.sqlite"))
    workers = _Workers(context, 1, options.worker, options.cluster)
    try:
        return preflight.run(context, workers.get, book, options.out_dir, options.regrade)
    finally:
        workers.close()
        book.close()


class _Workers:
    """The pool (worker processes here, or a Dask cluster), started only when something needs grading."""

    def __init__(self, context: Context, jobs: int, worker=None, cluster: str | None = None):
        self.context, self.jobs, self.worker, self.cluster, self.pool = context, jobs, worker, cluster, None

    def get(self) -> Executor:
        if self.pool is None:
            limits = self.context.manifest.grader
            extra = {"worker": self.worker} if self.worker else {}
            if self.cluster:
                from grader.cluster import DaskPool  # imports Dask only when it is asked for

                pool = DaskPool(self.context, self.cluster, limits.attempts, limits.memory_mb, **extra)
            else:
                pool = LocalPool(self.context, self.jobs, limits.attempts, limits.memory_mb, **extra)
            self.pool = pool.__enter__()
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.__exit__(None, None, None)

    @property
    def peak_bytes(self) -> int:
        return self.pool.peak_bytes if self.pool is not None else 0


def _grade_class(context: Context, chosen: list[submissions.Submission], found, options: Options, book: gradebook.Gradebook) -> Graded:
    manifest = context.manifest
    facts = classview.ClassFacts.of(manifest, context.fingerprint)
    roots = dict(found)
    todo: dict[str, list[submissions.Submission]] = {}  # sha256 -> its submissions, graded once per content
    for submitted in chosen:
        digest = file_sha256(submitted.path)
        relative = _relative(submitted.path, roots[submitted.path])
        book.record(manifest.name, gradebook.Stored(submitted.student, relative, digest, submitted.submitted_at, submitted.how, submitted.known))
        fresh = options.regrade or options.student is not None
        if fresh or book.get(manifest.name, manifest.version, context.fingerprint, digest) is None:
            todo.setdefault(digest, []).append(submitted)
    folders = _folders(book, facts, chosen, roots)
    workers = _Workers(context, min(options.jobs or default_jobs(), max(1, len(todo))), options.worker, options.cluster)
    progress = tqdm.tqdm(total=sum(len(v) for v in todo.values()), unit="notebook", disable=options.quiet, file=sys.stderr, dynamic_ncols=True)
    failed: list[SubmissionResult] = []
    try:
        checked = preflight.run(context, workers.get, book, options.out_dir, options.regrade)
        reference = checked.solution
        report.save_reference(reference, options.out_dir)
        # The lab's solution or playground handed in as released: the preflight has just
        # graded that very content (and the gradebook holds it), so it is not graded again.
        by_digest = {result.sha256: result for result in (checked.solution, checked.playground)}
        for digest in checked.graded & todo.keys():
            for submitted in todo.pop(digest):
                _write_pages(submitted, by_digest[digest], os.path.join(options.out_dir, folders[submitted.path]))
                progress.update(1)
        if todo:
            pool = workers.get()
            pool.set("max_parameters", model_budget(manifest, reference))
            pool.set("budget", budget_for(manifest, reference))
            failed = _grade_todo(pool, todo, context, book, folders, options, progress)
    finally:
        progress.close()
        workers.close()
    _save_run_facts(options.out_dir, workers.peak_bytes, sum(len(v) for v in todo.values()))
    classreport.save_facts(facts, options.out_dir)
    view = classview.build(book, facts)
    paths = classreport.write(view, options.out_dir, reference)
    return _graded(view, paths, failed)


def _graded(view: classview.ClassView, paths: dict, failed: list[SubmissionResult]) -> Graded:
    """The run's outcome: each student's counted result, and this run's results the grader
    failed on (shown on their scorecards, never stored), and what to look at."""
    counted = {row.student: classreport.shown(row, row.counted) for row in view.rows if row.counted is not None and row.counted.result is not None}
    counted.update({result.submission: result for result in failed if result.submission not in counted})
    notes = view.notes()
    if failed:
        notes.append(f"the grader failed on these (not stored; run again to grade them): {', '.join(sorted({r.submission for r in failed}))}")
    return Graded([counted[name] for name in sorted(counted)], paths, notes, view)


def model_budget(manifest: Manifest, reference: SubmissionResult) -> int:
    """The largest model the workers rebuild: the manifest's `[grader] max_parameters`, else a
    multiple of the solution's, never below a bound on parameters that a check declares (the
    lab's own text wins over a default of the grader's)."""
    if manifest.grader.max_parameters:
        return manifest.grader.max_parameters
    declared = [int(spec.params["parameters"][1]) for spec in manifest.checks
                if isinstance(spec.params.get("parameters"), (list, tuple)) and len(spec.params["parameters"]) == 2]
    return max([BUDGET_MULTIPLE * int(reference.model.get("total_params", 0)), *declared])


def budget_for(manifest: Manifest, reference: SubmissionResult) -> budget.Budget:
    """The budget of the workers' own work on each notebook (grader/budget.py)."""
    return budget.for_class(manifest, reference, model_budget(manifest, reference))


class Failures:
    """Watches the grader's own failures: after GIVE_UP_AFTER notebooks in a row, it asks
    the lab's solution whether the sandbox still works, and raises if it does not."""

    def __init__(self, context: Context):
        self.context, self.in_a_row = context, 0

    def saw(self, result: SubmissionResult) -> None:
        if not result.provenance.get("grader_error"):
            self.in_a_row = 0
            return
        self.in_a_row += 1
        if self.in_a_row >= GIVE_UP_AFTER:
            # Broken sandbox, or notebooks that make themselves ungradable? Ask the solution.
            problem = preflight.sandbox_problem(self.context)
            if problem:
                raise GraderError(
                    f"the grader failed on {self.in_a_row} notebooks in a row, and the sandbox no longer runs "
                    f"the lab's own solution: {problem}",
                    hint="the results so far are kept; fix the cause and run again: what is done is not graded twice",
                )
            self.in_a_row = 0


def _grade_todo(pool, todo, context: Context, book: gradebook.Gradebook, folders, options: Options, progress) -> list[SubmissionResult]:
    """Grade what is new; returns the results the grader failed on (shown, never stored)."""
    failures, failed = Failures(context), []
    works = (Work(digest, places[0].path, places[0].student) for digest, places in todo.items())
    for work, result in pool.grade(works):
        failures.saw(result)
        if not result.provenance.get("grader_error"):
            book.put(context.fingerprint, result)
        for submitted in todo[work.key]:
            shown = _write_pages(submitted, result, os.path.join(options.out_dir, folders[submitted.path]))
            if result.provenance.get("grader_error"):
                failed.append(shown)
            progress.update(1)
        said = f"{result.score:g}/{result.max_score:g}" if result.status == "graded" else "ungradable"
        progress.set_postfix_str(f"{work.name}: {said}")
    return failed


def _write_pages(submitted: submissions.Submission, result: SubmissionResult, folder: str) -> SubmissionResult:
    """A submission's notebook page and scorecard, as soon as its result is known (the
    scorecard is written again with the class's facts at the end); returns its result as
    that student's."""
    write_notebook(submitted.path, folder)
    shown = dataclasses.replace(result, submission=submitted.student, file=submitted.file)
    report.write_submission(shown, folder, None)
    return shown


def _folders(book: gradebook.Gradebook, facts: classview.ClassFacts, chosen, roots: dict) -> dict[str, str]:
    """Each file of this run -> the folder of its pages, as the class view names it."""
    view = classview.build(book, facts)
    by_key = {(row.student, attempt.stored.path): attempt.folder for row in view.rows for attempt in row.attempts}
    return {s.path: by_key[(s.student, _relative(s.path, roots[s.path]))] for s in chosen}


def _relative(path: str, root: str) -> str:
    """Where a submission was found, as the gradebook keeps it: under the folder given,
    that folder's own name included (two folders given may hold files of one name)."""
    return os.path.relpath(path, os.path.dirname(os.path.abspath(root)))


def _save_run_facts(out_dir: str, worker_peak: int, graded: int) -> None:
    """What this run cost: kept beside the pages (the attack suite bounds the memory)."""
    import json
    import resource

    from grader.context import STATE
    from grader.storage import write_atomic

    facts = {"graded": graded, "worker_peak_rss_mb": round(worker_peak / 2**20),
             "parent_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    write_atomic(os.path.join(out_dir, STATE, "batch.json"), json.dumps(facts, sort_keys=True) + "\n")


def write_notebook(path: str, folder: str, title: str | None = None) -> None:
    """The submitted notebook's page beside its scorecard (nothing for an unreadable one)."""
    try:
        report.write_notebook(notebook.read_submission(path), folder, title or os.path.basename(path))
    except notebook.Unreadable:
        pass  # the scorecard says why
    except Exception as error:  # rendering a strange notebook must not stop the batch
        print(f"grader: could not render {path} as HTML: {type(error).__name__}: {error}", file=sys.stderr)


def rerender(out_dir: str) -> Graded:
    """Every page of the class again, from the gradebook, without grading."""
    facts = classreport.load_facts(out_dir)
    book = gradebook.Gradebook(os.path.join(out_dir, "gradebook.sqlite"))
    try:
        view = classview.build(book, facts)
    finally:
        book.close()
    paths = classreport.write(view, out_dir, report.load_reference(out_dir))
    return _graded(view, paths, [])
