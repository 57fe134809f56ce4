"""The Celery side: the retry policy of a sync task, its time limit, and the beat job that queues due (and
reviewed) integrations."""

import importlib
import signal
import socket
import time
from datetime import timedelta
from unittest import mock

import pytest
from celery.exceptions import Retry, SoftTimeLimitExceeded
from django.apps import apps
from django.conf import settings
from django.utils import timezone

from syncplane.integrations import tasks
from syncplane.integrations.choices import RunStatus, SyncMode, Trigger
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.errors import PermanentError, TransientError
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog

pytestmark = pytest.mark.django_db


def run_task(log_id, retries):
    """Run the task body as the worker would on its Nth retry, capturing a retry instead of performing it."""
    task = tasks.run_integration_sync
    task.push_request(retries=retries, id="t", called_directly=False)
    try:
        with mock.patch.object(task, "retry", side_effect=lambda **kw: Retry(**{"when": kw["countdown"]})):
            return task.run(log_id)
    finally:
        task.pop_request()


@pytest.mark.parametrize(("retries", "countdown"), [(0, 60), (1, 120), (2, 240)])
def test_transient_failures_back_off_60_120_240(servicenow, retries, countdown):
    log = start_sync(servicenow)
    with mock.patch.object(tasks, "run_sync", side_effect=TransientError("503")) as run, \
            pytest.raises(Retry) as retry:
        run_task(log.pk, retries)
    assert retry.value.when == countdown
    assert run.call_args.kwargs["will_retry"](TransientError("503")) is True


def test_the_last_attempt_fails_the_run_and_the_task_instead_of_retrying(servicenow, simulator):
    simulator.servicenow.inject_fault("status", status=503, count=1000)
    log = start_sync(servicenow)
    with mock.patch("syncplane.integrations.http.time.sleep"), pytest.raises(tasks.SyncFailed) as failed:
        run_task(log.pk, retries=3)
    log.refresh_from_db()
    assert log.status == RunStatus.FAILED and log.error_kind == "transient"
    # Celery reports a failed task (an expected exception: one line, no traceback), not "succeeded: 'failed'".
    assert tasks.SyncFailed in tasks.run_integration_sync.throws
    assert str(failed.value) == f"sync #{log.pk} of ServiceNow test failed (transient): {log.error_summary}"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_connection_gets_one_short_retry_then_fails_saying_where(servicenow):
    port = closed_port()
    ExternalSystem.objects.filter(pk=servicenow.pk).update(base_url=f"http://127.0.0.1:{port}/servicenow")
    log = start_sync(servicenow)
    started = time.monotonic()
    with pytest.raises(Retry) as retry:
        run_task(log.pk, retries=0)
    assert time.monotonic() - started < 5  # no backoff inside the request: a refusal does not heal in seconds
    assert retry.value.when == tasks.LASTING_CONNECT_FAILURE_DELAYS[0] == 15  # not 60, 120, 240
    log.refresh_from_db()
    assert log.status == RunStatus.QUEUED and "will retry" in log.error_summary
    with pytest.raises(tasks.SyncFailed):
        run_task(log.pk, retries=1)
    log.refresh_from_db()
    assert log.status == RunStatus.FAILED and log.error_kind == "transient"
    assert f"cannot connect to 127.0.0.1:{port}: connection refused" in log.error_summary


def test_retry_after_longer_than_the_backoff_wins(servicenow):
    log = start_sync(servicenow)
    with mock.patch.object(tasks, "run_sync", side_effect=TransientError("429", retry_after=900)), \
            pytest.raises(Retry) as retry:
        run_task(log.pk, 0)
    assert retry.value.when == 900


def test_permanent_failures_are_not_retried(servicenow):
    log = start_sync(servicenow)
    with mock.patch.object(tasks.run_integration_sync, "retry") as retry:
        with mock.patch.object(tasks, "run_sync", side_effect=PermanentError("403")), \
                pytest.raises(PermanentError):
            run_task(log.pk, 0)
        retry.assert_not_called()


def test_beat_queues_due_enabled_integrations_only(servicenow, django_capture_on_commit_callbacks):
    ExternalSystem.objects.filter(pk=servicenow.pk).update(scheduled=True)
    ExternalSystem.objects.create(name="off", system_type="servicenow_cmdb", category="cmdb", scheduled=True,
                                  base_url=servicenow.base_url, credentials=servicenow.credentials, enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sync_all_integrations() == 1  # eager in tests: it also ran
    first = IntegrationSyncLog.objects.get(external_system=servicenow)
    assert first.trigger == "schedule" and first.mode == SyncMode.FULL and first.status == RunStatus.SUCCESS
    assert tasks.sync_all_integrations() == 0  # not due again yet
    ExternalSystem.objects.filter(pk=servicenow.pk).update(last_sync_at=timezone.now() - timedelta(hours=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sync_all_integrations() == 1
    latest = IntegrationSyncLog.objects.filter(external_system=servicenow).first()
    assert latest.mode == SyncMode.INCREMENTAL  # a recent full run exists


def test_beat_looks_for_due_integrations_every_5_minutes():
    from django.conf import settings

    # As often as the shortest default interval (ITSM polls); each integration keeps its own interval.
    entry = settings.CELERY_BEAT_SCHEDULE["sync-all-integrations"]
    assert entry["schedule"] == 5 * 60 and entry["task"] == tasks.sync_all_integrations.name


# --- nothing on the schedule before someone has reviewed it -------------------------------------------------


def test_each_scheduled_run_gets_its_own_correlation_id(servicenow):
    from syncplane.core.context import reset_correlation_id, set_correlation_id

    ExternalSystem.objects.filter(pk=servicenow.pk).update(scheduled=True)
    ExternalSystem.objects.create(name="second", system_type="servicenow_cmdb", category="cmdb", scheduled=True,
                                  base_url=servicenow.base_url, credentials=servicenow.credentials)
    token = set_correlation_id("the-beat-job")
    try:
        assert tasks.sync_all_integrations() == 2
    finally:
        reset_correlation_id(token)
    ids = set(IntegrationSyncLog.objects.values_list("correlation_id", flat=True))
    assert len(ids) == 2 and "the-beat-job" not in ids


def test_a_new_integration_waits_for_its_first_manual_sync(servicenow, django_capture_on_commit_callbacks):
    assert servicenow.scheduled is False
    assert tasks.sync_all_integrations() == 0  # due (never synced), but nobody has reviewed it yet
    assert not IntegrationSyncLog.objects.exists()

    run_sync(start_sync(servicenow, dry_run=True).pk)  # a dry run writes nothing: it is not the review
    servicenow.refresh_from_db()
    assert servicenow.scheduled is False

    manual = run_sync(start_sync(servicenow, trigger=Trigger.MANUAL).pk)
    servicenow.refresh_from_db()
    assert manual.status == RunStatus.SUCCESS and servicenow.scheduled is True
    ExternalSystem.objects.filter(pk=servicenow.pk).update(last_sync_at=timezone.now() - timedelta(hours=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sync_all_integrations() == 1
    assert IntegrationSyncLog.objects.filter(external_system=servicenow, trigger=Trigger.SCHEDULE).exists()


def test_only_the_first_manual_sync_turns_the_schedule_on(servicenow):
    run_sync(start_sync(servicenow, trigger=Trigger.CLI).pk)
    servicenow.refresh_from_db()
    assert servicenow.scheduled is True
    ExternalSystem.objects.filter(pk=servicenow.pk).update(scheduled=False)  # an admin takes it off the schedule
    run_sync(start_sync(servicenow, trigger=Trigger.MANUAL).pk)
    servicenow.refresh_from_db()
    assert servicenow.scheduled is False


def test_a_failed_first_sync_does_not_schedule(servicenow, simulator):
    simulator.servicenow.inject_fault("status", status=401, count=100)
    assert run_sync(start_sync(servicenow).pk).status == RunStatus.FAILED
    servicenow.refresh_from_db()
    assert servicenow.scheduled is False


def test_an_integration_scheduled_through_the_api_is_synced_without_a_manual_run(
        api_as, servicenow, django_capture_on_commit_callbacks):
    response = api_as("admin").patch(f"/api/v1/integrations/{servicenow.pk}/", {"scheduled": True}, format="json")
    assert response.status_code == 200 and response.json()["scheduled"] is True
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sync_all_integrations() == 1


def test_the_migration_keeps_integrations_with_a_successful_sync_on_the_schedule(db):
    migration = importlib.import_module("syncplane.integrations.migrations.0008_sync_log_cancel")

    def system(name: str, *statuses: tuple[str, bool]) -> ExternalSystem:
        created = ExternalSystem.objects.create(name=name, system_type="servicenow_cmdb", category="cmdb",
                                                base_url="https://example.org")
        for status, dry_run in statuses:
            IntegrationSyncLog.objects.create(external_system=created, system_name=name, status=status,
                                              system_type=created.system_type, dry_run=dry_run)
        return created

    synced = system("synced", (RunStatus.FAILED, False), (RunStatus.SUCCESS, False))
    partial = system("partial", (RunStatus.PARTIAL, False))
    never = system("never", (RunStatus.FAILED, False), (RunStatus.SUCCESS, True))
    fresh = system("fresh")
    migration.schedule_integrations_with_a_successful_sync(apps, None)
    scheduled = dict(ExternalSystem.objects.values_list("name", "scheduled"))
    assert scheduled == {synced.name: True, partial.name: True, never.name: False, fresh.name: False}


# --- the time limit --------------------------------------------------------------------------------------


def test_sync_tasks_have_a_soft_and_a_hard_time_limit_from_the_settings():
    task = tasks.run_integration_sync
    assert task.soft_time_limit == settings.SYNCPLANE_SYNC_TIME_LIMIT_SECONDS == 4 * 3600
    assert task.time_limit == settings.SYNCPLANE_SYNC_HARD_TIME_LIMIT_SECONDS > task.soft_time_limit


def test_the_soft_time_limit_fails_the_run_clearly_and_keeps_its_checkpoint(servicenow, simulator):
    """A prefork worker delivers the soft limit as a signal whose handler raises SoftTimeLimitExceeded in the
    task's thread; so does this test, once the source has turned slow after the first page."""
    log = start_sync(servicenow)

    def raise_the_soft_limit(*_):
        raise SoftTimeLimitExceeded()

    def turn_slow_after_the_first_page(current):
        if current.pages == 1:
            simulator.servicenow.inject_fault("slow", delay=3, count=None)
            signal.setitimer(signal.ITIMER_REAL, 1.0)

    previous = signal.signal(signal.SIGALRM, raise_the_soft_limit)
    try:
        with mock.patch.object(tasks, "run_sync", lambda log_id, **kw: run_sync(
                log_id, progress=turn_slow_after_the_first_page, **kw)), \
                pytest.raises(tasks.SyncFailed, match="stopped after the time limit of 14400 s"):
            run_task(log.pk, retries=0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    log.refresh_from_db()
    assert log.status == RunStatus.FAILED and log.error_kind == "policy"
    assert log.error_summary == (f"stopped after the time limit of 14400 s, with {log.pages} pages committed; "
                                 "the next run resumes from its checkpoint")
    assert 1 <= log.pages < 5
    simulator.servicenow.clear_faults()
    resumed = run_sync(start_sync(servicenow).pk)
    assert resumed.status == RunStatus.SUCCESS and resumed.resumed_from_id == log.pk
