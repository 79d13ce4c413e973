"""`--steady-state`: the import on an empty table, then on one that already holds millions of
redemptions, every chunk timed (issue 13).

One run, one database (`bulkredeem_bench_steady`, so that a default run elsewhere on the same
server neither drops it nor is dropped): the N-row file into the bench's sameUserMultipleRedeem
series and the lower bound on it, both on an empty redemptions table; then `--history`
redemptions in two more series (one of each kind) written by set-based SQL, analysed; then the
same import and lower bound again, and the file once more into a series of the default kind
(sameUserMultipleRedeem false). Chunk times are the worker's own log lines ("chunk applied").
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shutil
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from bench import datagen, lowerbound, services
from bench.report import Report, say

if TYPE_CHECKING:
    from bench.run import Setup

STEADY_DATABASE = "bulkredeem_bench_steady"
HISTORY_USES = 5  # each history coupon redeemed by this many customers
HISTORY_MS = 1_672_531_200_000  # 2023-01-01: the history is older than the file's rows
HISTORY_BLOCK = 100_000  # coupons a statement: 500,000 redemptions
DAY_MS = 86_400_000


def steady_services(found: services.Services) -> services.Services:
    """The services found, naming the steady-state run's own database."""
    admin = found.admin_url
    return dataclasses.replace(
        found,
        database_url=services.with_database(found.database_url, STEADY_DATABASE),
        admin_url=services.with_database(admin, STEADY_DATABASE) if admin else None,
    )


def recreate_database(found: services.Services) -> None:
    with psycopg.connect(
        services.with_database(found.owner_url, "postgres"), autocommit=True
    ) as conn:
        name = sql.Identifier(STEADY_DATABASE)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


# --- data ----------------------------------------------------------------------------------


def create_series(
    conn: psycopg.Connection[Any],
    org_id: int,
    name: str,
    *,
    max_per_coupon: int,
    same_user: bool,
    any_user: bool,
) -> int:
    row = conn.execute(
        """
        INSERT INTO coupon_series (org_id, name, max_redemptions_per_coupon,
            same_user_multiple_redeem, any_user)
        VALUES (%s, %s, %s, %s, %s) RETURNING id
        """,
        (org_id, name, max_per_coupon, same_user, any_user),
    ).fetchone()
    assert row is not None
    return int(row[0])


def copy_coupons(conn: psycopg.Connection[Any], org_id: int, source: int, target: int) -> None:
    """The source series' coupons again in `target`: the same codes, issued to the same
    customers, so that the same file redeems them."""
    conn.execute(
        "INSERT INTO coupons (org_id, series_id, code, issued_to_customer_id)"
        " SELECT org_id, %s, code, issued_to_customer_id FROM coupons WHERE series_id = %s",
        (target, source),
    )
    conn.commit()


def fill_history(
    conn: psycopg.Connection[Any], org_id: int, customers: int, redemptions: int
) -> list[int]:
    """`redemptions` redemptions, half in a sameUserMultipleRedeem series and half in one of
    the default kind, each coupon redeemed HISTORY_USES times by as many customers (ids 1 to
    `customers`, as datagen.seed_reference made them); their counters. Set-based, a block of
    coupons a statement, committed as it goes.
    """
    # Each row's coupon comes from coupons in the same statement and its customer from the
    # range the seed wrote: the references hold by construction, as the lower bound's do, so
    # the statement is spared the per-statement reference check (migration 0007).
    conn.execute("SET app.references_checked = 'on'")
    coupons = max(1, redemptions // 2 // HISTORY_USES)
    made = []
    for name, same_user in (("history same-user", True), ("history default", False)):
        series = create_series(
            conn, org_id, name, max_per_coupon=HISTORY_USES, same_user=same_user, any_user=True
        )
        made.append(series)
        conn.execute(
            "INSERT INTO coupons (org_id, series_id, code)"
            " SELECT %s, %s, 'H' || lpad(n::text, 9, '0') FROM generate_series(0, %s - 1) n",
            (org_id, series, coupons),
        )
        row = conn.execute(
            "SELECT min(id), max(id) FROM coupons WHERE series_id = %s", (series,)
        ).fetchone()
        assert row is not None
        low, high = int(row[0]), int(row[1])
        conn.commit()
        for first in range(low, high + 1, HISTORY_BLOCK):
            conn.execute(
                """
                INSERT INTO redemptions (org_id, series_id, coupon_id, customer_id,
                    redeemed_ms, till_id, bill_id, bill_number, details)
                SELECT k.org_id, k.series_id, k.id, 1 + (k.id * %(uses)s + j) %% %(customers)s,
                    %(ms)s + j * %(day)s + k.id, 'till-' || (k.id %% 40), 'H' || k.id,
                    'N' || j, 'history'
                FROM coupons k CROSS JOIN generate_series(0, %(uses)s - 1) j
                WHERE k.series_id = %(series)s AND k.id BETWEEN %(first)s AND %(last)s
                """,
                {
                    "uses": HISTORY_USES,
                    "customers": customers,
                    "ms": HISTORY_MS,
                    "day": DAY_MS,
                    "series": series,
                    "first": first,
                    "last": min(high, first + HISTORY_BLOCK - 1),
                },
            )
            conn.commit()
            done = min(high, first + HISTORY_BLOCK - 1) - low + 1
            say(f"history: series {series}, {done * HISTORY_USES} redemptions")
    conn.execute(
        "INSERT INTO coupon_counters (coupon_id, org_id, redemption_count)"
        " SELECT coupon_id, org_id, count(*) FROM redemptions WHERE series_id = ANY(%s)"
        " GROUP BY coupon_id, org_id",
        (made,),
    )
    conn.commit()
    return made


def reset_series(found: services.Services, series_id: int) -> None:
    """Forget what runs wrote in one series (its redemptions and counters) and every job;
    keep the history."""
    with services.connect(found.owner_url) as conn:
        conn.execute("DELETE FROM redemptions WHERE series_id = %s", (series_id,))
        conn.execute(
            "DELETE FROM coupon_counters n USING coupons k"
            " WHERE k.id = n.coupon_id AND k.series_id = %s",
            (series_id,),
        )
        conn.execute("DELETE FROM upload_jobs")  # their row errors go with them
        conn.commit()


def settle_all(found: services.Services) -> float:
    """VACUUM (ANALYZE) of every table a chunk reads, and a checkpoint: what autovacuum (on in
    production, off on this workplace's shared server) would have done by now."""
    started = time.perf_counter()
    services.settle(
        found,
        ("customers", "coupons", "redemptions", "coupon_counters", "upload_jobs", "job_row_errors"),
    )
    return time.perf_counter() - started


# --- measuring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunks:
    """One job's chunks, from the worker's log."""

    first_records: list[int]
    commits: list[float]  # each chunk's commit phase (locks, decisions, inserts), as logged
    intervals: list[float]  # from one chunk's commit to the next's, by the log's clock

    @staticmethod
    def from_log(path: Path, job_id: int) -> Chunks:
        records, commits, stamps = [], [], []
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            if entry.get("message") == "chunk applied" and entry.get("job_id") == job_id:
                records.append(int(entry["chunk"]))
                commits.append(float(entry["seconds"]))
                stamps.append(datetime.fromisoformat(entry["time"]).timestamp())
        intervals = [later - earlier for earlier, later in itertools.pairwise(stamps)]
        return Chunks(records, commits, intervals)


@dataclass(frozen=True)
class Import:
    document: dict[str, Any]
    seconds: float  # first byte sent to terminal status seen
    chunks: Chunks
    redemptions: int  # in the series, after the job
    counted: int  # the series' counters' sum
    row_errors: int


def _jobs(found: services.Services) -> int:
    with services.connect(found.owner_url) as conn:
        row = conn.execute("SELECT count(*) FROM upload_jobs").fetchone()
    assert row is not None
    return int(row[0])


def _wait_for_connection_slots(found: services.Services, needed: int = 20) -> None:
    """Wait (up to 10 minutes) until the server has room for the API's pool and the worker.

    On this workplace's shared server other sessions' tests take up to all of
    max_connections at times; a service started then answers 500 (too many clients).
    """
    deadline = time.monotonic() + 600
    while True:
        try:
            with services.connect(found.owner_url) as conn:
                row = conn.execute(
                    "SELECT current_setting('max_connections')::int"
                    " - current_setting('superuser_reserved_connections')::int"
                    " - (SELECT count(*) FROM pg_stat_activity)"
                ).fetchone()
            if row is not None and int(row[0]) >= needed:
                return
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            return
        say("waiting for connection slots on the shared Postgres")
        time.sleep(5)


def measure_import(setup: Setup, data: datagen.Dataset, series_id: int) -> Import:
    from bench.client import ClientError
    from bench.run import LOG_DIR, service

    for attempt in range(1, 6):
        _wait_for_connection_slots(setup.services)
        before = _jobs(setup.services)
        try:
            with service(setup) as running:
                say(f"uploading {data.path.name} into series {series_id}")
                upload = running.client.upload(data.path, series_id)
                say(f"job {upload.job_id} queued; waiting for its end")
                document, ended = running.client.wait_until_ended(upload.job_id)
            break
        except ClientError as error:
            # Only an upload that made no job is tried again: nothing of it was measured.
            if attempt == 5 or _jobs(setup.services) != before:
                raise
            say(f"the upload failed ({str(error)[:120]}); once more in 10 s")
            time.sleep(10)
    log = LOG_DIR / "worker.log"
    chunks = Chunks.from_log(log, upload.job_id)
    # The next import's worker starts a new log: keep each job's for reading its chunks again.
    shutil.copyfile(log, LOG_DIR / f"worker-job-{upload.job_id}.log")
    with services.connect(setup.services.owner_url) as conn:
        row = conn.execute(
            """
            SELECT (SELECT count(*) FROM redemptions WHERE series_id = %(s)s),
                (SELECT coalesce(sum(n.redemption_count), 0) FROM coupon_counters n
                 JOIN coupons k ON k.id = n.coupon_id WHERE k.series_id = %(s)s),
                (SELECT count(*) FROM job_row_errors WHERE job_id = %(j)s)
            """,
            {"s": series_id, "j": upload.job_id},
        ).fetchone()
    assert row is not None
    return Import(document, ended - upload.started, chunks, int(row[0]), int(row[1]), int(row[2]))


def report_import(report: Report, label: str, run: Import, expected: datagen.Expected) -> bool:
    """Its figures; True when its counts are the expected ones."""
    chunks = run.chunks
    report.figure(f"{label}: service time", run.seconds, "s")
    report.figure(f"{label}: chunks logged", len(chunks.commits), "chunks")
    # No chunk line at all means the signal is missing (another log format, say): a failure.
    # A one-chunk job has no interval between chunks, which is no failure.
    ok = run.document["status"] in ("COMPLETED", "COMPLETED_WITH_ERRORS") and bool(chunks.commits)
    for name, values in (("chunk commit", chunks.commits), ("chunk interval", chunks.intervals)):
        if not values:
            continue
        median, worst = statistics.median(values), max(values)
        report.figure(f"{label}: {name} median", median, "s")
        report.figure(f"{label}: {name} p90", _quantile(values, 0.9), "s")
        report.figure(f"{label}: {name} max", worst, "s")
        report.figure(f"{label}: {name} max / median", worst / median, "x")
        report.figure(f"{label}: {name} slower than 2 x median", _slower(values, 2), "chunks")
    slowest = max(range(len(chunks.commits)), key=chunks.commits.__getitem__, default=None)
    if slowest is not None:
        report.figure(f"{label}: slowest commit at record", chunks.first_records[slowest])
    progress = run.document["progress"]
    errors = Counter({int(e["code"]): int(e["count"]) for e in run.document["errorSummary"]})
    applied, failed = int(progress["rowsSucceeded"]), int(progress["rowsFailed"])
    report.figure(f"{label}: applied / expected", f"{applied} / {expected.applied}")
    report.figure(f"{label}: rejected by code", _codes(errors))
    ok = (
        ok
        and (applied, failed, errors) == (expected.applied, expected.failed, expected.rejected)
        and run.redemptions == run.counted == expected.applied
        and run.row_errors == expected.failed
    )
    report.figure(f"{label}: counts as expected", "yes" if ok else "no")
    return ok


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _slower(values: list[float], factor: float) -> int:
    median = statistics.median(values)
    return sum(1 for value in values if value > factor * median)


def _codes(counts: Counter[int]) -> str:
    return " ".join(f"{code}={counts[code]}" for code in sorted(counts)) or "none"


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _relation_mib(found: services.Services, table: str) -> float:
    with services.connect(found.owner_url) as conn:
        row = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()
    assert row is not None
    return int(row[0]) / 2**20


def in_default_series(expected: datagen.Expected) -> datagen.Expected:
    """What the file gives in a series of the default kind: a coupon repeated by its own
    customer is refused for that (716), which DESIGN.md checks before the coupon's limit."""
    other = expected.copy()
    other.rejected[716] = other.rejected.pop(datagen.REPEATED_COUPON, 0)
    return other


def run_steady(args: argparse.Namespace, setup: Setup, report: Report) -> int:
    from bench.run import make_data

    found = setup.services
    report.figure("load average at the start (1, 5, 15 min)", _load())
    data = make_data(args, setup, report)
    with services.connect(found.owner_url) as conn:
        other = create_series(
            conn,
            setup.org_id,
            "bench default kind",
            max_per_coupon=datagen.MAX_PER_COUPON,
            same_user=False,
            any_user=datagen.ANY_USER,
        )
        copy_coupons(conn, setup.org_id, setup.series_id, other)
    settle_all(found)
    ok = True

    def service_then_bound(table: str) -> tuple[Import, lowerbound.LowerBoundResult, bool]:
        """The service's import of the file, then the lower bound's, each from the same state."""
        say(f"on {table}: the service")
        run = measure_import(setup, data, setup.series_id)
        counted = report_import(report, f"{table}, same-user series", run, data.expected)
        reset_series(found, setup.series_id)
        settle_all(found)
        say(f"on {table}: the lower bound")
        bound = _bound(args, setup, data)
        reset_series(found, setup.series_id)
        return run, bound, counted

    empty, bound_empty, counted = service_then_bound("empty table")
    ok &= counted

    say(f"writing {args.history} history redemptions")
    started = time.perf_counter()
    with services.connect(found.owner_url) as conn:
        fill_history(conn, setup.org_id, args.rows, args.history)
    report.figure("history redemptions written", args.history, "rows")
    report.figure("history write time (INSERT ... SELECT)", time.perf_counter() - started, "s")
    say("VACUUM (ANALYZE) and CHECKPOINT")
    report.figure("VACUUM (ANALYZE) + CHECKPOINT time", settle_all(found), "s")
    report.figure("redemptions size (heap + indexes)", _relation_mib(found, "redemptions"), "MiB")

    full, bound_full, counted = service_then_bound("full table")
    ok &= counted
    settle_all(found)

    say("on the full table: the service, default-kind series")
    default = measure_import(setup, data, other)
    ok &= report_import(
        report, "full table, default series", default, in_default_series(data.expected)
    )

    report.figure("empty table: lower-bound time", bound_empty.seconds, "s")
    report.figure("full table: lower-bound time", bound_full.seconds, "s")
    ratio_empty = empty.seconds / bound_empty.seconds
    ratio_full = full.seconds / bound_full.seconds
    report.figure("empty table: service time / lower-bound time", ratio_empty, "x")
    report.figure("full table: service time / lower-bound time", ratio_full, "x")
    report.figure("full-table ratio / empty-table ratio", ratio_full / ratio_empty, "x")
    every = full.chunks.commits + default.chunks.commits
    if every:
        report.figure(
            "full table, both series: chunk commit max / median",
            max(every) / statistics.median(every),
            "x",
        )
    bounds_ok = (
        (bound_empty.applied, bound_empty.rejected)
        == (bound_full.applied, bound_full.rejected)
        == (data.expected.applied, data.expected.rejected)
    )
    report.figure("lower-bound counts as expected", "yes" if bounds_ok else "no")
    report.figure("load average at the end (1, 5, 15 min)", _load())
    match = ok and bounds_ok
    report.figure("counts match", "yes" if match else "no")
    return 0 if match else 1


def _bound(
    args: argparse.Namespace, setup: Setup, data: datagen.Dataset
) -> lowerbound.LowerBoundResult:
    return lowerbound.run(
        setup.services,
        data.path,
        org_id=setup.org_id,
        series_id=setup.series_id,
        chunk_rows=args.chunk_rows,
    )
