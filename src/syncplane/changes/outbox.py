"""Delivery of the change outbox: create and cancel the external change request, exactly once.

A worker takes a lease on the message (an atomic update, so a second worker moves on instead of waiting)
and calls the ITSM tool outside any database transaction. Creating is not idempotent at any vendor, so a
delivery first asks the ITSM tool for the change carrying our correlation id — the answer to an earlier
attempt may have been lost when a worker died between the create call and the commit — and creates only
when there is none. The external ids are stored and the message marked delivered in one transaction.

Failures: a transient one (429, 5xx, timeout) is retried by the beat job after a growing delay that honours
Retry-After, at most MAX_ATTEMPTS times; a permanent one (400, 403: the vendor refused the content) fails the
message at once and puts the vendor's reason on the change, which stays `submitted` — no retry storm.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from syncplane.changes.choices import ChangeState
from syncplane.changes.models import ChangeRequest, EventSource
from syncplane.changes.services import apply_external_changes, record_event
from syncplane.integrations.errors import IntegrationError, TransientError
from syncplane.integrations.itsm import ChangeDraft, ExternalChange, ItsmConnector
from syncplane.integrations.models import OutboxKind, OutboxMessage, OutboxStatus
from syncplane.integrations.registry import build_connector

logger = logging.getLogger("syncplane.outbox")

MAX_ATTEMPTS = 5
RETRY_DELAYS = (30, 60, 120, 300)  # seconds after attempt 1, 2, 3, 4; attempt 5 is the last
MAX_RETRY_AFTER = 3600
# A delivery still holding its lease after this is taken as dead (its worker was killed). It must outlast the
# slowest attempt: HttpClient waits up to 300 s for a Retry-After and retries a few times.
LEASE_SECONDS = 900


def retry_delay(attempts: int, retry_after: float | None) -> float:
    delay = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]
    return max(delay, min(float(retry_after or 0), MAX_RETRY_AFTER))


def draft_of(change: ChangeRequest) -> ChangeDraft:
    return ChangeDraft(
        correlation_id=change.correlation_id,
        title=change.title,
        description=change.description,
        risk_score=change.risk_score,
        planned_start=change.planned_start,
        planned_end=change.planned_end,
        requester_email=change.requester.email if change.requester_id else "",
        affected_assets=tuple(change.affected_assets.order_by("name").values_list("name", flat=True)),
    )


def deliver(message_id: int, *, connector: ItsmConnector | None = None) -> str:
    """One delivery attempt. Returns the message's status afterwards ("skipped" when another worker holds it
    or it is no longer pending).

    Three short transactions, none of them open while the ITSM tool is called: a vendor answering slowly (or
    asking to wait with Retry-After) must not hold a database lock, which on SQLite would stop every other
    writer. The lease taken first keeps a second worker off the message; a worker that dies leaves the lease
    to expire, and the beat job then hands the message to another one, which looks before creating again.
    """
    message = _claim(message_id)
    if message is None:
        return "skipped"
    change = ChangeRequest.objects.select_related("external_system", "requester").get(pk=message.subject_id)
    owned = None
    try:
        if connector is None:  # a configuration problem (a secret that cannot be read) fails here
            connector = owned = build_connector(message.external_system)
        if message.kind == OutboxKind.CHANGE_CREATE:
            finish = _create(message, change, connector)
        elif message.kind == OutboxKind.CHANGE_CANCEL:
            finish = _cancel(message, change, connector)
        else:
            raise IntegrationError(f"unknown outbox message kind {message.kind!r}")
    except _Deferred as deferred:
        _release(message, deferred.until)
        return message.status
    except IntegrationError as exc:
        with transaction.atomic():
            _failed_attempt(message, change, exc)
        return message.status
    except Exception as exc:
        # A bug, or a crash between the call and the commit: count it so it cannot loop for ever; the next
        # attempt finds the change by its correlation id instead of creating a second one.
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
        "outbox_message_id": message.pk, "kind": message.kind, "change_id": change.pk, "attempts": message.attempts,
    })
    return message.status


class _Deferred(Exception):
    """Not now, and not a failure: another delivery for the same change is in flight."""

    def __init__(self, until):
        super().__init__("deferred")
        self.until = until


def _claim(message_id: int) -> OutboxMessage | None:
    """Take the lease of a pending message that nobody holds, counting the attempt; None if that fails."""
    now = timezone.now()
    claimed = (
        OutboxMessage.objects.filter(pk=message_id, status=OutboxStatus.PENDING)
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .update(leased_until=now + timedelta(seconds=LEASE_SECONDS), attempts=F("attempts") + 1)
    )
    if not claimed:
        return None
    return OutboxMessage.objects.select_related("external_system").get(pk=message_id)


def _release(message: OutboxMessage, until) -> None:
    """Give the lease back without counting the attempt, and come back at `until`."""
    OutboxMessage.objects.filter(pk=message.pk).update(
        leased_until=None, attempts=F("attempts") - 1, next_attempt_at=until
    )
    message.refresh_from_db()


def _create(message: OutboxMessage, change: ChangeRequest, connector: ItsmConnector):
    if change.external_key:
        return lambda: None  # an earlier delivery got through (and the sink or a webhook may have adopted it)
    external = connector.find_change(change.correlation_id)
    found = external is not None
    if external is None:
        external = connector.create_change(draft_of(change))
    return lambda: adopt(ChangeRequest.objects.select_for_update().get(pk=change.pk), external, found=found)


def adopt(change: ChangeRequest, external: ExternalChange, *, found: bool) -> None:
    """Store the external ids on the change (and anything the answer already says about its state)."""
    change.external_key = external.external_id
    change.external_change_request_id = external.number
    change.external_url = external.url or change.external_url
    change.submission_error = ""
    change.save(update_fields=["external_key", "external_change_request_id", "external_url", "submission_error",
                               "updated_at"])
    how = "found by correlation id after a lost answer" if found else "created"
    record_event(change, event_type="change.delivered", source=EventSource.OUTBOX,
                 actor=change.external_system.name, detail=f"{external.number} {how}")
    apply_external_changes(change.external_system, [external], source=EventSource.OUTBOX)


def _cancel(message: OutboxMessage, change: ChangeRequest, connector: ItsmConnector):
    reason = message.payload.get("reason", "")
    external_key = change.external_key
    found = None
    if not external_key:
        create = OutboxMessage.objects.filter(
            kind=OutboxKind.CHANGE_CREATE, subject_type="change", subject_id=message.subject_id
        ).first()
        if create is not None and create.status == OutboxStatus.PENDING:
            now = timezone.now()
            if create.leased_until and create.leased_until > now:
                raise _Deferred(create.leased_until)  # the create is being sent right now: cancel what it makes
            stopped = (
                OutboxMessage.objects.filter(pk=create.pk, status=OutboxStatus.PENDING)
                .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
                .update(status=OutboxStatus.FAILED, last_error="cancelled in Syncplane before it was delivered")
            )
            if not stopped:
                raise _Deferred(now + timedelta(seconds=RETRY_DELAYS[0]))
            if create.attempts == 0:
                return lambda: None  # it never left Syncplane: nothing to cancel outside
        if create is None or create.attempts:
            # An attempt was made: its answer may have been lost, so look before concluding there is nothing.
            found = connector.find_change(change.correlation_id)
            if found is None:
                return lambda: None
            external_key = found.external_id
    external = connector.cancel_change(external_key, reason)

    def finish():
        locked = ChangeRequest.objects.select_for_update().get(pk=change.pk)
        if found is not None:
            locked.external_key = found.external_id
            locked.external_change_request_id = found.number
            locked.save(update_fields=["external_key", "external_change_request_id", "updated_at"])
        number = external.number or locked.external_change_request_id
        record_event(locked, event_type="change.cancel_delivered", source=EventSource.OUTBOX,
                     actor=locked.external_system.name,
                     detail=f"{number} is {external.state} in {locked.external_system.name}")

    return finish


def _failed_attempt(message: OutboxMessage, change: ChangeRequest, exc: IntegrationError) -> None:
    change = ChangeRequest.objects.select_for_update().get(pk=change.pk)
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
    message.status = OutboxStatus.FAILED
    message.save()
    reason = str(exc) if not transient else f"gave up after {message.attempts} attempts: {exc}"
    logger.error("outbox delivery failed", extra={
        "outbox_message_id": message.pk, "kind": message.kind, "attempts": message.attempts, "error": reason,
    })
    if message.kind == OutboxKind.CHANGE_CREATE:
        # The change stays submitted (the CAB never saw it); the reason is on the change for its owner.
        change.submission_error = reason[:4000]
        change.save(update_fields=["submission_error", "updated_at"])
        record_event(change, event_type="change.submission_failed", source=EventSource.OUTBOX,
                     actor=message.external_system.name, detail=reason)
    else:
        record_event(change, event_type="change.cancel_failed", source=EventSource.OUTBOX,
                     actor=message.external_system.name, detail=reason)


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


def due_messages(now=None) -> list[int]:
    now = now or timezone.now()
    return list(
        OutboxMessage.objects.filter(status=OutboxStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .order_by("next_attempt_at", "id").values_list("id", flat=True)[:500]
    )


__all__ = ["MAX_ATTEMPTS", "adopt", "deliver", "draft_of", "due_messages", "retry_delay", "ChangeState"]
