"""Grade a folder of the codelab's own notebooks, each with the lab of its part, and print
the table part x notebook -> score.

    python bench/codelab.py FOLDER [--out DIR] [--no-cache]

The notebooks are the codelab's (GoogleCloudPlatform/training-data-analyst,
courses/fast-and-lean-data-science/), every version a class may hand in: fetch them
yourself, they are not part of this repository. A file is given to a lab by the number
its name starts with: 02 (the tf.data lab), 04 (transfer learning), 07 (the convnet on
TPU); any other file is listed as not graded. A solution should get full marks and an
untouched playground nothing: the last column says where that is not so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PARTS = {  # the number a codelab notebook's name starts with -> (the series' part, the lab)
    "02": ("part 1", "keras_flowers_tfdata"),
    "04": ("part 2", "keras_flowers_transfer"),
    "07": ("part 3", "keras_flowers_convnet"),
}


def lab_of(name: str):
    return PARTS.get(name[:2]) if name.endswith(".ipynb") else None


def expected(name: str) -> str:
    lowered = name.lower()
    return "full marks" if "solution" in lowered else "nothing" if "playground" in lowered else ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a folder of the codelab's notebooks")
    parser.add_argument("--out", help="where the graded pages go (default: a temporary folder)")
    parser.add_argument("--no-cache", action="store_true", help="train every model in full")
    args = parser.parse_args(argv)

    from grader import batch
    from grader.config import manifest

    out = args.out or tempfile.mkdtemp(prefix="codelab-graded-")
    names = sorted(os.listdir(args.folder))
    rows, skipped = [], [name for name in names if lab_of(name) is None]
    for prefix, (part, lab) in PARTS.items():
        mine = [name for name in names if name[:2] == prefix and name.endswith(".ipynb")]
        if not mine:
            continue
        folder = os.path.join(out, lab, "notebooks")
        os.makedirs(folder, exist_ok=True)
        for name in mine:
            shutil.copy(os.path.join(args.folder, name), os.path.join(folder, name))
        print(f"grading {len(mine)} notebook(s) with {lab} ...", file=sys.stderr, flush=True)
        graded = batch.grade(manifest.load(os.path.join(ROOT, "assignments", lab)), [folder],
                             batch.Options(out_dir=os.path.join(out, lab, "graded"), quiet=True, identify="file",
                                           use_cache=not args.no_cache))
        by_name = {result.file: result for result in graded.results}
        for name in mine:
            result = by_name.get(name)
            rows.append((part, name, result, expected(name)))

    width = max((len(name) for _, name, _, _ in rows), default=10)
    print(f"{'part':7} {'notebook':{width}} {'score':>9}  not as expected / failing checks")
    wrong = 0
    for part, name, result, wanted in rows:
        if result is None:
            print(f"{part:7} {name:{width}} {'-':>9}  not graded")
            wrong += 1
            continue
        score = f"{result.score:g}/{result.max_score:g}"
        failing = [c.id for c in result.checks if c.status != "passed"]
        off = (wanted == "full marks" and result.score < result.max_score) or (wanted == "nothing" and result.score > 0)
        wrong += off
        said = ("NOT AS EXPECTED (" + wanted + "); " if off else "") + (", ".join(failing) if failing and wanted != "nothing" else "")
        print(f"{part:7} {name:{width}} {score:>9}  {said}".rstrip())
    for name in skipped:
        print(f"{'-':7} {name:{width}} {'-':>9}  not a notebook of parts 1 to 3: not graded")
    print(f"\n{len(rows) - wrong} of {len(rows)} notebooks graded as expected; the pages are in {out}")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
