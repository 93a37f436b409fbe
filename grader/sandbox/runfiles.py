"""Files a run left behind, handled as the sandbox could have bent them.

Everything under a run's scratch folder was writable by the student's code: any name
may be a link (to a host file, or a loop), a named pipe whose `open()` blocks forever,
a huge file, or a tree too deep for recursion. So a file is opened only through
directory descriptors, each path component with `O_NOFOLLOW` (a link anywhere in the
path is refused, not followed) and `O_NONBLOCK` (a pipe opens at once, then is refused
by `fstat` as not a regular file), and its size is checked before anything is read.
Removal walks the tree with descriptors and a list of names, never recursion, and
never raises: a run's leftovers must not stop a batch.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

from grader.faults import Refused  # a run file that is not read: a link, not a regular file, or over its size cap

log = logging.getLogger(__name__)

# The caps on what the grader reads back from a run: its JSON reports and its weights.
MAX_JSON_BYTES = 8 * 2**20
MAX_WEIGHTS_BYTES = 256 * 2**20
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _open_parts(root: str, relative: str) -> tuple[int, str]:
    """(descriptor of the folder holding `relative`, last name), no link followed below `root`."""
    *folders, name = relative.split("/")
    fd = os.open(root, _DIRECTORY)
    try:
        for depth, folder in enumerate(folders):
            try:
                inner = os.open(folder, _DIRECTORY, dir_fd=fd)
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Refused.file("/".join(folders[: depth + 1]), "is a link or not a folder") from None
                raise
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd, name


def open_regular(root: str, relative: str, limit: int) -> int:
    """A read-only descriptor of `root/relative`, which must be a regular file of at most
    `limit` bytes reached without any link. FileNotFoundError if it does not exist."""
    folder, name = _open_parts(root, relative)
    try:
        try:
            fd = os.open(name, _FILE, dir_fd=folder)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise Refused.file(relative, "is a link") from None
            if error.errno == errno.ENXIO:  # a socket
                raise Refused.file(relative, "is not a regular file") from None
            raise
    finally:
        os.close(folder)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused.file(relative, "is not a regular file")
        if info.st_size > limit:
            raise Refused.file(relative, f"is larger than {_size(limit)}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read(root: str, relative: str, limit: int) -> bytes | None:
    """The bytes of a run file (see `open_regular`), or None if there is none."""
    try:
        fd = open_regular(root, relative, limit)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:  # it grew after the check
        raise Refused.file(relative, f"is larger than {_size(limit)}")
    return data


def copy(root: str, relative: str, limit: int, destination: str) -> bool:
    """Copy a run file (see `open_regular`) to `destination`, a new file only the grader
    writes; False if there is no such file."""
    try:
        source = open_regular(root, relative, limit)
    except FileNotFoundError:
        return False
    try:
        target = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except BaseException:  # something is there already: it is not this call's to remove
        os.close(source)
        raise
    try:
        copied = 0
        while chunk := os.read(source, min(1 << 20, limit + 1 - copied)):
            copied += len(chunk)
            if copied > limit:
                raise Refused.file(relative, f"is larger than {_size(limit)}")
            os.write(target, chunk)
    except BaseException:
        os.close(target)
        _unlink_quietly(destination)  # the file this call made, half written
        raise
    else:
        os.close(target)
    finally:
        os.close(source)
    return True


def tail(root: str, relative: str, size: int, limit: int = 1 << 40) -> str:
    """The last `size` bytes of a run file as text ("" if there is none or it is refused)."""
    try:
        fd = open_regular(root, relative, limit)
    except (OSError, Refused):
        return ""
    with os.fdopen(fd, "rb") as handle:
        handle.seek(max(0, os.fstat(handle.fileno()).st_size - size))
        return handle.read(size).decode("utf-8", errors="replace")


def _size(limit: int) -> str:
    return f"{limit / 2**20:g} MiB" if limit >= 2**20 else f"{limit} bytes"


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --- removal ---------------------------------------------------------------------------


def remove_tree(path: str) -> bool:
    """Delete the folder `path` and everything in it; True if it is gone.

    Never raises: every problem is logged and skipped. It does not recurse (a tree of
    any depth is fine), keeps two descriptors open at a time (the path may be longer
    than PATH_MAX), follows no link, and does not cross into another file system (a
    mount left under the folder is left alone, and so is the folder holding it)."""
    try:
        return _remove_tree(path)
    except Exception:  # noqa: BLE001 - cleanup must never stop a batch
        log.exception("could not remove %s", path)
        return False


def _remove_tree(path: str) -> bool:
    try:
        fd = os.open(path, _DIRECTORY)
    except FileNotFoundError:
        return True
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):  # a link or a file: remove just that
            os.unlink(path)
            return True
        raise
    top = os.fstat(fd)
    inside: list[tuple[str, tuple]] = []  # (name, identity) of each folder we are in, below `path`
    skipped: set[tuple] = set()  # folders that could not be emptied or removed: not tried again
    try:
        while True:
            child = _empty_files(fd, top.st_dev, skipped)
            if child is not None:
                name, identity = child
                try:
                    inner = os.open(name, _DIRECTORY, dir_fd=fd)
                except OSError as error:
                    log.warning("could not open %s: %s", _joined(path, inside, name), error)
                    skipped.add(identity)
                    continue
                os.close(fd)
                fd = inner
                inside.append(child)
                continue
            if not inside:
                break
            parent = os.open("..", _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = parent
            name, identity = inside.pop()
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError as error:
                log.warning("could not remove %s: %s", _joined(path, inside, name), error)
                skipped.add(identity)
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError as error:
        log.warning("could not remove %s: %s", path, error)
        return False
    return True


def _empty_files(fd: int, device: int, skipped: set) -> tuple[str, tuple] | None:
    """Unlink every non-folder in the folder `fd`; return (name, identity) of a subfolder
    still to empty (on the same file system, not skipped), or None when none is left."""
    with os.scandir(fd) as entries:
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
                identity = (info.st_dev, info.st_ino)
                if not stat.S_ISDIR(info.st_mode):
                    os.unlink(entry.name, dir_fd=fd)
                elif info.st_dev == device and identity not in skipped:
                    return entry.name, identity
            except FileNotFoundError:
                continue
            except OSError as error:
                log.warning("could not remove %s: %s", entry.name, error)
    return None


def _joined(path: str, inside: list, name: str) -> str:
    return "/".join([path, *(folder for folder, _ in inside), name])[-300:]
