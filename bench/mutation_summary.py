"""Print the last mutation run's outcome per module: how many of the small breakages mutmut
made were caught by a test (killed), went unnoticed (survived), reached no test at all, or
made the tests run past their time (a hang counts as caught).

    python bench/mutation_summary.py [.mutation/mutants] [--survivors]

Run `./dev mutate` first (docs/testing.md)."""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os

# mutmut's exit codes for a mutant (mutmut/stats.py): the test run's own status where it ran
OUTCOME = {0: "survived", 1: "killed", 3: "killed", 5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious",
           36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout"}
COLUMNS = ("killed", "timeout", "survived", "no tests", "other")


def outcomes(folder: str) -> tuple[dict[str, collections.Counter], dict[str, list[str]]]:
    """Per module: the count of each outcome, and the names of the mutants that survived."""
    found: dict[str, collections.Counter] = {}
    survivors: dict[str, list[str]] = {}
    for meta in sorted(glob.glob(os.path.join(folder, "**", "*.py.meta"), recursive=True)):
        module = os.path.relpath(meta, folder)[: -len(".meta")]
        with open(meta) as handle:
            codes = json.load(handle)["exit_code_by_key"]
        counts = collections.Counter()
        for key, code in codes.items():
            outcome = OUTCOME.get(code, "other")  # other: not run yet, a crash, a skip
            counts[outcome if outcome in COLUMNS else "other"] += 1
            if outcome == "survived":
                survivors.setdefault(module, []).append(key)
        found[module] = counts
    return found, survivors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=".mutation/mutants")
    parser.add_argument("--survivors", action="store_true", help="list each surviving mutant's name")
    args = parser.parse_args(argv)
    found, survivors = outcomes(args.folder)
    if not found:
        print(f"no mutation results under {args.folder}: run ./dev mutate")
        return 1
    width = max(len(module) for module in found)
    print(f"{'module':{width}} " + " ".join(f"{column:>9}" for column in COLUMNS) + "   caught of reached")
    total = collections.Counter()
    for module, counts in found.items():
        reached = counts["killed"] + counts["timeout"] + counts["survived"]
        caught = counts["killed"] + counts["timeout"]
        share = f"{caught / reached:.0%}" if reached else "-"
        print(f"{module:{width}} " + " ".join(f"{counts[column]:>9}" for column in COLUMNS) + f"   {share:>6}")
        total.update({column: counts[column] for column in COLUMNS})
    reached = total["killed"] + total["timeout"] + total["survived"]
    print(f"{'all':{width}} " + " ".join(f"{total[column]:>9}" for column in COLUMNS)
          + f"   {(total['killed'] + total['timeout']) / max(reached, 1):.0%}")
    if args.survivors:
        for module, keys in survivors.items():
            print("\n".join(f"survived: {key}" for key in keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
