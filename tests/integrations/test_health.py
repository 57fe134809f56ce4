"""Integration health from its runs, the opt-in auto-disable, integration.unhealthy / recovered, sinks that are
not syncable, and the health in the API."""

from datetime import timedelta

import pytest
from django.utils import timezone

from syncplane.integrations import health
from syncplane.integrations.choices import RunStatus
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem, IntegrationHealth, OutboxMessage
from syncplane.integrations.secrets import to_reference
from syncplane.integrations.tasks import sync_all_integrations
from tests.integrations.eventsink import make_sink, recording_sink_fixture  # noqa: F401 (the fixture)

pytestmark = pytest.mark.django_db


def sync(system):
    return run_sync(start_sync(system).pk)


def break_password(system):
    system.credentials = {**system.credentials, "password": to_reference("wrong-password")}
    system.save()


def mend_password(system):
    system.credentials = {**system.credentials, "password": to_reference("demo-password")}
    system.save()


def health_events(sink):
    return list(OutboxMessage.objects.filter(external_system=sink, payload__type__startswith="integration.")
                .order_by("id").values_list("payload__type", "payload__data__health"))


def test_failures_in_a_row_degrade_then_fail_and_a_success_recovers(recording_sink, servicenow):
    sink = make_sink()
    assert sync(servicenow).status == RunStatus.SUCCESS
    servicenow.refresh_from_db()
    assert (servicenow.health, servicenow.consecutive_failures) == (IntegrationHealth.HEALTHY, 0)
    first_success = servicenow.last_success_at
    assert first_success is not None
    break_password(servicenow)
    seen = []
    for _ in range(health.FAILING_AFTER):
        assert sync(servicenow).status == RunStatus.FAILED
        servicenow.refresh_from_db()
        seen.append(servicenow.health)
    assert seen == [IntegrationHealth.DEGRADED] * (health.FAILING_AFTER - 1) + [IntegrationHealth.FAILING]
    assert servicenow.last_success_at == first_success and servicenow.consecutive_failures == health.FAILING_AFTER
    assert health_events(sink) == [("integration.unhealthy", "failing")]
    unhealthy = OutboxMessage.objects.get(payload__type="integration.unhealthy").payload
    assert unhealthy["subject"]["id"] == str(servicenow.pk)
    assert unhealthy["data"]["auto_disabled"] is False and unhealthy["data"]["consecutive_failures"] == 3
    sync(servicenow)  # still failing: no second event
    assert len(health_events(sink)) == 1
    mend_password(servicenow)
    assert sync(servicenow).status == RunStatus.SUCCESS
    servicenow.refresh_from_db()
    assert (servicenow.health, servicenow.consecutive_failures) == (IntegrationHealth.HEALTHY, 0)
    assert health_events(sink) == [("integration.unhealthy", "failing"), ("integration.recovered", "healthy")]


def test_auto_disable_after_n_failures_is_opt_in(recording_sink, servicenow, api_as):
    sink = make_sink()
    break_password(servicenow)
    for _ in range(4):
        sync(servicenow)
    servicenow.refresh_from_db()
    assert servicenow.enabled  # off by default
    ExternalSystem.objects.filter(pk=servicenow.pk).update(auto_disable_after=2, consecutive_failures=0,
                                                           health=IntegrationHealth.HEALTHY)
    OutboxMessage.objects.all().delete()
    sync(servicenow)
    sync(servicenow)
    servicenow.refresh_from_db()
    assert not servicenow.enabled and servicenow.health == IntegrationHealth.DISABLED
    assert servicenow.disabled_reason == "disabled after 2 failures in a row"
    [event] = OutboxMessage.objects.filter(external_system=sink, payload__type="integration.unhealthy")
    assert event.payload["data"]["auto_disabled"] is True and event.payload["data"]["health"] == "disabled"
    # The schedule leaves it alone; an admin enables it again: failing until it succeeds, counted afresh.
    ExternalSystem.objects.filter(pk=servicenow.pk).update(scheduled=True, last_sync_at=None)
    assert sync_all_integrations() == 0
    mend_password(servicenow)
    body = api_as("admin").patch(f"/api/v1/integrations/{servicenow.pk}/", {"enabled": True}, format="json").json()
    assert (body["enabled"], body["health"], body["consecutive_failures"], body["disabled_reason"]) == \
        (True, "failing", 0, "")
    assert sync(servicenow).status == RunStatus.SUCCESS
    assert health_events(sink)[-1] == ("integration.recovered", "healthy")


def test_a_partial_run_is_degraded_and_a_cancelled_one_changes_nothing(servicenow, simulator):
    from syncplane.integrations.engine import request_cancel

    request_cancel(start_sync(servicenow).pk, "someone")
    servicenow.refresh_from_db()
    assert (servicenow.health, servicenow.consecutive_failures, servicenow.last_success_at) == (
        IntegrationHealth.HEALTHY, 0, None)
    servicenow.health = IntegrationHealth.HEALTHY
    assert health.assess(servicenow, partial=True) == IntegrationHealth.DEGRADED


def test_a_sink_is_not_syncable(recording_sink, api_as):
    sink = make_sink()
    response = api_as("operator").post(f"/api/v1/integrations/{sink.pk}/sync/", {}, format="json")
    assert response.status_code == 400
    assert "Recording sink is a monitoring sink" in response.json()["detail"]
    ExternalSystem.objects.filter(pk=sink.pk).update(scheduled=True)
    assert sync_all_integrations() == 0


def test_the_api_shows_health_and_the_next_scheduled_run(recording_sink, servicenow, api_as):
    sink = make_sink()
    sync(servicenow)
    ExternalSystem.objects.filter(pk=servicenow.pk).update(scheduled=True, sync_interval_minutes=60)
    viewer = api_as("viewer")
    body = viewer.get(f"/api/v1/integrations/{servicenow.pk}/").json()
    assert body["health"] == "healthy" and body["consecutive_failures"] == 0 and body["last_success_at"]
    next_run = timezone.datetime.fromisoformat(body["next_scheduled_run"])
    servicenow.refresh_from_db()
    assert abs(next_run - (servicenow.last_sync_at + timedelta(minutes=60))) < timedelta(seconds=1)
    assert body["auto_disable_after"] is None and body["delivery_paused"] is False
    listed = {row["id"]: row for row in viewer.get("/api/v1/integrations/").json()["results"]}
    assert listed[sink.pk]["next_scheduled_run"] is None  # a sink is never synced
    assert listed[sink.pk]["outbox_backlog"] == 1  # the sync.completed waiting for it
    summary = viewer.get("/api/v1/health/").json()
    assert summary["status"] == "ok" and summary["counts"]["healthy"] == 2
    assert summary["outbox"]["backlog"] == 1 and summary["outbox"]["dead_letters"] == 0
    rows = {row["id"]: row for row in summary["integrations"]}
    assert rows[sink.pk]["outbox_backlog"] == 1 and rows[servicenow.pk]["health"] == "healthy"
    assert api_as("anonymous").get("/api/v1/health/").status_code == 401


def test_auto_disable_after_is_validated(recording_sink, api_as):
    sink, admin = make_sink(), api_as("admin")
    response = admin.patch(f"/api/v1/integrations/{sink.pk}/", {"auto_disable_after": 0}, format="json")
    assert response.status_code == 400 and "auto_disable_after" in response.json()
    response = admin.patch(f"/api/v1/integrations/{sink.pk}/", {"auto_disable_after": 5}, format="json")
    assert response.status_code == 200 and response.json()["auto_disable_after"] == 5
