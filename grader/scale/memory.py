"""A process's own peak memory, as the kernel keeps it for the process itself.

`resource.getrusage(RUSAGE_SELF).ru_maxrss` is not that: Linux keeps the largest of the
process's own peak and that of the program it replaced when it was started (a grader
started by a process holding gigabytes reports those gigabytes). The high-water mark in
/proc/self/status (VmHWM) is this program's alone, and can be restarted.
"""

from __future__ import annotations

import resource


def restart_peak() -> int | None:
    """Restart this process's high-water mark at what it holds now and return that (bytes);
    None where it cannot be restarted."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _status_bytes("VmRSS")
    except OSError:
        return None


def peak() -> int:
    """This process's peak resident size (bytes): since `restart_peak` was last called, else
    since it started; where /proc cannot say, what getrusage says."""
    try:
        return _status_bytes("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")
