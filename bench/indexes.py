"""What each index of migration 0010 costs and saves, measured with and without it.

`python -m bench.indexes` (or `make bench-indexes`): a scratch database on the Postgres the bench
finds, migrated to head, filled by set-based SQL, then for each index the statement it serves
(or slows) timed with the index and without it, in the same run, median of a few repetitions:
- ix_job_row_errors_job_id_code (dropped): inserting a chunk's failed rows;
- ix_upload_jobs_org_id_id: the job list without a series filter, newest first;
- ix_coupons_issued_to_customer_id: deleting a customer who has issued coupons.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from bench.services import connect, find, with_database

DATABASE = "bulkredeem_bench_indexes"


def _timed(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _fill(conn: psycopg.Connection[Any], jobs: int, coupons: int) -> tuple[int, int, int]:
    """`jobs` jobs, a hundredth of them (over 100 series) of the org measured and the rest,
    newer, of 49 others; and `coupons` coupons of that org issued to its customers."""
    org = conn.execute("INSERT INTO orgs (name) VALUES ('indexes') RETURNING id").fetchone()
    assert org is not None
    org_id = int(org[0])
    conn.execute(
        "INSERT INTO coupon_series (org_id, name)"
        " SELECT %s, 's' || g FROM generate_series(1, 100) g",
        (org_id,),
    )
    series = [r[0] for r in conn.execute("SELECT id FROM coupon_series ORDER BY id")]
    conn.execute(
        """
        INSERT INTO upload_jobs (org_id, series_id, status, customer_identifier,
            coupon_identifier, upload_headers, delimiter, has_header, encoding, report_header,
            file_name, file_size, file_sha256, storage_key, finished_at)
        SELECT %(org)s, (%(series)s::bigint[])[1 + g %% 100], 'COMPLETED', 'MOBILE',
            'COUPON_CODE', '{}'::jsonb, ',', true, 'utf-8', ARRAY['a'], 'f.csv', 1,
            repeat('0', 64), 'k' || g, now() - make_interval(secs => g)
        FROM generate_series(1, %(jobs)s) g
        """,
        {"org": org_id, "series": series, "jobs": jobs // 100},
    )
    # Forty-nine other orgs made the other jobs, all newer: the first page of this org's lies
    # below every one of them, as a small org's does among busy ones.
    conn.execute("INSERT INTO orgs (name) SELECT 'busier ' || g FROM generate_series(1, 49) g")
    conn.execute(
        "INSERT INTO coupon_series (org_id, name) SELECT id, 'o' FROM orgs WHERE id <> %s",
        (org_id,),
    )
    conn.execute(
        """
        INSERT INTO upload_jobs (org_id, series_id, status, customer_identifier,
            coupon_identifier, upload_headers, delimiter, has_header, encoding, report_header,
            file_name, file_size, file_sha256, storage_key, finished_at)
        SELECT s.org_id, s.id, 'COMPLETED', 'MOBILE', 'COUPON_CODE', '{}'::jsonb, ',',
            true, 'utf-8', ARRAY['a'], 'f.csv', 1, repeat('0', 64), 'o' || g, now()
        FROM generate_series(1, %(jobs)s) g
        JOIN coupon_series s ON s.org_id <> %(org)s
            AND s.id = (SELECT min(id) FROM coupon_series WHERE org_id <> %(org)s) + g %% 49
        """,
        {"org": org_id, "jobs": jobs - jobs // 100},
    )
    conn.execute(
        """
        INSERT INTO customers (org_id, mobile)
        SELECT %s, (9000000000 + g)::text FROM generate_series(1, %s) g
        """,
        (org_id, coupons // 10),
    )
    first = conn.execute("SELECT min(id) FROM customers").fetchone()
    assert first is not None
    conn.execute(
        """
        INSERT INTO coupons (org_id, series_id, code, issued_to_customer_id)
        SELECT %s, %s, 'C' || g, %s + g %% %s FROM generate_series(1, %s) g
        """,
        (org_id, series[0], first[0], coupons // 10, coupons),
    )
    job = conn.execute("SELECT max(id) FROM upload_jobs WHERE org_id = %s", (org_id,)).fetchone()
    assert job is not None
    conn.execute("VACUUM (ANALYZE) upload_jobs, coupons, customers, job_row_errors")
    return org_id, int(job[0]), int(first[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--coupons", type=int, default=1_000_000)
    parser.add_argument("--errors", type=int, default=20_000, help="failed rows in one chunk")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    services = find()
    server = with_database(services.owner_url, "postgres")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    url = with_database(services.owner_url, DATABASE)
    try:
        from core.migrate import upgrade

        upgrade(url)
        print(
            f"Postgres: {services.where}; {args.jobs:,} jobs (1% of the org measured, the rest"
            f" newer, of 49 others), {args.coupons:,} coupons"
        )
        with connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            org_id, job_id, first_customer = _fill(conn, args.jobs, args.coupons)
            print(f"filled in {time.perf_counter() - started:.1f} s")
            results = [
                _row_errors(conn, org_id, job_id, args.errors, args.repeat),
                _job_list(conn, org_id, args.repeat),
                _customer_delete(conn, first_customer, args.repeat),
            ]
        print()
        print(f"{'index':<36} {'statement':<38} {'with':>10} {'without':>10}")
        for name, statement, with_index, without in results:
            print(
                f"{name:<36} {statement:<38} {with_index * 1000:>8.1f}ms {without * 1000:>8.1f}ms"
            )
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
            )
    return 0


def _row_errors(
    conn: psycopg.Connection[Any], org_id: int, job_id: int, count: int, repeat: int
) -> tuple[str, str, float, float]:
    def insert() -> None:
        with conn.transaction():
            conn.execute(
                """
                INSERT INTO job_row_errors (job_id, row_number, org_id, code, message, cells)
                SELECT %s, g, %s, 700 + g %% 30, 'message', ARRAY['a', 'b', 'c']
                FROM generate_series(1, %s) g
                """,
                (job_id, org_id, count),
            )
            conn.execute("DELETE FROM job_row_errors WHERE job_id = %s", (job_id,))

    name = "ix_job_row_errors_job_id_code"
    conn.execute(f"CREATE INDEX {name} ON job_row_errors (job_id, code)")
    with_index = _timed(insert, repeat)
    conn.execute(f"DROP INDEX {name}")
    without = _timed(insert, repeat)
    return name + " (dropped)", f"insert {count:,} failed rows", with_index, without


def _job_list(
    conn: psycopg.Connection[Any], org_id: int, repeat: int
) -> tuple[str, str, float, float]:
    def page() -> None:
        conn.execute(
            "SELECT * FROM upload_jobs WHERE org_id = %s ORDER BY id DESC LIMIT 51", (org_id,)
        ).fetchall()

    name = "ix_upload_jobs_org_id_id"
    with_index = _timed(page, repeat)
    conn.execute(f"DROP INDEX {name}")
    conn.execute("ANALYZE upload_jobs")
    without = _timed(page, repeat)
    conn.execute(f"CREATE INDEX {name} ON upload_jobs (org_id, id)")
    return name, "GET /v1/jobs, first page", with_index, without


def _customer_delete(
    conn: psycopg.Connection[Any], first_customer: int, repeat: int
) -> tuple[str, str, float, float]:
    victims = iter(range(first_customer, first_customer + 2 * repeat))

    def delete() -> None:
        with conn.transaction():
            conn.execute("DELETE FROM customers WHERE id = %s", (next(victims),))

    name = "ix_coupons_issued_to_customer_id"
    with_index = _timed(delete, repeat)
    conn.execute(f"DROP INDEX {name}")
    without = _timed(delete, repeat)
    conn.execute(f"CREATE INDEX {name} ON coupons (issued_to_customer_id)")
    return name, "delete a customer (10 coupons)", with_index, without


if __name__ == "__main__":
    sys.exit(main())
