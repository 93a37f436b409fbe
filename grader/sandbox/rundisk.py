"""A run's own file systems, mounted by the grader under the run's folder.

- **The disk**: one tmpfs per run, capped in bytes and in inodes, holding the run's
  `/scratch` and `/tmp`. A run that writes without end fills it, not the host; it is
  memory, so it also counts against the run's memory cgroup; unmounting it frees
  everything at once, however many files or however deep a tree the run made.
- **Views**: what the run reads (the Python installation, its packages, the data, the
  pretrained weights) is mounted read-only through an overlay whose options name
  `/proc/self/fd/N`, not the host path. A plain bind mount would show the host path in
  the sandbox's `/proc/self/mountinfo` (its "root" field is the folder's path within
  its file system); an overlay's root is its own `/`.

Both need the right to mount (root, as the grader runs here and in CI). Without it,
`problem()` says why and the sandbox falls back to plain folders and bind mounts.
Mounts live in the grader's mount namespace, so that the grader can read the run's
files after the run's own namespaces are gone; `release()` detaches every mount under
a run's folder, and never raises.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import tempfile

log = logging.getLogger(__name__)

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC = 1, 2, 4, 4096, 16384
_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, kind: str, flags: int, options: str) -> None:
    if _libc.mount(source.encode(), target.encode(), kind.encode(), flags, options.encode()) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"cannot mount {kind} on {target}: {os.strerror(number)}")


def mount_disk(target: str, size: int, inodes: int) -> None:
    """A tmpfs of at most `size` bytes and `inodes` files and folders at `target`."""
    os.makedirs(target, exist_ok=True)
    _mount("tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size},nr_inodes={inodes},mode=0755")


def bind(source: str, target: str) -> None:
    """`source` and every mount below it, also at `target` (a folder that exists)."""
    _mount(source, target, "none", _MS_BIND | _MS_REC, "")


def mount_view(source: str, target: str, empty: str) -> None:
    """`source` at `target`, read-only, through an overlay that names no host path
    (`empty` is an empty folder: an overlay without an upper layer needs two lower ones)."""
    os.makedirs(target, exist_ok=True)
    fds = [os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for path in (source, empty)]
    try:
        lower = ":".join(f"/proc/self/fd/{fd}" for fd in fds)
        _mount("overlay", target, "overlay", _MS_RDONLY | _MS_NOSUID | _MS_NODEV, f"lowerdir={lower}")
    finally:
        for fd in fds:
            os.close(fd)


def mounts_under(folder: str) -> list[str]:
    """Mount points at or below `folder` in the grader's mount table, deepest first."""
    folder = os.path.realpath(folder)
    found = []
    with open("/proc/self/mountinfo", "rb") as handle:
        for line in handle:
            point = _unescape(line.split(b" ")[4].decode("utf-8", errors="surrogateescape"))
            if point == folder or point.startswith(folder + "/"):
                found.append(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def release(folder: str) -> bool:
    """Detach every mount under `folder`; True if none is left. Never raises."""
    try:
        points = mounts_under(folder)
    except Exception:  # noqa: BLE001 - cleanup must never stop a batch
        log.exception("cannot read the mount table to release %s", folder)
        return False
    for point in points:
        if _libc.umount2(point.encode(), _MNT_DETACH) != 0:
            log.warning("cannot unmount %s: %s", point, os.strerror(ctypes.get_errno()))
    try:
        return not mounts_under(folder)
    except Exception:  # noqa: BLE001
        return False


# Within this of its cap, a disk counts as full: a run that hit the cap may free a few
# files as it dies (its interpreter's exit handlers), and no honest run comes this close.
FULL_MARGIN_BYTES = 2**20
FULL_MARGIN_FILES = 64


def is_full(path: str) -> bool:
    """Whether the file system at `path` is (within a small margin) out of space or inodes."""
    try:
        info = os.statvfs(path)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < FULL_MARGIN_BYTES or info.f_favail < FULL_MARGIN_FILES


@functools.cache
def problem() -> str | None:
    """None if the grader can mount a run's disk and views here, else why not."""
    folder = tempfile.mkdtemp(prefix="grader-mount-probe-")
    try:
        mount_disk(os.path.join(folder, "disk"), 1 << 20, 16)
        os.mkdir(os.path.join(folder, "empty"))
        mount_view(os.path.join(folder, "disk"), os.path.join(folder, "view"), os.path.join(folder, "empty"))
        return None
    except OSError as error:
        return str(error)
    finally:
        release(folder)
        for name in ("view", "disk", "empty", ""):
            try:
                os.rmdir(os.path.join(folder, name))
            except OSError:
                pass
