"""Every process of a tree (a server, a batch: its workers, sandboxes, renderers), each
process's peak resident size as the kernel reports it (VmHWM), sampled every half second,
reported by role: what the benches print of memory."""

from __future__ import annotations

import os
import re
import statistics
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Peaks:
    """Every process of a tree, its peak resident size (VmHWM), sampled every half second."""

    def __init__(self, root: int, root_role: str = "server (the parent)"):
        self.root, self.root_role, self.seen = root, root_role, {}  # pid -> (role, peak bytes)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stop.is_set():
            parents = {}
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        with open(f"/proc/{pid}/stat") as handle:
                            parents[int(pid)] = int(handle.read().rsplit(")", 1)[1].split()[1])
                    except (OSError, IndexError, ValueError):
                        pass
            tree, grew = {self.root}, True
            while grew:
                grew = False
                for pid, parent in parents.items():
                    if parent in tree and pid not in tree:
                        tree.add(pid)
                        grew = True
            for pid in tree:
                try:
                    with open(f"/proc/{pid}/status") as handle:
                        peak = int(re.search(r"VmHWM:\s+(\d+)", handle.read()).group(1)) * 1024
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        command = handle.read().replace(b"\0", b" ").decode(errors="replace")
                except (OSError, AttributeError):
                    continue
                role = self.role(pid, command)
                self.seen[pid] = (role, max(peak, self.seen.get(pid, ("", 0))[1]))
            self.stop.wait(0.5)

    def role(self, pid: int, command: str) -> str:
        if pid == self.root:
            return self.root_role
        if "/runner/run.py" in command:
            return "sandbox: the student's run"
        if "bwrap" in command:
            return "sandbox: bubblewrap"
        if "multiprocessing" in command or "spawn" in command or "forkserver" in command:
            return "grading worker"
        words = command.split()
        script = next((w for w in words[1:] if not w.startswith("-")), "")
        return f"{os.path.basename(words[0]) if words else '?'} {os.path.relpath(script, ROOT) if script.startswith('/') else script}"[:60]

    def report(self) -> list[str]:
        self.stop.set()
        self.thread.join()
        by_role: dict[str, list[int]] = {}
        for role, peak in self.seen.values():
            by_role.setdefault(role, []).append(peak)
        return [f"{role}: {len(peaks)} process(es), peak {max(peaks) / 2**20:.0f} MiB" + (f" (median {statistics.median(peaks) / 2**20:.0f})" if len(peaks) > 1 else "")
                for role, peaks in sorted(by_role.items(), key=lambda item: -max(item[1]))]
