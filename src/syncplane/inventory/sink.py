"""Writes one page of mapped asset records into the inventory, set-based.

Per page: one query reads the existing sources of the page's records (id, fingerprint, deleted mark);
records whose fingerprint is unchanged only get their sighting moved (a narrow row of its own), in one
statement; new and changed records are written in bulk. Never one query per record.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from django.db import OperationalError, connection, transaction
from django.db.models import Q

from syncplane.core.bulk import Table, chunks, max_lengths, misfits
from syncplane.integrations.base import MappedRecord
from syncplane.integrations.choices import RecordAction
from syncplane.integrations.errors import RecordError
from syncplane.integrations.sinks import PlannedChange, check_external_id, fingerprint
from syncplane.inventory.choices import AssetStatus, AssetType, ComplianceState
from syncplane.inventory.models import CANONICAL_FIELDS, Asset, AssetSource, SourceSighting
from syncplane.inventory.reconcile import asset_values
from syncplane.inventory.reconciler import Reconciler, WriteConflict

ASSET_COLUMNS = ("id", *CANONICAL_FIELDS, "attribute_sources", "is_orphaned", "created_at", "updated_at")
ASSET_UPDATE_COLUMNS = (*CANONICAL_FIELDS, "attribute_sources", "is_orphaned", "updated_at")
SOURCE_COLUMNS = (
    "id", "asset_id", "external_system_id", "external_id", "attributes", "raw_payload", "fingerprint",
    "serial_key", "mac_key", "host_key", "device_key", "first_seen_at", "last_seen_at", "updated_at", "deleted_at",
)
SOURCE_UPDATE_COLUMNS = (
    "asset_id", "attributes", "raw_payload", "fingerprint", "serial_key", "mac_key", "host_key", "device_key",
    "last_seen_at", "updated_at", "deleted_at",
)

_KNOWN = frozenset(CANONICAL_FIELDS)
_CHOICES = {
    "asset_type": frozenset(AssetType.values),
    "status": frozenset(AssetStatus.values),
    "compliance_state": frozenset(ComplianceState.values),
}
# The asset's text columns each attribute lands in (the identification keys are cut from these, never longer).
TEXT_LIMITS = max_lengths(Asset, CANONICAL_FIELDS)
EXTERNAL_ID_MAX = AssetSource._meta.get_field("external_id").max_length
# PostgreSQL, several workers: a page that lost a deadlock (40P01), a serialization failure (40001) or a
# WriteConflict is written again this many times, after a short random pause, before the run's retry takes over.
CONFLICT_TRIES = 5
RETRIED_SQLSTATES = frozenset({"40P01", "40001"})

logger = logging.getLogger(__name__)


def validate_asset_record(record: MappedRecord) -> None:
    """A mapped record must speak the canonical vocabulary and fit the inventory's columns; a connector bug or
    a bad vendor value shows here, as this record's error, instead of as a database error that fails its page.
    NULs are removed (docs/runbooks/integration-setup.md, "Values the database cannot keep")."""
    attributes = record.attributes
    unknown = set(attributes) - _KNOWN
    if unknown:
        raise RecordError(f"unknown attributes: {', '.join(sorted(unknown))}")
    for name, allowed in _CHOICES.items():
        if attributes.get(name) not in (None, "", *allowed):
            raise RecordError(f"{name} {attributes[name]!r} is not one of {', '.join(sorted(allowed))}")
    check_external_id(record.external_id, EXTERNAL_ID_MAX)
    problems = misfits(attributes, TEXT_LIMITS)
    score = attributes.get("compliance_score")
    if isinstance(score, str) and score.strip().isdigit():  # a field mapping reads vendor text
        score = attributes["compliance_score"] = int(score)
    if score not in (None, "") and (type(score) is not int or not 0 <= score <= 100):
        problems.append(f"compliance_score {score!r} is not a whole number from 0 to 100")
    for name in ("last_seen_at", "compliance_checked_at"):
        seen = attributes.get(name)
        if seen not in (None, "") and not isinstance(seen, datetime):
            try:
                datetime.fromisoformat(seen)
            except (TypeError, ValueError):
                problems.append(f"{name} {str(seen)[:40]!r} is not an ISO 8601 date and time")
    reasons = attributes.get("compliance_reasons")
    if reasons is not None and not (isinstance(reasons, list) and all(isinstance(r, str) for r in reasons)):
        problems.append("compliance_reasons must be a list of text")
    if problems:
        raise RecordError("; ".join(problems))


class ExistingSource(NamedTuple):
    """What a page needs of a source it already has. Ids come in the driver's form (hex text on SQLite)."""

    id: Any
    asset_id: Any
    fingerprint: str
    deleted_at: Any
    serial_key: str
    mac_key: str
    host_key: str
    device_key: str

    @property
    def keys(self) -> tuple[str, str, str, str]:
        """The identification keys, in the order of identity.RULES (serial, MAC, host, Entra device id)."""
        return (self.serial_key, self.mac_key, self.host_key, self.device_key)


@dataclass
class PagePlan:
    creates: list[tuple[MappedRecord, str]] = field(default_factory=list)
    updates: list[tuple[MappedRecord, str, ExistingSource]] = field(default_factory=list)  # (record, fp, row)
    unchanged_ids: list = field(default_factory=list)
    changes: list[PlannedChange] = field(default_factory=list)

    @property
    def created(self) -> int:
        return len(self.creates)

    @property
    def updated(self) -> int:
        return len(self.updates)

    @property
    def unchanged(self) -> int:
        return len(self.unchanged_ids)

    deleted = 0  # a page of assets deletes nothing: deletions come from the end of a pass


class AssetSink:
    def __init__(self, external_system_id: int):
        self.system_id = external_system_id
        self.assets = Table(Asset, ASSET_COLUMNS)
        self.asset_updates = Table(Asset, ASSET_UPDATE_COLUMNS)
        self.sources = Table(AssetSource, SOURCE_COLUMNS)
        self.source_updates = Table(AssetSource, SOURCE_UPDATE_COLUMNS)

    def validate(self, record: MappedRecord) -> None:
        validate_asset_record(record)

    def _existing(self, external_ids: list[str]) -> dict[str, ExistingSource]:
        """external_id -> its existing source, for the page, in one query per chunk.

        Raw SQL: the ORM spends more time building a 500-value IN list than the database takes to answer.
        Ids come back in the driver's form (hex text on SQLite), which the bulk writer accepts as they are.
        """
        rows = {}
        table = AssetSource._meta.db_table
        with connection.cursor() as cursor:
            for part in chunks(external_ids):
                marks = ", ".join(["%s"] * len(part))
                cursor.execute(
                    f"SELECT external_id, {', '.join(ExistingSource._fields)} "  # noqa: S608 - fixed names
                    f"FROM {table} WHERE external_system_id = %s AND external_id IN ({marks})",
                    [self.system_id, *part],
                )
                for external_id, *row in cursor.fetchall():
                    rows[external_id] = ExistingSource._make(row)
        return rows

    def plan(self, records: list[MappedRecord]) -> PagePlan:
        # A record repeated within a page (offset paging while data changes) counts once: the last wins.
        latest = {record.external_id: record for record in records}
        existing = self._existing(list(latest))
        plan = PagePlan()
        changed_ids = []
        for external_id, record in latest.items():
            fp = fingerprint(record.attributes)
            row = existing.get(external_id)
            if row is None:
                plan.creates.append((record, fp))
                plan.changes.append(PlannedChange(external_id, RecordAction.CREATE, None))
            elif row.fingerprint != fp or row.deleted_at is not None:
                plan.updates.append((record, fp, row))
                changed_ids.append(external_id)
            else:
                plan.unchanged_ids.append(row.id)
        if changed_ids:
            old = self._old_attributes(changed_ids)
            for record, _fp, row in plan.updates:
                before = old.get(record.external_id, {})
                diff = {
                    name: [before.get(name), new]
                    for name, new in record.attributes.items()
                    if before.get(name) != new
                }
                action = RecordAction.RESTORE if row.deleted_at is not None else RecordAction.UPDATE
                plan.changes.append(PlannedChange(record.external_id, action, diff))
        return plan

    def _old_attributes(self, external_ids: list[str]) -> dict[str, dict]:
        old = {}
        for part in chunks(external_ids):
            query = AssetSource.objects.filter(external_system_id=self.system_id, external_id__in=part)
            old.update(query.values_list("external_id", "attributes"))
        return old

    def apply(self, plan: PagePlan, now: datetime) -> None:
        """Write the page: sources, the assets they belong to (identified across systems), and the values of
        every asset whose sources changed. On PostgreSQL in a savepoint, written again when it collided with
        another worker's page (docs/performance.md, "Parallel workers")."""
        if connection.vendor != "postgresql":
            return self._write(plan, now)
        for attempt in range(1, CONFLICT_TRIES + 1):
            try:
                with transaction.atomic():
                    return self._write(plan, now)
            except (OperationalError, WriteConflict) as exc:
                sqlstate = getattr(exc.__cause__, "sqlstate", None)
                if attempt == CONFLICT_TRIES or not (isinstance(exc, WriteConflict) or sqlstate in RETRIED_SQLSTATES):
                    raise
                logger.warning("page collided with another sync; writing it again", extra={
                    "external_system_id": self.system_id, "attempt": attempt, "reason": sqlstate or str(exc)})
                time.sleep(random.uniform(0.05, 0.2) * attempt)  # noqa: S311 - jitter, not a secret
                self._reread(plan)

    def _reread(self, plan: PagePlan) -> None:
        """The page's changed sources as they are now: the other sync may have moved them to another asset."""
        rows = self._existing([record.external_id for record, _fp, _row in plan.updates])
        plan.updates = [(record, fp, rows.get(record.external_id, row)) for record, fp, row in plan.updates]

    def _write(self, plan: PagePlan, now: datetime) -> None:
        reconciler = Reconciler(now)
        identified = reconciler.identify(plan)
        asset_rows, source_rows = [], []
        for record, fp in plan.creates:
            source_id = identified.source_ids[record.external_id]
            asset_id = identified.asset_of(record.external_id)
            if asset_id in identified.new_assets:
                values, sources = asset_values(record.attributes, source_id)
                asset_rows.append((asset_id, *values, sources, False, now, now))
                identified.new_assets.discard(asset_id)  # one row per asset, even with two new sources
            source_rows.append(
                (source_id, asset_id, self.system_id, record.external_id, record.attributes, record.raw, fp,
                 *identified.keys[record.external_id], now, now, now, None)
            )
        self.assets.insert(asset_rows)
        self.sources.insert(source_rows)
        self.source_updates.update_by_pk(
            (row.id, identified.asset_of(record.external_id), record.attributes, record.raw, fp,
             *identified.keys[record.external_id], now, now, None)
            for record, fp, row in plan.updates
        )
        reconciler.merge(identified)
        reconciler.refresh(identified.touched_assets())
        self._touch(plan.unchanged_ids, now)

    def _touch(self, source_ids: list, now: datetime) -> None:
        """Unchanged records: their sightings move (inserted the first time), the source rows stay as they are."""
        table = SourceSighting._meta.db_table
        seen_at = self.sources.adapt_value("last_seen_at", now)
        with connection.cursor() as cursor:
            for part in chunks(source_ids):
                values = ", ".join(["(%s, %s)"] * len(part))
                cursor.execute(
                    f"INSERT INTO {table} (source_id, seen_at) VALUES {values} "  # noqa: S608 - placeholders only
                    "ON CONFLICT (source_id) DO UPDATE SET seen_at = excluded.seen_at",
                    [value for source_id in part for value in (source_id, seen_at)],
                )

    def unseen(self, seen_before: datetime) -> list[str]:
        """Live sources of this system that the full pass begun at `seen_before` did not read: neither written
        nor sighted since."""
        live = AssetSource.objects.filter(
            Q(sighting__isnull=True) | Q(sighting__seen_at__lt=seen_before),
            external_system_id=self.system_id, deleted_at__isnull=True, last_seen_at__lt=seen_before,
        )
        return list(live.values_list("external_id", flat=True))

    def live(self, external_ids: list[str]) -> list[str]:
        """Which of these external ids are live sources of this system."""
        live = []
        for part in chunks(external_ids):
            live.extend(AssetSource.objects.filter(
                external_system_id=self.system_id, external_id__in=part, deleted_at__isnull=True
            ).values_list("external_id", flat=True))
        return live

    def mark_seen(self, external_ids: list[str], now: datetime) -> None:
        for part in chunks(external_ids):
            AssetSource.objects.filter(external_system_id=self.system_id, external_id__in=part).update(
                last_seen_at=now
            )

    def mark_deleted(self, external_ids: list[str], now: datetime) -> None:
        """Gone from their system: marked, never dropped. Their assets are reconciled again without them
        (values, a split where they held others together); an asset left without a live source is flagged."""
        reconciler = Reconciler(now)
        for part in chunks(external_ids):
            gone = AssetSource.objects.filter(external_system_id=self.system_id, external_id__in=part)
            asset_ids = set(gone.values_list("asset_id", flat=True))
            gone.update(deleted_at=now, updated_at=now)
            reconciler.refresh(asset_ids)

    def count_unseen(self, seen_external_ids: set[str]) -> list[str]:
        """Which live sources are not among these ids: those a dry run's full pass did not see, or those the
        system no longer lists (a connector's `list_ids`). Marks nothing."""
        live = AssetSource.objects.filter(external_system_id=self.system_id, deleted_at__isnull=True)
        return [eid for eid in live.values_list("external_id", flat=True).iterator() if eid not in seen_external_ids]

    def finish(self, *, complete_full_pass: bool, dry_run: bool, now: datetime,
               pass_started_at: datetime | None = None) -> None:
        """After the pass (the engine's hook): assets have nothing left to do."""
