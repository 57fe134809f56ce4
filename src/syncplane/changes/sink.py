"""The sync engine's sink for record_kind "change": the ITSM tool's view of Syncplane's changes, applied.

Same interface as inventory.sink.AssetSink. A poll never creates a change (Syncplane creates them, through
the outbox) and never deletes one: records of changes Syncplane does not know are counted unchanged, and
unseen() is empty. Per page: one query for the page's changes (by external key, or by correlation id for a
create whose answer was lost), one for their approvals; writes in bulk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.utils.dateparse import parse_datetime

from syncplane.changes.choices import ChangeState, Decision
from syncplane.changes.external import ChangeUpdate, external_from_attributes, plan_updates, write_updates
from syncplane.changes.models import ChangeRequest, EventSource
from syncplane.core.bulk import misfits
from syncplane.integrations.base import MappedRecord
from syncplane.integrations.choices import RecordAction
from syncplane.integrations.errors import RecordError
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.sinks import PlannedChange, check_external_id

_STATES = frozenset(ChangeState.values)
_DECISIONS = frozenset(Decision.values)
# The columns a record's text lands in (None: a text column, or cut to fit when written).
CHANGE_TEXT = {"number": ChangeRequest._meta.get_field("external_change_request_id").max_length,
               "url": ChangeRequest._meta.get_field("external_url").max_length,
               "correlation_id": None, "detail": None}
APPROVAL_TEXT = dict.fromkeys(("external_id", "approver", "comment"))


def validate_change_record(record: MappedRecord) -> None:
    """A record must name a known state and fit the columns it is written to; a value the database would
    refuse fails this record, never its page."""
    check_external_id(record.external_id, ChangeRequest._meta.get_field("external_key").max_length)
    attributes = record.attributes
    state = attributes.get("state")
    if state not in _STATES:
        raise RecordError(f"state {state!r} is not one of {', '.join(sorted(_STATES))}")
    problems = misfits(attributes, CHANGE_TEXT)
    _check_time(attributes, "updated_at", problems)
    for approval in attributes.get("approvals") or []:
        if approval.get("decision") not in _DECISIONS:
            raise RecordError(f"approval decision {approval.get('decision')!r} is not approved or rejected")
        if not approval.get("external_id"):
            raise RecordError("an approval has no external id")
        problems.extend(f"approval {p}" for p in misfits(approval, APPROVAL_TEXT))
        _check_time(approval, "decided_at", problems)
    if problems:
        raise RecordError("; ".join(problems))


def _check_time(values: dict, name: str, problems: list[str]) -> None:
    """A time that would make the write fail (an impossible date); one in no known format is left out later."""
    value = values.get(name)
    if not value or isinstance(value, datetime):
        return
    try:
        parse_datetime(value)
    except (TypeError, ValueError):
        problems.append(f"{name} {str(value)[:40]!r} is not a date and time")


@dataclass
class ChangePagePlan:
    records: list[MappedRecord] = field(default_factory=list)
    updates: list[ChangeUpdate] = field(default_factory=list)
    unchanged_count: int = 0
    changes: list[PlannedChange] = field(default_factory=list)

    created = 0  # a sync never creates a change request
    deleted = 0  # nor deletes one

    @property
    def updated(self) -> int:
        return len(self.updates)

    @property
    def unchanged(self) -> int:
        return self.unchanged_count


class ChangeSink:
    def __init__(self, external_system_id: int):
        self.system_id = external_system_id
        self._system: ExternalSystem | None = None

    @property
    def system(self) -> ExternalSystem:
        if self._system is None:
            self._system = ExternalSystem.objects.get(pk=self.system_id)
        return self._system

    def validate(self, record: MappedRecord) -> None:
        validate_change_record(record)

    @staticmethod
    def _externals(records: list[MappedRecord]):
        return [external_from_attributes(r.external_id, r.attributes) for r in records]

    def plan(self, records: list[MappedRecord]) -> ChangePagePlan:
        externals = self._externals(records)
        updates = [u for u in plan_updates(self.system_id, externals) if u.changed]
        plan = ChangePagePlan(records=records, updates=updates)
        plan.unchanged_count = len({e.external_id for e in externals}) - len(updates)
        plan.changes = [PlannedChange(u.external.external_id, RecordAction.UPDATE, u.diff()) for u in updates]
        return plan

    def apply(self, plan: ChangePagePlan, now: datetime) -> None:
        # Planned again under the row locks: a webhook may have moved a change since plan() read it.
        updates = plan_updates(self.system_id, self._externals(plan.records), lock=True)
        write_updates(updates, source=EventSource.POLL, actor=self.system.name, now=now)

    def known_ids(self) -> set[str]:
        """External keys of the changes created through this integration: how a connector whose list answers
        lack the correlation field (Freshservice) recognises its own changes. One query."""
        return set(ChangeRequest.objects.filter(external_system_id=self.system_id).exclude(external_key="")
                   .values_list("external_key", flat=True))

    def unseen(self, seen_before: datetime) -> list[str]:
        return []  # a change is never deleted by a sync

    def live(self, external_ids: list[str]) -> list[str]:
        return []

    def mark_seen(self, external_ids: list[str], now: datetime) -> None:
        pass

    def mark_deleted(self, external_ids: list[str], now: datetime) -> None:
        pass

    def count_unseen(self, seen_external_ids: set[str]) -> list[str]:
        return []

    def finish(self, *, complete_full_pass: bool, dry_run: bool, now, pass_started_at=None) -> None:
        """After the pass (the engine's hook): every change was applied with its page."""


__all__ = ["ChangePagePlan", "ChangeSink", "validate_change_record"]
