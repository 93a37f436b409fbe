"""A grading run: the one loop that every way of grading goes through.

    open      sweep what a killed grader left -> resolve the context -> open the gradebook
    preflight grade the lab's own solution and playground, judge them (grader/preflight.py),
              then set the model budget in the context every worker receives
    grade     record each submission -> skip what the gradebook keeps -> grade the rest
              (an executor: worker processes here, or a Dask cluster) -> settle each
              outcome by its owner -> keep what is not the grader's -> write each
              submission's pages once
    close     the class's pages (index.html, grades.csv) and the run's own facts

`grader grade` (grader/batch.py: files -> students), `grader serve` (grader/serve/workshop.py:
the upload queue), `grader check` (the preflight alone), the Gradescope runner (one
notebook) and `--cluster` (an executor) are doors onto it, and keep only what is
theirs. A rule that applies to every way of grading is written here, once.

A submission's pages are written once, when the last of its student's submissions
handed to `grade` is settled, with the class's facts (which submission counts, the late
penalty) as they are then; another of that student's pages is written again only if
those facts changed for it. Each notebook's page is rendered where it was graded and
comes back with its result, so the run itself only writes files.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import time
from typing import Callable, Iterable, Iterator

from grader import preflight, sandbox
from grader import context as context_mod
from grader.config.manifest import Manifest
from grader.context import Context
from grader.faults import GraderError, Owner
from grader.grading import budget
from grader.grading.pipeline import Work
from grader.reports import classreport, classview, report
from grader.reports.render_notebook import Rendering
from grader.results import SubmissionResult
from grader.sandbox import cgroups
from grader.scale import memory
from grader.scale.executors import Done, Executor, LocalPool
from grader.store import gradebook
from grader.store.storage import STATE, write_atomic

GIVE_UP_AFTER = 3  # notebooks in a row the grader failed on (each after its attempts) before the run stops
FACTS = "batch.json"  # the run's own facts, in the output folder's STATE folder


@dataclasses.dataclass(frozen=True)
class Options:
    """How to grade: the command line's options, the same for every way in."""

    out_dir: str
    data: str | None = None  # a glob of the lab's data files, overriding the manifest
    weights: str | None = None  # a weights file, overriding the manifest
    allow_unsandboxed: bool = False
    quiet: bool = False
    cache_dir: str | None = None  # None: the user's cache folder
    use_cache: bool = True  # the fast path; off trains every model in full
    jobs: int = 0  # worker processes; 0: from cores and memory
    regrade: bool = False  # grade again what the gradebook already holds
    roster: str | None = None  # the class's roster CSV (kept in the gradebook for later runs)
    identify: str = "auto"  # how a file's student is found (see grader/store/submissions.py)
    student: str | None = None  # grade again only this student's submissions
    worker: object = None  # the workers' main function or the cluster's task (tests inject faults here)
    cluster: str | None = None  # a Dask scheduler's address, or local:N (grader/scale/cluster.py); None: worker processes here


@dataclasses.dataclass(frozen=True)
class Entry:
    """One submission handed to the run: as the gradebook records it, and its file here."""

    stored: gradebook.Stored
    path: str  # the notebook's file
    title: str = ""  # what its student called the file, for its pages (default: the file's name)


@dataclasses.dataclass(frozen=True)
class Settled:
    """An entry's outcome, once its pages are written."""

    entry: Entry
    result: SubmissionResult  # as this student's (the same content may be another's too)
    graded: bool  # graded by this run (False: the gradebook had it)
    folder: str  # its pages, absolute

    @property
    def kept(self) -> bool:
        """In the gradebook: the student's outcomes (the grader's own failures, and a lab cell
        that fails, which is the instructor's, are graded again next time)."""
        return self.result.owner is Owner.STUDENT


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


class GradingRun:
    """One run of grading (see the module doc): a context manager.

    `final`: the submissions come all at once (a batch: its workers keep no sandbox warm
    once the last is given); a server's run may get one any moment."""

    def __init__(self, manifest: Manifest, options: Options, final: bool = True):
        self.manifest, self.options, self.final = manifest, options, final
        self.out_dir = options.out_dir
        self.context: Context | None = None
        self.book: gradebook.Gradebook | None = None
        self.facts: classview.ClassFacts | None = None
        self.checked: preflight.Preflight | None = None
        self.graded_count = 0  # submissions graded by this run's workers (the lab's own pair not counted)
        self.client_seconds = 0.0  # this process's own work on the students' results (the gradebook, the pages)
        self.client_results = 0
        self._pool: Executor | None = None
        self._graded_here: set[str] = set()  # contents graded by this run: kept, whatever `fresh` says
        self._written: dict[str, dict | None] = {}  # page folder -> the class's facts its scorecard shows
        self._in_a_row = 0  # the grader's own failures in a row
        self._rss_at_start = memory.restart_peak()  # this process's memory before the run (it may have held much before)

    # --- open and close ------------------------------------------------------------

    def __enter__(self) -> "GradingRun":
        prepare_output(self.out_dir)
        cgroups.sweep_stale()
        sandbox.sweep_stale_runs()
        options = self.options
        self.context = context_mod.resolve(self.manifest, self.out_dir, data=options.data, weights=options.weights,
                                           allow_unsandboxed=options.allow_unsandboxed, cache_dir=options.cache_dir,
                                           use_cache=options.use_cache)
        self.book = gradebook.Gradebook(os.path.join(self.out_dir, "gradebook.sqlite"))
        self.facts = classview.ClassFacts.of(self.manifest, self.context.fingerprint)
        classreport.save_facts(self.facts, self.out_dir)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._pool is not None:
                self._pool.__exit__(*exc)
            self._save_facts()
        finally:
            self.book.close()

    @property
    def jobs(self) -> int:
        return self.options.jobs or default_jobs()

    def pool(self, wanted: int | None = None) -> Executor:
        """The workers, started the first time something needs grading (`wanted`: at most
        that many; a server's run starts them all)."""
        if self._pool is None:
            limits, extra = self.manifest.grader, ({"worker": self.options.worker} if self.options.worker else {})
            if self.options.cluster:
                from grader.scale.cluster import DaskPool  # imports Dask only when it is asked for

                pool = DaskPool(self.context, self.options.cluster, limits.attempts, limits.memory_mb, **extra)
            else:
                jobs = min(self.jobs, max(1, wanted)) if wanted is not None else self.jobs
                pool = LocalPool(self.context, jobs, limits.attempts, limits.memory_mb, final=self.final, **extra)
            self._pool = pool.__enter__()
        return self._pool

    # --- the lab's own pair ------------------------------------------------------------

    def preflight(self, wanted: int | None = None) -> preflight.Preflight:
        """Grade the lab's solution and playground (unless the gradebook has them) and judge
        them: a wrong one stops the run, and nothing of them is kept. Then every worker
        grades with the model budget the solution sets."""
        if self.checked is not None:
            return self.checked
        pair = preflight.pair(self.context, self.out_dir)
        results = {work.name: kept for work in pair if (kept := self._kept(work.key, self.options.regrade)) is not None}
        todo = [work for work in pair if work.name not in results]
        for done in self.pool(wanted).grade(todo) if todo else ():
            self._received_from(done)
            if done.result.owner is not Owner.STUDENT:
                raise preflight.not_graded(done.work, done.result)
            results[done.work.name] = done.result
        self.checked = preflight.judge(results, frozenset(work.key for work in todo))
        for work in todo:  # kept only once they are right: a rerun then skips them
            self._keep(results[work.name])
        self.context = budget.settled(self.context, self.checked.solution)
        if self._pool is not None:
            self._pool.use(self.context)
        report.save_reference(self.checked.solution, self.out_dir)
        return self.checked

    # --- the loop --------------------------------------------------------------------

    def grade(self, entries: Iterable[Entry], fresh: bool = False, recorded: Callable[[], None] = lambda: None) -> Iterator[Settled]:
        """Record, skip what is kept (unless `fresh`), grade, settle, keep, write pages:
        each entry's outcome once its pages are written, in the order they are settled.
        `recorded()` is called once every entry is in the gradebook, before any is graded."""
        entries = list(entries)
        for entry in entries:
            self.book.record(self.manifest.name, entry.stored)
        recorded()
        pages = _Pages(self, entries)
        self.preflight(len({e.stored.sha256 for e in entries if self._kept(e.stored.sha256, fresh) is None}))
        todo: dict[str, list[Entry]] = {}
        for entry in entries:
            kept = self._kept(entry.stored.sha256, fresh)
            if kept is None:
                todo.setdefault(entry.stored.sha256, []).append(entry)
            else:
                yield from pages.settle(entry, kept, graded=False)
        works = [Work(digest, found[0].path, found[0].stored.student) for digest, found in todo.items()]
        for done in self.pool(len(works)).grade(works) if works else ():
            began = time.perf_counter()
            self._received_from(done)
            if done.result.owner is Owner.STUDENT:
                self._keep(done.result)
            outcomes = [o for entry in todo[done.work.key] for o in pages.settle(entry, done.result, True, done.notebook)]
            self.graded_count += len(todo[done.work.key])
            self.client_seconds += time.perf_counter() - began
            self.client_results += 1
            yield from outcomes

    def _kept(self, digest: str, fresh: bool) -> SubmissionResult | None:
        """The gradebook's result for this content, unless it is to be graded again (`fresh`,
        and not graded by this run already)."""
        if fresh and digest not in self._graded_here:
            return None
        found = self.book.get(self.manifest.name, self.manifest.version, self.context.fingerprint, digest)
        return found[0] if found is not None else None

    def _keep(self, result: SubmissionResult) -> None:
        self.book.put(self.context.fingerprint, result)
        self._graded_here.add(result.sha256)

    def _received_from(self, done: Done) -> None:
        """Watch the grader's own failures: after GIVE_UP_AFTER notebooks in a row, ask the
        lab's solution whether the sandbox still works, and stop if it does not."""
        if done.result.owner is not Owner.GRADER:
            self._in_a_row = 0
            return
        self._in_a_row += 1
        if self._in_a_row >= GIVE_UP_AFTER:
            # Broken sandbox, or notebooks that make themselves ungradable? Ask the solution.
            problem = preflight.sandbox_problem(self.context)
            if problem:
                raise GraderError(
                    f"the grader failed on {self._in_a_row} notebooks in a row, and the sandbox no longer runs "
                    f"the lab's own solution: {problem}",
                    hint="the results so far are kept; fix the cause and run again: what is done is not graded twice",
                )
            self._in_a_row = 0

    # --- pages -----------------------------------------------------------------------

    def write_pages(self, result: SubmissionResult, folder: str, about: dict | None) -> None:
        """A submission's result.json and scorecard.html (its notebook.html is written first)."""
        report.write_submission(result, folder, self.checked.solution if self.checked else None, about)
        self._written[folder] = about

    def write_class(self, every_page: bool = False) -> tuple[classview.ClassView, dict[str, str]]:
        """The class's index.html and grades.csv, from the gradebook (the whole class,
        whatever this run graded); `every_page`: also the pages of every submission this
        run has not written (the class's facts on them may have changed)."""
        view = classview.build(self.book, self.facts)
        if every_page:
            return view, classreport.write(view, self.out_dir, self.checked.solution if self.checked else None, skip=self._written)
        return view, classreport.write_class(view, self.out_dir)

    def _save_facts(self) -> None:
        """What this run cost: kept beside the pages (the attack suite bounds the memory, the
        cluster's benchmark reads the client's own seconds per result)."""
        peak = memory.peak()
        growth = peak - self._rss_at_start if self._rss_at_start is not None else None
        facts = {"graded": self.graded_count, "worker_peak_rss_mb": round((self._pool.peak_bytes if self._pool else 0) / 2**20),
                 "parent_peak_rss_mb": round(peak / 2**20),
                 "parent_growth_mb": round(growth / 2**20) if growth is not None else None,
                 "client_seconds_per_result": round(self.client_seconds / self.client_results, 4) if self.client_results else None}
        write_atomic(os.path.join(self.out_dir, STATE, FACTS), json.dumps(facts, sort_keys=True) + "\n")


class _Pages:
    """The pages of one `grade` call's entries: a student's are written once every entry
    of theirs in the call is settled (see the module doc)."""

    def __init__(self, run: GradingRun, entries: list[Entry]):
        self.run = run
        view = classview.build(run.book, run.facts)  # once per call: each entry's folder, each student's row
        self.rows = {row.student: row for row in view.rows}
        self.pending = collections.Counter(entry.stored.student for entry in entries)
        self.settled: dict[str, dict[str, tuple]] = collections.defaultdict(dict)  # student -> path -> what is known

    def settle(self, entry: Entry, result: SubmissionResult, graded: bool, rendering: Rendering | None = None) -> list[Settled]:
        student = entry.stored.student
        self.settled[student][entry.stored.path] = (entry, result, graded, rendering)
        self.pending[student] -= 1
        return self._write(student) if not self.pending[student] else []

    def _write(self, student: str) -> list[Settled]:
        """The student's entries' pages, and those of their other submissions whose class facts changed."""
        run, mine = self.run, self.settled.pop(student)
        row = self.rows[student] = classview.refreshed(run.book, run.facts, self.rows[student])
        outcomes = []
        for attempt in row.attempts:
            folder = os.path.join(run.out_dir, attempt.folder)
            if attempt.stored.path in mine:
                entry, result, graded, rendering = mine[attempt.stored.path]
                _write_notebook(entry, folder, rendering)
                shown = dataclasses.replace(result, submission=student, file=entry.title or attempt.file)  # the student's own name for it
                about = classreport.about(row, attempt, run.facts.rules) if attempt.result is not None and result.owner is Owner.STUDENT else None
                run.write_pages(shown, folder, about)
                outcomes.append(Settled(entry, shown, graded, folder))
            elif attempt.result is not None and folder in run._written:  # others: the class's pages at the end
                about = classreport.about(row, attempt, run.facts.rules)
                if about != run._written[folder]:
                    run.write_pages(classreport.shown(row, attempt), folder, about)
        return outcomes


def _write_notebook(entry: Entry, folder: str, rendering: Rendering | None) -> None:
    """notebook.html: from the page rendered where it was graded, else rendered here if the
    folder has none (a submission the gradebook had)."""
    if rendering is None and not os.path.exists(os.path.join(folder, "notebook.html")):
        rendering = report.rendering_of(entry.path)
    if rendering is not None:
        report.write_rendering(rendering, folder, entry.title or os.path.basename(entry.path))
