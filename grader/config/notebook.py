"""Reading notebooks: parse, validate leniently, cap the size.

A submission that cannot be read is not an error of the grader's: `read_submission`
raises `Unreadable`, whose message becomes the `ungradable` scorecard's reason.
"""

from __future__ import annotations

import json
import os

import nbformat
from nbformat.v4.rwbase import rejoin_lines

from grader.faults import Unreadable

MAX_NOTEBOOK_BYTES = 100 * 1024 * 1024


def read_submission(path: str, max_bytes: int = MAX_NOTEBOOK_BYTES) -> nbformat.NotebookNode:
    """Parse a submitted .ipynb; raise `Unreadable` with a student-facing reason."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise Unreadable(too_large(size, max_bytes))
    with open(path, "rb") as handle:
        raw = handle.read()
    kind = _kind_of(raw)
    if kind:
        raise Unreadable(f"the file is {kind}, not a notebook; submit the .ipynb file itself, downloaded with "
                         "File > Download > Download .ipynb")
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark, as some editors save it, is no part of the JSON
    except UnicodeDecodeError as error:
        raise Unreadable(
            f"the file is not UTF-8 text (byte {error.start}); a notebook is a UTF-8 JSON "
            "file: download it again with File > Download > Download .ipynb"
        ) from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise Unreadable("the file's JSON is nested too deeply to be a notebook") from None
    except ValueError as error:
        if text.lstrip().startswith(("{", "[")):
            raise Unreadable(f"the notebook's JSON is broken at line {getattr(error, 'lineno', '?')} (perhaps it was cut off "
                             "or edited by hand); download it again with File > Download > Download .ipynb") from None
        raise Unreadable(
            "the file is not a notebook (a notebook is JSON, and this is plain text); submit the .ipynb file "
            "itself, downloaded with File > Download > Download .ipynb"
        ) from None
    return from_json(data)


# What students upload instead of a notebook, by the bytes it begins with.
KINDS = ((b"%PDF", "a PDF"), (b"PK\x03\x04", "a zip archive (or a Word or Excel file)"), (b"\x89PNG", "a PNG picture"),
         (b"\xff\xd8\xff", "a JPEG picture"), (b"{\\rtf", "an RTF document"), (b"\xd0\xcf\x11\xe0", "an old Word or Excel file"))


def _kind_of(raw: bytes) -> str:
    """What the file is, if its first bytes say it is a kind of file students upload by mistake ("" otherwise)."""
    head = raw[:16].lstrip()
    found = next((kind for magic, kind in KINDS if raw.startswith(magic)), "")
    if not found and head.lower().startswith((b"<!doctype html", b"<html")):
        found = "a web page (HTML: perhaps the notebook printed or saved as a page)"
    return found


def too_large(size: int, max_bytes: int) -> str:
    """Why a file of `size` bytes is refused, and what to do."""
    return (f"the file is {size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit; "
            "clear the outputs (Edit > Clear all outputs) and submit again")


def from_json(data) -> nbformat.NotebookNode:
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise Unreadable("the file is JSON but not a notebook (it has no list of cells)")
    if data.get("nbformat") != 4:
        raise Unreadable(f"notebook format {data.get('nbformat')!r} is not supported; save it with Jupyter or Colab (format 4)")
    for index, cell in enumerate(data["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise Unreadable(f"cell {index + 1} is not a notebook cell")
        source = cell.get("source", "")
        if not (isinstance(source, str) or (isinstance(source, list) and all(isinstance(s, str) for s in source))):
            raise Unreadable(f"cell {index + 1} has a source that is not text")
    # Validation is advisory: Colab writes files that differ from the schema in harmless
    # ways, and the grader reads only cell types, sources and ids. Multi-line fields
    # stored as lists of lines are joined, as nbformat's own reader does.
    return rejoin_lines(nbformat.from_dict(data))


def read_trusted(path: str) -> nbformat.NotebookNode:
    """Read the instructor's own notebook, strictly."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    return notebook
