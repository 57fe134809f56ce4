"""The sync engine: one way to move records from any connector into the domain models.

A run streams pages from the connector; each page is mapped, validated, planned against the existing rows
(one query), written in bulk and checkpointed in one transaction. A run killed halfway resumes from its last
checkpoint. Deletions are reconciled only after a complete, successful full pass.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from syncplane.core.bulk import Table
from syncplane.core.context import reset_correlation_id, set_correlation_id
from syncplane.integrations import field_mapping
from syncplane.integrations.base import Connector, MappedRecord
from syncplane.integrations.choices import (
    ErrorKind,
    RecordAction,
    RecordStatus,
    RunStatus,
    SyncMode,
    Trigger,
)
from syncplane.integrations.errors import IntegrationError, RecordError
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog, SyncRecordOutcome, SyncState
from syncplane.integrations.readahead import read_ahead
from syncplane.integrations.registry import build_connector
from syncplane.integrations.secrets import Redactor
from syncplane.integrations.sinks import PlannedChange, sink_for

logger = logging.getLogger("syncplane.sync")

# Deletion candidates a connector is asked to confirm by id; more than this is a real mass deletion or a
# scope change, not paging drift, and is taken as it is.
MAX_LOOKUPS = 2000
DRY_RUN_SAMPLE = 100  # planned changes kept as evidence of a dry run; the counts cover everything
# Saved with every page. The phase seconds accumulate on the log in memory and ride along: a page's write time
# is known only after its commit, so it reaches the database with the next page (or the end of the run).
COUNTERS = ("pages", "records_read", "records_created", "records_updated", "records_unchanged",
            "records_deleted", "records_failed", "total_expected", "heartbeat_at",
            "fetch_seconds", "map_seconds", "write_seconds", "reconcile_seconds")
OUTCOME_COLUMNS = ("sync_log_id", "external_id", "action", "status", "changes", "reason", "raw_payload",
                   "created_at")


class SyncAlreadyRunning(Exception):
    def __init__(self, log: IntegrationSyncLog):
        super().__init__(f"a sync of {log.system_name} is already {log.status} (sync log {log.pk})")
        self.log = log


def map_with_overrides(connector: Connector, overrides: dict, raw) -> MappedRecord:
    """The connector's mapping, then the integration's own field mapping on top."""
    record = connector.map_record(raw)
    if overrides:
        record.attributes = field_mapping.apply(overrides, raw, record.attributes)
    return record


def start_sync(
    system: ExternalSystem,
    *,
    mode: str = SyncMode.FULL,
    dry_run: bool = False,
    trigger: str = Trigger.MANUAL,
    requested_by: str = "",
) -> IntegrationSyncLog:
    """Create the queued log of a new run, or raise SyncAlreadyRunning. The database decides races."""
    expire_stale_runs(system)
    try:
        with transaction.atomic():
            return IntegrationSyncLog.objects.create(
                external_system=system,
                system_name=system.name,
                system_type=system.system_type,
                trigger=trigger,
                mode=mode,
                dry_run=dry_run,
                requested_by=requested_by,
            )
    except IntegrityError:
        active = IntegrationSyncLog.objects.active().filter(external_system=system).first()
        if active is None:  # it finished between the insert and this read: the caller may simply retry
            raise
        raise SyncAlreadyRunning(active) from None


def expire_stale_runs(system: ExternalSystem) -> None:
    """A run whose worker died leaves an active log behind; after a quiet period it is failed, and its
    checkpoint stays for the next run to resume from. A queued run (not started yet, or waiting for its retry)
    gets far longer: it is most likely behind other syncs or a Retry-After, and failing it would only queue the
    same work again."""
    now = timezone.now()
    for log in IntegrationSyncLog.objects.active().filter(external_system=system):
        waiting = log.status == RunStatus.QUEUED
        quiet = settings.SYNCPLANE_STALE_QUEUED_SECONDS if waiting else settings.SYNCPLANE_STALE_RUN_SECONDS
        last_sign_of_life = log.heartbeat_at or log.queued_at
        if last_sign_of_life < now - timedelta(seconds=quiet):
            _finish(log, RunStatus.FAILED, ErrorKind.TRANSIENT,
                    f"interrupted: no sign of life since {last_sign_of_life:%Y-%m-%d %H:%M:%S} UTC")


def run_sync(
    log_id: int,
    *,
    progress: Callable[[IntegrationSyncLog], None] | None = None,
    final_attempt: bool = True,
    connector: Connector | None = None,
) -> IntegrationSyncLog:
    """Run a queued sync to its end. A transient error on a non-final attempt puts the log back in the queue
    and is raised again for the caller (the Celery task) to retry; every other failure finishes the log."""
    log = IntegrationSyncLog.objects.select_related("external_system").get(pk=log_id)
    if log.is_finished:
        return log  # a duplicate delivery of a task that already ran
    # The run works under its log's id, however it was started (API, schedule, CLI, a retry), so the log,
    # every log line and every request to the external system carry the same one.
    token = set_correlation_id(log.correlation_id)
    run = SyncRun(log, progress=progress, connector=connector)
    try:
        run.execute()
    except IntegrationError as exc:
        if exc.kind == ErrorKind.TRANSIENT and not final_attempt:
            run.requeue(exc)
            raise
        run.fail(exc.kind, str(exc))
    except Exception as exc:
        # An unexpected error's text may hold anything, a credential included: log it redacted.
        redactor = Redactor(run.connector.context.secret_values() if run.connector else ())
        logger.error("sync crashed", extra={"sync_log_id": log.pk, "error_type": type(exc).__name__,
                                            "traceback": redactor.redact(traceback.format_exc())})
        run.fail(ErrorKind.PERMANENT, f"internal error ({type(exc).__name__}); see the worker log")
    finally:
        reset_correlation_id(token)
    return run.log


class SyncRun:
    def __init__(self, log: IntegrationSyncLog, *, progress=None, connector: Connector | None = None):
        self.log = log
        self.system = log.external_system
        self.progress = progress
        self.connector = connector
        self.outcomes = Table(SyncRecordOutcome, OUTCOME_COLUMNS)
        self.seen: set[str] = set()  # dry-run full passes only: they write no last_seen_at to compare
        self.sampled = 0
        self.pass_failures = 0  # failed records in this pass, including the part before a resume

    def execute(self) -> None:
        log = self.log
        now = timezone.now()
        log.status = RunStatus.RUNNING
        log.started_at = log.started_at or now
        log.heartbeat_at = now
        log.attempts += 1
        log.save()
        started = time.monotonic()
        state, _ = SyncState.objects.get_or_create(external_system=self.system)
        resume, pass_started_at = self._resume_point(state, now)
        if self.connector is None:
            self.connector = build_connector(self.system)
        sink = sink_for(self.connector.record_kind, self.system.pk)
        cursor = state.cursor
        logger.info("sync started", extra={"sync_log_id": log.pk, "mode": log.mode, "dry_run": log.dry_run,
                                           "resumed": resume is not None})
        with self.connector:
            fetch_cursor = state.cursor if log.mode == SyncMode.INCREMENTAL else None
            # Fetch time is what the engine waits for the next page: read-ahead hides the rest behind writing.
            waiting = time.perf_counter()
            for page in read_ahead(self.connector.fetch(log.mode, fetch_cursor, resume)):
                log.fetch_seconds += time.perf_counter() - waiting
                self._page(page, sink, state, pass_started_at)
                cursor = page.cursor if page.cursor is not None else cursor
                del page  # keep one page in memory, not two
                waiting = time.perf_counter()
            log.fetch_seconds += time.perf_counter() - waiting  # learning that the stream has ended
            self._finish_pass(sink, state, cursor, pass_started_at)
        logger.info("sync finished", extra={"sync_log_id": log.pk, "status": log.status,
                                            "seconds": round(time.monotonic() - started, 3)})

    def _resume_point(self, state: SyncState, now: datetime) -> tuple[dict | None, datetime]:
        checkpoint = state.checkpoint
        if self.log.dry_run or not checkpoint or checkpoint.get("mode") != self.log.mode:
            return None, now
        if checkpoint.get("log_id") != self.log.pk:
            self.log.resumed_from_id = checkpoint["log_id"]
            self.log.save(update_fields=["resumed_from"])
        self.pass_failures = checkpoint.get("pass_failures", 0)
        return checkpoint["resume"], datetime.fromisoformat(checkpoint["pass_started_at"])

    def _page(self, page, sink, state: SyncState, pass_started_at: datetime) -> None:
        log = self.log
        now = timezone.now()
        started = time.perf_counter()
        mapped: list[MappedRecord] = []
        failures = []
        overrides = self.system.field_mapping
        for raw in page.records:
            try:
                record = map_with_overrides(self.connector, overrides, raw)
                sink.validate(record)
                mapped.append(record)
            except RecordError as exc:
                failures.append((log.pk, self.connector.external_id(raw), RecordAction.NONE,
                                 RecordStatus.FAILED, None, str(exc), raw if isinstance(raw, dict) else
                                 {"value": repr(raw)[:1000]}, now))
        mapped_at = time.perf_counter()
        log.map_seconds += mapped_at - started
        plan = sink.plan(mapped)
        log.pages += 1
        log.records_read += len(page.records)
        log.records_created += plan.created
        log.records_updated += plan.updated
        log.records_unchanged += plan.unchanged
        log.records_failed += len(failures)
        self.pass_failures += len(failures)
        log.heartbeat_at = now
        if page.total is not None and log.total_expected is None:
            log.total_expected = page.total
        if log.dry_run:
            self.seen.update(record.external_id for record in mapped)
            with transaction.atomic():
                self._write_sample(plan.changes, now)
                self.outcomes.insert(failures)
                log.save(update_fields=COUNTERS)
        else:
            with transaction.atomic():
                sink.apply(plan, now)
                self.outcomes.insert(
                    (log.pk, c.external_id, c.action, RecordStatus.APPLIED, c.changes, "", None, now)
                    for c in plan.changes
                )
                self.outcomes.insert(failures)
                state.checkpoint = None if page.resume is None else {
                    "log_id": log.pk,
                    "mode": log.mode,
                    "pass_started_at": pass_started_at.isoformat(),
                    "pass_failures": self.pass_failures,
                    "resume": page.resume,
                }
                state.save(update_fields=["checkpoint", "updated_at"])
                log.save(update_fields=COUNTERS)
        log.write_seconds += time.perf_counter() - mapped_at
        if self.progress:
            self.progress(log)

    def _write_sample(self, changes, now: datetime) -> None:
        room = DRY_RUN_SAMPLE - self.sampled
        if room <= 0:
            return
        sample = changes[:room]
        self.sampled += len(sample)
        self.outcomes.insert(
            (self.log.pk, c.external_id, c.action, RecordStatus.PLANNED, c.changes, "", None, now) for c in sample
        )

    def _finish_pass(self, sink, state: SyncState, cursor, pass_started_at: datetime) -> None:
        log = self.log
        now = timezone.now()
        started = time.perf_counter()
        # Deletion needs a complete, clean full pass (before and after any resume): after a partial one,
        # "not seen" proves nothing.
        reconcile = log.mode == SyncMode.FULL and self.pass_failures == 0
        with transaction.atomic():
            if log.dry_run:
                if reconcile:
                    gone = self._confirm_gone(sink.count_unseen(self.seen))
                    log.records_deleted = len(gone)
                    self._write_sample([_deletion(eid) for eid in gone], now)
            else:
                if reconcile:
                    candidates = sink.unseen(pass_started_at)
                    gone = self._confirm_gone(candidates)
                    sink.mark_seen(sorted(set(candidates) - set(gone)), now)
                    sink.mark_deleted(gone, now)
                    log.records_deleted = len(gone)
                    self.outcomes.insert(
                        (log.pk, eid, RecordAction.DELETE, RecordStatus.APPLIED, None, "", None, now)
                        for eid in gone
                    )
                # Work that needs the whole pass (directory memberships, roles), in the same transaction.
                sink.finish(complete_full_pass=reconcile, dry_run=False, now=now, pass_started_at=pass_started_at)
                state.checkpoint = None
                if cursor is not None:
                    state.cursor = cursor
                state.save(update_fields=["checkpoint", "cursor", "updated_at"])
            log.reconcile_seconds += time.perf_counter() - started
            status = RunStatus.PARTIAL if log.records_failed else RunStatus.SUCCESS
            summary = f"{log.records_failed} records could not be used; see the record errors" \
                if log.records_failed else ""
            _finish(log, status, "", summary)

    def _confirm_gone(self, candidates: list[str]) -> list[str]:
        """Offset paging skips a record when another one moves ahead of it mid-run, and a skipped record
        looks deleted. Where the connector can look records up by id, ask before marking any deleted."""
        if not candidates or not self.connector.supports("lookup") or len(candidates) > MAX_LOOKUPS:
            return candidates
        present = self.connector.still_present(candidates)
        return [eid for eid in candidates if eid not in present]

    def requeue(self, exc: IntegrationError) -> None:
        log = self.log
        log.status = RunStatus.QUEUED
        log.error_kind = exc.kind
        log.error_summary = f"attempt {log.attempts} failed, will retry: {exc}"
        log.heartbeat_at = timezone.now()
        log.save()

    def fail(self, kind: str, summary: str) -> None:
        _finish(self.log, RunStatus.FAILED, kind, summary)


def _deletion(external_id: str):
    return PlannedChange(external_id, RecordAction.DELETE, None)


def _finish(log: IntegrationSyncLog, status: str, error_kind: str, summary: str) -> None:
    """Close a log for good: its place in the hash chain, then the integration's last status."""
    now = timezone.now()
    with transaction.atomic():
        previous = (
            IntegrationSyncLog.objects.finished()
            .filter(external_system_id=log.external_system_id)
            .order_by("-finished_at", "-id")
            .values_list("hash", flat=True)
            .first()
        )
        log.status = status
        log.error_kind = error_kind
        log.error_summary = summary[:4000]
        log.finished_at = now
        log.started_at = log.started_at or now
        log.duration_ms = int((now - log.started_at).total_seconds() * 1000)
        log.previous_hash = previous or ""
        log.hash = log.compute_hash()
        log.save()
        ExternalSystem.objects.filter(pk=log.external_system_id).update(
            last_sync_at=log.started_at, last_sync_status=status, last_error=summary[:4000]
        )
