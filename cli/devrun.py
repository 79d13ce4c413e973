"""`bulkredeem dev`: services, migrations, demo data, then API, worker and beat until Ctrl-C."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO

from cli.embedded import common as embedded
from cli.embedded import postgres as embedded_postgres
from cli.embedded import redis as embedded_redis
from cli.embedded.common import display_path, redacted
from cli.supervisor import (
    Child,
    ChildFailed,
    answers_http,
    api_command,
    beat_command,
    stop_all,
    worker_command,
)
from core import db
from core.demo import DemoData
from core.settings import get_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = PROJECT_ROOT / "examples"
API_START_SECONDS = 60.0
STOP_SECONDS = 15.0
POLL_SECONDS = 0.2
LOG_TAIL_LINES = 25

# Prints the job id of an upload's answer, or the answer itself (or "no answer") and fails.
JOB_ID_FROM_ANSWER = (
    "import json,sys; t=sys.stdin.read(); "
    'b=json.loads(t) if t.startswith("{") else {}; '
    'print(b["result"]["redeemUploadJobStatuses"][0]["jobId"]) if b.get("success") '
    'else sys.exit(t or "no answer")'
)
# The line above the commands to paste; tests find the commands below it.
PASTE_HEADING = (
    "Try it: paste these lines into another terminal (bash), in order (# lines are comments):"
)
STOP_LINE = "Stop everything with Ctrl-C."


@dataclass(frozen=True)
class Sample:
    name: str
    what: str
    customer_identifier: str
    coupon_identifier: str


SAMPLES = (
    Sample("sample2", "coupon code ABCDEF1, customer by mobile", "MOBILE", "COUPON_CODE"),
    Sample("sample1", "coupon id 23456, customer by userId", "USER_ID", "COUPON_ID"),
)


class DevError(RuntimeError):
    """Something `bulkredeem dev` cannot get past; the message says what."""


class StopRequested(BaseException):
    """SIGINT or SIGTERM arrived while starting up."""


@dataclass
class DevRunner:
    port: int
    migrate: Callable[[], str]
    seed: Callable[[], DemoData]
    data_dir: Path = field(default_factory=embedded.default_data_dir)
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    children: list[Child] = field(default_factory=list)
    _phase: str = "starting"
    _stop_signal: int | None = None
    _hurry: bool = False
    _embedded_database: bool = False

    def run(self) -> int:
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        try:
            try:
                demo = self._start()
            except StopRequested:
                return 0
            except (DevError, embedded.DevServiceError) as exc:
                self._complain(exc)
                return 1
            self._phase = "running"
            self._say(
                banner(
                    self.base_url, demo, self.data_dir, embedded_database=self._embedded_database
                )
            )
            return self._supervise()
        finally:
            self._phase = "stopping"
            self._stop_children()
            self._stop_services()
            self._say("bulkredeem dev stopped.")
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- starting ------------------------------------------------------------------------------

    def _start(self) -> DemoData:
        self._check_port_free()
        self._configure_environment()
        self._say("applying migrations ...")
        self.migrate()
        demo = self.seed()
        api = self._spawn("api", api_command(self.port))
        worker_name = f"dev-{os.getpid()}@%h"
        self._spawn("worker", worker_command(get_settings().queue_name, "-n", worker_name))
        self._spawn("beat", beat_command(self.data_dir / "celerybeat-schedule"))
        self._wait_for_api(api)
        return demo

    def _check_port_free(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", self.port))
            except OSError as exc:
                raise DevError(
                    f"port {self.port} on 127.0.0.1 is taken ({exc.strerror}); is another "
                    "`make run` running? Choose another with BULKREDEEM_PORT=8001 make run"
                ) from exc

    def _configure_environment(self) -> None:
        """Point this process and its children at the services, embedded ones when unset."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not embedded_postgres.database_in_environment():
            self._say(
                f"DATABASE_URL is unset: starting the embedded Postgres in "
                f"{display_path(self._pg_dir)}"
            )
        get_settings.cache_clear()
        embedded = embedded_postgres.use_embedded_database(self.data_dir, create=True)
        self._embedded_database = embedded is not None
        if embedded is None:
            settings = get_settings()
            service_url_given = "database_url" in settings.model_fields_set and bool(
                settings.database_url
            )
            if not settings.database_admin_url:
                # One URL given: it is the owner's (it migrates); the service gets its own role.
                os.environ["DATABASE_ADMIN_URL"] = settings.database_url
                os.environ["DATABASE_URL"] = db.app_url_from(settings.database_url)
            elif not service_url_given:
                # Only the owner's given: the service uses its own role on that server.
                os.environ["DATABASE_URL"] = db.app_url_from(settings.database_admin_url)
        if not os.environ.get("REDIS_URL"):
            where = display_path(self._redis_dir)
            self._say(f"REDIS_URL is unset: starting the embedded Redis in {where}")
            os.environ["REDIS_URL"] = embedded_redis.ensure_redis(self.data_dir)
        if not os.environ.get("STORAGE_URL"):
            files = self.data_dir / "files"
            files.mkdir(parents=True, exist_ok=True)
            os.environ["STORAGE_URL"] = files.as_uri()
        get_settings.cache_clear()
        db.dispose_engine()

    @property
    def _pg_dir(self) -> Path:
        return self.data_dir / "pg"

    @property
    def _redis_dir(self) -> Path:
        return self.data_dir / "redis"

    def _spawn(self, name: str, command: list[str]) -> Child:
        # In a session of its own (cli/supervisor.py): a terminal Ctrl-C reaches only this
        # runner, which then stops the children in order.
        log = self.data_dir / "logs" / f"{name}.log"
        header = f"\n--- {datetime.now().isoformat(timespec='seconds')} ---"
        child = Child(name, command, log, dict(os.environ), header=header)
        self.children.append(child)
        return child

    def _wait_for_api(self, api: Child) -> None:
        def answers() -> bool:
            self._raise_if_a_child_died()  # any of them, not only the API
            return answers_http(f"{self.base_url}/openapi.json")

        try:
            api.wait_until(answers, f"answer on {self.base_url}", API_START_SECONDS)
        except ChildFailed as exc:
            raise DevError(str(exc)) from None

    # --- running -------------------------------------------------------------------------------

    def _supervise(self) -> int:
        while self._stop_signal is None:
            try:
                self._raise_if_a_child_died()
            except DevError as exc:
                self._complain(exc)
                return 1
            time.sleep(POLL_SECONDS)
        return 0

    def _raise_if_a_child_died(self) -> None:
        for child in self.children:
            code = child.returncode
            if code is not None:
                tail = "\n".join("    " + line for line in child.tail(LOG_TAIL_LINES).splitlines())
                raise DevError(
                    f"the {child.name} exited (code {code}); stopping the rest.\n"
                    f"Last lines of {display_path(child.log)}:\n{tail}"
                )

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_signal is not None:
            self._hurry = True  # a second Ctrl-C: stop waiting for graceful shutdowns
            return
        self._stop_signal = signum
        if self._phase == "starting":
            raise StopRequested

    # --- stopping ------------------------------------------------------------------------------

    def _stop_children(self) -> None:
        """Stop the children, then say of each what became of it."""
        running = [child for child in self.children if child.alive]
        if running:
            why = "" if self._stop_signal is None else f"{signal.Signals(self._stop_signal).name}: "
            self._say(f"{why}stopping {', '.join(child.name for child in running)} ...")
        killed = stop_all(running, STOP_SECONDS, hurry=lambda: self._hurry)
        for child in self.children:
            if child in killed and self._hurry:
                outcome = "killed (a second stop signal: no more waiting)"
            elif child in killed:
                outcome = f"killed (it did not stop within {STOP_SECONDS:.0f} s of SIGTERM)"
            elif child in running:
                outcome = "stopped" + _exit_note(child.returncode)
            else:
                outcome = f"had exited already (code {child.returncode})"
            self._report(child.name, outcome)
        self.children.clear()

    def _stop_services(self) -> None:
        for service, outcome in [*embedded_redis.stop_all(), *embedded_postgres.stop_all()]:
            self._report(service, outcome)

    # --- output --------------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def _report(self, name: str, outcome: str) -> None:
        self._say(f"  {name:<9} {outcome}")

    def _complain(self, problem: Exception) -> None:
        print(f"bulkredeem dev: {problem}", file=sys.stderr, flush=True)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _exit_note(code: int | None) -> str:
    # SIGTERM's own end (a negative code) and 0 are the expected ones: nothing to add.
    return "" if code in (0, -signal.SIGTERM) else f" (exit code {code})"


def _shell_words(words: list[str]) -> str:
    return " ".join(shlex.quote(word) for word in words)


def python_command() -> str:
    """This interpreter, as the other terminal can run it (python3 may not be on PATH)."""
    return shlex.quote(display_path(Path(sys.executable)))


def cli_command() -> str:
    """The `bulkredeem` script beside this interpreter (not on PATH outside the venv)."""
    script = Path(sys.executable).with_name("bulkredeem")
    if script.exists():
        return shlex.quote(display_path(script))
    return f"{python_command()} -m cli.main"


def _auth(key: str) -> str:
    return "-H " + shlex.quote(f"Authorization: Bearer {key}")


def upload_command(base_url: str, key: str, series_id: int, sample: Sample) -> str:
    csv = EXAMPLES_DIR / f"{sample.name}.csv"
    headers = EXAMPLES_DIR / f"{sample.name}.uploadHeaders.json"
    parts = [
        "curl -sS",
        _auth(key),
        f"-F customerIdentifier={sample.customer_identifier}",
        f"-F couponIdentifier={sample.coupon_identifier}",
        "-F " + shlex.quote(f"file=@{display_path(csv)}"),
        # `<` sends the file's content as a plain form field, which uploadHeaders is.
        "-F " + shlex.quote(f"uploadHeaders=<{display_path(headers)}"),
        f"{base_url}/coupon/api/v1/upload/redeemFile/{series_id}",
    ]
    return " ".join(parts)


def upload_keeping_job(
    variable: str, base_url: str, key: str, series_id: int, sample: Sample
) -> str:
    """An upload that keeps its job id in $variable (and echoes it)."""
    extract = f"{python_command()} -c {shlex.quote(JOB_ID_FROM_ANSWER)}"
    upload = upload_command(base_url, key, series_id, sample)
    return f'{variable}=$({upload} | {extract}) && echo "job ${variable}"'


def cli_upload_command(series_id: int, sample: Sample) -> str:
    words = [
        "upload",
        display_path(EXAMPLES_DIR / f"{sample.name}.csv"),
        "--series",
        str(series_id),
        "--customer-identifier",
        sample.customer_identifier,
        "--coupon-identifier",
        sample.coupon_identifier,
        "--headers",
        "@" + display_path(EXAMPLES_DIR / f"{sample.name}.uploadHeaders.json"),
        "--wait",
    ]
    return f"{cli_command()} {_shell_words(words)}"


def job_command(base_url: str, key: str, job: str = "$JOB", suffix: str = "") -> str:
    return f"curl -sS {_auth(key)} {base_url}/v1/jobs/{job}{suffix}"


def try_it_commands(base_url: str, demo: DemoData, *, embedded_database: bool) -> list[str]:
    """The lines to paste into another terminal, in order: comments, commands, blank lines.

    Each works as printed there, once the lines above it have run: the terminal is taken to
    this directory first (the sample paths and the admin commands' .data/ are relative to it).
    """
    sample2, sample1 = SAMPLES
    key, series = demo.api_key, demo.series_id
    cli = cli_command()
    lines = [
        f"cd {shlex.quote(str(Path.cwd()))}",
        "# The bulkredeem command finds the service and the demo key in these two:",
        f"export BULKREDEEM_URL={shlex.quote(base_url)} BULKREDEEM_API_KEY={shlex.quote(key)}",
        "",
        f"# Upload {sample2.name} ({sample2.what}) and keep its job id in $JOB:",
        upload_keeping_job("JOB", base_url, key, series, sample2),
        "# Wait until the job has ended (COMPLETED: its one row redeemed), then see all of it:",
        f'{cli} jobs wait "$JOB"',
        f"{job_command(base_url, key)} | {python_command()} -m json.tool",
        "",
        f"# Upload {sample1.name} ({sample1.what}) with the bulkredeem command, to its end:",
        cli_upload_command(series, sample1),
        "",
        f"# Upload {sample2.name} a second time: its row fails with 790 DUPLICATE_REDEMPTION.",
        "# Keep that job's id in $JOB2, and wait until it has ended (COMPLETED_WITH_ERRORS):",
        upload_keeping_job("JOB2", base_url, key, series, sample2),
        f'{cli} jobs wait "$JOB2"',
        "# Its failed rows, as CSV, each with its error code (fix them, upload the file again):",
        job_command(base_url, key, job="$JOB2", suffix="/errors.csv"),
        "",
        "# The demo org's jobs, newest first:",
        f"{cli} jobs list",
    ]
    if embedded_database:
        lines += [
            "# Admin commands (migrate, orgs, keys, demo seed) find this embedded Postgres too:",
            f"{cli} keys list demo",
        ]
    return lines


def banner(base_url: str, demo: DemoData, data_dir: Path, *, embedded_database: bool) -> str:
    """What `bulkredeem dev` prints once everything answers: the key and commands to paste."""
    settings = get_settings()
    logs = display_path(data_dir / "logs")
    lines = [
        "",
        f"bulkredeem is running on {base_url}  (interactive API docs: {base_url}/docs)",
        f"  database  {redacted(settings.database_url)}",
        f"  redis     {settings.redis_url}",
        f"  files     {settings.storage_url}",
        f"  logs      {logs}/api.log, worker.log, beat.log",
        "",
        f"Demo org 'demo' (id {demo.org_id}), coupon series 'demo' (id {demo.series_id}),",
        f"customer userId {demo.customer_id} (mobile {demo.customer_mobile}), "
        f"coupons {demo.coupon_id} ({demo.coupon_id_code}) and {demo.coupon_code}.",
        "",
        "API key (a new one at every start; it is not shown again):",
        f"  {demo.api_key}",
        "",
    ]
    if EXAMPLES_DIR.is_dir():
        lines += [
            PASTE_HEADING,
            "",
            *try_it_commands(base_url, demo, embedded_database=embedded_database),
            "# The demo coupons are reset at every start, so the samples redeem again then.",
            "",
        ]
    lines.append(STOP_LINE)
    return "\n".join(lines)
