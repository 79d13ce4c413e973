"""cli/supervisor.py with real processes: what `make run`, the bench and the tests rely on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cli.supervisor import Child, ChildFailed, RedisServer, stop_all


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def _gone(pid: int, within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie has ended too; it only waits to be reaped.
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_waiting_for_a_line_that_never_comes_quotes_the_logs_end(tmp_path: Path) -> None:
    child = Child(
        "sleeper",
        _python("print('one', flush=True); print('two', flush=True); import time; time.sleep(60)"),
        tmp_path / "sleeper.log",
        dict(os.environ),
    )
    try:
        with pytest.raises(ChildFailed) as failed:
            child.wait_for_line("ready.", timeout=1)
    finally:
        child.stop()
    message = str(failed.value)
    assert "the sleeper did not write 'ready.' to its log within 1 s" in message
    assert message.endswith("one\ntwo"), message


def test_a_child_that_dies_while_awaited_says_its_code_and_last_words(tmp_path: Path) -> None:
    child = Child(
        "quitter", _python("print('cannot go on'); raise SystemExit(3)"), tmp_path / "q.log", {}
    )
    with pytest.raises(ChildFailed, match=r"(?s)the quitter exited with code 3.*cannot go on"):
        child.wait_for_line("ready.", timeout=30)


def test_a_restart_waits_for_its_own_marker_not_the_last_ones(tmp_path: Path) -> None:
    log = tmp_path / "again.log"
    first = Child("first", _python("print('ready.')"), log, {})
    first.popen.wait()
    second = Child("second", _python("import time; time.sleep(60)"), log, {}, header="--- again")
    try:
        with pytest.raises(ChildFailed):
            second.wait_for_line("ready.", timeout=1)
    finally:
        second.stop()
    assert log.read_text() == "ready.\n--- again\n"


def test_stop_kills_a_child_that_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    stubborn = _python(
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('ignoring', flush=True)
        time.sleep(60)
        """
    )
    child = Child("stubborn", stubborn, tmp_path / "s.log", {})
    polite = Child("polite", _python("import time; time.sleep(60)"), tmp_path / "p.log", {})
    child.wait_for_line("ignoring", timeout=30)
    began = time.monotonic()
    killed = stop_all([child, polite], grace=1)
    assert killed == [child]
    assert child.returncode == -signal.SIGKILL
    assert polite.returncode == -signal.SIGTERM
    assert 1 <= time.monotonic() - began < 10


def test_signals_reach_what_the_child_started_too(tmp_path: Path) -> None:
    parent = _python(
        """
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
        print(f'grandchild {grandchild.pid}', flush=True)
        time.sleep(60)
        """
    )
    child = Child("parent", parent, tmp_path / "parent.log", {})
    child.wait_for_line("grandchild ", timeout=30)
    grandchild = int(child.tail().split()[-1])
    child.kill()
    assert _gone(grandchild)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_dies_with_a_parent_killed_outright(tmp_path: Path) -> None:
    # The parent starts a Child and is then SIGKILLed: no clean-up of its runs, only the
    # kernel's PR_SET_PDEATHSIG can end the child.
    parent = subprocess.Popen(
        _python(
            f"""
            import sys, time
            from pathlib import Path
            from cli.supervisor import Child
            child = Child('orphan', [sys.executable, '-c', 'import time; time.sleep(60)'],
                          Path({str(tmp_path / "orphan.log")!r}), {{}})
            print(child.pid, flush=True)
            time.sleep(60)
            """
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    orphan = int(parent.stdout.readline())
    assert not _gone(orphan, within=0.5)  # it runs while its parent does
    parent.kill()
    parent.wait()
    assert _gone(orphan)


def test_a_private_redis_starts_again_empty_after_a_kill(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        server.client().set("key", "value")
        server.kill()
        assert not server.running
        server.start()
        assert server.client().get("key") is None
        assert server.running
    finally:
        server.stop()
    assert not server.running
    assert "Ready to accept connections" in (tmp_path / "redis" / "redis.log").read_text()
