"""Per-run control groups: a hard cap on processes and memory for everything a run starts.

rlimits alone cannot cap processes here (the sandbox's host uid is the grader's, often
root, whom RLIMIT_NPROC does not bind), so each run gets its own cgroup where the
machine lets us make one: cgroup v2 (`pids.max`, `memory.max`) or v1 (`pids`,
`memory` hierarchies). Where none can be made, the run still has its rlimits.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

ROOT = "/sys/fs/cgroup"


class RunCgroup:
    def __init__(self, max_processes: int, memory_bytes: int):
        self.paths: dict[str, str] = {}
        name = f"grader-{uuid.uuid4().hex[:12]}"
        if os.path.exists(os.path.join(ROOT, "cgroup.controllers")):  # v2
            self._make("unified", os.path.join(ROOT, name), {"pids.max": max_processes, "memory.max": memory_bytes, "memory.swap.max": 0})
        else:  # v1
            self._make("pids", os.path.join(ROOT, "pids", name), {"pids.max": max_processes})
            self._make("memory", os.path.join(ROOT, "memory", name), {"memory.limit_in_bytes": memory_bytes})

    def _make(self, kind: str, path: str, settings: dict) -> None:
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
        path = self.paths.get(kind) or self.paths.get("unified")
        try:
            with open(os.path.join(path, name)) as handle:
                return handle.read()
        except (OSError, TypeError):
            return ""

    def memory_exhausted(self) -> bool:
        # v2: memory.events "oom_kill N"; v1: memory.oom_control "oom_kill N"
        events = self._read("memory", "memory.events") + self._read("memory", "memory.oom_control")
        for line in events.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit() and int(value) > 0:
                return True
        return False

    def processes_exhausted(self) -> bool:
        for line in self._read("pids", "pids.events").splitlines():
            key, _, value = line.partition(" ")
            if key == "max" and value.strip().isdigit() and int(value) > 0:
                return True
        return False

    def destroy(self) -> None:
        """Kill whatever is left in the cgroups, wait for it to go, then remove them."""
        for path in self.paths.values():
            for _ in range(100):
                try:
                    with open(os.path.join(path, "cgroup.procs")) as handle:
                        pids = [int(p) for p in handle.read().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.05)  # killed processes leave the cgroup once reaped
            for _ in range(40):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


STALE_AFTER = 600  # seconds: a younger empty cgroup may be one that another grader is about to enter


def sweep_stale(older_than: float = STALE_AFTER) -> int:
    """Remove empty grader cgroups left by a grader that was killed mid-run."""
    removed = 0
    for parent in (ROOT, os.path.join(ROOT, "pids"), os.path.join(ROOT, "memory")):
        try:
            names = [n for n in os.listdir(parent) if n.startswith("grader-")]
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
