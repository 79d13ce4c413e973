"""`make chaos` (`python -m bench.chaos`): a seeded fault-injection run against real processes.

The API (uvicorn), two or more Celery workers, beat and a redis-server of the run's own start
on the Postgres it is given (DATABASE_URL / DATABASE_ADMIN_URL, else the local server, else the
embedded one), in a fresh database that it drops at the end. Two orgs get series of every kind
over the reference API, then jobs are uploaded over the real API, racing for the same coupons,
some under one Idempotency-Key at the same moment with a conflicting request among them, while
faults come on a schedule drawn from the seed (bench/chaos_faults.py). Then every job must end,
and the invariants are checked in Postgres and over the API (bench/chaos_checks.py). The exit
status is 0 when every invariant holds, 1 when one does not, 2 when the run could not be made.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

from bench import services
from bench.chaos_checks import Check, Inputs, check_all
from bench.chaos_faults import KINDS, REDIS_RESTART, Fault, Injector, Rig, plan
from bench.chaos_scenario import (
    ReferenceDataError,
    Scenario,
    Shape,
    create_reference,
    plan_uploads,
)
from bench.chaos_traffic import (
    Answers,
    Poller,
    Sample,
    Sampler,
    Stall,
    Uploader,
    longest_stall,
    recovery_after,
)
from bench.processes import PROJECT_ROOT, RedisServer, ServiceError, ServiceProcesses

OUT_DIR = PROJECT_ROOT / "bench" / "out" / "chaos"
ORGS = 2


@dataclass(frozen=True)
class ChaosConfig:
    seed: int = 1
    seconds: float = 180.0  # how long faults come
    workers: int = 2
    jobs: int = 30
    rows_per_job: int = 4000
    customers_per_org: int = 1500
    coupons_per_series: int = 1500
    idempotent_groups: int = 3
    identical: int = 4  # identical requests per group, sent at the same moment
    fault_every: float = 3.0  # mean gap: 55 to 61 faults planned in 180 s, seeds 1-3
    lease_seconds: int = 3
    sweep_seconds: float = 1.0
    chunk_rows: int = 1000
    settle_seconds: float = 180.0  # how long the jobs may take to end after the last fault
    out_dir: Path = OUT_DIR
    keep_database: bool = False

    def shape(self) -> Shape:
        return Shape(
            jobs=self.jobs,
            rows_per_job=self.rows_per_job,
            customers_per_org=self.customers_per_org,
            coupons_per_series=self.coupons_per_series,
            idempotent_groups=self.idempotent_groups,
            identical=self.identical,
            # Uploads go on over most of the faults' time, so that faults meet uploads and
            # running jobs until the end however fast the machine is (on a quiet one, the
            # jobs of uploads made in the first half were all done 90 s into a 180 s run).
            upload_window=self.seconds * 0.85,
        )


@dataclass
class ChaosResult:
    config: ChaosConfig
    checks: list[Check] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    harness_errors: list[str] = field(default_factory=list)
    stall: Stall = field(default_factory=lambda: Stall(0.0, 0.0))
    # Seconds from the last fault until every job running then had moved again (or ended).
    recovery: float | None = None
    last_fault: Fault | None = None
    # The slowest such recovery after any one fault, and that fault (None: never).
    slowest: tuple[float | None, Fault] | None = None
    rows: int = 0
    wall_seconds: float = 0.0
    log_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks) and not self.harness_errors

    def summary(self) -> str:
        failed = [c.name for c in self.checks if not c.ok]
        held = len(self.checks) - len(failed)
        recovery = "never" if self.recovery is None else f"{self.recovery:.1f} s"
        verdict = "PASS" if self.ok else "FAIL"
        broken = f" (failed: {'; '.join(failed)})" if failed else ""
        harness = f"; {len(self.harness_errors)} harness errors" if self.harness_errors else ""
        return (
            f"chaos {verdict} seed {self.config.seed}: {held}/{len(self.checks)} invariants"
            f" held{broken}; {len(self.faults)} faults in {self.config.seconds:.0f} s,"
            f" {self.rows} rows; longest stall {self.stall.seconds:.1f} s; recovery after the"
            f" last fault {recovery}{harness}"
        )


def _say(out: TextIO, message: str) -> None:
    print(message, file=out, flush=True)


def _service_env(
    found: services.Services, redis_url: str, files: Path, queue: str, config: ChaosConfig
) -> dict[str, str]:
    from core.db import app_url_from

    owner = found.owner_url
    # One URL given: it is the owner's; the service connects as its own role, as in `make run`.
    app_url = found.database_url if found.admin_url else app_url_from(owner)
    return {
        **os.environ,
        "DATABASE_URL": app_url,
        "DATABASE_ADMIN_URL": owner,
        "REDIS_URL": redis_url,
        "STORAGE_URL": files.as_uri(),
        "BULKREDEEM_QUEUE_NAME": queue,
        "BULKREDEEM_REDIS_PREFIX": queue,
        "BULKREDEEM_LEASE_SECONDS": str(config.lease_seconds),
        "BULKREDEEM_SWEEP_INTERVAL_SECONDS": str(config.sweep_seconds),
        "BULKREDEEM_QUEUED_REQUEUE_SECONDS": str(max(2, config.lease_seconds)),
        "BULKREDEEM_CHUNK_ROWS": str(config.chunk_rows),
        # Many uploads at once from one org are the scenario, not abuse; the limiter still
        # counts each in Redis, so a Redis outage still reaches it.
        "BULKREDEEM_UPLOADS_PER_MINUTE": "100000",
        "BULKREDEEM_POLLS_PER_MINUTE": "1000000",
        # The shared Postgres has 100 connections for everyone: a small poll pool.
        "BULKREDEEM_DB_POOL_SIZE": "4",
        # JSON lines (the default): the chunks' durations are read back from them.
        "BULKREDEEM_LOG_FORMAT": "json",
    }


def _wait_for_jobs(
    database_url: str, expected: int, timeout: float, clock: Callable[[], float]
) -> float | None:
    """Until every job has ended (and all `expected` exist); when the last one ended, on the
    run's clock, or None when they did not all end in time."""
    import psycopg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
                row = conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE status IN ('QUEUED', 'RUNNING')),"
                    " extract(epoch FROM now() - max(finished_at)) FROM upload_jobs"
                ).fetchone()
            assert row is not None
            if int(row[0]) >= expected and int(row[1]) == 0:
                # Postgres's clock says how long ago; the run's clock says when that was.
                return clock() - max(0.0, float(row[2] or 0.0))
        except psycopg.Error:
            pass
        time.sleep(0.5)
    return None


def run(config: ChaosConfig, out: TextIO = sys.stdout) -> ChaosResult:
    """One chaos run; the result holds every check. Raises ServiceError when the service
    could not be started at all."""
    result = ChaosResult(config)
    began = time.monotonic()
    run_dir = config.out_dir / f"seed-{config.seed}-{os.getpid()}"
    shutil.rmtree(run_dir, ignore_errors=True)
    log_dir, files = run_dir / "logs", run_dir / "files"
    files.mkdir(parents=True)
    result.log_dir = log_dir
    database = f"bulkredeem_chaos_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    redis_server = RedisServer(run_dir / "redis")
    redis_server.start()
    found: services.Services | None = None
    try:
        found = services.find(database=database, redis_url=redis_server.url)
        _say(out, f"chaos seed {config.seed}: {found.where}; database {database}; logs {log_dir}")
        services.recreate_database(found)
        services.migrate(found)
        orgs = [services.create_org(found, f"chaos-{config.seed}-{n}") for n in range(ORGS)]
        queue = f"chaos-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        env = _service_env(found, redis_server.url, files, queue, config)
        owner = found.owner_url
        with ServiceProcesses(env, log_dir) as processes:
            from cli.embedded.common import free_port

            port = free_port()
            processes.start_api(port)
            base_url = f"http://127.0.0.1:{port}"
            rig = Rig(
                processes,
                queue,
                redis_server,
                owner,
                run_dir / "beat",
                config.lease_seconds,
                config.sweep_seconds,
            )
            for slot in range(config.workers):
                rig.start_worker(slot, wait=True)
            rig.start_beat(wait=True)
            _say(out, f"API on {base_url}, {config.workers} workers and beat on queue {queue}")
            with httpx.Client(base_url=base_url, timeout=120.0) as http:
                try:
                    scenario = create_reference(http, orgs, config.shape(), config.seed)
                except ReferenceDataError as exc:
                    raise ServiceError(f"{exc}; see {log_dir / 'api.log'}") from exc
            plan_uploads(scenario, config.shape(), config.seed)
            _say(out, _describe(scenario))
            _chaos(config, scenario, rig, base_url, owner, result, out)
    finally:
        redis_server.stop()
        if found is not None and not config.keep_database:
            services.drop_database(found)
    result.wall_seconds = time.monotonic() - began
    return result


def _describe(scenario: Scenario) -> str:
    files = scenario.files
    requests = sum(len(e.requests) for e in scenario.uploads)
    kinds = ", ".join(sorted({s.kind.name for s in scenario.series}))
    return (
        f"{len(scenario.orgs)} orgs, {len(scenario.series)} series ({kinds});"
        f" {len(files)} files, {sum(f.records for f in files)} rows, {requests} upload requests"
    )


def _chaos(
    config: ChaosConfig,
    scenario: Scenario,
    rig: Rig,
    base_url: str,
    owner: str,
    result: ChaosResult,
    out: TextIO,
) -> None:
    t0 = time.monotonic()

    def clock() -> float:
        return time.monotonic() - t0

    answers = Answers()
    uploader = Uploader(base_url, scenario, answers, clock)
    poller = Poller(
        base_url,
        scenario,
        answers,
        lambda: [o.job_id for o in list(uploader.outcomes) if o.job_id is not None],
    )
    sampler = Sampler(owner, clock)
    # Faults from the first upload on, until the window's end.
    times = plan(config.seed, scenario.uploads[0].at + 1.0, config.seconds, config.fault_every)
    injector = Injector(rig, config.seed, times, clock)
    _say(out, f"{len(times)} faults planned over {config.seconds:.0f} s")
    sampler.start()
    uploader.start()
    poller.start()
    try:
        try:
            injector.run(until=config.seconds)
        finally:
            injector.finish()
        result.faults = injector.faults
        result.skipped = injector.skipped
        result.harness_errors += injector.errors
        _say(
            out,
            f"faults over at {clock():.1f} s: {len(injector.faults)} injected; waiting for jobs",
        )
        if not uploader.join(timeout=300):
            result.harness_errors.append("some upload requests were still going after 300 s")
        # The jobs the API answered with; one whose upload never got an answer may not exist.
        expected = len({o.job_id for o in uploader.outcomes if o.job_id is not None})
        ended_at = _wait_for_jobs(owner, expected, config.settle_seconds, clock)
        # Whatever the faults killed was started again: a process down now died by itself, and
        # the run does not say what it set out to say.
        down = [c.name for c in [*rig.workers, rig.beat] if c is not None and not c.alive]
        down += [] if rig.redis.running else ["redis-server"]
        if down:
            result.harness_errors.append(f"not running at the end: {', '.join(down)}")
        poller.stop()
        sampler.stop()
        last = _measure(result, injector.faults, sampler.samples)
        inputs = Inputs(
            scenario,
            uploader.outcomes,
            answers,
            owner,
            base_url,
            ended_at,
            None if last is None else last.ended,
        )
        result.checks = check_all(inputs)
        if sampler.failures:
            _say(out, f"(the sampler missed {sampler.failures} reads)")
    finally:
        # Also when the harness itself broke: no thread goes on asking a service that is gone.
        poller.stop()
        sampler.stop()


def _measure(result: ChaosResult, faults: list[Fault], samples: list[Sample]) -> Fault | None:
    """The stall and recovery figures into `result`; the last fault."""
    last = max(faults, key=lambda f: f.started, default=None)
    result.last_fault = last
    result.stall = longest_stall(samples)
    if last is not None:
        result.recovery = recovery_after(samples, last.started)
    for fault in faults:
        after = recovery_after(samples, fault.started)
        slowest = result.slowest
        # None (never moved again) is the slowest of all.
        if slowest is None or (slowest[0] is not None and (after is None or after > slowest[0])):
            result.slowest = (after, fault)
    result.rows = samples[-1].processed if samples else 0
    if result.log_dir is not None:
        _write_timeline(result.log_dir, faults, samples)
    return last


def _write_timeline(log_dir: Path, faults: list[Fault], samples: list[Sample]) -> None:
    """The faults and the progress samples beside the processes' logs, to read a stall by."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "faults.txt").open("w") as handle:
        for fault in faults:
            handle.write(f"{fault.started:8.2f} {fault.ended:8.2f}  {fault.kind}: {fault.detail}\n")
    with (log_dir / "progress.csv").open("w") as handle:
        handle.write("seconds,waiting,processed,running\n")
        for sample in samples:
            running = " ".join(f"{job}:{rows}" for job, rows in sorted(sample.running.items()))
            handle.write(f"{sample.at:.2f},{sample.waiting},{sample.processed},{running}\n")


def report(result: ChaosResult, out: TextIO = sys.stdout) -> None:
    by_kind = Counter(f.kind for f in result.faults)
    _say(out, "")
    _say(out, f"faults by kind ({len(result.faults)} in all):")
    for kind in KINDS:
        of_kind = [f for f in result.faults if f.kind == kind]
        mid_job = sum("(mid-job)" in f.detail for f in of_kind)
        idle = sum("(idle)" in f.detail for f in of_kind)
        extra = f"  ({mid_job} mid-job, {idle} idle)" if mid_job or idle else ""
        _say(out, f"  {by_kind[kind]:4d}  {kind}{extra}")
    if result.skipped:
        _say(out, "  not injected: " + ", ".join(f"{n} {k}" for k, n in result.skipped.items()))
    stall = result.stall
    _say(
        out,
        f"longest stall (jobs waiting, no row processed): {stall.seconds:.1f} s, from"
        f" {stall.began:.1f} s into the run",
    )
    budget = result.config.lease_seconds + result.config.sweep_seconds + 5
    _say(out, f"  (issue 13's target for the stall after one fault: under {budget:.0f} s)")
    if result.last_fault is not None:
        recovery = "never" if result.recovery is None else f"{result.recovery:.1f} s"
        last = result.last_fault
        _say(
            out,
            f"recovery after the last fault ({last.kind} at {last.started:.1f} s, over at"
            f" {last.ended:.1f} s): every job running then moved again {recovery} after it"
            " began",
        )
    if result.slowest is not None:
        after, fault = result.slowest
        shown = "never" if after is None else f"{after:.1f} s"
        _say(
            out,
            f"slowest recovery after one fault: {shown}, after the {fault.kind} at"
            f" {fault.started:.1f} s ({fault.detail or 'no detail'})",
        )
    for line in from_the_logs(result):
        _say(out, line)
    _say(out, "")
    for check in result.checks:
        _say(out, check.line())
    for error in result.harness_errors:
        _say(out, f"HARNESS  {error}")
    if result.log_dir is not None:
        _say(out, f"logs: {result.log_dir}")
    _say(out, result.summary())


def _count_in_logs(log_dir: Path, pattern: str, marker: str) -> int:
    total = 0
    for log in log_dir.glob(pattern):
        with log.open(errors="replace") as handle:
            total += sum(marker in line for line in handle)
    return total


def _chunk_seconds(log_dir: Path) -> list[tuple[float, object]]:
    """Each chunk's commit time and its job, from the workers' JSON log lines."""
    found: list[tuple[float, object]] = []
    for log in log_dir.glob("worker-*.log"):
        with log.open(errors="replace") as handle:
            for line in handle:
                if '"chunk applied"' not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and isinstance(entry.get("seconds"), int | float):
                    found.append((float(entry["seconds"]), entry.get("job_id")))
    return found


def from_the_logs(result: ChaosResult) -> list[str]:
    """What the processes' logs say the faults did: figures, not invariants."""
    if result.log_dir is None or not result.log_dir.is_dir():
        return []
    logs = result.log_dir
    outages = sum(f.kind == REDIS_RESTART for f in result.faults)
    lost = _count_in_logs(logs, "worker-*.log", "'lease_lost'")
    taken = _count_in_logs(logs, "worker-*.log", "'not_claimed'")
    limiter = _count_in_logs(logs, "api.log", "rate limiter unavailable")
    # How a server out of connections (a shared one, say) refuses the service's new ones.
    refused = _count_in_logs(logs, "*.log", "remaining connection slots are reserved")
    chunks = sorted(_chunk_seconds(logs), key=lambda c: c[0])
    if chunks:
        median = chunks[len(chunks) // 2][0]
        slowest, job = chunks[-1]
        over = sum(1 for seconds, _ in chunks if seconds > result.config.lease_seconds)
        shown = (
            f"chunks committed: {len(chunks)}, median {median:.2f} s, slowest {slowest:.1f} s"
            f" (job {job}); {over} took longer than the lease"
        )
    else:
        shown = "chunks committed: none found in the workers' logs"
    return [
        shown,
        f"slices that stopped, their lease lost to another worker: {lost}",
        f"deliveries that found their job taken or ended: {taken}",
        f"'rate limiter unavailable' warnings of the API: {limiter} over {outages} Redis outages",
        f"connections Postgres refused, its max_connections reached: {refused}",
    ]


def parse_args(argv: list[str] | None) -> ChaosConfig:
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="the run's seed (1)")
    parser.add_argument(
        "--seconds", type=float, default=defaults.seconds, help="how long faults come (180)"
    )
    parser.add_argument("--workers", type=int, default=defaults.workers, help="workers (2)")
    parser.add_argument("--jobs", type=int, default=defaults.jobs, help="plain jobs (30)")
    parser.add_argument(
        "--rows-per-job", type=int, default=defaults.rows_per_job, help="at most, per job (4000)"
    )
    parser.add_argument(
        "--fault-every", type=float, default=defaults.fault_every, help="mean gap, s (3.0)"
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=defaults.settle_seconds,
        help="how long jobs may take to end after the faults (180)",
    )
    parser.add_argument(
        "--keep-database", action="store_true", help="keep the run's database to look into"
    )
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error("--workers must be at least 2 (one stays up while another is hit)")
    if args.seconds <= 0 or args.fault_every <= 0 or args.jobs < 2 or args.rows_per_job < 1:
        parser.error(
            "--seconds, --fault-every, --jobs (at least 2) and --rows-per-job must be positive"
        )
    return ChaosConfig(
        seed=args.seed,
        seconds=args.seconds,
        workers=args.workers,
        jobs=args.jobs,
        rows_per_job=args.rows_per_job,
        fault_every=args.fault_every,
        settle_seconds=args.settle_seconds,
        keep_database=args.keep_database,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        result = run(config)
    except ServiceError as exc:
        print(f"chaos: the service did not start: {exc}", file=sys.stderr)
        return 2
    report(result)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
