"""Sample submissions, made from a release: the demo grades them, the preflight and the
tests pin their verdicts.

Each factory takes the playground notebook, the answer cell's key and the solution's
source of that cell, and returns the bytes of a submitted file. The ones here fit any
lab (its solution, its untouched playground, a file that is no notebook); a lab's own
mistakes come from its module's SCENARIOS (see grader/config/labs.py).
"""

from __future__ import annotations

import copy

import nbformat

from grader.config import cells
from grader.config.release import Release


def with_answer(playground, key: str, source: str) -> bytes:
    notebook = copy.deepcopy(playground)
    for cell in notebook.cells:
        if cells.cell_key(cell) == key:
            cell.source = source
    return nbformat.writes(notebook).encode()


def edit(old: str, new: str):
    """A factory: the solution with `old` replaced by `new` (a typical mistake)."""

    def make(playground, key, solution) -> bytes:
        if old not in solution:
            raise ValueError(f"the solution has no {old!r} to change")
        return with_answer(playground, key, solution.replace(old, new))

    return make


def colab_cell(kind: str, source: str, cell_id: str, outputs=None) -> dict:
    """A cell as Colab downloads it (nbformat 4.0): its id in metadata.id only, Colab's own
    metadata, code cells with their outputs."""
    entry = {"cell_type": kind, "metadata": {"id": cell_id, "colab_type": "text" if kind == "markdown" else "code"}, "source": source}
    if kind == "code":
        entry.update(execution_count=1, outputs=outputs or [])
        entry["metadata"]["colab"] = {}
    return entry


def colab_notebook(file_name: str, cells: list[dict]) -> bytes:
    """A notebook as Colab downloads it: nbformat 4.0, Colab's metadata (a TPU runtime),
    the cells made by `colab_cell`."""
    import json

    metadata = {"colab": {"name": file_name, "provenance": []}, "kernelspec": {"name": "python3", "display_name": "Python 3"}, "accelerator": "TPU"}
    return json.dumps({"nbformat": 4, "nbformat_minor": 0, "metadata": metadata, "cells": cells}, indent=1).encode()


def solution(playground, key, solution) -> bytes:
    return with_answer(playground, key, solution)


def untouched_playground(playground, key, solution) -> bytes:
    return nbformat.writes(playground).encode()


def not_a_notebook(playground, key, solution) -> bytes:
    return b"I could not download my notebook, here is my answer:\nmodel = Sequential([...])\n"


GENERIC = {
    "solution.ipynb": (solution, "the lab's solution"),
    "untouched_playground.ipynb": (untouched_playground, "the playground as released, nothing written"),
    "not_a_notebook.ipynb": (not_a_notebook, "a text file, not a notebook"),
}


def make(release: Release, playground, names=None, table: dict | None = None) -> dict[str, bytes]:
    """The scenario files by name (all of them, or those in `names`), from the generic
    ones and `table` (a lab's SCENARIOS)."""
    known = {**GENERIC, **(table or {})}
    key = release.answer_keys[0]
    answer = next(c.source for c in release.cells if c.key == key)
    chosen = names or list(known)
    return {name: known[name][0](playground, key, answer) for name in chosen}
