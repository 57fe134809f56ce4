"""The ITSM tool's news about Syncplane's changes, applied: from a poll (the sync engine, through the
ChangeSink), a webhook, or the answer to a delivery.

`plan_updates` matches the tool's view of some changes to ours in two queries and works out what it means
(the steps of the state machine to walk, ids to store, new approvals); `write_updates` writes that in bulk,
with one ChangeEvent per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from syncplane.changes.choices import Decision
from syncplane.changes.events import event_type_of, log_event, publish
from syncplane.changes.models import ApprovalRecord, ChangeEvent, ChangeRequest
from syncplane.changes.states import path_to
from syncplane.core.context import get_correlation_id
from syncplane.integrations.itsm import ApprovalDecision, ExternalChange
from syncplane.integrations.models import ExternalSystem

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
                change=change, sequence=sequence, from_state=previous, to_state=step,
                event_type=event_type_of(step), actor=actor[:150], source=source, detail=detail,
                correlation_id=correlation_id, created_at=now,
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
    publish(events)
    return len(changed)


def apply_external_changes(system: ExternalSystem, externals: list[ExternalChange], *, source: str) -> int:
    """The ITSM tool's current view of some changes, applied in one transaction (webhooks, deliveries)."""
    with transaction.atomic():
        updates = plan_updates(system.pk, externals, lock=True)
        return write_updates(updates, source=source, actor=system.name)


__all__ = [
    "ChangeUpdate",
    "apply_external_changes",
    "external_from_attributes",
    "plan_updates",
    "write_updates",
]
