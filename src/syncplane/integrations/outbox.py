"""Delivery of outbox messages: claim with a lease, retry with backoff, dead letter. One handler per kind.

A domain app writes an OutboxMessage in the same transaction as its own change and registers, from its
`AppConfig.ready`, the handler of that message kind (`register_handler(OutboxKind.CHANGE_CREATE, handler)`),
just as it registers its sink. This module knows no domain: it only moves messages between pending,
delivered and failed.

A worker takes a lease on the message (an atomic update, so a second worker moves on instead of waiting) and
the handler calls the external system outside any database transaction. A worker that dies leaves its lease to
expire; the beat job then hands the message to another worker, so a handler must look before acting again
(the message's idempotency key, or the subject's correlation id, says what an earlier attempt may have done).

A handler's `send(message, connector)` does the vendor call and returns the step that records the outcome; the
step runs in the transaction that marks the message delivered. It signals the other outcomes by raising:
- `Defer(until)`: not now, and not a failure (another delivery for the same subject is in flight); the
  attempt is not counted;
- `TransientError` (429, 5xx, timeout): retried after a growing delay that honours Retry-After, at most
  MAX_ATTEMPTS times;
- any other `IntegrationError` (400, 403: the vendor refused the content): failed at once, no retry storm.
A message that fails for good is a dead letter: status failed, the reason in `last_error`, and the handler's
`dead_letter(message, reason)` called in the same transaction, to show the reason where its owner looks.

The writer of a message calls `queue_delivery(message.pk)` in its transaction: the task is sent after commit.
The beat job `deliver_due_outbox_messages` sends what is due again: retries, and what a dead worker left.

Domain events (kind `event`, written by events.emit_event) are the exception: they go to monitoring sinks in
batches, one task and one lease per sink, with a result per event (see "events: batches per sink" below).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import orjson
from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import BooleanField, ExpressionWrapper, F, Q
from django.utils import timezone

from syncplane.integrations import health
from syncplane.integrations.base import Connector
from syncplane.integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    IntegrationError,
    PolicyViolation,
    TransientError,
)
from syncplane.integrations.models import ExternalSystem, OutboxKind, OutboxMessage, OutboxStatus
from syncplane.integrations.registry import build_connector

logger = logging.getLogger("syncplane.outbox")

MAX_ATTEMPTS = 5
RETRY_DELAYS = (30, 60, 120, 300)  # seconds after attempt 1, 2, 3, 4; attempt 5 is the last
MAX_RETRY_AFTER = 3600
# A delivery still holding its lease after this is taken as dead (its worker was killed). It must outlast the
# slowest attempt: HttpClient waits up to 300 s for a Retry-After and retries a few times.
LEASE_SECONDS = 900
SKIPPED = "skipped"  # what deliver() returns when another worker holds the message or it is no longer pending


class Defer(Exception):
    """Not now, and not a failure: come back at `until` without counting the attempt."""

    def __init__(self, until: datetime):
        super().__init__("deferred")
        self.until = until


class OutboxHandler(Protocol):
    def send(self, message: OutboxMessage, connector: Connector) -> Callable[[], None]:
        """Call the external system; return what to write once it answered (run in the delivering
        transaction). Raise Defer, TransientError or IntegrationError for the other outcomes."""

    def dead_letter(self, message: OutboxMessage, reason: str) -> None:
        """The message failed for good (in the transaction that marks it failed): show the reason."""


_handlers: dict[str, OutboxHandler] = {}


def register_handler(kind: str, handler: OutboxHandler) -> None:
    if _handlers.get(kind, handler) is not handler:
        raise RuntimeError(f"two outbox handlers claim message kind {kind!r}")
    _handlers[kind] = handler


def handler_for(kind: str) -> OutboxHandler:
    try:
        return _handlers[kind]
    except KeyError:
        raise IntegrationError(f"no outbox handler is registered for message kind {kind!r}") from None


def retry_delay(attempts: int, retry_after: float | None) -> float:
    delay = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]
    return max(delay, min(float(retry_after or 0), MAX_RETRY_AFTER))


def deliver(message_id: int, *, connector: Connector | None = None) -> str:
    """One delivery attempt. Returns the message's status afterwards (SKIPPED when another worker holds it
    or it is no longer pending).

    Three short transactions, none of them open while the external system is called: a vendor answering
    slowly (or asking to wait with Retry-After) must not hold a database lock, which on SQLite would stop
    every other writer. The lease taken first keeps a second worker off the message.
    """
    message = claim(message_id)
    if message is None:
        return SKIPPED
    owned = None
    try:
        handler = handler_for(message.kind)
        if connector is None:  # a configuration problem (a secret that cannot be read) fails here
            connector = owned = build_connector(message.external_system)
        finish = handler.send(message, connector)
    except Defer as deferred:
        _release(message, deferred.until)
        return message.status
    except IntegrationError as exc:
        _failed_attempt(message, exc)
        return message.status
    except Exception as exc:
        # A bug, or a crash between the call and the commit: count it so it cannot loop for ever; the next
        # attempt looks before acting again.
        _unexpected(message_id, exc)
        raise
    finally:
        if owned is not None:
            owned.close()
    try:
        with transaction.atomic():
            finish()
            message.status = OutboxStatus.DELIVERED
            message.delivered_at = timezone.now()
            message.leased_until = None
            message.last_error = ""
            message.save(update_fields=["status", "delivered_at", "leased_until", "last_error"])
    except Exception as exc:
        _unexpected(message_id, exc)
        raise
    logger.info("outbox message delivered", extra={
        "outbox_message_id": message.pk, "kind": message.kind, "subject_type": message.subject_type,
        "subject_id": message.subject_id, "attempts": message.attempts,
    })
    return message.status


def claim(message_id: int) -> OutboxMessage | None:
    """Take the lease of a pending message that nobody holds (or whose holder's lease expired), counting the
    attempt; None if that fails."""
    now = timezone.now()
    claimed = (
        OutboxMessage.objects.filter(pk=message_id, status=OutboxStatus.PENDING)
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .update(leased_until=now + timedelta(seconds=LEASE_SECONDS), attempts=F("attempts") + 1)
    )
    if not claimed:
        return None
    return OutboxMessage.objects.select_related("external_system").get(pk=message_id)


def _release(message: OutboxMessage, until: datetime) -> None:
    """Give the lease back without counting the attempt, and come back at `until`."""
    OutboxMessage.objects.filter(pk=message.pk).update(
        leased_until=None, attempts=F("attempts") - 1, next_attempt_at=until
    )
    message.refresh_from_db()


def _failed_attempt(message: OutboxMessage, exc: IntegrationError) -> None:
    message.leased_until = None
    message.last_error = str(exc)[:4000]
    transient = isinstance(exc, TransientError)
    if transient and message.attempts < MAX_ATTEMPTS:
        delay = retry_delay(message.attempts, exc.retry_after)
        message.next_attempt_at = timezone.now() + timedelta(seconds=delay)
        message.save()
        logger.warning("outbox delivery will retry", extra={
            "outbox_message_id": message.pk, "kind": message.kind, "attempts": message.attempts,
            "countdown": delay, "error": message.last_error,
        })
        return
    reason = str(exc) if not transient else f"gave up after {message.attempts} attempts: {exc}"
    logger.error("outbox delivery failed", extra={
        "outbox_message_id": message.pk, "kind": message.kind, "attempts": message.attempts, "error": reason,
    })
    with transaction.atomic():
        handler = _handlers.get(message.kind)
        if handler is not None:
            handler.dead_letter(message, reason)  # first: it locks its subject, as the writers of messages do
        message.status = OutboxStatus.FAILED
        message.save()


def _unexpected(message_id: int, exc: Exception) -> None:
    with transaction.atomic():
        message = OutboxMessage.objects.select_for_update().filter(pk=message_id).first()
        if message is None or message.status != OutboxStatus.PENDING:
            return
        message.leased_until = None
        message.last_error = f"internal error ({type(exc).__name__}); see the worker log"
        if message.attempts >= MAX_ATTEMPTS:
            message.status = OutboxStatus.FAILED
        else:
            message.next_attempt_at = timezone.now() + timedelta(seconds=retry_delay(message.attempts, None))
        message.save()
    logger.error("outbox delivery crashed", extra={"outbox_message_id": message_id,
                                                   "error_type": type(exc).__name__})


def resend(message: OutboxMessage, *, grace: timedelta) -> None:
    """Make a failed message pending again, its attempts counted afresh, due after `grace` (the caller holds
    the message's row lock and queues the delivery). Its idempotency key is unchanged, so a delivery that did
    get through is found, not repeated."""
    message.status = OutboxStatus.PENDING
    message.attempts = 0
    message.leased_until = None
    message.next_attempt_at = timezone.now() + grace
    message.save(update_fields=["status", "attempts", "leased_until", "next_attempt_at"])


class NotADeadLetter(Exception):
    """Only a message that failed for good can be sent again."""


# A change message resent is sent by its on_commit task at once; the beat job takes it over only after this.
RESEND_GRACE = timedelta(seconds=60)


def resend_dead_letter(message_id: int) -> OutboxMessage:
    """An admin's "send it again": the dead letter becomes pending and its delivery is queued (an event goes out
    with its sink's next batch, before newer ones). Raises NotADeadLetter for any other message."""
    with transaction.atomic():
        message = OutboxMessage.objects.select_for_update().select_related("external_system").get(pk=message_id)
        if message.status != OutboxStatus.FAILED:
            raise NotADeadLetter(f"only a dead letter can be resent; this message is {message.status}")
        if message.kind == OutboxKind.EVENT:
            resend(message, grace=timedelta(0))
            queue_sink_delivery(message.external_system_id)
        else:
            resend(message, grace=RESEND_GRACE)
            queue_delivery(message.pk)
    return message


def due_messages(now: datetime | None = None) -> list[int]:
    """Pending messages whose time has come and that no live lease holds, oldest first (500 at a time). Events
    are not among them: they go out in batches per sink (deliver_sink_events)."""
    now = now or timezone.now()
    return list(
        OutboxMessage.objects.filter(status=OutboxStatus.PENDING, next_attempt_at__lte=now)
        .exclude(kind=OutboxKind.EVENT)
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .order_by("next_attempt_at", "id").values_list("id", flat=True)[:500]
    )



PRUNE_CHUNK = 2000  # rows per DELETE: short statements, so a sink's delivery never waits long behind one


def prune_delivered_events(now: datetime | None = None) -> int:
    """Delete events delivered more than SYNCPLANE_DELIVERED_EVENTS_KEEP_DAYS ago, a chunk a statement, and say
    how many. Their ids are never sent again (each event has its own), so nothing can be delivered twice for it.
    Dead letters and pending events stay, and so do change requests' messages."""
    days = settings.SYNCPLANE_DELIVERED_EVENTS_KEEP_DAYS
    if not days:
        return 0
    old = OutboxMessage.objects.filter(kind=OutboxKind.EVENT, status=OutboxStatus.DELIVERED,
                                       delivered_at__lt=(now or timezone.now()) - timedelta(days=days))
    deleted = 0
    while ids := list(old.values_list("id", flat=True)[:PRUNE_CHUNK]):
        deleted += OutboxMessage.objects.filter(id__in=ids).delete()[0]
    return deleted

# --- Celery tasks ---------------------------------------------------------------------------------------
# Their names predate the move out of the changes app: queued task messages and the beat's database schedule
# refer to them by name, so they stay.

@shared_task(name="syncplane.changes.tasks.deliver_outbox_message")
def deliver_outbox_message(message_id: int) -> str:
    return deliver(message_id)


def queue_delivery(message_id: int) -> None:
    """Send the task once the message row is committed, so the worker always finds it."""
    transaction.on_commit(lambda: deliver_outbox_message.delay(message_id))


@shared_task(name="syncplane.changes.tasks.deliver_due_outbox_messages")
def deliver_due_outbox_messages() -> int:
    """The beat job: pending messages whose time has come — retries after a transient failure, and messages
    whose first task was lost with a worker that died — and the sinks with due events. Each message (each sink)
    is its own task, so one slow vendor holds up nothing else. Returns how many tasks it sent."""
    due = due_messages()
    for message_id in due:
        deliver_outbox_message.delay(message_id)
    sinks = due_sinks()
    for system_id in sinks:
        deliver_events_of_sink.delay(system_id)
    return len(due) + len(sinks)


@shared_task(name="syncplane.integrations.tasks.prune_delivered_events")
def prune_delivered_events_task() -> int:
    """The beat job (hourly): delivered events past their keeping time leave the outbox."""
    return prune_delivered_events()


# --- events: batches per sink ----------------------------------------------------------------------------
# Event messages (kind EVENT, written by events.emit_event) go out differently from the one-by-one messages
# above: one task per sink sends that sink's pending events, oldest first, in batches within the connector's
# limits (max_batch_events, max_batch_bytes, max_event_bytes). A lease on the sink (not on each message) keeps
# a second worker off it, which is what keeps its events in order; the event id is the idempotency key that
# makes a batch sent again (after a worker died between the send and the commit) land once.
#
# What the sink says decides, per event (EventResult): delivered; retry (backoff, Retry-After, dead letter after
# MAX_ATTEMPTS); rejected (dead letter at once). For the whole batch: TransientError is a retry of every event
# in it; AuthenticationError, ConfigurationError or PolicyViolation (a revoked token, a secret that cannot be
# read: nothing wrong with the events) pause the sink — its events stay pending, uncounted, until an admin
# saves the integration — and any other IntegrationError dead-letters the batch.

# A task drains its sink while events are due, batch after batch, for this long; then a fresh task takes over,
# so one busy sink does not hold a worker for ever.
DRAIN_SECONDS = 60.0
RENEW_AFTER_SECONDS = 60.0  # the sink's lease is renewed between batches once this old
UPDATE_CHUNK = 500  # ids per `UPDATE ... WHERE id IN (...)`, well under SQLite's bound-parameter limit
SINK_STOPPED = (AuthenticationError, ConfigurationError, PolicyViolation)


@shared_task(name="syncplane.integrations.tasks.deliver_events_of_sink")
def deliver_events_of_sink(system_id: int) -> int | None:
    return deliver_sink_events(system_id)


class _SendSinkTask:
    """The on-commit callback that queues a sink's delivery; equal for one sink, so a transaction that emits
    a thousand events queues one task per sink."""

    def __init__(self, system_id: int):
        self.system_id = system_id

    def __call__(self) -> None:
        deliver_events_of_sink.delay(self.system_id)

    def __eq__(self, other) -> bool:
        return isinstance(other, _SendSinkTask) and other.system_id == self.system_id

    def __hash__(self) -> int:
        return hash(self.system_id)


def queue_sink_delivery(system_id: int) -> None:
    """Send the sink's delivery task once the caller's transaction commits (at once outside one)."""
    task = _SendSinkTask(system_id)
    connection = transaction.get_connection()
    if connection.in_atomic_block and any(entry[1] == task for entry in connection.run_on_commit):
        return
    transaction.on_commit(task)


def due_sinks(now: datetime | None = None) -> list[int]:
    """Live, enabled, not paused sinks that nobody holds and that have an event due."""
    now = now or timezone.now()
    return list(
        OutboxMessage.objects.filter(kind=OutboxKind.EVENT, status=OutboxStatus.PENDING, next_attempt_at__lte=now,
                                     external_system__enabled=True, external_system__archived_at__isnull=True,
                                     external_system__delivery_paused_at__isnull=True)
        .filter(Q(external_system__outbox_leased_until__isnull=True)
                | Q(external_system__outbox_leased_until__lt=now))
        .order_by().values_list("external_system_id", flat=True).distinct()
    )


def deliver_sink_events(system_id: int, *, connector: Connector | None = None) -> int | None:
    """Send a sink's due events, batch after batch, until none is due, the sink fails, or DRAIN_SECONDS have
    passed (a fresh task then goes on). Returns how many were delivered; None when another worker holds the sink
    (or it is paused or disabled)."""
    if not claim_sink(system_id):
        return None
    owned, delivered, more = None, 0, False
    started = renewed = time.monotonic()
    try:
        if connector is None:
            try:
                connector = owned = build_connector(ExternalSystem.objects.get(pk=system_id))
            except SINK_STOPPED as exc:  # a secret that cannot be read: an admin must fix the sink
                health.record_delivery(system_id, ok=False, reason=str(exc), pause=True)
                return 0
        while True:
            batch = next_batch(system_id, connector)
            if not batch:
                return delivered
            sent, carry_on = _send_batch(system_id, connector, batch)
            delivered += sent
            if not carry_on:
                return delivered
            now = time.monotonic()
            if now - started >= DRAIN_SECONDS:
                more = True
                return delivered
            if now - renewed >= RENEW_AFTER_SECONDS:
                renew_sink(system_id)
                renewed = now
    finally:
        if owned is not None:
            owned.close()
        ExternalSystem.objects.filter(pk=system_id).update(outbox_leased_until=None)
        if more:
            queue_sink_delivery(system_id)


def claim_sink(system_id: int) -> bool:
    now = timezone.now()
    return bool(
        ExternalSystem.objects.live()
        .filter(pk=system_id, enabled=True, delivery_paused_at__isnull=True)
        .filter(Q(outbox_leased_until__isnull=True) | Q(outbox_leased_until__lt=now))
        .update(outbox_leased_until=now + timedelta(seconds=LEASE_SECONDS))
    )


def renew_sink(system_id: int) -> None:
    ExternalSystem.objects.filter(pk=system_id).update(
        outbox_leased_until=timezone.now() + timedelta(seconds=LEASE_SECONDS)
    )


@dataclass(slots=True)
class QueuedEvent:
    """An event message of a batch: what sending it needs and what its outcome writes back. Lighter than a model
    instance, and read without converting its date (a batch is hundreds of them, for every batch)."""

    pk: int
    payload: dict
    attempts: int
    status: str = OutboxStatus.PENDING
    last_error: str = ""
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


def next_batch(system_id: int, connector: Connector) -> list[QueuedEvent]:
    """The sink's oldest pending events that fit one call, their attempt counted. Stops at the first event not
    due yet: a retried event holds back the ones after it, so the sink receives them in order. An event larger
    than max_event_bytes goes with its data replaced by a note; one too large even so is a dead letter."""
    rows = (
        OutboxMessage.objects.filter(external_system_id=system_id, kind=OutboxKind.EVENT,
                                     status=OutboxStatus.PENDING)
        .annotate(due=ExpressionWrapper(Q(next_attempt_at__lte=timezone.now()), output_field=BooleanField()))
        .order_by("id").values_list("id", "payload", "attempts", "due")[:connector.max_batch_events]
    )
    batch, size, truncated, too_large = [], 0, [], []
    for pk, payload, attempts, due in rows:
        if not due:
            break
        message = QueuedEvent(pk, payload, attempts)
        length = encoded_size(payload)
        if length > connector.max_event_bytes:
            message.payload = truncated_envelope(payload, length)
            length = encoded_size(message.payload)
            if length > connector.max_event_bytes:
                too_large.append(message)
                continue
            truncated.append(message)
        if batch and size + length > connector.max_batch_bytes:
            break
        batch.append(message)
        size += length
    with transaction.atomic():
        OutboxMessage.objects.filter(pk__in=[message.pk for message in batch]).update(attempts=F("attempts") + 1)
        for message in truncated:  # rare: one statement each
            OutboxMessage.objects.filter(pk=message.pk).update(payload=message.payload)
        for message in too_large:
            OutboxMessage.objects.filter(pk=message.pk).update(
                status=OutboxStatus.FAILED,
                last_error=(f"the event is {encoded_size(message.payload)} bytes even without its data; "
                            f"{connector.display_name} takes at most {connector.max_event_bytes}"),
            )
    for message in batch:
        message.attempts += 1
    return batch


def encoded_size(payload: dict) -> int:
    """Bytes of the event as compact UTF-8 JSON (orjson: every event of every batch is measured)."""
    try:
        return len(orjson.dumps(payload))
    except TypeError:  # an integer beyond 64 bits, which orjson refuses and the standard library writes
        return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


def truncated_envelope(envelope: dict, size: int) -> dict:
    note = "data left out: the event was larger than this sink accepts; the full event is in Syncplane's outbox API"
    return {**envelope, "data": {"truncated": True, "original_bytes": size, "note": note}}


def _send_batch(system_id: int, connector: Connector, batch: list[QueuedEvent]) -> tuple[int, bool]:
    """One call to the sink and what it said, recorded. Returns (delivered, whether to go on)."""
    try:
        results = connector.send_events([message.payload for message in batch])
    except SINK_STOPPED as exc:
        with transaction.atomic():
            # Not the events' fault: their attempts are given back and they wait for the sink to be fixed.
            OutboxMessage.objects.filter(pk__in=[message.pk for message in batch]).update(
                attempts=F("attempts") - 1, last_error=str(exc)[:4000]
            )
            health.record_delivery(system_id, ok=False, reason=str(exc), pause=True)
        return 0, False
    except TransientError as exc:
        now = timezone.now()
        with transaction.atomic():
            for message in batch:
                _retry_or_give_up(message, str(exc), exc.retry_after, now)
            _save_outcomes(batch)
            health.record_delivery(system_id, ok=False, reason=str(exc))
        return 0, False
    except IntegrationError as exc:
        with transaction.atomic():
            for message in batch:
                message.status, message.last_error = OutboxStatus.FAILED, str(exc)[:4000]
            _save_outcomes(batch)
            health.record_delivery(system_id, ok=False, reason=str(exc))
        return 0, False
    except Exception as exc:
        _batch_crashed(batch, exc)
        raise
    delivered = _record_results(system_id, connector, batch, results)
    return delivered, True


def _record_results(system_id, connector, batch, results) -> int:
    said = {result.event_id: result for result in results}
    now = timezone.now()
    delivered = 0
    with transaction.atomic():
        for message in batch:
            result = said.get(message.payload["id"])
            outcome = result.outcome if result is not None else "retry"
            if outcome == "delivered":
                message.status, message.delivered_at = OutboxStatus.DELIVERED, now
                delivered += 1
            elif outcome == "rejected":
                message.status = OutboxStatus.FAILED
                message.last_error = f"{connector.display_name} rejected the event: {result.reason}"[:4000]
            else:
                reason = result.reason if result is not None else "the sink said nothing about this event"
                _retry_or_give_up(message, reason, result.retry_after if result else None, now)
        _save_outcomes(batch)
        dead = sum(message.status == OutboxStatus.FAILED for message in batch)
        health.record_delivery(system_id, ok=True, dead_letters=dead)
    logger.info("events sent", extra={"integration_id": system_id, "events": len(batch), "delivered": delivered,
                                      "dead_letters": dead})
    return delivered


def _retry_or_give_up(message: QueuedEvent, reason: str, retry_after: float | None, now: datetime) -> None:
    if message.attempts >= MAX_ATTEMPTS:
        message.status = OutboxStatus.FAILED
        message.last_error = f"gave up after {message.attempts} attempts: {reason}"[:4000]
        return
    message.next_attempt_at = now + timedelta(seconds=retry_delay(message.attempts, retry_after))
    message.last_error = reason[:4000]


def _save_outcomes(batch: list[QueuedEvent]) -> None:
    """Write the batch's outcomes: one UPDATE per distinct outcome (every delivered event of a batch shares
    one, as do the events of a batch retried as a whole), chunked by id. A delivered event's last_error is
    cleared: an earlier attempt's reason no longer applies."""
    outcomes: dict[tuple, list[int]] = {}
    for message in batch:
        if message.status == OutboxStatus.DELIVERED:
            outcome = (message.status, message.delivered_at, "", None)
        elif message.status == OutboxStatus.FAILED:
            outcome = (message.status, None, message.last_error, None)
            logger.error("event is a dead letter", extra={"outbox_message_id": message.pk,
                                                           "error": message.last_error})
        else:  # retried: due again after its backoff
            outcome = (message.status, None, message.last_error, message.next_attempt_at)
        outcomes.setdefault(outcome, []).append(message.pk)
    for (status, delivered_at, last_error, next_attempt_at), ids in outcomes.items():
        values = {"status": status, "delivered_at": delivered_at, "last_error": last_error}
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        for start in range(0, len(ids), UPDATE_CHUNK):
            OutboxMessage.objects.filter(pk__in=ids[start:start + UPDATE_CHUNK]).update(**values)


def _batch_crashed(batch: list[QueuedEvent], exc: Exception) -> None:
    """A bug in the connector: counted (the attempts are), retried after the backoff, dead after MAX_ATTEMPTS."""
    now = timezone.now()
    with transaction.atomic():
        for message in batch:
            _retry_or_give_up(message, f"internal error ({type(exc).__name__}); see the worker log", None, now)
        _save_outcomes(batch)
    logger.error("event delivery crashed", extra={"error_type": type(exc).__name__})

__all__ = [
    "DRAIN_SECONDS",
    "LEASE_SECONDS",
    "MAX_ATTEMPTS",
    "RETRY_DELAYS",
    "SKIPPED",
    "Defer",
    "OutboxHandler",
    "claim",
    "deliver",
    "deliver_due_outbox_messages",
    "deliver_events_of_sink",
    "deliver_outbox_message",
    "deliver_sink_events",
    "due_messages",
    "due_sinks",
    "handler_for",
    "queue_delivery",
    "queue_sink_delivery",
    "register_handler",
    "resend",
    "retry_delay",
]
