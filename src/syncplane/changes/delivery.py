"""The outbox handlers of changes: create and cancel the external change request, exactly once.

The generic machinery (lease, retries, dead letter) is `integrations/outbox.py`; this module is what a change
needs from it. Creating is not idempotent at any vendor, so a delivery first asks the ITSM tool for the change
carrying our correlation id — the answer to an earlier attempt may have been lost when a worker died between
the create call and the commit — and creates only when there is none. The external ids are stored and the
message marked delivered in one transaction.

A transient failure (429, 5xx, timeout) is retried by the outbox; a permanent one (400, 403: the vendor refused
the content) fails the message at once and puts the vendor's reason on the change, which stays `submitted`.
A cancel waits while its create is being sent, so it cancels what the create makes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from syncplane.changes.events import record_event
from syncplane.changes.external import apply_external_changes
from syncplane.changes.models import ChangeRequest, EventSource
from syncplane.integrations.itsm import ChangeDraft, ExternalChange, ItsmConnector
from syncplane.integrations.models import OutboxKind, OutboxMessage, OutboxStatus
from syncplane.integrations.outbox import RETRY_DELAYS, Defer, register_handler


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


def _change_of(message: OutboxMessage) -> ChangeRequest:
    return ChangeRequest.objects.select_related("external_system", "requester").get(pk=message.subject_id)


def _locked_change(message: OutboxMessage) -> ChangeRequest:
    return ChangeRequest.objects.select_for_update().get(pk=message.subject_id)


class CreateChange:
    """change.create: find the change by its correlation id, or create it; then adopt it."""

    def send(self, message: OutboxMessage, connector: ItsmConnector) -> Callable[[], None]:
        change = _change_of(message)
        if change.external_key:
            return lambda: None  # an earlier delivery got through (and the sink or a webhook may have adopted it)
        external = connector.find_change(change.correlation_id)
        found = external is not None
        if external is None:
            external = connector.create_change(draft_of(change))
        return lambda: adopt(ChangeRequest.objects.select_for_update().get(pk=change.pk), external, found=found)

    def dead_letter(self, message: OutboxMessage, reason: str) -> None:
        # The change stays submitted (the CAB never saw it); the reason is on the change for its owner.
        change = _locked_change(message)
        change.submission_error = reason[:4000]
        change.save(update_fields=["submission_error", "updated_at"])
        record_event(change, event_type="change.submission_failed", source=EventSource.OUTBOX,
                     actor=message.external_system.name, detail=reason)


class CancelChange:
    """change.cancel: cancel the external change; if the create never got through, stop it instead."""

    def send(self, message: OutboxMessage, connector: ItsmConnector) -> Callable[[], None]:
        change = _change_of(message)
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
                    raise Defer(create.leased_until)  # the create is being sent right now: cancel what it makes
                stopped = (
                    OutboxMessage.objects.filter(pk=create.pk, status=OutboxStatus.PENDING)
                    .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
                    .update(status=OutboxStatus.FAILED, last_error="cancelled in Syncplane before it was delivered")
                )
                if not stopped:
                    raise Defer(now + timedelta(seconds=RETRY_DELAYS[0]))
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

    def dead_letter(self, message: OutboxMessage, reason: str) -> None:
        change = _locked_change(message)
        record_event(change, event_type="change.cancel_failed", source=EventSource.OUTBOX,
                     actor=message.external_system.name, detail=reason)


def register_handlers() -> None:
    """Called from ChangesConfig.ready."""
    register_handler(OutboxKind.CHANGE_CREATE, CREATE)
    register_handler(OutboxKind.CHANGE_CANCEL, CANCEL)


CREATE = CreateChange()
CANCEL = CancelChange()

__all__ = ["CANCEL", "CREATE", "CancelChange", "CreateChange", "adopt", "draft_of", "register_handlers"]
