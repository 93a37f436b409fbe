"""Writing results so that a crash never leaves half a file behind, or half a change in a database."""

from __future__ import annotations

import os
import sqlite3
import tempfile

STATE = ".grader"  # the output folder's own folder: staged weights, the lab's own pair, class facts, the run's facts


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str, text: str | bytes, mode: int | None = None) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it (`mode`: its
    permissions; default, as any file the user writes)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        os.fchmod(handle, mode if mode is not None else 0o666 & ~_umask())  # mkstemp's are private
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


class transaction:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on an exception: one writer at a time, and all of
    a change or none of it. (A connection opened with isolation_level=None begins no
    transaction of its own: `with connection:` alone would commit each statement apart.)"""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, *_) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
