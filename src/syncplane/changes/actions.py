"""What a user does to a change: submit it to the CAB, send it again after a failed delivery, cancel it.

Every state change goes through the table in `states.py` and leaves ChangeEvent rows (`events.py`). Outbound
work (creating and cancelling the external change request) is written as an OutboxMessage in the same
transaction and delivered after commit by its handler (`delivery.py`).
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from syncplane.changes.choices import ChangeState
from syncplane.changes.events import record_event
from syncplane.changes.models import ChangeRequest, EventSource
from syncplane.changes.states import IllegalTransition, check_transition
from syncplane.integrations import outbox
from syncplane.integrations.choices import Category
from syncplane.integrations.itsm import ItsmConnector
from syncplane.integrations.models import ExternalSystem, OutboxKind, OutboxMessage, OutboxStatus
from syncplane.integrations.registry import get_connector_class

# A fresh outbox message is sent by its on_commit task at once; the beat job takes it over only after this
# long, so the two do not race for every message (a race would still deliver once: see integrations/outbox.py).
OUTBOX_GRACE = timedelta(seconds=60)


class ChangeError(Exception):
    """A request the change's rules refuse (not a state-machine violation): the API answers 400."""


def _actor(user) -> str:
    return user.get_username() if user is not None and user.is_authenticated else ""


def _itsm_connector_class(system: ExternalSystem) -> type[ItsmConnector]:
    if system.archived_at is not None:
        raise ChangeError(f"integration {system.name} has been deleted")
    if system.category != Category.ITSM:
        raise ChangeError(f"integration {system.name} is not an ITSM integration")
    try:
        cls = get_connector_class(system.system_type)
    except KeyError as exc:
        raise ChangeError(str(exc).strip('"')) from None
    if not issubclass(cls, ItsmConnector) or not cls.supports("change_requests"):
        raise ChangeError(f"{cls.display_name} cannot take change requests")
    return cls


def submit(change: ChangeRequest, *, user=None, external_system: ExternalSystem | None = None) -> ChangeRequest:
    """draft -> submitted, and the intent to create the external change request, in one transaction."""
    with transaction.atomic():
        change = ChangeRequest.objects.select_for_update().get(pk=change.pk)
        check_transition(change.state, ChangeState.SUBMITTED)
        system = external_system or change.external_system
        if system is None:
            raise ChangeError("choose the ITSM integration to submit to (external_system)")
        _itsm_connector_class(system)
        previous = change.state
        change.external_system = system
        change.state = ChangeState.SUBMITTED
        change.submission_error = ""
        change.save(update_fields=["external_system", "state", "submission_error", "updated_at"])
        record_event(change, event_type="change.submitted", source=EventSource.USER, actor=_actor(user),
                     from_state=previous, to_state=ChangeState.SUBMITTED, detail=f"to {system.name}")
        message = OutboxMessage.objects.create(
            kind=OutboxKind.CHANGE_CREATE, external_system=system, subject_type="change",
            subject_id=str(change.pk), idempotency_key=change.correlation_id,
            payload={"correlation_id": change.correlation_id},
            next_attempt_at=timezone.now() + OUTBOX_GRACE,
        )
        outbox.queue_delivery(message.pk)
    return change


def resubmit(change: ChangeRequest, *, user=None) -> ChangeRequest:
    """Send a submitted change to the ITSM tool again after its delivery failed for good (the vendor refused it,
    or every retry failed), once the cause is fixed. The same outbox message goes out again, with its attempts
    counted afresh: it keeps the change's correlation id, so a change that did get created is found, not
    created twice."""
    with transaction.atomic():
        change = ChangeRequest.objects.select_for_update().get(pk=change.pk)
        message = OutboxMessage.objects.select_for_update().filter(
            kind=OutboxKind.CHANGE_CREATE, subject_type="change", subject_id=str(change.pk)
        ).first()
        if change.state != ChangeState.SUBMITTED or change.external_key or message is None \
                or message.status != OutboxStatus.FAILED:
            raise ChangeError("only a submitted change whose delivery failed can be sent again; "
                              f"this one is {change.state}"
                              + (f" as {change.external_change_request_id}" if change.external_key else ""))
        outbox.resend(message, grace=OUTBOX_GRACE)
        change.submission_error = ""
        change.save(update_fields=["submission_error", "updated_at"])
        record_event(change, event_type="change.resubmitted", source=EventSource.USER, actor=_actor(user),
                     detail=f"to {change.external_system.name}")
        outbox.queue_delivery(message.pk)
    return change


def cancel(change: ChangeRequest, *, user=None, reason: str = "") -> ChangeRequest:
    """Cancel in Syncplane; a submitted change is then cancelled in the ITSM tool too (through the outbox)."""
    with transaction.atomic():
        change = ChangeRequest.objects.select_for_update().get(pk=change.pk)
        check_transition(change.state, ChangeState.CANCELLED)
        previous = change.state
        change.state = ChangeState.CANCELLED
        change.save(update_fields=["state", "updated_at"])
        record_event(change, event_type="change.cancelled", source=EventSource.USER, actor=_actor(user),
                     from_state=previous, to_state=ChangeState.CANCELLED, detail=reason)
        if previous != ChangeState.DRAFT and change.external_system_id:
            message = OutboxMessage.objects.create(
                kind=OutboxKind.CHANGE_CANCEL, external_system_id=change.external_system_id,
                subject_type="change", subject_id=str(change.pk),
                idempotency_key=f"{change.correlation_id}:cancel",
                payload={"reason": reason or f"Cancelled in Syncplane by {_actor(user) or 'a user'}"},
                next_attempt_at=timezone.now() + OUTBOX_GRACE,
            )
            outbox.queue_delivery(message.pk)
    return change


__all__ = ["OUTBOX_GRACE", "ChangeError", "IllegalTransition", "cancel", "resubmit", "submit"]
