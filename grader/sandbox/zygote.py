"""The zygote: one sandboxed process per plan that imported the plan's modules once and forks a
child per run, on a slot of its own (a disk for /scratch, /tmp and /dev/shm). Its folder,
limits and cgroup are the grader's; it is started, answered and ended from here."""

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
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from grader.config.manifest import Limits
from grader.faults import SandboxUnavailable
from grader.sandbox import rundisk, runfiles, watch
from grader.sandbox.bwrap import Places, SANDBOX_UID, bwrap_command, nobody_can_sandbox, open_to_all, python_layout, sandbox_env
from grader.sandbox.cgroups import RunCgroup
from grader.sandbox.plan import Plan

log = logging.getLogger(__name__)

RUNNER = os.path.join(os.path.dirname(__file__), "inside.py")
# The run's disk holds /scratch and /tmp. It is memory, charged to the run's memory
# cgroup; 1 GiB is many times what the lab writes (a few small files and the weights,
# at most `file_mb`), and 20,000 inodes many times the files it makes (a dozen).
DISK_BYTES = 2**30
DISK_FILES = 20_000
SLOTS = 2  # runs under way at once in one sandbox: a batch runs the next notebook while it checks the last


def _prepare(plan: Plan, folder: str) -> tuple[Places, bool]:
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
    # export/: where the run reports (see inside.open_channels); never mounted where the run can see it
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


def hold(folder: str) -> int:
    """Lock the run's folder for as long as its mounts exist (the descriptor is closed after
    they are released): a folder with mounts and a free lock was left by a dead grader."""
    fd = os.open(os.path.join(folder, "lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def held(folder: str) -> bool:
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
ALIASES = "/run/grader-sandboxes"  # see Zygote._reachable


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


class Zygote:
    """A sandbox whose runner has imported the plan's modules once and forks one child per
    run (see inside.py), on a slot of its own: a disk that is the run's /scratch, /tmp
    and /dev/shm, emptied after the run once everything the run started is dead. The
    grader is the only one that talks to it; a thread reads what it says."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.folder = tempfile.mkdtemp(prefix=RUN_PREFIX)
        self.lock = hold(self.folder)
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
        self.user = SANDBOX_UID if plan.sandboxed and self.capped and os.geteuid() == 0 and nobody_can_sandbox() else None
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
        if self.user is None or open_to_all(self.folder):
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
        kill(self.process)
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


def give_weights(source: str, models: str) -> None:
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


def kill(process: subprocess.Popen) -> None:
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
