"""Grading on a Dask cluster, measured on this machine with LocalClusters.

    python bench/bench_cluster.py                 # the demo's scale: the 30 demo notebooks
    python bench/bench_cluster.py --notebooks 10  # the ten scenarios once (a busy machine)
    python bench/bench_cluster.py --codelab 8     # also 8 notebooks at the codelab's scale on one worker

(1) the 30 demo notebooks of bench_grading.py (or the first N: the ten scenarios, then
    their copies) graded with --jobs 1, then with
    --cluster local:1 and local:2, all with the same warm feature cache: the wall time of
    each batch, the steady rate between the first and the last student's result (from
    the gradebook's timestamps: start-up and preflight left out), and whether every
    score equals --jobs 1's;
(2) the scheduler's overhead per task: tasks that do nothing but carry a demo notebook's
    bytes, one at a time and 200 at once, through the same kind of LocalCluster;
(3) with --cold-cache, the feature cache on a cluster: local:2 with an empty cache
    folder (each worker builds the features it needs) against the warm shared folder of (1);
(4) with --codelab N: N distinct notebooks at the codelab's scale (3,670 images at
    192x192, 10 epochs, the solution) on local:1 with a warm cache: the seconds per
    notebook one Dask worker needs, the figure the README's throughput model uses;
(5) the client's own cost per result in the cluster batches of (1), as the grading run
    measured it (the gradebook, and each submission's pages written from what the
    worker rendered): the ceiling of one client, however many workers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_grading import ASSIGNMENT, SCALES, assignment_at, make_batch_of_30, solution_file, timed  # noqa: E402
from grader import batch  # noqa: E402
from grader.config import manifest as manifest_mod  # noqa: E402
from grader.run import Options  # noqa: E402


OUT = {"--jobs 1": "out-jobs1", "--cluster local:1": "out-local1", "--cluster local:2": "out-local2"}


def grade(manifest, folder: str, out: str, cache_dir: str, **options) -> tuple[float, dict, float]:
    """(wall seconds, {submission: score}, steady seconds per notebook) of one batch."""
    shutil.rmtree(out, ignore_errors=True)
    seconds, graded = timed(batch.grade, manifest, [folder], Options(out_dir=out, quiet=True, cache_dir=cache_dir, **options))
    return seconds, {r.submission: r.score for r in graded.results}, steady_rate(out)


def steady_rate(out: str) -> float:
    """Seconds per notebook between the first and the last student's result (the gradebook's
    first two rows are the preflight's solution and playground; notebooks of the same
    content are graded once)."""
    with sqlite3.connect(os.path.join(out, "gradebook.sqlite")) as db:
        stamps = sorted(at for (at,) in db.execute("SELECT graded_at FROM results"))[2:]
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else float("nan")


def slowest(out: str, count: int) -> list[float]:
    """The `count` largest per-notebook seconds the workers reported."""
    import json

    seconds = []
    for folder, _, names in os.walk(os.path.join(out, "submissions")):
        if "result.json" in names:
            with open(os.path.join(folder, "result.json")) as handle:
                seconds.append(json.load(handle)["provenance"].get("seconds", 0.0))
    return sorted(seconds, reverse=True)[:count]


def demo_batches(work: str, count: int, cold_cache: bool) -> str:
    demo = manifest_mod.load(ASSIGNMENT)
    every = make_batch_of_30(demo, os.path.join(work, "batch30"))
    folder = os.path.join(work, f"batch{count}")
    if folder != every:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        for name in sorted(os.listdir(every))[:count]:  # v0-*: the ten scenarios, then their copies
            shutil.copy(os.path.join(every, name), folder)
    cache = os.path.join(work, "cache-demo")
    shutil.rmtree(os.path.join(work, "warmup"), ignore_errors=True)
    batch.check(demo, Options(out_dir=os.path.join(work, "warmup"), quiet=True, cache_dir=cache, jobs=1))  # the preflight warms the cache
    print(f"grading {len(os.listdir(folder))} demo notebooks; load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    runs = {"--jobs 1": dict(jobs=1), "--cluster local:1": dict(cluster="local:1"), "--cluster local:2": dict(cluster="local:2")}
    figures = {}
    for label, options in runs.items():
        figures[label] = grade(demo, folder, os.path.join(work, OUT[label]), cache, **options)
        seconds, scores, steady = figures[label]
        same = scores == figures["--jobs 1"][1]
        print(f"(1) {len(scores)} demo notebooks, {label:18} {seconds:6.1f} s in all ({len(scores) / seconds * 60:5.1f} per minute); "
              f"steady {steady:4.2f} s per notebook; scores identical to --jobs 1: {same}", flush=True)
    one, two = figures["--cluster local:1"], figures["--cluster local:2"]
    print(f"    local:2 over local:1: {one[0] / two[0]:.2f}x in all, {one[2] / two[2]:.2f}x steady; "
          f"load average now: {os.getloadavg()[0]:.1f}", flush=True)
    if not cold_cache:
        return folder
    cold_cache = os.path.join(work, "cache-cold")
    shutil.rmtree(cold_cache, ignore_errors=True)
    cold_out = os.path.join(work, "out-cold-cache")
    seconds, scores, steady = grade(demo, folder, cold_out, cold_cache, cluster="local:2")
    print(f"(3) feature cache, local:2: empty cache folder {seconds:.1f} s in all, slowest notebooks "
          f"{', '.join(f'{s:.1f}' for s in slowest(cold_out, 3))} s (those that built the features); "
          f"warm shared folder {two[0]:.1f} s in all, slowest {', '.join(f'{s:.1f}' for s in slowest(os.path.join(work, OUT['--cluster local:2']), 3))} s; "
          f"scores identical: {scores == figures['--jobs 1'][1]}", flush=True)
    return folder


def client_cost(work: str) -> None:
    """What the client itself does per result whatever the number of workers, as the
    grading run measured it in each cluster batch (grader/run.py): keep the result, write
    the submission's result.json, scorecard and notebook.html (rendered on the worker)."""
    import json

    for label in ("--cluster local:1", "--cluster local:2"):
        with open(os.path.join(work, OUT[label], ".grader", "batch.json")) as handle:
            seconds = json.load(handle)["client_seconds_per_result"]
        print(f"(5) {label}: the client's own work per result (the gradebook and the pages) {seconds * 1000:.0f} ms, "
              f"a ceiling of {1 / seconds:.0f} results a second ({3600 / seconds:,.0f} notebooks an hour) for one client, "
              "however many workers", flush=True)


def scheduler_overhead(folder: str) -> None:
    """Per-task cost of Dask itself: a task that only carries a notebook's bytes."""
    from distributed import Client

    from grader.scale.cluster import local_cluster

    content = open(os.path.join(folder, sorted(os.listdir(folder))[0]), "rb").read()
    with local_cluster(2, 0, 3) as cluster, Client(cluster) as client:
        client.submit(len, content).result()  # connections made
        one_by_one = [timed(lambda: client.submit(len, content, pure=False).result())[0] for _ in range(50)]
        seconds, _ = timed(lambda: client.gather([client.submit(len, content, pure=False) for _ in range(200)]))
    print(f"(2) scheduler overhead, a task carrying a {len(content) / 1024:.0f} KiB notebook: "
          f"{statistics.median(one_by_one) * 1000:.1f} ms round trip one at a time (median of 50), "
          f"{seconds / 200 * 1000:.1f} ms per task with 200 in flight", flush=True)


def codelab(work: str, count: int) -> None:
    """Seconds per notebook of one Dask worker at the codelab's scale, warm cache."""
    from labs import flowers

    scale = SCALES["full"]
    data_dir = os.path.join(work, f"flowers-{scale['count']}-{scale['size']}")
    if not os.path.isdir(data_dir):
        print(f"making {scale['count']} synthetic flowers at {scale['size']}x{scale['size']} ...", flush=True)
        flowers.make_synthetic_flowers(data_dir, scale["size"], scale["count"])
    manifest = assignment_at(scale, data_dir, scale["epochs"], work)
    solution = open(solution_file(manifest, work)).read()
    folder = os.path.join(work, "codelab-notebooks")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for index in range(count):  # distinct files (content-hashed), the same answer
        with open(os.path.join(folder, f"student{index:02d}.ipynb"), "w") as handle:
            handle.write(solution.replace("model.summary()", f"model.summary()  # student {index}"))
    cache = os.path.join(work, "cache-codelab")
    started = time.perf_counter()
    batch.grade(manifest, [folder], Options(out_dir=os.path.join(work, "codelab-warmup"), quiet=True, cache_dir=cache, jobs=1, regrade=True))
    print(f"(4) codelab scale: warming the cache (and grading {count} once with --jobs 1) took {time.perf_counter() - started:.0f} s", flush=True)
    for label, options in {"--jobs 1": dict(jobs=1), "--cluster local:1": dict(cluster="local:1")}.items():
        seconds, scores, steady = grade(manifest, folder, os.path.join(work, "codelab-" + OUT[label]), cache, **options)
        print(f"(4) codelab scale, {count} notebooks, {label:18} {seconds:6.1f} s in all; steady {steady:5.2f} s per notebook; "
              f"scores {sorted(set(scores.values()))}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "grader-bench"))
    parser.add_argument("--notebooks", type=int, default=30, choices=range(1, 31), metavar="N", help="grade the first N of the 30 demo notebooks")
    parser.add_argument("--cold-cache", action="store_true", help="also grade on local:2 with an empty feature cache")
    parser.add_argument("--codelab", type=int, default=0, metavar="N", help="also grade N notebooks at the codelab's scale")
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    folder = demo_batches(args.work, args.notebooks, args.cold_cache)
    scheduler_overhead(folder)
    client_cost(args.work)
    if args.codelab:
        codelab(args.work, args.codelab)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
