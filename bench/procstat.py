"""What /proc (Linux) says about the service's processes: resident memory and CPU time.

VmHWM is the kernel's own high-water mark of a process's resident set: read at the end, it is
the peak over the process's whole life, with nothing missed between samples. A process tree
(the process and its descendants) is summed; uvicorn without --workers and a solo Celery worker
are one process each, so the sum is exactly that process's peak. RssSampler adds a peak over a
window (VmHWM only ever grows, so it cannot tell what one phase alone needed). CPU time (user +
system) tells how much of a phase a process spent computing rather than waiting.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(p) for p in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return found


def tree(pid: int) -> list[int]:
    """The process and its descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(_children(current))
    return pids


def peak_rss_mib(pid: int) -> float:
    """VmHWM of the process tree, in MiB."""
    return sum(_status_kib(p, "VmHWM") for p in tree(pid)) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process tree so far, in seconds."""
    ticks = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """VmRSS of the process tree now, in MiB."""
    return sum(_status_kib(p, "VmRSS") for p in tree(pid)) / 1024


class RssSampler:
    """Samples the resident set of some process trees every `interval` seconds."""

    def __init__(self, pids: dict[str, int], interval: float = 0.1) -> None:
        self.pids = pids
        self.interval = interval
        self._peaks = dict.fromkeys(pids, 0.0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> None:
        with self._lock:
            for name, pid in self.pids.items():
                self._peaks[name] = max(self._peaks[name], rss_mib(pid))

    def take_peak(self, name: str) -> float:
        """The largest sample since the last call (or the start), in MiB; starts a new window."""
        self.sample()
        with self._lock:
            peak = self._peaks[name]
            self._peaks[name] = 0.0
        return peak
