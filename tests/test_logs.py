"""Log lines: JSON objects with the job's fields, and at most one INFO line per chunk."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from core import pipeline
from core.logs import JsonFormatter, TextFormatter, log_context
from core.settings import get_settings
from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_job, create_series


def formatted(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.handle(record)
    return stream.getvalue()


def record(message: str, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("tests.logs")
    return logger.makeRecord(logger.name, logging.INFO, __file__, 1, message, (), None, extra=extra)


def test_a_record_with_job_fields_is_one_json_object_on_one_line() -> None:
    line = formatted(JsonFormatter(), record("chunk %s", job_id=7, org_id=3, chunk=42))
    assert line.endswith("\n") and line.count("\n") == 1
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "tests.logs"
    assert entry["message"] == "chunk %s"
    assert (entry["job_id"], entry["org_id"], entry["chunk"]) == (7, 3, 42)
    assert entry["time"].endswith("+00:00")


def test_an_exception_stays_inside_its_json_line() -> None:
    logger = logging.getLogger("tests.logs")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        rec = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = formatted(JsonFormatter(), rec)
    assert line.count("\n") == 1
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_the_job_context_reaches_lines_logged_without_extra() -> None:
    with log_context(job_id=9, org_id=4), log_context(chunk=2):
        entry = json.loads(formatted(JsonFormatter(), record("hello")))
        text_line = formatted(TextFormatter(), record("hello"))
    assert (entry["job_id"], entry["org_id"], entry["chunk"]) == (9, 4, 2)
    assert "hello [job_id=9 org_id=4 chunk=2]" in text_line
    assert "job_id" not in json.loads(formatted(JsonFormatter(), record("after")))


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Everything logged at INFO and above, through the JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_run_slice_logs_one_info_line_per_chunk_with_the_job_fields(
    org: tuple[int, str], monkeypatch: pytest.MonkeyPatch, json_lines: io.StringIO
) -> None:
    org_id = org[0]
    series = create_series(org_id)
    customer = create_customer(org_id, mobile="9000000001")
    create_coupon(org_id, series, "ONE", issued_to=customer)
    rows = [f"{SAMPLE_MS + i},T1,9000000001,ONE" for i in range(5)]  # 1 applied, 4 x 716
    job = create_job(org_id, series, ["date,till,mobile,code", *rows])
    monkeypatch.setattr(get_settings(), "chunk_rows", 2)

    assert pipeline.run_slice(job, slice_seconds=60) is pipeline.SliceResult.DONE

    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    chunk_lines = [
        line
        for line in lines
        if line["logger"] == "core.pipeline" and line["level"] == "INFO" and "chunk" in line
    ]
    assert [line["message"] for line in chunk_lines] == ["chunk applied"] * 3
    assert {line["job_id"] for line in chunk_lines} == {job}
    assert {line["org_id"] for line in chunk_lines} == {org_id}
    assert len({line["chunk"] for line in chunk_lines}) == 3
    assert [line["rows"] for line in chunk_lines] == [2, 2, 1]
    assert sum(line["failed"] for line in chunk_lines) == 4
    assert all(line["seconds"] >= 0 for line in chunk_lines)
