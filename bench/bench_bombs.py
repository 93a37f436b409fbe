"""What the grader's own work costs on hostile artifacts: time and peak memory per bomb.

    python bench/bench_bombs.py                  # every bomb, at the demo's scale
    python bench/bench_bombs.py chunks maze      # some of them

The artifacts are what a run would leave (model.json, compile.json, export.json,
log.json, model.weights.h5), made here on the host from the lab's solution model with
the demo weights, then one hostile change each (tests/attacks/bombs.py):

    honest     the solution as Keras saves it (the baseline every other figure includes)
    chunks     every array one chunk of 256 MiB (its numbers, then zeros), deflated twice
    maze       20 groups each linked twice to the next (2**20 paths), a few kilobytes
    loop       a group that holds a hard link to itself
    resize640  Resizing(640) before a MobileNetV2 built for 640 px (the demo's weights)

Each is graded by the trusted side alone (what a grading worker does after the run:
read the artifact, rebuild, check, train), in a fresh process of its own inside a memory
cgroup of MEMORY_MIB, stopped after WALL_SECONDS: its wall time, CPU time, peak memory
(the process's own maxrss) and verdict are printed. The lab's solution is graded first
in the same process, as a batch's preflight does, and its result sets the budgets.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "attacks"))

import bombs  # noqa: E402

ASSIGNMENT = os.path.join(ROOT, "assignments", "keras_flowers_transfer")
MEMORY_MIB = 6144
WALL_SECONDS = 300
KINDS = ("honest", "chunks", "maze", "loop", "resize640")


def solution_model(weights: str, size: int, resize: int | None = None):
    """The lab's solution model (with a Resizing before a base of `resize` px, if given)."""
    import keras

    if resize is None:
        base = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=weights)
        front = []
    else:
        small = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=weights)
        base = keras.applications.MobileNetV2(input_shape=(resize, resize, 3), include_top=False, weights=None)
        base.set_weights(small.get_weights())
        front = [keras.layers.Resizing(resize, resize)]
    base.trainable = False
    model = keras.Sequential([keras.Input((size, size, 3)), *front, base, keras.layers.Flatten(), keras.layers.Dense(5, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def write_artifact(folder: str, model, weights_from=None) -> None:
    """What a run leaves: the model's config, compile config, weights, a log of cells that ran."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "model.json"), "w") as handle:
        handle.write(model.to_json())
    with open(os.path.join(folder, "compile.json"), "w") as handle:
        json.dump(model.get_compile_config(), handle)
    with open(os.path.join(folder, "export.json"), "w") as handle:
        json.dump({"found": True}, handle)
    target = os.path.join(folder, "model.weights.h5")
    if weights_from is None:
        model.save_weights(target)
    else:
        weights_from(target)


def prepare(work: str) -> dict[str, str]:
    """The artifact folders, by kind."""
    from grader.config import labs, manifest as manifest_mod

    manifest = manifest_mod.load(ASSIGNMENT)
    demo = labs.demo(manifest, "demo_weights")
    size = manifest.image_size
    model = solution_model(demo, size)
    plain = os.path.join(work, "plain.weights.h5")
    model.save_weights(plain)
    folders = {kind: os.path.join(work, kind) for kind in KINDS}
    write_artifact(folders["honest"], model)
    write_artifact(folders["chunks"], model, lambda target: bombs.chunk_bomb(plain, target, 2**28, 2))
    write_artifact(folders["maze"], model, lambda target: bombs.link_maze(plain, target, 20))
    write_artifact(folders["loop"], model, lambda target: bombs.self_linked(plain, target))
    write_artifact(folders["resize640"], solution_model(demo, size, resize=640))
    return folders


class _Ran:
    """A finished run, as the pipeline reads it: its files already in `out_dir`."""

    def __init__(self, outcome):
        self._outcome = outcome

    def outcome(self):
        return self._outcome

    def cancel(self):
        pass


def grade_artifact(batch, folder: str, name: str):
    """The pipeline's trusted side on an artifact folder (a copy: the pipeline removes what it read)."""
    from grader import sandbox
    from grader.config import match, notebook, release, scenarios
    from grader.grading import pipeline

    built, playground = release.build(batch.context.manifest)
    solution = next(c.source for c in built.cells if c.key == "model")
    path = os.path.join(os.path.dirname(folder), f"{name}.ipynb")
    with open(path, "wb") as handle:
        handle.write(scenarios.solution(playground, "model", solution))
    found = match.match(notebook.read_submission(path), built, "model")
    run = tempfile.mkdtemp(prefix="bench-run-")
    out = os.path.join(run, "out")
    shutil.copytree(folder, out)
    with open(os.path.join(out, "log.json"), "w") as handle:
        json.dump([{"key": c.key, "role": c.role, "status": "ok"} for c in match.run_cells(built, found)], handle)
    outcome = sandbox.Outcome(out, 0, None, None, "model", 1.0, "", True, folder=run)
    started = pipeline.Started(pipeline._base_result(batch.context, name, path, ""), time.monotonic(), found=found, pending=_Ran(outcome))
    return pipeline.finish_safely(path, name, started, batch)


def measure(kind: str, folder: str, work: str, answer) -> None:
    """In a fresh process: grade the solution (the budgets come from it), then `folder`."""
    from grader import batch as batch_mod
    from grader import context
    from grader.config import manifest as manifest_mod
    from grader.grading import budget as budget_mod
    from grader.grading import pipeline
    from grader.sandbox.cgroups import RunCgroup

    group = RunCgroup(4096, MEMORY_MIB * 2**20)
    if group.active:
        group.enter()
    manifest = manifest_mod.load(ASSIGNMENT)
    resolved = context.resolve(manifest, os.path.join(work, "out"), cache_dir=os.path.join(work, "cache"))
    if hasattr(pipeline, "Grader"):  # the grader as it is: the budgets travel in the run's context
        prepared = pipeline.Grader(resolved)
        reference = grade_artifact(prepared, os.path.join(work, "honest"), "solution")
        prepared.use(budget_mod.settled(resolved, reference))
    else:  # the grader before its work had a budget (for the figures before)
        prepared = pipeline.Batch(resolved)
        reference = grade_artifact(prepared, os.path.join(work, "honest"), "solution")
        prepared.max_parameters = batch_mod.model_budget(manifest, reference)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    result = grade_artifact(prepared, folder, kind)
    after = resource.getrusage(resource.RUSAGE_SELF)
    said = [c.message for c in result.checks if c.status != "passed"][:2]
    answer.send({"seconds": round(time.perf_counter() - started, 2),
                 "cpu": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
                 "peak_mib": after.ru_maxrss // 1024, "score": result.score, "status": result.status,
                 "said": (result.reason or "; ".join(said))[:300]})


def run_one(kind: str, folder: str, work: str) -> dict:
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    process = context.Process(target=measure, args=(kind, folder, work, theirs))
    started = time.perf_counter()
    process.start()
    process.join(WALL_SECONDS)
    seconds = round(time.perf_counter() - started, 1)
    if process.is_alive():
        peak = _peak_mib(process.pid)
        process.kill()
        process.join()
        return {"kind": kind, "stopped": f"still working after {WALL_SECONDS} s: stopped by the bench", "peak_mib": peak,
                "process_seconds": seconds}
    if mine.poll():
        return {"kind": kind, **mine.recv(), "process_seconds": seconds}
    return {"kind": kind, "stopped": f"the process died (exit code {process.exitcode}; the memory cgroup is {MEMORY_MIB} MiB)",
            "process_seconds": seconds}


def _peak_mib(pid: int) -> int:
    """The peak resident memory of a live process so far (VmHWM), in MiB."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            return next(int(line.split()[1]) // 1024 for line in handle if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return -1


def main(argv: list[str]) -> int:
    kinds = [k for k in argv if k in KINDS] or list(KINDS)
    work = tempfile.mkdtemp(prefix="bench-bombs-")
    try:
        folders = prepare(work)
        if "honest" not in kinds:
            kinds.insert(0, "honest")  # warms the feature cache, and is the baseline
        for kind in kinds:
            print(json.dumps(run_one(kind, folders[kind], work)), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
