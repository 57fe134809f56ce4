"""Fetch the next page while the engine writes this one, and write it while the engine maps the next.

Most of a sync's wall time is waiting: for the external API to render a page, then for the database to take
it. Running the connector's page generator one page ahead in a thread overlaps the two (`read_ahead`), and so
does writing pages from a thread of their own (`WriteBehind`), without changing what the engine's pages see:
the same pages, in the same order, each planned against the rows of the pages before it, committed and
checkpointed before the next.
"""

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS, connections

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


class WriteBehind:
    """Write each page in a thread of its own while the caller maps the next one.

    `submit(item)` hands an item to `write(item)`, which runs in the writer thread, in order, and returns once the
    writer has taken it: one page written while the next is mapped, none waiting in between, so memory stays a
    few pages whatever the run's size, and the fetch runs no further ahead of the writes than without the writer
    (read-ahead's one page). The writer borrows the caller's database
    connection (Django's connections are per thread): one connection, one transaction at a time, and on SQLite
    still one writer. While the writer lives, the caller must not use the database; a query from any other
    thread on that connection raises at once instead of racing. While no page waits, the writer calls `idle`
    every `every` seconds (the engine's look for a cancel request).

    What `write` raises stops the writer: later items are dropped, and the caller gets the exception itself from
    its next `submit`, `idle` or the end of the `with` block, so a failed page fails the run as if it had been
    written inline. Leaving the block, normally or on an exception of the caller's (a fetch error, Ctrl-C), waits
    for every submitted item to be written, as inline writing would have done before the caller got that far (a
    second exception while waiting drops the items not started). `waited` is the time the caller spent blocked
    on the writer: the part of the writing that did not overlap the caller's own work.

    With `threaded=False` the same calls write inline, in the caller's thread: one code path either way.
    """

    def __init__(self, write: Callable[[T], None], *, threaded: bool, idle: Callable[[], None] | None = None,
                 every: float = 1.0):
        self.write = write
        self.threaded = threaded
        self._idle = idle
        self.every = every
        self.items: queue.Queue = queue.Queue(maxsize=1)
        self.taken = threading.Semaphore(0)  # released by the writer as it takes each item
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.worker: threading.Thread | None = None
        self.waited = 0.0

    def __enter__(self) -> "WriteBehind":
        if self.threaded:
            self.connection = connections[DEFAULT_DB_ALIAS]
            self.connection.inc_thread_sharing()
            self.connection.execute_wrappers.append(self._writer_only)
            self.worker = threading.Thread(target=contextvars.copy_context().run, args=(self._run,), daemon=True,
                                           name="syncplane-write-behind")
            self.worker.start()
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if self.worker is None:
            return False
        started = time.perf_counter()
        while True:
            try:
                while self.worker.is_alive():  # a writer that stopped on an error takes nothing more
                    try:
                        self.items.put(_END, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                self.worker.join()
                break
            except BaseException:  # noqa: BLE001 - a second Ctrl-C: the page being written finishes, no more
                self.stopping.set()
        self.waited += time.perf_counter() - started
        self.connection.execute_wrappers.remove(self._writer_only)
        self.connection.dec_thread_sharing()
        self.worker = None
        if exc is None:
            self.raise_error()
        return False

    def submit(self, item: T) -> None:
        if self.worker is None:
            self.write(item)
            return
        started = time.perf_counter()
        try:
            while True:
                self.raise_error()
                try:
                    self.items.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            while not self.taken.acquire(timeout=0.1):
                self.raise_error()
        finally:
            self.waited += time.perf_counter() - started

    def idle(self) -> None:
        """For the caller to call while it waits: the error of the writer, if any; inline, `idle` itself."""
        if self.worker is None:
            if self._idle:
                self._idle()
            return
        self.raise_error()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        connections[DEFAULT_DB_ALIAS] = self.connection  # this thread's queries go through the caller's connection
        try:
            while True:
                try:
                    item = self.items.get(timeout=self.every if self._idle else None)
                except queue.Empty:
                    self._idle()
                    continue
                if item is _END or self.stopping.is_set():
                    return
                self.taken.release()
                self.write(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
            self.error = exc
        finally:
            # Drain the queue so that a caller blocked in submit() sees the error instead of waiting.
            while not self.items.empty():
                self.items.get_nowait()

    def _writer_only(self, execute, sql, params, many, context):
        if threading.current_thread() is not self.worker:
            raise RuntimeError("the database connection belongs to the write-behind thread until it stops")
        return execute(sql, params, many, context)
