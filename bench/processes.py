"""The service under test: the real API (uvicorn), Celery workers and beat, as `make run` starts
them, and (for the chaos run) a redis-server of its own.

The children are cli/supervisor.py's: each leads its own process group and dies with the bench
(PR_SET_PDEATHSIG), so that a Ctrl-C, an exception or a kill of the bench never leaves a worker
behind on the shared Redis. That signal comes when the *thread* that started the child ends,
not the process: start children from the main thread (or one that lives as long as they should).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cli.supervisor import (
    BEAT_READY,
    PROJECT_ROOT,
    START_SECONDS,
    STOP_SECONDS,
    WORKER_READY,
    Child,
    RedisServer,
    api_command,
    beat_command,
    stop_all,
    worker_command,
)
from cli.supervisor import ChildFailed as ServiceError

__all__ = ["PROJECT_ROOT", "Child", "RedisServer", "ServiceError", "ServiceProcesses"]


class ServiceProcesses:
    """Starts the children and stops every one of them on the way out, whatever happened."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.children: list[Child] = []

    def __enter__(self) -> ServiceProcesses:
        return self

    def __exit__(self, *_: object) -> None:  # whatever happened: stop them all
        self.stop()

    def spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Child:
        """Start `command` logging to `<name>.log`; a child started again under the same name
        (a restart) appends to the log, after a line that says so."""
        log = self.log_dir / f"{name}.log"
        again = any(child.log == log for child in self.children)
        child = Child(
            name,
            command,
            log,
            {**self.env, **(env or {})},
            cwd=PROJECT_ROOT,
            fresh_log=not again,
            header=f"\n--- {name} started again at {time.time():.3f} ---" if again else None,
        )
        self.children.append(child)
        return child

    def start_api(self, port: int) -> Child:
        child = self.spawn("api", api_command(port))
        child.wait_for_http(f"http://127.0.0.1:{port}/openapi.json", START_SECONDS)
        return child

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
        node = f"bench-{os.getpid()}-{name}-{time.monotonic_ns()}@%h"
        child = self.spawn(name, worker_command(queue, "-n", node), env)
        if wait:
            child.wait_for_line(WORKER_READY, START_SECONDS)
        return child

    def start_beat(self, schedule_dir: Path, name: str = "beat", *, wait: bool = True) -> Child:
        """Beat as `make run` starts it; a schedule file of its own at every start, so that
        one left half-written by a killed beat is never read again."""
        schedule_dir.mkdir(parents=True, exist_ok=True)
        schedule = schedule_dir / f"celerybeat-schedule-{time.monotonic_ns()}"
        child = self.spawn(name, beat_command(schedule))
        if wait:
            child.wait_for_line(BEAT_READY, START_SECONDS)
        return child

    def stop(self) -> None:
        stop_all(self.children, STOP_SECONDS)
        self.children.clear()
