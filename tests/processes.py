"""Real processes for the tests that kill them: Celery workers, beat, a Redis of their own.

They are cli/supervisor.py's children: each in a process group of its own, in the tests'
session, and dying with the tests (PR_SET_PDEATHSIG) when they are killed outright, so that no
worker outlives them on the shared Redis.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cli.embedded.common import free_port
from cli.supervisor import (
    BEAT_READY,
    WORKER_READY,
    Child,
    RedisServer,
    api_command,
    beat_command,
    worker_command,
)

__all__ = ["Process", "RedisServer", "api", "beat", "free_port", "service_env", "worker"]

# What a failing test's report shows of a process's log (conftest.py): the last records the
# process wrote during that test, where a 500's or a failed task's cause is, and of each
# traceback its end, where the exception that was raised last is (the whole log is named).
LOG_TAIL_RECORDS = 40
TRACEBACK_LINES = 25
# Enough for LOG_TAIL_RECORDS records with tracebacks; a log is never read whole into a report.
_LOG_TAIL_BYTES = 64 << 10


def _readable(line: str) -> str:
    """A JSON log line (core/logs.py) as a person reads it: its fields on one line, then its
    traceback on lines of their own, not escaped into one string. Other lines as they are."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "message" not in record:
        return line
    head = " ".join(str(record.pop(key, "")) for key in ("time", "level", "logger"))
    message = str(record.pop("message")).rstrip("\n")
    traces = [str(record.pop(key)) for key in ("exception", "stack") if key in record]
    fields = "".join(f" {key}={value}" for key, value in record.items())
    return "\n".join([f"{head}: {message}{fields}", *map(_end_of, traces)])


def _end_of(trace: str) -> str:
    lines = trace.splitlines()
    if len(lines) <= TRACEBACK_LINES:
        return trace
    left_out = len(lines) - TRACEBACK_LINES
    return "\n".join([f"  ... {left_out} lines of traceback ...", *lines[-TRACEBACK_LINES:]])


class Process(Child):
    """A child process with its log in a file; `wait_for` reads the log."""

    # Every process this test session started, running or not, in order: a failing test's
    # report shows the end of what each of them logged during the test.
    started: list[Process] = []

    def __init__(
        self, args: list[str], env: dict[str, str], log: Path, name: str | None = None
    ) -> None:
        super().__init__(name or log.stem, args, log, env, own_session=False)
        Process.started.append(self)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_size(self) -> int:
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def logged_since(self, offset: int) -> str:
        """The end of what the process logged after its log was `offset` bytes long: its
        last LOG_TAIL_RECORDS records, or "" when it wrote nothing since."""
        size = self.log_size()
        if size < offset:  # the log was started again: all of it is new
            offset = 0
        if size == offset:
            return ""
        start = max(offset, size - _LOG_TAIL_BYTES)
        with self.log.open("rb") as handle:
            handle.seek(start)
            lines = handle.read().decode(errors="replace").splitlines()
        if start > offset:
            lines = lines[1:]  # begun mid-line
        return "\n".join(_readable(line) for line in lines[-LOG_TAIL_RECORDS:])

    def tail(self, lines: int = LOG_TAIL_RECORDS) -> str:
        """The end of this start's log, its JSON records as a person reads them."""
        return "\n".join(_readable(line) for line in super().tail(lines).splitlines())

    def wait_for(self, marker: str, timeout: float = 60) -> None:
        self.wait_for_line(marker, timeout)

    def stop(self, grace: float = 20) -> None:
        super().stop(grace)


def worker(env: dict[str, str], queue: str, log: Path) -> Process:
    # No heartbeats, mingle or gossip: the tests' workers need not know of each other.
    quiet = ["--without-heartbeat", "--without-mingle", "--without-gossip"]
    process = Process(worker_command(queue, *quiet), env, log, name="worker")
    process.wait_for(WORKER_READY)
    return process


def api(env: dict[str, str], log: Path) -> tuple[Process, str]:
    """The API in a uvicorn process of its own on a free loopback port; it and its URL."""
    port = free_port()
    process = Process(api_command(port, "--no-access-log"), env, log, name="API")
    url = f"http://127.0.0.1:{port}"
    process.wait_for_http(f"{url}/openapi.json", timeout=60)
    return process, url


def beat(env: dict[str, str], directory: Path, log: Path) -> Process:
    schedule = directory / f"beat-{time.monotonic_ns()}"
    process = Process(beat_command(schedule), env, log, name="beat")
    process.wait_for(BEAT_READY)
    return process


def service_env(**overrides: str) -> dict[str, str]:
    """The test session's environment (database, Redis, storage) with settings overridden."""
    env = os.environ.copy()
    env.update(overrides)
    return env
