"""How long grading takes, per submission, measured side by side in one run.

    python bench/bench_grading.py              # the codelab's scale: 3,670 images at 192x192, 10 epochs
    python bench/bench_grading.py --scale ci   # the same code on 320 images at 96x96, 2 epochs

(a) the solution notebook executed end to end with nbclient on the same data, as a
    grader that re-runs notebooks would do;
(b) our trusted harness with full training (sandbox run + rebuild + training);
(c) our harness on the fast path with a warm feature cache, in a row through the
    pipeline a batch uses (the next sandbox runs while the last submission is checked:
    the figure is the time between consecutive results), and also one at a time with
    each sandbox started cold; and the one-time cost of building that cache;
then (d) one notebook end to end on a worker already started (its sandbox's zygote has
imported TensorFlow, the feature cache is loaded): what a student waiting for a scorecard
at a workshop sees; then (e) a class: distinct notebooks at the demo's scale and at this
scale, graded by `grader grade`'s batch with the default --jobs, per-notebook cost (all in,
and after the first result, from when the gradebook stored each result), the workers' peak memory,
and the projected time for 200 notebooks at this scale (the fixed cost + 200 x the cost per
notebook after the first result);
then a batch of 30 distinct demo submissions with --jobs 1 and --jobs 2.

(a) and (b) train through the whole MobileNetV2 every epoch; they are timed once each,
at the scale's full number of epochs (about five minutes each at the codelab's scale).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from grader import batch  # noqa: E402
from grader import context  # noqa: E402
from grader.config import manifest as manifest_mod, release, scenarios
from grader.config import labs  # noqa: E402
from grader.grading.pipeline import Grader, Work, grade_all, grade_submission  # noqa: E402
from grader.run import Options, default_jobs  # noqa: E402
from labs import flowers  # noqa: E402
from peaks import Peaks  # noqa: E402
from reference import weights  # noqa: E402

SCALES = {"full": dict(count=3670, size=192, epochs=10), "ci": dict(count=320, size=96, epochs=2)}
ASSIGNMENT = os.path.join(ROOT, "assignments", "keras_flowers_transfer")


def assignment_at(scale: dict, data_dir: str, epochs: int, work: str) -> manifest_mod.Manifest:
    """The lab's assignment with the benchmark's data, image size and epochs."""
    target = os.path.join(work, f"assignment-{epochs}")
    if not os.path.isdir(target):
        shutil.copytree(ASSIGNMENT, target)
        path = os.path.join(target, "assignment.toml")
        text = open(path).read()
        text = text.replace('pattern = "demo"', f'pattern = "{data_dir}/*.tfrec"').replace("image_size = 96", f"image_size = {scale['size']}")
        text = text.replace("epochs = 6", f"epochs = {epochs}").replace("run_timeout = 300", "run_timeout = 900")
        open(path, "w").write(text)
    return manifest_mod.load(target)


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - started, value


def solution_file(manifest, work: str) -> str:
    built, playground = release.build(manifest)
    path = os.path.join(work, "solution.ipynb")
    with open(path, "wb") as handle:
        handle.write(scenarios.make(built, playground, ["solution.ipynb"])["solution.ipynb"])
    return path


def run_nbclient(notebook_path: str, data_dir: str, size: int, epochs: int, keras_home: str) -> float:
    """Execute the whole solution notebook in a Jupyter kernel."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(notebook_path, as_version=4)
    env = {"FLOWERS_TFREC": f"{data_dir}/*.tfrec", "FLOWERS_IMAGE_SIZE": str(size), "FLOWERS_BATCH_SIZE": "64",
           "FLOWERS_EPOCHS": str(epochs), "KERAS_HOME": keras_home, "MPLBACKEND": "Agg"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        seconds, _ = timed(NotebookClient(notebook, timeout=3600, kernel_name="python3").execute)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return seconds


def per_submission(manifest, path: str, out: str, cache_dir: str | None, repeats: int) -> list[float]:
    """Seconds for each of `repeats` gradings, one after the other, each sandbox started cold."""
    prepared = Grader(context.resolve(manifest, out, cache_dir=cache_dir, use_cache=cache_dir is not None))
    try:
        return [timed(grade_submission, path, "solution", prepared)[0] for _ in range(repeats)]
    finally:
        prepared.close()


def in_a_row(manifest, path: str, out: str, cache_dir: str, repeats: int) -> list[float]:
    """Seconds between consecutive results when `repeats` gradings go through the
    pipeline a batch uses (--jobs 1): the next sandbox starts ahead and runs while the
    last submission is checked. The first figure includes starting from nothing."""
    prepared = Grader(context.resolve(manifest, out, cache_dir=cache_dir), ahead=True)
    try:
        stamps = [time.perf_counter()]
        for _ in grade_all([Work(str(i), path, "solution") for i in range(repeats)], prepared):
            stamps.append(time.perf_counter())
    finally:
        prepared.close()
    return [b - a for a, b in zip(stamps, stamps[1:])]


def on_started_worker(manifest, path: str, other: str, out: str, cache_dir: str) -> float:
    """Seconds from submitting one notebook to its result on a worker that has already
    graded one (its zygote started, the feature cache in memory): the portal's case."""
    prepared = Grader(context.resolve(manifest, out, cache_dir=cache_dir), ahead=True)
    try:
        grade_submission(path, "warm-up", prepared)
        time.sleep(2)  # idle, as a worker between uploads
        return timed(grade_submission, other, "solution", prepared)[0]
    finally:
        prepared.close()


def variant(path: str, number: int) -> str:
    """A copy of the notebook at `path` that differs by a comment (a distinct submission)."""
    target = path.replace(".ipynb", f"-{number}.ipynb")
    with open(path) as handle:
        text = handle.read()
    with open(target, "w") as handle:
        handle.write(text.replace("model.summary()", f"model.summary()  # variant {number}", 1))
    return target


def a_class(manifest, count: int, folder: str, out: str, cache_dir: str) -> dict:
    """`count` distinct notebooks (the lab's scenarios that the fast path takes, and the ones
    that fail before training, each copy made distinct by a comment), graded by a batch with
    the default --jobs and a warm cache: wall time, per notebook, the workers' peak memory."""
    built, playground = release.build(manifest)
    made = scenarios.make(built, playground, table=labs.scenarios(manifest))
    kinds = {name: body for name, body in made.items() if name not in FULL_TRAINING}
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    names = sorted(kinds)
    for number in range(count):
        name = names[number % len(names)]
        body = kinds[name].decode("utf-8", errors="replace")
        body = body.replace("model.summary()", f"model.summary()  # copy {number}", 1) if "model.summary()" in body else body + f"\n# copy {number}\n"
        with open(os.path.join(folder, f"s{number:03d}-{name}"), "w") as handle:
            handle.write(body)
    shutil.rmtree(out, ignore_errors=True)
    # In a fresh interpreter, as `grader grade` is: a worker's peak memory as the kernel
    # reports it starts from its parent's size when it was started (this bench's is large).
    script = ("import sys, json; sys.path.insert(0, sys.argv[1]); from grader import batch; from grader.config import manifest; from grader.run import Options; "
              "graded = batch.grade(manifest.load(sys.argv[2]), [sys.argv[3]], Options(out_dir=sys.argv[4], quiet=True, cache_dir=sys.argv[5])); "
              "print(json.dumps(len(graded.results)))")
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", script, ROOT, manifest.directory, folder, out, cache_dir],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks = Peaks(process.pid, "the batch (the parent)")
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    memory = peaks.report()
    if process.returncode != 0:
        raise SystemExit(f"the class's batch failed: {stderr[-2000:]}")
    count = json.loads(stdout.strip().splitlines()[-1])
    with open(os.path.join(out, ".grader", "batch.json")) as handle:
        facts = json.load(handle)
    # The batch's fixed cost (start-up, preflight, the cache loaded) and its cost per
    # notebook, from when the gradebook stored each result: the time from the first
    # student's result to the last, per notebook after the first (the preflight's own
    # results are stored before any student's).
    with sqlite3.connect(os.path.join(out, "gradebook.sqlite")) as book:
        stored = sorted(row[0] for row in book.execute("SELECT graded_at FROM results"))[-count:]
    marginal = (stored[-1] - stored[0]) / (len(stored) - 1) if len(stored) > 1 else seconds
    return {"count": count, "seconds": seconds, "per_notebook": seconds / max(1, count), "marginal": marginal,
            "fixed": seconds - marginal * count, "jobs": default_jobs(), "worker_peak_mb": facts.get("worker_peak_rss_mb"),
            "parent_peak_mb": facts.get("parent_peak_rss_mb"), "memory": memory}


# notebooks the fast path cannot take (trained in full: minutes each at the codelab's scale)
FULL_TRAINING = ("unfrozen_base.ipynb",)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="full")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "grader-bench"))
    parser.add_argument("--skip-batch", action="store_true", help="leave out the 30-submission batch")
    parser.add_argument("--only-batch", action="store_true", help="run only the 30-submission batch")
    parser.add_argument("--class-demo", type=int, default=200, help="notebooks in the class at the demo's scale (0: none)")
    parser.add_argument("--class-here", type=int, default=40, help="notebooks in the class at this scale (0: none)")
    parser.add_argument("--skip-a-b", action="store_true", help="leave out (a) and (b) (the ratio then cannot be printed)")
    parser.add_argument("--skip-b", action="store_true", help="leave out (b)")
    args = parser.parse_args(argv)
    if args.only_batch:
        batch_of_30(args.work)
        return 0
    scale = SCALES[args.scale]
    os.makedirs(args.work, exist_ok=True)
    data_dir = os.path.join(args.work, f"flowers-{scale['count']}-{scale['size']}")
    if not os.path.isdir(data_dir):
        print(f"making {scale['count']} synthetic flowers at {scale['size']}x{scale['size']} ...", flush=True)
        flowers.make_synthetic_flowers(data_dir, scale["size"], scale["count"])
    keras_home = os.path.join(args.work, "keras")
    demo = manifest_mod.load(ASSIGNMENT)
    weights.stage(context.weights_for(demo, None), keras_home, demo.lab.base, scale["size"])
    epochs = scale["epochs"]
    figures = {}

    manifest = assignment_at(scale, data_dir, epochs, args.work)
    if not args.skip_a_b:
        # (a) nbclient, end to end
        figures["a"] = run_nbclient(solution_file(manifest, args.work), data_dir, scale["size"], epochs, keras_home)
        print(f"(a) nbclient, {epochs} epochs: {figures['a']:.1f} s", flush=True)
    if not args.skip_a_b and not args.skip_b:
        # (b) harness, full training
        figures["b"] = per_submission(manifest, solution_file(manifest, args.work), os.path.join(args.work, "out-b"), None, 1)[0]
        print(f"(b) harness, full training, {epochs} epochs: {figures['b']:.1f} s", flush=True)

    # (c) fast path: build the cache once (cold), then warm runs: first one at a time, each
    # sandbox started cold (the grader before sandboxes ran ahead), then in a row through the
    # batch pipeline (each next sandbox started ahead and run while the last is checked).
    cache_dir = os.path.join(args.work, "cache")
    shutil.rmtree(cache_dir, ignore_errors=True)
    path = solution_file(manifest, args.work)
    cold = per_submission(manifest, path, os.path.join(args.work, "out-c"), cache_dir, 1)[0]
    unwarmed = per_submission(manifest, path, os.path.join(args.work, "out-c"), cache_dir, 3)
    warm = in_a_row(manifest, path, os.path.join(args.work, "out-c"), cache_dir, 8)
    figures["c"] = statistics.median(warm)
    figures["c_cold_sandbox"] = statistics.median(unwarmed)
    figures["cache_build"] = cold - figures["c_cold_sandbox"]
    print(f"(c) fast path, warm cache, {epochs} epochs, sandbox started cold: runs {', '.join(f'{w:.1f}' for w in unwarmed)} s", flush=True)
    print(f"(c) fast path, warm cache, {epochs} epochs, in a row (run 1 starts from nothing): seconds between results {', '.join(f'{w:.1f}' for w in warm)} s", flush=True)
    figures["d"] = on_started_worker(manifest, path, variant(path, 1), os.path.join(args.work, "out-d"), cache_dir)
    print(f"(d) one notebook on a started worker: {figures['d']:.1f} s", flush=True)
    classes = {}
    if args.class_demo:
        demo_cache = os.path.join(args.work, "cache-demo")
        classes["demo"] = a_class(demo, args.class_demo, os.path.join(args.work, "class-demo"), os.path.join(args.work, "out-class-demo"), demo_cache)
        print(f"(e) class at the demo's scale: {classes['demo']}", flush=True)
    if args.class_here:
        classes["here"] = a_class(manifest, args.class_here, os.path.join(args.work, "class-here"), os.path.join(args.work, "out-class-here"), cache_dir)
        print(f"(e) class at this scale: {classes['here']}", flush=True)

    print(f"\nper submission, {scale['count']} images at {scale['size']}x{scale['size']}, {epochs} epochs:")
    if "a" in figures:
        print(f"  (a) nbclient end to end     {figures['a']:8.1f} s")
    if "b" in figures:
        print(f"  (b) harness, full training  {figures['b']:8.1f} s")
    print(f"  (c) harness, fast path      {figures['c']:8.1f} s  (median of {len(warm)} in a row, warm cache)")
    print(f"      ... each sandbox cold   {figures['c_cold_sandbox']:8.1f} s  (median of {len(unwarmed)})")
    print(f"  building the cache, once    {figures['cache_build']:8.1f} s")
    print(f"  (d) one, on a started worker{figures['d']:8.1f} s  ({figures['d'] / figures['c']:.2f} x (c); goal: at most 2 x (c))")
    if "a" in figures:
        print(f"  ratio (a)/(c)               {figures['a'] / figures['c']:8.1f}  (goal: at least 120)")
    if "b" in figures:
        print(f"  ratio (b)/(c)               {figures['b'] / figures['c']:8.1f}")
    for where, figure in classes.items():
        label = "the demo's scale" if where == "demo" else "this scale"
        print(f"  (e) a class at {label}: {figure['count']} notebooks in {figure['seconds']:.0f} s with --jobs {figure['jobs']}: "
              f"{figure['per_notebook']:.1f} s a notebook all in; {figure['marginal']:.2f} s a notebook after the first result, "
              f"{figure['fixed']:.0f} s fixed (start-up, preflight, cache); a worker's peak memory {figure['worker_peak_mb']} MiB, "
              f"the parent's {figure['parent_peak_mb']} MiB")
        for line in figure["memory"]:
            print(f"      peak memory, {line}")
    if "here" in classes:
        here = classes["here"]
        projected = here["fixed"] + 200 * here["marginal"]
        print(f"  (e) 200 notebooks at this scale, projected: {projected / 60:.1f} min = {here['fixed']:.0f} s fixed + 200 x "
              f"{here['marginal']:.2f} s (goal: at most 10 min on 2 cores); 200 x the all-in figure: {200 * here['per_notebook'] / 60:.1f} min")

    if not args.skip_batch:
        batch_of_30(args.work)
    return 0


def batch_of_30(work: str) -> None:
    """30 distinct demo submissions (the ten scenarios, three variants each), warm cache."""
    demo = manifest_mod.load(ASSIGNMENT)
    folder = make_batch_of_30(demo, os.path.join(work, "batch30"))
    cache_dir = os.path.join(work, "cache-demo")
    batch.grade(demo, [folder], Options(out_dir=os.path.join(work, "warmup"), quiet=True, cache_dir=cache_dir, jobs=1))  # warm the cache
    results = {}
    for jobs in (1, 2):
        out = os.path.join(work, f"batch30-jobs{jobs}")
        shutil.rmtree(out, ignore_errors=True)
        seconds, graded = timed(lambda: batch.grade(demo, [folder], Options(out_dir=out, quiet=True, cache_dir=cache_dir, jobs=jobs)).results)
        results[jobs] = (seconds, {r.submission: r.score for r in graded})
        print(f"batch of {len(graded)} with --jobs {jobs}: {seconds:.1f} s ({seconds / len(graded):.1f} s per submission)", flush=True)
    print(f"  speed-up --jobs 2 over --jobs 1: {results[1][0] / results[2][0]:.2f}x; same scores: {results[1][1] == results[2][1]}")


def make_batch_of_30(demo, folder: str) -> str:
    """Write 30 distinct demo submissions (the ten scenarios, three variants each) to `folder`."""
    built, playground = release.build(demo)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for variant in range(3):
        for name, content in scenarios.make(built, playground, table=labs.scenarios(demo)).items():
            # a trailing comment makes each copy a distinct submission (content-hashed)
            text = content.decode("utf-8", errors="replace") if name != "not_a_notebook.ipynb" else content.decode()
            body = text.replace("model.summary()", f"model.summary()  # copy {variant}") if variant else text
            with open(os.path.join(folder, f"v{variant}-{name}"), "w") as handle:
                handle.write(body if body != text or variant == 0 else text + f"\n# copy {variant}\n")
    return folder


if __name__ == "__main__":
    raise SystemExit(main())
