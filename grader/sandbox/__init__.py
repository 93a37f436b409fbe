"""Run a submission's cells in an isolated process and bring back what it wrote, as files.

Isolation is bubblewrap's: new user, PID, network, IPC, UTS and cgroup namespaces; a
read-only view of only the Python installation, the run's data, the pretrained
weights and the runner, each at a neutral path (no host path shows inside); a private
scratch folder and /tmp on a disk of the run's own, capped in bytes and files; a
scrubbed environment; rlimits on address space, CPU time, file size and open files;
limits in CPU time per cell and per run with a wall-clock backstop, enforced from
outside by killing the whole process group (see `grader.sandbox.watch`).

After the run, the files the grader reads are copied out of its scratch folder by
`grader.sandbox.runfiles` (no link followed, regular files only, size-capped) into a folder
of the grader's own, and the run's disk is unmounted.

The package's parts: `bwrap` (the walls), `zygote` (the process that forks each run),
`runs` (one run handed over, watched and collected), `rundisk` and `runfiles` (the run's
disk and the files it left), `watch` (time limits and blame), `cgroups` (caps and CPU
accounting) and `inside` (what runs inside, one file read into memory and run there).
What the rest of the grader uses is named here.
"""

from grader.sandbox.bwrap import require_sandbox
from grader.sandbox.plan import Mounts, Plan
from grader.sandbox.runs import Outcome, Pending, Runner, describe_limit, run, sweep_stale_runs
from grader.sandbox.zygote import RUN_PREFIX, cgroup_tag, remove_run_folder

__all__ = ["Mounts", "Outcome", "Pending", "Plan", "RUN_PREFIX", "Runner", "cgroup_tag", "describe_limit",
           "remove_run_folder", "require_sandbox", "run", "sweep_stale_runs"]
