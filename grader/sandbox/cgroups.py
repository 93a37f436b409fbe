"""Per-run control groups: caps on processes and memory, and the run's CPU accounting.

rlimits alone cannot cap processes here (the sandbox's host uid is the grader's, often
root, whom RLIMIT_NPROC does not bind), so each run gets its own cgroup where the
machine lets us make one: cgroup v2 (`pids.max`, `memory.max`) or v1 (`pids`,
`memory` hierarchies). Where none can be made, the run still has its rlimits.

The same cgroups count the CPU time the run used (v2 `cpu.stat`, v1 `cpuacct.usage`)
and how long its tasks waited on a CPU run queue (v2 `cpu.pressure`, the run's own
pressure stall information). On a v1 machine with the hybrid v2 hierarchy mounted at
`unified/`, a child there gives the run its pressure figures (and `cgroup.kill`).
"""

from __future__ import annotations

import os
import signal
import time
import uuid

ROOT = "/sys/fs/cgroup"
PREFIX = "grader-"
_V1 = ("pids", "memory", "cpuacct", "unified")  # the folders under ROOT that hold run cgroups on a v1 machine


class RunCgroup:
    """The cgroups of one run. `tag` goes into their names (`grader-<tag>-<random>`),
    so that whoever made them can find their own (a test, a sweep)."""

    def __init__(self, max_processes: int, memory_bytes: int, tag: str = ""):
        self.paths: dict[str, str] = {}
        self.name = PREFIX + (f"{tag}-" if tag else "") + uuid.uuid4().hex[:12]
        if os.path.exists(os.path.join(ROOT, "cgroup.controllers")):  # v2
            self._make("v2", ROOT, {"pids.max": max_processes, "memory.max": memory_bytes, "memory.swap.max": 0})
        else:  # v1
            self._make("pids", os.path.join(ROOT, "pids"), {"pids.max": max_processes})
            self._make("memory", os.path.join(ROOT, "memory"), {"memory.limit_in_bytes": memory_bytes})
            self._make("cpuacct", os.path.join(ROOT, "cpuacct"), {})
            if os.path.exists(os.path.join(ROOT, "unified", "cgroup.controllers")):
                self._make("unified", os.path.join(ROOT, "unified"), {})

    def _make(self, kind: str, parent: str, settings: dict) -> None:
        path = os.path.join(parent, self.name)
        try:
            os.mkdir(path)
            for key, value in settings.items():
                if os.path.exists(os.path.join(path, key)):
                    with open(os.path.join(path, key), "w") as handle:
                        handle.write(str(value))
            self.paths[kind] = path
        except OSError:
            if os.path.isdir(path):
                try:
                    os.rmdir(path)
                except OSError:
                    pass

    @property
    def active(self) -> bool:
        return bool(self.paths)

    def enter(self) -> None:
        """Move the calling process (the run, before it execs) into the cgroups."""
        for path in self.paths.values():
            with open(os.path.join(path, "cgroup.procs"), "w") as handle:
                handle.write(str(os.getpid()))

    def adopt(self, pid: int) -> None:
        """Move process `pid` into the cgroups (a run's child, before it runs a line of the run)."""
        for path in self.paths.values():
            with open(os.path.join(path, "cgroup.procs"), "w") as handle:
                handle.write(str(pid))

    def processes(self) -> list[int]:
        """The processes in the cgroup now."""
        for path in self.paths.values():
            try:
                with open(os.path.join(path, "cgroup.procs")) as handle:
                    return [int(p) for p in handle.read().split()]
            except (OSError, ValueError):
                continue
        return []

    def _read(self, kind: str, name: str) -> str:
        path = self.paths.get(kind) or self.paths.get("v2")
        try:
            with open(os.path.join(path, name)) as handle:
                return handle.read()
        except (OSError, TypeError):
            return ""

    def memory_exhausted(self) -> bool:
        # v2: memory.events "oom_kill N"; v1: memory.oom_control "oom_kill N"
        return _counter(self._read("memory", "memory.events") + self._read("memory", "memory.oom_control"), "oom_kill") > 0

    def processes_exhausted(self) -> bool:
        return _counter(self._read("pids", "pids.events"), "max") > 0

    def cpu_seconds(self) -> float | None:
        """CPU time used by every task that was ever in the cgroup, or None if not counted."""
        usage = self._read("cpuacct", "cpuacct.usage").strip()
        if usage.isdigit():
            return int(usage) / 1e9
        for kind in ("v2", "unified"):
            if kind in self.paths:
                stat = self._read(kind, "cpu.stat")
                if "usage_usec" in stat:
                    return _counter(stat, "usage_usec") / 1e6
        return None

    def waited_seconds(self) -> float | None:
        """How long at least one of the run's tasks was runnable but waiting for a CPU
        (pressure stall information, `some`), or None if this kernel does not say."""
        for kind in ("v2", "unified"):
            if kind in self.paths:
                for line in self._read(kind, "cpu.pressure").splitlines():
                    if line.startswith("some "):
                        fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
                        if fields.get("total", "").isdigit():
                            return int(fields["total"]) / 1e6
        return None

    def kill(self) -> None:
        """SIGKILL everything in the cgroup (at once where `cgroup.kill` exists)."""
        for kind in ("v2", "unified"):
            if kind in self.paths:
                try:
                    with open(os.path.join(self.paths[kind], "cgroup.kill"), "w") as handle:
                        handle.write("1")
                    return
                except OSError:
                    pass
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def destroy(self) -> None:
        """Kill whatever is left in the cgroups, wait for it to go, then remove them."""
        for _ in range(100):
            if not self.processes():
                break
            self.kill()
            time.sleep(0.05)  # killed processes leave the cgroup once reaped
        for path in self.paths.values():
            for _ in range(40):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _counter(text: str, key: str) -> int:
    """The value of `key N` lines (cgroup event and stat files), 0 if absent."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


STALE_AFTER = 600  # seconds: a younger empty cgroup may be one that another grader is about to enter


def sweep_stale(older_than: float = STALE_AFTER) -> int:
    """Remove empty grader cgroups left by a grader that was killed mid-run."""
    removed = 0
    for parent in (ROOT, *(os.path.join(ROOT, kind) for kind in _V1)):
        try:
            names = [n for n in os.listdir(parent) if n.startswith(PREFIX)]
        except OSError:
            continue
        for name in names:
            try:
                if time.time() - os.stat(os.path.join(parent, name)).st_mtime < older_than:
                    continue
                os.rmdir(os.path.join(parent, name))  # fails, harmlessly, while in use
                removed += 1
            except OSError:
                pass
    return removed
