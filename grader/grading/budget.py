"""The grader's own work on one notebook has a budget, and going over it is the notebook's verdict.

What a run leaves is read, rebuilt and trained by the grader, in a grading worker; a
notebook can make that work as large as it likes (a weights file whose arrays unpack to
gigabytes, links that lead round in circles, a model that computes on 640-pixel images).
So the work has limits, set in the manifest's `[grader]` table:

- **before anything is read or built**, from what the file and the config declare, the
  same on every machine: the links walked in the weights file, each group and array
  reached once, chunks no larger than their array and at most one compression, the
  bytes of every array (`artifact._examine`); the rebuilt model's parameters, its
  FLOPs and activations per image (`model_cost`, checked in `artifact.rebuild`).
  Over any of them, the model is refused with a message that names the budget.
- **while it works**, a backstop measured from a thread: the CPU time the worker
  process uses and the memory it grows by while it checks the notebook (`Watch`). Over
  either, the check under way, and every later one that needs that work, fails naming
  the budget.

Either way the verdict is the student's, stored like any other, and it comes within
the budget's own time, never after a worker died for it. The figures a budget derives
from the lab's solution (parameters, FLOPs and activations: ten times the solution's
unless the manifest says) are learnt when the preflight grades that solution.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import resource
import signal
import threading
import time

MULTIPLE = 10  # a model budget's default: this many times the lab's solution's figure
POLL_SECONDS = 0.05


@dataclasses.dataclass(frozen=True)
class Budget:
    """The limits of the grader's work on one notebook (0: no limit)."""

    cpu_seconds: float = 0.0  # CPU time of the worker process while it checks the notebook
    memory_mb: int = 0  # memory the worker may grow by while it checks the notebook
    read_mb: int = 0  # bytes of the arrays in the weights file, as the grader would hold them
    links: int = 0  # links walked in the weights file
    parameters: int = 0  # of the rebuilt model
    gflops: float = 0.0  # per image, of the rebuilt model
    activations: int = 0  # values its layers output per image
    image_size: int = 0  # the lab's pictures' size: what a model that takes any size is counted at

    def replace(self, **changes) -> "Budget":
        return dataclasses.replace(self, **changes)


def model_budget(manifest, solution) -> int:
    """The largest model the workers rebuild: the manifest's `[grader] max_parameters`, else a
    multiple of the solution's, never below a bound on parameters that a check declares (the
    lab's own text wins over a default of the grader's)."""
    if manifest.grader.max_parameters:
        return manifest.grader.max_parameters
    declared = [int(spec.params["parameters"][1]) for spec in manifest.checks
                if isinstance(spec.params.get("parameters"), (list, tuple)) and len(spec.params["parameters"]) == 2]
    return max([MULTIPLE * int(solution.model.get("total_params", 0)), *declared])


def settled(context, solution):
    """The run's context (a Context) once the lab's solution (a SubmissionResult) is graded:
    the largest model the workers rebuild, and the budget of their own work on each notebook."""
    largest = model_budget(context.manifest, solution)
    return dataclasses.replace(context, max_parameters=largest, budget=for_class(context.manifest, solution, largest))


def for_class(manifest, reference, parameters: int) -> Budget:
    """A class's budget: the manifest's `[grader]` figures, and those it leaves at 0 from the
    lab's solution (`reference`, its result as the preflight graded it). `parameters`: the
    model's parameter bound as the batch decides it (context.model_budget: never below a bound
    a check declares)."""
    limits = manifest.grader
    model = reference.model if reference is not None else {}
    return Budget(
        cpu_seconds=float(limits.work_cpu_seconds),
        memory_mb=int(limits.work_memory_mb),
        read_mb=int(limits.read_mb),
        links=int(limits.max_links),
        parameters=int(parameters),
        gflops=float(limits.max_gflops) or MULTIPLE * float(model.get("gflops_per_image", 0.0)),
        activations=int(limits.max_activations) or MULTIPLE * int(model.get("activations_per_image", 0)),
        image_size=int(manifest.image_size),
    )


# --- what a rebuilt model costs ------------------------------------------------------------

KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")


@dataclasses.dataclass(frozen=True)
class Cost:
    """What one image costs a model: FLOPs (a multiply and an add are two) and the values its layers output."""

    flops: int
    activations: int

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def model_cost(model, fill: int = 0) -> Cost:
    """The FLOPs and output values of one image through `model`, from its graph's shapes (no
    image is run): at every application of a layer (a layer shared by several places of the
    graph counts at each), two FLOPs per kernel weight per output position for a layer with
    a kernel; for any other, one per value it reads or writes (the more of the two: a global
    pooling reads a whole feature map to write one value a channel), times its window (a
    pooling of 40x40 looks at 1,600 values for each it writes). A nested model is counted
    through its own graph, at each place that applies it. `fill`: the size a dimension the
    model leaves open (an input of any height and width) is counted at, the lab's image size
    (the grader feeds it that); 0: such a dimension counts for nothing."""
    flops = activations = 0
    for node in _applications(model):
        layer = node.operation
        if _is_model(layer):
            inner = model_cost(layer, fill)
            flops, activations = flops + inner.flops, activations + inner.activations
            continue
        if type(layer).__name__ == "InputLayer":
            continue
        kernels = [w for w in layer.weights if w.name in KERNELS]
        read = sum(_values(tensor.shape[1:], fill) for tensor in _inputs(node))
        window = _count(getattr(layer, "pool_size", None) or ())
        for output in node.outputs:
            shape = tuple(output.shape[1:])
            values = _values(shape, fill)
            activations += values
            channels = shape[-1] if shape and shape[-1] is not None else fill
            positions = values // int(channels) if shape and channels else values
            flops += sum(2 * _count(kernel.shape) * positions for kernel in kernels) if kernels else max(values, read) * window
    return Cost(flops, activations)


def _values(shape, fill: int) -> int:
    """How many values a tensor of `shape` (one image's) holds, an open dimension counted at `fill`."""
    values = 1
    for dimension in shape:
        values *= int(dimension) if dimension is not None else fill
    return values


def _inputs(node) -> list:
    arguments = getattr(node, "arguments", None)
    return list(getattr(arguments, "keras_tensors", []) or [])


def _applications(model):
    """The nodes of the model's graph (a Sequential's is the functional graph it keeps)."""
    graph = getattr(model, "_functional", None) or model
    by_depth = getattr(graph, "_nodes_by_depth", None) or {}
    return [node for depth in sorted(by_depth) for node in by_depth[depth]]


def _is_model(layer) -> bool:
    return hasattr(layer, "layers") and type(layer).__name__ in ("Sequential", "Functional", "Model")


def _count(shape) -> int:
    total = 1
    for dimension in shape:
        total *= int(dimension)
    return total


def model_problem(model, cost: Cost, parameters: int, budget: Budget) -> str:
    """Why the rebuilt model is over the budget ("" if it is within it)."""
    if budget.parameters and parameters > budget.parameters:
        return (f"the model has {parameters:,} parameters, more than the {budget.parameters:,} the grader rebuilds and trains "
                "for this assignment ([grader] max_parameters): make it smaller, as the lab's model is")
    if budget.gflops and cost.gflops > budget.gflops:
        return (f"the model needs {cost.gflops:.2f} GFLOPs per image, more than the {budget.gflops:.2f} the grader trains for "
                "this assignment ([grader] max_gflops): keep the lab's image size (no resizing up) and the lab's layers")
    if budget.activations and cost.activations > budget.activations:
        return (f"the model's layers output {cost.activations:,} values per image, more than the {budget.activations:,} the "
                "grader trains for this assignment (ten times the lab's model): keep the lab's image size (no resizing up)")
    return ""


# --- the backstop: CPU time and memory, watched while the grader works ------------------------


class OverBudget(BaseException):
    """Raised in the grading thread when its work on a notebook goes over the budget. A
    BaseException: library code that catches Exception (Keras', TensorFlow's) lets it by."""


class Watch:
    """The CPU time and memory of this process while it checks one notebook, looked at from
    a thread every POLL_SECONDS: over the budget, OverBudget is raised in the thread that
    made the watch (at its next Python instruction; a long computation in C ends first,
    which the budgets checked before the work keep short). `reason` then says which budget.

        with Watch(budget) as watch:
            ...  # the work; checks call watch.check() at points of their own too
    """

    def __init__(self, budget: Budget | None):
        self.budget = budget or Budget()
        self.reason = ""
        self._thread_id = threading.get_ident()
        self._lock = threading.Lock()
        self._active = False
        self._done = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def fired(self) -> bool:
        return bool(self.reason)

    def __enter__(self) -> "Watch":
        self._cpu, self._memory = time.process_time(), _resident_bytes()
        self._hard = hard_stop(self.budget.cpu_seconds)
        if self.budget.cpu_seconds or self.budget.memory_mb:
            self._active = True
            self._watcher = threading.Thread(target=self._watch, name="grader-budget", daemon=True)
            self._watcher.start()
        return self

    def __exit__(self, kind, error, trace) -> bool:
        try:
            with self._lock:
                self._active = False
            _raise_in(self._thread_id, None)  # one the watcher sent as the work ended is not wanted now
        except OverBudget:
            pass
        self._done.set()
        if self._watcher is not None:
            self._watcher.join()
        release_hard_stop(self._hard)
        return False

    def used(self) -> tuple[float, int]:
        """(CPU seconds, bytes of memory grown) since the watch began."""
        return time.process_time() - self._cpu, _resident_bytes() - self._memory

    def over(self) -> str:
        """Which budget the work is over now, in words ("" if none)."""
        cpu, grown = self.used()
        if self.budget.cpu_seconds and cpu > self.budget.cpu_seconds:
            return (f"the grader's own work on this notebook (reading what the run left, rebuilding and training the model) "
                    f"used more than its budget of {self.budget.cpu_seconds:g} s of CPU time ([grader] work_cpu_seconds) and "
                    "was stopped: a model the size of the lab's trains well within it")
        if self.budget.memory_mb and grown > self.budget.memory_mb * 2**20:
            return (f"the grader's own work on this notebook needed more than its budget of {self.budget.memory_mb:,} MiB of "
                    "memory ([grader] work_memory_mb) and was stopped: keep the model and its images the lab's size")
        return ""

    def check(self) -> None:
        """Raise OverBudget if the work is over the budget (for loops of the grader's own)."""
        if not self.reason:
            self.reason = self.over()
        if self.reason:
            raise OverBudget(self.reason)

    def _watch(self) -> None:
        while not self._done.wait(POLL_SECONDS):
            reason = self.over()
            if reason:
                with self._lock:
                    if self._active:
                        self.reason = reason
                        self._active = False
                        _raise_in(self._thread_id, OverBudget)
                return


# --- the hard stop: one long computation in C that the watch cannot interrupt -------------------

HARD_STOP = signal.SIGXCPU  # what kills a grading worker whose one computation went far over the CPU budget


def hard_stop(cpu_seconds: float):
    """Let the kernel stop this process if the work ahead goes far over its CPU budget in
    one computation the watch cannot interrupt (an operation of TensorFlow's that runs for
    hours): its CPU limit is set to what it has used so far, plus twice the budget and a
    minute; over it, the kernel kills the process with SIGXCPU, and the process that
    supervises it (grader/scale/executors.py) knows the notebook went over the budget. Returns
    the limit as it was, for `release_hard_stop` (None: nothing set)."""
    if not cpu_seconds:
        return None
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    before = resource.getrlimit(resource.RLIMIT_CPU)
    limit = int(spent + 2 * cpu_seconds + 60)
    if before[1] != resource.RLIM_INFINITY and limit > before[1]:
        return None  # a limit of the machine's own is lower: it stands
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))  # no core file to write
    resource.setrlimit(resource.RLIMIT_CPU, (limit, before[1]))
    return before


def release_hard_stop(before) -> None:
    if before is not None:
        resource.setrlimit(resource.RLIMIT_CPU, before)


def _raise_in(thread_id: int, exception) -> None:
    """Raise `exception` (a class, or None to cancel one pending) in the thread `thread_id`."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception else None)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _resident_bytes() -> int:
    """This process's resident memory now."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0
