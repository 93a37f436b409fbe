"""A lab's population: answers written the ways students write them, each with the verdict
a teacher of the lab would give, graded like any class.

A lab module declares `POPULATION`, a list of `Answer`s. `grader calibrate ASSIGNMENT`
grades them all in one batch and says, for each, whether the grader's verdict is the
teacher's (every correct answer full marks; every wrong one failing the check that names
its mistake, and only the checks its mistake explains); and, for a lab that trains, how
the correct answers' validation accuracies lie against the threshold: a threshold is set
on that spread, with a margin, not on the solution alone (docs/authoring.md). The tests
of each lab grade its population the same way.
"""

from __future__ import annotations

import dataclasses

import nbformat

from grader.config import cells, scenarios


@dataclasses.dataclass(frozen=True)
class Answer:
    """One student's answer and the teacher's verdict on it.

    `fails` empty means full marks. Otherwise each entry names a check that must not pass,
    or alternatives ("structure|frozen") of which at least one must not pass; every check
    not named there or in `may_fail` must pass. `may_fail` holds checks that a teacher could
    defend either way, as consequences of the mistake (accuracy after a broken compile).
    The message of the first entry's failing check contains each of `says`.
    """

    name: str
    answer: str  # the answer cell's source
    fails: tuple[str, ...] = ()
    may_fail: tuple[str, ...] = ()
    says: tuple[str, ...] = ()
    above: tuple[str, ...] = ()  # code cells the student inserted just above the answer cell
    below: tuple[str, ...] = ()  # ... and just below it
    untouched: bool = False  # the playground as released

    @property
    def correct(self) -> bool:
        return not self.fails


def notebook_of(answer: Answer, playground, key: str) -> bytes:
    """The playground with the answer in the answer cell `key`, and its added cells inserted
    around it as Colab's "+ Code" would."""
    if answer.untouched:
        return nbformat.writes(playground).encode()
    notebook = nbformat.reads(scenarios.with_answer(playground, key, answer.answer).decode(), 4)
    at = next(i for i, cell in enumerate(notebook.cells) if cells.cell_key(cell) == key)
    added = lambda sources, where: [nbformat.v4.new_code_cell(s, id=f"{answer.name[:40]}-{where}{n}") for n, s in enumerate(sources)]  # noqa: E731
    notebook.cells[at + 1 : at + 1] = added(answer.below, "below")
    notebook.cells[at:at] = added(answer.above, "above")
    return nbformat.writes(notebook).encode()


def named_checks(answer: Answer) -> set[str]:
    return {c for entry in answer.fails for c in entry.split("|")} | set(answer.may_fail)


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
    import os

    from grader import batch
    from grader.config import release
    from grader.store.storage import write_atomic

    built, playground = release.build(manifest)
    key = built.answer_keys[0]
    folder = os.path.join(out_dir, "answers")
    for answer in population:
        write_atomic(os.path.join(folder, f"{answer.name}.ipynb"), notebook_of(answer, playground, key))
    for name, content in (extra or {}).items():
        write_atomic(os.path.join(folder, name), content)
    graded = batch.grade(manifest, [folder], batch.Options(out_dir=os.path.join(out_dir, "graded"), quiet=True, identify="file", **options))
    results = {result.submission: result for result in graded.results}
    found = {answer.name: disagreements(answer, results[answer.name]) if answer.name in results else ["not graded"]
             for answer in population}
    accuracy = next((spec for spec in manifest.checks if spec.check == "validation_accuracy"), None)
    threshold = accuracy.params.get("threshold") if accuracy else None
    bands = tuple(tuple(b) for b in accuracy.params.get("bands", ())) if accuracy else ()
    return Calibration(results, {name: lines for name, lines in found.items() if lines}, accuracy_spread(population, results, threshold, bands))
