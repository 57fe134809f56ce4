"""The health of each integration, from its recent runs and (for a monitoring sink) its deliveries.

Kept on the integration where each outcome is recorded, in the transaction of that outcome: the engine's end of
a run (record_run) and the end of each batch sent to a sink (record_delivery). From the outcomes in a row:
- healthy: the last run (or delivery) succeeded;
- degraded: it succeeded in part (a partial run, events dead-lettered) or failed fewer than FAILING_AFTER
  times in a row;
- failing: FAILING_AFTER failures in a row, or a sink whose credentials are refused (its delivery is paused);
- disabled: not enabled, by an admin or by the opt-in auto-disable (`auto_disable_after` failures in a row).
Going failing (or auto-disabled) emits `integration.unhealthy`; the next success after failing emits
`integration.recovered`. Both go to the sinks like any event (docs/events.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, Min, OuterRef, Q, Subquery
from django.utils import timezone

from syncplane.integrations.choices import RecordKind, RunStatus
from syncplane.integrations.events import emit_event
from syncplane.integrations.models import (
    ExternalSystem,
    IntegrationHealth,
    IntegrationSyncLog,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
)
from syncplane.integrations.registry import get_connector_class

FAILING_AFTER = 3  # failures in a row that make an integration failing rather than degraded
UNHEALTHY = (IntegrationHealth.FAILING, IntegrationHealth.DISABLED)


def record_run(log: IntegrationSyncLog) -> None:
    """A run finished (in the transaction that finished its log): its event, then the integration's health.
    A dry run reports nothing and a cancelled run says nothing about health."""
    if log.dry_run or log.status == RunStatus.CANCELLED:
        return
    ok = log.status in (RunStatus.SUCCESS, RunStatus.PARTIAL)
    emit_event(
        "sync.completed" if ok else "sync.failed",
        subject=integration_subject(log.external_system_id, log.system_name, log.system_type),
        data=run_data(log), correlation_id=log.correlation_id,
    )
    _record(log.external_system_id, ok=ok, partial=log.status == RunStatus.PARTIAL, reason=log.error_summary,
            correlation_id=log.correlation_id)


def record_delivery(system_id: int, *, ok: bool, reason: str = "", dead_letters: int = 0,
                    pause: bool = False) -> None:
    """A batch of events went to a sink (ok: the sink answered, even if it refused some of them) or failed as a
    whole; `pause`: the sink refused its credentials and is sent nothing more until an admin saves it."""
    _record(system_id, ok=ok, partial=dead_letters > 0, reason=reason, pause=pause)


def run_data(log: IntegrationSyncLog) -> dict:
    data = {
        "sync_log_id": log.pk,
        "status": log.status,
        "mode": log.mode,
        "trigger": log.trigger,
        "duration_ms": log.duration_ms,
        "records": {
            "read": log.records_read, "created": log.records_created, "updated": log.records_updated,
            "unchanged": log.records_unchanged, "deleted": log.records_deleted, "failed": log.records_failed,
        },
    }
    if log.status == RunStatus.FAILED:
        data["error_kind"] = log.error_kind  # transient / permanent / policy
        data["error_summary"] = log.error_summary[:1000]  # redacted by the engine
    return data


def integration_subject(system_id: int, name: str, system_type: str) -> dict:
    return {"type": "integration", "id": str(system_id), "name": name, "system_type": system_type}


def _record(system_id: int, *, ok: bool, partial: bool = False, reason: str = "", pause: bool = False,
            correlation_id: str = "") -> None:
    with transaction.atomic():
        system = ExternalSystem.objects.select_for_update().filter(pk=system_id).first()
        if system is None:
            return
        before, now = system.health, timezone.now()
        if ok:
            system.consecutive_failures = 0
            system.last_success_at = now
        else:
            system.consecutive_failures += 1
        if pause:
            system.delivery_paused_at = system.delivery_paused_at or now
            system.last_error = reason[:4000]
        auto_disabled = (not ok and system.enabled and system.auto_disable_after is not None
                         and system.consecutive_failures >= system.auto_disable_after)
        if auto_disabled:
            system.enabled = False
            system.disabled_reason = f"disabled after {system.consecutive_failures} failures in a row"
        system.health = assess(system, partial=partial)
        system.save(update_fields=["health", "consecutive_failures", "last_success_at", "delivery_paused_at",
                                   "last_error", "enabled", "disabled_reason"])
        _announce(system, before, reason=reason, auto_disabled=auto_disabled, correlation_id=correlation_id)


def assess(system: ExternalSystem, *, partial: bool = False) -> str:
    if not system.enabled:
        return IntegrationHealth.DISABLED
    if system.delivery_paused_at is not None or system.consecutive_failures >= FAILING_AFTER:
        return IntegrationHealth.FAILING
    if system.consecutive_failures or partial:
        return IntegrationHealth.DEGRADED
    return IntegrationHealth.HEALTHY


def _announce(system: ExternalSystem, before: str, *, reason: str, auto_disabled: bool,
              correlation_id: str = "") -> None:
    subject = integration_subject(system.pk, system.name, system.system_type)
    data = {"health": system.health, "previous_health": before,
            "consecutive_failures": system.consecutive_failures}
    if auto_disabled or (system.health in UNHEALTHY and before not in UNHEALTHY):
        emit_event("integration.unhealthy", subject=subject, correlation_id=correlation_id, data={
            **data, "auto_disabled": auto_disabled, "delivery_paused": system.delivery_paused_at is not None,
            "reason": reason[:1000],
        })
    elif before in UNHEALTHY and system.health not in UNHEALTHY:
        emit_event("integration.recovered", subject=subject, correlation_id=correlation_id, data={
            **data, "last_success_at": system.last_success_at.isoformat() if system.last_success_at else None,
        })


def admin_saved(system: ExternalSystem, *, was_enabled: bool) -> None:
    """An admin saved the integration: a sink's paused delivery starts again (they fixed its credentials, or
    mean to find out), and enabling it again starts the count of failures afresh. Its health stays failing
    until an outcome says otherwise, so a recovery is still announced when it comes."""
    fields = []
    if system.delivery_paused_at is not None:
        system.delivery_paused_at = None
        fields.append("delivery_paused_at")
    if system.enabled and not was_enabled:
        if system.disabled_reason:  # it was disabled for its failures: failing until it succeeds
            system.health = IntegrationHealth.FAILING
        else:
            system.health = assess(system)
        system.consecutive_failures, system.disabled_reason = 0, ""
        fields += ["consecutive_failures", "disabled_reason", "health"]
    elif not system.enabled and was_enabled:
        system.health = IntegrationHealth.DISABLED
        fields.append("health")
    if fields:
        system.save(update_fields=fields)
    if system.enabled and is_sink(system.system_type):
        from syncplane.integrations.outbox import queue_sink_delivery  # the outbox records through this module

        queue_sink_delivery(system.pk)


def is_sink(system_type: str) -> bool:
    """Monitoring sinks read nothing: they are not synced, only sent events and metrics."""
    try:
        return get_connector_class(system_type).record_kind == RecordKind.EVENT
    except KeyError:
        return False


def next_scheduled_run(system: ExternalSystem, now: datetime | None = None) -> datetime | None:
    """When the schedule syncs it next (at the beat's first look from then on); None when it does not."""
    if not (system.enabled and system.scheduled) or system.archived_at or is_sink(system.system_type):
        return None
    now = now or timezone.now()
    if system.last_sync_at is None:
        return now
    return max(now, system.last_sync_at + timedelta(minutes=system.sync_interval_minutes))


def outbox_figures() -> dict[int, dict]:
    """Per integration: pending events (the backlog), dead letters, and the oldest pending one. One query."""
    rows = (
        OutboxMessage.objects.filter(kind=OutboxKind.EVENT).exclude(status=OutboxStatus.DELIVERED)
        .order_by().values("external_system_id")
        .annotate(backlog=Count("id", filter=Q(status=OutboxStatus.PENDING)),
                  dead=Count("id", filter=Q(status=OutboxStatus.FAILED)),
                  oldest=Min("created_at", filter=Q(status=OutboxStatus.PENDING)))
    )
    return {row.pop("external_system_id"): row for row in rows}


def with_outbox_counts(queryset):
    """Integrations with their event backlog and dead letters (outbox_backlog, outbox_dead_letters; None for
    none), counted in the same query through the outbox's (integration, status) index."""

    def count(status: str):
        return Subquery(
            OutboxMessage.objects.filter(external_system=OuterRef("pk"), kind=OutboxKind.EVENT, status=status)
            .order_by().values("external_system").annotate(count=Count("id")).values("count")[:1]
        )

    return queryset.annotate(outbox_backlog=count(OutboxStatus.PENDING),
                             outbox_dead_letters=count(OutboxStatus.FAILED))


def summary(now: datetime | None = None) -> dict:
    """GET /api/v1/health/: every live integration's health and the outbox backlog. Two queries."""
    now = now or timezone.now()
    outbox = outbox_figures()
    integrations, totals = [], {choice: 0 for choice in IntegrationHealth.values}
    for system in ExternalSystem.objects.live().order_by("name"):
        health = shown_health(system)
        totals[health] += 1
        figures = outbox.get(system.pk, {})
        integrations.append({
            "id": system.pk, "name": system.name, "system_type": system.system_type, "health": health,
            "enabled": system.enabled, "disabled_reason": system.disabled_reason,
            "last_sync_at": system.last_sync_at, "last_sync_status": system.last_sync_status,
            "last_success_at": system.last_success_at, "consecutive_failures": system.consecutive_failures,
            "next_scheduled_run": next_scheduled_run(system, now),
            "delivery_paused": system.delivery_paused_at is not None,
            "outbox_backlog": figures.get("backlog", 0), "outbox_dead_letters": figures.get("dead", 0),
        })
    oldest = min((row["oldest"] for row in outbox.values() if row["oldest"]), default=None)
    return {
        "status": "ok" if not totals[IntegrationHealth.FAILING] else "failing",
        "integrations": integrations,
        "counts": totals,
        "outbox": {
            "backlog": sum(row["backlog"] for row in outbox.values()),
            "dead_letters": sum(row["dead"] for row in outbox.values()),
            "oldest_pending_seconds": round((now - oldest).total_seconds()) if oldest else None,
        },
    }


def shown_health(system: ExternalSystem) -> str:
    return system.health if system.enabled else IntegrationHealth.DISABLED


__all__ = [
    "FAILING_AFTER",
    "admin_saved",
    "assess",
    "integration_subject",
    "is_sink",
    "next_scheduled_run",
    "outbox_figures",
    "record_delivery",
    "record_run",
    "run_data",
    "shown_health",
    "summary",
    "with_outbox_counts",
]
