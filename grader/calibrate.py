"""What the lab's own notebooks say about its checks, graded as students' would be: a
threshold for the accuracy check from the pair (`grader check`, `grader new`), and the
verdicts on the lab's population of answers against the teacher's (`grader calibrate`).

A threshold for the accuracy check, from grading the pair: the lab's solution and the
playground's starting code (its answers as the playground gives them), each trained by
the grader itself on the lab's data, as a student's model would be.

A playground left as given is graded 0 without training (nothing of the student's is in
it), so its starting code is graded here as if a student had handed it in: the grader's
own copy, with one line (`pass`) that tells it from the untouched playground. The
threshold must stay above what the starting code reaches (else a student who changes
nothing that matters passes) and, with a margin, below the solution (else a correct
variant a picture or two short fails): it is set at three fifths of the way from the
one to the other, and half the points from a fifth of the way. Where the starting code
builds no model that trains, chance (one over the classes) stands in for it.
"""

from __future__ import annotations

import dataclasses
import math
import os

from grader import batch
from grader.config import release as release_mod
from grader.config import scenarios
from grader.config.manifest import Manifest
from grader.config.population import Answer, named_checks, notebook_of
from grader.results import SubmissionResult
from grader.store.storage import write_atomic

CHECK = "validation_accuracy"
MARK = "pass  # the grader's calibration: the playground's starting code, trained as given\n"
UP, HALF = 0.6, 0.2  # where the threshold and the half-points band sit, from the starting code to the solution
TOO_CLOSE = 0.05  # a solution this little above the starting code cannot be told from it by accuracy


@dataclasses.dataclass(frozen=True)
class Suggestion:
    check_id: str
    current: float | None  # the manifest's threshold
    solution: float
    start: float | None  # None: the starting code builds no model that trains
    chance: float

    @property
    def floor(self) -> float:
        return max(self.start or 0.0, self.chance)

    @property
    def separable(self) -> bool:
        return self.solution - self.floor >= TOO_CLOSE

    @property
    def threshold(self) -> float:
        return math.floor((self.floor + UP * (self.solution - self.floor)) * 100) / 100

    @property
    def band(self) -> float:
        return math.ceil((self.floor + HALF * (self.solution - self.floor)) * 100) / 100

    def lines(self) -> list[str]:
        start = (f"the playground's starting code {self.start:.3f}" if self.start is not None
                 else f"the playground's starting code builds no model that trains (chance is {self.chance:.2f})")
        said = [f"accuracy (check `{self.check_id}`), in the grader's training on this data: the solution reaches "
                f"{self.solution:.3f}, {start}"]
        if not self.separable:
            said.append("  the accuracy check cannot tell the solution from the starting code on this data: train longer "
                        "([training] epochs), or let the structure check carry the points")
            return said
        said.append(f"  suggested: threshold = {self.threshold:.2f}, bands = [[{self.band:.2f}, 0.5]] (set them in "
                    f"assignment.toml; it says threshold = {self.current if self.current is not None else 'nothing'})")
        if self.current is not None and self.current <= self.floor:
            passes = "the starting code" if self.start is not None and self.start >= self.chance else "a model that guesses"
            said.append(f"  the threshold {self.current:g} lets {passes} pass: raise it")
        elif self.current is not None and self.current > self.solution:
            said.append(f"  the threshold {self.current:g} is above the solution: lower it")
        return said


def accuracy_check(manifest: Manifest):
    """The manifest's accuracy check, or None (a lab that trains nothing has none)."""
    return next((spec for spec in manifest.checks if spec.check == CHECK), None)


def starting_notebook(manifest: Manifest) -> bytes:
    """The released playground with its last answer as given plus the calibration's mark."""
    release, playground = release_mod.build(manifest)
    key = release.answer_keys[-1]
    return scenarios.with_answer(playground, key, release.cell(key).given.rstrip("\n") + "\n\n" + MARK)


def val_accuracy(result: SubmissionResult) -> float | None:
    value = (result.training or {}).get("val_accuracy")
    return float(value) if isinstance(value, (int, float)) else None


def measure(manifest: Manifest, solution: SubmissionResult, options) -> Suggestion | None:
    """Grade the starting code in `options.out_dir` (where the preflight ran, so its results
    are reused) and suggest a threshold; None for a lab without an accuracy check, or
    whose solution has no accuracy to compare with."""

    spec = accuracy_check(manifest)
    reached = val_accuracy(solution)
    if spec is None or reached is None:
        return None
    folder = os.path.join(options.out_dir, "calibration")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "starting-code.ipynb")
    with open(path, "wb") as handle:
        handle.write(starting_notebook(manifest))
    graded = batch.grade(manifest, [path], dataclasses.replace(options, regrade=False, quiet=True, identify="file"))
    start = next((val_accuracy(result) for result in graded.results), None)
    current = spec.params.get("threshold")
    return Suggestion(spec.id, float(current) if isinstance(current, (int, float)) else None, reached, start,
                      1 / max(1, len(manifest.lab.classes)))


def disagreements(answer: Answer, result) -> list[str]:
    """How the grader's verdict on `answer` differs from the teacher's ([] if it does not)."""
    if result.status != "graded":
        return [f"not graded: {result.reason}"]
    checks = {c.id: c for c in result.checks}
    if answer.correct:
        return [f"{c.id} is {c.status} ({c.score:g}/{c.max_score:g}): {c.message}" for c in result.checks if c.status != "passed"]
    found = []
    for entry in answer.fails:
        if all(checks[c].status == "passed" for c in entry.split("|") if c in checks):
            found.append(f"{entry} passed, but the answer's mistake is its to name")
    named = named_checks(answer)
    found += [f"{c} is {checks[c].status}: {checks[c].message}" for c in checks if c not in named and checks[c].status != "passed"]
    failing = [checks[c] for c in answer.fails[0].split("|") if c in checks and checks[c].status != "passed"]
    found += [f"{fragment!r} is not in what {answer.fails[0]} says" for fragment in answer.says
              if not any(fragment.lower() in c.message.lower() for c in failing)]
    return found


def accuracy_spread(population, results: dict, threshold: float | None, bands=(), width: int = 40) -> list[str]:
    """The correct answers' validation accuracies against the threshold, as lines of text:
    one row per answer, lowest first, a bar each, the threshold and the bands marked."""
    rows = sorted(((results[a.name].training or {}).get("val_accuracy"), a.name) for a in population
                  if a.correct and a.name in results and (results[a.name].training or {}).get("val_accuracy") is not None)
    wrong = sorted(((results[a.name].training or {}).get("val_accuracy"), a.name) for a in population
                   if not a.correct and a.name in results and (results[a.name].training or {}).get("val_accuracy") is not None)
    if not rows:
        return []

    def bar(value: float) -> str:
        marks = ["#" if (i + 0.5) / width <= value else " " for i in range(width)]
        for edge, sign in [(threshold, "|"), *((floor, ":") for floor, _ in bands)]:
            if edge is not None:
                at = min(width - 1, int(edge * width))
                marks[at] = sign
        return "".join(marks)

    lines = [f"validation accuracy of the {len(rows)} correct answers ('|': the threshold {threshold}; ':': a band's floor)"]
    lines += [f"  {value:5.3f} {bar(value)} {name}" for value, name in rows]
    if wrong:
        lines.append(f"... and of the {len(wrong)} wrong answers the grader trained")
        lines += [f"  {value:5.3f} {bar(value)} {name}" for value, name in wrong]
    lowest = rows[0][0]
    if threshold is not None:
        margin = lowest - threshold
        lines.append(f"lowest correct answer {lowest:.3f}: {margin:+.3f} from the threshold"
                     + ("" if margin > 0 else " -- a correct answer loses points: lower the threshold"))
    return lines


@dataclasses.dataclass(frozen=True)
class Calibration:
    results: dict  # answer name -> SubmissionResult
    disagreements: dict[str, list[str]]  # answer name -> how the grader's verdict differs from the teacher's
    spread: list[str]  # the correct answers' accuracies against the threshold, as lines of text

    def lines(self, population) -> list[str]:
        said = []
        for answer in population:
            result = self.results.get(answer.name)
            verdict = "full marks" if answer.correct else f"fails {', '.join(answer.fails)}"
            score = f"{result.score:g}/{result.max_score:g}" if result is not None else "not graded"
            accuracy = (result.training or {}).get("val_accuracy") if result is not None else None
            shown = f" accuracy {accuracy:.3f}" if accuracy is not None else ""
            mark = "ok " if not self.disagreements.get(answer.name) else "NO "
            said.append(f"{mark} {answer.name:40} {score:>9}{shown} (teacher: {verdict})")
            said += [f"      {line}" for line in self.disagreements.get(answer.name, [])]
        agreed = sum(1 for answer in population if not self.disagreements.get(answer.name))
        return said + [""] + self.spread + ["", f"the grader agrees with the teacher on {agreed} of {len(population)} answers"]


def calibrate(manifest, population, out_dir: str, extra: dict[str, bytes] | None = None, **options) -> Calibration:
    """Grade every answer of `population` in one batch (in `out_dir`); the verdicts compared
    with the teacher's, and the accuracies' spread against the manifest's threshold.
    `extra`: other notebooks (file name -> bytes) graded in the same batch (their results are
    in `results` too, by their names without .ipynb)."""
    built, playground = release_mod.build(manifest)
    key = built.answer_keys[0]
    folder = os.path.join(out_dir, "answers")
    for answer in population:
        write_atomic(os.path.join(folder, f"{answer.name}.ipynb"), notebook_of(answer, playground, key))
    for name, content in (extra or {}).items():
        write_atomic(os.path.join(folder, name), content)
    # in full: the spread is of where training ends, never of where it could have stopped (reference/training.py)
    manifest = dataclasses.replace(manifest, settled_margin=-1.0)
    graded = batch.grade(manifest, [folder], batch.Options(out_dir=os.path.join(out_dir, "graded"), quiet=True, identify="file", **options))
    results = {result.submission: result for result in graded.results}
    found = {answer.name: disagreements(answer, results[answer.name]) if answer.name in results else ["not graded"]
             for answer in population}
    accuracy = next((spec for spec in manifest.checks if spec.check == "validation_accuracy"), None)
    threshold = accuracy.params.get("threshold") if accuracy else None
    bands = tuple(tuple(b) for b in accuracy.params.get("bands", ())) if accuracy else ()
    return Calibration(results, {name: lines for name, lines in found.items() if lines}, accuracy_spread(population, results, threshold, bands))
