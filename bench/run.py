"""`python -m bench`: one command, one run, the same data for the service and its baselines.

The default run: seed N customers and coupons, write the N-row file, upload it to the real API
with one real worker and time it to the job's end (polling latency and peak RSS measured on
the way), then the lower bound and the naive baseline on the same data, then the figures.
`--upload-gb`, `--errors-csv`, `--steady-state` and `--by-job` run one extra measurement
instead (see bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from bench import byjob, datagen, lowerbound, naive, revert, services, steady
from bench.client import ServiceClient, Upload
from bench.pollers import ConcurrentPollers, PollStats
from bench.processes import PROJECT_ROOT, Child, ServiceProcesses
from bench.procstat import RssSampler, cpu_seconds, peak_rss_mib, rss_mib
from bench.profiler import profiling
from bench.report import Report, say

OUT_DIR = PROJECT_ROOT / "bench" / "out"
DATA_DIR = OUT_DIR / "data"
LOG_DIR = OUT_DIR / "logs"
FILES_DIR = OUT_DIR / "files"  # the service's STORAGE_URL during the run
MIB = 1024 * 1024
MIN_ROWS = 1000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="N (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=3, help="the data's seed (default 3)")
    parser.add_argument(
        "--chunk-rows", type=int, default=10_000, help="lower bound's chunk (default 10,000)"
    )
    parser.add_argument(
        "--naive-rows", type=int, default=10_000, help="naive baseline's sample (default 10,000)"
    )
    parser.add_argument("--pollers", type=int, default=50, help="concurrent pollers (50)")
    parser.add_argument(
        "--poll-interval", type=float, default=0.5, help="each poller's pause, s (0.5)"
    )
    parser.add_argument(
        "--poll-seconds", type=float, default=10.0, help="how long the pollers poll, s (10)"
    )
    parser.add_argument(
        "--upload-gb",
        type=float,
        metavar="GIB",
        help="only: upload a file of this many GiB, measure the API, cancel the job",
    )
    parser.add_argument(
        "--errors-csv",
        type=int,
        metavar="ROWS",
        help="only: a job with this many row errors, then time its errors.csv",
    )
    parser.add_argument(
        "--steady-state",
        action="store_true",
        help="only: the import on an empty table, then on one holding --history redemptions,"
        " every chunk timed (bench/README.md)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=3_000_000,
        help="--steady-state's redemptions already recorded (default 3,000,000)",
    )
    parser.add_argument(
        "--by-job",
        action="store_true",
        help="only: the import and the lower bound without and with an index of redemptions"
        " by job (and a BRIN instead), --rounds times, then the job's successes.csv",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="--by-job's rounds over the layouts (default 2)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile the worker with py-spy (if installed)"
    )
    parser.add_argument(
        "--postgres",
        choices=("found", "tuned"),
        default="found",
        help="found: the server make test would use (default); tuned: a private Postgres in"
        " bench/out/pg set up for bulk loads (bench/README.md)",
    )
    args = parser.parse_args(argv)
    if args.rows < MIN_ROWS:
        parser.error(f"--rows must be at least {MIN_ROWS}")
    return args


# --- setting up ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    services: services.Services
    env: dict[str, str]  # the service's environment
    queue: str
    org_id: int
    api_key: str
    series_id: int


def prepare(postgres: str = "found", *, steady_state: bool = False) -> Setup:
    found = services.find(postgres)
    if steady_state:
        found = steady.steady_services(found)
        say(f"database {steady.STEADY_DATABASE}: dropped, created and migrated")
        steady.recreate_database(found)
    else:
        say(f"database {services.BENCH_DATABASE}: dropped, created and migrated")
        services.recreate_database(found)
    services.migrate(found)
    shutil.rmtree(FILES_DIR, ignore_errors=True)
    FILES_DIR.mkdir(parents=True)
    queue = f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": found.database_url,
        "REDIS_URL": found.redis_url,
        "STORAGE_URL": FILES_DIR.as_uri(),
        "BULKREDEEM_QUEUE_NAME": queue,
    }
    if found.admin_url:
        env["DATABASE_ADMIN_URL"] = found.admin_url
    org_id, api_key = services.create_org(found, "bench")
    with services.connect(found.owner_url) as conn:
        series_id = datagen.create_series(conn, org_id)
    return Setup(found, env, queue, org_id, api_key, series_id)


@dataclass
class Running:
    api: Child
    worker: Child
    client: ServiceClient
    base_url: str


@contextmanager
def service(setup: Setup, **extra_env: str) -> Iterator[Running]:
    """The API and one worker, stopped on the way out whatever happens."""
    from cli.embedded.common import free_port

    port = free_port()
    with ServiceProcesses({**setup.env, **extra_env}, LOG_DIR) as processes:
        say(f"starting the API on 127.0.0.1:{port} and a worker on queue {setup.queue}")
        api = processes.start_api(port)
        worker = processes.start_worker(setup.queue)
        base_url = f"http://127.0.0.1:{port}"
        client = ServiceClient(base_url, setup.api_key)
        try:
            yield Running(api, worker, client, base_url)
        finally:
            client.close()


def _parse_time(value: str | None) -> float | None:
    return None if value is None else datetime.fromisoformat(value).timestamp()


def _errors(document: dict[str, Any]) -> Counter[int]:
    return Counter({int(e["code"]): int(e["count"]) for e in document["errorSummary"]})


def _codes(counts: Counter[int]) -> str:
    return " ".join(f"{code}={counts[code]}" for code in sorted(counts)) or "none"


# --- the default run -----------------------------------------------------------------------


def make_data(args: argparse.Namespace, setup: Setup, report: Report) -> datagen.Dataset:
    rows = args.rows
    say(f"seeding {rows} customers and coupons (COPY)")
    started = time.perf_counter()
    with services.connect(setup.services.owner_url) as conn:
        datagen.seed_reference(conn, setup.org_id, setup.series_id, rows)
    seed_seconds = time.perf_counter() - started
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for stale in DATA_DIR.glob("bench-*.csv"):  # only the current file is kept
        stale.unlink()
    say(f"writing the {rows}-row file")
    started = time.perf_counter()
    data = datagen.write_csv(DATA_DIR / f"bench-{rows}.csv", rows, args.seed, args.naive_rows)
    csv_seconds = time.perf_counter() - started
    report.figure("rows", rows, "rows")
    report.figure("file size", data.size / MIB, "MiB")
    report.figure("seed time (customers + coupons, COPY)", seed_seconds, "s")
    report.figure("csv write time", csv_seconds, "s")
    return data


@dataclass(frozen=True)
class ServiceRun:
    upload: Upload
    document: dict[str, Any]  # the job at its end
    seconds: float  # first byte sent to terminal status seen
    polls: PollStats
    worker_cpu: float  # the worker's CPU seconds from the upload to the job's end
    worker_peak: float
    api_peak: float
    tables: services.TableCounts

    def job_seconds(self, start: str, end: str) -> float | None:
        first, last = _parse_time(self.document[start]), _parse_time(self.document[end])
        return None if first is None or last is None else last - first


def measure_service(args: argparse.Namespace, setup: Setup, data: datagen.Dataset) -> ServiceRun:
    with service(setup) as running:
        profile_to = OUT_DIR / "worker-profile.speedscope.json"
        with profiling(args.profile, running.worker.pid, profile_to, LOG_DIR / "py-spy.log"):
            say(f"uploading {data.size / MIB:.1f} MiB")
            worker_cpu = cpu_seconds(running.worker.pid)
            upload = running.client.upload(data.path, setup.series_id)
            say(f"job {upload.job_id} queued after {upload.seconds:.1f} s; waiting for its end")
            api_pid = running.api.pid
            pollers = ConcurrentPollers(
                running.base_url,
                setup.api_key,
                upload.job_id,
                count=args.pollers,
                interval=args.poll_interval,
                max_seconds=args.poll_seconds,
                cpu_probe=lambda: cpu_seconds(api_pid),
            )
            pollers.start()
            try:
                document, ended = running.client.wait_until_ended(upload.job_id)
            finally:
                polls = pollers.finish()
            worker_cpu = cpu_seconds(running.worker.pid) - worker_cpu
            worker_peak = peak_rss_mib(running.worker.pid)
            api_peak = peak_rss_mib(api_pid)
    return ServiceRun(
        upload=upload,
        document=document,
        seconds=ended - upload.started,
        polls=polls,
        worker_cpu=worker_cpu,
        worker_peak=worker_peak,
        api_peak=api_peak,
        tables=services.table_counts(setup.services),
    )


def run_full(args: argparse.Namespace, setup: Setup, report: Report) -> int:
    rows = args.rows
    found = setup.services
    data = make_data(args, setup, report)
    services.settle(found)
    run = measure_service(args, setup, data)
    reverted = revert.measure(service(setup), found, run, report)  # issue 15, bench/revert.py

    say("resetting the database; the lower bound")
    services.reset(found)
    bound = lowerbound.run(
        found,
        data.path,
        org_id=setup.org_id,
        series_id=setup.series_id,
        chunk_rows=args.chunk_rows,
    )
    bound_tables = services.table_counts(found)

    say(f"resetting the database; the naive baseline on {args.naive_rows} rows")
    services.reset(found)
    slow = naive.run(
        found,
        data.path,
        org_id=setup.org_id,
        series_id=setup.series_id,
        sample_rows=args.naive_rows,
    )
    naive_seconds = slow.seconds_per_row * rows

    # Speed.
    report.figure("service status", run.document["status"])
    report.figure("service time (first byte sent to terminal status)", run.seconds, "s")
    report.figure("service throughput", rows / run.seconds, "rows/s")
    for label, start, end in (
        ("job createdAt to finishedAt", "createdAt", "finishedAt"),
        ("job startedAt to finishedAt", "startedAt", "finishedAt"),
    ):
        seconds = run.job_seconds(start, end)
        if seconds is not None:
            report.figure(label, seconds, "s")
    report.figure("upload time", run.upload.seconds, "s")
    report.figure("upload speed", run.upload.size / MIB / run.upload.seconds, "MiB/s")
    report.figure("lower-bound time", bound.seconds, "s")
    report.figure("lower-bound COPY + index time", bound.copy_seconds, "s")
    report.figure("lower-bound throughput", rows / bound.seconds, "rows/s")
    report.figure("service time / lower-bound time", run.seconds / bound.seconds, "x")
    report.figure(f"naive time on {slow.rows} rows", slow.seconds, "s")
    report.figure("naive throughput", 1 / slow.seconds_per_row, "rows/s")
    report.figure(f"naive time extrapolated to {rows} rows", naive_seconds, "s")
    report.figure("service speed-up over naive", naive_seconds / run.seconds, "x")
    report.figure("lower-bound speed-up over naive", naive_seconds / bound.seconds, "x")
    # Where the time went, memory and latency.
    report.figure("worker CPU time during the job", run.worker_cpu, "s")
    report.figure("worker CPU / service time", 100 * run.worker_cpu / run.seconds, "%")
    report.figure("worker peak RSS", run.worker_peak, "MiB")
    report.figure("API peak RSS", run.api_peak, "MiB")
    polls = run.polls
    report.figure(
        f"polling requests ({args.pollers} pollers, every {args.poll_interval} s, "
        f"{polls.seconds:.1f} s)",
        len(polls.latencies),
        "requests",
    )
    report.figure("polling failures", polls.failures, "requests")
    if polls.requests:
        # The bench's own waiter adds 5 requests/s to the pollers' in this window.
        per_request = 1000 * polls.server_cpu / polls.requests
        report.figure("API CPU per polling request", per_request, "ms")
    report.figure("polling p50", polls.percentile_ms(0.50), "ms")
    report.figure("polling p99", polls.percentile_ms(0.99), "ms")
    report.figure("polling max", polls.percentile_ms(1.0), "ms")
    return report_counts(report, data, run, bound, bound_tables, slow) or int(not reverted)


def report_counts(
    report: Report,
    data: datagen.Dataset,
    run: ServiceRun,
    bound: lowerbound.LowerBoundResult,
    bound_tables: services.TableCounts,
    slow: naive.NaiveResult,
) -> int:
    """The job's counts against the lower bound's and the generator's; 1 unless all agree."""
    expected, sample = data.expected, data.sample
    progress = run.document["progress"]
    applied, failed = int(progress["rowsSucceeded"]), int(progress["rowsFailed"])
    errors = _errors(run.document)
    report.figure("expected applied", expected.applied, "rows")
    report.figure("expected rejected", expected.failed, "rows")
    report.figure("expected rejected by code", _codes(expected.rejected))
    report.figure("service applied", applied, "rows")
    report.figure("service rejected", failed, "rows")
    report.figure("service rejected by code", _codes(errors))
    report.figure("service redemptions in the database", run.tables.redemptions, "rows")
    report.figure("lower-bound applied", bound.applied, "rows")
    report.figure("lower-bound rejected", bound.failed, "rows")
    report.figure("lower-bound rejected by code", _codes(bound.rejected))
    report.figure("lower-bound redemptions in the database", bound_tables.redemptions, "rows")
    report.figure("naive sample applied / expected", f"{slow.applied} / {sample.applied}")
    report.figure("naive sample rejected / expected", f"{slow.failed} / {sample.failed}")
    service_ok = (
        run.document["status"] in ("COMPLETED", "COMPLETED_WITH_ERRORS")
        and (applied, failed, errors) == (expected.applied, expected.failed, expected.rejected)
        and run.tables.redemptions == run.tables.counted == expected.applied
        and run.tables.row_errors == expected.failed
    )
    bound_ok = (bound.applied, bound.rejected) == (
        expected.applied,
        expected.rejected,
    ) and bound_tables.redemptions == bound_tables.counted == expected.applied
    naive_ok = (slow.applied, slow.rejected) == (sample.applied, sample.rejected)
    report.figure("service counts as expected", "yes" if service_ok else "no")
    report.figure("lower-bound counts as expected", "yes" if bound_ok else "no")
    report.figure("naive counts as expected", "yes" if naive_ok else "no")
    match = service_ok and bound_ok and naive_ok
    report.figure("counts match", "yes" if match else "no")
    return 0 if match else 1


# --- --upload-gb ---------------------------------------------------------------------------


def run_upload(args: argparse.Namespace, setup: Setup, report: Report) -> int:
    target = int(args.upload_gb * 1024**3)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / "upload-big.csv"
    say(f"writing a {target / MIB:.0f} MiB file")
    try:
        size, rows = datagen.write_big_csv(path, target)
        limits = {
            "BULKREDEEM_MAX_UPLOAD_BYTES": str(size + 64 * MIB),
            "BULKREDEEM_MAX_ROWS": str(rows + 1000),
        }
        with service(setup, **limits) as running, RssSampler({"api": running.api.pid}) as rss:
            before = rss.take_peak("api")
            say(f"uploading {size / MIB:.0f} MiB")
            upload = running.client.upload(path, setup.series_id)
            during = rss.take_peak("api")
            api_peak = peak_rss_mib(running.api.pid)
            say(f"job {upload.job_id}: cancelling")
            running.client.cancel(upload.job_id)
            document, _ = running.client.wait_until_ended(upload.job_id)
    finally:
        path.unlink(missing_ok=True)
    report.figure("upload file size", size / MIB, "MiB")
    report.figure("upload rows", rows, "rows")
    report.figure("upload time", upload.seconds, "s")
    report.figure("upload speed", size / MIB / upload.seconds, "MiB/s")
    report.figure("API RSS before the upload", before, "MiB")
    report.figure("API peak RSS during the upload (sampled every 0.1 s)", during, "MiB")
    report.figure("API peak RSS (VmHWM, whole life)", api_peak, "MiB")
    report.figure("job status after cancel", document["status"])
    report.figure("job rows processed before the cancel", document["progress"]["rowsProcessed"])
    return 0 if document["status"] == "CANCELLED" else 1


# --- --errors-csv --------------------------------------------------------------------------


def run_errors_csv(args: argparse.Namespace, setup: Setup, report: Report) -> int:
    count = args.errors_csv
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    data = datagen.write_error_csv(DATA_DIR / f"errors-{count}.csv", count)
    with service(setup) as running, RssSampler({"api": running.api.pid}) as rss:
        upload = running.client.upload(data.path, setup.series_id)
        say(f"job {upload.job_id}: {count} rows that all fail; waiting for its end")
        document, ended = running.client.wait_until_ended(upload.job_id)
        rss.take_peak("api")
        before = rss_mib(running.api.pid)
        say("downloading errors.csv")
        download = running.client.download_errors_csv(upload.job_id)
        during = rss.take_peak("api")
        api_peak = peak_rss_mib(running.api.pid)
    failed = int(document["progress"]["rowsFailed"])
    report.figure("job status", document["status"])
    report.figure("job time (upload to end)", ended - upload.started, "s")
    report.figure("row errors", failed, "rows")
    report.figure("errors.csv size", download.size / MIB, "MiB")
    report.figure("errors.csv lines (header included)", download.lines, "lines")
    report.figure("errors.csv time", download.seconds, "s")
    report.figure("errors.csv speed", download.size / MIB / download.seconds, "MiB/s")
    report.figure("API RSS before the download", before, "MiB")
    report.figure("API peak RSS during the download (sampled every 0.1 s)", during, "MiB")
    report.figure("API peak RSS (VmHWM, whole life)", api_peak, "MiB")
    complete = failed == count and download.lines == count + 1
    report.figure("errors.csv complete", "yes" if complete else "no")
    return 0 if complete else 1


# --- main ----------------------------------------------------------------------------------


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Unwind as Ctrl-C does, so that every child is stopped on the way out.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    os.chdir(PROJECT_ROOT)
    report = Report()
    report.figure("date", datetime.now(UTC).isoformat(timespec="seconds"))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    report.figure(
        "machine",
        f"{os.cpu_count()} cores, {memory:.0f} GiB, {platform.machine()}, "
        f"Python {platform.python_version()}",
    )
    try:
        setup = prepare(args.postgres, steady_state=args.steady_state)
        report.figure("postgres", services.server_description(setup.services))
        report.figure("services", setup.services.where)
        if args.upload_gb is not None:
            code = run_upload(args, setup, report)
        elif args.errors_csv is not None:
            code = run_errors_csv(args, setup, report)
        elif args.steady_state:
            code = steady.run_steady(args, setup, report)
        elif args.by_job:
            code = byjob.run_by_job(args, setup, report)
        else:
            code = run_full(args, setup, report)
    except KeyboardInterrupt:
        say("interrupted; every process the bench started has been stopped")
        return 130
    finally:
        shutil.rmtree(FILES_DIR, ignore_errors=True)
    mode = (
        "upload"
        if args.upload_gb is not None
        else "errors-csv"
        if args.errors_csv
        else "steady-state"
        if args.steady_state
        else "by-job"
        if args.by_job
        else "run"
    )
    report.save(OUT_DIR / f"last-{mode}.txt")
    return code


if __name__ == "__main__":
    sys.exit(main())
