"""`make run` on its embedded Postgres and Redis, and the README's admin commands beside it.

With no database URL in the environment, `bulkredeem orgs create acme` and the other admin
commands must reach the embedded server that `make run` started under ./.data, as its owner,
even though another Postgres answers on 127.0.0.1:5432 here: and they must not stop it for
`make run` when they exit. One `make run` (initdb and migrations on a busy machine are slow),
then the same data directory with the server stopped, and a directory without one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.embedded import postgres
from tests.devrun_harness import (
    bulkredeem_command,
    dev_running,
    embedded_workdir,
    paste,
    pasted_lines,
    terminal_environment,
)

pytestmark = [
    pytest.mark.timeout(400),
    pytest.mark.skipif(shutil.which("curl") is None, reason="the printed commands use curl"),
]

BANNER_SECONDS = 240.0
COMMAND_SECONDS = 120.0


def _admin(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A README admin command, from another terminal: DATABASE_URL and the rest unset."""
    return subprocess.run(
        [*bulkredeem_command(), *args],
        cwd=cwd,
        env=terminal_environment(),
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
    )


def _succeeded(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _key(stdout: str) -> str:
    found = re.search(r"^API key: (br_\S+)$", stdout, re.MULTILINE)
    assert found, stdout
    return found.group(1)


@pytest.fixture
def project() -> Iterator[Path]:
    with embedded_workdir() as path:
        yield path


def test_admin_commands_use_make_runs_embedded_postgres_and_leave_it_running(
    project: Path, tmp_path: Path
) -> None:
    pgdata = project / ".data" / "pg"
    with dev_running(terminal_environment(), project) as run:
        printed = run.read_until("Stop everything with Ctrl-C", BANNER_SECONDS)
        assert "DATABASE_URL is unset: starting the embedded Postgres in .data/pg\n" in printed
        dev_pid = run.process.pid
        assert postgres.postgres_running(project / ".data")

        # The README's commands, in another process, with DATABASE_URL unset.
        created = _admin("orgs", "create", "acme", cwd=project)
        first_key = _key(_succeeded(created))
        assert "the embedded Postgres in .data/pg (running)" in created.stderr
        second_key = _key(
            _succeeded(_admin("keys", "create", "acme", "--label", "2nd", cwd=project))
        )
        listed = _succeeded(_admin("keys", "list", "acme", cwd=project))
        assert [line.split()[2] for line in listed.splitlines()[1:]] == ["initial", "2nd"], listed
        assert "is up to date" in _succeeded(_admin("migrate", cwd=project))

        # The admin commands joined the server and let go of it: make run still holds it.
        assert postgres.postgres_running(project / ".data")
        assert _handle_pids(pgdata) == [dev_pid]

        # The keys they printed work against the running API; a wrong one does not.
        jobs = f"{run.base_url}/v1/jobs"
        for key in (first_key, second_key):
            answer = httpx.get(jobs, headers={"Authorization": f"Bearer {key}"}, timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.json()["items"] == []  # acme's: none of the demo org's
        wrong = httpx.get(jobs, headers={"Authorization": "Bearer br_wrong"}, timeout=10)
        assert wrong.status_code == 401, wrong.text

        # The admin command the banner prints works as printed, too.
        admin_lines = [line for line in pasted_lines(printed) if " keys list demo" in line]
        assert len(admin_lines) == 1, printed
        cd = next(line for line in pasted_lines(printed) if line.startswith("cd "))
        _, ran = paste([cd, *admin_lines], tmp_path)
        assert ran.exit_code == 0 and "initial" in ran.output, ran

        said = run.interrupt()
        assert "  postgres  stopped (embedded, .data/pg)" in said, said
        assert "  redis     stopped (embedded, .data/redis)" in said, said
    assert not postgres.postgres_running(project / ".data")

    # make run stopped: an admin command starts the server for itself, and stops it after.
    alone = _admin("keys", "list", "acme", cwd=project)
    assert "(started for this command; it stops when the command ends)" in alone.stderr
    rows = _succeeded(alone).splitlines()[1:]
    assert [row.split()[2] for row in rows] == ["initial", "2nd"], alone.stdout
    # Columns: id, prefix, label, created (3 words), last used (3 words, or -), revoked.
    assert all(row.split()[8] == "UTC" for row in rows), "both keys were used against the API"
    assert not postgres.postgres_running(project / ".data")


def test_admin_commands_without_an_embedded_server_say_how_to_get_one(tmp_path: Path) -> None:
    done = _admin("orgs", "create", "acme", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "bulkredeem: DATABASE_URL is unset and there is no embedded Postgres in .data/pg: run "
        "`make run` (or `bulkredeem migrate`) in the project's directory first, or set "
        "DATABASE_URL"
    ]
    assert not (tmp_path / ".data").exists()


def _handle_pids(pgdata: Path) -> list[int]:
    """The processes holding pgserver handles on the server: it stops when the last one goes."""
    return list(json.loads((pgdata / ".handle_pids.json").read_text()))
