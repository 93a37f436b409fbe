"""The sandbox's walls: whether bubblewrap works here, the Python a run may see, and the
bubblewrap command line that binds only that, at neutral paths, with a scrubbed environment."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import subprocess
import sys
import sysconfig

from grader.faults import SandboxUnavailable
from grader.sandbox.plan import Plan

log = logging.getLogger(__name__)

SANDBOX_UID = 65534
TMP_BYTES = 512 * 2**20  # the run's private /tmp where it has no disk of its own (memory-backed)
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/fonts", "/etc/localtime", "/etc/alternatives")


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
def nobody_can_sandbox() -> bool:
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
    slots: str  # /slots: a disk per run under way (see inside.py), with scratch/, tmp/, shm/ each
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
    # /keras is each run's own (its slot's, with a copy of the weights): see Pending.give_weights
    command += ["--size", str(1 << 20), "--tmpfs", "/keras"]
    command += ["--bind", places.slots, "/slots"]
    command += ["--tmpfs", "/runner", "--file", str(files["/runner/run.py"]), "/runner/run.py", "--remount-ro", "/runner"]
    command += ["--bind", places.scratch, "/scratch", "--chdir", "/scratch", "--clearenv"]
    # Nothing else is writable: a run may leave files only where its slot's disk is, emptied after it.
    command += ["--remount-ro", "/dev", "--remount-ro", "/"]
    for key, value in env.items():
        command += ["--setenv", key, value]
    return command


def sandbox_env(plan: Plan, home: str, data: str, keras_home: str, python: str = sys.executable, library_path: str = "") -> dict[str, str]:
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


def open_to_all(path: str) -> bool:
    """Whether anyone may pass through every folder above `path`."""
    path = os.path.realpath(path)
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return True
        if not os.stat(parent).st_mode & 0o001:
            return False
        path = parent
