"""A failing test's report shows what its worker or API logged during it (conftest.py): the
cause of a 500 or of a failed task is in that process's log, not in the test's assertion.

Each case runs a small failing test file in a pytest of its own, with the suite's conftest,
and reads that run's output as a developer or CI would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

from tests.conftest import HOLD_CONNECTIONS

ROOT = Path(__file__).resolve().parent.parent

_CONFTEST = "from tests.conftest import *  # noqa: F403\n"


def _run_pytest(directory: Path, source: str) -> subprocess.CompletedProcess[str]:
    (directory / "conftest.py").write_text(_CONFTEST)
    (directory / "test_inner.py").write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--timeout=120", "-q"],
        cwd=directory,
        env={**_without_crowd(os.environ), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _without_crowd(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for a pytest inside this one: the crowd, if any, is held once."""
    return {name: value for name, value in environ.items() if name != HOLD_CONNECTIONS}


def _section(output: str, title_start: str) -> str:
    """The text of the report section whose title starts so, up to the next section."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip("- ").startswith(title_start)]
    assert starts, f"no section {title_start!r} in:\n{output}"
    body = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith(("----", "====", "____")):
            break
        body.append(line)
    return "\n".join(body)


WORKER_TESTS = """
import uuid
from collections.abc import Mapping
from collections.abc import Iterator

import pytest

from tests import processes
from worker.app import celery_app

QUEUE = f"failure-logs-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[processes.Process]:
    env = processes.service_env(BULKREDEEM_QUEUE_NAME=QUEUE)
    process = processes.worker(env, QUEUE, tmp_path_factory.mktemp("w") / "worker.log")
    yield process
    process.stop()


def _refused(worker: processes.Process, task: str) -> None:
    celery_app.send_task(task, queue=QUEUE)
    worker.wait_for(task + "'", timeout=60)  # the worker's error line names it


def test_first(worker: processes.Process) -> None:
    _refused(worker, "bulkredeem.first_unknown_task")
    assert False, "the first job never ran"


def test_second(worker: processes.Process) -> None:
    _refused(worker, "bulkredeem.second_unknown_task")
    assert False, "the second job never ran"


def test_passing(worker: processes.Process) -> None:
    _refused(worker, "bulkredeem.third_unknown_task")
"""


def test_a_failing_test_shows_what_its_worker_logged_during_it(tmp_path: Path) -> None:
    run = _run_pytest(tmp_path, WORKER_TESTS)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "2 failed, 1 passed" in output, output
    first = _section(output, "worker log during the test")
    assert "Received unregistered task of type 'bulkredeem.first_unknown_task'" in first
    assert "ready." in first  # the worker started during the first test's setup
    # The second report holds what was logged during the second test, not the first's.
    second = output.split("test_second", 1)[1]
    second = _section(second, "worker log during the test")
    assert "Received unregistered task of type 'bulkredeem.second_unknown_task'" in second
    assert "first_unknown_task" not in second
    assert "ready." not in second
    # A passing test's log is nobody's business.
    assert "third_unknown_task" not in output


API_TESTS = """
from tests import processes

MISSING = "{missing}"


def test_poll(tmp_path) -> None:
    import httpx

    api, url = processes.api(processes.service_env(DATABASE_URL=MISSING), tmp_path / "api.log")
    try:
        answer = httpx.get(url + "/v1/jobs/1", headers={{"Authorization": "Bearer br_whatever"}})
        assert answer.status_code == 200, answer.text
    finally:
        api.stop()
"""


def test_a_failing_test_shows_why_its_api_process_answered_500(tmp_path: Path) -> None:
    # The machine of the report: the API could not connect, and said only "internal error".
    missing = f"bulkredeem_missing_{uuid.uuid4().hex[:8]}"
    url = f"postgresql://postgres@127.0.0.1:5432/{missing}"
    run = _run_pytest(tmp_path, API_TESTS.format(missing=url))
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "internal error" in output  # what the test itself saw
    section = _section(output, "API log during the test")
    assert f'database "{missing}" does not exist' in section, section
    assert "unhandled error" in section


CLIENT_TESTS = """
from fastapi.testclient import TestClient

from core import db
from core.settings import get_settings

MISSING = "{missing}"


def test_poll(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", MISSING)
    get_settings.cache_clear()
    db.dispose_engine()
    from api.app import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as client:
        answer = client.get("/v1/jobs/1", headers={{"Authorization": "Bearer br_whatever"}})
    assert answer.status_code == 200, answer.text
"""


def test_a_failing_test_shows_why_the_in_process_app_answered_500(tmp_path: Path) -> None:
    missing = f"bulkredeem_missing_{uuid.uuid4().hex[:8]}"
    url = f"postgresql://postgres@127.0.0.1:5432/{missing}"
    run = _run_pytest(tmp_path, CLIENT_TESTS.format(missing=url))
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    # pytest's own capture of the log records: the traceback, with its cause.
    section = _section(output, "Captured log call")
    assert "unhandled error" in section, output
    assert f'database "{missing}" does not exist' in section, output
