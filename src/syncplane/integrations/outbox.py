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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from celery import shared_task
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from syncplane.integrations.base import Connector
from syncplane.integrations.errors import IntegrationError, TransientError
from syncplane.integrations.models import OutboxMessage, OutboxStatus
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


def due_messages(now: datetime | None = None) -> list[int]:
    """Pending messages whose time has come and that no live lease holds, oldest first (500 at a time)."""
    now = now or timezone.now()
    return list(
        OutboxMessage.objects.filter(status=OutboxStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .order_by("next_attempt_at", "id").values_list("id", flat=True)[:500]
    )



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
    whose first task was lost with a worker that died. Each is its own task, so one slow vendor holds up
    nothing else."""
    due = due_messages()
    for message_id in due:
        deliver_outbox_message.delay(message_id)
    return len(due)

__all__ = [
    "LEASE_SECONDS",
    "MAX_ATTEMPTS",
    "RETRY_DELAYS",
    "SKIPPED",
    "Defer",
    "OutboxHandler",
    "claim",
    "deliver",
    "deliver_due_outbox_messages",
    "deliver_outbox_message",
    "due_messages",
    "handler_for",
    "queue_delivery",
    "register_handler",
    "resend",
    "retry_delay",
]
