"""Ingest one scanner report: the records a parser streams (Connector.parse_report), in batches, in ONE
transaction, so a report that fails half way (a RecordError from the parser: truncated, wrong tool, a bad
record) changes nothing. Memory stays bounded by the batch size whatever the report's size: the parser streams,
each batch is written and dropped; only the scan summaries (one per target) are kept to the end.

Used by the upload API (POST /api/v1/scans/, through `report_records`) and by `syncplane bench findings`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from syncplane.core.bulk import chunks
from syncplane.core.context import get_correlation_id
from syncplane.findings.choices import ScanStatus
from syncplane.findings.lifecycle import expire_decisions
from syncplane.findings.models import Scan
from syncplane.findings.writer import FindingWriter, validate_finding, validate_summary, validate_target
from syncplane.integrations.base import MappedRecord
from syncplane.integrations.errors import RecordError
from syncplane.integrations.registry import registered_types


@dataclass
class ScanResult:
    scan_id: int
    new: int
    still_open: int
    fixed: int
    reopened: int
    total: int


def report_records(tool: str, stream, target: dict | None = None) -> Iterator[MappedRecord]:
    """The records of an uploaded report, read by its tool's parser. `target` (the upload's field) says what was
    scanned and replaces whatever the report names, for every record: a report that names no target (a Snyk
    project without a name) gets one, and a file-system scan (a Trivy `fs` / `rootfs` report, which names a
    path) lands on the inventory machine it was run on ("asset:web01"). The parser applies it, as it applies a
    scanner integration's configured host."""
    if target is not None:
        validate_target(target)
    return registered_types()[tool].parse_report(stream, target=target)


def ingest_scan(*, tool: str, records: Iterable[MappedRecord], integration=None, correlation_id: str = "",
                batch_size: int = 1000, uploaded_by=None, filename: str = "") -> ScanResult:
    """Write a report's findings and apply its complete scan summaries; returns the Scan's counts.

    `integration` (an ExternalSystem or its id) makes its findings that integration's; without it they are
    uploads'. Raises RecordError (nothing written) for a bad record; machine records need an integration.
    """
    integration_id = getattr(integration, "pk", integration)
    correlation_id = correlation_id or get_correlation_id() or ""
    who = f"upload by {uploaded_by.get_username()}" if uploaded_by is not None else "report"
    writer = FindingWriter(integration_id, actor=f"{tool} {who}", correlation_id=correlation_id)
    started = timezone.now()
    summaries: list[dict] = []
    with transaction.atomic():
        scan = Scan.objects.create(
            tool=tool[:40], integration_id=integration_id, uploaded_by=uploaded_by,
            uploader=uploaded_by.get_username() if uploaded_by is not None else "", filename=filename[:255],
            status=ScanStatus.PARTIAL, correlation_id=correlation_id, started_at=started,
        )
        findings, batch_summaries = [], []
        for number, record in enumerate(records, start=1):
            kind = _checked(record, tool, number)
            (findings if kind == "finding" else batch_summaries).append(record)
            if len(findings) + len(batch_summaries) >= batch_size:
                _write(writer, findings, batch_summaries, summaries, started)
                findings, batch_summaries = [], []
        _write(writer, findings, batch_summaries, summaries, started)
        # Every finding of this report was written at `started`: what a complete summary's target still has
        # from before is what the scan no longer reports.
        writer.close_scans(summaries, started, started)
        writer.link_remaining(started)
        expire_decisions(started)
        complete = bool(summaries) and all(s["complete"] for s in summaries)
        counts = writer.counts
        Scan.objects.filter(pk=scan.pk).update(
            status=ScanStatus.COMPLETE if complete else ScanStatus.PARTIAL, finished_at=timezone.now(), **counts,
        )
        through = Scan.targets.through
        for part in chunks(sorted(writer.seen_target_ids)):
            through.objects.bulk_create([through(scan_id=scan.pk, target_id=pk) for pk in part])
    return ScanResult(scan_id=scan.pk, new=counts["new"], still_open=counts["still_open"], fixed=counts["fixed"],
                      reopened=counts["reopened"], total=counts["total"])


def _checked(record: MappedRecord, tool: str, number: int) -> str:
    attributes = record.attributes
    kind = attributes.get("kind")
    if kind not in ("finding", "scan"):
        raise RecordError(f"record {number}: a report holds findings and scan summaries, not {kind!r} records")
    if attributes.get("tool") != tool:
        raise RecordError(f"record {number}: reported by {attributes.get('tool')!r}, not {tool!r}")
    try:
        (validate_finding if kind == "finding" else validate_summary)(record)
    except RecordError as exc:
        raise RecordError(f"record {number} ({record.external_id[:80]}): {exc}") from None
    return kind


def _write(writer: FindingWriter, findings: list, batch_summaries: list, summaries: list, now) -> None:
    if not findings and not batch_summaries:
        return
    plan = writer.plan(findings, batch_summaries)
    writer.apply(plan, now)
    summaries.extend(plan.summaries)
