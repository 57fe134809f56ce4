"""Celery tasks: run one sync, and the beat job that queues every integration that is due; deliver one outbox
message, and the beat job that re-sends the due ones.

The outbox's tasks are written in `outbox.py`, next to what they run: a domain app queues a delivery from
there without importing the sync engine, which this module imports. They are imported here so that every
task of the integrations app is found where Celery's autodiscovery (and a reader) looks for it."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from syncplane.core.context import new_correlation_id, reset_correlation_id, set_correlation_id
from syncplane.integrations.choices import RunStatus, SyncMode, Trigger
from syncplane.integrations.engine import SyncAlreadyRunning, run_sync, start_sync
from syncplane.integrations.errors import ConnectFailure, IntegrationError, TransientError
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog
from syncplane.integrations.outbox import deliver_due_outbox_messages, deliver_outbox_message, queue_delivery
from syncplane.integrations.registry import get_connector_class

logger = logging.getLogger("syncplane.tasks")

# Transient failures wait 60 s, 120 s, 240 s; permanent and policy failures are not retried.
RETRY_DELAYS = (60, 120, 240)
# A refused connection or a failed TLS handshake is most likely a wrong address or port: one short retry (a
# service restarting), then the run fails and says why, instead of sitting "queued" for minutes.
LASTING_CONNECT_FAILURE_DELAYS = (15,)


class SyncFailed(Exception):
    """The run ended failed. Raised so that Celery reports the task as failed (an expected exception: one line,
    no traceback), not as "succeeded"; the engine has logged the reason already."""


def retry_delay(exc: IntegrationError, attempt: int) -> int | None:
    """Seconds before the next attempt of a run that failed with `exc` on attempt `attempt` (0 = the first),
    or None when it is not retried."""
    if exc.kind != "transient":
        return None
    delays = LASTING_CONNECT_FAILURE_DELAYS if isinstance(exc, ConnectFailure) and exc.lasting else RETRY_DELAYS
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
    "deliver_outbox_message",
    "queue_delivery",
    "queue_sync",
    "run_integration_sync",
    "scheduled_mode",
    "sync_all_integrations",
]
