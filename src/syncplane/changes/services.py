"""What can happen to a change request, in one place: submit, cancel, and the ITSM tool's news applied.

Every state change goes through the table in `states.py`, leaves ChangeEvent rows (immutable evidence) and one
structured log line per event. Outbound work (creating and cancelling the external change request) is written
as an OutboxMessage in the same transaction and delivered after commit (`changes/outbox.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from syncplane.changes.choices import ChangeState, Decision
from syncplane.changes.models import ApprovalRecord, ChangeEvent, ChangeRequest, EventSource
from syncplane.changes.states import IllegalTransition, check_transition, path_to
from syncplane.core.context import get_correlation_id
from syncplane.integrations.choices import Category
from syncplane.integrations.itsm import ApprovalDecision, ExternalChange, ItsmConnector
from syncplane.integrations.models import ExternalSystem, OutboxKind, OutboxMessage, OutboxStatus
from syncplane.integrations.registry import get_connector_class

logger = logging.getLogger("syncplane.changes")

# A fresh outbox message is sent by its on_commit task at once; the beat job takes it over only after this
# long, so the two do not race for every message (a race would still deliver once: see outbox.py).
OUTBOX_GRACE = timedelta(seconds=60)


class ChangeError(Exception):
    """A request the change's rules refuse (not a state-machine violation): the API answers 400."""


# --- events -----------------------------------------------------------------------------------------

def _event_type(to_state: str) -> str:
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


def _actor(user) -> str:
    return user.get_username() if user is not None and user.is_authenticated else ""


# --- user actions -------------------------------------------------------------------------------------

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
    from syncplane.changes.tasks import queue_delivery

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
        queue_delivery(message.pk)
    return change


def resubmit(change: ChangeRequest, *, user=None) -> ChangeRequest:
    """Send a submitted change to the ITSM tool again after its delivery failed for good (the vendor refused it,
    or every retry failed), once the cause is fixed. The same outbox message goes out again, with its attempts
    counted afresh: it keeps the change's correlation id, so a change that did get created is found, not
    created twice."""
    from syncplane.changes.tasks import queue_delivery

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
        message.status = OutboxStatus.PENDING
        message.attempts = 0
        message.leased_until = None
        message.next_attempt_at = timezone.now() + OUTBOX_GRACE
        message.save(update_fields=["status", "attempts", "leased_until", "next_attempt_at"])
        change.submission_error = ""
        change.save(update_fields=["submission_error", "updated_at"])
        record_event(change, event_type="change.resubmitted", source=EventSource.USER, actor=_actor(user),
                     detail=f"to {change.external_system.name}")
        queue_delivery(message.pk)
    return change


def cancel(change: ChangeRequest, *, user=None, reason: str = "") -> ChangeRequest:
    """Cancel in Syncplane; a submitted change is then cancelled in the ITSM tool too (through the outbox)."""
    from syncplane.changes.tasks import queue_delivery

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
            queue_delivery(message.pk)
    return change


# --- the ITSM tool's news -----------------------------------------------------------------------------

ID_FIELDS = ("external_key", "external_change_request_id", "external_url", "external_updated_at")


@dataclass
class ChangeUpdate:
    """What one ExternalChange means for one ChangeRequest: steps to walk, ids to store, new approvals."""

    change: ChangeRequest
    external: ExternalChange
    path: list[str] = field(default_factory=list)
    fields: dict[str, tuple] = field(default_factory=dict)
    approvals: list[ApprovalDecision] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.path or self.fields or self.approvals)

    def diff(self) -> dict:
        diff = {name: [_plain(old), _plain(new)] for name, (old, new) in self.fields.items()}
        if self.path:
            diff["state"] = [self.change.state, self.path[-1]]
        if self.approvals:
            diff["approvals"] = [None, [f"{a.decision} by {a.approver}" for a in self.approvals]]
        return diff


def _plain(value):
    return value.isoformat() if isinstance(value, datetime) else value


def external_from_attributes(external_id: str, attributes: dict) -> ExternalChange:
    """The inverse of ExternalChange.as_attributes (what the sync engine hands the sink)."""
    return ExternalChange(
        external_id=external_id,
        number=attributes.get("number") or "",
        state=attributes.get("state") or "",
        correlation_id=attributes.get("correlation_id") or "",
        updated_at=_datetime(attributes.get("updated_at")),
        approvals=[
            ApprovalDecision(
                external_id=str(a.get("external_id") or ""), approver=a.get("approver") or "",
                decision=a.get("decision") or "", comment=a.get("comment") or "",
                decided_at=_datetime(a.get("decided_at")),
            )
            for a in attributes.get("approvals") or []
        ],
        url=attributes.get("url") or "",
        detail=attributes.get("detail") or "",
    )


def _datetime(value):
    if not value:
        return None
    if not isinstance(value, datetime):
        value = parse_datetime(value)
    return _aware(value)


def _aware(value: datetime | None) -> datetime | None:
    """Connectors report UTC; a naive value is taken as such so it compares with the stored ones."""
    if value is not None and timezone.is_naive(value):
        return timezone.make_aware(value, UTC)
    return value


def plan_updates(system_id: int, externals: list[ExternalChange], *, lock: bool = False) -> list[ChangeUpdate]:
    """Two queries for any number of changes: the changes (by external key, or by correlation id for a create
    whose answer was lost), and their recorded approvals. Ids Syncplane does not know are left out."""
    latest = {e.external_id: e for e in externals if e.external_id}  # repeated within a page: the last wins
    if not latest:
        return []
    correlation_ids = [e.correlation_id for e in latest.values() if e.correlation_id]
    query = ChangeRequest.objects.filter(external_system_id=system_id).filter(
        Q(external_key__in=list(latest)) | Q(correlation_id__in=correlation_ids)
    )
    if lock:
        query = query.select_for_update()
    by_key, by_correlation = {}, {}
    for change in query:
        if change.external_key:
            by_key[change.external_key] = change
        by_correlation[change.correlation_id] = change
    matched = []
    for external in latest.values():
        change = by_key.get(external.external_id)
        if change is None:
            candidate = by_correlation.get(external.correlation_id)
            # The correlation id only adopts a change that has no external key yet: never re-point one.
            if candidate is not None and not candidate.external_key:
                change = candidate
        if change is not None:
            matched.append((change, external))
    recorded = set(
        ApprovalRecord.objects.filter(change__in=[c for c, _ in matched]).values_list("change_id", "external_id")
    )
    updates = []
    for change, external in matched:
        update = ChangeUpdate(change, external, path=path_to(change.state, external.state))
        new_values = {
            "external_key": external.external_id,
            "external_change_request_id": external.number or change.external_change_request_id,
            "external_url": external.url or change.external_url,
        }
        updated_at = _aware(external.updated_at)
        if updated_at and (change.external_updated_at is None or updated_at > change.external_updated_at):
            new_values["external_updated_at"] = updated_at
        update.fields = {
            name: (getattr(change, name), value) for name, value in new_values.items()
            if getattr(change, name) != value
        }
        seen = set()
        for approval in external.approvals:
            key = (change.pk, approval.external_id)
            if approval.decision in Decision.values and approval.external_id and key not in recorded \
                    and key not in seen:
                seen.add(key)
                update.approvals.append(approval)
        updates.append(update)
    return updates


def write_updates(updates: list[ChangeUpdate], *, source: str, actor: str, now: datetime | None = None) -> int:
    """Write the planned updates in bulk: changes, approvals, events. The caller holds the transaction (and
    the row locks, from plan_updates(lock=True)). Returns how many changes moved or learned something."""
    now = now or timezone.now()
    changed = [u for u in updates if u.changed]
    if not changed:
        return 0
    last = dict(
        ChangeEvent.objects.filter(change__in=[u.change for u in changed]).values("change_id")
        .annotate(last=Max("sequence")).values_list("change_id", "last")
    )
    correlation_id = get_correlation_id() or ""
    events, approvals = [], []
    for update in changed:
        change = update.change
        for name, (_old, new) in update.fields.items():
            setattr(change, name, new)
        for decision in update.approvals:
            approvals.append(ApprovalRecord(
                change=change, external_id=decision.external_id[:255], approver=decision.approver[:255],
                decision=decision.decision, comment=decision.comment, decided_at=decision.decided_at,
                source=source, created_at=now,
            ))
        sequence = last.get(change.pk) or 0
        previous = change.state
        for step in update.path:
            sequence += 1
            detail = update.external.detail if step == update.path[-1] else "step not reported, passed through"
            events.append(ChangeEvent(
                change=change, sequence=sequence, from_state=previous, to_state=step, event_type=_event_type(step),
                actor=actor[:150], source=source, detail=detail, correlation_id=correlation_id, created_at=now,
            ))
            previous = step
        change.state = previous
        change.updated_at = now
    ChangeRequest.objects.bulk_update(
        [u.change for u in changed], ["state", *ID_FIELDS, "updated_at"], batch_size=500
    )
    ApprovalRecord.objects.bulk_create(approvals, batch_size=500)
    ChangeEvent.objects.bulk_create(events, batch_size=500)
    for event in events:
        log_event(event)
    return len(changed)


def apply_external_changes(system: ExternalSystem, externals: list[ExternalChange], *, source: str) -> int:
    """The ITSM tool's current view of some changes, applied in one transaction (webhooks, deliveries)."""
    with transaction.atomic():
        updates = plan_updates(system.pk, externals, lock=True)
        return write_updates(updates, source=source, actor=system.name)


__all__ = [
    "ChangeError",
    "ChangeUpdate",
    "IllegalTransition",
    "apply_external_changes",
    "cancel",
    "external_from_attributes",
    "plan_updates",
    "record_event",
    "submit",
    "write_updates",
]
