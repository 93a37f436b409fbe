"""Training that stops once the verdict is settled, against training to the last epoch, on
each lab's population (its module's POPULATION) and scenarios, graded side by side here.

    python bench/bench_early_stop.py                     # the labs that train: convnet, transfer
    python bench/bench_early_stop.py --labs convnet

For each lab: every answer graded twice, in two batches of their own (each with its own
gradebook, the feature cache cold for neither: the fast path's cache is built by the first
and shared), once as `grader calibrate` grades (every epoch: `[training] settled_margin`
negative) and once as a class is graded (the manifest as it is). Printed: how many answers
get the same status, score and checks' statuses and points; each that differs, with both
verdicts; the trusted training's seconds summed over the answers, both ways, and their
ratio; how many answers stopped early and after how many epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from grader import batch  # noqa: E402
from grader.config import labs, manifest as manifest_mod, release, scenarios  # noqa: E402
from grader.config.population import notebook_of  # noqa: E402

LABS = {"convnet": "keras_flowers_convnet", "transfer": "keras_flowers_transfer"}


def answers(loaded, folder: str) -> None:
    built, playground = release.build(loaded)
    os.makedirs(folder, exist_ok=True)
    for answer in labs.population(loaded):
        with open(os.path.join(folder, f"{answer.name}.ipynb"), "wb") as handle:
            handle.write(notebook_of(answer, playground, built.answer_keys[0]))
    for name, content in scenarios.make(built, playground, table=labs.scenarios(loaded)).items():
        with open(os.path.join(folder, f"scenario-{name}"), "wb") as handle:
            handle.write(content)


def graded(loaded, folder: str, out: str, cache: str) -> tuple[dict, float]:
    started = time.perf_counter()
    found = batch.grade(loaded, [folder], batch.Options(out_dir=out, quiet=True, identify="file", cache_dir=cache))
    return {r.submission: r for r in found.results}, time.perf_counter() - started


def verdict(result) -> tuple:
    return result.status, result.score, tuple((c.id, c.status, c.score) for c in result.checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labs", default="convnet,transfer")
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="bench-early-stop-")
    print(f"working in {work}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    for lab in args.labs.split(","):
        loaded = manifest_mod.load(os.path.join(ROOT, "assignments", LABS[lab]))
        folder = os.path.join(work, lab, "answers")
        answers(loaded, folder)
        cache = os.path.join(work, lab, "cache")
        full, full_seconds = graded(dataclasses.replace(loaded, settled_margin=-1.0), folder, os.path.join(work, lab, "full"), cache)
        early, early_seconds = graded(loaded, folder, os.path.join(work, lab, "early"), cache)
        same = [name for name in full if name in early and verdict(full[name]) == verdict(early[name])]
        differ = sorted(set(full) - set(same))
        trained = lambda results: sum(r.training.get("seconds", 0) for r in results.values())  # noqa: E731
        stopped = [len(r.training["history"].get("val_accuracy", [])) for r in early.values() if r.training.get("stopped")]
        print(f"early stop {lab}: {len(full)} answers, same verdict (status, score, each check's status and points) {len(same)}, "
              f"differing {len(differ)}; trusted training {trained(full):.0f} s in full, {trained(early):.0f} s stopping "
              f"({trained(early) / max(trained(full), 1e-9):.2f}x); batches {full_seconds:.0f} s and {early_seconds:.0f} s", flush=True)
        if stopped:
            print(f"  stopped early: {len(stopped)} answers, after {min(stopped)} to {max(stopped)} of {loaded.epochs} epochs "
                  f"(median {statistics.median(stopped):g})")
        for name in differ:
            print(f"  differs: {name}: in full {verdict(full[name])}; stopping {verdict(early.get(name)) if name in early else 'missing'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
