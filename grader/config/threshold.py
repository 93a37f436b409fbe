"""A threshold for the accuracy check, from grading the pair: the lab's solution and the
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

from grader.config import release as release_mod
from grader.config import scenarios
from grader.config.manifest import Manifest
from grader.grading.results import SubmissionResult

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
    from grader import batch

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
