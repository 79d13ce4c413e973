"""`--by-job`: what finding redemptions by job costs the import, and the successes CSV (issue 15).

Migration 0012 added `ix_redemptions_job_id_row_number` for the successes report and the
revert. One run, one data set: the 1,000,000-row import and the lower bound under each layout
of the redemptions table, the rounds in opposite orders so that drift over the run falls on
every layout alike (their spread is the run-to-run noise):

- `none`: the index dropped (the schema before migration 0012);
- `btree`: migration 0012's index on (job_id, row_number);
- `brin`: a BRIN on job_id instead, with a job's redemptions walked by primary key: a chunk
  inserts its rows ordered by row number and the chunks commit in file order, so within a job
  ids increase in file order (an alternative the report proposes, not what the service does).

After each import a job's redemptions are walked a page at a time, as a report or a revert
walks them (owner's connection, 10,000 rows a page): by (job_id, row_number) under `btree`,
by id within the job's id range under the other two. Last, with `btree` in place, the
successes CSV of the final job is downloaded from the API: its time and the API's memory.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench import lowerbound, services
from bench.procstat import RssSampler, peak_rss_mib, rss_mib
from bench.report import Report, say

if TYPE_CHECKING:
    from bench.run import Running, Setup

LAYOUTS = ("none", "btree", "brin")
INDEX = "ix_redemptions_job_id_row_number"
BRIN = "bench_redemptions_job_id_brin"
PAGE_ROWS = 10_000
MIB = 1024 * 1024

_LAYOUT_SQL = {
    "none": (),
    "btree": (f"CREATE INDEX {INDEX} ON redemptions (job_id, row_number)",),
    "brin": (f"CREATE INDEX {BRIN} ON redemptions USING brin (job_id)",),
}
_BY_ROW = (
    "SELECT row_number, id FROM redemptions WHERE job_id = %s AND row_number > %s"
    " ORDER BY row_number LIMIT %s"
)
# The job's id range would be the job's to keep (two columns, set with each chunk); here it is
# looked up once, untimed.
_BY_ID = (
    "SELECT row_number, id FROM redemptions WHERE job_id = %s AND id > %s AND id <= %s"
    " ORDER BY id LIMIT %s"
)


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def set_layout(found: services.Services, layout: str) -> None:
    with services.connect(found.owner_url, autocommit=True) as conn:
        conn.execute(f"DROP INDEX IF EXISTS {INDEX}")
        conn.execute(f"DROP INDEX IF EXISTS {BRIN}")
        for statement in _LAYOUT_SQL[layout]:
            conn.execute(statement)


def walk(found: services.Services, job_id: int, layout: str) -> tuple[float, int]:
    """Every redemption of the job, a keyset page at a time: seconds and rows."""
    with services.connect(found.owner_url) as conn:
        span = conn.execute(
            "SELECT min(id) - 1, max(id) FROM redemptions WHERE job_id = %s", (job_id,)
        ).fetchone()
        assert span is not None
        low, high = span
        started = time.perf_counter()
        rows = 0
        after = 0 if layout == "btree" else low
        while True:
            if layout == "btree":
                page = conn.execute(_BY_ROW, (job_id, after, PAGE_ROWS)).fetchall()
            else:
                page = conn.execute(_BY_ID, (job_id, after, high, PAGE_ROWS)).fetchall()
            rows += len(page)
            if len(page) < PAGE_ROWS:
                break
            after = page[-1][0] if layout == "btree" else page[-1][1]
        return time.perf_counter() - started, rows


def index_mib(found: services.Services, layout: str) -> float:
    if layout == "none":
        return 0.0
    name = INDEX if layout == "btree" else BRIN
    with services.connect(found.owner_url) as conn:
        row = conn.execute("SELECT pg_relation_size(%s::regclass)", (name,)).fetchone()
    assert row is not None
    return float(row[0]) / MIB


@dataclass(frozen=True)
class Download:
    seconds: float
    size: int
    lines: int
    rss_before: float
    rss_during: float
    rss_peak: float


def download_successes(running: Running, job_id: int) -> Download:
    """Stream the whole successes CSV, keeping nothing but its size and line count."""
    with RssSampler({"api": running.api.pid}) as rss:
        rss.take_peak("api")
        before = rss_mib(running.api.pid)
        size = lines = 0
        started = time.perf_counter()
        with running.client.http.stream("GET", f"/v1/jobs/{job_id}/successes.csv") as answer:
            if answer.status_code != 200:
                raise RuntimeError(f"successes.csv answered {answer.status_code}")
            for piece in answer.iter_raw():
                size += len(piece)
                lines += piece.count(b"\n")
        seconds = time.perf_counter() - started
        during = rss.take_peak("api")
    return Download(seconds, size, lines, before, during, peak_rss_mib(running.api.pid))


def run_by_job(args: argparse.Namespace, setup: Setup, report: Report) -> int:
    from bench.run import make_data, measure_service, service

    found = setup.services
    report.figure("load average at the start (1, 5, 15 min)", _load())
    data = make_data(args, setup, report)
    orders: list[tuple[str, ...]] = [
        LAYOUTS if r % 2 == 0 else LAYOUTS[::-1] for r in range(args.rounds)
    ]
    # The last import is btree's: its job stays for the successes CSV.
    orders[-1] = (*(layout for layout in orders[-1] if layout != "btree"), "btree")
    times: dict[str, list[float]] = defaultdict(list)
    bounds: dict[str, list[float]] = defaultdict(list)
    walks: dict[str, list[float]] = defaultdict(list)
    ok = True
    last_job = 0
    for number, order in enumerate(orders, start=1):
        for position, layout in enumerate(order):
            final = number == len(orders) and position == len(order) - 1
            services.reset(found)
            set_layout(found, layout)
            say(f"round {number}, {layout}: the lower bound")
            bound = lowerbound.run(
                found,
                data.path,
                org_id=setup.org_id,
                series_id=setup.series_id,
                chunk_rows=args.chunk_rows,
            )
            bounds[layout].append(bound.seconds)
            ok &= bound.applied == data.expected.applied
            services.reset(found)
            load = _load()
            say(f"round {number}, {layout}: the service (load {load})")
            run = measure_service(args, setup, data)
            times[layout].append(run.seconds)
            applied = int(run.document["progress"]["rowsSucceeded"])
            ok &= applied == data.expected.applied == run.tables.redemptions
            last_job = run.upload.job_id
            seconds, walked = walk(found, last_job, layout)
            walks[layout].append(seconds)
            ok &= walked == applied
            report.figure(
                f"round {number} {layout}: service / lower bound",
                f"{run.seconds:.1f} s / {bound.seconds:.1f} s = {run.seconds / bound.seconds:.2f}"
                f" x (load before: {load})",
            )
            if final:
                report.figure(
                    f"{layout} index size after the import", index_mib(found, layout), "MiB"
                )
    for layout in LAYOUTS:
        service_s, bound_s = times[layout], bounds[layout]
        report.figure(f"{layout}: service time, each round", _list(service_s), "s")
        report.figure(f"{layout}: lower-bound time, each round", _list(bound_s), "s")
        ratios = [s / b for s, b in zip(service_s, bound_s, strict=True)]
        report.figure(f"{layout}: service / lower bound, each round", _list(ratios, 2), "x")
        report.figure(
            f"{layout}: walk of the job by keyset pages, each round", _list(walks[layout], 2), "s"
        )
    base = statistics.median(times["none"])
    for layout in ("btree", "brin"):
        report.figure(
            f"{layout}: median service time / none's", statistics.median(times[layout]) / base, "x"
        )
    spread = [max(times[layout]) / min(times[layout]) for layout in LAYOUTS]
    report.figure(
        "spread between rounds (max / min service time, per layout)", _list(spread, 2), "x"
    )

    say(f"job {last_job}: downloading successes.csv")
    with service(setup) as running:
        download = download_successes(running, last_job)
    report.figure("successes.csv time", download.seconds, "s")
    report.figure("successes.csv size", download.size / MIB, "MiB")
    report.figure("successes.csv lines (header included)", download.lines, "lines")
    report.figure("successes.csv speed", download.size / MIB / download.seconds, "MiB/s")
    report.figure("API RSS before the download", download.rss_before, "MiB")
    report.figure(
        "API peak RSS during the download (sampled every 0.1 s)", download.rss_during, "MiB"
    )
    report.figure("API peak RSS (VmHWM, whole life)", download.rss_peak, "MiB")
    complete = download.lines == data.expected.applied + 1
    report.figure("successes.csv complete", "yes" if complete else "no")
    report.figure("load average at the end (1, 5, 15 min)", _load())
    match = ok and complete
    report.figure("counts match", "yes" if match else "no")
    return 0 if match else 1


def _list(values: list[float], digits: int = 1) -> str:
    return ", ".join(f"{value:.{digits}f}" for value in values)
