"""The sync engine: one way to move records from any connector into the domain models.

A run streams pages from the connector; each page is mapped, validated, planned against the existing rows
(one query), written in bulk and checkpointed in one transaction. A run killed halfway resumes from its last
checkpoint. Deletions are reconciled only after a complete, successful full pass.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)
from django.db.models import Q
from django.utils import timezone

from syncplane.core.bulk import Table, without_nul
from syncplane.core.context import reset_correlation_id, set_correlation_id
from syncplane.integrations import evidence, field_mapping, health
from syncplane.integrations.base import Connector, MappedRecord
from syncplane.integrations.choices import (
    FINISHED_RUN_STATUSES,
    Capability,
    ErrorKind,
    RecordAction,
    RecordStatus,
    RunStatus,
    SyncMode,
    Trigger,
)
from syncplane.integrations.errors import IntegrationError, RecordError, TransientError
from syncplane.integrations.liveness import Heartbeat, dead_before
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog, SyncRecordOutcome, SyncState
from syncplane.integrations.readahead import WriteBehind, read_ahead
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
# Where pages are written in a thread of their own while the next is mapped (docs/performance.md). Off on both for
# now: SQLite's driver takes the GIL back for every row (no gain), and on PostgreSQL, where re-syncs gained
# 15-20%, a connector that reads the database while it fetches (an ITSM connector's known_ids) would need the
# connection the writer holds. Turn it on per database once fetch-time reads go through the writer.
WRITE_BEHIND = {"postgresql": False, "sqlite": False}
RECORD_COUNTERS = COUNTERS[:7]  # what the outcomes must add up to; they move only with a commit
OUTCOME_COLUMNS = ("sync_log_id", "external_id", "action", "status", "changes", "reason", "raw_payload",
                   "created_at")


class SyncAlreadyRunning(Exception):
    def __init__(self, log: IntegrationSyncLog):
        super().__init__(f"a sync of {log.system_name} is already {log.status} (sync log {log.pk})")
        self.log = log


class SyncAlreadyFinished(Exception):
    def __init__(self, log: IntegrationSyncLog):
        super().__init__(f"sync log {log.pk} has already finished ({log.status})")
        self.log = log


class RunStopped(Exception):
    """The run stops early, cleanly: not an error of the integration."""


class RunCancelled(RunStopped):
    """Someone asked to cancel the run (the API, `syncplane sync --cancel`)."""


class RunSuperseded(RunStopped):
    """Another trigger took the run for dead and finished its log: this worker must write nothing more."""


class RunTakenElsewhere(RunStopped):
    """The run's task delivered a second time while another worker runs it, alive: this delivery does nothing."""


class DatabaseUnavailable(TransientError):
    """The database went away mid-run (a restart, a fail-over, the network): retried; the retry resumes from the
    last committed page."""


def map_with_overrides(connector: Connector, overrides, raw) -> MappedRecord:
    """The connector's mapping, then the integration's own field mapping on top (its dict, or compiled once
    with field_mapping.compile_mapping, as a run does)."""
    record = connector.map_record(raw)
    if overrides:
        field_mapping.compile_mapping(overrides, connector.record_kind).apply(record, raw)
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
    """A run whose worker died leaves an active log behind; once its heartbeat is dead (a few beats missed) it is
    failed, and its checkpoint stays for the next run to resume from. A queued run (not started yet, or waiting
    for its retry) gets far longer: it is most likely behind other syncs or a Retry-After, and failing it would
    only queue the same work again."""
    now = timezone.now()
    for log in IntegrationSyncLog.objects.active().filter(external_system=system):
        last_sign_of_life = log.heartbeat_at or log.queued_at
        summary = f"interrupted: no sign of life since {last_sign_of_life:%Y-%m-%d %H:%M:%S} UTC"
        if log.status == RunStatus.QUEUED:
            if last_sign_of_life >= now - timedelta(seconds=settings.SYNCPLANE_STALE_QUEUED_SECONDS):
                continue
            try:
                _finish(log, RunStatus.FAILED, ErrorKind.TRANSIENT, summary)
            except RunSuperseded:
                continue  # it finished by itself in the meantime
        elif last_sign_of_life >= dead_before(now) or not retire_dead_run(log, summary):
            continue
        logger.warning("sync taken for dead", extra={"sync_log_id": log.pk, "error": summary,
                                                     "correlation_id": log.correlation_id})


def retire_dead_run(log: IntegrationSyncLog, summary: str) -> bool:
    """Fail a running log whose heartbeat is dead, with `summary` as its evidence; False if it is not dead after
    all. Decided on the locked row: a run busy in a long page transaction holds that lock, and its commit (or its
    heartbeat thread, queued on the same lock) shows it alive."""
    with transaction.atomic():
        stored = (IntegrationSyncLog.objects.select_for_update().filter(pk=log.pk)
                  .values_list("status", "heartbeat_at").first())
        if stored is None or stored[0] != RunStatus.RUNNING or (stored[1] and stored[1] >= dead_before()):
            return False
        _finish(log, RunStatus.FAILED, ErrorKind.TRANSIENT, summary + _resume_note(log))
    return True


def request_cancel(log_id: int, requested_by: str) -> IntegrationSyncLog:
    """Cancel a queued run at once; ask a running one to stop, which its worker does at its next page (or
    while it waits). A running log whose heartbeat has gone quiet has no worker left to ask: it is cancelled
    at once. Raises SyncAlreadyFinished for a finished log."""
    with transaction.atomic():
        # Locked, so a worker cannot take the queued run between this read and the cancellation.
        log = IntegrationSyncLog.objects.select_for_update().get(pk=log_id)
        if log.is_finished:
            raise SyncAlreadyFinished(log)
        now = timezone.now()
        log.cancel_requested_at, log.cancel_requested_by = now, requested_by
        if log.status == RunStatus.QUEUED:
            _finish(log, RunStatus.CANCELLED, "", f"cancelled by {requested_by} before it started"
                    + _resume_note(log))
        elif (log.heartbeat_at or log.queued_at) < dead_before(now):
            _finish(log, RunStatus.CANCELLED, "", f"cancelled by {requested_by}; its worker had stopped"
                    + _resume_note(log))
        else:
            log.save(update_fields=["cancel_requested_at", "cancel_requested_by"])
    logger.warning("sync cancel requested", extra={"sync_log_id": log.pk, "requested_by": requested_by,
                                                   "status": log.status, "correlation_id": log.correlation_id})
    return log


def _resume_note(log: IntegrationSyncLog) -> str:
    if log.dry_run or not SyncState.objects.filter(external_system_id=log.external_system_id,
                                                   checkpoint__mode=log.mode).exists():
        return ""
    return "; the next run resumes from its checkpoint"


def run_sync(
    log_id: int,
    *,
    progress: Callable[[IntegrationSyncLog], None] | None = None,
    final_attempt: bool = True,
    will_retry: Callable[[IntegrationError], bool] | None = None,
    connector: Connector | None = None,
) -> IntegrationSyncLog:
    """Run a queued sync to its end. A transient error the caller will retry (`will_retry`, or any one on a
    non-final attempt) puts the log back in the queue and is raised again for the caller (the Celery task);
    every other failure finishes the log. A cancelled run finishes `cancelled`; Ctrl-C (KeyboardInterrupt)
    too, and is raised again. Every failure is logged at warning or error level, redacted, under the run's
    correlation id."""
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
        retry = will_retry(exc) if will_retry else not final_attempt
        if exc.kind == ErrorKind.TRANSIENT and retry:
            run.requeue(exc)
            raise
        run.fail(exc.kind, str(exc))
    except RunCancelled:
        run.stop(RunStatus.CANCELLED, "", f"cancelled by {run.log.cancel_requested_by or 'request'}")
    except RunTakenElsewhere:
        log = IntegrationSyncLog.objects.get(pk=log.pk)
        logger.warning("sync not run: another worker runs it (its task was delivered twice)",
                       extra={"sync_log_id": log.pk, "status": log.status})
        return log
    except RunSuperseded:
        log = IntegrationSyncLog.objects.get(pk=log.pk)
        logger.warning(f"sync stopped: its log was finished elsewhere ({log.status}: {log.error_summary})",
                       extra={"sync_log_id": log.pk})
        return log
    except SoftTimeLimitExceeded:  # the Celery task's soft time limit (settings.SYNCPLANE_SYNC_TIME_LIMIT_SECONDS)
        run.stop(RunStatus.FAILED, ErrorKind.POLICY,
                 f"stopped after the time limit of {settings.SYNCPLANE_SYNC_TIME_LIMIT_SECONDS} s")
    except KeyboardInterrupt:
        # Ctrl-C may have landed in a query outside a transaction: PostgreSQL's connection can then be left with
        # that query in progress, and every later one refused. The end of the run is written on a fresh one.
        _drop_connection()
        run.stop(RunStatus.CANCELLED, "", "interrupted (Ctrl-C)")
        raise
    except (OperationalError, InterfaceError) as exc:
        # The database went away: transient, like an outage of the source. The broken connection is dropped and
        # the attempt handed back for a retry; if even that cannot be written, the heartbeat dies with this
        # attempt and the beat job re-queues it.
        _drop_connection()
        lost = DatabaseUnavailable(f"the database connection failed: {_first_line(exc)}")
        retry = will_retry(lost) if will_retry else not final_attempt
        if retry:
            _when_database_is_back(lambda: run.requeue(lost))
            raise lost from exc
        _when_database_is_back(lambda: run.fail(lost.kind, str(lost)))
    except Exception as exc:
        # An unexpected error's text may hold anything, a credential included: log it redacted.
        logger.error("sync crashed", extra={"sync_log_id": log.pk, "error_type": type(exc).__name__,
                                            "traceback": run.redact(traceback.format_exc())})
        run.fail(ErrorKind.PERMANENT, f"internal error ({type(exc).__name__}); see the worker log")
    finally:
        if run.heartbeat is not None:
            run.heartbeat.stop()
        reset_correlation_id(token)
    return run.log


def _drop_connection() -> None:
    """Drop a broken connection so that the next query connects again; not inside a caller's transaction, whose
    own end must see the failure."""
    if not connection.in_atomic_block:
        connection.close()


def _when_database_is_back(write: Callable[[], None], tries: int = 5, pause: float = 2.0) -> None:
    """Write the end of an attempt once the database answers again (a restart takes a few seconds)."""
    for attempt in range(tries):
        try:
            return write()
        except DatabaseError:
            _drop_connection()
            if attempt == tries - 1:
                raise
            time.sleep(pause)


class SyncRun:
    def __init__(self, log: IntegrationSyncLog, *, progress=None, connector: Connector | None = None):
        self.log = log
        self.system = log.external_system
        self.progress = progress
        self.connector = connector
        self.mapping: field_mapping.FieldMapping | None = None
        self.outcomes = Table(SyncRecordOutcome, OUTCOME_COLUMNS)
        self.seen: set[str] = set()  # dry-run full passes only: they write no last_seen_at to compare
        self.sampled = 0
        self.pass_failures = 0  # failed records in this pass, including the part before a resume
        self.unmapped: Counter[tuple[str, str]] = Counter()  # (field, vendor value) no map knew -> records
        self.beaten_at = time.monotonic()
        # The beat proper is the heartbeat thread's (started once the run is claimed). While it waits for a page,
        # the run also looks, at the same pace, for a cancel request or a successor that took it for dead.
        self.beat_every = settings.SYNCPLANE_HEARTBEAT_SECONDS
        self.heartbeat: Heartbeat | None = None

    def redact(self, text: str) -> str:
        return Redactor(self.connector.context.secret_values() if self.connector else ()).redact(text)

    def execute(self) -> None:
        log = self.log
        now = timezone.now()
        log.status = RunStatus.RUNNING
        log.started_at = log.started_at or now
        log.heartbeat_at = now
        log.attempts += 1
        # The claim: a queued log, or a running one whose heartbeat is dead (its task delivered again after its
        # worker died). A log finished since it was read (cancelled, taken for dead) stays as it is, and so does
        # one that a live worker runs: a second delivery of the task must not run it twice.
        taken = IntegrationSyncLog.objects.filter(pk=log.pk).filter(
            Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, heartbeat_at__lt=dead_before(now))
        ).update(status=log.status, started_at=log.started_at, heartbeat_at=now, attempts=log.attempts)
        if not taken:
            raise RunSuperseded if IntegrationSyncLog.objects.get(pk=log.pk).is_finished else RunTakenElsewhere
        self.heartbeat = Heartbeat(log.pk).start()
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
            # While the engine waits for a page (the connector sleeping through Retry-After, backing off, or a
            # slow source), it keeps beating, so no other trigger takes the run for dead.
            # Pages are mapped here and written by the writer (write-behind, where it pays: WRITE_BEHIND), which
            # plans each page against the rows of the pages before it, then commits it with its checkpoint.
            threaded = WRITE_BEHIND.get(connection.vendor, False)
            write = partial(self._write_page, sink=sink, state=state, pass_started_at=pass_started_at,
                            timed=not threaded)
            with WriteBehind(write, threaded=threaded, idle=self._beat, every=self.beat_every) as writer:
                for page in read_ahead(self.connector.fetch(log.mode, fetch_cursor, resume),
                                       idle=writer.idle, every=self.beat_every):
                    log.fetch_seconds += time.perf_counter() - waiting
                    writer.submit(self._page(page, sink))
                    cursor = page.cursor if page.cursor is not None else cursor
                    del page  # keep one page in memory, not two
                    waiting = time.perf_counter()
                log.fetch_seconds += time.perf_counter() - waiting  # learning that the stream has ended
            # Written behind, a page's writing overlaps the mapping of the next: only the time the run waited
            # for its writer counts, so that the phases still add up to no more than the run took.
            log.write_seconds += writer.waited
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

    def _page(self, page, sink) -> tuple:
        """Map and validate a page's records (no database): what `_write_page` takes."""
        log = self.log
        now = timezone.now()
        started = time.perf_counter()
        mapped: list[MappedRecord] = []
        failures = []
        if self.mapping is None:  # compiled once per run: its regular expressions, maps and targets
            self.mapping = field_mapping.compile_mapping(self.system.field_mapping, self.connector.record_kind)
        overrides = self.mapping
        for raw in page.records:
            try:
                record = map_with_overrides(self.connector, overrides, raw)
                sink.validate(record)
                mapped.append(record)
                if record.unmapped:
                    self.unmapped.update(record.unmapped.items())
            except RecordError as exc:
                failures.append(self._failure(raw, str(exc), now))
        log.map_seconds += time.perf_counter() - started
        return page, mapped, failures, now

    def _write_page(self, mapped_page: tuple, *, sink, state: SyncState, pass_started_at: datetime,
                    timed: bool = True) -> None:
        """Plan a mapped page against the existing rows and write it with its checkpoint, in one transaction (in
        the writer thread when there is one)."""
        page, mapped, failures, now = mapped_page
        log = self.log
        mapped_at = time.perf_counter()
        plan = sink.plan(mapped)
        log.heartbeat_at = now
        if page.total is not None and log.total_expected is None:
            log.total_expected = page.total
        if log.dry_run:
            self.seen.update(record.external_id for record in mapped)
            with self._counted_on_commit(), transaction.atomic():
                cancel = self._still_ours()
                self._count(len(page.records), [plan], failures)
                self._write_sample(plan.changes, now)
                self.outcomes.insert(failures)
                log.save(update_fields=COUNTERS)
        else:
            with self._counted_on_commit(), transaction.atomic():
                cancel = self._still_ours()
                _commit_without_waiting_for_disk()
                plans, refused = self._apply(sink, plan, mapped, now)
                failures.extend(self._failure(record.raw, reason, now) for record, reason in refused)
                self._count(len(page.records), plans, failures)
                for applied in plans:
                    self.outcomes.insert(
                        (log.pk, c.external_id, c.action, RecordStatus.APPLIED, c.changes, "", None, now)
                        for c in applied.changes
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
        if timed:
            log.write_seconds += time.perf_counter() - mapped_at
        self.beaten_at = time.monotonic()
        if self.progress:
            self.progress(log)
        if cancel:  # the page is committed, its checkpoint with it: the next run resumes after it
            raise RunCancelled

    def _still_ours(self) -> bool:
        """In the page's transaction, before writing: the log, locked. A log finished by someone else (taken
        for dead) means this run was superseded: raise, and the page is not written. Returns whether a cancel
        was requested: the page is committed, then the run stops."""
        row = (IntegrationSyncLog.objects.select_for_update().filter(pk=self.log.pk)
               .values_list("status", "cancel_requested_at", "cancel_requested_by").first())
        if row is None or row[0] in FINISHED_RUN_STATUSES:
            raise RunSuperseded
        self.log.cancel_requested_at, self.log.cancel_requested_by = row[1], row[2]
        return row[1] is not None

    def _beat(self) -> None:
        """Called while the engine waits for the next page: every so often, one short UPDATE of the heartbeat
        (autocommitted: no page transaction is open while waiting). It also notices a cancel request and a
        run that another trigger took for dead, without waiting for the page."""
        if time.monotonic() - self.beaten_at < self.beat_every:
            return
        self.beaten_at = time.monotonic()
        now = timezone.now()
        beaten = IntegrationSyncLog.objects.filter(
            pk=self.log.pk, status=RunStatus.RUNNING, cancel_requested_at__isnull=True
        ).update(heartbeat_at=now)
        if beaten:
            self.log.heartbeat_at = now
            return
        with transaction.atomic():
            self._still_ours()  # raises when superseded
        raise RunCancelled

    def _apply(self, sink, plan, records: list[MappedRecord], now: datetime) -> tuple[list, list]:
        """Write the page set-based: ([the plan], no refusals). If the database refuses it (a constraint, a value
        validation could not foresee), write it again record by record, each in a savepoint, so that only the
        record(s) it refuses fail: ([each written record's plan], [(record, reason)]). One plan and write per
        record, but only on this error path."""
        try:
            with transaction.atomic():
                sink.apply(plan, now)
            return [plan], []
        except (DataError, IntegrityError) as exc:
            logger.warning("the database refused a page; writing its records one by one",
                           extra={"sync_log_id": self.log.pk, "error": _first_line(exc)})
        plans, refused = [], []
        by_id: dict[str, list[MappedRecord]] = {}
        for record in records:  # a record repeated within a page (slices of a large group) stays together
            by_id.setdefault(record.external_id, []).append(record)
        for group in by_id.values():
            single = sink.plan(group)
            try:
                with transaction.atomic():
                    sink.apply(single, now)
            except (DataError, IntegrityError) as exc:
                refused.append((group[-1], f"the database refused the record: {_first_line(exc)}"))
            else:
                plans.append(single)
        return plans, refused

    def _failure(self, raw, reason: str, now: datetime) -> tuple:
        """The outcome row of a record that could not be used. A bad record's id and text may be anything: what
        is kept of them must itself fit the outcome's columns (its raw payload loses NULs as JSON is written)."""
        external_id = without_nul(str(self.connector.external_id(raw) or ""))[:255]
        payload = raw if isinstance(raw, dict) else {"value": repr(raw)[:1000]}
        return (self.log.pk, external_id, RecordAction.NONE, RecordStatus.FAILED, None,
                without_nul(reason)[:4000], payload, now)

    def _count(self, read: int, plans: list, failures: list) -> None:
        """A page's counts, from the plans that were written: one count per outcome row."""
        log = self.log
        log.pages += 1
        log.records_read += read
        for plan in plans:
            log.records_created += plan.created
            log.records_updated += plan.updated
            log.records_unchanged += plan.unchanged
            log.records_deleted += plan.deleted
        log.records_failed += len(failures)
        self.pass_failures += len(failures)

    @contextmanager
    def _counted_on_commit(self):
        """Counters move only with the commit of their page: a rolled-back page takes its counts back, so a
        failed run's log never claims writes that did not happen."""
        log = self.log
        before = [getattr(log, name) for name in RECORD_COUNTERS], self.pass_failures, self.sampled
        try:
            yield
        except BaseException:
            for name, value in zip(RECORD_COUNTERS, before[0], strict=True):
                setattr(log, name, value)
            self.pass_failures, self.sampled = before[1], before[2]
            raise

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
        # A source whose incremental reads cannot report deletions (LDAP) lists the ids of everything it still
        # has instead: after a complete, clean incremental pass the known records it no longer lists are gone.
        # Read before the transaction: it is a walk through the whole source.
        listed = None
        if log.mode == SyncMode.INCREMENTAL and self.pass_failures == 0 \
                and self.connector.supports(Capability.LIST_IDS):
            listed = set(self.connector.list_ids())
        with self._counted_on_commit(), transaction.atomic():
            if log.dry_run:
                if reconcile or listed is not None:
                    gone = self._confirm_gone(sink.count_unseen(self.seen if reconcile else listed))
                    log.records_deleted += len(gone)
                    self._write_sample([_deletion(eid) for eid in gone], now)
            else:
                gone = []
                if reconcile:
                    candidates = sink.unseen(pass_started_at)
                    gone = self._confirm_gone(candidates)
                    sink.mark_seen(sorted(set(candidates) - set(gone)), now)
                elif listed is not None:
                    gone = self._confirm_gone(sorted(sink.count_unseen(listed)))
                if gone:
                    sink.mark_deleted(gone, now)
                    log.records_deleted += len(gone)
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
            if self.unmapped:
                logger.warning("vendor values no mapping table knows", extra={
                    "sync_log_id": log.pk, "unmapped": {f"{f}={v}": n for (f, v), n in self.unmapped.items()}})
                summary = "; ".join(filter(None, (summary, unmapped_summary(self.unmapped))))
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
        error = self.redact(str(exc))
        log.status = RunStatus.QUEUED
        log.error_kind = exc.kind
        log.error_summary = f"attempt {log.attempts} failed, will retry: {error}"[:4000]
        log.heartbeat_at = timezone.now()
        fields = ["status", "error_kind", "error_summary", "heartbeat_at", *COUNTERS]
        if not IntegrationSyncLog.objects.filter(pk=log.pk, status=RunStatus.RUNNING).update(
                **{name: getattr(log, name) for name in dict.fromkeys(fields)}):
            return  # cancelled or taken for dead meanwhile: it is finished, and the retry will find it so
        logger.warning("sync attempt failed, will retry", extra={
            "sync_log_id": log.pk, "attempt": log.attempts, "error_kind": exc.kind, "error": error})

    def fail(self, kind: str, summary: str) -> None:
        summary = self.redact(summary)
        try:
            _finish(self.log, RunStatus.FAILED, kind, summary)
        except RunSuperseded:  # cancelled or taken for dead meanwhile: that is how it ended
            self.log = IntegrationSyncLog.objects.get(pk=self.log.pk)
        logger.error("sync failed", extra={"sync_log_id": self.log.pk, "error_kind": kind, "error": summary})

    def stop(self, status: str, kind: str, reason: str) -> None:
        """End a run stopped from outside (cancel, Ctrl-C, the time limit) with what its committed pages say:
        the stop may have come in the middle of a page, whose counters then never reached the database."""
        log = IntegrationSyncLog.objects.get(pk=self.log.pk)
        if log.is_finished:
            self.log = log
            return
        summary = f"{reason}, with {log.pages} pages committed{_resume_note(log)}"
        try:
            _finish(log, status, kind, summary)
        except RunSuperseded:
            log = IntegrationSyncLog.objects.get(pk=log.pk)
        self.log = log
        level = logging.ERROR if status == RunStatus.FAILED else logging.WARNING
        logger.log(level, f"sync {status}", extra={"sync_log_id": log.pk, "error_kind": kind, "error": summary})


def unmapped_summary(unmapped: Counter) -> str:
    """The run's vendor values that no mapping table knew, by field, most frequent first (at most ten named):
    `unmapped values (fallback used; add them to the connector's map): status 'Lost' 12, 'On Loan' 3`."""
    by_field: dict[str, list[tuple[str, int]]] = {}
    for (name, value), count in unmapped.most_common():
        by_field.setdefault(name, []).append((value, count))
    parts = []
    for name, values in sorted(by_field.items()):
        named = ", ".join(f"{value[:60]!r} {count}" for value, count in values[:10])
        parts.append(f"{name} {named}" + (f" and {len(values) - 10} more" if len(values) > 10 else ""))
    return "unmapped values (fallback used; add them to the connector's map): " + "; ".join(parts)


def _deletion(external_id: str):
    return PlannedChange(external_id, RecordAction.DELETE, None)


def _commit_without_waiting_for_disk() -> None:
    """PostgreSQL: this page's commit returns before its WAL reaches the disk (about 20 ms a page here). A crash may
    then lose the last pages committed, each whole with its checkpoint, so the next run resumes before them; and the
    run's log is finished in a transaction of its own, synchronously, which makes every page before it durable."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _first_line(exc: Exception) -> str:
    """What the database said, short: the first line of its message (values it quotes are the record's own)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def _finish(log: IntegrationSyncLog, status: str, error_kind: str, summary: str) -> None:
    """Close a log for good: its place in the hash chain, then the integration's last status."""
    now = timezone.now()
    with transaction.atomic():
        # Locked and read again: a log that someone else finished meanwhile (a cancel, a trigger that took it
        # for dead) is left as it is; a cancel request made meanwhile is kept.
        stored = (IntegrationSyncLog.objects.select_for_update().filter(pk=log.pk)
                  .values_list("status", "cancel_requested_at", "cancel_requested_by").first())
        if stored is None or stored[0] in FINISHED_RUN_STATUSES:
            raise RunSuperseded
        if stored[1] is not None:
            log.cancel_requested_at, log.cancel_requested_by = stored[1], stored[2]
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
        evidence.seal(log)  # the keyed hash, and the chain head logged once committed
        log.save()
        # last_error says why the integration last failed; a run that completes (or is cancelled) clears it.
        ExternalSystem.objects.filter(pk=log.external_system_id).update(
            last_sync_at=log.started_at, last_sync_status=status,
            last_error=summary[:4000] if status == RunStatus.FAILED else "",
        )
        if _first_reviewed_sync(log):
            ExternalSystem.objects.filter(pk=log.external_system_id).update(scheduled=True)
        health.record_run(log)  # sync.completed / sync.failed and the integration's health, with the log


def _first_reviewed_sync(log: IntegrationSyncLog) -> bool:
    """A person's first completed sync (API or command line, not a dry run) puts the integration on the schedule.
    Only the first: an admin who later takes it off the schedule is not overruled by the next manual run."""
    if log.dry_run or log.trigger == Trigger.SCHEDULE or log.status not in (RunStatus.SUCCESS, RunStatus.PARTIAL):
        return False
    return not IntegrationSyncLog.objects.filter(
        external_system_id=log.external_system_id, dry_run=False, status__in=(RunStatus.SUCCESS, RunStatus.PARTIAL),
    ).exclude(trigger=Trigger.SCHEDULE).exclude(pk=log.pk).exists()
