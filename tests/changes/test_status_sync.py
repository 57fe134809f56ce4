"""Status back from the ITSM tool, by polling (the sync engine with the ChangeSink) and by webhook (HMAC
scheme here; the shared-secret scheme is covered end to end with ServiceNow)."""

import hashlib
import hmac
import json

import pytest

from syncplane.changes import actions
from syncplane.changes.choices import ChangeState
from syncplane.changes.delivery import draft_of
from syncplane.changes.models import ApprovalRecord, ChangeEvent
from syncplane.integrations.choices import SyncMode
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.registry import build_connector
from syncplane.integrations.secrets import resolve_secret
from syncplane.integrations.tasks import scheduled_mode
from tests.integrations.assertions import assert_counters_match_outcomes

SECRET = "hook-secret-for-tests"
APPROVAL = {"external_id": "appr-1", "approver": "cab.manager", "decision": "approved", "comment": "ok",
            "decided_at": None}


@pytest.fixture
def submitted(fake_system, draft, django_capture_on_commit_callbacks):
    change = draft()
    with django_capture_on_commit_callbacks(execute=True):
        actions.submit(change, external_system=fake_system)
    change.refresh_from_db()
    assert change.external_key == "ext-1"
    return change


def poll(system, mode=SyncMode.FULL):
    log = assert_counters_match_outcomes(run_sync(start_sync(system, mode=mode).pk))
    assert log.status == "success", log.error_summary
    return log


def states(change):
    return list(ChangeEvent.objects.filter(change=change).exclude(to_state="").values_list("to_state", flat=True))


def test_polling_walks_every_step_and_records_the_approval_once(fake_system, fake_itsm, submitted):
    fake_itsm.move("ext-1", "approved", APPROVAL)
    log = poll(fake_system)
    submitted.refresh_from_db()
    assert submitted.state == ChangeState.APPROVED
    assert (log.records_read, log.records_updated, log.records_unchanged) == (1, 1, 0)
    outcome = log.outcomes.get()
    assert outcome.changes["state"] == ["submitted", "approved"]
    assert ApprovalRecord.objects.get(change=submitted).approver == "cab.manager"
    # The same poll again (nothing moved) changes nothing and records nothing twice.
    log = poll(fake_system)
    assert (log.records_updated, log.records_unchanged) == (0, 1)
    assert ApprovalRecord.objects.filter(change=submitted).count() == 1
    # A poll that missed implementing: approved -> completed walks through it, and records it.
    fake_itsm.move("ext-1", "completed")
    poll(fake_system)
    submitted.refresh_from_db()
    assert submitted.state == ChangeState.COMPLETED
    assert states(submitted) == ["submitted", "approved", "implementing", "completed"]
    skipped = ChangeEvent.objects.get(change=submitted, to_state="implementing")
    assert (skipped.source, skipped.detail) == ("poll", "step not reported, passed through")


def test_a_rejection_flows_back_by_polling(fake_system, fake_itsm, submitted):
    fake_itsm.move("ext-1", "rejected", {**APPROVAL, "decision": "rejected", "comment": "too risky"})
    poll(fake_system)
    submitted.refresh_from_db()
    assert submitted.state == ChangeState.REJECTED
    assert ChangeEvent.objects.filter(change=submitted, event_type="change.rejected").count() == 1
    assert ApprovalRecord.objects.get(change=submitted).comment == "too risky"


def test_unknown_changes_are_counted_unchanged_and_nothing_is_deleted(fake_system, fake_itsm, submitted):
    fake_itsm.store["someone-else"] = {"number": "FAKE-99", "state": "approved", "correlation_id": "",
                                       "approvals": [], "updated": 0}
    log = poll(fake_system)
    assert (log.records_read, log.records_updated, log.records_unchanged, log.records_deleted) == (2, 0, 2, 0)


def test_a_create_whose_answer_was_lost_is_adopted_by_its_correlation_id(fake_system, fake_itsm, draft):
    change = draft()
    actions.submit(change, external_system=fake_system)  # the outbox has not delivered (yet)
    connector = build_connector(fake_system)
    connector.create_change(draft_of(change))  # the create reached the tool; its answer never came back
    poll(fake_system)
    change.refresh_from_db()
    assert (change.external_key, change.external_change_request_id) == ("ext-1", "FAKE-1")


def test_itsm_integrations_are_polled_incrementally_by_the_schedule(fake_system, fake_itsm, submitted):
    assert scheduled_mode(fake_system, fake_itsm.supports("incremental")) == SyncMode.FULL  # first one full
    poll(fake_system)
    assert scheduled_mode(fake_system, fake_itsm.supports("incremental")) == SyncMode.INCREMENTAL


# --- webhooks ------------------------------------------------------------------------------------------

def signed(body: bytes, secret: str = SECRET) -> dict:
    return {"HTTP_X_HUB_SIGNATURE": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def post(client, system_id, body: bytes, headers: dict):
    return client.post(f"/api/v1/webhooks/{system_id}/", data=body, content_type="application/json", **headers)


def test_a_signed_webhook_applies_the_state_read_back_from_the_tool(client, fake_system, fake_itsm, submitted):
    fake_itsm.move("ext-1", "approved", APPROVAL)
    # The payload claims "rejected": it is only a hint, the state is read back from the tool.
    body = json.dumps({"id": "ext-1", "state": "rejected"}).encode()
    response = post(client, fake_system.pk, body, signed(body))
    assert response.status_code == 200, response.content
    assert response.json() == {"changes": 1, "updated": 1}
    submitted.refresh_from_db()
    assert submitted.state == ChangeState.APPROVED
    assert ChangeEvent.objects.get(change=submitted, to_state="approved").source == "webhook"
    # The same notification again, and an older one after it: no-ops.
    assert post(client, fake_system.pk, body, signed(body)).json() == {"changes": 1, "updated": 0}
    fake_itsm.move("ext-1", "implementing")
    fake_itsm.move("ext-1", "completed")
    assert post(client, fake_system.pk, body, signed(body)).json()["updated"] == 1
    assert post(client, fake_system.pk, body, signed(body)).json()["updated"] == 0
    assert states(submitted) == ["submitted", "approved", "implementing", "completed"]
    assert ApprovalRecord.objects.filter(change=submitted).count() == 1


@pytest.mark.parametrize("headers", [
    {},
    {"HTTP_X_HUB_SIGNATURE": "sha256=" + "0" * 64},
    {"HTTP_X_HUB_SIGNATURE": "sha256="},
    "wrong-secret",
    "tampered-body",
])
def test_a_bad_or_missing_signature_gets_401_and_changes_nothing(client, fake_system, fake_itsm, submitted,
                                                                 headers):
    fake_itsm.move("ext-1", "approved", APPROVAL)
    body = json.dumps({"id": "ext-1"}).encode()
    if headers == "wrong-secret":
        headers = signed(body, "not-the-secret")
    elif headers == "tampered-body":
        headers, body = signed(body), json.dumps({"id": "ext-1", "x": 1}).encode()
    response = post(client, fake_system.pk, body, headers)
    assert response.status_code == 401
    submitted.refresh_from_db()
    assert submitted.state == ChangeState.SUBMITTED
    assert "get_changes" not in fake_itsm.calls
    assert SECRET not in response.content.decode()


def test_unknown_unconfigured_and_badly_signed_notifications_get_one_answer(client, fake_system, fake_itsm,
                                                                            servicenow, caplog):
    """No enumeration: an unknown id, a CMDB, an archived integration, one without a webhook secret and a bad
    signature are answered alike (same status, same body); only the log tells them apart."""
    body = b'{"id": "ext-1"}'
    bad_signature = post(client, fake_system.pk, body, signed(body, "not-the-secret"))
    answers = [bad_signature, post(client, 999999, body, signed(body)),
               post(client, servicenow.pk, body, signed(body))]  # a CMDB takes no webhooks
    ExternalSystem.objects.filter(pk=fake_system.pk).update(webhook_secret="")
    answers.append(post(client, fake_system.pk, body, signed(body)))
    ExternalSystem.objects.filter(pk=fake_system.pk).update(archived_at=fake_system.created_at)
    answers.append(post(client, fake_system.pk, body, signed(body)))
    assert [(r.status_code, r.content) for r in answers] == [(401, bad_signature.content)] * 5
    assert "get_changes" not in fake_itsm.calls
    reasons = [record.reason for record in caplog.records if record.getMessage() == "webhook refused"]
    assert reasons == ["bad, missing or expired signature", "no live ITSM integration with this id",
                       "no live ITSM integration with this id", "no webhook secret configured",
                       "no live ITSM integration with this id"]


def test_a_signed_but_deeply_nested_body_is_a_400_not_a_server_error(client, fake_system):
    body = ("[" * 5000 + "]" * 5000).encode()
    response = post(client, fake_system.pk, body, signed(body))
    assert response.status_code == 400, response.content


def test_the_webhook_secret_is_write_only_in_the_integration_api(api_as, fake_system):
    admin = api_as("admin")
    response = admin.patch(f"/api/v1/integrations/{fake_system.pk}/", {"webhook_secret": "new-hook-secret"},
                           format="json")
    assert response.status_code == 200, response.data
    assert "webhook_secret" not in response.data
    assert response.data["webhook_secret_status"] == {"set": True, "source": "enc"}
    assert "new-hook-secret" not in json.dumps(admin.get(f"/api/v1/integrations/{fake_system.pk}/").data)
    fake_system.refresh_from_db()
    assert fake_system.webhook_secret.startswith("enc:")
    assert resolve_secret(fake_system.webhook_secret) == "new-hook-secret"
