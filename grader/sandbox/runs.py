"""One run of a submission's cells: handed to a zygote's slot, watched, and what it wrote collected
as files (`Runner`, `Pending`); stale runs swept; a stopped run's limit described."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import select
import signal
import tempfile
import threading
import time

from grader.config.manifest import Limits
from grader.faults import GraderFault
from grader.sandbox import rundisk, runfiles, watch
from grader.sandbox.cgroups import RunCgroup
from grader.sandbox.plan import Mounts, Plan
from grader.sandbox.runfiles import MAX_JSON_BYTES, MAX_WEIGHTS_BYTES
from grader.sandbox.zygote import ALIASES, DISK_BYTES, DISK_FILES, RUN_PREFIX, SLOTS, STALE_RUN_AFTER, STDERR, ZYGOTE_ANSWER_SECONDS, Zygote, ZygoteLost, cgroup_tag, give_weights, held, remove_run_folder

log = logging.getLogger(__name__)

# What the grader reads back from /scratch/out, and how large each may be.
COLLECTED = {
    "log.json": MAX_JSON_BYTES,
    "export.json": MAX_JSON_BYTES,
    "model.json": MAX_JSON_BYTES,
    "compile.json": MAX_JSON_BYTES,
    "model.weights.h5": MAX_WEIGHTS_BYTES,
}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How the run ended; the files it wrote are in `out_dir` (the grader's own copies)."""

    out_dir: str
    exit_code: int | None
    # None, "cell_timeout", "run_timeout" (CPU time), "wall_clock", "run_wall_clock"
    # (the backstop, the run idle), "host_busy" (the backstop, the run starved: see
    # host_fault), "memory", "processes", "cpu", "disk_full", "tampered"
    stopped_by: str | None
    stopped_cell: str | None
    last_started: str | None  # the last cell the run started (it may have ended inside it)
    seconds: float  # wall clock, from the moment the run was given its cells
    stderr_tail: str
    sandboxed: bool
    limit_message: str = ""  # which limit stopped the run, in words, for the scorecard
    folder: str = ""  # the run's own folder (out_dir is inside it)
    cpu_seconds: float = 0.0  # CPU time of everything the run started, from its cells on
    host_fault: str = ""  # non-empty: the host starved the run; the grader's fault, never a grade
    # per cell, the runner's records of how it ended (inside.seal): those of the cells
    # before the student's first were sealed before any of the student's code ran
    witness: tuple[tuple[dict, ...], ...] = ()
    # the watcher's record (inside._watch_run): "export" if the run was stopped for its
    # export; "closed" or "ended" if not; "" without a sandbox (nothing to believe but the files)
    watcher: str = ""

    def remove(self) -> None:
        """Delete the run's files (once the grader has read them). Never raises."""
        if self.folder:
            remove_run_folder(self.folder)


class Runner:
    """Runs each submission's cells in a sandbox of its own.

    The sandbox is a zygote's child: the zygote (started once per runner, inside
    bubblewrap) has imported the assignment's modules (TensorFlow: seconds of CPU), and
    forks a child for each run, which moves into namespaces of its own with a disk of its
    own, drops every capability, and is moved by the grader into a cgroup of its own (its
    limits, its CPU clock) before it reads its cells. After the run, everything it
    started is killed and its disk is emptied; it has seen no submission before its own.
    Two runs may be under way at once (a batch runs the next notebook's cells while it
    checks the last one).

    With `ahead`, the zygote is started at once and kept between runs (a batch, a
    worker of the workshop server); without, it is stopped after its run.
    """

    def __init__(self, plan: Plan, ahead: bool = False):
        self.plan, self.ahead = plan, ahead
        self.last = False  # the run under way is the last one expected (see expect_more)
        self._zygote: Zygote | None = None
        self._running = 0
        if ahead and plan is not None:
            self._zygote = Zygote(plan)

    def run(self, cells, folder: str | None = None) -> Outcome:
        """Run `cells` (RunCell values) and wait for the end; the outcome's files are in
        `folder` (default: a new temporary folder, which `Outcome.remove()` deletes)."""
        return self.start(cells, folder).outcome()

    def start(self, cells, folder: str | None = None) -> "Pending":
        """Start running `cells` and return at once; `.outcome()` waits for the end. The
        time limits are watched from a thread meanwhile, so the grader can check another
        submission while this one runs."""
        folder = folder or tempfile.mkdtemp(prefix=RUN_PREFIX)
        os.makedirs(folder, exist_ok=True)
        lost = ""
        for _ in range(2):
            zygote = self._ready()
            try:
                return Pending(zygote, cells, self, folder)
            except ZygoteLost as error:
                lost = str(error)
                log.info("sandbox: a run was lost before it began (%s); trying again in a new sandbox", lost)  # the grader's own: no one need act
                self._discard_zygote()
        return Pending.never_ran(self, folder, lost)

    def _ready(self) -> "Zygote":
        if self._zygote is not None and not self._zygote.alive():
            self._discard_zygote()
        if self._zygote is None:
            self._zygote = Zygote(self.plan)
        return self._zygote

    def _discard_zygote(self) -> None:
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            zygote.discard()

    def _ended(self, zygote: "Zygote", slot: int) -> None:
        """A run on `slot` of `zygote` has ended and been read: its disk is emptied for the next."""
        self._running -= 1
        if not zygote.discarded:
            try:
                zygote.wipe(slot)
                zygote.free.append(slot)
            except OSError as error:  # never used again
                log.warning("sandbox: cannot empty a run's disk: %s", error)
                if zygote is self._zygote:
                    self._discard_zygote()
        if (not self.ahead or self.last) and self._running == 0:
            self.close()

    def expect_more(self, more: bool) -> None:
        """Whether another run is coming (a batch's last notebook: no). Without one, the
        zygote is stopped once the runs under way end (at once if none is)."""
        self.last = not more
        if self.last and self._running == 0:
            self.close()

    @property
    def started(self) -> bool:
        """Whether a zygote is up (or starting) for the next run."""
        return self._zygote is not None and self._zygote.alive()

    def close(self) -> None:
        self._discard_zygote()


def sweep_stale_runs(older_than: float = STALE_RUN_AFTER) -> int:
    """Delete run folders left in the temporary folder by a grader that was killed: at
    once if they still hold mounts (their disk holds memory) and no live grader holds
    their lock, else once older than `older_than`. Never raises: a leftover that cannot
    be removed is logged and left."""
    try:
        base = tempfile.gettempdir()
        names = [name for name in os.listdir(base) if name.startswith(RUN_PREFIX)]
    except Exception:  # noqa: BLE001 - a sweep must never stop a batch
        log.exception("cannot list the temporary folder to sweep old runs")
        return 0
    removed = 0
    for name in names:
        path = os.path.join(base, name)
        try:
            abandoned = (rundisk.mounts_under(path) and not held(path)) or time.time() - os.lstat(path).st_mtime > older_than
        except Exception:  # noqa: BLE001
            log.exception("cannot look at %s", path)
            continue
        if abandoned:
            removed += remove_run_folder(path)
    _sweep_aliases()
    return removed


def _sweep_aliases() -> None:
    """Release the aliases (see Zygote._reachable) that no live grader holds: a killed
    grader's, which keep its sandbox's disks mounted."""
    try:
        names = os.listdir(ALIASES)
    except OSError:
        return
    for name in names:
        path = os.path.join(ALIASES, name)
        try:
            if not held(path):
                rundisk.release(path)
                os.rmdir(path)
        except Exception:  # noqa: BLE001 - a sweep must never stop a batch
            log.exception("cannot sweep %s", path)


def run(cells, work_dir: str, mounts: Mounts, limits: Limits, image_size: int, batch_size: int, sandboxed: bool) -> Outcome:
    """Run `cells` once, in a fresh sandbox with its files in `work_dir`."""
    return Runner(Plan(mounts, limits, image_size, batch_size, sandboxed)).run(cells, work_dir)


class Pending:
    """A run given its cells: watched from a thread until it ends, then read."""

    def __init__(self, zygote: Zygote, cells, runner: Runner, folder: str):
        self.zygote, self.plan, self.runner, self.folder = zygote, runner.plan, runner, folder
        self._outcome: Outcome | None = None
        self._pidfd = -1
        if not zygote.free:
            raise RuntimeError(f"more than {SLOTS} runs at once in one sandbox")
        self.slot = zygote.free.pop(0)
        self.scratch = zygote.scratch(self.slot)
        # the child that makes the run is the grader's, and counts as one more process
        self.group = RunCgroup(self.plan.limits.max_processes + 1, self.plan.limits.memory_mb * 2**20, cgroup_tag(os.path.dirname(zygote.folder)))
        try:
            self._begin(cells)
        except BaseException:
            self.group.destroy()
            zygote.free.append(self.slot)
            raise
        runner._running += 1
        self._watched = watch.Watched(None, None, 0.0, 0.0)
        self._thread = threading.Thread(target=self._watch, name="sandbox-watch", daemon=True)
        self._thread.start()

    def _begin(self, cells) -> None:
        zygote, plan = self.zygote, self.plan
        zygote.await_ready()
        self.cells = len(cells)
        job = {
            "cells": [{"key": c.key, "role": c.role, "source": c.source} for c in cells],
            "out": os.path.join(zygote.inside_scratch(self.slot), "out"),
            "output_chars": plan.limits.output_chars,
            # a model whose first layer knows no input shape (a nested augmentation model)
            # is built for the lab's images before it is saved, as training would
            "input_shape": [plan.image_size, plan.image_size, 3],
            "answer": plan.answer,
            "kind": plan.kind,
            "count_limit": plan.count_limit,
        }
        # The slot's disk is as the grader made it: nothing has run on it since it was emptied.
        try:
            with open(os.path.join(self.scratch, "job.json"), "w") as handle:
                json.dump(job, handle)
            give_weights(plan.mounts.keras_models, os.path.join(os.path.dirname(self.scratch), "keras", "models"))
        except OSError as error:  # the host's side of the run (a missing file, a full disk): never the student's
            raise GraderFault(f"the grader could not prepare the run's disk: {error}") from None
        self.progress = _Progress(os.path.join(self.scratch, "out", "progress"))
        try:
            self.child, self.pid = zygote.fork(self.slot)
            try:
                self.group.adopt(self.pid)
                self._pidfd = os.pidfd_open(self.pid)
            except OSError as error:
                zygote.say(f"drop {self.child}")
                raise ZygoteLost(f"cannot take the zygote's child {self.pid} in hand: {error}") from None
            zygote.say(f"go {self.child}")
        except BaseException:
            self.progress.close()
            if self._pidfd >= 0:
                os.close(self._pidfd)
            raise

    @classmethod
    def never_ran(cls, runner: Runner, folder: str, why: str) -> "Pending":
        """A run the sandbox could not start: the grader's fault, which the pipeline reports
        as such (no cell ran), never the student's."""
        pending = cls.__new__(cls)
        pending.runner, pending.plan, pending.folder = runner, runner.plan, folder
        os.makedirs(os.path.join(folder, "out"), exist_ok=True)
        pending._outcome = Outcome(os.path.join(folder, "out"), None, None, None, None, 0.0,
                                   f"the sandbox could not start the run: {why}", runner.plan.sandboxed, folder=folder)
        return pending

    def _alive(self) -> bool:
        return not select.select([self._pidfd], [], [], 0)[0]

    def _stop(self) -> None:
        """Kill everything the run started."""
        if self.group.active:
            self.group.kill()
        else:
            for pid in watch.process_tree(self.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _watch(self) -> None:
        try:
            self._watched = watch.watch(
                self._alive,
                watch.Clock(self.group, self.pid),
                self.progress.look,
                (lambda: rundisk.is_full(self.scratch)) if self.zygote.capped else (lambda: False),
                self.plan.limits,
            )
        finally:
            # Whatever is left of the run goes now, even when the child has ended: a run
            # whose child was killed (the memory limit's choice) may have left processes.
            self._stop()

    def outcome(self) -> Outcome:
        """Wait for the run to end (or be stopped), and say how it ended."""
        if self._outcome is None:
            self._thread.join()
            try:
                self._outcome = self._read(self.zygote.exit_code(self.child, ZYGOTE_ANSWER_SECONDS))
            finally:
                self._done()
        return self._outcome

    def _done(self) -> None:
        self.group.destroy()
        self.progress.close()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        self.runner._ended(self.zygote, self.slot)

    def cancel(self) -> None:
        """Stop the run and delete its files (the grader no longer wants them)."""
        if self._outcome is None:
            self._stop()
            self._thread.join()
            self.zygote.exit_code(self.child, ZYGOTE_ANSWER_SECONDS)
            self._done()
        remove_run_folder(self.folder)

    def _read(self, exit_code: int | None) -> Outcome:
        zygote, plan, watched = self.zygote, self.plan, self._watched
        # A cgroup limit explains a run better than the timeout it may also have caused.
        reached = _limit_reached(exit_code, self.group)
        self.group.destroy()  # nothing of the run may still be writing while its files are copied
        if reached is None and watched.stopped_by is None and zygote.capped and rundisk.is_full(self.scratch):
            reached = "disk_full"  # the run filled its disk and ended before the watcher looked
        out, refused, witness, watcher = _collect(os.path.dirname(self.scratch), self.folder, self.cells)
        self.progress.look()
        last_started = self.progress.last
        stopped_by, stopped_cell = watched.stopped_by, watched.cell
        if reached is not None:
            stopped_by, stopped_cell = reached, stopped_cell or last_started
        elif stopped_by is None and refused:
            stopped_by, stopped_cell = "tampered", last_started  # found bad after the export
        message = describe_limit(stopped_by, plan.limits, refused)
        fault = message if stopped_by == "host_busy" else ""
        if zygote.discarded:  # stopped with its sandbox by the grader, not by anything it did
            fault = "the grader restarted the sandbox while the run was under way: not the student's doing; grade it again"
        return Outcome(
            out_dir=out,
            exit_code=exit_code,
            stopped_by=stopped_by,
            stopped_cell=stopped_cell,
            last_started=last_started,
            seconds=watched.seconds,
            stderr_tail=runfiles.tail(os.path.dirname(self.scratch), STDERR, 4000),
            sandboxed=plan.sandboxed,
            limit_message=message,
            folder=self.folder,
            cpu_seconds=round(watched.cpu_seconds, 3),
            host_fault=fault,
            witness=witness,
            watcher=watcher if plan.sandboxed else "",
        )


def _collect(slot: str, folder: str, cells: int) -> tuple[str, tuple[str, ...], tuple[tuple[dict, ...], ...], str]:
    """Copy the files the run reported through (the slot's export/, which the run never
    saw by any path) into a folder of the grader's own: (that folder, why each refused file
    was refused, the runner's witness of each cell: the records in it, normally one, and
    the watcher's record of the export: "export", "closed", "ended" or "" without one)."""
    out = os.path.join(folder, "out")
    os.mkdir(out, 0o700)
    refused: dict[str, None] = {}
    for name, limit in COLLECTED.items():
        try:
            if runfiles.copy(slot, f"export/{name}", limit, os.path.join(out, name)) and os.path.getsize(os.path.join(out, name)) == 0:
                # made before the run, never written: as if absent
                os.unlink(os.path.join(out, name))
        except runfiles.Refused as refusal:
            refused[f"the run's {name} ({refusal})"] = None
        except OSError as error:
            refused[f"the run's {name} cannot be read ({error.strerror})"] = None
    try:
        watcher = (runfiles.read(slot, "export/watcher", WITNESS_BYTES) or b"").decode("utf-8", errors="replace").split()
    except (runfiles.Refused, OSError):
        watcher = []
    witness = []
    for index in range(cells):
        try:
            data = runfiles.read(slot, f"export/witness-{index}", WITNESS_BYTES) or b""
        except (runfiles.Refused, OSError):
            data = b""
        witness.append(tuple(_records(data)))
    return out, tuple(refused), tuple(witness), watcher[0] if watcher else ""


WITNESS_BYTES = 64 * 2**10


def _records(data: bytes):
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = {"status": "unreadable"}
        if isinstance(record, dict):
            yield {k: str(v)[:200] for k, v in record.items() if k in ("key", "status", "error")}


class _Progress:
    """The cells the run says it started, from its progress file (/scratch/out/progress).

    The grader makes the file and opens it before the run starts, and reads it only
    through that descriptor: the runner appends to the same file, and a run that puts
    a link or a pipe at its path is never read through it (it only loses the per-cell
    clock; the per-run one does not depend on it)."""

    TAIL = 4096  # bytes read from the end at each look: enough for the last line

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        os.fchmod(self.fd, 0o666)
        self.size, self.last = 0, None

    def look(self) -> str | None:
        """The key of the newest cell, if the file changed since the last look."""
        if self.fd < 0:
            return None
        try:
            size = os.fstat(self.fd).st_size
            if size == self.size:
                return None
            tail = os.pread(self.fd, self.TAIL, max(0, size - self.TAIL))
        except OSError:
            return None
        self.size = size
        lines = tail.splitlines()
        try:
            self.last = str(json.loads(lines[-1])["cell"])[:200]
        except (ValueError, KeyError, TypeError, IndexError):
            self.last = "?"
        return self.last

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _limit_reached(returncode: int | None, group: RunCgroup) -> str | None:
    # Refused forks first: a fork bomb's copies also fill memory, but forking is the cause.
    if group.processes_exhausted():
        return "processes"
    if group.memory_exhausted():
        return "memory"
    if returncode == -signal.SIGXCPU:
        return "cpu"
    return None


def describe_limit(stopped_by: str | None, limits: Limits, files: tuple[str, ...] = ()) -> str:
    """The scorecard's sentence for what stopped the run: the one place they are worded."""
    return {
        None: "",
        "cell_timeout": f"the cell used more than {limits.cell_timeout:g} s of CPU time and was stopped",
        "run_timeout": f"the run used more than {limits.run_timeout:g} s of CPU time in all and was stopped",
        "wall_clock": f"the cell waited more than {watch.idle_limit(limits.cell_timeout):g} s without computing "
        "(sleeping or blocked) and was stopped",
        "run_wall_clock": f"the run waited more than {watch.idle_limit(limits.run_timeout):g} s in all without "
        "computing (sleeping or blocked) and was stopped",
        "host_busy": "the grading machine was too busy to give the run a CPU, so it was stopped before it could "
        "finish: this is not the student's doing, and the notebook is to be graded again",
        "memory": f"the memory limit ({limits.memory_mb / 1024:g} GiB) was reached and the run was stopped",
        "processes": f"the run tried to start more than {limits.max_processes} processes and was stopped",
        "cpu": "the run used up its CPU time and was stopped",
        "disk_full": f"the run filled its disk (/scratch and /tmp together hold at most {DISK_BYTES / 2**20:g} MiB "
        f"in {DISK_FILES} files and folders) and was stopped",
        "tampered": "the run left files the grader reads back that cannot be trusted"
        + (f" ({'; '.join(files)})" if files else "") + ", so they were not read",
    }[stopped_by]
