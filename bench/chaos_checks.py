"""The chaos run's invariants, checked in Postgres and over the API once every job has ended.

Each check gives its numbers whether it holds or not, so that a passing run shows what it
looked at and a failing one what broke and where.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from bench.chaos_scenario import JobFile, Scenario
from bench.chaos_traffic import Answers, Outcome, fetch_json, fetch_text

ENDED_WELL = ("COMPLETED", "COMPLETED_WITH_ERRORS")
SHOWN = 5  # examples given of a broken invariant


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    numbers: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.numbers}"


@dataclass
class JobRow:
    id: int
    org_id: int
    series_id: int
    status: str
    processed: int
    succeeded: int
    failed: int
    attempts: int
    failure_reason: str | None
    idempotency_key: str | None
    file_sha256: str
    redemptions: int = 0
    redeemed_rows: int = 0  # distinct row numbers among its redemptions
    errors: int = 0
    overlap: int = 0  # row numbers with both a redemption and an error
    outcome_rows: int = 0  # distinct row numbers with any outcome
    first_row: int | None = None
    last_row: int | None = None
    error_codes: dict[int, int] = field(default_factory=dict)  # row number -> code


def _examples(items: list[str]) -> str:
    if not items:
        return ""
    more = f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return "; e.g. " + "; ".join(items[:SHOWN]) + more


def _org_conn(database_url: str, org_id: int) -> psycopg.Connection[Any]:
    """The owner's connection, scoped to one org: row-level security applies to the owner too
    where it is not a superuser."""
    conn = psycopg.connect(database_url, autocommit=True)
    conn.execute("SELECT set_config('app.org_id', %s, false)", (str(org_id),))
    return conn


def load_jobs(database_url: str, scenario: Scenario) -> dict[int, JobRow]:
    jobs: dict[int, JobRow] = {}
    for org in scenario.orgs:
        with _org_conn(database_url, org.id) as conn:
            for row in conn.execute(
                """
                SELECT id, org_id, series_id, status, rows_processed, rows_succeeded,
                    rows_failed, attempts, failure_reason, idempotency_key, file_sha256
                FROM upload_jobs WHERE org_id = %s
                """,
                (org.id,),
            ):
                jobs[int(row[0])] = JobRow(*row)
            for job_id, n, distinct in conn.execute(
                "SELECT job_id, count(*), count(DISTINCT row_number) FROM redemptions"
                " WHERE org_id = %s GROUP BY job_id",
                (org.id,),
            ):
                if job_id in jobs:
                    jobs[job_id].redemptions, jobs[job_id].redeemed_rows = int(n), int(distinct)
            for job_id, row_number, code in conn.execute(
                "SELECT job_id, row_number, code FROM job_row_errors WHERE org_id = %s",
                (org.id,),
            ):
                if job_id in jobs:
                    jobs[job_id].errors += 1
                    jobs[job_id].error_codes[int(row_number)] = int(code)
            for job_id, overlap, rows, first, last in conn.execute(
                """
                SELECT job_id, count(*) FILTER (WHERE kinds > 1), count(*), min(row_number),
                    max(row_number)
                FROM (
                    SELECT job_id, row_number, count(*) AS kinds FROM (
                        SELECT DISTINCT job_id, row_number, 'r' AS kind FROM redemptions
                        WHERE org_id = %(org)s
                        UNION ALL
                        SELECT job_id, row_number, 'e' FROM job_row_errors
                        WHERE org_id = %(org)s
                    ) o GROUP BY job_id, row_number
                ) per_row GROUP BY job_id
                """,
                {"org": org.id},
            ):
                if job_id in jobs:
                    job = jobs[job_id]
                    job.overlap, job.outcome_rows = int(overlap), int(rows)
                    job.first_row, job.last_row = int(first), int(last)
    return jobs


@dataclass
class Inputs:
    scenario: Scenario
    outcomes: list[Outcome]
    answers: Answers
    database_url: str  # the owner's URL of the run's database
    base_url: str
    ended_at: float | None  # when every job had ended, in the run's seconds; None: not all
    last_fault_ended: float | None


def files_of_jobs(inputs: Inputs, jobs: dict[int, JobRow]) -> dict[int, JobFile]:
    """Each job's file, found by the key it was uploaded under and the bytes it holds."""
    by_key: dict[tuple[str, str], JobFile] = {}
    for outcome in inputs.outcomes:
        request = outcome.request
        by_key[(request.key, request.file.sha256)] = request.file
    found = {}
    for job in jobs.values():
        if job.idempotency_key is not None:
            match = by_key.get((job.idempotency_key, job.file_sha256))
            if match is not None:
                found[job.id] = match
    return found


def check_answers(inputs: Inputs) -> Check:
    answers = inputs.answers
    shown = ", ".join(f"{n} {status}" for status, n in sorted(answers.statuses.items()))
    ok = answers.server_errors == 0 and answers.no_answer == 0
    return Check(
        "no 5xx answered",
        ok,
        f"{answers.total} requests: {shown or 'none'}; {answers.server_errors} 5xx,"
        f" {answers.no_answer} without an answer" + _examples(answers.bad),
    )


def check_uploads(inputs: Inputs, jobs: dict[int, JobRow]) -> Check:
    """Every request got a definitive answer, and each key has one job, the one every request
    of that key's winning content got; the others got 409."""
    by_key: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in inputs.outcomes:
        by_key[outcome.request.key].append(outcome)
    jobs_by_key: dict[str, list[JobRow]] = defaultdict(list)
    for job in jobs.values():
        if job.idempotency_key is not None:
            jobs_by_key[job.idempotency_key].append(job)
    problems: list[str] = []
    conflicts = same = conflicting_first = 0
    for key, outcomes in sorted(by_key.items()):
        made = jobs_by_key.get(key, [])
        if len(made) != 1:
            problems.append(f"key {key} has {len(made)} jobs")
            continue
        winner = made[0]
        # Sent at the same moment, any of them may come first: the key is then that one's.
        conflicting_first += any(
            o.request.conflicting and o.request.file.sha256 == winner.file_sha256 for o in outcomes
        )
        for outcome in outcomes:
            if outcome.request.file.sha256 == winner.file_sha256:
                if outcome.job_id != winner.id:
                    problems.append(
                        f"key {key}: a same request got {outcome.job_id} (answers"
                        f" {outcome.answers}), not job {winner.id}"
                    )
                else:
                    same += 1
            elif not outcome.conflict:
                problems.append(f"key {key}: a different request got {outcome.answers}, not 409")
            else:
                conflicts += 1
    expected_conflicts = sum(1 for o in inputs.outcomes if o.request.conflicting)
    return Check(
        "the same idempotency key, the same job",
        not problems,
        f"{len(by_key)} keys, {len(inputs.outcomes)} requests: {same} got their key's job,"
        f" {conflicts} got 409 (conflicting requests sent: {expected_conflicts}, of which"
        f" {conflicting_first} came first and took the key);"
        f" {len(problems)} wrong" + _examples(problems),
    )


def check_ended(inputs: Inputs, jobs: dict[int, JobRow]) -> Check:
    statuses = Counter(job.status for job in jobs.values())
    bad = [j for j in jobs.values() if j.status not in ENDED_WELL]
    examples = [
        f"job {j.id} {j.status} after {j.attempts} attempts ({(j.failure_reason or '')[:300]})"
        for j in sorted(bad, key=lambda j: j.id)
    ]
    attempts = Counter(job.attempts for job in jobs.values())
    if inputs.ended_at is None:
        took = "not all ended in time"
    else:
        took = f"all ended by {inputs.ended_at:.1f} s into the run"
        if inputs.last_fault_ended is not None:
            took += f" (the last fault was over at {inputs.last_fault_ended:.1f} s)"
    return Check(
        "every job ended, none stuck or failed",
        not bad and bool(jobs),
        f"{len(jobs)} jobs: "
        + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
        + f"; attempts {dict(sorted(attempts.items()))}; {took}"
        + _examples(examples),
    )


def check_counts(inputs: Inputs, jobs: dict[int, JobRow], files: dict[int, JobFile]) -> Check:
    """processed = data records = succeeded + failed; succeeded = its redemptions; failed =
    its error rows = its errors CSV's rows; the job document says the same as Postgres."""
    problems: list[str] = []
    documents = csv_rows = 0
    with httpx.Client(base_url=inputs.base_url, timeout=120.0) as http:
        for job in sorted(jobs.values(), key=lambda j: j.id):
            job_file = files.get(job.id)
            if job_file is None:
                problems.append(f"job {job.id}: no file of the run has its key and bytes")
                continue
            key = inputs.scenario.orgs[job_file.series.org].api_key
            if not (job.processed == job_file.records == job.succeeded + job.failed):
                problems.append(
                    f"job {job.id}: processed {job.processed}, records {job_file.records},"
                    f" succeeded {job.succeeded} + failed {job.failed}"
                )
            if job.succeeded != job.redemptions:
                problems.append(
                    f"job {job.id}: succeeded {job.succeeded}, redemptions {job.redemptions}"
                )
            if job.failed != job.errors:
                problems.append(f"job {job.id}: failed {job.failed}, error rows {job.errors}")
            document = fetch_json(http, inputs.answers, f"/v1/jobs/{job.id}", key)
            if document is None:
                problems.append(f"job {job.id}: no job document")
            else:
                documents += 1
                progress = document["progress"]
                seen = (
                    document["status"],
                    progress["rowsProcessed"],
                    progress["rowsSucceeded"],
                    progress["rowsFailed"],
                )
                if seen != (job.status, job.processed, job.succeeded, job.failed):
                    problems.append(f"job {job.id}: document {seen}, Postgres {job.status}")
            report = fetch_text(http, inputs.answers, f"/v1/jobs/{job.id}/errors.csv", key)
            if report is None:
                problems.append(f"job {job.id}: no errors.csv")
                continue
            rows = len(list(csv.reader(io.StringIO(report)))) - 1  # its header
            csv_rows += rows
            if rows != job.failed:
                problems.append(f"job {job.id}: errors.csv has {rows} rows, failed {job.failed}")
    processed = sum(j.processed for j in jobs.values())
    succeeded = sum(j.succeeded for j in jobs.values())
    return Check(
        "per job: processed = records = succeeded + failed, succeeded = redemptions,"
        " failed = error rows = errors.csv rows",
        not problems,
        f"{processed} rows processed, {succeeded} succeeded, {processed - succeeded} failed;"
        f" {documents} job documents and {csv_rows} errors.csv rows read over the API;"
        f" {len(problems)} wrong" + _examples(problems),
    )


def check_one_outcome(jobs: dict[int, JobRow], files: dict[int, JobFile]) -> Check:
    problems: list[str] = []
    for job in sorted(jobs.values(), key=lambda j: j.id):
        job_file = files.get(job.id)
        if job_file is None:
            continue
        # The files have no blank lines: their records are rows 2 .. records + 1.
        expected = (job_file.records, 2, job_file.records + 1)
        seen = (job.outcome_rows, job.first_row, job.last_row)
        if job.overlap or job.redemptions != job.redeemed_rows or seen != expected:
            problems.append(
                f"job {job.id}: {job.outcome_rows} rows with an outcome of {job_file.records},"
                f" {job.overlap} with two, {job.redemptions - job.redeemed_rows} redeemed twice"
            )
    rows = sum(j.outcome_rows for j in jobs.values())
    return Check(
        "every record exactly one outcome",
        not problems and bool(jobs),
        f"{rows} records with one outcome each over {len(jobs)} jobs; {len(problems)} jobs"
        " wrong" + _examples(problems),
    )


def check_bad_rows(jobs: dict[int, JobRow], files: dict[int, JobFile]) -> Check:
    problems: list[str] = []
    total = 0
    for job in sorted(jobs.values(), key=lambda j: j.id):
        job_file = files.get(job.id)
        if job_file is None:
            continue
        for row_number, code in sorted(job_file.must_fail.items()):
            total += 1
            got = job.error_codes.get(row_number)
            if got != code:
                problems.append(f"job {job.id} row {row_number}: {got}, not {code}")
    return Check(
        "rows bad in themselves failed with their code (701, 702, 729)",
        not problems,
        f"{total} such rows; {len(problems)} wrong" + _examples(problems),
    )


def _one(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> tuple[Any, ...]:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return tuple(row)


# Per org: coupons past their series' limit, customers past a series' per-customer limit, and
# customers who redeemed a coupon twice where the series forbids it.
_BROKEN_LIMITS = """
    SELECT
        (SELECT count(*) FROM (
            SELECT 1 FROM redemptions r JOIN coupon_series s ON s.id = r.series_id
            WHERE r.org_id = %(org)s AND s.max_redemptions_per_coupon IS NOT NULL
            GROUP BY r.coupon_id, s.max_redemptions_per_coupon
            HAVING count(*) > s.max_redemptions_per_coupon) o),
        (SELECT count(*) FROM (
            SELECT 1 FROM redemptions r JOIN coupon_series s ON s.id = r.series_id
            WHERE r.org_id = %(org)s AND s.max_redemptions_per_customer IS NOT NULL
            GROUP BY r.customer_id, r.series_id, s.max_redemptions_per_customer
            HAVING count(*) > s.max_redemptions_per_customer) o),
        (SELECT count(*) FROM (
            SELECT 1 FROM redemptions r JOIN coupon_series s ON s.id = r.series_id
            WHERE r.org_id = %(org)s AND NOT s.same_user_multiple_redeem
            GROUP BY r.customer_id, r.coupon_id HAVING count(*) > 1) o)
"""


def check_limits(inputs: Inputs) -> Check:
    """No coupon past its series' limit, no customer past the series' per-customer limit, no
    customer redeeming a coupon twice where the series forbids it."""
    over_coupon = over_customer = same_user = 0
    busiest: list[str] = []
    for org in inputs.scenario.orgs:
        with _org_conn(inputs.database_url, org.id) as conn:
            params = {"org": org.id}
            coupon_excess, customer_excess, repeats = _one(conn, _BROKEN_LIMITS, params)
            over_coupon += coupon_excess
            over_customer += customer_excess
            same_user += repeats
            for series in inputs.scenario.series:
                if series.org != org.index:
                    continue
                used, top, coupons = _one(
                    conn,
                    """
                    SELECT count(*), coalesce(max(n), 0), count(DISTINCT coupon_id) FROM (
                        SELECT coupon_id, count(*) OVER (PARTITION BY coupon_id) AS n
                        FROM redemptions WHERE series_id = %(series)s) r
                    """,
                    {"series": series.id},
                )
                limit = series.kind.max_per_coupon
                busiest.append(
                    f"{series.kind.name}: {used} on {coupons} coupons,"
                    f" at most {top} on one (limit {limit if limit is not None else 'none'})"
                )
    return Check(
        "no limit broken",
        over_coupon == 0 and over_customer == 0 and same_user == 0,
        f"{over_coupon} coupons over their limit, {over_customer} customers over a series'"
        f" limit, {same_user} repeats where the same user may not; " + "; ".join(busiest),
    )


def check_counters(inputs: Inputs) -> Check:
    wrong = coupons = redeemed = 0
    for org in inputs.scenario.orgs:
        with _org_conn(inputs.database_url, org.id) as conn:
            bad, n, total = _one(
                conn,
                """
                SELECT count(*) FILTER (WHERE coalesce(c.redemption_count, 0)
                        <> coalesce(r.n, 0)),
                    count(*), coalesce(sum(r.n), 0)
                FROM (SELECT coupon_id, redemption_count FROM coupon_counters
                      WHERE org_id = %(org)s) c
                FULL JOIN (SELECT coupon_id, count(*) AS n FROM redemptions
                           WHERE org_id = %(org)s GROUP BY coupon_id) r USING (coupon_id)
                """,
                {"org": org.id},
            )
            wrong, coupons, redeemed = wrong + bad, coupons + n, redeemed + total
    return Check(
        "counters equal redemptions",
        wrong == 0,
        f"{coupons} coupons with a counter or a redemption, {redeemed} redemptions;"
        f" {wrong} counters wrong",
    )


def check_natural_key(inputs: Inputs) -> Check:
    duplicates = 0
    for org in inputs.scenario.orgs:
        with _org_conn(inputs.database_url, org.id) as conn:
            duplicates += _one(
                conn,
                """
                SELECT count(*) FROM (
                    SELECT 1 FROM redemptions WHERE org_id = %(org)s
                    GROUP BY coupon_id, redeemed_ms, till_id, bill_id, bill_number
                    HAVING count(*) > 1) d
                """,
                {"org": org.id},
            )[0]
    return Check(
        "no duplicate natural key", duplicates == 0, f"{duplicates} natural keys recorded twice"
    )


def check_all(inputs: Inputs) -> list[Check]:
    jobs = load_jobs(inputs.database_url, inputs.scenario)
    files = files_of_jobs(inputs, jobs)
    # The API's own answers while checking count too: the "no 5xx" check comes last.
    checks = [
        check_uploads(inputs, jobs),
        check_ended(inputs, jobs),
        check_counts(inputs, jobs, files),
        check_one_outcome(jobs, files),
        check_bad_rows(jobs, files),
        check_limits(inputs),
        check_counters(inputs),
        check_natural_key(inputs),
    ]
    checks.append(check_answers(inputs))
    return checks
