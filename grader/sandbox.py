"""Run a submission's cells in an isolated process and bring back what it wrote, as files.

Isolation is bubblewrap's: new user, PID, network, IPC, UTS and cgroup namespaces; a
read-only view of only the Python installation, the run's data, the pretrained
weights and the runner; a private scratch folder and /tmp; a scrubbed environment;
rlimits on address space, CPU time, file size and open files; a wall-clock limit per
cell and per run, enforced from outside by killing the whole process group.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from grader.cgroups import RunCgroup
from grader.errors import SandboxUnavailable
from grader.manifest import Limits

RUNNER = os.path.join(os.path.dirname(__file__), "sandbox_runner.py")
SANDBOX_UID = 65534
TMP_BYTES = 512 * 2**20  # the run's private /tmp (memory-backed, so also under the memory cgroup)
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/fonts", "/etc/localtime", "/etc/alternatives")


@dataclasses.dataclass(frozen=True)
class Mounts:
    """Host paths made visible, read-only, inside the sandbox."""

    data_dir: str  # mounted at /data
    keras_models: str  # mounted at /keras/models


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How the run ended; the files it wrote are in `out_dir`."""

    out_dir: str
    exit_code: int | None
    stopped_by: str | None  # None, "cell_timeout", "run_timeout", "memory", "processes", "cpu"
    stopped_cell: str | None
    last_started: str | None  # the last cell the run started (it may have ended inside it)
    seconds: float
    stderr_tail: str
    sandboxed: bool
    limit_message: str = ""  # which limit stopped the run, in words, for the scorecard
    folder: str = ""  # the run's own folder (out_dir is inside it)

    def remove(self) -> None:
        """Delete the run's files (once the grader has read them)."""
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


@functools.cache
def bubblewrap_problem() -> str | None:
    """None if bubblewrap can make a sandbox here, else why not."""
    binary = shutil.which("bwrap")
    if binary is None:
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    probe = [binary, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"]
    try:
        result = subprocess.run(probe, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap could not start: {error}"
    if result.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {result.stderr.decode(errors='replace').strip()}"
    return None


def require_sandbox(allow_unsandboxed: bool) -> bool:
    """Whether runs will be sandboxed; raise if not and the user did not allow it."""
    problem = bubblewrap_problem()
    if problem is None:
        return True
    if allow_unsandboxed:
        return False
    raise SandboxUnavailable(
        f"cannot run student code in a sandbox: {problem}",
        hint="fix that, or pass --no-sandbox to run student code without isolation (every scorecard will say so)",
    )


def bwrap_command(mounts: Mounts, scratch: str, env: dict[str, str]) -> list[str]:
    command = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    command += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox"]
    # Private /proc, /dev and /tmp first: a later bind below /tmp (a checkout or a venv
    # that lives there) must land on top of the private /tmp, not under it.
    command += ["--proc", "/proc", "--dev", "/dev", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            command += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            command += ["--ro-bind", path, path]
    for path in _ETC_FILES:
        if os.path.exists(path):
            command += ["--ro-bind", path, path]
    for prefix in sorted({sys.base_prefix, sys.prefix, os.path.realpath(sys.base_prefix)}):
        command += ["--ro-bind", prefix, prefix]
    command += ["--ro-bind", mounts.data_dir, "/data"]
    command += ["--size", str(1 << 20), "--tmpfs", "/keras", "--ro-bind", mounts.keras_models, "/keras/models"]
    command += ["--bind", scratch, "/scratch", "--ro-bind", RUNNER, "/runner/run.py", "--chdir", "/scratch"]
    command += ["--clearenv"]
    for key, value in env.items():
        command += ["--setenv", key, value]
    return command


def sandbox_env(image_size: int, batch_size: int, home: str, data: str, keras_home: str) -> dict[str, str]:
    """The whole environment of the run: nothing of the host's is passed on."""
    return {
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": "/tmp",
        "KERAS_HOME": keras_home,
        "FLOWERS_TFREC": os.path.join(data, "*.tfrec"),
        "FLOWERS_IMAGE_SIZE": str(image_size),
        "FLOWERS_BATCH_SIZE": str(batch_size),
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": os.path.join(home, ".matplotlib"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "2",
    }


RUN_PREFIX = "grader-run-"
STALE_RUN_AFTER = 24 * 3600  # seconds


STANDBY_NICE = 10  # a sandbox started ahead imports at low priority, behind the grader's training


def _limit_resources(limits: Limits, group: RunCgroup, nice: int = 0):
    def apply() -> None:
        if group.active:
            group.enter()
        if nice:
            os.nice(nice)
        # With a memory cgroup the address space only needs a backstop (TensorFlow reserves
        # far more address space than it touches); without one it is the memory limit.
        memory = limits.memory_mb * 2**20 * (4 if group.active else 1)
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        cpu = int(limits.run_timeout * 2) + 10
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        size = limits.artifact_mb * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything a run needs besides its cells: the same for every submission of a batch."""

    mounts: Mounts
    limits: Limits
    image_size: int
    batch_size: int
    sandboxed: bool
    warm: tuple[str, ...] = ()  # modules the run imports before its cells are known (the assignment's own)


@dataclasses.dataclass
class _Launch:
    """A started sandbox, waiting for (or running) its one submission."""

    folder: str  # holds scratch/ and stderr.txt; removed after the run
    process: subprocess.Popen
    group: RunCgroup
    inside_scratch: str
    nice: int = 0

    def to_normal_priority(self) -> None:
        """Every thread of the run back to the grader's own priority."""
        pids = self.group.processes() or [self.process.pid]
        for pid in pids:
            try:
                threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except (OSError, ValueError):
                continue
            for thread in threads:
                try:
                    os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, 0))
                except OSError:
                    pass  # it ended meanwhile
        self.nice = 0

    def discard(self) -> None:
        _kill(self.process)
        self.group.destroy()
        shutil.rmtree(self.folder, ignore_errors=True)


class Runner:
    """Runs each submission's cells in a sandbox of its own.

    With `ahead`, the next run's sandbox is started as soon as one run ends, so that its
    interpreter has started and imported the assignment's modules (TensorFlow: seconds)
    while the grader checks and trains the last submission. It is still one new sandbox
    per submission (its own namespaces, scratch folder, cgroup and limits); it has seen
    no submission before its own, and it is stopped, never reused, when its run ends.
    """

    def __init__(self, plan: Plan, ahead: bool = False):
        self.plan, self.ahead = plan, ahead
        self._standby: _Launch | None = None

    def run(self, cells, folder: str | None = None) -> Outcome:
        """Run `cells` (RunCell values) and wait for the end; the outcome's files are in
        `folder` (default: a new temporary folder, which `Outcome.remove()` deletes)."""
        return self.start(cells, folder).outcome()

    def start(self, cells, folder: str | None = None) -> "Pending":
        """Start running `cells` and return at once; `.outcome()` waits for the end. The
        time limits are watched from a thread meanwhile, so the grader can check another
        submission while this one runs."""
        launch = self._take() if folder is None else None
        if launch is None:
            launch = _launch(self.plan, folder or tempfile.mkdtemp(prefix=RUN_PREFIX))
        return Pending(launch, cells, self)

    def _ended(self) -> None:
        if self.ahead and self._standby is None:
            self._standby = _launch(self.plan, tempfile.mkdtemp(prefix=RUN_PREFIX), nice=STANDBY_NICE)

    def _take(self) -> _Launch | None:
        standby, self._standby = self._standby, None
        if standby is not None and standby.process.poll() is not None:
            standby.discard()  # it died waiting (it should not): start afresh
            return None
        return standby

    def close(self) -> None:
        standby, self._standby = self._standby, None
        if standby is not None:
            standby.discard()


def sweep_stale_runs(older_than: float = STALE_RUN_AFTER) -> int:
    """Delete run folders left in the temporary folder by a grader that was killed."""
    removed = 0
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        path = os.path.join(base, name)
        try:
            if name.startswith(RUN_PREFIX) and time.time() - os.stat(path).st_mtime > older_than:
                shutil.rmtree(path)
                removed += 1
        except OSError:
            pass
    return removed


def run(cells, work_dir: str, mounts: Mounts, limits: Limits, image_size: int, batch_size: int, sandboxed: bool) -> Outcome:
    """Run `cells` once, in a fresh sandbox with its files in `work_dir`."""
    return Runner(Plan(mounts, limits, image_size, batch_size, sandboxed)).run(cells, work_dir)


def _launch(plan: Plan, folder: str, nice: int = 0) -> _Launch:
    """Start a sandboxed runner that imports the plan's modules, then waits for its job
    (at a lower priority by `nice`, until it is given its job)."""
    scratch = os.path.join(folder, "scratch")
    os.makedirs(os.path.join(scratch, "out"), exist_ok=True)
    if plan.sandboxed:
        os.chmod(scratch, 0o777)
        os.chmod(os.path.join(scratch, "out"), 0o777)
        inside = {"scratch": "/scratch", "data": "/data", "keras": "/keras", "runner": "/runner/run.py"}
    else:
        keras_home = os.path.join(folder, "keras")
        os.makedirs(keras_home, exist_ok=True)
        if not os.path.exists(os.path.join(keras_home, "models")):
            os.symlink(plan.mounts.keras_models, os.path.join(keras_home, "models"))
        inside = {"scratch": scratch, "data": plan.mounts.data_dir, "keras": keras_home, "runner": RUNNER}
    env = sandbox_env(plan.image_size, plan.batch_size, inside["scratch"], inside["data"], inside["keras"])
    command = [sys.executable, inside["runner"], os.path.join(inside["scratch"], "job.json"), ",".join(plan.warm)]
    if plan.sandboxed:
        command = bwrap_command(plan.mounts, scratch, env) + command
    group = RunCgroup(plan.limits.max_processes, plan.limits.memory_mb * 2**20)
    try:
        with open(os.path.join(folder, "stderr.txt"), "wb") as stderr:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
                cwd=scratch,
                start_new_session=True,
                preexec_fn=_limit_resources(plan.limits, group, nice),
            )
    except BaseException:
        group.destroy()
        raise
    return _Launch(folder, process, group, inside["scratch"], nice)


class Pending:
    """A run given its cells: watched from a thread until it ends, then read."""

    def __init__(self, launch: _Launch, cells, runner: Runner):
        self.launch, self.plan, self.runner = launch, runner.plan, runner
        self.scratch = os.path.join(launch.folder, "scratch")
        job = {
            "cells": [{"key": c.key, "role": c.role, "source": c.source} for c in cells],
            "out": os.path.join(launch.inside_scratch, "out"),
            "output_chars": self.plan.limits.output_bytes,
        }
        with open(os.path.join(self.scratch, "job.json"), "w") as handle:
            json.dump(job, handle)
        if launch.nice:
            launch.to_normal_priority()
        try:
            launch.process.stdin.write(b"go\n")
            launch.process.stdin.close()
        except OSError:
            pass  # it already ended; the outcome says how
        self._watched: tuple = (None, None, 0.0)
        self._thread = threading.Thread(target=self._watch, name="sandbox-watch", daemon=True)
        self._thread.start()
        self._outcome: Outcome | None = None

    def _watch(self) -> None:
        try:
            self._watched = _watch(self.launch.process, os.path.join(self.scratch, "out", "progress"), self.plan.limits)
        except BaseException:
            _kill(self.launch.process)
            raise

    def outcome(self) -> Outcome:
        """Wait for the run to end (or be stopped), and say how it ended."""
        if self._outcome is None:
            self._thread.join()
            try:
                self._outcome = self._read()
            finally:
                self.launch.group.destroy()
            self.runner._ended()
        return self._outcome

    def cancel(self) -> None:
        """Stop the run and delete its files (the grader no longer wants them)."""
        self.launch.discard()
        self._thread.join()

    def _read(self) -> Outcome:
        launch, plan = self.launch, self.plan
        stopped_by, stopped_cell, seconds = self._watched
        progress = os.path.join(self.scratch, "out", "progress")
        last_started = (_last_progress(progress, 0) or (0, None))[1]
        # A cgroup limit explains a run better than the timeout it may also have caused.
        reached = _limit_reached(launch.process.returncode, launch.group)
        if reached is not None:
            stopped_by = reached
            stopped_cell = stopped_cell or last_started
        return Outcome(
            out_dir=os.path.join(self.scratch, "out"),
            exit_code=launch.process.returncode,
            stopped_by=stopped_by,
            stopped_cell=stopped_cell,
            last_started=last_started,
            seconds=seconds,
            stderr_tail=_tail(os.path.join(launch.folder, "stderr.txt"), 4000),
            sandboxed=plan.sandboxed,
            limit_message=describe_limit(stopped_by, plan.limits),
            folder=launch.folder,
        )


def _limit_reached(returncode: int | None, group: RunCgroup) -> str | None:
    # Refused forks first: a fork bomb's copies also fill memory, but forking is the cause.
    if group.processes_exhausted():
        return "processes"
    if group.memory_exhausted():
        return "memory"
    if returncode == -signal.SIGXCPU:
        return "cpu"
    return None


def describe_limit(stopped_by: str | None, limits: Limits) -> str:
    return {
        None: "",
        "cell_timeout": f"the cell ran past {limits.cell_timeout:g} s and was stopped",
        "run_timeout": f"the run ran past {limits.run_timeout:g} s in all and was stopped",
        "memory": f"the memory limit ({limits.memory_mb / 1024:g} GiB) was reached and the run was stopped",
        "processes": f"the run tried to start more than {limits.max_processes} processes and was stopped",
        "cpu": "the run used up its CPU time and was stopped",
    }[stopped_by]


def _watch(process: subprocess.Popen, progress_path: str, limits: Limits):
    """Wait for the run; kill its process group past a cell's or the run's time limit."""
    started = time.monotonic()
    cell, cell_started = None, started
    seen = 0
    while process.poll() is None:
        time.sleep(0.05)
        now = time.monotonic()
        latest = _last_progress(progress_path, seen)
        if latest is not None:
            seen, cell = latest
            cell_started = now
        if now - started > limits.run_timeout:
            _kill(process)
            return "run_timeout", cell, now - started
        if cell is not None and now - cell_started > limits.cell_timeout:
            _kill(process)
            return "cell_timeout", cell, now - started
    return None, None, time.monotonic() - started


def _last_progress(path: str, seen: int):
    """(lines seen, key of the newest cell started) if the progress file grew."""
    try:
        with open(path, "rb") as handle:
            lines = handle.read(1 << 20).splitlines()
    except OSError:
        return None
    if len(lines) <= seen:
        return None
    try:
        return len(lines), str(json.loads(lines[-1])["cell"])[:200]
    except (ValueError, KeyError, TypeError):
        return len(lines), "?"


def _kill(process: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=2)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def _tail(path: str, size: int) -> str:
    with open(path, "rb") as handle:
        handle.seek(max(0, os.path.getsize(path) - size))
        return handle.read().decode("utf-8", errors="replace")
