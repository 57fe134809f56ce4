"""The event log of a change: one immutable ChangeEvent row per step, and one structured log line each."""

from __future__ import annotations

import logging

from django.db.models import Max

from syncplane.changes.models import ChangeEvent, ChangeRequest
from syncplane.core.context import get_correlation_id

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
    return event


__all__ = ["event_type_of", "log_event", "record_event"]
