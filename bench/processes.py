"""The service under test: the real API (uvicorn), Celery workers and beat, as `make run` starts
them, and (for the chaos run) a redis-server of its own.

Each child leads its own process group and dies with the bench (PR_SET_PDEATHSIG), so that a
Ctrl-C, an exception or a kill of the bench never leaves a worker behind on the shared Redis.
That signal comes when the *thread* that started the child ends, not the process: start
children from the main thread (or one that lives as long as they should).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
import redis

PROJECT_ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 60.0
STOP_SECONDS = 15.0


class ServiceError(RuntimeError):
    """A child process did not start or died; the message carries its log's tail."""


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            pr_set_pdeathsig = 1
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    log_start: int = 0  # where this start's lines begin in the log (a restart appends)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the child's whole process group (whatever it started too)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no clean-up, nothing given back."""
        if self.alive:
            self.signal(signal.SIGKILL)
        self.popen.wait()

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise ServiceError(
                f"the {self.name} exited with code {code}; last lines of {self.log}:\n"
                + _tail(self.log)
            )


class ServiceProcesses:
    """Starts the children and stops every one of them on the way out, whatever happened."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = {**env, "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.children: list[Child] = []

    def __enter__(self) -> ServiceProcesses:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Child:
        """Start `command` logging to `<name>.log`; a child started again under the same name
        (a restart) appends to the log, after a line that says so."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        again = any(child.log == log for child in self.children)
        with log.open("ab" if again else "wb") as handle:
            if again:
                handle.write(f"\n--- {name} started again at {time.time():.3f} ---\n".encode())
                handle.flush()
            log_start = handle.tell()
            popen = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        child = Child(name, popen, log, log_start)
        self.children.append(child)
        return child

    def start_api(self, port: int) -> Child:
        command = [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1"]
        child = self.spawn("api", [*command, "--port", str(port)])
        deadline = time.monotonic() + START_SECONDS
        with httpx.Client(timeout=1.0) as client:
            while True:
                child.check_alive()
                try:
                    client.get(f"http://127.0.0.1:{port}/openapi.json")
                    return child
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        message = f"the API did not answer within {START_SECONDS} s"
                        raise ServiceError(message) from None
                    time.sleep(0.1)

    def start_worker(
        self,
        queue: str,
        name: str = "worker",
        env: dict[str, str] | None = None,
        *,
        wait: bool = True,
    ) -> Child:
        """A worker as `make run` starts it (cli/devrun.py), on the bench's own queue; `name`
        tells several apart (their logs, their Celery node names). `wait=False` returns at
        once, before it is ready (a restart that must not hold up the caller)."""
        command = [sys.executable, "-m", "celery", "-A", "worker.app:celery_app", "worker"]
        node = f"bench-{os.getpid()}-{name}-{time.monotonic_ns()}@%h"
        child = self.spawn(
            name, [*command, "--pool=solo", "-Q", queue, "-n", node, "-l", "INFO"], env
        )
        if wait:
            _wait_for_line(child, "ready.", f"the {name} was not ready")
        return child

    def start_beat(self, schedule_dir: Path, name: str = "beat", *, wait: bool = True) -> Child:
        """Beat as `make run` starts it; a schedule file of its own at every start, so that
        one left half-written by a killed beat is never read again."""
        schedule_dir.mkdir(parents=True, exist_ok=True)
        schedule = schedule_dir / f"celerybeat-schedule-{time.monotonic_ns()}"
        command = [sys.executable, "-m", "celery", "-A", "worker.app:celery_app", "beat"]
        child = self.spawn(name, [*command, "--schedule", str(schedule), "-l", "INFO"])
        if wait:
            _wait_for_line(child, "beat: Starting", f"the {name} did not start")
        return child

    def stop(self) -> None:
        running = [c for c in self.children if c.popen.poll() is None]
        for child in running:
            # A child the chaos run stopped would never see the SIGTERM.
            child.signal(signal.SIGCONT)
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in running:
            try:
                child.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.popen.wait()
        self.children.clear()


def _wait_for_line(child: Child, marker: str, what: str) -> None:
    """Until `marker` is in the child's log (its lines since this start, for a restart)."""
    deadline = time.monotonic() + START_SECONDS
    while True:
        with child.log.open("rb") as handle:
            handle.seek(child.log_start)
            if marker.encode() in handle.read():
                return
        child.check_alive()
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} within {START_SECONDS} s; see {child.log}")
        time.sleep(0.1)


class RedisServer:
    """A redis-server of the bench's own on a fixed loopback port, that it may flush, kill and
    start again empty (no snapshot, no append-only file: what a lost Redis leaves)."""

    def __init__(self, directory: Path) -> None:
        from cli.devservices import free_port, redis_binary

        self.directory = directory
        self.binary = redis_binary()
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + START_SECONDS
        while True:
            with contextlib.suppress(redis.RedisError):
                if self.client().ping():
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(
                    f"redis-server on port {self.port} did not start:\n"
                    + _tail(self.directory / "redis.log")
                )
            time.sleep(0.05)

    def flushall(self) -> None:
        self.client().flushall()

    def kill(self) -> None:
        """SIGKILL: what Redis held is gone, and every client's connection with it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
