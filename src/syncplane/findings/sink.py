"""The sink of record kind "finding": what the sync engine writes a security integration's records through.

A page may hold three kinds of records (integrations/records.py):
- "finding" (FindingRecord): written set-based by the FindingWriter (findings/writer.py);
- "scan" (ScanSummary): kept until the end of the pass; `finish` then applies the complete ones with the pass's
  start as cutoff, so a finding seen anywhere in the pass (also before a resume) is not fixed. Completeness is
  per target: a record that could not be used (it may be one of the findings a scan reported) makes its
  target's scan incomplete, and the other targets' complete summaries still apply. Its target is the one the
  sink saw when the record failed validation, else the one its raw record names (`target`, or
  `attributes.target`: a failed scan of a scanner integration, a page record); a failed record whose target
  cannot be told stops every summary of the pass. A run that stops before its end (an error, a cancel) never
  reaches `finish`: it fixes nothing;
- "machine" (SecurityMachine): an asset of the inventory, written through the asset sink of the same
  integration (sink_for(RecordKind.ASSET)), as the directory sink writes its devices.

Findings are never "deleted" by the engine's deletion reconciliation: their life ends by a complete scan
(fixed), so `unseen` and friends speak for the machines only. Each pass that wrote findings is recorded as a
Scan row of the integration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q
from django.utils import timezone

from syncplane.core.context import get_correlation_id
from syncplane.findings.choices import ScanStatus
from syncplane.findings.lifecycle import expire_decisions
from syncplane.findings.models import Scan
from syncplane.findings.writer import BatchPlan, FindingWriter, validate_finding, validate_summary
from syncplane.integrations.base import MappedRecord
from syncplane.integrations.choices import RecordAction, RecordKind, RecordStatus
from syncplane.integrations.errors import RecordError
from syncplane.integrations.models import IntegrationSyncLog, SyncRecordOutcome
from syncplane.integrations.sinks import PlannedChange, check_external_id, sink_for

MACHINE_KEYS = frozenset({"kind", "removed", "asset"})


@dataclass
class FindingPagePlan:
    findings: BatchPlan
    machines: Any  # the asset sink's plan of this page's machines
    removed_machines: list[str] = field(default_factory=list)
    changes: list[PlannedChange] = field(default_factory=list)

    @property
    def created(self) -> int:
        return len(self.findings.new) + self.machines.created

    @property
    def updated(self) -> int:
        return len(self.findings.finding_updates) + len(self.findings.reopened) + self.machines.updated

    @property
    def unchanged(self) -> int:
        unchanged = self.findings.still_open - len(self.findings.finding_updates)
        return max(unchanged, 0) + self.machines.unchanged

    @property
    def deleted(self) -> int:
        return len(self.removed_machines)


class FindingSink:
    def __init__(self, external_system_id: int):
        self.system_id = external_system_id
        self.assets = sink_for(RecordKind.ASSET, external_system_id)
        self.writer = FindingWriter(external_system_id, actor=f"integration {external_system_id}",
                                    correlation_id=get_correlation_id() or "")
        self.summaries: list[dict] = []
        self.tools: set[str] = set()
        self.started_at = timezone.now()
        self.failed: dict[str, tuple[str, str]] = {}  # external id -> target, of the records validation refused

    def validate(self, record: MappedRecord) -> None:
        try:
            self._validate(record)
        except RecordError:
            target = target_key(record.attributes.get("target") if isinstance(record.attributes, dict) else None)
            if target is not None:
                self.failed[str(record.external_id)] = target
            raise

    def _validate(self, record: MappedRecord) -> None:
        kind = record.attributes.get("kind")
        if kind == "finding":
            validate_finding(record)
        elif kind == "scan":
            validate_summary(record)
        elif kind == "machine":
            unknown = set(record.attributes) - MACHINE_KEYS
            if unknown:
                raise RecordError(f"unknown machine attributes: {', '.join(sorted(unknown))}")
            check_external_id(record.external_id, 255)
            if not isinstance(record.attributes.get("removed", False), bool):
                raise RecordError("removed must be true or false")
            if not record.attributes.get("removed"):
                asset = record.attributes.get("asset")
                if not isinstance(asset, dict):
                    raise RecordError("a machine record needs an asset object")
                self.assets.validate(MappedRecord(record.external_id, asset, record.raw))
        else:
            raise RecordError(f"kind {kind!r} is not one of finding, scan, machine")

    def plan(self, records: list[MappedRecord]) -> FindingPagePlan:
        findings, summaries, machines, removed = [], [], {}, {}
        for record in records:
            kind = record.attributes["kind"]
            if kind == "finding":
                findings.append(record)
            elif kind == "scan":
                summaries.append(record)
            elif record.attributes.get("removed"):
                removed[record.external_id] = record
                machines.pop(record.external_id, None)
            else:
                machines[record.external_id] = MappedRecord(record.external_id, record.attributes["asset"], record.raw)
                removed.pop(record.external_id, None)
        page = FindingPagePlan(self.writer.plan(findings, summaries),
                               self.assets.plan(list(machines.values())))
        page.changes = [*page.findings.changes, *page.machines.changes]
        if removed:
            page.removed_machines = sorted(self.assets.live(list(removed)))
            page.changes.extend(PlannedChange(eid, RecordAction.DELETE, None) for eid in page.removed_machines)
        return page

    def apply(self, plan: FindingPagePlan, now: datetime) -> None:
        # Machines first: the findings of a machine on the same page link to its asset.
        self.assets.apply(plan.machines, now)
        if plan.removed_machines:
            self.assets.mark_deleted(plan.removed_machines, now)
        self.writer.apply(plan.findings, now)
        self.summaries.extend(plan.findings.summaries)
        self.tools.update(s["tool"] for s in plan.findings.summaries)
        self.tools.update(new.record.attributes["tool"] for new in plan.findings.new)

    # --- the end of a pass: machines' deletion reconciliation, findings' complete scans --------------------

    def unseen(self, seen_before: datetime) -> list[str]:
        return self.assets.unseen(seen_before)

    def live(self, external_ids: list[str]) -> list[str]:
        return self.assets.live(external_ids)

    def mark_seen(self, external_ids: list[str], now: datetime) -> None:
        self.assets.mark_seen(external_ids, now)

    def mark_deleted(self, external_ids: list[str], now: datetime) -> None:
        self.assets.mark_deleted(external_ids, now)

    def count_unseen(self, seen_external_ids: set[str]) -> list[str]:
        return self.assets.count_unseen(seen_external_ids)

    def finish(self, *, complete_full_pass: bool, dry_run: bool, now: datetime,
               pass_started_at: datetime | None = None) -> None:
        """Apply the pass's complete scan summaries of the targets without a failed record (cutoff: the pass's
        start), link asset targets whose machine arrived later in the pass, and record the pass as a Scan."""
        if dry_run:
            return
        writer = self.writer
        started = pass_started_at or self.started_at
        writer.link_remaining(now)
        # A clean full pass has no failed record; otherwise ask which targets had one (before a resume too).
        failed = set() if complete_full_pass else self.failed_targets(started)
        applied = [] if failed is None else [
            s for s in self.summaries if s["complete"] and target_key(s["target"]) not in failed]
        writer.close_scans(applied, started, now)
        expire_decisions(now)
        counts = writer.counts
        if not (counts["total"] or counts["fixed"] or self.summaries):
            return
        complete = bool(self.summaries) and len(applied) == len(self.summaries)
        scan = Scan.objects.create(
            tool=", ".join(sorted(self.tools))[:40], integration_id=self.system_id,
            status=ScanStatus.COMPLETE if complete else ScanStatus.PARTIAL,
            correlation_id=writer.correlation_id, started_at=started, finished_at=now, **counts,
        )
        scan.targets.add(*writer.seen_target_ids)

    def failed_targets(self, pass_started_at: datetime) -> set[tuple[str, str]] | None:
        """(kind, ref) of each target with a record of this pass that could not be used (the engine's failed
        outcomes of this integration since the pass began, resumed runs' included); None when one of them
        names no target: then no scan of the pass can be called complete."""
        runs = IntegrationSyncLog.objects.filter(external_system_id=self.system_id).filter(
            Q(finished_at__isnull=True) | Q(finished_at__gte=pass_started_at))
        failures = SyncRecordOutcome.objects.filter(sync_log__in=runs, status=RecordStatus.FAILED,
                                                    created_at__gte=pass_started_at)
        targets = set()
        for external_id, raw in failures.values_list("external_id", "raw_payload").iterator():
            target = self.failed.get(external_id) or failed_target(raw)
            if target is None:
                return None
            targets.add(target)
        return targets


def failed_target(raw) -> tuple[str, str] | None:
    """The target a failed record's raw payload names: a failed scan's `target`, a page record's
    `attributes.target`."""
    if not isinstance(raw, dict):
        return None
    attributes = raw.get("attributes")
    return target_key(raw.get("target")) or target_key(attributes.get("target") if isinstance(attributes, dict)
                                                       else None)


def target_key(target) -> tuple[str, str] | None:
    """(kind, ref) of a target object, None when it is not one."""
    if isinstance(target, dict) and isinstance(target.get("kind"), str) and isinstance(target.get("ref"), str) \
            and target["ref"]:
        return target["kind"], target["ref"]
    return None
