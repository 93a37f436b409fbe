"""Content hashes of files, shared by everything that names data by its content."""

import hashlib


def file_sha256(path: str, digest=None) -> str:
    """The sha256 of a file's bytes (fed into `digest` if one is given)."""
    digest = digest or hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
