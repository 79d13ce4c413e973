"""Running an iterator one step ahead in a thread, so that parsing overlaps the database.

The worker's main thread spends most of a chunk waiting on Postgres (psycopg releases the
GIL while it waits); meanwhile the next chunk is read and checked here.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

_END = object()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


@contextmanager
def prefetched(source: Generator[T, None, None], depth: int = 1) -> Iterator[Iterator[T]]:
    """Iterate `source` in a background thread, at most `depth` items ahead of the consumer."""
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not offer(item):
                    return
            offer(_END)
        except BaseException as exc:  # handed to the consumer, who raises it
            offer(_Raised(exc))
        finally:
            source.close()

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()

    def consume() -> Iterator[T]:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item  # type: ignore[misc]

    try:
        yield consume()
    finally:
        stop.set()
        thread.join()
