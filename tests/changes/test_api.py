"""The change API: roles, drafts, submit and cancel through the state machine, history, filters."""

import pytest
from django.utils import timezone

from syncplane.changes.choices import ChangeState
from syncplane.changes.models import ChangeEvent, ChangeRequest
from syncplane.integrations.models import ExternalSystem, OutboxMessage, OutboxStatus
from syncplane.inventory.models import Asset

URL = "/api/v1/changes/"
BODY = {"title": "Patch the edge routers", "description": "Firmware 17.3", "risk_score": 65,
        "planned_start": "2026-06-04T20:00:00Z", "planned_end": "2026-06-04T22:00:00Z"}


@pytest.fixture
def operator(api_as):
    return api_as("operator")


def create(client, **fields):
    response = client.post(URL, {**BODY, **fields}, format="json")
    assert response.status_code == 201, response.data
    return response.data


def test_operator_creates_a_draft_with_assets_and_becomes_its_requester(operator, fake_system):
    asset = Asset.objects.create(name="edge-rtr-01", created_at=timezone.now(), updated_at=timezone.now())
    data = create(operator, affected_assets=[str(asset.pk)], external_system=fake_system.pk)
    assert data["state"] == "draft"
    assert data["requester"] == "user-operator"
    assert data["affected_assets"] == [asset.pk]
    assert data["correlation_id"].startswith("syncplane-chg-")
    assert data["external_system"] == fake_system.pk


@pytest.mark.parametrize(("fields", "error_field"), [
    ({"risk_score": 101}, "risk_score"),
    ({"risk_score": -1}, "risk_score"),
    ({"planned_end": "2026-06-04T19:00:00Z"}, "planned_end"),
    ({"title": ""}, "title"),
])
def test_invalid_changes_are_refused(operator, fields, error_field):
    response = operator.post(URL, {**BODY, **fields}, format="json")
    assert response.status_code == 400
    assert error_field in response.data


def test_a_cmdb_integration_is_not_a_place_to_submit_to(operator, db):
    cmdb = ExternalSystem.objects.create(name="CMDB", system_type="servicenow_cmdb", category="cmdb",
                                         base_url="https://cmdb.example")
    response = operator.post(URL, {**BODY, "external_system": cmdb.pk}, format="json")
    assert response.status_code == 400
    assert "external_system" in response.data


def test_patch_only_in_draft_and_never_the_state(operator, fake_system, django_capture_on_commit_callbacks):
    data = create(operator)
    response = operator.patch(f"{URL}{data['id']}/", {"title": "Patch the core routers", "state": "approved"},
                              format="json")
    assert response.status_code == 200
    assert response.data["title"] == "Patch the core routers"
    assert response.data["state"] == "draft"  # read-only: only the state machine moves it
    with django_capture_on_commit_callbacks(execute=True):
        operator.post(f"{URL}{data['id']}/submit/", {"external_system": fake_system.pk}, format="json")
    response = operator.patch(f"{URL}{data['id']}/", {"title": "Too late"}, format="json")
    assert response.status_code == 409
    assert "only a draft can be edited" in response.data["detail"]
    assert ChangeRequest.objects.get(pk=data["id"]).title == "Patch the core routers"


def test_submit_needs_an_itsm_integration(operator, db):
    data = create(operator)
    response = operator.post(f"{URL}{data['id']}/submit/", {}, format="json")
    assert response.status_code == 400
    assert "external_system" in response.data["detail"]
    assert ChangeRequest.objects.get(pk=data["id"]).state == ChangeState.DRAFT
    assert not OutboxMessage.objects.exists()


def test_submit_creates_the_external_change_once(operator, fake_system, fake_itsm,
                                                 django_capture_on_commit_callbacks):
    data = create(operator)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = operator.post(f"{URL}{data['id']}/submit/", {"external_system": fake_system.pk}, format="json")
    assert response.status_code == 202, response.data
    assert len(callbacks) == 1  # the delivery is queued after the commit, not before
    change = ChangeRequest.objects.get(pk=data["id"])
    assert change.state == ChangeState.SUBMITTED
    assert change.external_change_request_id == "FAKE-1"
    assert change.external_key == "ext-1"
    assert fake_itsm.calls == ["find_change", "create_change"]
    assert OutboxMessage.objects.get().status == OutboxStatus.DELIVERED
    # A second submit is an illegal transition: 409 with the state machine's words, nothing sent.
    response = operator.post(f"{URL}{data['id']}/submit/", {}, format="json")
    assert response.status_code == 409
    assert response.data["detail"].startswith("a change cannot go from submitted to submitted")
    assert len(fake_itsm.store) == 1


def test_cancel_of_a_submitted_change_cancels_it_externally(operator, fake_system, fake_itsm,
                                                            django_capture_on_commit_callbacks):
    data = create(operator, external_system=fake_system.pk)
    with django_capture_on_commit_callbacks(execute=True):
        operator.post(f"{URL}{data['id']}/submit/", {}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(f"{URL}{data['id']}/cancel/", {"reason": "window moved"}, format="json")
    assert response.status_code == 202
    assert response.data["state"] == "cancelled"
    assert fake_itsm.store["ext-1"]["state"] == "cancelled"
    assert fake_itsm.calls[-1] == "cancel_change"
    history = operator.get(f"{URL}{data['id']}/history/").data
    events = [h["event"]["event_type"] for h in history if h["kind"] == "event"]
    assert events == ["change.submitted", "change.delivered", "change.cancelled", "change.cancel_delivered"]
    assert history[2]["event"]["detail"] == "window moved"
    assert history[2]["event"]["actor"] == "user-operator"


def test_a_refused_change_is_sent_again_once_the_cause_is_fixed(operator, fake_system, fake_itsm,
                                                                django_capture_on_commit_callbacks):
    from syncplane.integrations.errors import PermanentError

    fake_itsm.errors["create_change"] = [PermanentError("HTTP 400: Assignment group is mandatory", status_code=400)]
    data = create(operator)
    with django_capture_on_commit_callbacks(execute=True):
        operator.post(f"{URL}{data['id']}/submit/", {"external_system": fake_system.pk}, format="json")
    change = ChangeRequest.objects.get(pk=data["id"])
    assert change.state == ChangeState.SUBMITTED and "mandatory" in change.submission_error
    # The admin fixes the assignment group; the change manager sends the same change again.
    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(f"{URL}{data['id']}/resubmit/", {}, format="json")
    assert response.status_code == 202, response.data
    change.refresh_from_db()
    assert (change.external_change_request_id, change.submission_error) == ("FAKE-1", "")
    message = OutboxMessage.objects.get()
    assert (message.status, message.attempts) == (OutboxStatus.DELIVERED, 1)
    assert fake_itsm.calls == ["find_change", "create_change", "find_change", "create_change"]
    assert "change.resubmitted" in change.events.values_list("event_type", flat=True)
    # Delivered now: nothing left to send again.
    again = operator.post(f"{URL}{data['id']}/resubmit/", {}, format="json")
    assert again.status_code == 400 and "delivery failed" in again.data["detail"]
    assert len(fake_itsm.store) == 1


def test_cancelling_a_draft_sends_nothing(operator, fake_system, fake_itsm, django_capture_on_commit_callbacks):
    data = create(operator, external_system=fake_system.pk)
    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(f"{URL}{data['id']}/cancel/", {}, format="json")
    assert response.status_code == 202
    assert not OutboxMessage.objects.exists()
    assert fake_itsm.calls == []


@pytest.mark.parametrize("role", ["viewer", None])
def test_viewer_reads_but_cannot_create_edit_submit_or_cancel(api_as, role, fake_system, draft):
    change = draft()
    client = api_as(role)
    if role == "viewer":
        assert client.get(URL).status_code == 200
        assert client.get(f"{URL}{change.pk}/history/").status_code == 200
    assert client.post(URL, BODY, format="json").status_code == 403
    assert client.patch(f"{URL}{change.pk}/", {"title": "x"}, format="json").status_code == 403
    assert client.post(f"{URL}{change.pk}/submit/", {"external_system": fake_system.pk},
                       format="json").status_code == 403
    assert client.post(f"{URL}{change.pk}/cancel/", {}, format="json").status_code == 403
    assert client.post(f"{URL}{change.pk}/resubmit/", {}, format="json").status_code == 403
    change.refresh_from_db()
    assert change.state == ChangeState.DRAFT and change.title == "Rotate TLS certificates"


def test_anonymous_gets_401(api_as, draft):
    change = draft()
    client = api_as("anonymous")
    assert client.get(URL).status_code == 401
    assert client.post(f"{URL}{change.pk}/submit/", {}, format="json").status_code == 401


def test_no_delete(api_as, draft):
    change = draft()
    assert api_as("admin").delete(f"{URL}{change.pk}/").status_code == 405
    assert ChangeRequest.objects.filter(pk=change.pk).exists()


def test_filters_by_state_and_integration(operator, fake_system, draft, django_capture_on_commit_callbacks):
    submitted = draft(title="one")
    draft(title="two")
    with django_capture_on_commit_callbacks(execute=True):
        operator.post(f"{URL}{submitted.pk}/submit/", {"external_system": fake_system.pk}, format="json")
    by_state = operator.get(URL, {"state": "submitted"}).data["results"]
    assert [c["title"] for c in by_state] == ["one"]
    by_system = operator.get(URL, {"external_system": fake_system.pk}).data["results"]
    assert [c["title"] for c in by_system] == ["one"]
    assert len(operator.get(URL, {"state": "draft"}).data["results"]) == 1


def test_history_records_the_user_frozen(operator, fake_system, draft, make_user, django_capture_on_commit_callbacks):
    change = draft()
    with django_capture_on_commit_callbacks(execute=True):
        operator.post(f"{URL}{change.pk}/submit/", {"external_system": fake_system.pk}, format="json")
    event = ChangeEvent.objects.filter(change=change).first()
    assert (event.event_type, event.actor, event.source) == ("change.submitted", "user-operator", "user")
    assert (event.from_state, event.to_state) == ("draft", "submitted")


def test_schema_stays_valid(api_as):
    response = api_as("viewer").get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/v1/changes/", "/api/v1/changes/{id}/submit/", "/api/v1/changes/{id}/cancel/",
                 "/api/v1/changes/{id}/history/", "/api/v1/webhooks/{integration_id}/"):
        assert path in paths


def test_listing_does_not_query_per_change(operator, fake_system, draft, django_assert_max_num_queries):
    assets = [Asset.objects.create(name=f"a{i}", created_at=timezone.now(), updated_at=timezone.now())
              for i in range(3)]
    for i in range(10):
        draft(title=f"change {i}", external_system=fake_system).affected_assets.set(assets)
    # Auth (token, user, role) + count + page + requesters + assets: the same for 10 changes as for 1.
    with django_assert_max_num_queries(8):
        response = operator.get(URL)
    assert len(response.data["results"]) == 10
    assert all(len(c["affected_assets"]) == 3 for c in response.data["results"])
