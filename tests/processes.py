"""Real processes for the tests that kill them: Celery workers, beat, a Redis of their own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from cli.devservices import free_port, redis_binary

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


class Process:
    """A child process with its log in a file; `wait_for` reads the log."""

    # Every process this test session started, running or not, in order: a failing test's
    # report shows the end of what each of them logged during the test.
    started: list[Process] = []

    def __init__(
        self, args: list[str], env: dict[str, str], log: Path, name: str | None = None
    ) -> None:
        self.log = log
        self.name = name or log.stem
        self._handle = log.open("ab")
        self.popen = subprocess.Popen(args, stdout=self._handle, stderr=subprocess.STDOUT, env=env)
        Process.started.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

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

    def wait_for(self, marker: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.text():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.log.name} exited:\n{self.logged_since(0)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.log.name}: no {marker!r} in {timeout}s")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no clean-up, no message given back, as in a crash."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._handle.close()


def worker(env: dict[str, str], queue: str, log: Path) -> Process:
    process = Process(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.app:celery_app",
            "worker",
            "--pool=solo",
            "-Q",
            queue,
            "-l",
            "info",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ],
        env,
        log,
        name="worker",
    )
    process.wait_for("ready.")
    return process


def api(env: dict[str, str], log: Path) -> tuple[Process, str]:
    """The API in a uvicorn process of its own on a free loopback port; it and its URL."""
    port = free_port()
    process = Process(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        env,
        log,
        name="API",
    )
    process.wait_for("Application startup complete", timeout=60)
    return process, f"http://127.0.0.1:{port}"


def beat(env: dict[str, str], directory: Path, log: Path) -> Process:
    schedule = directory / f"beat-{time.monotonic_ns()}"
    process = Process(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.app:celery_app",
            "beat",
            "--schedule",
            str(schedule),
            "-l",
            "info",
        ],
        env,
        log,
        name="beat",
    )
    process.wait_for("beat: Starting")
    return process


class RedisServer:
    """A redis-server of the test's own, which it may flush, stop and start again."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the test's redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def service_env(**overrides: str) -> dict[str, str]:
    """The test session's environment (database, Redis, storage) with settings overridden."""
    env = os.environ.copy()
    env.update(overrides)
    return env
