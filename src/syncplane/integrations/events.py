"""Domain events: one versioned envelope per fact, written to the outbox of every monitoring sink that wants it.

`emit_event` is called inside the transaction of the fact it reports (a finished sync, an approved change, a
critical finding), so the event exists exactly when the fact does: rolled back with it, never sent for
something that did not happen. It only writes outbox rows; the sinks are called later by one delivery task
per sink (outbox.deliver_sink_events), so a slow or dead sink never slows the caller.

Which sinks: the live, enabled integrations whose connector can send events (Capability.SEND_EVENTS) and whose
`event_types` config (records.EVENT_TYPES_SCHEMA) matches the type. That list is read once and kept in the
cache until an integration is saved or deleted, so an event with no sink costs a cache read and nothing else.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from syncplane.core.context import get_correlation_id
from syncplane.integrations.choices import Capability
from syncplane.integrations.models import ExternalSystem, OutboxKind, OutboxMessage
from syncplane.integrations.records import EVENT_TYPES, EventEnvelope
from syncplane.integrations.registry import registered_types

SPECVERSION = "1"
SINKS_CACHE_KEY = "integrations:event-sinks"
# A backstop only: every save or delete of an integration clears the list at once. It bounds how long another
# process may hold a list read just before a concurrent change committed.
SINKS_CACHE_SECONDS = 60


@dataclass(frozen=True)
class DomainEvent:
    """One event to emit: its type (records.EVENT_TYPES), what it is about, and what it says."""

    type: str
    subject: dict  # {"type": "integration" | "change" | "finding", "id": str, "name": str}
    data: dict
    correlation_id: str = ""  # default: the one of the work in progress (core/context.py)


def emit_event(event_type: str, *, subject: dict, data: dict, correlation_id: str = "") -> None:
    """Write the event to the outbox of each sink that wants it, in the caller's transaction."""
    emit_events([DomainEvent(event_type, subject, data, correlation_id)])


def emit_events(events: Iterable[DomainEvent]) -> None:
    """emit_event for many events at once (a page of changes, a scan's critical findings): one insert."""
    events = list(events)
    unknown = sorted({event.type for event in events} - set(EVENT_TYPES))
    if unknown:  # checked with or without sinks, so a typo fails its tests
        raise ValueError(f"unknown event type {unknown[0]!r}; add it to records.EVENT_TYPES and docs/events.md")
    sinks = event_sinks()
    if not sinks:
        return
    messages = []
    for event in events:
        wanted = [system_id for system_id, patterns in sinks if type_matches(event.type, patterns)]
        if not wanted:
            continue
        envelope = envelope_for(event.type, subject=event.subject, data=event.data,
                                correlation_id=event.correlation_id)
        messages += [
            OutboxMessage(
                kind=OutboxKind.EVENT, external_system_id=system_id,
                subject_type=str(event.subject.get("type", ""))[:40],
                subject_id=str(event.subject.get("id", ""))[:64],
                payload=envelope, idempotency_key=f"event:{system_id}:{envelope['id']}",
            )
            for system_id in wanted
        ]
    if not messages:
        return
    OutboxMessage.objects.bulk_create(messages, batch_size=500)
    from syncplane.integrations.outbox import queue_sink_delivery  # the outbox imports what imports this module

    for system_id in sorted({message.external_system_id for message in messages}):
        queue_sink_delivery(system_id)


def envelope_for(event_type: str, *, subject: dict, data: dict, correlation_id: str = "") -> EventEnvelope:
    return EventEnvelope(
        specversion=SPECVERSION,
        id=str(uuid.uuid4()),
        type=event_type,
        time=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        correlation_id=correlation_id or get_correlation_id() or "",
        subject=dict(subject),
        data=dict(data),
    )


def type_matches(event_type: str, patterns: list[str]) -> bool:
    """"*" matches all, "sync.*" every type that starts with "sync.", anything else the type itself."""
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def sink_types() -> list[str]:
    return [name for name, cls in registered_types().items() if cls.supports(Capability.SEND_EVENTS)]


def event_sinks() -> list[tuple[int, list[str]]]:
    """(integration id, event_types) of every live, enabled sink; cached (one query on a miss)."""
    sinks = cache.get(SINKS_CACHE_KEY)
    if sinks is None:
        sinks = [
            (system_id, _patterns(config))
            for system_id, config in ExternalSystem.objects.live()
            .filter(enabled=True, system_type__in=sink_types())
            .order_by("id").values_list("id", "config")
        ]
        cache.set(SINKS_CACHE_KEY, sinks, SINKS_CACHE_SECONDS)
    return sinks


def _patterns(config) -> list[str]:
    patterns = (config or {}).get("event_types")
    if not isinstance(patterns, list):
        return ["*"]
    return [pattern for pattern in patterns if isinstance(pattern, str)]


def forget_event_sinks() -> None:
    """Drop the cached list now and again once the transaction commits (a process reading it in between
    would cache the state before the change)."""
    cache.delete(SINKS_CACHE_KEY)
    transaction.on_commit(lambda: cache.delete(SINKS_CACHE_KEY))


@receiver([post_save, post_delete], sender=ExternalSystem, dispatch_uid="integrations.events.forget_sinks")
def _integration_changed(**_) -> None:
    forget_event_sinks()


__all__ = [
    "SPECVERSION",
    "DomainEvent",
    "emit_event",
    "emit_events",
    "envelope_for",
    "event_sinks",
    "forget_event_sinks",
    "sink_types",
    "type_matches",
]
