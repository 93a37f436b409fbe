"""Find a submission's answer cells and build the list of cells the sandbox runs.

Answer cells are found by the ids the release recorded, else by the codelab's heading
markers, else by what the code defines (the cell that assigns the lab's answer, e.g.
`model` or `dataset`). Each answer
has a *section*: the code cells the student wrote there, in notebook order — the
answer cell itself and any cell they inserted between the cell before the answer and
the next locked cell (a helper function above it, a `model.compile(...)` below it).
The run is the release's own locked cells with each answer replaced by its section:
nothing but the students' sections comes from the submission.
"""

from __future__ import annotations

import dataclasses

from grader import cells
from grader.release import Release


@dataclasses.dataclass(frozen=True)
class RunCell:
    key: str
    role: str  # "locked", "answer" or "added" (inserted by the student in an answer's section)
    source: str


@dataclasses.dataclass(frozen=True)
class Match:
    how: str  # "ids", "headings", "code" or "none"
    sections: dict[str, tuple[RunCell, ...]]  # answer key -> the student's cells of that answer
    changed_locked: tuple[str, ...]  # keys of locked cells the student edited

    @property
    def found(self) -> bool:
        return bool(self.sections)

    @property
    def answers(self) -> dict[str, str]:
        """answer key -> the source of the student's answer cell."""
        return {key: next(c.source for c in section if c.role == "answer") for key, section in self.sections.items()}

    @property
    def student_cells(self) -> tuple[RunCell, ...]:
        """Every cell of every section, in run order."""
        return tuple(cell for section in self.sections.values() for cell in section)


def match(notebook, release: Release, answer: str = "model") -> Match:
    """`answer`: the name the lab's answer defines ([lab] answer)."""
    for how, finder in (("ids", _by_ids), ("headings", _by_headings), ("code", _by_code)):
        sections = finder(notebook.cells, release, answer)
        if sections:
            return Match(how, sections, _changed_locked(notebook.cells, release))
    return Match("none", {}, ())


def _is_locked(cell, release: Release) -> bool:
    """A code cell that is one of the release's locked cells, by id or by content."""
    if not cells.is_code(cell):
        return False
    key = cells.cell_key(cell)
    locked = {c.key: c for c in release.cells if c.kind == "locked"}
    return key in locked or cells.checksum(cells.source_of(cell)) in {c.checksum for c in locked.values()}


def _section(notebook_cells, at: int, start: int, end: int, key: str) -> tuple[RunCell, ...]:
    """The code cells in notebook_cells[start:end], the one at `at` being the answer."""
    section, added = [], 0
    for index in range(start, end):
        cell = notebook_cells[index]
        if not cells.is_code(cell):
            continue
        if index == at:
            section.append(RunCell(key, "answer", cells.source_of(cell)))
        else:
            added += 1
            section.append(RunCell(f"{key}+{added}", "added", cells.source_of(cell)))
    return tuple(section)


def _by_ids(notebook_cells, release: Release, answer: str) -> dict[str, tuple[RunCell, ...]]:
    keys = [cells.cell_key(c) for c in notebook_cells]
    wanted = release.answer_keys
    if not all(key in keys for key in wanted):
        return {}
    sections = {}
    for key in wanted:
        at = keys.index(key)
        before = release.before(key)
        start = next((i + 1 for i in range(at - 1, -1, -1) if keys[i] == before or _is_locked(notebook_cells[i], release)), 0)
        end = next(
            (i for i in range(at + 1, len(notebook_cells)) if _is_locked(notebook_cells[i], release) or keys[i] in wanted),
            len(notebook_cells),
        )
        sections[key] = _section(notebook_cells, at, start, end, key)
    return sections


def _by_headings(notebook_cells, release: Release, answer: str) -> dict[str, tuple[RunCell, ...]]:
    """The i-th marked heading's section runs to the next markdown heading or locked cell;
    its answer is the code cell that assigns `answer`, else its first code cell."""
    found = []
    for start in (i for i, c in enumerate(notebook_cells) if cells.is_work_heading(c)):
        end = next(
            (i for i in range(start + 1, len(notebook_cells))
             if cells.is_heading(notebook_cells[i]) or _is_locked(notebook_cells[i], release)),
            len(notebook_cells),
        )
        code = [i for i in range(start + 1, end) if cells.is_code(notebook_cells[i])]
        if code:
            at = next((i for i in code if cells.assigns_name(cells.source_of(notebook_cells[i]), answer)), code[0])
            found.append((at, start + 1, end))
    wanted = release.answer_keys
    if len(found) != len(wanted):
        return {}
    return {key: _section(notebook_cells, at, start, end, key) for key, (at, start, end) in zip(wanted, found)}


def _by_code(notebook_cells, release: Release, answer: str) -> dict[str, tuple[RunCell, ...]]:
    wanted = release.answer_keys
    if len(wanted) != 1:
        return {}
    builders = [i for i, c in enumerate(notebook_cells) if cells.is_code(c) and cells.assigns_name(cells.source_of(c), answer)]
    return {wanted[0]: _section(notebook_cells, builders[0], builders[0], builders[0] + 1, wanted[0])} if builders else {}


def _changed_locked(notebook_cells, release: Release) -> tuple[str, ...]:
    by_key = {cells.cell_key(c): c for c in notebook_cells if cells.is_code(c)}
    return tuple(
        c.key
        for c in release.cells
        if c.kind == "locked" and c.key in by_key and cells.checksum(cells.source_of(by_key[c.key])) != c.checksum
    )


def run_cells(release: Release, found: Match) -> tuple[RunCell, ...]:
    """The release's code cells up to the last answer, each answer replaced by its section.

    Cells after the last answer (training, curves, predictions) are not run: the
    trusted harness trains the model itself.
    """
    code = [c for c in release.cells if c.kind in ("locked", "answer")]
    last = max(i for i, c in enumerate(code) if c.kind == "answer")
    run: list[RunCell] = []
    for cell in code[: last + 1]:
        if cell.kind == "answer":
            run += found.sections.get(cell.key, (RunCell(cell.key, "answer", ""),))
        else:
            run.append(RunCell(cell.key, "locked", cell.source))
    return tuple(run)
