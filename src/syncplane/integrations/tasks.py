"""Celery tasks: run one sync, the beat job that queues every integration that is due, and the one that re-queues
the syncs whose worker was lost; deliver one outbox message (or a sink's events), and the beat job that re-sends
the due ones; send the metrics to the sinks.

The outbox's tasks are written in `outbox.py` (the metrics' in `metrics.py`), next to what they run: a domain
app queues a delivery from there without importing the sync engine, which this module imports. They are
imported here so that every task of the integrations app is found where Celery's autodiscovery (and a reader)
looks for it."""

import logging
from datetime import timedelta
from itertools import takewhile

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from syncplane.core.context import new_correlation_id, reset_correlation_id, set_correlation_id
from syncplane.integrations.choices import RecordKind, RunStatus, SyncMode, Trigger
from syncplane.integrations.engine import (
    DatabaseUnavailable,
    SyncAlreadyRunning,
    retire_dead_run,
    run_sync,
    start_sync,
)
from syncplane.integrations.errors import ConnectFailure, IntegrationError, TransientError
from syncplane.integrations.liveness import dead_before
from syncplane.integrations.metrics import send_metrics_to_sinks
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog
from syncplane.integrations.outbox import (
    deliver_due_outbox_messages,
    deliver_events_of_sink,
    deliver_outbox_message,
    prune_delivered_events_task,
    queue_delivery,
)
from syncplane.integrations.registry import get_connector_class

logger = logging.getLogger("syncplane.tasks")

# Transient failures wait 60 s, 120 s, 240 s; permanent and policy failures are not retried.
RETRY_DELAYS = (60, 120, 240)
# A refused connection or a failed TLS handshake is most likely a wrong address or port: one short retry (a
# service restarting), then the run fails and says why, instead of sitting "queued" for minutes.
LASTING_CONNECT_FAILURE_DELAYS = (15,)
# The database went away (a restart takes seconds): soon again, not after the backoff meant for vendor outages.
DATABASE_FAILURE_DELAYS = (5, 15, 60)
# A run whose worker is lost this many times in a row is not re-queued again: something in the run itself (a page
# too large for the worker's memory) kills it, and a person must look.
MAX_LOST_IN_A_ROW = 3
LOST = "worker lost"  # how the summary of an attempt lost with its worker begins


class SyncFailed(Exception):
    """The run ended failed. Raised so that Celery reports the task as failed (an expected exception: one line,
    no traceback), not as "succeeded"; the engine has logged the reason already."""


def retry_delay(exc: IntegrationError, attempt: int) -> int | None:
    """Seconds before the next attempt of a run that failed with `exc` on attempt `attempt` (0 = the first),
    or None when it is not retried."""
    if exc.kind != "transient":
        return None
    if isinstance(exc, DatabaseUnavailable):
        delays = DATABASE_FAILURE_DELAYS
    elif isinstance(exc, ConnectFailure) and exc.lasting:
        delays = LASTING_CONNECT_FAILURE_DELAYS
    else:
        delays = RETRY_DELAYS
    if attempt >= len(delays):
        return None
    return max(delays[attempt], int(exc.retry_after or 0))


@shared_task(
    bind=True, name="syncplane.integrations.tasks.run_integration_sync", max_retries=len(RETRY_DELAYS),
    throws=(SyncFailed,),
    # The engine fails the run when the soft limit strikes; the hard one is for a task that could not be stopped.
    soft_time_limit=settings.SYNCPLANE_SYNC_TIME_LIMIT_SECONDS,
    time_limit=settings.SYNCPLANE_SYNC_HARD_TIME_LIMIT_SECONDS,
)
def run_integration_sync(self, sync_log_id: int) -> str:
    attempt = self.request.retries
    try:
        log = run_sync(sync_log_id, will_retry=lambda exc: retry_delay(exc, attempt) is not None)
    except TransientError as exc:
        delay = retry_delay(exc, attempt)
        logger.warning("sync will retry", extra={"sync_log_id": sync_log_id, "countdown": delay})
        raise self.retry(countdown=delay, exc=exc)
    except (OperationalError, InterfaceError) as exc:
        # The database was away before the run could be claimed, or when its attempt was handed back. Soon again:
        # the claim takes a queued log, and one left running is re-queued by requeue_lost_syncs once it is dead.
        connection.close()
        lost = DatabaseUnavailable(f"the database connection failed: {str(exc).strip()[:300]}")
        logger.warning("sync will retry", extra={"sync_log_id": sync_log_id, "countdown": DATABASE_FAILURE_DELAYS[0],
                                                 "error": str(lost)})
        raise self.retry(countdown=DATABASE_FAILURE_DELAYS[0], exc=lost) from exc
    if log.status == RunStatus.FAILED:
        raise SyncFailed(f"sync #{log.pk} of {log.system_name} failed ({log.error_kind}): {log.error_summary}")
    return log.status


def queue_sync(log_id: int) -> None:
    """Send the task once the log row is committed, so the worker always finds it; under the log's correlation
    id, so that the task's lines (Celery's own included) carry the run's id, whoever queued it."""

    def send():
        correlation_id = IntegrationSyncLog.objects.values_list("correlation_id", flat=True).get(pk=log_id)
        run_integration_sync.apply_async((log_id,), headers={"correlation_id": correlation_id})

    transaction.on_commit(send)


@shared_task(name="syncplane.integrations.tasks.sync_all_integrations")
def sync_all_integrations() -> int:
    """Queue a sync of each enabled, scheduled integration that is due: incremental where the connector can,
    and a full one (which also finds deletions) when the last successful full sync is older than a day. A new
    integration is left alone until someone has reviewed it (`scheduled`: its first manual sync)."""
    queued = 0
    for system in ExternalSystem.objects.live().filter(enabled=True, scheduled=True):
        if not system.is_due():
            continue
        try:
            connector_class = get_connector_class(system.system_type)
        except KeyError:
            continue
        if connector_class.record_kind == RecordKind.EVENT:
            continue  # a monitoring sink reads nothing: it is sent events and metrics, never synced
        mode = scheduled_mode(system, connector_class.supports("incremental"))
        # Each run its own correlation id, not the beat job's: one id per run, from the log to the vendor.
        token = set_correlation_id(new_correlation_id())
        try:
            log = start_sync(system, mode=mode, trigger=Trigger.SCHEDULE)
        except SyncAlreadyRunning:
            continue
        finally:
            reset_correlation_id(token)
        queue_sync(log.pk)
        queued += 1
    return queued


@shared_task(name="syncplane.integrations.tasks.requeue_lost_syncs")
def requeue_lost_syncs() -> int:
    """Beat job (every 20 s): fail each running sync whose heartbeat is dead, its worker killed or cut off (with the
    embedded broker its task is gone for good; Redis would give it back only after its visibility timeout), and
    queue a new attempt of the same run, which resumes from the checkpoint. Returns how many were re-queued."""
    requeued = 0
    dead = IntegrationSyncLog.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=dead_before())
    for log in dead.select_related("external_system").order_by("heartbeat_at"):
        again, outcome = _next_attempt(log)
        summary = f"{LOST}: no heartbeat since {log.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC; {outcome}"
        if not retire_dead_run(log, summary):
            continue  # it beat again meanwhile (a long page committed), or it finished
        logger.warning("sync lost with its worker", extra={"sync_log_id": log.pk, "error": summary,
                                                           "correlation_id": log.correlation_id})
        if not again:
            continue
        token = set_correlation_id(new_correlation_id())
        try:
            attempt = start_sync(log.external_system, mode=log.mode, dry_run=log.dry_run, trigger=log.trigger,
                                 requested_by=log.requested_by)
        except SyncAlreadyRunning:
            continue  # someone triggered it in the meantime: that run resumes from the checkpoint
        finally:
            reset_correlation_id(token)
        logger.warning("sync re-queued", extra={"sync_log_id": attempt.pk, "lost_sync_log_id": log.pk,
                                                "correlation_id": attempt.correlation_id})
        queue_sync(attempt.pk)
        requeued += 1
    return requeued


def _next_attempt(lost: IntegrationSyncLog) -> tuple[bool, str]:
    """Whether a lost run is queued again, and the words its log ends with."""
    in_a_row = lost_in_a_row(lost.external_system_id) + 1
    if in_a_row >= MAX_LOST_IN_A_ROW:
        return False, (f"not queued again: {in_a_row} attempts in a row were lost; see the worker's log (killed, "
                       "out of memory?)")
    if lost.external_system.archived_at is not None:
        return False, "not queued again: the integration was deleted"
    return True, "a new attempt is queued"


def lost_in_a_row(system_id: int) -> int:
    """How many of the integration's last finished runs were lost with their worker, in a row."""
    last = (IntegrationSyncLog.objects.finished().filter(external_system_id=system_id)
            .order_by("-finished_at", "-id").values_list("error_summary", flat=True)[:MAX_LOST_IN_A_ROW])
    return sum(1 for _ in takewhile(lambda summary: summary.startswith(LOST), last))


def scheduled_mode(system: ExternalSystem, incremental_capable: bool) -> str:
    if not incremental_capable:
        return SyncMode.FULL
    since = timezone.now() - timedelta(hours=settings.SYNCPLANE_FULL_SYNC_HOURS)
    recent_full = IntegrationSyncLog.objects.filter(
        external_system=system, mode=SyncMode.FULL, dry_run=False, status="success", started_at__gte=since
    ).exists()
    return SyncMode.INCREMENTAL if recent_full else SyncMode.FULL


__all__ = [
    "deliver_due_outbox_messages",
    "deliver_events_of_sink",
    "deliver_outbox_message",
    "prune_delivered_events_task",
    "queue_delivery",
    "queue_sync",
    "requeue_lost_syncs",
    "run_integration_sync",
    "scheduled_mode",
    "send_metrics_to_sinks",
    "sync_all_integrations",
]
