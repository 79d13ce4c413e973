"""The service under test: the real API (uvicorn) and one Celery worker, as `make run` starts them.

Each child leads its own process group and dies with the bench (PR_SET_PDEATHSIG), so that a
Ctrl-C, an exception or a kill of the bench never leaves a worker behind on the shared Redis.
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

    @property
    def pid(self) -> int:
        return self.popen.pid

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

    def spawn(self, name: str, command: list[str]) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as handle:
            popen = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        child = Child(name, popen, log)
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

    def start_worker(self, queue: str) -> Child:
        # The command of `make run` (cli/devrun.py), on the bench's own queue.
        command = [sys.executable, "-m", "celery", "-A", "worker.app:celery_app", "worker"]
        name = f"bench-{os.getpid()}@%h"
        child = self.spawn(
            "worker", [*command, "--pool=solo", "-Q", queue, "-n", name, "-l", "INFO"]
        )
        deadline = time.monotonic() + START_SECONDS
        while "ready." not in child.log.read_text(errors="replace"):
            child.check_alive()
            if time.monotonic() > deadline:
                raise ServiceError(f"the worker was not ready within {START_SECONDS} s")
            time.sleep(0.1)
        return child

    def stop(self) -> None:
        running = [c for c in self.children if c.popen.poll() is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in running:
            try:
                child.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.popen.wait()
        self.children.clear()
