"""Grade notebooks in supervised worker processes: one seam for every way of grading.

An `Executor` grades notebooks and yields each one's outcome (`Done`), as data:
`LocalPool` here (worker processes on this machine) and `cluster.DaskPool` (a Dask
cluster) are its two implementations, and `Attempts` is the retry policy both share.

Each worker process holds a warm `pipeline.Grader` (TensorFlow imported, the reference
base and the feature cache loaded, its sandbox zygote started) and grades in a pipeline
(`pipeline.graded`): it is given a second notebook while it checks the first, so the
next sandbox runs while the last model trains. It renders each notebook's page beside
the grading (`Renderings`), so the run that receives the result only writes files.

The parent only supervises: a worker that dies (a crash in TensorFlow, the kernel's
OOM killer on the grader's own memory limit) costs one attempt of the notebook it was
checking, never the batch, and is replaced; a notebook the grader fails on (a result
the grader owns) is tried again, up to the manifest's `[grader] attempts`, then gets an
"ungradable: the grader's fault" result, which the gradebook never keeps.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import tempfile
import traceback
from typing import Callable, Iterable, Iterator, Protocol

from grader import faults
from grader.context import Context
from grader.faults import GraderError, Owner
from grader.grading import budget, pipeline
from grader.grading.pipeline import Work
from grader.reports import report
from grader.reports.render_notebook import Rendering
from grader.results import SubmissionResult
from grader.sandbox import cgroups
from grader.scale import memory

AHEAD = 2  # notebooks given to a worker at once: one checked, the next one's sandbox running
WORKER_PROCESSES = 32768  # the worker's own cgroup caps memory; threads are TensorFlow's business
STARTS = 3  # workers that may die before they are ready, in a row, before the batch stops


@dataclasses.dataclass(frozen=True)
class Done:
    """A notebook graded: its result, and its page rendered where it was graded (None:
    not rendered there, e.g. a worker that died on it)."""

    work: Work
    result: SubmissionResult
    notebook: Rendering | None = None


class Executor(Protocol):
    """What a grading run grades through: a context manager that grades notebooks."""

    peak_bytes: int  # the largest of the workers' own peak memory, once closed

    def __enter__(self) -> "Executor": ...

    def __exit__(self, *exc) -> None: ...

    def use(self, context: Context) -> None:
        """Grade with the run's context from now on, whole (once the lab's solution has
        set the model budget): every worker, now and later, receives it."""

    def grade(self, works: Iterable[Work]) -> Iterator[Done]:
        """Every work's outcome, each exactly once, in the order they finish; a result
        the grader owns is one it gave up on (never a grade)."""


class Attempts:
    """The retry policy for the grader's own failures, the same for every executor: a
    notebook is tried up to `limit` times, then gets an "ungradable: the grader's fault"
    result. An outcome that is not the grader's (a student's verdict; a lab's own cell that
    failed, the instructor's) is not tried again: it would be the same."""

    def __init__(self, context: Context, limit: int):
        self.context, self.limit = context, max(1, limit)
        self.tried: collections.Counter = collections.Counter()
        self.crashed: collections.defaultdict = collections.defaultdict(list)  # key -> why each worker died while checking it

    def settle(self, done: Done) -> Done | None:
        """The outcome to hand on, or None: the grader failed on it and may try again."""
        if not done.result.graders_fault:
            return done
        if not self._spent(done.work):
            return None
        reason, fix = faults.retry_message(self.tried[done.work.key], done.result.reason)
        return dataclasses.replace(done, result=dataclasses.replace(done.result, reason=reason, fix=fix))

    def lost(self, work: Work, why: str) -> Done | None:
        """The grader lost `work` without a result (its worker died, its task raised): None
        to try it again, or its outcome once it has no attempt left: the notebook's own
        verdict if every attempt's worker died while checking it (in fresh workers, the same
        way: what it left kills whatever checks it), else the grader's fault."""
        if not self._spent(work):
            return None
        crashes = self.crashed.pop(work.key, [])
        if len(crashes) >= self.tried[work.key]:
            return Done(work, crashed_result(self.context, work, crashes[-1], len(crashes)))
        return Done(work, died_result(self.context, work, why, self.tried[work.key]))

    def _spent(self, work: Work) -> bool:
        """Count one more failure of the grader's on `work`; True once it has no attempt left."""
        self.tried[work.key] += 1
        return self.tried[work.key] >= self.limit


class Renderings:
    """Each notebook's page, rendered in a child process (grader/reports/render_notebook.py) from a
    thread beside the grading, started as the notebook arrives."""

    def __init__(self):
        self.threads = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="grader-render")
        self.started: dict[str, concurrent.futures.Future] = {}

    def start(self, work: Work) -> None:
        self.started[work.key] = self.threads.submit(report.rendering_of, work.path)

    def take(self, work: Work) -> Rendering | None:
        future = self.started.pop(work.key, None)
        return future.result() if future is not None else None

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)


def serve(connection, context: Context, group: cgroups.RunCgroup | None) -> None:
    """A worker: grade what the connection sends, report each result (see the module doc)."""
    if group is not None and group.active:
        group.enter()
    from grader import context as context_mod
    from reference.training import quiet_tensorflow

    quiet_tensorflow()
    try:
        context_mod.check_assets(context)
        grader = pipeline.Grader(context, ahead=True)
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which stops the batch
        connection.send(("failed", *start_failure(error)))
        return
    connection.send(("ready",))
    pages = Renderings()

    def incoming():
        while True:
            message = connection.recv()
            if message[0] == "grade":
                grader.runner.expect_more(True)
                pages.start(message[1])
                yield message[1]
            elif message[0] == "flush":
                if message[1] == "end":  # the batch's queue is empty for good
                    grader.runner.expect_more(False)
                yield pipeline.FLUSH
            elif message[0] == "use":
                grader.use(message[1])
            elif message[0] == "stop":
                return

    try:
        for work, result in pipeline.graded(incoming(), grader, lambda work: connection.send(("finishing", work.key))):
            connection.send(("result", work.key, result.to_json(), pages.take(work)))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        pages.close()
        grader.close()
        try:  # what this worker's own process needed at its peak (its sandboxes are not counted)
            connection.send(("peak", memory.peak()))
        except OSError:
            pass


_STARTS_FROM: list = []  # the multiprocessing context workers start from, once chosen


def _starts_from():
    """Where grading workers start: a fork server that imported TensorFlow, Keras and the
    grader once (grader/scale/worker_preload.py: nothing of TensorFlow runs there, and a process
    that has run TensorFlow does not survive a fork), so a worker costs a fork, not the 3 to
    4 s of CPU of an interpreter importing them; spawn where there is no fork server."""
    if not _STARTS_FROM:
        try:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["grader.scale.worker_preload"])
        except ValueError:
            context = multiprocessing.get_context("spawn")
        _STARTS_FROM.append(context)
    return _STARTS_FROM[0]


def _started(target: bytes, setting: tuple, *args) -> None:
    """A worker's first step: the environment, working directory and import path of the
    process that started it, as they are now (a fork server's are those of its own start),
    then `target` (pickled, so that it is found on that path)."""
    environment, folder, path = setting
    os.environ.clear()
    os.environ.update(environment)
    tempfile.tempdir = None
    os.chdir(folder)
    sys.path[:] = path
    pickle.loads(target)(*args)


class _Worker:
    def __init__(self, pool: "LocalPool"):
        starts = _starts_from()
        self.connection, child = starts.Pipe()
        self.group = cgroups.RunCgroup(WORKER_PROCESSES, pool.memory_mb * 2**20) if pool.memory_mb else None
        self.started_with = pool.context  # the run's context as it was when this worker started
        setting = (dict(os.environ), os.getcwd(), list(sys.path))
        self.process = starts.Process(target=_started, args=(pickle.dumps(pool.worker), setting, child, pool.context, self.group),
                                      daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.given: list[str] = []  # keys sent and not yet answered, oldest first
        self.finishing: str | None = None
        self.flushed = False

    def send(self, *message) -> None:
        self.connection.send(message)

    def why_dead(self) -> str:
        code = self.process.exitcode
        if self.group is not None and self.group.memory_exhausted():
            return "a grading worker ran out of the grader's memory limit and was killed"
        if code is not None and code < 0:
            return f"a grading worker was killed by {signal.Signals(-code).name}"
        return f"a grading worker exited with code {code}"

    def close(self) -> int:
        """Stop the worker; returns its peak memory in bytes (0 if it did not say)."""
        peak = 0
        try:
            self.send("stop")
            while self.connection.poll(30):
                message = self.connection.recv()
                if message[0] == "peak":
                    peak = message[1]
                    break
        except (OSError, ValueError, EOFError):
            pass
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()
        if self.group is not None:
            self.group.destroy()
        return peak


class LocalPool:
    """`jobs` supervised worker processes grading in `context`."""

    def __init__(self, context: Context, jobs: int, attempts: int = 3, memory_mb: int = 0,
                 worker: Callable = serve, final: bool = True):
        self.context, self.jobs, self.memory_mb, self.worker = context, max(1, jobs), memory_mb, worker
        self.attempts = Attempts(context, attempts)
        # a batch's queue, once empty, stays empty: its workers need no sandbox ahead then;
        # a server's (final=False) may get an upload any moment, and keeps one warm for it
        self.final = final
        self.workers: list[_Worker] = []
        self.peak_bytes = 0  # the largest of the workers' own peak memory
        self._failed_starts = 0

    def __enter__(self) -> "LocalPool":
        self.workers = [_Worker(self) for _ in range(self.jobs)]
        return self

    def __exit__(self, *exc) -> None:
        for worker in self.workers:
            self.peak_bytes = max(self.peak_bytes, worker.close())
        self.workers = []

    def use(self, context: Context) -> None:
        """Grade with `context` from now on: every worker receives it whole, now and when it starts."""
        self.context = self.attempts.context = context
        for worker in self.workers:
            if worker.ready:
                worker.send("use", context)

    def grade(self, works: Iterable[Work]) -> Iterator[Done]:
        """Every work's outcome, in the order they finish."""
        queue = collections.deque(works)
        by_key = {work.key: work for work in queue}
        remaining = len(queue)
        while remaining:
            self._feed(queue)
            waiting = {w.connection: w for w in self.workers} | {w.process.sentinel: w for w in self.workers}
            for ready in multiprocessing.connection.wait(list(waiting)):
                worker = waiting[ready]
                if worker not in self.workers:
                    continue  # replaced earlier in this round
                if ready is worker.connection:
                    try:
                        message = worker.connection.recv()
                    except (EOFError, OSError):
                        message = None
                    if message is not None:
                        for done in self._received(worker, message, queue, by_key):
                            remaining -= 1
                            yield done
                        continue
                for done in self._died(worker, queue, by_key):
                    remaining -= 1
                    yield done

    def _feed(self, queue) -> None:
        for worker in self.workers:
            if not worker.ready:
                continue
            while queue and len(worker.given) < AHEAD:
                work = queue.popleft()
                worker.given.append(work.key)
                worker.flushed = False
                worker.send("grade", work)
            if not queue and len(worker.given) == 1 and not worker.flushed:
                worker.flushed = True
                worker.send("flush", "end" if self.final else "pause")

    def _received(self, worker: _Worker, message, queue, by_key):
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            self._failed_starts = 0
            if worker.started_with is not self.context:  # the run's context changed while it started
                worker.send("use", self.context)
        elif kind == "failed":
            raise worker_failed(*message[1:])
        elif kind == "finishing":
            worker.finishing = message[1]
        elif kind == "result":
            key = message[1]
            worker.given.remove(key)
            worker.finishing = None
            done = self.attempts.settle(Done(by_key[key], SubmissionResult.from_json(message[2]), message[3]))
            if done is None:
                queue.appendleft(by_key[key])
                return
            yield done

    def _died(self, worker: _Worker, queue, by_key):
        """A worker died: charge the notebook it was checking, requeue the rest, replace it."""
        why = worker.why_dead()
        if not worker.ready:
            self._failed_starts += 1
            if self._failed_starts >= STARTS:
                raise GraderError(f"grading workers keep dying before they are ready ({why})",
                                  hint="the grader's or the machine's fault, not a student's: run again; if it keeps happening, "
                                  "pass fewer --jobs or raise [grader] memory_mb")
        culprit = worker.finishing or (worker.given[0] if worker.given else None)
        for key in reversed(worker.given):
            if key == culprit and worker.finishing == key and worker.process.exitcode == -budget.HARD_STOP:
                yield Done(by_key[key], over_budget_result(self.context, by_key[key]))  # the notebook's own doing
                continue
            if key == culprit and worker.finishing == key and worker.group is not None and worker.group.memory_exhausted():
                # out of the worker's memory limit while checking this notebook: tried again in a fresh worker; a
                # notebook whose model does it every time is its own verdict, not the grader's fault forever (a kill
                # from outside, or a crash, stays the grader's: it may be the machine's or the grader's own)
                self.attempts.crashed[key].append(why)
            if key == culprit:
                done = self.attempts.lost(by_key[key], why)
                if done is not None:
                    yield done
                    continue
            queue.appendleft(by_key[key])
        worker.given = []
        worker.close()
        self.workers[self.workers.index(worker)] = _Worker(self)


def start_failure(error: BaseException) -> tuple[str, str, int]:
    """(message, hint, exit code) of a worker that could not start, as data for the parent."""
    if isinstance(error, GraderError):  # the instructor's: the parent stops the batch with this message
        return error.message, error.hint, error.exit_code
    return f"a grading worker could not start: {type(error).__name__}: {error}", traceback.format_exc(limit=5), 1


def worker_failed(message: str, hint: str, exit_code: int) -> GraderError:
    """The error that stops the batch when a worker could not start (see start_failure)."""
    return GraderError(message, hint=hint, exit_code=exit_code)


def over_budget_result(context: Context, work: Work) -> SubmissionResult:
    """The verdict on a notebook whose checking went so far over the CPU budget of the
    grader's own work, in one computation, that the kernel stopped its worker (see
    budget.hard_stop): the student's, kept, not tried again (it would do the same)."""
    seconds = getattr(context.budget, "cpu_seconds", 0) or 0
    return pipeline.ungradable(
        context, work.path, work.name,
        f"the grader's own work on this notebook (rebuilding and training its model) went far over its budget of "
        f"{seconds:g} s of CPU time ([grader] work_cpu_seconds) in one step it could not stop sooner, and was stopped",
        "keep the model the lab's size: no resizing the images up, no pooling or convolution windows as large as the "
        "picture, the lab's image size at the input", owner=Owner.STUDENT)


def crashed_result(context: Context, work: Work, why: str, times: int) -> SubmissionResult:
    """The verdict on a notebook whose checking ran the worker out of its memory limit every
    time it was tried, in fresh workers: the student's, kept; the instructor sees it on the
    class report's list to review."""
    result = pipeline.ungradable(
        context, work.path, work.name,
        f"checking this notebook's model ran the grader's worker out of its memory {times} times in a row ({why}): a model "
        "far larger than the lab's, or its pictures made far larger",
        "build the lab's model with the lab's layers and image size; your instructor is told to look at it", owner=Owner.STUDENT)
    return dataclasses.replace(result, review=(f"checking this notebook ran the grader's worker out of memory {times} times ({why}): look at it",))


def died_result(context: Context, work: Work, why: str, attempts: int) -> SubmissionResult:
    """The "ungradable: the grader's fault" result of a notebook that a worker died on, every time."""
    reason, fix = faults.retry_message(attempts, why)
    return pipeline.ungradable(context, work.path, work.name, reason, fix, owner=Owner.GRADER)
