"""Liveness: a run beats from a thread of its own while it works or waits; a run whose beat died is failed as lost
and queued again from its checkpoint; a task delivered twice runs once; the database going away is transient.

Tests whose heartbeat thread must write are transactional: a thread's connection cannot see (PostgreSQL) or write
past (SQLite) what a test's open transaction holds."""

import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from syncplane.integrations.choices import ErrorKind, RunStatus
from syncplane.integrations.engine import DatabaseUnavailable, SyncAlreadyRunning, run_sync, start_sync
from syncplane.integrations.liveness import Heartbeat, dead_after
from syncplane.integrations.models import IntegrationSyncLog
from syncplane.integrations.tasks import MAX_LOST_IN_A_ROW, requeue_lost_syncs, retry_delay
from syncplane.inventory.models import AssetSource
from tests.conftest import require_service

RECORDS, PAGE = 250, 50  # the simulator fixture's


class WorkerKilled(BaseException):
    """Stands for kill -9: nothing in the engine catches it, so the run ends as a killed worker leaves it."""


def killed_after(pages: int):
    def progress(current):
        if current.pages == pages:
            raise WorkerKilled

    return progress


def run_until_killed(system, pages: int) -> IntegrationSyncLog:
    log = start_sync(system)
    with pytest.raises(WorkerKilled):
        run_sync(log.pk, progress=killed_after(pages))
    log.refresh_from_db()
    assert log.status == RunStatus.RUNNING and log.pages == pages
    return log


def silence(log: IntegrationSyncLog) -> None:
    """Its heartbeat as a dead worker leaves it: older than the limit."""
    dead = timezone.now() - dead_after() - timedelta(seconds=1)
    IntegrationSyncLog.objects.filter(pk=log.pk).update(heartbeat_at=dead)


def assert_every_record_once():
    assert AssetSource.objects.count() == RECORDS
    assert AssetSource.objects.values("external_id").distinct().count() == RECORDS


def test_dead_after_is_a_few_beats(settings):
    settings.SYNCPLANE_HEARTBEAT_SECONDS, settings.SYNCPLANE_HEARTBEAT_DEAD_AFTER = 10, 3
    assert dead_after() == timedelta(seconds=30)


# --- the heartbeat thread ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_beats_a_running_log_only_and_stops(servicenow):
    log = start_sync(servicenow)
    old = timezone.now() - timedelta(hours=1)
    IntegrationSyncLog.objects.filter(pk=log.pk).update(heartbeat_at=old)
    heartbeat = Heartbeat(log.pk, every=0.05)
    beats, beat = [], heartbeat.beat

    def counted_beat():
        beat()
        beats.append(time.monotonic())

    heartbeat.beat = counted_beat
    heartbeat.start()
    # Three beats done, however long the thread took to get to them (not a fixed sleep, in which a busy machine
    # may not have run the thread at all).
    deadline = time.monotonic() + 30
    while len(beats) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(beats) >= 3
    log.refresh_from_db()
    assert log.heartbeat_at == old  # queued: not its to beat

    IntegrationSyncLog.objects.filter(pk=log.pk).update(status=RunStatus.RUNNING)
    deadline = time.monotonic() + 30
    while IntegrationSyncLog.objects.get(pk=log.pk).heartbeat_at == old and time.monotonic() < deadline:
        time.sleep(0.05)
    assert IntegrationSyncLog.objects.get(pk=log.pk).heartbeat_at > timezone.now() - timedelta(seconds=5)
    heartbeat.stop()
    assert not heartbeat._thread.is_alive()


@pytest.mark.django_db(transaction=True)
def test_a_failed_beat_is_logged_once_and_the_next_one_beats_again(servicenow, caplog):
    log = start_sync(servicenow)
    IntegrationSyncLog.objects.filter(pk=log.pk).update(status=RunStatus.RUNNING, heartbeat_at=None)
    heartbeat = Heartbeat(log.pk, every=60)
    with mock.patch("syncplane.integrations.liveness.IntegrationSyncLog.objects.filter",
                    side_effect=OperationalError("terminating connection due to administrator command")):
        heartbeat.beat()
        heartbeat.beat()
    heartbeat.beat()
    failures = [r for r in caplog.records if r.getMessage() == "heartbeat failed; trying again"]
    assert len(failures) == 1 and failures[0].error == "terminating connection due to administrator command"
    assert any(r.getMessage() == "heartbeat back" for r in caplog.records)
    assert IntegrationSyncLog.objects.get(pk=log.pk).heartbeat_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_run_busy_for_longer_than_the_limit_keeps_beating_and_is_left_alone(servicenow, settings):
    # Dead after 0.6 s without a beat; the run spends 1.5 s after its first page without a page or a wait.
    settings.SYNCPLANE_HEARTBEAT_SECONDS, settings.SYNCPLANE_HEARTBEAT_DEAD_AFTER = 0.2, 3
    seen = []

    def busy_after_the_first_page(current):
        if current.pages == 1:
            time.sleep(1.5)
            seen.append(requeue_lost_syncs())
            try:
                start_sync(servicenow)
            except SyncAlreadyRunning as refused:
                seen.append(refused)

    log = run_sync(start_sync(servicenow).pk, progress=busy_after_the_first_page)
    assert seen[0] == 0 and isinstance(seen[1], SyncAlreadyRunning)
    assert log.status == RunStatus.SUCCESS and log.attempts == 1 and log.records_created == RECORDS
    assert IntegrationSyncLog.objects.count() == 1


# --- a lost run is queued again ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_lost_with_its_worker_is_failed_and_queued_again_from_its_checkpoint(
        servicenow, caplog, django_capture_on_commit_callbacks):
    lost = run_until_killed(servicenow, pages=2)
    assert requeue_lost_syncs() == 0  # still beating, as far as anyone can tell
    silence(lost)
    with django_capture_on_commit_callbacks(execute=True):  # the queued task runs (eagerly, in the tests)
        assert requeue_lost_syncs() == 1
    lost.refresh_from_db()
    assert lost.status == RunStatus.FAILED and lost.error_kind == ErrorKind.TRANSIENT and lost.hash
    assert lost.error_summary.startswith("worker lost: no heartbeat since ")
    assert lost.error_summary.endswith("; a new attempt is queued; the next run resumes from its checkpoint")
    attempt = IntegrationSyncLog.objects.exclude(pk=lost.pk).get()
    assert attempt.status == RunStatus.SUCCESS and attempt.resumed_from_id == lost.pk
    assert (attempt.trigger, attempt.mode, attempt.correlation_id != lost.correlation_id) == (
        lost.trigger, lost.mode, True)
    assert attempt.records_created == RECORDS - 2 * PAGE  # the two committed pages are not written again
    assert_every_record_once()
    assert any(r.getMessage() == "sync re-queued" and r.lost_sync_log_id == lost.pk for r in caplog.records)


@pytest.mark.django_db
def test_a_run_lost_again_and_again_is_not_queued_for_ever(servicenow, django_capture_on_commit_callbacks):
    log = start_sync(servicenow)
    for lost in range(1, MAX_LOST_IN_A_ROW + 1):
        IntegrationSyncLog.objects.filter(pk=log.pk).update(status=RunStatus.RUNNING, started_at=timezone.now())
        silence(log)
        with django_capture_on_commit_callbacks(execute=False):  # the new attempt's task is never run
            requeued = requeue_lost_syncs()
        log.refresh_from_db()
        assert log.status == RunStatus.FAILED
        if lost < MAX_LOST_IN_A_ROW:
            assert requeued == 1
            log = IntegrationSyncLog.objects.active().get()
    assert requeued == 0 and not IntegrationSyncLog.objects.active().exists()
    assert log.error_summary.endswith(
        f"not queued again: {MAX_LOST_IN_A_ROW} attempts in a row were lost; see the worker's log "
        "(killed, out of memory?)")


# --- single flight ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_second_delivery_of_a_running_sync_does_nothing(servicenow, simulator, caplog):
    second = []

    def delivered_again(current):
        if current.pages == 1:
            second.append(run_sync(current.pk))

    log = run_sync(start_sync(servicenow).pk, progress=delivered_again)
    assert second[0].status == RunStatus.RUNNING and second[0].pages == 1 and second[0].attempts == 1
    assert any(r.getMessage().startswith("sync not run: another worker runs it") for r in caplog.records)
    assert log.status == RunStatus.SUCCESS and log.attempts == 1 and log.records_created == RECORDS
    assert simulator.servicenow.stats["table_requests"] < 2 * (RECORDS // PAGE)  # one pass, not two
    assert run_sync(log.pk).status == RunStatus.SUCCESS  # delivered once more, finished: untouched
    assert_every_record_once()


@pytest.mark.django_db
def test_a_task_delivered_again_after_its_worker_died_takes_the_run_over(servicenow):
    lost = run_until_killed(servicenow, pages=2)
    silence(lost)
    log = run_sync(lost.pk)  # what Redis does with an unacknowledged task (acks_late)
    assert log.pk == lost.pk and log.status == RunStatus.SUCCESS and log.attempts == 2
    assert log.records_created == RECORDS
    assert_every_record_once()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_two_triggers_at_the_same_moment_start_one_run(servicenow):
    # SQLite's in-memory test database refuses a second thread's query at once ("table is locked") where a
    # database file waits for the lock: the race is decided by PostgreSQL's unique index here.
    require_service("PostgreSQL", connection.vendor == "postgresql", "set DATABASE_URL=postgres://...")
    barrier = threading.Barrier(2)
    outcomes = []

    def trigger():
        try:
            barrier.wait(timeout=10)
            outcomes.append(start_sync(servicenow))
        except SyncAlreadyRunning as refused:
            outcomes.append(refused)
        finally:
            connection.close()

    threads = [threading.Thread(target=trigger) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    started = [o for o in outcomes if isinstance(o, IntegrationSyncLog)]
    refused = [o for o in outcomes if isinstance(o, SyncAlreadyRunning)]
    assert len(started) == 1 and len(refused) == 1 and refused[0].log.pk == started[0].pk
    assert IntegrationSyncLog.objects.count() == 1


# --- the database going away ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_database_going_away_mid_run_is_transient_and_the_retry_resumes(servicenow):
    def connection_lost_at_the_third_page(current):
        if current.pages == 2:
            raise OperationalError("server closed the connection unexpectedly")

    with pytest.raises(DatabaseUnavailable) as raised:
        run_sync(start_sync(servicenow).pk, progress=connection_lost_at_the_third_page, final_attempt=False)
    assert retry_delay(raised.value, 0) == 5  # soon: a restart takes seconds, not the minute of a vendor outage
    log = IntegrationSyncLog.objects.get()
    assert log.status == RunStatus.QUEUED and log.error_kind == ErrorKind.TRANSIENT
    assert log.error_summary == ("attempt 1 failed, will retry: the database connection failed: "
                                 "OperationalError: server closed the connection unexpectedly")
    log = run_sync(log.pk)
    assert log.status == RunStatus.SUCCESS and log.attempts == 2 and log.records_created == RECORDS
    assert_every_record_once()
