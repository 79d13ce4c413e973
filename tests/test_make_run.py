"""`bulkredeem dev` (what `make run` runs), end to end, as a person would use it.

Start it, wait for the commands it prints, paste them into a shell, watch both samples' jobs
complete, then Ctrl-C it and check that nothing it started is left. Runs against the same
Postgres and Redis as the other tests (a database and a queue of its own), in a scratch working
directory so that its .data/ is the test's.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from tests.services import find_postgres, find_redis

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("curl") is None, reason="the printed commands use curl"),
]

BANNER_SECONDS = 120.0
JOB_SECONDS = 60.0
STOP_SECONDS = 40.0
TERMINAL = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"}


def _on_database(url: str, dbname: str) -> str:
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    return urlunsplit(urlsplit(plain)._replace(path="/" + dbname))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def scratch_database() -> Iterator[str]:
    server = find_postgres()
    name = f"bulkredeem_makerun_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = _on_database(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _on_database(server, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class DevRun:
    process: subprocess.Popen[str]
    port: int
    workdir: Path
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def read_until(self, predicate: str, seconds: float) -> list[str]:
        """Lines printed so far, once one starts with `predicate`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if line.startswith(predicate):
                return self.seen
        raise AssertionError(f"no line starting {predicate!r}; printed:\n{self.report()}")

    def report(self) -> str:
        logs = self.workdir / ".data" / "logs"
        parts = ["".join(self.seen)]
        for log in sorted(logs.glob("*.log")) if logs.exists() else []:
            parts.append(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


def _command() -> list[str]:
    script = Path(sys.executable).with_name("bulkredeem")
    return [str(script), "dev"] if script.exists() else [sys.executable, "-m", "cli.main", "dev"]


@pytest.fixture
def dev_run(scratch_database: str, tmp_path: Path) -> Iterator[DevRun]:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": scratch_database,
        "REDIS_URL": find_redis(),
        "STORAGE_URL": (tmp_path / "files").as_uri(),
        "BULKREDEEM_PORT": str(port),
        # Its own queue: no other test's worker takes its jobs, and its worker takes no others.
        "BULKREDEEM_QUEUE_NAME": f"bulkredeem-makerun-{uuid.uuid4().hex[:8]}",
    }
    env.pop("DATABASE_ADMIN_URL", None)
    process = subprocess.Popen(
        _command(),
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    run = DevRun(process=process, port=port, workdir=tmp_path)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            run.lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield run
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _shell(script: str, cwd: Path) -> str:
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{script}\n-> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _wait_for_job(poll_line: str, job_id: str, cwd: Path) -> dict[str, object]:
    deadline = time.monotonic() + JOB_SECONDS
    while True:
        job: dict[str, object] = json.loads(_shell(f"JOB={job_id}\n{poll_line}", cwd))
        if job["status"] in TERMINAL or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


def _processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line contains `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(int(cmdline.parent.name))
    return found


def test_make_run_prints_commands_that_redeem_both_samples_and_ctrl_c_stops_all(
    dev_run: DevRun,
) -> None:
    printed = dev_run.read_until("Stop everything with Ctrl-C", BANNER_SECONDS)
    upload_and_keep_job = next(line for line in printed if line.startswith("JOB=$(curl "))
    poll = next(line for line in printed if line.startswith("curl ") and "/v1/jobs/$JOB " in line)
    upload_sample1 = next(
        line for line in printed if line.startswith("curl ") and "sample1.csv" in line
    )
    assert f"http://127.0.0.1:{dev_run.port}/coupon/api/v1/upload/redeemFile/" in upload_sample1
    assert "Authorization: Bearer br_" in upload_sample1

    # Sample 2, the way the banner says: upload, keep the job id, poll.
    job2_id = _shell(f'{upload_and_keep_job.strip()}\necho "$JOB"', dev_run.workdir).split()[-1]
    job2 = _wait_for_job(poll.strip(), job2_id, dev_run.workdir)
    # Sample 1: its upload answer carries the job id.
    answer = json.loads(_shell(upload_sample1.strip(), dev_run.workdir))
    job1_id = str(answer["result"]["redeemUploadJobStatuses"][0]["jobId"])
    job1 = _wait_for_job(poll.strip(), job1_id, dev_run.workdir)

    for job in (job1, job2):
        assert job["status"] == "COMPLETED", f"{job}\n{dev_run.report()}"
        progress = job["progress"]
        assert isinstance(progress, dict)
        assert (progress["rowsSucceeded"], progress["rowsFailed"]) == (1, 0), job

    # Ctrl-C: everything it started goes, and it says so.
    worker_name = f"dev-{dev_run.process.pid}@"
    assert _processes_mentioning(worker_name), "the worker should be running before Ctrl-C"
    dev_run.process.send_signal(signal.SIGINT)
    assert dev_run.process.wait(timeout=STOP_SECONDS) == 0, dev_run.report()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{dev_run.port}/openapi.json", timeout=2)
    assert _processes_mentioning(worker_name) == []
    assert _processes_mentioning(str(dev_run.workdir / ".data" / "celerybeat-schedule")) == []


def test_make_run_stops_the_rest_and_names_the_child_that_died(dev_run: DevRun) -> None:
    dev_run.read_until("Stop everything with Ctrl-C", BANNER_SECONDS)
    worker_name = f"dev-{dev_run.process.pid}@"
    worker_pids = _processes_mentioning(worker_name)
    assert worker_pids, dev_run.report()

    for pid in worker_pids:
        os.kill(pid, signal.SIGKILL)

    assert dev_run.process.wait(timeout=STOP_SECONDS) == 1
    dev_run.read_until("stopping", 5)
    assert any("the worker exited" in line for line in dev_run.seen), dev_run.report()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{dev_run.port}/openapi.json", timeout=2)
    assert _processes_mentioning(str(dev_run.workdir / ".data" / "celerybeat-schedule")) == []
