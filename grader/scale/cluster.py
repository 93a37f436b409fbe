"""Grade on a Dask cluster: the executor seam's second implementation, beside LocalPool.

`DaskPool(context, address)` connects to a Dask scheduler (`tcp://host:8786`) or starts
a LocalCluster of worker processes on this machine (`local:N`), sets up the grading
plugin on every worker (grader/scale/dask_worker.py), sends the data and weights to workers
that do not share this machine's files, and grades each notebook as one task: the
notebook's bytes and the run's context go out, its result and its page (the notebook
rendered as HTML on the worker) come back as JSON. The client only schedules and
records: the grading run, in this process, stays the one writer of the gradebook and
of the pages' files.

Faults keep their owners (grader/faults.py). A result the grader failed on is tried
again by the policy every executor shares (`executors.Attempts`). A worker that dies
mid-task is Dask's to handle: the scheduler runs the task again on another worker, up
to its `allowed-failures` (a LocalCluster is given `[grader] attempts - 1`), and then the
notebook gets an "ungradable: the grader's fault" scorecard and the course goes on.
A worker that cannot make the sandbox refuses work; the batch says which and why, and
stops only if no worker can grade.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import re
import sys
import uuid
from typing import Callable, Iterable, Iterator

from grader.context import Context
from grader.faults import GraderError
from grader.grading.pipeline import Work
from grader.reports.render_notebook import Rendering
from grader.results import SubmissionResult
from grader.scale import dask_worker, executors
from grader.scale.executors import Attempts, Done

LOCAL = re.compile(r"local:([1-9][0-9]*)")
ADDRESS = re.compile(r"([a-z]+://)?[^\s/:]+(:[0-9]+)?")
POLL_SECONDS = 5  # how often, while waiting for results, new workers are looked at
WAIT_FOR_WORKERS = 120  # seconds a cluster may take to show its first worker
FETCH_SECONDS = 30  # a finished task's result not fetched by then was lost with its worker
AHEAD = 2  # tasks in flight per grading worker: one graded, the next one waiting on it


def check_address(text: str) -> str:
    """`local:N` or a scheduler's address; raise a GraderError naming the forms otherwise."""
    if LOCAL.fullmatch(text) if text.startswith("local:") else ADDRESS.fullmatch(text):
        return text
    raise GraderError(f"--cluster {text!r} is neither a scheduler's address nor local:N",
                       hint="pass tcp://host:8786 (what `dask scheduler` prints), or local:2 for two workers on this machine")


class DaskPool:
    """Grades `context`'s notebooks on the Dask cluster at `address` (see the module doc)."""

    def __init__(self, context: Context, address: str, attempts: int = 3, memory_mb: int = 0,
                 worker: Callable = dask_worker.grade, notify: Callable[[str], None] | None = None):
        """`worker`: the task run for each notebook (tests inject faults here); `notify`:
        where to say that a worker refused (default: standard error)."""
        self.context, self.address, self.memory_mb, self.task = context, check_address(address), memory_mb, worker
        self.attempts = Attempts(context, attempts)
        self.notify = notify or (lambda line: print(f"grader: {line}", file=sys.stderr))
        token = uuid.uuid4().hex[:8]
        self.plugin = f"keras-grader-{context.fingerprint[:12]}-{token}"
        self.resource = f"grader-{token}"  # offered only by workers ready for this batch
        self.ready: set[str] = set()
        self.refused: dict[str, str] = {}
        self.cluster = self.client = None
        self.peak_bytes = 0  # the largest of the workers' own peak memory, known once closed
        self._numbers = itertools.count()

    def __enter__(self) -> "DaskPool":
        from distributed import Client

        match = LOCAL.fullmatch(self.address)
        try:
            self.cluster = local_cluster(int(match.group(1)), self.memory_mb, self.attempts.limit) if match else None
            self.client = Client(self.cluster or self.address, timeout="30s")
        except (OSError, TimeoutError) as error:
            self.__exit__()
            raise GraderError(f"cannot reach the Dask scheduler at {self.address}: {error}",
                               hint="start it with `dask scheduler` (see README: Grading on a cluster), or use --cluster local:N") from None
        assets = dask_worker.assets_of(self.context)
        self.assets = {a.sha256: a for a in assets.all()}
        self.client.register_plugin(dask_worker.GradingPlugin(self.context, assets, self.resource), name=self.plugin)
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            try:
                peaks = self.client.run(dask_worker.peak_bytes, on_error="return").values()
                self.peak_bytes = max([p for p in peaks if isinstance(p, int)], default=0)
            except Exception:  # noqa: BLE001 - a figure for the run's facts, not worth a failed batch
                pass
            try:
                self.client.unregister_worker_plugin(self.plugin)  # frees each worker's warm context
            except Exception:  # noqa: BLE001 - a cluster going away has nothing left to free
                pass
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.cluster = self.client = None

    def use(self, context: Context) -> None:
        """Grade with `context` from now on: it travels whole with each task (a worker
        takes its own paths for the files it staged)."""
        self.context = self.attempts.context = context

    def grade(self, works: Iterable[Work]) -> Iterator[Done]:
        """Every work's outcome, each exactly once, in the order they finish."""
        queue = collections.deque(works)
        running: dict = {}  # future -> work
        while queue or running:
            self._admit()
            while queue and len(running) < AHEAD * max(1, len(self.ready)):
                work = queue.popleft()
                running[self._submit(work)] = work
            for future in _finished(list(running)):
                work = running.pop(future)
                done = self._settle(work, future)
                if done is None:
                    queue.appendleft(work)
                else:
                    yield done

    def _submit(self, work: Work):
        with open(work.path, "rb") as handle:
            notebook = dask_worker.Notebook(work.key, work.name, _file_name(work.path), handle.read())
        return self.client.submit(
            self.task, notebook, self.context, self.plugin, key=f"grade-{work.name[:40]}-{self.resource}-{next(self._numbers)}",
            resources={self.resource: 1}, pure=False, retries=0,
        )

    def _settle(self, work: Work, future) -> Done | None:
        """A finished task's outcome, or None to grade the notebook again."""
        from distributed import KilledWorker

        if future.status != "finished":
            error = future.exception() if future.status == "error" else None
            if isinstance(error, KilledWorker):  # Dask tried it on allowed_failures + 1 workers
                why = f"a grading worker died while checking it, on {error.allowed_failures + 1} workers in a row"
                return Done(work, executors.died_result(self.context, work, why, error.allowed_failures + 1))
            why = f"{type(error).__name__}: {str(error)[:300]}" if error is not None else f"the task was {future.status}"
            return self.attempts.lost(work, f"its grading task failed ({why})")
        try:
            # The result lives on the worker that computed it: if that worker has died since
            # (a notebook killed it), Dask must compute it again, which needs the waiting
            # tasks offered to a ready worker (_admit, in this thread): never wait here for
            # that. Grade it again instead.
            answer = json.loads(future.result(timeout=FETCH_SECONDS))
        except TimeoutError:
            future.cancel()
            return self.attempts.lost(work, "its result was lost with the worker that held it")
        if "failed" in answer:  # a worker could not warm up: the instructor's or the machine's
            raise executors.worker_failed(*answer["failed"])
        page = answer.get("notebook")
        return self.attempts.settle(Done(work, SubmissionResult.from_json(answer["result"]), Rendering(**page) if page else None))

    def _admit(self) -> None:
        """Look at workers not yet ready: stage what they lack, note those that refuse.
        Raise if no worker can grade."""
        workers = self._workers()
        self.ready &= workers
        unsettled = sorted(workers - self.ready - set(self.refused))
        if unsettled:
            for address, status in self.client.run(dask_worker.status, self.plugin, workers=unsettled, on_error="return").items():
                self._note(address, self._staged(address, status) if isinstance(status, dict) and "missing" in status else status)
        if not self.ready and workers <= set(self.refused):
            raise GraderError(
                "no worker of the cluster can grade this batch: "
                + "; ".join(f"{address} refuses: {why}" for address, why in sorted(self.refused.items())),
                hint="install bubblewrap on the workers and allow user namespaces in their containers (README: Grading on a cluster), "
                "or run the workers from the same grader version as this command",
            )

    def _workers(self) -> set[str]:
        """The addresses of the cluster's workers, waiting a while for a first one."""
        workers = set(self.client.scheduler_info(n_workers=-1)["workers"])
        if not workers:
            try:
                self.client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS)
            except TimeoutError:
                raise GraderError(f"the Dask scheduler at {self.address} has had no worker for {WAIT_FOR_WORKERS} s",
                                   hint=f"start workers: dask worker {self.address} --nthreads 1 (README: Grading on a cluster)") from None
            workers = set(self.client.scheduler_info(n_workers=-1)["workers"])
        return workers

    def _staged(self, address: str, status: dict):
        """Send a worker the files it lacks (each checked by its hash there); its new status."""
        for sha256 in status["missing"]:
            with open(self.assets[sha256].path, "rb") as handle:
                content = handle.read()
            status = self.client.run(dask_worker.receive, self.plugin, sha256, content, workers=[address], on_error="return")[address]
            if not isinstance(status, dict):
                break  # the worker died, or the file arrived damaged: noted as a refusal
        return status

    def _note(self, address: str, status) -> None:
        if isinstance(status, Exception):
            self.notify(f"the worker at {address} could not be made ready to grade: {type(status).__name__}: {status}")
            self.refused[address] = f"{type(status).__name__}: {status}"
        elif "refused" in status:
            self.notify(f"the worker at {address} refuses to grade: {status['refused']}")
            self.refused[address] = status["refused"]
        elif status.get("ready"):
            self.ready.add(address)
            self.client.run_on_scheduler(dask_worker.schedule_waiting, address)


def _finished(futures: list) -> list:
    """The futures done, waiting up to POLL_SECONDS for the first one."""
    from distributed import wait
    from distributed.client import FuturesCancelledError

    try:
        wait(futures, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
    except (TimeoutError, FuturesCancelledError):
        pass  # cancelled ones are done too, and tried again
    return [future for future in futures if future.done()]


def dask_settings(attempts: int) -> dict:
    """The Dask configuration a grading cluster started here gets (see README for the
    same settings on a cluster started by hand)."""
    return {
        "distributed.scheduler.allowed-failures": attempts - 1,  # a notebook kills at most `attempts` workers
        # Dask caps the workers' math libraries at one thread (and sets that in this process
        # too); the pool's workers are not capped, and the trusted training must be the same.
        "distributed.nanny.pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": 65536},
        # TensorFlow's memory is not Dask's data: never pause or spill, only stop at the limit
        "distributed.worker.memory.target": False,
        "distributed.worker.memory.spill": False,
        "distributed.worker.memory.pause": False,
    }


def local_cluster(workers: int, memory_mb: int, attempts: int):
    """A LocalCluster of `workers` single-threaded worker processes on this machine."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(dask_settings(attempts)):
        # every port on loopback: the dashboard shows task keys (students' names) and logs
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                            silence_logs=logging.ERROR, memory_limit=f"{memory_mb}MiB" if memory_mb else 0)


def _file_name(path: str) -> str:
    name = os.path.basename(path)
    return name if name not in ("", ".", "..") else "submission.ipynb"
