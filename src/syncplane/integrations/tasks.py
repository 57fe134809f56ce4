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

from syncplane.integrations.choices import SyncMode, Trigger
from syncplane.integrations.engine import SyncAlreadyRunning, run_sync, start_sync
from syncplane.integrations.errors import TransientError
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog
from syncplane.integrations.outbox import deliver_due_outbox_messages, deliver_outbox_message, queue_delivery
from syncplane.integrations.registry import get_connector_class

logger = logging.getLogger("syncplane.tasks")

# Transient failures wait 60 s, 120 s, 240 s; permanent and policy failures are not retried.
RETRY_DELAYS = (60, 120, 240)


@shared_task(bind=True, name="syncplane.integrations.tasks.run_integration_sync", max_retries=len(RETRY_DELAYS))
def run_integration_sync(self, sync_log_id: int) -> str:
    attempt = self.request.retries
    try:
        log = run_sync(sync_log_id, final_attempt=attempt >= len(RETRY_DELAYS))
    except TransientError as exc:
        delay = max(RETRY_DELAYS[attempt], int(exc.retry_after or 0))
        logger.warning("sync will retry", extra={"sync_log_id": sync_log_id, "countdown": delay})
        raise self.retry(countdown=delay, exc=exc)
    return log.status


def queue_sync(log_id: int) -> None:
    """Send the task once the log row is committed, so the worker always finds it."""
    transaction.on_commit(lambda: run_integration_sync.delay(log_id))


@shared_task(name="syncplane.integrations.tasks.sync_all_integrations")
def sync_all_integrations() -> int:
    """Queue a sync of each enabled integration that is due: incremental where the connector can, and a
    full one (which also finds deletions) when the last successful full sync is older than a day."""
    queued = 0
    for system in ExternalSystem.objects.live().filter(enabled=True):
        if not system.is_due():
            continue
        try:
            connector_class = get_connector_class(system.system_type)
        except KeyError:
            continue
        mode = scheduled_mode(system, connector_class.supports("incremental"))
        try:
            log = start_sync(system, mode=mode, trigger=Trigger.SCHEDULE)
        except SyncAlreadyRunning:
            continue
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
