"""The event log of a change: one immutable ChangeEvent row per step, and one structured log line each."""

from __future__ import annotations

import logging

from django.db.models import Max

from syncplane.changes.choices import ChangeState
from syncplane.changes.models import ChangeEvent, ChangeRequest
from syncplane.core.context import get_correlation_id
from syncplane.integrations.events import DomainEvent, emit_events

logger = logging.getLogger("syncplane.changes")


def event_type_of(to_state: str) -> str:
    return f"change.{to_state}"


def log_event(event: ChangeEvent) -> None:
    logger.info(event.event_type, extra={
        "change_id": event.change_id, "from_state": event.from_state, "to_state": event.to_state,
        "source": event.source, "actor": event.actor, "sequence": event.sequence,
    })


def record_event(change: ChangeRequest, *, event_type: str, source: str, actor: str = "", from_state: str = "",
                 to_state: str = "", detail: str = "") -> ChangeEvent:
    """One event of one change (user actions and deliveries); the caller holds the change's row lock."""
    last = ChangeEvent.objects.filter(change=change).aggregate(last=Max("sequence"))["last"] or 0
    event = ChangeEvent.objects.create(
        change=change, sequence=last + 1, from_state=from_state, to_state=to_state, event_type=event_type,
        actor=actor[:150], source=source, detail=detail, correlation_id=get_correlation_id() or "",
    )
    log_event(event)
    publish([event])
    return event


# The states whose reaching the monitoring sinks hear of (docs/events.md), as domain event types.
PUBLISHED_STATES = {
    ChangeState.SUBMITTED: "change.submitted",
    ChangeState.APPROVED: "change.approved",
    ChangeState.REJECTED: "change.rejected",
    ChangeState.COMPLETED: "change.implemented",
    ChangeState.CANCELLED: "change.cancelled",
}


def publish(events: list[ChangeEvent]) -> None:
    """The domain events of these steps, in the transaction that records them (one insert for all)."""
    emit_events(
        DomainEvent(
            PUBLISHED_STATES[event.to_state],
            subject={"type": "change", "id": str(event.change.pk), "name": event.change.title},
            data={
                "from_state": event.from_state, "state": event.to_state, "actor": event.actor,
                "source": event.source, "detail": event.detail[:1000], "risk_score": event.change.risk_score,
                "integration_id": event.change.external_system_id,
                "external_change_request_id": event.change.external_change_request_id,
                "change_correlation_id": event.change.correlation_id,
            },
            correlation_id=event.correlation_id,
        )
        for event in events if event.to_state in PUBLISHED_STATES
    )


__all__ = ["PUBLISHED_STATES", "event_type_of", "log_event", "publish", "record_event"]
