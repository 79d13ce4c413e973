"""Real processes for the tests that kill them: Celery workers, beat, a Redis of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from cli.devservices import free_port, redis_binary


class Process:
    """A child process with its log in a file; `wait_for` reads the log."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._handle = log.open("ab")
        self.popen = subprocess.Popen(args, stdout=self._handle, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, marker: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.text():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.log.name} exited:\n{self.text()[-3000:]}")
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
