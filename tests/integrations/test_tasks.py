"""The Celery side: the retry policy of a sync task, and the beat job that queues due integrations."""

from datetime import timedelta
from unittest import mock

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from syncplane.integrations import tasks
from syncplane.integrations.choices import RunStatus, SyncMode
from syncplane.integrations.engine import start_sync
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
    assert run.call_args.kwargs["final_attempt"] is False


def test_the_last_attempt_fails_the_run_instead_of_retrying(servicenow, simulator):
    simulator.servicenow.inject_fault("status", status=503, count=1000)
    log = start_sync(servicenow)
    with mock.patch("syncplane.integrations.http.time.sleep"):
        status = run_task(log.pk, retries=3)
    log.refresh_from_db()
    assert status == RunStatus.FAILED and log.error_kind == "transient"


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
    ExternalSystem.objects.create(name="off", system_type="servicenow_cmdb", category="cmdb",
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
