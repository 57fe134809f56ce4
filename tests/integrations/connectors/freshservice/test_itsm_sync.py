"""Freshservice ITSM end to end, over real HTTP: a change submitted in Syncplane is created once in the
simulated Freshservice, the CAB acts there, and the state comes back through the sync engine (start_sync +
run_sync with the ChangeSink) and through the shared-secret webhook."""

import json
from datetime import UTC, datetime

import httpx
import pytest

from syncplane.changes import actions
from syncplane.changes.choices import ChangeState
from syncplane.changes.models import ApprovalRecord, ChangeEvent, ChangeRequest
from syncplane.integrations.choices import AuthType, RunStatus, SystemType
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.secrets import to_reference
from syncplane.integrations.sinks import sink_for
from syncplane_simulators.freshservice_cmdb import DEFAULT_API_KEY
from tests.integrations.assertions import assert_counters_match_outcomes

SECRET = "freshservice-hook-secret"


@pytest.fixture
def itsm(simulator, db):
    simulator.freshservice.rate_limit_per_minute = 100_000
    httpx.post(f"{simulator.url}/freshservice/_control/webhook", json={"secret": SECRET}).raise_for_status()
    system = ExternalSystem.objects.create(
        name="Freshservice ITSM test", system_type=SystemType.FRESHSERVICE_ITSM, category="itsm",
        base_url=f"{simulator.url}/freshservice", auth_type=AuthType.API_KEY,
        credentials={"api_key": to_reference(DEFAULT_API_KEY)}, webhook_secret=to_reference(SECRET),
        config={"requester_email": simulator.freshservice.requesters[0]["primary_email"], "page_size": 2,
                "rate_limit_per_second": 1000},
    )
    try:
        sink_for("change", system.pk)
    except ValueError:
        pytest.skip("the sync engine has no sink for record kind 'change' yet (inventory/sink.py sink_for)")
    return system


class Cab:
    """A CAB member at the simulated Freshservice account (its control endpoints)."""

    def __init__(self, simulator):
        self.base = f"{simulator.url}/freshservice/_control"

    def changes(self) -> list[dict]:
        return httpx.get(f"{self.base}/changes").json()["changes"]

    def act(self, change_id: str, action: str, **body) -> dict:
        response = httpx.post(f"{self.base}/changes/{change_id}/{action}", json=body)
        response.raise_for_status()
        return response.json()["change"]

    def notifications(self) -> list[dict]:
        return httpx.get(f"{self.base}/webhooks").json()["webhooks"]


@pytest.fixture
def cab(simulator):
    return Cab(simulator)


def submit(itsm, capture, **fields) -> ChangeRequest:
    values = {"title": "Rotate TLS certificates on edge load balancers", "description": "Quarterly rotation",
              "risk_score": 85, "planned_start": datetime(2026, 6, 4, 20, tzinfo=UTC),
              "planned_end": datetime(2026, 6, 4, 22, tzinfo=UTC), **fields}
    change = ChangeRequest.objects.create(**values)
    with capture(execute=True):
        actions.submit(change, external_system=itsm)
    change.refresh_from_db()
    return change


def poll(itsm, mode="full"):
    log = assert_counters_match_outcomes(run_sync(start_sync(itsm, mode=mode).pk))
    assert log.status == RunStatus.SUCCESS, log.error_summary
    return log


def steps(change) -> list[str]:
    return list(ChangeEvent.objects.filter(change=change).exclude(to_state="").values_list("to_state", flat=True))


def test_submit_once_then_cab_progress_comes_back_by_polling(itsm, cab, simulator,
                                                             django_capture_on_commit_callbacks):
    change = submit(itsm, django_capture_on_commit_callbacks)
    [remote] = cab.changes()
    assert (change.external_key, change.external_change_request_id) == ("1", "1")
    assert remote["custom_fields"]["syncplane_correlation_id"] == change.correlation_id
    assert remote["risk"] == 4  # risk_score 85: Very High
    assert change.state == ChangeState.SUBMITTED
    simulator.freshservice.itsm.seed(count=3)  # changes raised by people: never Syncplane's business

    cab.act("1", "request-approval")
    log = poll(itsm)
    assert log.records_read == 1  # only the change Syncplane created, over the two pages of the list
    change.refresh_from_db()
    assert change.state == ChangeState.ASSESS
    cab.act("1", "approve", comment="Fine by the CAB")
    poll(itsm, mode="incremental")
    change.refresh_from_db()
    assert change.state == ChangeState.SCHEDULED  # Pending Release, approved, with a planned start
    approval = ApprovalRecord.objects.get(change=change)
    assert (approval.decision, approval.comment, approval.source) == ("approved", "Fine by the CAB", "poll")

    cab.act("1", "implement")
    poll(itsm, mode="incremental")
    change.refresh_from_db()
    assert change.state == ChangeState.IMPLEMENTING
    cab.act("1", "close")
    poll(itsm, mode="incremental")
    change.refresh_from_db()
    assert change.state == ChangeState.COMPLETED
    assert steps(change) == ["submitted", "assess", "approved", "scheduled", "implementing", "completed"]
    assert poll(itsm).records_updated == 0  # nothing new: nothing written
    assert ApprovalRecord.objects.filter(change=change).count() == 1
    assert len([c for c in cab.changes() if c["custom_fields"]["syncplane_correlation_id"]]) == 1


def test_polling_follows_the_stored_id_when_list_items_carry_no_custom_fields(itsm, cab, simulator,
                                                                             django_capture_on_commit_callbacks):
    change = submit(itsm, django_capture_on_commit_callbacks)
    simulator.freshservice.itsm.seed(count=3)  # changes raised by people
    simulator.freshservice.itsm.list_custom_fields = False  # as list answers of a real account may be
    cab.act(change.external_key, "approve", comment="Fine by the CAB")
    log = poll(itsm)
    assert (log.records_read, log.records_updated) == (1, 1)
    change.refresh_from_db()
    assert change.state == ChangeState.SCHEDULED
    assert ApprovalRecord.objects.get(change=change).comment == "Fine by the CAB"


def test_a_rejection_comes_back_by_the_shared_secret_webhook(itsm, cab, client, django_capture_on_commit_callbacks):
    change = submit(itsm, django_capture_on_commit_callbacks)
    cab.act(change.external_key, "reject", comment="Not during the freeze")
    note = cab.notifications()[-1]
    assert json.loads(note["body"]) == {"change_id": change.external_key, "event": "reject"}
    response = client.post(f"/api/v1/webhooks/{itsm.pk}/", data=note["body"].encode(),
                           content_type="application/json",
                           HTTP_X_SYNCPLANE_WEBHOOK_SECRET=note["headers"]["X-Syncplane-Webhook-Secret"])
    assert response.status_code == 200, response.content
    change.refresh_from_db()
    assert change.state == ChangeState.REJECTED
    assert ApprovalRecord.objects.get(change=change).comment == "Not during the freeze"
    wrong = client.post(f"/api/v1/webhooks/{itsm.pk}/", data=note["body"].encode(), content_type="application/json",
                        HTTP_X_SYNCPLANE_WEBHOOK_SECRET="wrong")
    assert wrong.status_code == 401


def test_cancel_in_syncplane_closes_the_freshservice_change(itsm, cab, django_capture_on_commit_callbacks):
    change = submit(itsm, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        actions.cancel(change, reason="Superseded")
    [remote] = cab.changes()
    assert (remote["status"], remote["approval_status"]) == (6, 4)  # Closed, approval never requested
    detail = httpx.get(f"{cab.base}/changes/{remote['id']}").json()
    assert [n["body_text"] for n in detail["notes"]] == ["Cancelled from Syncplane: Superseded"]
    poll(itsm)
    change.refresh_from_db()
    assert change.state == ChangeState.CANCELLED
