"""Fetch the next page while the engine writes this one.

Most of a sync's wall time is waiting: for the external API to render a page, then for the database to take
it. Running the connector's page generator one page ahead in a thread overlaps the two, without changing
what the engine sees: the same pages, in the same order, each committed and checkpointed before the next.
"""

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


def read_ahead(pages: Iterator[T], *, idle: Callable[[], None] | None = None, every: float = 1.0) -> Iterator[T]:
    """Yield the pages of `pages`, fetched one ahead in a thread. While waiting for a page, `idle` is called
    every `every` seconds (the engine's heartbeat); what it raises stops the stream."""
    handoff: queue.Queue = queue.Queue()
    may_fetch = threading.Semaphore(1)  # at most one page fetched ahead of the one being written
    stop = threading.Event()

    def produce():
        try:
            for page in pages:
                handoff.put((page, None))
                while not may_fetch.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
            handoff.put((_END, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            handoff.put((None, exc))
        finally:
            close = getattr(pages, "close", None)
            if close:
                close()

    # The correlation id (a context variable) must follow the requests into the thread.
    worker = threading.Thread(target=contextvars.copy_context().run, args=(produce,), daemon=True,
                              name="syncplane-read-ahead")
    worker.start()
    try:
        while True:
            try:
                page, error = handoff.get(timeout=every if idle else None)
            except queue.Empty:
                idle()
                continue
            if error is not None:
                raise error
            if page is _END:
                return
            may_fetch.release()
            yield page
    finally:
        stop.set()
        worker.join(timeout=30)
