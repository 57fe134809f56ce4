"""Writes batches of finding records set-based; shared by the engine's sink and by report ingestion.

Per batch: one query reads the targets the batch names; one reads this origin's sources of the batch by their
keys, with their fingerprints: a finding whose source reported exactly what it reported last time (the common
case of a re-scan) is unchanged, and only its last_seen_at moves, in one UPDATE by key per table. Only the rest
(new, changed, no longer present, fixed) is read in full, in one more query. New findings, sources and history
rows are inserted set-based (core.bulk.Table). Never one query per record.

The lifecycle (docs/runbooks/security-findings.md):
- a reported finding that is new opens; one that was fixed reopens; accepted and false-positive stay so;
- a COMPLETE scan of a target by a tool (a ScanSummary with complete True) marks that tool's sources of the
  target's findings that it did not report as no longer present (`close_scans`); a finding with no present
  source left is fixed (open and accepted ones; a false positive stays one). A partial scan, or none, fixes
  nothing;
- each state change is a FindingEvent row (who, when, why, correlation id); the critical findings a batch opens
  or reopens emit `vulnerability.critical`, in one insert, in the same transaction.

"Last seen" is when a scan last reported the finding (the source: by this tool and origin; the finding: by any):
an unchanged finding's report moves it. Closing a complete scan relies on it: what this origin's tool has not
reported since the scan began is what the scan no longer reports.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from django.db import connection
from django.db.models import Exists, OuterRef

from syncplane.core.bulk import Table, chunks, max_lengths, misfits
from syncplane.findings.choices import FindingState, Severity, TargetKind
from syncplane.findings.models import Finding, FindingEvent, FindingSource, Target
from syncplane.integrations.base import MappedRecord
from syncplane.integrations.choices import RecordAction
from syncplane.integrations.errors import RecordError
from syncplane.integrations.records import FindingRecord, FindingTarget, ScanSummary
from syncplane.integrations.sinks import PlannedChange, check_external_id, fingerprint
from syncplane.inventory.identity import keys_of, rule_indexes, rules, same_device
from syncplane.inventory.models import AssetSource

FINDING_KEYS = frozenset(FindingRecord.__annotations__)
SCAN_KEYS = frozenset(ScanSummary.__annotations__)
TARGET_KEYS = frozenset(FindingTarget.__annotations__)
# What a finding row takes from a record (the rest: target, tool, kind, the tool's own first-seen date, are
# the source's or the key's).
FINDING_FIELDS = ("vulnerability_id", "aliases", "title", "package_name", "package_type", "installed_version",
                  "fixed_version", "purl", "severity", "cvss_score", "cvss_vector")
TEXT_LIMITS = {**max_lengths(Finding, ("vulnerability_id", "package_name", "package_type", "installed_version",
                                       "fixed_version", "cvss_vector")),
               "title": None, "purl": None, "tool": FindingSource._meta.get_field("tool").max_length}
TARGET_LIMITS = max_lengths(Target, ("ref", "name"))
EXTERNAL_ID_MAX = 255  # the engine's outcome rows keep it
_SEVERITIES = frozenset(Severity.values)
_TARGET_KINDS = frozenset(TargetKind.values)

FINDING_COLUMNS = (
    "id", "key", "target_id", "asset_id", *FINDING_FIELDS, "locations", "state", "state_reason",
    "state_changed_at", "state_changed_by", "correlation_id", "fingerprint", "first_seen_at", "last_seen_at",
    "created_at", "updated_at",
)
FINDING_UPDATE_COLUMNS = (*FINDING_FIELDS, "locations", "fingerprint", "last_seen_at", "updated_at")
REOPEN_COLUMNS = ("state", "state_reason", "state_expires_at", "state_changed_at", "state_changed_by", "fixed_at",
                  "correlation_id", "last_seen_at")
SOURCE_COLUMNS = ("id", "key", "finding_id", "tool", "integration_id", "attributes", "fingerprint", "present",
                  "first_seen_at", "last_seen_at", "updated_at")
SOURCE_UPDATE_COLUMNS = ("attributes", "fingerprint", "present", "last_seen_at", "updated_at")
EVENT_COLUMNS = ("finding_id", "from_state", "to_state", "actor", "reason", "expires_at", "correlation_id",
                 "created_at")
LOOKUP_SLICE = 1000  # keys per IN list: one statement per batch of the sink's pages and of an upload


def _hash(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def finding_key(target: dict, attributes: dict) -> str:
    """The de-duplication key: target kind + ref, vulnerability id, package name, installed version."""
    return _hash(target["kind"], target["ref"], attributes["vulnerability_id"], attributes.get("package_name", ""),
                 attributes.get("installed_version", ""))


def source_key(key: str, tool: str, integration_id: int | None) -> str:
    return _hash(key, tool, str(integration_id or ""))


def _json(value):
    """JSON read with raw SQL: text on SQLite, already decoded on PostgreSQL."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


# --- validation -------------------------------------------------------------------------------------------


def validate_target(target) -> None:
    if not isinstance(target, dict):
        raise RecordError("target must be an object with kind and ref")
    unknown = set(target) - TARGET_KEYS
    if unknown:
        raise RecordError(f"unknown target attributes: {', '.join(sorted(unknown))}")
    if target.get("kind") not in _TARGET_KINDS:
        raise RecordError(f"target.kind {target.get('kind')!r} is not one of {', '.join(sorted(_TARGET_KINDS))}")
    ref = target.get("ref")
    if not isinstance(ref, str) or not ref.strip():
        raise RecordError("target.ref must be a non-empty string")
    problems = misfits(target, TARGET_LIMITS)
    if problems:
        raise RecordError("; ".join(f"target.{p}" for p in problems))
    if "asset" in target and not isinstance(target["asset"], dict):
        raise RecordError("target.asset must be an object of asset attributes")


_last_valid_target: list = [None]  # held, so its id cannot be reused by another object


def _string_list(value) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def validate_finding(record: MappedRecord) -> None:
    """A finding record must follow the record contract and fit the columns it is written to."""
    attributes = record.attributes
    if not FINDING_KEYS.issuperset(attributes):  # runs for every record: the set is built only for the error
        raise RecordError(f"unknown finding attributes: {', '.join(sorted(set(attributes) - FINDING_KEYS))}")
    check_external_id(record.external_id, EXTERNAL_ID_MAX)
    target = attributes.get("target")
    # A parser gives every finding of a target the same target object: checked once, not once per finding.
    if target is not _last_valid_target[0]:
        validate_target(target)
        _last_valid_target[0] = target
    for name in ("vulnerability_id", "tool"):
        value = attributes.get(name)
        if not isinstance(value, str) or not value.strip():
            raise RecordError(f"{name} must be a non-empty string")
    severity = attributes.get("severity", Severity.UNKNOWN)
    if severity not in _SEVERITIES:
        raise RecordError(f"severity {severity!r} is not one of {', '.join(Severity.values)}")
    score = attributes.get("cvss_score")
    if score is not None and (type(score) not in (int, float) or not 0 <= score <= 10):
        raise RecordError(f"cvss_score {score!r} is not a number from 0 to 10")
    for name in ("aliases", "locations"):
        if name in attributes and not _string_list(attributes[name]):
            raise RecordError(f"{name} must be a list of strings")
    problems = misfits(attributes, TEXT_LIMITS)
    if problems:
        raise RecordError("; ".join(problems))


def validate_summary(record: MappedRecord) -> None:
    attributes = record.attributes
    unknown = set(attributes) - SCAN_KEYS
    if unknown:
        raise RecordError(f"unknown scan summary attributes: {', '.join(sorted(unknown))}")
    check_external_id(record.external_id, EXTERNAL_ID_MAX)
    validate_target(attributes.get("target"))
    tool = attributes.get("tool")
    if not isinstance(tool, str) or not tool.strip() or len(tool) > TEXT_LIMITS["tool"]:
        raise RecordError("tool must be a non-empty string of at most 40 characters")
    if not isinstance(attributes.get("complete"), bool):
        raise RecordError("complete must be true or false")


# --- the plan of one batch --------------------------------------------------------------------------------


class ExistingFinding(NamedTuple):
    id: Any  # driver form (hex text on SQLite)
    state: str
    severity: str
    fingerprint: str
    locations: Any  # JSON as the driver returns it; decoded only when needed
    target_id: int
    sources: dict  # source key -> (id, fingerprint, present)


@dataclass
class NewFinding:
    record: MappedRecord
    key: str
    skey: str
    values: dict  # the finding's columns from the record, locations included
    fp: str
    source_fp: str


@dataclass
class BatchPlan:
    new: list[NewFinding] = field(default_factory=list)
    new_sources: list[tuple] = field(default_factory=list)  # (finding id, skey, record, source fp)
    changed_sources: list[tuple] = field(default_factory=list)  # (source id, record, source fp)
    touched_sources: list = field(default_factory=list)  # source keys: only last_seen_at moves
    finding_updates: list[tuple] = field(default_factory=list)  # (finding id, values, fp)
    touched_findings: list = field(default_factory=list)  # finding keys: only last_seen_at moves
    reopened: list[tuple] = field(default_factory=list)  # (finding id, from state, values, (kind, ref))
    summaries: list[dict] = field(default_factory=list)
    targets: dict = field(default_factory=dict)  # (kind, ref) -> the target dict a record gave
    target_ids: dict = field(default_factory=dict)  # (kind, ref) -> (id, asset id) of existing targets
    changes: list[PlannedChange] = field(default_factory=list)
    still_open: int = 0

    @property
    def total(self) -> int:
        return len(self.new) + self.still_open + len(self.reopened)


def _values(attributes: dict) -> dict:
    values = {name: attributes.get(name, "") for name in FINDING_FIELDS}
    values["aliases"] = sorted(set(attributes.get("aliases") or ()))
    values["severity"] = attributes.get("severity") or Severity.UNKNOWN
    values["cvss_score"] = attributes.get("cvss_score")
    values["locations"] = sorted(set(attributes.get("locations") or ()))
    return values


class FindingWriter:
    """Plans and writes batches of finding records of one origin: an integration (id) or uploads (None)."""

    def __init__(self, integration_id: int | None, *, actor: str, correlation_id: str):
        self.integration_id = integration_id
        self.actor = actor[:150]
        self.correlation_id = correlation_id
        self.targets = Table(Target, ("kind", "ref", "name", "asset_id", "created_at", "updated_at"))
        self.findings = Table(Finding, FINDING_COLUMNS)
        self.finding_updates = Table(Finding, FINDING_UPDATE_COLUMNS)
        self.reopens = Table(Finding, REOPEN_COLUMNS)
        self.sources = Table(FindingSource, SOURCE_COLUMNS)
        self.source_updates = Table(FindingSource, SOURCE_UPDATE_COLUMNS)
        self.events = Table(FindingEvent, EVENT_COLUMNS)
        self.seen_target_ids: set[int] = set()
        self.unlinked_targets: dict[int, dict] = {}  # asset targets no inventory asset matched yet
        self.counts = {"new": 0, "still_open": 0, "reopened": 0, "fixed": 0, "total": 0}

    # --- plan (reads only) -----------------------------------------------------------------------------

    def plan(self, findings: list[MappedRecord], summaries: list[MappedRecord]) -> BatchPlan:
        plan = BatchPlan()
        latest: dict[str, tuple[MappedRecord, set]] = {}
        for record in findings:
            target = record.attributes["target"]
            plan.targets.setdefault((target["kind"], target["ref"]), target)
            key = finding_key(target, record.attributes)
            # The same finding twice in a batch (one record per path): one finding, the paths together.
            previous = latest.get(key)
            paths = set(record.attributes.get("locations") or ())
            if previous is not None:
                paths |= previous[1]
            latest[key] = (record, paths)
        for record in summaries:
            target = record.attributes["target"]
            plan.targets.setdefault((target["kind"], target["ref"]), target)
            plan.summaries.append(record.attributes)
        plan.target_ids = self._existing_targets(list(plan.targets))
        reported: dict[str, tuple[str, MappedRecord, str]] = {}  # source key -> (finding key, record, source fp)
        for key, (record, paths) in latest.items():
            attributes = record.attributes
            if paths != set(attributes.get("locations") or ()):
                attributes = {**attributes, "locations": sorted(paths)}
                record = MappedRecord(record.external_id, attributes, record.raw)
            reported[source_key(key, attributes["tool"], self.integration_id)] = (key, record, fingerprint(attributes))
        unchanged = self._unchanged({skey: fp for skey, (_key, _record, fp) in reported.items()})
        for skey in unchanged:
            plan.touched_sources.append(skey)
            plan.touched_findings.append(reported.pop(skey)[0])
        plan.still_open += len(unchanged)
        existing = self._existing([key for key, _record, _fp in reported.values()]) if reported else {}
        for skey, (key, record, source_fp) in reported.items():
            attributes = record.attributes
            row = existing.get(key)
            if row is None:
                values = _values(attributes)
                plan.new.append(NewFinding(record, key, skey, values, fingerprint(values), source_fp))
                plan.changes.append(PlannedChange(record.external_id, RecordAction.CREATE, None))
                continue
            source = row.sources.get(skey)
            if source is None:
                plan.new_sources.append((row.id, skey, record, source_fp))
            elif source[1] != source_fp or not source[2]:
                plan.changed_sources.append((source[0], record, source_fp))
            else:
                plan.touched_sources.append(skey)
            reopen = row.state == FindingState.FIXED
            values = None
            if source is None or source[1] != source_fp:
                # What this source reports changed: the finding takes it (the latest report wins), keeping
                # every path any source saw it at.
                values = _values(attributes)
                values["locations"] = sorted(set(_json(row.locations) or ()) | set(values["locations"]))
                fp = fingerprint(values)
                if fp != row.fingerprint:
                    plan.finding_updates.append((row.id, values, fp))
                    if not reopen:
                        plan.changes.append(PlannedChange(record.external_id, RecordAction.UPDATE, None))
                else:
                    values = None
            if values is None:
                plan.touched_findings.append(key)
            if reopen:
                plan.reopened.append((row.id, row.state, values or _values(attributes), target_of(record)))
                plan.changes.append(PlannedChange(record.external_id, RecordAction.RESTORE, None))
            else:
                plan.still_open += 1
        return plan

    @staticmethod
    def _unchanged(reported: dict[str, str]) -> set[str]:
        """The source keys (of source key -> fingerprint) whose source reported exactly this last time, is still
        present, and whose finding is not fixed: nothing to write but last_seen_at. One query per batch."""
        unchanged = set()
        sources, findings = FindingSource._meta.db_table, Finding._meta.db_table
        with connection.cursor() as cursor:
            for part in chunks(list(reported), LOOKUP_SLICE):
                marks = ", ".join(["%s"] * len(part))
                cursor.execute(
                    f"SELECT s.key, s.fingerprint FROM {sources} s JOIN {findings} f ON f.id = s.finding_id "  # noqa: S608
                    f"WHERE s.key IN ({marks}) AND s.present = %s AND f.state <> %s",
                    [*part, True, FindingState.FIXED],
                )
                unchanged.update(skey for skey, fp in cursor.fetchall() if reported[skey] == fp)
        return unchanged

    def _existing_targets(self, keys: list[tuple[str, str]]) -> dict:
        found = {}
        by_kind = defaultdict(list)
        for kind, ref in keys:
            by_kind[kind].append(ref)
        for kind, refs in by_kind.items():
            for part in chunks(refs):
                for pk, ref, asset_id in Target.objects.filter(kind=kind, ref__in=part).values_list(
                        "id", "ref", "asset_id"):
                    found[(kind, ref)] = (pk, asset_id)
        return found

    @staticmethod
    def _existing(keys: list[str]) -> dict[str, ExistingFinding]:
        """key -> the finding with its sources (raw SQL, as the inventory sink): the findings a batch changes."""
        found: dict[str, ExistingFinding] = {}
        findings, sources = Finding._meta.db_table, FindingSource._meta.db_table
        with connection.cursor() as cursor:
            for part in chunks(keys, LOOKUP_SLICE):
                marks = ", ".join(["%s"] * len(part))
                cursor.execute(
                    f"SELECT f.key, f.id, f.state, f.severity, f.fingerprint, f.locations, f.target_id, "  # noqa: S608
                    f"s.key, s.id, s.fingerprint, s.present FROM {findings} f "
                    f"LEFT JOIN {sources} s ON s.finding_id = f.id WHERE f.key IN ({marks})",
                    part,
                )
                for key, fid, state, severity, fp, locations, target_id, skey, sid, sfp, present in cursor.fetchall():
                    row = found.get(key)
                    if row is None:
                        row = found[key] = ExistingFinding(fid, state, severity, fp, locations, target_id, {})
                    if skey is not None:
                        row.sources[skey] = (sid, sfp, bool(present))
        return found

    # --- apply -----------------------------------------------------------------------------------------

    def apply(self, plan: BatchPlan, now: datetime) -> None:
        target_ids = self._write_targets(plan, now)
        correlation_id = self.correlation_id
        finding_rows, source_rows, event_rows, critical = [], [], [], []
        for new in plan.new:
            target_id, asset_id = target_ids[target_of(new.record)]
            finding_id = uuid.uuid4()
            v = new.values
            finding_rows.append((
                finding_id, new.key, target_id, asset_id, *(v[name] for name in FINDING_FIELDS), v["locations"],
                FindingState.OPEN, "", now, self.actor, correlation_id, new.fp, now, now, now, now,
            ))
            source_rows.append(self._source_row(finding_id, new.skey, new.record, new.source_fp, now))
            event_rows.append((finding_id, "", FindingState.OPEN, self.actor, "reported", None, correlation_id, now))
            if v["severity"] == Severity.CRITICAL:
                critical.append((finding_id, v, target_of(new.record), False))
        self.findings.insert(finding_rows)
        source_rows.extend(self._source_row(fid, skey, record, fp, now) for fid, skey, record, fp in plan.new_sources)
        self.sources.insert(source_rows)
        self.source_updates.update_by_pk(
            (sid, record.attributes, fp, True, now, now) for sid, record, fp in plan.changed_sources
        )
        self._touch(FindingSource, plan.touched_sources, now)
        self.finding_updates.update_by_pk(
            (fid, *(v[name] for name in FINDING_FIELDS), v["locations"], fp, now, now)
            for fid, v, fp in plan.finding_updates
        )
        self._touch(Finding, plan.touched_findings, now)
        self.reopens.update_by_pk(
            (fid, FindingState.OPEN, "", None, now, self.actor, None, correlation_id, now)
            for fid, *_rest in plan.reopened
        )
        for fid, from_state, values, target in plan.reopened:
            event_rows.append((fid, from_state, FindingState.OPEN, self.actor, "reported again", None,
                               correlation_id, now))
            if values["severity"] == Severity.CRITICAL:
                critical.append((fid, values, target, True))
        self.events.insert(event_rows)
        self._emit_critical(critical, plan, target_ids)
        counts = self.counts
        counts["new"] += len(plan.new)
        counts["still_open"] += plan.still_open
        counts["reopened"] += len(plan.reopened)
        counts["total"] += plan.total

    def _source_row(self, finding_id, skey: str, record: MappedRecord, fp: str, now: datetime) -> tuple:
        return (uuid.uuid4(), skey, finding_id, record.attributes["tool"], self.integration_id, record.attributes,
                fp, True, now, now, now)

    def _touch(self, model, keys: list[str], now: datetime) -> None:
        """Move last_seen_at of the rows with these keys (unique, indexed): one UPDATE per batch."""
        table = connection.ops.quote_name(model._meta.db_table)
        seen_at = self.findings.adapt_value("last_seen_at", now)
        with connection.cursor() as cursor:
            for part in chunks(keys, LOOKUP_SLICE):
                marks = ", ".join(["%s"] * len(part))
                cursor.execute(f"UPDATE {table} SET last_seen_at = %s WHERE key IN ({marks})",  # noqa: S608
                               [seen_at, *part])

    def _write_targets(self, plan: BatchPlan, now: datetime) -> dict:
        """(kind, ref) -> (target id, asset id) for every target of the batch. New targets are inserted already
        linked to the inventory asset their identification keys find; known asset targets are checked once per
        run (an asset may have appeared, or been merged into another, since)."""
        ids = dict(plan.target_ids)
        missing = [key for key in plan.targets if key not in ids]
        if missing:
            assets = resolve_assets({key: plan.targets[key] for key in missing if key[0] == TargetKind.ASSET})
            Target.objects.bulk_create(
                [Target(kind=kind, ref=ref, name=plan.targets[(kind, ref)].get("name", ""),
                        asset_id=assets.get((kind, ref)), created_at=now, updated_at=now) for kind, ref in missing],
                ignore_conflicts=True,  # a concurrent scan of the same new target
            )
            ids.update(self._existing_targets(missing))
            for key in missing:
                self.seen_target_ids.add(ids[key][0])
                if key[0] == TargetKind.ASSET and ids[key][1] is None:
                    self.unlinked_targets[ids[key][0]] = plan.targets[key]
        known = {ids[key][0]: plan.targets[key] for key in plan.targets
                 if key[0] == TargetKind.ASSET and ids[key][0] not in self.seen_target_ids}
        if known:
            linked = self.link_assets(known, now)
            ids.update({key: (pk, linked.get(pk, asset)) for key, (pk, asset) in ids.items() if pk in known})
        self.seen_target_ids.update(pk for pk, _asset in ids.values())
        return ids

    def link_assets(self, targets: dict[int, dict], now: datetime) -> dict[int, Any]:
        """Link existing asset targets (id -> target dict) to the asset their keys find; their findings follow.
        Returns target id -> asset id (None: no asset matched; kept in `unlinked_targets` to try again)."""
        assets = resolve_assets(targets)
        current = dict(Target.objects.filter(pk__in=list(targets)).values_list("pk", "asset_id"))
        for pk in targets:
            asset_id = assets.get(pk, current.get(pk))  # an asset no key finds any more keeps its link
            if asset_id is None:
                self.unlinked_targets[pk] = targets[pk]
                continue
            self.unlinked_targets.pop(pk, None)
            if current.get(pk) != asset_id:  # rare: a new link, or the asset was merged into another
                Target.objects.filter(pk=pk).update(asset=asset_id, updated_at=now)
                Finding.objects.filter(target_id=pk).update(asset=asset_id)
            current[pk] = asset_id
        return current

    def _emit_critical(self, critical: list, plan: BatchPlan, target_ids: dict) -> None:
        if not critical:
            return
        from syncplane.integrations.events import DomainEvent, emit_events  # written by the events module's owner

        emit_events(
            DomainEvent(
                "vulnerability.critical",
                {"type": "finding", "id": str(finding_id),
                 "name": f"{values['vulnerability_id']} in {values['package_name']} "
                         f"{values['installed_version']}".strip()},
                {
                    "vulnerability_id": values["vulnerability_id"], "severity": values["severity"],
                    "cvss_score": values["cvss_score"], "package_name": values["package_name"],
                    "installed_version": values["installed_version"], "fixed_version": values["fixed_version"],
                    "target": {"kind": target[0], "ref": target[1],
                               "name": plan.targets.get(target, {}).get("name", "")},
                    "asset_id": str(target_ids[target][1]) if target_ids[target][1] else None,
                    "reopened": reopened,
                },
                self.correlation_id,
            )
            for finding_id, values, target, reopened in critical
        )

    # --- closing complete scans ------------------------------------------------------------------------

    def close_scans(self, summaries: list[dict], cutoff: datetime, now: datetime) -> int:
        """Apply the complete scan summaries: this origin's sources of each summarised target (by its tool)
        that were not reported since `cutoff` are no longer present; findings left with no present source are
        fixed. Set-based: a few statements per tool and slice of targets, whatever the findings' number.
        Returns how many findings were fixed."""
        per_tool: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for summary in summaries:
            if summary.get("complete") is True:
                per_tool[summary["tool"]].add((summary["target"]["kind"], summary["target"]["ref"]))
        fixed = 0
        for tool, targets in per_tool.items():
            target_ids = [pk for pk, _asset in self._existing_targets(sorted(targets)).values()]
            for part in chunks(target_ids):
                fixed += self._close(tool, part, cutoff, now)
        self.counts["fixed"] += fixed
        return fixed

    def _close(self, tool: str, target_ids: list[int], cutoff: datetime, now: datetime) -> int:
        origin = {"tool": tool, "integration_id": self.integration_id}
        FindingSource.objects.filter(
            **origin, present=True, last_seen_at__lt=cutoff, finding__target_id__in=target_ids,
        ).update(present=False, updated_at=now)
        # Fixed: the open and accepted findings of these targets that this tool no longer reports (its source
        # is not present) and no other tool does either.
        fixable = Finding.objects.filter(
            Exists(FindingSource.objects.filter(finding=OuterRef("pk"), present=False, **origin)),
            target_id__in=target_ids, state__in=(FindingState.OPEN, FindingState.ACCEPTED),
        ).exclude(Exists(FindingSource.objects.filter(finding=OuterRef("pk"), present=True)))
        # Locked (PostgreSQL) so that the history rows name exactly the findings the UPDATE fixes.
        rows = list(fixable.select_for_update().values_list("pk", "state"))
        if not rows:
            return 0
        fixable.update(state=FindingState.FIXED, fixed_at=now, state_changed_at=now, state_changed_by=self.actor,
                       state_reason="", state_expires_at=None, updated_at=now)
        self.events.insert((pk, state, FindingState.FIXED, self.actor, f"not reported by a complete {tool} scan",
                            None, self.correlation_id, now) for pk, state in rows)
        return len(rows)

    def link_remaining(self, now: datetime) -> None:
        """After a pass: asset targets seen before their machine's asset existed (Defender lists machines after
        vulnerabilities) are linked now."""
        if self.unlinked_targets:
            self.link_assets(dict(self.unlinked_targets), now)


def resolve_assets(targets: dict) -> dict:
    """key -> inventory asset id, for asset targets (key -> target dict) whose identification keys (serial, MAC,
    host name, Entra device id: inventory.identity) match a live asset source, by the configured rule order.
    One query per key column per 500 keys."""
    wanted = {key: keys_of(target.get("asset") or {"hostname": target.get("name", "")})
              for key, target in targets.items()}
    columns = ("serial_key", "mac_key", "host_key", "device_key")
    by_key: list[dict[str, list]] = [defaultdict(list) for _ in columns]  # per column: key -> source rows
    for index, column in enumerate(columns):
        values = sorted({keys[index] for keys in wanted.values() if keys[index]})
        for part in chunks(values):
            for row in AssetSource.objects.filter(**{f"{column}__in": part}, deleted_at__isnull=True).values_list(
                    "asset_id", *columns):
                by_key[index][row[1 + index]].append(row)
    order = rule_indexes(rules())
    found = {}
    for key, keys in wanted.items():
        candidates = [row for index in order if keys[index] for row in by_key[index].get(keys[index], ())]
        asset_id = next((row[0] for row in candidates if same_device(keys, row[1:], order)), None)
        if asset_id is not None:
            found[key] = asset_id
    return found


def target_of(record: MappedRecord) -> tuple[str, str]:
    target = record.attributes["target"]
    return target["kind"], target["ref"]
