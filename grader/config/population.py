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
