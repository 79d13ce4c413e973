"""`bulkredeem dev` (what `make run` runs), end to end, as a person would use it.

Start it, paste every command it prints into a bash in another directory, in order, and check
what each shows: both samples' jobs complete, the second upload's report holds its 790 row, the
CLI reaches the service through the exported variables. Then Ctrl-C it, read what it says it
stopped, and check that nothing it started is left. Runs against the same Postgres and Redis as
the other tests (a database and a queue of its own), in a scratch working directory so that its
.data/ is the test's; tests/test_make_run_embedded.py runs it on the embedded services.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from tests.devrun_harness import (
    STOP_SECONDS,
    DevRun,
    Ran,
    dev_running,
    paste,
    pasted_lines,
    processes_mentioning,
)
from tests.services import find_postgres, find_redis

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("curl") is None, reason="the printed commands use curl"),
]

BANNER_SECONDS = 120.0


def _on_database(url: str, dbname: str) -> str:
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    return urlunsplit(urlsplit(plain)._replace(path="/" + dbname))


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


@pytest.fixture
def dev_run(scratch_database: str, tmp_path: Path) -> Iterator[DevRun]:
    env = {
        **os.environ,
        "DATABASE_URL": scratch_database,
        "REDIS_URL": find_redis(),
        "STORAGE_URL": (tmp_path / "files").as_uri(),
        # Its own queue: no other test's worker takes its jobs, and its worker takes no others.
        "BULKREDEEM_QUEUE_NAME": f"bulkredeem-makerun-{uuid.uuid4().hex[:8]}",
        # The local server is shared: a few connections are enough for these few requests.
        "BULKREDEEM_DB_POOL_SIZE": "2",
    }
    env.pop("DATABASE_ADMIN_URL", None)
    workdir = tmp_path / "project"
    workdir.mkdir()
    with dev_running(env, workdir) as run:
        yield run


def _ran(outputs: list[Ran], *fragments: str) -> Ran:
    """The one pasted command that contains every fragment."""
    found = [ran for ran in outputs if all(fragment in ran.command for fragment in fragments)]
    assert len(found) == 1, f"{fragments}: {[ran.command for ran in found]}"
    return found[0]


def _echoed_job(ran: Ran) -> int:
    found = re.fullmatch(r"job (\d+)", ran.output)
    assert found, ran
    return int(found.group(1))


def test_make_run_printed_commands_work_as_printed_and_ctrl_c_says_what_stopped(
    dev_run: DevRun, tmp_path: Path
) -> None:
    printed = dev_run.read_until("Stop everything with Ctrl-C", BANNER_SECONDS)
    lines = pasted_lines(printed)
    export = next(line for line in lines if line.startswith("export "))
    assert export.startswith(f"export BULKREDEEM_URL={dev_run.base_url} BULKREDEEM_API_KEY=br_")

    # Another terminal: another directory, none of this process's environment.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outputs = paste(lines, elsewhere)
    transcript = "\n".join(f"$ {ran.command}\n[{ran.exit_code}] {ran.output}" for ran in outputs)
    context = f"{transcript}\n{dev_run.report()}"

    # The second job ends with row errors, which `jobs wait` says with exit code 2.
    wait2 = _ran(outputs, "jobs wait", "$JOB2")
    assert wait2.exit_code == 2, context
    assert [ran for ran in outputs if ran.exit_code != 0] == [wait2], context

    job1 = _echoed_job(_ran(outputs, "JOB=$(curl"))
    job2 = _echoed_job(_ran(outputs, "JOB2=$(curl"))
    assert job2 != job1
    assert (
        f"job {job1} COMPLETED: 1 rows, 1 succeeded, 0 failed"
        in _ran(outputs, "jobs wait", '"$JOB"').output
    ), context
    shown = json.loads(_ran(outputs, "/v1/jobs/$JOB ", "json.tool").output)
    assert (shown["jobId"], shown["status"]) == (job1, "COMPLETED"), context
    assert (shown["progress"]["rowsSucceeded"], shown["progress"]["rowsFailed"]) == (1, 0)

    cli_upload = _ran(outputs, "upload", "sample1.csv", "--wait")
    # The job's id is stdout's one line; stderr, shown beside it, says which guard it runs with.
    assert "guard: none" in cli_upload.output, context
    job3 = int(next(line for line in cli_upload.output.splitlines() if line.isdigit()))
    assert f"job {job3} COMPLETED: 1 rows, 1 succeeded, 0 failed" in cli_upload.output, context

    assert f"job {job2} COMPLETED_WITH_ERRORS: 1 rows, 0 succeeded, 1 failed" in wait2.output
    report = list(csv.DictReader(io.StringIO(_ran(outputs, "/v1/jobs/$JOB2/errors.csv").output)))
    assert [(row["errorCode"], row["errorName"]) for row in report] == [
        ("790", "DUPLICATE_REDEMPTION")
    ], context

    listed = _ran(outputs, "jobs list").output
    for job in (job1, job2, job3):
        assert re.search(rf"\b{job}\b", listed), context
    # Admin commands are printed only where they work as printed: the embedded database.
    assert not any("keys list" in ran.command for ran in outputs)

    # Ctrl-C: it says what it stopped, and everything it started goes.
    worker_name = f"dev-{dev_run.process.pid}@"
    assert processes_mentioning(worker_name), "the worker should be running before Ctrl-C"
    said = dev_run.interrupt()
    assert said[0] == "SIGINT: stopping api, worker, beat ...", said
    assert said[1:] == [
        "  api       stopped",
        "  worker    stopped",
        "  beat      stopped",
        "bulkredeem dev stopped.",
    ], said
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{dev_run.base_url}/openapi.json", timeout=2)
    assert processes_mentioning(worker_name) == []
    assert processes_mentioning(str(dev_run.workdir / ".data" / "celerybeat-schedule")) == []


def test_make_run_stops_the_rest_and_names_the_child_that_died(dev_run: DevRun) -> None:
    dev_run.read_until("Stop everything with Ctrl-C", BANNER_SECONDS)
    worker_name = f"dev-{dev_run.process.pid}@"
    worker_pids = processes_mentioning(worker_name)
    assert worker_pids, dev_run.report()

    for pid in worker_pids:
        os.kill(pid, signal.SIGKILL)

    assert dev_run.process.wait(timeout=STOP_SECONDS) == 1
    dev_run.read_until("bulkredeem dev stopped.", 5)
    assert any("the worker exited" in line for line in dev_run.seen), dev_run.report()
    assert "  worker    had exited already (code -9)\n" in dev_run.seen, dev_run.report()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{dev_run.base_url}/openapi.json", timeout=2)
    assert processes_mentioning(str(dev_run.workdir / ".data" / "celerybeat-schedule")) == []
