"""A worker runs as batch work below the API's priority (worker/priority.py), in every thread,
and touches its session's priority only where the session is its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests import processes

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir() or not hasattr(os, "SCHED_BATCH"),
    reason="Linux: threads' niceness and SCHED_BATCH as /proc shows them",
)
BATCH = 3  # SCHED_BATCH, as /proc/<pid>/stat numbers it


def _threads(pid: int) -> list[tuple[int, int]]:
    """(nice, policy) of each of the process's threads."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        # Fields after the command's closing parenthesis: nice is the 19th field, policy the 41st.
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        found.append((int(fields[16]), int(fields[38])))
    return found


def _autogroup(pid: int | str) -> str:
    return Path(f"/proc/{pid}/autogroup").read_text().strip()


def test_a_worker_runs_every_thread_as_batch_work_below_normal(
    database_url: str, tmp_path: Path
) -> None:
    env = processes.service_env(BULKREDEEM_QUEUE_NAME=f"priority-{uuid.uuid4().hex[:8]}")
    worker = processes.worker(env, env["BULKREDEEM_QUEUE_NAME"], tmp_path / "worker.log")
    try:
        threads = _threads(worker.pid)
        nice = max(10, os.getpriority(os.PRIO_PROCESS, 0))  # below the tests' own, if lower
        assert threads and all(state == (nice, BATCH) for state in threads), threads
        if Path("/proc/self/autogroup").is_file():
            # Started in the test's own session: the session's priority is not the worker's.
            assert _autogroup(worker.pid) == _autogroup("self")
    finally:
        worker.stop()


def _run(code: str, *, nice: int = 0, own_session: bool = False) -> str:
    """`code` after worker.priority.lower_priority(10), in a child at `nice`; its output."""
    script = (
        "import os\n"
        f"os.nice({nice})\n"
        "from worker.priority import lower_priority\n"
        "lower_priority(10)\n" + code
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        capture_output=True,
        text=True,
        start_new_session=own_session,
    ).stdout


@pytest.mark.skipif(not Path("/proc/self/autogroup").is_file(), reason="no autogroups here")
def test_a_worker_leading_its_own_session_lowers_the_sessions_priority_too() -> None:
    shown = _run("print(open('/proc/self/autogroup').read())", own_session=True)
    assert shown.strip().endswith("nice 10")


def test_lowering_never_raises_a_priority_already_lower() -> None:
    shown = _run("print(os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0))", nice=15)
    assert shown.split() == [str(min(19, os.getpriority(os.PRIO_PROCESS, 0) + 15)), str(BATCH)]


def test_a_worker_nice_of_zero_leaves_the_worker_as_it_was(
    database_url: str, tmp_path: Path
) -> None:
    env = processes.service_env(
        BULKREDEEM_QUEUE_NAME=f"priority-{uuid.uuid4().hex[:8]}", BULKREDEEM_WORKER_NICE="0"
    )
    worker = processes.worker(env, env["BULKREDEEM_QUEUE_NAME"], tmp_path / "worker.log")
    try:
        assert set(_threads(worker.pid)) == {_threads(os.getpid())[0]}  # as the tests run
    finally:
        worker.stop()
