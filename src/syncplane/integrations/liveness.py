"""Is a run alive? Its worker says so by beating: a thread, started when the run is claimed and stopped when it
ends, writes the log's heartbeat_at every SYNCPLANE_HEARTBEAT_SECONDS with a database connection of its own,
whatever the run is doing (waiting on a Retry-After, writing a large page, reconciling). A run that missed
SYNCPLANE_HEARTBEAT_DEAD_AFTER beats in a row is dead: its worker was killed, or can no longer reach the database.

The thread only writes; it never decides. Whether a run was cancelled or taken for dead is read by the run
itself, on its own connection (a thread's connection cannot see what the run's transaction has not committed).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from syncplane.integrations.choices import RunStatus
from syncplane.integrations.models import IntegrationSyncLog

logger = logging.getLogger("syncplane.sync")


def dead_after() -> timedelta:
    """How long a running log may stay without a beat before it is taken for dead."""
    return timedelta(seconds=settings.SYNCPLANE_HEARTBEAT_SECONDS * settings.SYNCPLANE_HEARTBEAT_DEAD_AFTER)


def dead_before(now: datetime | None = None) -> datetime:
    """A running log whose last beat is older than this is dead."""
    return (now or timezone.now()) - dead_after()


class Heartbeat:
    """Beats for one running log until stopped. A beat that fails (the database restarting) is logged and tried
    again at the next interval, on a fresh connection."""

    def __init__(self, log_id: int, every: float | None = None):
        self.log_id = log_id
        self.every = every if every is not None else settings.SYNCPLANE_HEARTBEAT_SECONDS
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,), daemon=True,
                                        name=f"syncplane-heartbeat-{log_id}")

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.every + 30)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.every):
                self.beat()
        finally:
            connection.close()  # the thread's own connection, not the run's

    def beat(self) -> None:
        try:
            # Only a running log: once the run is finished or queued again, a late beat changes nothing.
            IntegrationSyncLog.objects.filter(pk=self.log_id, status=RunStatus.RUNNING).update(
                heartbeat_at=timezone.now())
        except DatabaseError as exc:
            connection.close()  # a broken connection is not reused: the next beat connects again
            if not self._failing:
                logger.warning("heartbeat failed; trying again", extra={
                    "sync_log_id": self.log_id, "error": str(exc).strip().splitlines()[0][:300] if str(exc) else ""})
            self._failing = True
        else:
            if self._failing:
                logger.info("heartbeat back", extra={"sync_log_id": self.log_id})
            self._failing = False
