"""Watching a run from outside: time limits in CPU time, a wall-clock backstop, and blame.

The per-cell and per-run limits count the CPU time of everything the run started (its
cgroup's accounting; without a cgroup, its process tree in /proc). A busy host makes
an honest run take longer in wall-clock time, never more CPU time, so host load cannot
trip these limits.

A run that does not compute (sleeping, blocked) uses no CPU time, so two clocks back
the limits up, both counted per cell and per run:

- **Idle time** is wall-clock time in which the run neither used a CPU nor waited for
  one (its tasks' run-queue wait: the cgroup's pressure stall information, else
  /proc/<pid>/task/<tid>/schedstat). A cell idle for longer than its limit is stopped,
  and that is the student's doing (`time.sleep`, a blocked read).
- **The wall-clock backstop**, at WALL_BACKSTOP times the limit, stops a run that got
  there without using its CPU time and without idling its limit: by construction it
  spent at least (WALL_BACKSTOP - 2) / WALL_BACKSTOP of that time waiting for a CPU,
  which is the host's doing ("host_busy": retried, never a grade).

The watcher runs on its own thread, and nothing it does can block on the run: it reads
kernel files (the run's cgroup, /proc) and the progress file through a descriptor the
grader opened before the run started.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

from grader.sandbox.cgroups import RunCgroup

# 5x: the host is blamed only for a run that waited for a CPU at least 3/5 of the time
# (see above), far beyond what honest load does to a run (two grading workers and their
# training on two cores leave a run half a core or more), so a retry is rare; a run
# that computes, however slowly, meets its CPU limit first, and a run that sleeps meets
# its idle limit first, so the backstop's length costs nothing in the common cases.
WALL_BACKSTOP = 5.0
TICK = 0.05  # seconds between looks: how far past a CPU limit a run can get


def backstop(limit: float) -> float:
    """Wall-clock seconds after which a run (or cell) with this CPU limit is stopped as starved."""
    return WALL_BACKSTOP * limit


def idle_limit(limit: float) -> float:
    """Idle seconds after which a run (or cell) with this CPU limit is stopped: the same
    number (a cell may wait as long as it may compute)."""
    return limit


@dataclasses.dataclass(frozen=True)
class Mark:
    """A moment of the run: wall clock, CPU time used and CPU wait so far, in seconds."""

    wall: float
    cpu: float
    waited: float


@dataclasses.dataclass(frozen=True)
class Watched:
    """How the watch ended."""

    stopped_by: str | None  # None, "cell_timeout", "run_timeout", "wall_clock", "run_wall_clock", "host_busy", "disk_full"
    cell: str | None  # the cell running when it was stopped
    seconds: float  # wall clock
    cpu_seconds: float


class Clock:
    """The run's CPU time and CPU wait, from its cgroup where it has one, else from /proc."""

    TREE_EVERY = 1.0  # seconds between walks of the process tree (a walk reads a file per thread)

    def __init__(self, group: RunCgroup, pid: int):
        self.group, self.pid = group, pid
        self._tree: tuple[float, list[int]] = (float("-inf"), [])
        self._waited: tuple[float, float] = (float("-inf"), 0.0)

    def mark(self) -> Mark:
        return Mark(time.monotonic(), self.cpu(), self.waited())

    def cpu(self) -> float:
        counted = self.group.cpu_seconds()
        return counted if counted is not None else sum(_process_cpu(pid) for pid in self._pids())

    def waited(self) -> float:
        counted = self.group.waited_seconds()
        if counted is not None:
            return counted
        read, total = self._waited  # without PSI: a file per thread, so read at most once a TREE_EVERY
        if time.monotonic() - read > self.TREE_EVERY:
            self._waited = time.monotonic(), sum(_thread_wait(pid) for pid in self._pids())
        return self._waited[1]

    def _pids(self) -> list[int]:
        if self.group.active:
            return self.group.processes()
        walked, pids = self._tree
        if time.monotonic() - walked > self.TREE_EVERY:
            self._tree = time.monotonic(), process_tree(self.pid)
        return self._tree[1]


def idle(start: Mark, now: Mark) -> float:
    """Seconds since `start` in which the run neither computed nor waited for a CPU."""
    wall = now.wall - start.wall
    return max(0.0, wall - (now.cpu - start.cpu) - (now.waited - start.waited))


def over_limit(limits, run: Mark, cell: Mark | None, now: Mark) -> str | None:
    """Which limit the run is past at `now`, if any (the run started at `run`, the cell
    running, if known, at `cell`)."""
    windows = [(run, limits.run_timeout, "run_timeout", "run_wall_clock")]
    if cell is not None:
        windows.append((cell, limits.cell_timeout, "cell_timeout", "wall_clock"))
    for start, limit, cpu_limit, _ in windows:
        if now.cpu - start.cpu > limit:
            return cpu_limit
    for start, limit, _, idle_stop in windows:
        if idle(start, now) > idle_limit(limit):
            return idle_stop
    for start, limit, _, _ in windows:
        if now.wall - start.wall > backstop(limit):
            return "host_busy"
    return None


def watch(alive: Callable[[], bool], clock: Clock, progress: Callable[[], str | None], full: Callable[[], bool], limits) -> Watched:
    """Look at the run every TICK until it ends or passes a limit.

    `progress()` gives the key of a cell that started since the last look (or None);
    `full()` says whether the run's disk is full."""
    run = cell = clock.mark()
    key = None
    while alive():
        time.sleep(TICK)
        now = clock.mark()
        started = progress()
        if started is not None:
            key, cell = started, now
        stopped = over_limit(limits, run, cell if key is not None else None, now)
        if stopped is None and full():
            stopped = "disk_full"
        if stopped is not None:
            return Watched(stopped, key, now.wall - run.wall, now.cpu - run.cpu)
    end = clock.mark()
    return Watched(None, None, end.wall - run.wall, end.cpu - run.cpu)


# --- without a cgroup: the process tree in /proc ---------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants now."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children(current)
    return found


def children(pid: int) -> list[int]:
    """The process's children now (every thread's, through /proc/<pid>/task/<tid>/children)."""
    found = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/children") as handle:
                found += [int(child) for child in handle.read().split()]
        except (OSError, ValueError):
            continue
    return found


def _process_cpu(pid: int) -> float:
    """CPU seconds of a process (all its threads) and of the children it has reaped."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
        return sum(int(value) for value in fields[11:15]) / _TICKS  # utime stime cutime cstime
    except (OSError, ValueError, IndexError):
        return 0.0


def _thread_wait(pid: int) -> float:
    """Seconds the threads of a process spent runnable but waiting for a CPU (schedstat)."""
    total = 0
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/schedstat") as handle:
                total += int(handle.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9
