"""Find a submission's answer cells and build the list of cells the sandbox runs.

Answer cells are found by the ids the release recorded (a cell's own id, or an alias:
the id the codelab's own notebooks give the same cell, so that a notebook downloaded
from the codelab's Colab page is read cell by cell), else by the codelab's heading
markers, else by what the code defines (the cell that assigns the lab's answer, e.g.
`model` or `dataset`).

The run is the release's own locked cells with each answer replaced by the student's
cells, and every other cell the student added above the answer put back in its place:

- an answer's *section* is the answer cell and the code cells the student wrote around
  it, between the lab's cell before it and the lab's cell after it (a helper above the
  heading, a `model.compile(...)` below the answer): they are the answer, and what goes
  wrong in them is the student's to fix;
- a cell the student added further up (an import, a helper among the lab's cells) runs
  after the lab's cell it follows in the notebook. It is run on a best effort: a failure
  there is reported, not graded (it may be a Colab-only line such as `!nvidia-smi`), and
  a cell that binds a name the lab's own cells set (the data's location, say) is not run,
  since it would take the grader's data away from the answer;
- nothing else from the submission runs: locked cells always run from the release, and
  cells after the last answer (training, curves) do not run: the grader trains itself.

What is replaced, skipped or added is kept in the match, for the scorecard to say.
"""

from __future__ import annotations

import dataclasses

from grader.config import cells
from grader.config.release import Release

START = "start"  # the anchor of cells added above every cell of the lab's


@dataclasses.dataclass(frozen=True)
class RunCell:
    key: str
    role: str  # "locked", "answer", "added" (in an answer's section) or "above" (added further up, best effort)
    source: str


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A cell of the submission that the grader did not run, and why (for the scorecard)."""

    key: str
    source: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Match:
    how: str  # "ids", "headings", "code" or "none"
    sections: dict[str, tuple[RunCell, ...]]  # answer key -> the student's cells of that answer
    changed_locked: tuple[str, ...] = ()  # keys of locked cells the student edited (the lab's version runs)
    codelab_cells: tuple[str, ...] = ()  # keys of locked cells the notebook has in the codelab's own words (ours run)
    above: dict[str, tuple[RunCell, ...]] = dataclasses.field(default_factory=dict)  # anchor key (or START) -> added cells
    skipped: tuple[Skipped, ...] = ()  # the student's cells above the answers that did not run

    @property
    def found(self) -> bool:
        return bool(self.sections)

    @property
    def answers(self) -> dict[str, str]:
        """answer key -> the source of the student's answer cell."""
        return {key: next(c.source for c in section if c.role == "answer") for key, section in self.sections.items()}

    @property
    def student_cells(self) -> tuple[RunCell, ...]:
        """Every cell of every section, in run order: what the student answers for."""
        return tuple(cell for section in self.sections.values() for cell in section)

    @property
    def added_above(self) -> tuple[RunCell, ...]:
        """The cells added further up, run on a best effort."""
        return tuple(cell for cells_ in self.above.values() for cell in cells_)


def match(notebook, release: Release, answer: str = "model") -> Match:
    """`answer`: the name the lab's answer defines ([lab] answer)."""
    for how, finder in (("ids", _by_ids), ("headings", _by_headings), ("code", _by_code)):
        found = finder(notebook.cells, release, answer)
        if found is not None:
            changed, codelab = _changed_locked(notebook.cells, release)
            return dataclasses.replace(found, how=how, changed_locked=changed, codelab_cells=codelab)
    return Match("none", {})


def _known(cell, release: Release) -> str | None:
    """The release's key of a submitted code cell: by its id or alias, else (a locked cell)
    by its content; None for a cell the lab does not have."""
    if not cells.is_code(cell):
        return None
    key = release.known(cells.cell_key(cell))
    if key is not None:
        return key
    checksum = cells.checksum(cells.source_of(cell))
    return next((c.key for c in release.cells if c.kind == "locked" and c.checksum == checksum), None)


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


def _by_ids(notebook_cells, release: Release, answer: str) -> Match | None:
    known = [_known(cell, release) for cell in notebook_cells]
    wanted = release.answer_keys
    if not all(key in known for key in wanted):
        return None
    sections, spans = {}, []
    for key in wanted:
        at = known.index(key)
        start = next((i + 1 for i in range(at - 1, -1, -1) if known[i] is not None), 0)
        end = next((i for i in range(at + 1, len(notebook_cells)) if known[i] is not None), len(notebook_cells))
        sections[key] = _section(notebook_cells, at, start, end, key)
        spans.append((start, end))
    above, skipped = _above(notebook_cells, known, release, spans)
    return Match("ids", sections, above=above, skipped=skipped)


def _above(notebook_cells, known: list, release: Release, spans: list[tuple[int, int]]):
    """The code cells the student added outside every section, up to the last section, each
    after the lab's cell it follows: (anchor -> cells, skipped)."""
    order = {c.key: n for n, c in enumerate(release.cells)}
    last_answer = max(order[key] for key in release.answer_keys)
    taken = set().union(*(range(start, end) for start, end in spans))
    lab_names = _lab_names(release)
    above: dict[str, list[RunCell]] = {}
    skipped: list[Skipped] = []
    anchor = START
    for index in range(max(start for start, _ in spans)):
        cell = notebook_cells[index]
        if known[index] is not None:
            anchor = known[index]
            continue
        if not cells.is_code(cell) or index in taken or not cells.source_of(cell).strip():
            continue
        source = cells.source_of(cell)
        key = f"{anchor}+{len(above.get(anchor, [])) + 1}"
        if anchor != START and order[anchor] > last_answer:
            skipped.append(Skipped(key, source, "it comes after a cell of the lab's that follows the answer"))
            continue
        clash = sorted(cells.assigned_names(source) & lab_names)
        if clash:
            names = ", ".join(f"`{name}`" for name in clash[:3])
            skipped.append(Skipped(key, source, f"it sets {names}, which the lab's own cells set for the grader's data and "
                                                "settings (the grader runs the lab's version of those cells)"))
            continue
        above.setdefault(anchor, []).append(RunCell(key, "above", source))
    return {anchor: tuple(found) for anchor, found in above.items()}, tuple(skipped)


def _lab_names(release: Release) -> set[str]:
    """The names the lab's locked cells before its last answer bind."""
    names: set[str] = set()
    for cell in release.cells:
        if cell.kind == "answer":
            last = cell.key
    for cell in release.cells:
        if cell.kind == "locked":
            names |= cells.assigned_names(cell.source)
        if cell.key == last:
            break
    return names


def _by_headings(notebook_cells, release: Release, answer: str) -> Match | None:
    """The i-th marked heading's section runs to the next markdown heading or locked cell;
    its answer is the code cell that assigns `answer`, else its first code cell. Cells above
    a section that the lab does not know are not run: without ids, the grader cannot tell
    the student's cells from the codelab's own (which would read its bucket, ask for its TPU)."""
    found = []
    for start in (i for i, c in enumerate(notebook_cells) if cells.is_work_heading(c)):
        end = next(
            (i for i in range(start + 1, len(notebook_cells))
             if cells.is_heading(notebook_cells[i]) or _known(notebook_cells[i], release) is not None),
            len(notebook_cells),
        )
        code = [i for i in range(start + 1, end) if cells.is_code(notebook_cells[i])]
        if code:
            at = next((i for i in code if cells.assigns_name(cells.source_of(notebook_cells[i]), answer)), code[0])
            found.append((at, start + 1, end))
    wanted = release.answer_keys
    if len(found) != len(wanted):
        return None
    sections = {key: _section(notebook_cells, at, start, end, key) for key, (at, start, end) in zip(wanted, found)}
    unknown = [i for i in range(found[-1][1]) if cells.is_code(notebook_cells[i]) and cells.source_of(notebook_cells[i]).strip()
               and _known(notebook_cells[i], release) is None and not any(s <= i < e for _, s, e in found)]
    skipped = tuple(Skipped(f"cell {i + 1}", cells.source_of(notebook_cells[i]),
                            "the notebook's cells have no ids the lab knows, so the grader cannot tell a cell you added from "
                            "the codelab's own; it ran the lab's version of its cells instead") for i in unknown)
    return Match("headings", sections, skipped=skipped)


def _by_code(notebook_cells, release: Release, answer: str) -> Match | None:
    wanted = release.answer_keys
    if len(wanted) != 1:
        return None
    builders = [i for i, c in enumerate(notebook_cells) if cells.is_code(c) and cells.assigns_name(cells.source_of(c), answer)]
    if not builders:
        return None
    return Match("code", {wanted[0]: _section(notebook_cells, builders[0], builders[0], builders[0] + 1, wanted[0])})


def _changed_locked(notebook_cells, release: Release) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(The locked cells the student edited, by the lab's own id; the locked cells the
    notebook has in the codelab's own words, by the codelab's id): in both, the lab's
    version is what runs."""
    by_key, aliased = {}, set()
    for cell in notebook_cells:
        own = cells.cell_key(cell)
        key = release.known(own) if cells.is_code(cell) else None
        if key is not None and release.cell(key).kind == "locked" and key not in by_key:
            by_key[key] = cell
            if own != key:
                aliased.add(key)
    differs = [c.key for c in release.cells
               if c.kind == "locked" and c.key in by_key and cells.checksum(cells.source_of(by_key[c.key])) != c.checksum]
    return tuple(key for key in differs if key not in aliased), tuple(key for key in differs if key in aliased)


def helpers_after(release: Release) -> tuple[str, ...]:
    """The lab's locked cells after its last answer that only define things (the codelab's
    "useful code snippets"): a student runs them in any order in Colab, so the grader runs
    them before the answers (an answer that calls one is not failed for a NameError)."""
    code = [c for c in release.cells if c.kind in ("locked", "answer")]
    last = max(i for i, c in enumerate(code) if c.kind == "answer")
    return tuple(c.key for c in code[last + 1:] if c.kind == "locked" and cells.defines_only(c.source))


def run_cells(release: Release, found: Match) -> tuple[RunCell, ...]:
    """The release's code cells up to the last answer, each answer replaced by its section,
    the cells added above put back after the lab's cell they follow, and the lab's own
    helper definitions from below the answers just before the first answer.

    Cells after the last answer (training, curves, predictions) are not run: the
    trusted harness trains the model itself.
    """
    code = [c for c in release.cells if c.kind in ("locked", "answer")]
    last = max(i for i, c in enumerate(code) if c.kind == "answer")
    helpers = [RunCell(key, "locked", release.cell(key).source) for key in helpers_after(release)]
    run: list[RunCell] = list(found.above.get(START, ()))
    for cell in code[: last + 1]:
        if cell.kind == "answer":
            run += helpers
            helpers = []
            run += found.sections.get(cell.key, (RunCell(cell.key, "answer", ""),))
        else:
            run.append(RunCell(cell.key, "locked", cell.source))
        run += found.above.get(cell.key, ())
    return tuple(run)
