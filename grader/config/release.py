"""Release: from the instructor's source notebook, the student playground and a record.

The record says which cells students answer and the checksums of the cells they must
not change. Grading rebuilds the same record from the manifest, so a grade never
depends on a file the instructor may have edited since.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os

import nbformat

from grader.config import cells
from grader.config.manifest import Manifest
from grader.config.notebook import read_trusted
from grader.faults import ManifestError
from grader.store.storage import write_atomic


@dataclasses.dataclass(frozen=True)
class ReleasedCell:
    key: str
    kind: str  # "answer", "locked" (code the student must not change) or "text"
    source: str  # what the grader runs: the solution for answers, the code for locked cells
    checksum: str
    given: str = ""  # for answers: the playground's version (placeholders where the solution was)
    aliases: tuple[str, ...] = ()  # other ids the same cell has in the codelab's own notebooks
    untouched: tuple[str, ...] = ()  # for answers: code checksums of the cell as other playgrounds give it


# metadata.grader of a source notebook's cell: `aliases`, the ids the codelab's own notebooks
# give the cell; `untouched` (an answer cell), the code checksums (cells.code_checksum) of the
# cell as the codelab's own playgrounds give it, so that one left as given is known for one
ALIASES, UNTOUCHED = "aliases", "untouched"


@dataclasses.dataclass(frozen=True)
class Release:
    assignment: str
    version: str
    cells: tuple[ReleasedCell, ...]

    @property
    def answer_keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.cells if c.kind == "answer")

    def cell(self, key: str) -> ReleasedCell:
        return next(c for c in self.cells if c.key == key)

    def known(self, key: str | None) -> str | None:
        """The release's key of the code cell a submitted cell's id names (its own or an
        alias: the codelab's id of the same cell), or None."""
        if key is None:
            return None
        return next((c.key for c in self.cells if c.kind != "text" and (c.key == key or key in c.aliases)), None)

    def before(self, key: str) -> str | None:
        """The key of the cell before `key` in the source notebook (None for the first)."""
        keys = [c.key for c in self.cells]
        index = keys.index(key)
        return keys[index - 1] if index else None

    def record(self) -> dict:
        return {
            "assignment": self.assignment,
            "version": self.version,
            "answer_cells": list(self.answer_keys),
            "locked_cells": {c.key: c.checksum for c in self.cells if c.kind == "locked"},
            "aliases": {c.key: list(c.aliases) for c in self.cells if c.aliases},
        }


def build(manifest: Manifest) -> tuple[Release, nbformat.NotebookNode]:
    """The release record and the playground notebook of `manifest`'s source notebook."""
    try:
        source = read_trusted(manifest.notebook_path)
    except (OSError, nbformat.ValidationError, ValueError) as error:
        raise ManifestError(f"cannot read the source notebook {manifest.notebook_path}: {error}") from None
    keys = [cells.cell_key(cell) for cell in source.cells]
    missing = [key for key in manifest.answer_cells if key not in keys]
    if missing:
        raise ManifestError(
            f"{manifest.notebook_path} has no cell with id {', '.join(missing)}",
            hint=f"[assignment] answer_cells must name code cells of the notebook; its ids are {keys}",
        )
    playground = copy.deepcopy(source)
    released = []
    for index, cell in enumerate(playground.cells):
        key = keys[index] or f"cell-{index}"
        text = cells.source_of(cell)
        aliases, untouched = _listed(cell, key, ALIASES), _listed(cell, key, UNTOUCHED)
        if key in manifest.answer_cells:
            if not cells.is_code(cell) or not cells.has_solution_markers(text):
                raise ManifestError(
                    f"answer cell {key!r} must be a code cell with ### BEGIN SOLUTION / ### END SOLUTION markers"
                )
            try:
                cell.source = cells.strip_solutions(text)
            except ManifestError as error:  # a solution marker without its pair
                raise ManifestError(f"answer cell {key!r}: {error}") from None
            solution = cells.solution_code(text)
            released.append(ReleasedCell(key, "answer", solution, cells.checksum(solution), cell.source, aliases, untouched))
            _mark_heading_above(playground.cells, index)
        elif cells.is_code(cell):
            released.append(ReleasedCell(key, "locked", text, cells.checksum(text), aliases=aliases))
        else:
            cell.source = cells.as_playground_heading(text)
            released.append(ReleasedCell(key, "text", cell.source, cells.checksum(cell.source)))
        if cells.is_code(cell):
            cell.outputs, cell.execution_count = [], None
    return Release(manifest.name, manifest.version, tuple(released)), playground


def _listed(cell, key: str, name: str) -> tuple[str, ...]:
    """A list of the cell's `metadata.grader` (ids, checksums), checked: non-empty strings."""
    grader_metadata = (cell.get("metadata") or {}).get("grader") or {}
    found = grader_metadata.get(name, []) if isinstance(grader_metadata, dict) else []
    if not isinstance(found, list) or not all(isinstance(item, str) and item for item in found):
        raise ManifestError(f"cell {key!r}: metadata.grader.{name} must be a list of strings, got {found!r}")
    return tuple(found)


def _mark_heading_above(notebook_cells, index: int) -> None:
    for cell in reversed(notebook_cells[:index]):
        if cell.cell_type == "markdown":
            if not cells.is_work_heading(cell):
                lines = cells.source_of(cell).splitlines() or [""]
                lines[0] = lines[0].rstrip() + " [WORK REQUIRED]"
                cell.source = "\n".join(lines)
            return


def submit_cell(assignment: str, server: str) -> nbformat.NotebookNode:
    """The playground's last cell when a workshop server takes the uploads: how to submit."""
    url = server.rstrip("/")
    return nbformat.v4.new_markdown_cell(
        "## Submit your notebook\n\n"
        "When you are done: **File > Download > Download .ipynb**, then upload that file on your page of the "
        f"grading server, {url}/ (open the personal link your instructor sent you, or join with the workshop code "
        "shown in class). Your scorecard appears there within a minute, and you may upload again.\n\n"
        "From a terminal, in the folder of the downloaded file (your page shows this line with your own key):\n\n"
        f"    curl -sS -H \"Authorization: Bearer YOUR-KEY\" -F \"notebook=@{assignment}.ipynb\" {url}/api/upload"
    )


def write(release: Release, playground: nbformat.NotebookNode, out_dir: str, server: str = "") -> dict[str, str]:
    """Write `<name>.ipynb` (the playground; with a last cell saying how to submit to
    `server`, a `grader serve` URL, if given) and `release.json`; return their paths."""
    if server:
        playground = copy.deepcopy(playground)
        playground.cells.append(submit_cell(release.assignment, server))
    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "playground": os.path.join(out_dir, f"{release.assignment}.ipynb"),
        "record": os.path.join(out_dir, "release.json"),
    }
    write_atomic(paths["playground"], nbformat.writes(playground))
    write_atomic(paths["record"], json.dumps(release.record(), indent=2) + "\n")
    return paths
