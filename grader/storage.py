"""Writing results so that a crash never leaves half a file behind."""

from __future__ import annotations

import os
import tempfile

STATE = ".grader"  # the output folder's own folder: staged weights, the lab's own pair, class facts, the run's facts


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str, text: str | bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        os.fchmod(handle, 0o666 & ~_umask())  # as any file the user writes (mkstemp's are private)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
