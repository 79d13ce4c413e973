"""A worker's CPU priority: below the API's, so that a job never starves the clients polling it.

On the bench's 2 cores a million-row job keeps both busy, and every poll then waits for a core
at each hand-off (uvicorn, Postgres, Redis, the client): with the worker at the API's own
priority polls had a p99 of 74-184 ms, below it 24-37 ms, and the job took no longer
(bench/README.md, 2026-12-02). The job yields only when the API wants a core, which is rarely.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)
TASKS = Path("/proc/self/task")
AUTOGROUP = Path("/proc/self/autogroup")


def lower_priority(nice: int) -> None:
    """Run this process as batch work `nice` steps below normal (0: leave it as it is).

    Linux keeps both the niceness and the scheduling policy per thread, so every thread of
    the process gets them (threads started later inherit them). SCHED_BATCH tells the
    scheduler the threads are CPU-bound, so they do not pre-empt a thread that wakes up. Where
    the process leads its own session, as `make run` and systemd start a worker, the kernel
    shares the CPU between sessions first (autogroups), and only a session's own niceness
    moves that share; a worker in a shell's session leaves it alone, as it belongs to others.
    Only ever lowers: raising a priority needs a privilege the worker should not have.
    """
    if nice <= 0:
        return
    threads = [int(t.name) for t in TASKS.iterdir()] if TASKS.is_dir() else [0]
    for thread in threads:
        try:
            if hasattr(os, "SCHED_BATCH"):
                os.sched_setscheduler(thread, os.SCHED_BATCH, os.sched_param(0))
            os.setpriority(
                os.PRIO_PROCESS, thread, max(nice, os.getpriority(os.PRIO_PROCESS, thread))
            )
        except OSError:  # a thread that has just ended
            log.debug("could not lower thread %s's priority", thread, exc_info=True)
    if os.getsid(0) == os.getpid() and AUTOGROUP.is_file():
        try:
            found = re.search(r"nice (-?\d+)", AUTOGROUP.read_text())
            if found is None or int(found.group(1)) < nice:
                AUTOGROUP.write_text(str(nice))
        except OSError:
            log.warning("could not lower the worker's session's priority", exc_info=True)
