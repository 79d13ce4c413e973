"""Log lines: one JSON object a line (the default) or plain text, for the API and the worker.

The fields `job_id`, `org_id` and `chunk` come from a record's `extra=` or, failing that,
from the job context that core/pipeline.py sets while it works on a job (in that thread).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = ("job_id", "org_id", "chunk")

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "bulkredeem_log_context", default=None
)

# Attributes every LogRecord has: anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields (job_id, org_id, chunk) to every line logged in this context."""
    merged = {**(_context.get() or {}), **fields}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, then the context fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context.get() or {})
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The plain format, with the context fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {**(_context.get() or {})}
        for key in CONTEXT_FIELDS:
            if key in record.__dict__:
                fields[key] = record.__dict__[key]
        if not fields:
            return line
        first, sep, rest = line.partition("\n")
        tail = " ".join(f"{key}={value}" for key, value in fields.items())
        return f"{first} [{tail}]{sep}{rest}"


def formatter(log_format: str) -> logging.Formatter:
    return TextFormatter() if log_format == "text" else JsonFormatter()


def format_handlers(logger: logging.Logger, log_format: str) -> None:
    """Give every handler of `logger` our formatter (Celery's and uvicorn's handlers)."""
    for handler in logger.handlers:
        handler.setFormatter(formatter(log_format))


def configure(log_format: str, level: int = logging.INFO) -> None:
    """Root logging to stderr in our format; idempotent, and it keeps others' handlers."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_bulkredeem", False)]
    if ours:
        handler = ours[0]
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler._bulkredeem = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(formatter(log_format))
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
