"""Run a submission's cells in an isolated process and bring back what it wrote, as files.

Isolation is bubblewrap's: new user, PID, network, IPC, UTS and cgroup namespaces; a
read-only view of only the Python installation, the run's data, the pretrained
weights and the runner, each at a neutral path (no host path shows inside); a private
scratch folder and /tmp on a disk of the run's own, capped in bytes and files; a
scrubbed environment; rlimits on address space, CPU time, file size and open files;
limits in CPU time per cell and per run with a wall-clock backstop, enforced from
outside by killing the whole process group (see `grader.watch`).

After the run, the files the grader reads are copied out of its scratch folder by
`grader.runfiles` (no link followed, regular files only, size-capped) into a folder
of the grader's own, and the run's disk is unmounted.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import hashlib
import json
import logging
import os
import queue
import resource
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time

from grader import rundisk, runfiles, watch
from grader.artifact import MAX_JSON_BYTES, MAX_WEIGHTS_BYTES
from grader.cgroups import RunCgroup
from grader.faults import GraderFault, SandboxUnavailable
from grader.manifest import Limits

log = logging.getLogger(__name__)

RUNNER = os.path.join(os.path.dirname(__file__), "sandbox_runner.py")
SANDBOX_UID = 65534
TMP_BYTES = 512 * 2**20  # the run's private /tmp where it has no disk of its own (memory-backed)
# The run's disk holds /scratch and /tmp. It is memory, charged to the run's memory
# cgroup; 1 GiB is many times what the lab writes (a few small files and the weights,
# at most `file_mb`), and 20,000 inodes many times the files it makes (a dozen).
DISK_BYTES = 2**30
DISK_FILES = 20_000
SLOTS = 2  # runs under way at once in one sandbox: a batch runs the next notebook while it checks the last
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/fonts", "/etc/localtime", "/etc/alternatives")
# What the grader reads back from /scratch/out, and how large each may be.
COLLECTED = {
    "log.json": MAX_JSON_BYTES,
    "export.json": MAX_JSON_BYTES,
    "model.json": MAX_JSON_BYTES,
    "compile.json": MAX_JSON_BYTES,
    "model.weights.h5": MAX_WEIGHTS_BYTES,
}


@dataclasses.dataclass(frozen=True)
class Mounts:
    """Host paths made visible, read-only, inside the sandbox."""

    data_dir: str  # mounted at /data
    keras_models: str  # mounted at /keras/models


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
    # per cell, the runner's records of how it ended (sandbox_runner.seal): those of the cells
    # before the student's first were sealed before any of the student's code ran
    witness: tuple[tuple[dict, ...], ...] = ()
    # the watcher's record (sandbox_runner._watch_run): "export" if the run was stopped for its
    # export; "closed" or "ended" if not; "" without a sandbox (nothing to believe but the files)
    watcher: str = ""

    def remove(self) -> None:
        """Delete the run's files (once the grader has read them). Never raises."""
        if self.folder:
            remove_run_folder(self.folder)


@functools.cache
def bubblewrap_problem() -> str | None:
    """None if bubblewrap can make a sandbox here, else why not."""
    binary = shutil.which("bwrap")
    if binary is None:
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    # The namespaces and mounts a run needs (a container may allow namespaces but not a new /proc).
    probe = [binary, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
             "--tmpfs", "/tmp", "true"]
    try:
        result = subprocess.run(probe, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap could not start: {error}"
    if result.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {result.stderr.decode(errors='replace').strip()}"
    return None


@functools.cache
def _nobody_can_sandbox() -> bool:
    """Whether bubblewrap works when started as nobody here (unprivileged user namespaces)."""
    def as_nobody() -> None:
        os.setgroups([])
        os.setgid(SANDBOX_UID)
        os.setuid(SANDBOX_UID)

    probe = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"]
    try:
        works = subprocess.run(probe, capture_output=True, timeout=20, preexec_fn=as_nobody, cwd="/").returncode == 0
    except (OSError, subprocess.SubprocessError):
        works = False
    if not works:
        log.warning("bubblewrap does not work as nobody here: the sandbox's user is the grader's own user outside")
    return works


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


@dataclasses.dataclass(frozen=True)
class Python:
    """The grader's Python as the sandbox sees it: at neutral paths, not the host's.

    A virtual environment is rebuilt inside as /venv: its own pyvenv.cfg (whose `home`
    names the base installation's inside path), bin/python, and the host venv's
    site-packages. A base installation outside /usr is mounted at /python, and found
    by the dynamic loader through LD_LIBRARY_PATH (its binary may name its library
    folder by the host path)."""

    base: str  # host: the base installation (sys.base_prefix, resolved)
    base_inside: str  # where the sandbox sees it: the same path under /usr, else /python
    binary_inside: str  # the base interpreter, inside
    site: str | None  # host: the virtual environment's site-packages; None outside a venv
    site_inside: str | None
    pyvenv_cfg: str  # the venv's pyvenv.cfg as the sandbox sees it

    @property
    def executable(self) -> str:
        return "/venv/bin/python" if self.site else self.binary_inside

    @property
    def library_path(self) -> str:
        return os.path.join(self.base_inside, "lib") if self.base_inside != self.base else ""


@functools.cache
def python_layout() -> Python:
    base = os.path.realpath(sys.base_prefix)
    binary = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    in_system = any(base == d or base.startswith(d + "/") for d in _SYSTEM_DIRS)
    base_inside = base if in_system else "/python"
    binary_inside = os.path.join(base_inside, os.path.relpath(binary, base))
    if sys.prefix == sys.base_prefix:
        return Python(base, base_inside, binary_inside, None, None, "")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = os.path.realpath(sysconfig.get_paths()["purelib"])
    cfg = f"home = {os.path.dirname(binary_inside)}\ninclude-system-site-packages = {_system_site_packages()}\n"
    return Python(base, base_inside, binary_inside, site, f"/venv/lib/{version}/site-packages", cfg)


def _system_site_packages() -> str:
    """The host venv's own setting (the rest of its pyvenv.cfg names host paths)."""
    try:
        with open(os.path.join(sys.prefix, "pyvenv.cfg")) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return "false"
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "include-system-site-packages":
            return value.strip()
    return "false"


@dataclasses.dataclass(frozen=True)
class Places:
    """The host folders one run's sandbox paths are bound to."""

    scratch: str  # /scratch
    tmp: str | None  # /tmp (None: a sized tmpfs of bubblewrap's)
    shm: str  # /dev/shm
    slots: str  # /slots: a disk per run under way (see sandbox_runner), with scratch/, tmp/, shm/ each
    python: str | None  # the base installation (None: it is under /usr, already there)
    site: str | None  # the venv's site-packages (None: not in a venv)
    data: str  # /data


def bwrap_command(places: Places, env: dict[str, str], files: dict[str, int]) -> list[str]:
    """The bubblewrap command line of a sandbox; `files` are descriptors whose contents
    become read-only files inside (the runner, the venv's pyvenv.cfg), by inside path."""
    python = python_layout()
    command = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    command += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox"]
    command += ["--proc", "/proc", "--dev", "/dev", "--bind", places.shm, "/dev/shm"]
    command += ["--bind", places.tmp, "/tmp"] if places.tmp else ["--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            command += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            command += ["--ro-bind", path, path]
    for path in _ETC_FILES:
        if os.path.exists(path):
            command += ["--ro-bind", path, path]
    if places.python:
        command += ["--ro-bind", places.python, python.base_inside]
    if places.site:
        command += ["--tmpfs", "/venv", "--dir", "/venv/bin", "--symlink", python.binary_inside, "/venv/bin/python"]
        command += ["--file", str(files["/venv/pyvenv.cfg"]), "/venv/pyvenv.cfg", "--ro-bind", places.site, python.site_inside]
        command += ["--remount-ro", "/venv"]
    command += ["--ro-bind", places.data, "/data"]
    # /keras is each run's own (its slot's, with a copy of the weights): see Pending._give_weights
    command += ["--size", str(1 << 20), "--tmpfs", "/keras"]
    command += ["--bind", places.slots, "/slots"]
    command += ["--tmpfs", "/runner", "--file", str(files["/runner/run.py"]), "/runner/run.py", "--remount-ro", "/runner"]
    command += ["--bind", places.scratch, "/scratch", "--chdir", "/scratch", "--clearenv"]
    # Nothing else is writable: a run may leave files only where its slot's disk is, emptied after it.
    command += ["--remount-ro", "/dev", "--remount-ro", "/"]
    for key, value in env.items():
        command += ["--setenv", key, value]
    return command


def sandbox_env(plan: "Plan", home: str, data: str, keras_home: str, python: str = sys.executable, library_path: str = "") -> dict[str, str]:
    """The whole environment of the run: nothing of the host's is passed on. The lab's own
    variables (what its locked cells read) are its templates, filled in for this run."""
    values = {"data_dir": data, "data": data, "image_size": str(plan.image_size), "batch_size": str(plan.batch_size)}
    env = {
        "PATH": f"{os.path.dirname(python)}:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": "/tmp",
        "KERAS_HOME": keras_home,
        **{key: template.format(**values) for key, template in plan.environment},
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": os.path.join(home, ".matplotlib"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "HDF5_USE_FILE_LOCKING": "FALSE",  # a lock a run takes on a file must not fail another's open
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "2",
    }
    if library_path:
        env["LD_LIBRARY_PATH"] = library_path
    return env


def _prepare(plan: "Plan", folder: str) -> tuple[Places, bool]:
    """Make the run's folders and mounts under `folder`: (where each sandbox path comes
    from, whether the run has a capped disk of its own)."""
    python = python_layout()
    reads = {"python": python.base if python.base_inside != python.base else None, "site": python.site,
             "data": plan.mounts.data_dir}
    views = _mounted(folder, reads) if plan.sandboxed and _can_mount() else None
    capped, reads = views is not None, views or reads
    disk = os.path.join(folder, "disk")
    scratch, tmp, shm = _disk_folders(disk)
    slots = os.path.join(folder, "slots")
    if capped:  # a file system of its own, so that the sandbox's mount table names no host folder
        try:
            rundisk.mount_disk(slots, 2**20, 64)
        except OSError as error:
            raise SandboxUnavailable(f"cannot mount the runs' disks at {slots}: {error}") from None
    for slot in range(SLOTS):
        place = os.path.join(slots, str(slot))
        if capped:
            try:
                rundisk.mount_disk(place, DISK_BYTES, DISK_FILES)
            except OSError as error:
                raise SandboxUnavailable(f"cannot mount a run's disk at {place}: {error}") from None
        _disk_folders(place)
        _fresh_file(os.path.join(place, STDERR))
    os.chmod(slots, 0o755)
    return Places(scratch, tmp if capped else None, shm, slots, reads["python"], reads["site"], reads["data"]), capped


def _disk_folders(disk: str) -> tuple[str, str, str]:
    """scratch/ (with out/), tmp/, shm/ and keras/ (with models/, where the run's own copy of
    the pretrained weights goes) on a disk, as a run finds them."""
    scratch, tmp, shm = (os.path.join(disk, name) for name in ("scratch", "tmp", "shm"))
    # export/: where the run reports (see sandbox_runner.open_channels); never mounted where the run can see it
    for path, mode in ((scratch, 0o777), (os.path.join(scratch, "out"), 0o777), (tmp, 0o1777), (shm, 0o1777),
                       (os.path.join(disk, "keras"), 0o777), (os.path.join(disk, "keras", "models"), 0o755),
                       (os.path.join(disk, "export"), 0o777)):
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
    return scratch, tmp, shm


def _mounted(folder: str, reads: dict[str, str | None]) -> dict[str, str | None] | None:
    """Mount the run's disk at `folder`/disk and a neutral view of each folder in `reads`:
    the views' paths, by the same names; None (and nothing left mounted) if that failed."""
    try:
        rundisk.mount_disk(os.path.join(folder, "disk"), DISK_BYTES, DISK_FILES)
        os.mkdir(os.path.join(folder, "empty"))
        views = {}
        for name, source in reads.items():
            views[name] = os.path.join(folder, "view", name) if source else None
            if source:
                rundisk.mount_view(source, views[name], os.path.join(folder, "empty"))
        return views
    except OSError as error:  # the probe said it would work: this run goes without, and says so
        log.warning("run %s gets no disk or views of its own: %s", folder, error)
        rundisk.release(folder)
        return None


@functools.cache
def _can_mount() -> bool:
    problem = rundisk.problem()
    if problem is not None:  # said once per grader process
        log.warning("runs get no capped disk and their mount table shows host paths: %s", problem)
    return problem is None


def _memfd(name: str, content: bytes) -> int:
    fd = os.memfd_create(name, 0)
    os.write(fd, content)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@functools.cache
def _runner_source() -> bytes:
    with open(RUNNER, "rb") as handle:
        return handle.read()


def _hold(folder: str) -> int:
    """Lock the run's folder for as long as its mounts exist (the descriptor is closed after
    they are released): a folder with mounts and a free lock was left by a dead grader."""
    fd = os.open(os.path.join(folder, "lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _held(folder: str) -> bool:
    """Whether a live grader holds the run folder's lock."""
    try:
        fd = os.open(os.path.join(folder, "lock"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def remove_run_folder(folder: str) -> bool:
    """Unmount and delete a run's folder; True if it is gone. Never raises."""
    return rundisk.release(folder) and runfiles.remove_tree(folder)


def cgroup_tag(temporary_folder: str) -> str:
    """The tag in the names of the cgroups of runs whose folders are in `temporary_folder`."""
    return hashlib.sha256(os.path.realpath(temporary_folder).encode()).hexdigest()[:8]


RUN_PREFIX = "grader-run-"
STALE_RUN_AFTER = 24 * 3600  # seconds
ALIASES = "/run/grader-sandboxes"  # see _Zygote._reachable


def _open_to_all(path: str) -> bool:
    """Whether anyone may pass through every folder above `path`."""
    path = os.path.realpath(path)
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return True
        if not os.stat(parent).st_mode & 0o001:
            return False
        path = parent


def _limit_resources(limits: Limits, group: RunCgroup, user: int | None = None):
    """The zygote's limits, inherited by each run's child (which adds its own CPU-time
    limit: a per-process counter that starts again at each fork); with `user`, bubblewrap
    then runs as that host user, not as the grader's (root), so that the sandbox's user
    is that user outside too and owns nothing of the host's (a cgroup's files, above all)."""
    def apply() -> None:
        if group.active:
            group.enter()
        # With a memory cgroup the address space only needs a backstop (TensorFlow reserves
        # far more address space than it touches); without one it is the memory limit.
        memory = limits.memory_mb * 2**20 * (4 if group.active else 1)
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        size = limits.file_mb * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if user is not None:
            os.setgroups([])
            os.setgid(user)
            os.setuid(user)

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
    environment: tuple[tuple[str, str], ...] = ()  # the lab's variables: name -> template (see sandbox_env)
    answer: str = "model"  # the name the answer defines, exported after the cells run
    kind: str = "model"  # what it is: "model" or "dataset"
    count_limit: int = 0  # a dataset's elements are counted up to this many (one more than the data's files)


def _nspids(pid: int) -> list[int]:
    """The process's ids, from the host's PID namespace down to its own ([] if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            return next(([int(f) for f in line.split()[1:]] for line in handle if line.startswith("NSpid:")), [])
    except (OSError, ValueError):
        return []


class ZygoteLost(Exception):
    """The zygote did not answer as it should (it died, or it hung): start another."""


ZYGOTE_READY_SECONDS = 600.0  # wall clock for a new zygote to import the plan's modules (a busy host is slow)
ZYGOTE_ANSWER_SECONDS = 60.0  # for a fork, and for the report of a run that has ended
# bubblewrap's two processes, the zygote's threads and its children until the grader takes
# them into their runs' cgroups (the runs' own limit is the assignment's max_processes)
ZYGOTE_PROCESSES = 64


class _Zygote:
    """A sandbox whose runner has imported the plan's modules once and forks one child per
    run (see sandbox_runner), on a slot of its own: a disk that is the run's /scratch, /tmp
    and /dev/shm, emptied after the run once everything the run started is dead. The
    grader is the only one that talks to it; a thread reads what it says."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.folder = tempfile.mkdtemp(prefix=RUN_PREFIX)
        self.lock = _hold(self.folder)
        self.stderr = -1
        self.ready = False
        self.zygote_pid: int | None = None  # see _zygote_pid
        self.alias = ""  # see _reachable
        self.free = list(range(SLOTS))  # the slots with no run under way
        self.discarded = False
        self._said: queue.Queue = queue.Queue()
        self._ended: dict[int, int] = {}
        self._gone = False
        self._news = threading.Condition()
        try:
            self._start()
        except BaseException:
            if self.alias:
                remove_run_folder(self.alias)
            remove_run_folder(self.folder)
            os.close(self.lock)
            raise
        threading.Thread(target=self._listen, name="sandbox-zygote", daemon=True).start()

    def _start(self) -> None:
        plan, folder = self.plan, self.folder
        places, self.capped = _prepare(plan, folder)
        self.places = places
        python = python_layout()
        files: dict[str, int] = {}
        if plan.sandboxed:
            inside = {"scratch": "/scratch", "data": "/data", "keras": "/keras", "runner": "/runner/run.py", "python": python.executable, "slots": "/slots"}
            files["/runner/run.py"] = _memfd("runner", _runner_source())
            if python.site:
                files["/venv/pyvenv.cfg"] = _memfd("pyvenv.cfg", python.pyvenv_cfg.encode())
        else:  # each run's KERAS_HOME is its slot's keras/ (the runner sets it)
            inside = {"scratch": places.scratch, "data": plan.mounts.data_dir, "keras": os.path.join(places.slots, "0", "keras"),
                      "runner": RUNNER, "python": sys.executable, "slots": places.slots}
        self.inside = inside
        # As root, bubblewrap maps the sandbox's user to root outside; as nobody, to nobody. It
        # can run as nobody where everything it binds is a view of the grader's (the views'
        # folders are open to all, their sources need not be).
        self.user = SANDBOX_UID if plan.sandboxed and self.capped and os.geteuid() == 0 and _nobody_can_sandbox() else None
        if self.user is not None:
            os.chmod(folder, 0o711)  # others may pass through, not list
        library_path = python.library_path if plan.sandboxed else ""
        env = sandbox_env(plan, inside["scratch"], inside["data"], inside["keras"], inside["python"], library_path)
        config = {"isolate": plan.sandboxed, "slots": inside["slots"],
                  "cpu_seconds": int(plan.limits.run_timeout * 2) + 10, "file_bytes": plan.limits.file_mb * 2**20}
        command = [inside["python"], inside["runner"], json.dumps(config), ",".join(plan.warm)]
        if plan.sandboxed:
            command = bwrap_command(self._reachable(places), env, files) + command
        self.group = RunCgroup(ZYGOTE_PROCESSES, plan.limits.memory_mb * 2**20, cgroup_tag(os.path.dirname(folder)))
        # The runs' stderr goes here too (for appending: a slot's share is read by offsets).
        self.stderr = os.open(os.path.join(folder, "stderr.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                env=env,
                cwd=places.scratch,
                start_new_session=True,
                pass_fds=tuple(files.values()),
                preexec_fn=_limit_resources(plan.limits, self.group, self.user),
            )
        except BaseException:
            self.group.destroy()
            os.close(self.stderr)
            raise
        finally:
            for fd in files.values():
                os.close(fd)

    def _reachable(self, places: Places) -> Places:
        """`places` as bubblewrap, started as nobody, can reach them: bubblewrap walks every
        source's path, and the zygote's folder may be in a folder closed to others (a
        TMPDIR of mode 0700). Then the folder, with its mounts, is also bound at an alias
        in a folder of the grader's that others may pass through (not list)."""
        if self.user is None or _open_to_all(self.folder):
            return places
        os.makedirs(ALIASES, mode=0o711, exist_ok=True)
        os.chmod(ALIASES, 0o711)
        alias = os.path.join(ALIASES, os.path.basename(self.folder))
        os.mkdir(alias)
        self.alias = alias
        rundisk.bind(self.folder, alias)
        moved = {field.name: getattr(places, field.name) for field in dataclasses.fields(places)}
        for name, path in moved.items():
            if path and path.startswith(self.folder + os.sep):
                moved[name] = alias + path[len(self.folder):]
        return Places(**moved)

    def _listen(self) -> None:
        """Read what the zygote says: a run's end is kept by process, the rest queued in order."""
        try:
            for raw in iter(self.process.stdout.readline, b""):
                word, _, rest = raw.decode(errors="replace").strip().partition(" ")
                if word == "exit":
                    pid, _, code = rest.partition(" ")
                    with self._news:
                        self._ended[int(pid)] = int(code)
                        self._news.notify_all()
                else:
                    self._said.put((word, rest))
        except (OSError, ValueError):
            pass
        finally:
            with self._news:
                self._gone = True
                self._news.notify_all()
            self._said.put(None)

    def scratch(self, slot: int) -> str:
        """The slot's scratch folder, on the host."""
        return os.path.join(self.places.slots, str(slot), "scratch")

    def inside_scratch(self, slot: int) -> str:
        """The same folder as the run sees it."""
        return "/scratch" if self.plan.sandboxed else self.scratch(slot)

    def alive(self) -> bool:
        return self.process.poll() is None and not self._gone

    def say(self, text: str) -> None:
        try:
            self.process.stdin.write(f"{text}\n".encode())
            self.process.stdin.flush()
        except (OSError, ValueError) as error:
            raise ZygoteLost(f"the zygote stopped listening ({error})") from None

    def hear(self, expected: str, seconds: float) -> str:
        """The zygote's next word, which must be `expected`: the rest of its line."""
        try:
            said = self._said.get(timeout=seconds)
        except queue.Empty:
            raise ZygoteLost(f"the zygote did not say {expected!r} within {seconds:g} s") from None
        if said is None:
            self._said.put(None)
            last = [line for line in runfiles.tail(self.folder, "stderr.txt", 2000).splitlines() if line.strip()][-1:] or ["no message"]
            raise ZygoteLost(f"the zygote ended (exit code {self.process.wait()}: {last[0][-300:]}) before it said {expected!r}")
        if said[0] != expected:
            raise ZygoteLost(f"the zygote said {' '.join(said)[:80]!r}, not {expected!r}")
        return said[1]

    def await_ready(self) -> None:
        """Wait until the zygote has imported its modules (once)."""
        if not self.ready:
            self.hear("ready", ZYGOTE_READY_SECONDS)
            self._zygote_pid()  # while no run exists
            self.ready = True

    def fork(self, slot: int) -> tuple[int, int]:
        """A new child for `slot`, waiting for its word: (its id for the zygote, its process id on the host)."""
        self.await_ready()
        self.say(f"fork {slot}")
        inside = int(self.hear("forked", ZYGOTE_ANSWER_SECONDS))
        for _ in range(500):
            host = self._host_pid(inside)
            if host is not None:
                return inside, host
            time.sleep(0.01)
        self.say(f"drop {inside}")
        raise ZygoteLost(f"the zygote's child {inside} is nowhere to be seen")

    def _host_pid(self, inside: int) -> int | None:
        """The host's id of the zygote's child `inside`: only a direct child of the zygote
        counts (a run's leftovers elsewhere in the sandbox may carry the same inner id)."""
        for pid in watch.children(self._zygote_pid()):
            ids = _nspids(pid)  # the zygote's namespace is the host's, or one below it
            if (ids == [pid] and pid == inside) if not self.plan.sandboxed else (len(ids) == 2 and ids[1] == inside):
                return pid
        return None

    def _zygote_pid(self) -> int:
        """The host's id of the zygote itself (bubblewrap's command; found before any run)."""
        if self.zygote_pid is None:
            if not self.plan.sandboxed:
                self.zygote_pid = self.process.pid
            else:  # bubblewrap's own process outside, its init inside (1), the zygote (2)
                found = [pid for pid in watch.process_tree(self.process.pid) if len(_nspids(pid)) == 2 and _nspids(pid)[1] == 2]
                if len(found) != 1:
                    raise ZygoteLost(f"the zygote is not where it should be in its sandbox ({len(found)} found)")
                self.zygote_pid = found[0]
        return self.zygote_pid

    def exit_code(self, inside: int, seconds: float) -> int | None:
        """How child `inside` ended, once it has (None if the zygote did not say in time)."""
        with self._news:
            self._news.wait_for(lambda: inside in self._ended or self._gone, timeout=seconds)
            return self._ended.pop(inside, None)

    def wipe(self, slot: int) -> None:
        """Empty the slot's disk for its next run (nothing of the last one may be alive) and
        make the folders the runner expects."""
        place = os.path.join(self.places.slots, str(slot))
        for name in ("scratch", "tmp", "shm", "keras", "export"):
            folder = os.path.join(place, name)
            for entry in os.listdir(folder):
                runfiles.remove_tree(os.path.join(folder, entry))
            left = os.listdir(folder)
            if left:
                raise OSError(f"{len(left)} entries left in {folder}")
        _disk_folders(place)
        _fresh_file(os.path.join(place, STDERR))

    def discard(self) -> None:
        """Stop the zygote and every run under way in it (their outcomes say it was the grader's doing)."""
        self.discarded = True
        _kill(self.process)
        self.group.destroy()
        if self.alias:
            remove_run_folder(self.alias)
        remove_run_folder(self.folder)
        for fd in (self.lock, self.stderr):
            if fd >= 0:
                os.close(fd)
        self.lock = self.stderr = -1
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


def _give_weights(source: str, models: str) -> None:
    """Copy the staged pretrained weights into a run's own keras/models/ (read-only inside:
    the runner binds it so). Every run gets its own file: a lock one run takes on it
    (flock, fcntl) or anything it does to it reaches no other run and not the grader, which
    loads the base from the staged file the runs never see."""
    for name in sorted(os.listdir(source)):
        path = os.path.join(source, name)
        if os.path.isfile(path) and not name.endswith(".partial"):
            target = os.path.join(models, name)
            if os.path.lexists(target):  # left by a run that never started
                os.unlink(target)
            shutil.copyfile(path, target)
            os.chmod(target, 0o444)


STDERR = "stderr.txt"  # in a slot, beside scratch/: the run's stderr (the child opens it before the slots are hidden)


def _fresh_file(path: str) -> None:
    """An empty regular file at `path` that the sandbox's user may write."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    os.fchmod(fd, 0o666)
    os.close(fd)


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
        self._zygote: _Zygote | None = None
        self._running = 0
        if ahead and plan is not None:
            self._zygote = _Zygote(plan)

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
                log.warning("sandbox: %s; starting another", lost)
                self._discard_zygote()
        return Pending.never_ran(self, folder, lost)

    def _ready(self) -> "_Zygote":
        if self._zygote is not None and not self._zygote.alive():
            self._discard_zygote()
        if self._zygote is None:
            self._zygote = _Zygote(self.plan)
        return self._zygote

    def _discard_zygote(self) -> None:
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            zygote.discard()

    def _ended(self, zygote: "_Zygote", slot: int) -> None:
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
            abandoned = (rundisk.mounts_under(path) and not _held(path)) or time.time() - os.lstat(path).st_mtime > older_than
        except Exception:  # noqa: BLE001
            log.exception("cannot look at %s", path)
            continue
        if abandoned:
            removed += remove_run_folder(path)
    _sweep_aliases()
    return removed


def _sweep_aliases() -> None:
    """Release the aliases (see _Zygote._reachable) that no live grader holds: a killed
    grader's, which keep its sandbox's disks mounted."""
    try:
        names = os.listdir(ALIASES)
    except OSError:
        return
    for name in names:
        path = os.path.join(ALIASES, name)
        try:
            if not _held(path):
                rundisk.release(path)
                os.rmdir(path)
        except Exception:  # noqa: BLE001 - a sweep must never stop a batch
            log.exception("cannot sweep %s", path)


def run(cells, work_dir: str, mounts: Mounts, limits: Limits, image_size: int, batch_size: int, sandboxed: bool) -> Outcome:
    """Run `cells` once, in a fresh sandbox with its files in `work_dir`."""
    return Runner(Plan(mounts, limits, image_size, batch_size, sandboxed)).run(cells, work_dir)


class Pending:
    """A run given its cells: watched from a thread until it ends, then read."""

    def __init__(self, zygote: _Zygote, cells, runner: Runner, folder: str):
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
            _give_weights(plan.mounts.keras_models, os.path.join(os.path.dirname(self.scratch), "keras", "models"))
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
