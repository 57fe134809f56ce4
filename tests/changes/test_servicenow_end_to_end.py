"""End to end with the real ServiceNow ITSM connector and the ServiceNow simulator over real HTTP: submit
through the API, the CAB acting in the simulator, status back by polling and by webhook."""

import json
import random

import httpx
import pytest

from syncplane.changes import delivery
from syncplane.changes.choices import ChangeState
from syncplane.changes.models import ApprovalRecord, ChangeEvent, ChangeRequest
from syncplane.integrations.choices import AuthType, SystemType
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem, OutboxMessage, OutboxStatus
from syncplane.integrations.secrets import to_reference
from syncplane.integrations.tasks import deliver_due_outbox_messages

SECRET = "servicenow-hook-secret"
URL = "/api/v1/changes/"
BODY = {"title": "Rotate TLS certificates on edge load balancers", "description": "Quarterly rotation",
        "risk_score": 85, "planned_start": "2026-06-04T20:00:00Z", "planned_end": "2026-06-04T22:00:00Z"}


@pytest.fixture
def itsm(simulator, db):
    httpx.post(f"{simulator.url}/servicenow/_control/webhook", json={"secret": SECRET}).raise_for_status()
    return ExternalSystem.objects.create(
        name="ServiceNow ITSM test", system_type=SystemType.SERVICENOW_ITSM, category="itsm",
        base_url=f"{simulator.url}/servicenow", auth_type=AuthType.BASIC,
        credentials={"username": "syncplane.integration", "password": to_reference("demo-password")},
        webhook_secret=to_reference(SECRET),
    )


@pytest.fixture
def operator(api_as):
    return api_as("operator")


class Cab:
    """A CAB member at the simulated instance (its control endpoints)."""

    def __init__(self, simulator):
        self.base = f"{simulator.url}/servicenow/_control"

    def changes(self) -> list[dict]:
        return httpx.get(f"{self.base}/changes").json()["changes"]

    def act(self, sys_id: str, action: str, **body) -> dict:
        response = httpx.post(f"{self.base}/changes/{sys_id}/{action}", json=body)
        response.raise_for_status()
        return response.json()["change"]

    def notifications(self) -> list[dict]:
        return httpx.get(f"{self.base}/webhooks").json()["notifications"]

    def fault(self, **spec) -> None:
        httpx.post(f"{self.base}/faults", json=spec).raise_for_status()


@pytest.fixture
def cab(simulator):
    return Cab(simulator)


def submit(client, capture, itsm, **fields) -> ChangeRequest:
    change = client.post(URL, {**BODY, **fields}, format="json").data
    with capture(execute=True):
        response = client.post(f"{URL}{change['id']}/submit/", {"external_system": itsm.pk}, format="json")
    assert response.status_code == 202, response.data
    return ChangeRequest.objects.get(pk=change["id"])


def poll(itsm):
    log = run_sync(start_sync(itsm, mode="full").pk)
    assert log.status == "success", log.error_summary
    return log


def state_steps(change) -> list[str]:
    return list(ChangeEvent.objects.filter(change=change).exclude(to_state="").values_list("to_state", flat=True))


def webhook(client, itsm, note: dict, **override_headers):
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in note["headers"].items()
               if k.lower() != "content-type"}
    headers.update(override_headers)
    return client.post(f"/api/v1/webhooks/{itsm.pk}/", data=note["body"].encode(), content_type="application/json",
                       **headers)


def test_submit_creates_one_change_and_approval_and_progress_come_back_by_polling(
        operator, itsm, cab, django_capture_on_commit_callbacks):
    change = submit(operator, django_capture_on_commit_callbacks, itsm)
    [remote] = cab.changes()
    assert change.external_change_request_id == remote["number"] == "CHG0030001"
    assert change.external_key == remote["sys_id"]
    assert remote["correlation_id"] == change.correlation_id
    assert remote["risk"] == "1"  # risk_score 85: very high
    assert change.state == ChangeState.ASSESS  # the connector requested approval; the answer said so

    cab.act(remote["sys_id"], "approve", comment="Fine by the CAB")
    poll(itsm)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED
    approval = ApprovalRecord.objects.get(change=change)
    assert (approval.decision, approval.comment, approval.source) == ("approved", "Fine by the CAB", "poll")

    cab.act(remote["sys_id"], "implement")
    poll(itsm)
    change.refresh_from_db()
    assert change.state == ChangeState.IMPLEMENTING
    cab.act(remote["sys_id"], "close", close_code="successful")
    log = poll(itsm)
    change.refresh_from_db()
    assert change.state == ChangeState.COMPLETED
    assert log.records_updated == 1
    assert poll(itsm).records_updated == 0  # nothing new: nothing written

    history = operator.get(f"{URL}{change.pk}/history/").data
    steps = [(h["event"]["event_type"], h["event"]["source"]) if h["kind"] == "event" else
             ("approval", h["approval"]["decision"]) for h in history]
    assert steps == [
        ("change.submitted", "user"), ("change.delivered", "outbox"), ("change.assess", "outbox"),
        ("approval", "approved"), ("change.approved", "poll"), ("change.implementing", "poll"),
        ("change.completed", "poll"),
    ]
    assert len(cab.changes()) == 1


def test_rejection_comes_back_by_webhook_and_duplicates_are_no_ops(
        operator, client, itsm, cab, django_capture_on_commit_callbacks):
    change = submit(operator, django_capture_on_commit_callbacks, itsm)
    cab.act(change.external_key, "reject", comment="Not during the freeze")
    note = cab.notifications()[-1]
    assert json.loads(note["body"])["sys_id"] == change.external_key

    response = webhook(client, itsm, note)
    assert response.status_code == 200, response.content
    assert response.json()["updated"] == 1
    change.refresh_from_db()
    assert change.state == ChangeState.REJECTED
    assert ApprovalRecord.objects.get(change=change).comment == "Not during the freeze"
    before = ChangeEvent.objects.filter(change=change).count()

    assert webhook(client, itsm, note).json()["updated"] == 0  # the same notification again
    older = cab.notifications()[0]  # the "inserted" one, arriving late
    assert webhook(client, itsm, older).json()["updated"] == 0
    assert ChangeEvent.objects.filter(change=change).count() == before
    assert ApprovalRecord.objects.filter(change=change).count() == 1
    assert state_steps(change) == ["submitted", "assess", "rejected"]


def test_approval_by_webhook(operator, client, itsm, cab, django_capture_on_commit_callbacks):
    change = submit(operator, django_capture_on_commit_callbacks, itsm)
    cab.act(change.external_key, "approve")
    assert webhook(client, itsm, cab.notifications()[-1]).status_code == 200
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED
    assert ChangeEvent.objects.get(change=change, to_state="approved").source == "webhook"


@pytest.mark.parametrize("headers", [
    {"HTTP_X_SYNCPLANE_WEBHOOK_SECRET": "wrong"},
    {"HTTP_X_SYNCPLANE_WEBHOOK_SECRET": ""},
])
def test_a_webhook_with_a_bad_or_missing_secret_gets_401_and_changes_nothing(
        operator, client, itsm, cab, headers, django_capture_on_commit_callbacks):
    change = submit(operator, django_capture_on_commit_callbacks, itsm)
    cab.act(change.external_key, "approve")
    response = webhook(client, itsm, cab.notifications()[-1], **headers)
    assert response.status_code == 401
    change.refresh_from_db()
    assert change.state == ChangeState.ASSESS
    assert not ApprovalRecord.objects.filter(change=change).exists()


def test_a_refused_change_stays_submitted_with_the_vendor_reason_and_no_retry(
        operator, itsm, cab, django_capture_on_commit_callbacks):
    # A blank title passes no form of ours, but shows what happens when the instance refuses the content.
    change = ChangeRequest.objects.create(title="   ", risk_score=10)
    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(f"{URL}{change.pk}/submit/", {"external_system": itsm.pk}, format="json")
    assert response.status_code == 202
    change.refresh_from_db()
    message = OutboxMessage.objects.get()
    assert change.state == ChangeState.SUBMITTED
    assert "mandatory" in change.submission_error and "Short description" in change.submission_error
    assert (message.status, message.attempts) == (OutboxStatus.FAILED, 1)
    OutboxMessage.objects.update(next_attempt_at=message.created_at)
    assert deliver_due_outbox_messages() == 0
    assert cab.changes() == []
    assert operator.get(f"{URL}{change.pk}/").data["submission_error"] == change.submission_error


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limits_and_outages_are_retried_by_the_outbox(
        status, operator, itsm, cab, django_capture_on_commit_callbacks):
    # A Retry-After longer than a worker should block for: the client gives up, the outbox waits as told.
    cab.fault(kind="status", status=status, retry_after=400, path="change_request", count=1)
    change = submit(operator, django_capture_on_commit_callbacks, itsm)
    message = OutboxMessage.objects.get()
    assert (message.status, message.attempts) == (OutboxStatus.PENDING, 1)
    assert (message.next_attempt_at - message.created_at).total_seconds() >= 399
    assert change.external_key == "" and cab.changes() == []
    OutboxMessage.objects.update(next_attempt_at=message.created_at)
    assert deliver_due_outbox_messages() == 1
    change.refresh_from_db()
    assert change.external_change_request_id == "CHG0030001"
    assert len(cab.changes()) == 1


def test_server_errors_without_retry_after_are_retried_too(
        operator, itsm, cab, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(random, "uniform", lambda a, b: 0)  # the client's own backoff, made instant
    cab.fault(kind="status", status=502, path="change_request", count=5)  # more than the client's 5 tries
    change = submit(operator, django_capture_on_commit_callbacks, itsm)
    message = OutboxMessage.objects.get()
    assert (message.status, message.attempts) == (OutboxStatus.PENDING, 1)
    assert "502" in message.last_error
    OutboxMessage.objects.update(next_attempt_at=message.created_at)
    deliver_due_outbox_messages()
    change.refresh_from_db()
    assert change.external_change_request_id == "CHG0030001"
    assert len(cab.changes()) == 1


def test_a_crash_between_create_and_save_still_makes_one_change(
        operator, itsm, cab, monkeypatch, django_capture_on_commit_callbacks):
    real_adopt = delivery.adopt
    crashes = [RuntimeError("worker killed between the create call and the commit")]

    def adopt_once(*args, **kwargs):
        if crashes:
            raise crashes.pop()
        return real_adopt(*args, **kwargs)

    monkeypatch.setattr(delivery, "adopt", adopt_once)
    change = submit(operator, django_capture_on_commit_callbacks, itsm)
    assert change.external_key == ""
    assert len(cab.changes()) == 1  # created in ServiceNow, not known in Syncplane
    message = OutboxMessage.objects.get()
    OutboxMessage.objects.update(next_attempt_at=message.created_at)
    deliver_due_outbox_messages()
    change.refresh_from_db()
    [remote] = cab.changes()
    assert change.external_key == remote["sys_id"]
    assert change.external_change_request_id == "CHG0030001"


def test_cancel_cancels_the_servicenow_change(operator, itsm, cab, django_capture_on_commit_callbacks):
    change = submit(operator, django_capture_on_commit_callbacks, itsm)
    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(f"{URL}{change.pk}/cancel/", {"reason": "Window moved"}, format="json")
    assert response.status_code == 202
    [remote] = cab.changes()
    assert remote["state"] == "4"  # Canceled
    assert OutboxMessage.objects.get(kind="change.cancel").status == OutboxStatus.DELIVERED
    poll(itsm)  # the poll sees it cancelled too: nothing more happens
    change.refresh_from_db()
    assert change.state == ChangeState.CANCELLED
    assert state_steps(change) == ["submitted", "assess", "cancelled"]
