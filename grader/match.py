"""Find a submission's answer cells and build the list of cells the sandbox runs.

Answer cells are found by the ids the release recorded, else by the codelab's heading
markers, else by what the code defines (the cell that assigns `model`). The run is
always the release's own locked cells with the student's answers in their places:
nothing but the answers comes from the submission.
"""

from __future__ import annotations

import dataclasses

from grader import cells
from grader.release import Release


@dataclasses.dataclass(frozen=True)
class RunCell:
    key: str
    role: str  # "locked" or "answer"
    source: str


@dataclasses.dataclass(frozen=True)
class Match:
    how: str  # "ids", "headings", "code" or "none"
    answers: dict[str, str]  # answer key -> the student's source
    changed_locked: tuple[str, ...]  # keys of locked cells the student edited

    @property
    def found(self) -> bool:
        return bool(self.answers)


def match(notebook, release: Release) -> Match:
    wanted = release.answer_keys
    for how, finder in (("ids", _by_ids), ("headings", _by_headings), ("code", _by_code)):
        answers = finder(notebook.cells, wanted)
        if answers:
            return Match(how, answers, _changed_locked(notebook.cells, release))
    return Match("none", {}, ())


def _by_ids(notebook_cells, wanted) -> dict[str, str]:
    by_key = {cells.cell_key(c): c for c in notebook_cells if cells.is_code(c)}
    if all(key in by_key for key in wanted):
        return {key: cells.source_of(by_key[key]) for key in wanted}
    return {}


def _by_headings(notebook_cells, wanted) -> dict[str, str]:
    """The i-th marked heading's answer is the code cell below it that builds `model`,
    else the first code cell below it (before the next marked heading)."""
    sections: list[list] = []
    for cell in notebook_cells:
        if cells.is_work_heading(cell):
            sections.append([])
        elif sections and cells.is_code(cell):
            sections[-1].append(cell)
    sections = [s for s in sections if s]
    if len(sections) != len(wanted):
        return {}
    answers = {}
    for key, section in zip(wanted, sections):
        chosen = next((c for c in section if cells.assigns_name(cells.source_of(c), "model")), section[0])
        answers[key] = cells.source_of(chosen)
    return answers


def _by_code(notebook_cells, wanted) -> dict[str, str]:
    if len(wanted) != 1:
        return {}
    builders = [c for c in notebook_cells if cells.is_code(c) and cells.assigns_name(cells.source_of(c), "model")]
    return {wanted[0]: cells.source_of(builders[0])} if builders else {}


def _changed_locked(notebook_cells, release: Release) -> tuple[str, ...]:
    by_key = {cells.cell_key(c): c for c in notebook_cells if cells.is_code(c)}
    return tuple(
        c.key
        for c in release.cells
        if c.kind == "locked" and c.key in by_key and cells.checksum(cells.source_of(by_key[c.key])) != c.checksum
    )


def run_cells(release: Release, answers: dict[str, str]) -> tuple[RunCell, ...]:
    """The release's code cells up to the last answer, with the answers substituted.

    Cells after the last answer (training, curves, predictions) are not run: the
    trusted harness trains the model itself.
    """
    code = [c for c in release.cells if c.kind in ("locked", "answer")]
    last = max(i for i, c in enumerate(code) if c.kind == "answer")
    return tuple(
        RunCell(c.key, c.kind, answers.get(c.key, "") if c.kind == "answer" else c.source) for c in code[: last + 1]
    )
