"""The Jira Service Management connector against the Jira simulator over real HTTP: create, find, batch reads,
CAB decisions, cancel, errors, retries, fetch and webhooks; and one run through the sync engine."""

import json
from datetime import UTC, datetime

import httpx
import pytest

from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.connectors.jira import service_management as jsm
from syncplane.integrations.connectors.jira.service_management import JiraServiceManagementConnector
from syncplane.integrations.errors import AuthenticationError, PermanentError, TransientError
from syncplane.integrations.itsm import ChangeDraft
from syncplane_simulators.jira_assets import DEFAULT_API_TOKEN, DEFAULT_EMAIL, JiraAssetsSimulator
from syncplane_simulators.jira_service_management import (
    FIELD_PLANNED_END,
    FIELD_PLANNED_START,
    FIELD_RISK,
    _adf,
)
from syncplane_simulators.server import SimulatorServer


@pytest.fixture(scope="module")
def sim():
    return JiraAssetsSimulator(records=5, seed=3)


@pytest.fixture(scope="module")
def server(sim):
    with SimulatorServer(records=5, seed=3, extra_apps={"/jira": sim}) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(sim):
    sim.reset()
    jsm._field_cache.clear()  # every test discovers the fields itself
    yield
    sim.service_management.stop()


@pytest.fixture
def waits():
    return []


@pytest.fixture
def make(server, waits):
    made = []

    def build(password=DEFAULT_API_TOKEN, **config):
        context = ConnectorContext(
            base_url=f"{server.url}/jira", auth_type="basic",
            config={"rate_limit_per_second": 1000, **config},
            credentials={"username": DEFAULT_EMAIL, "password": password}, resolve_secret=lambda ref: ref,
        )
        connector = JiraServiceManagementConnector(context, sleep=waits.append)
        made.append(connector)
        return connector

    yield build
    for connector in made:
        connector.close()


@pytest.fixture
def control(server):
    with httpx.Client(base_url=server.url + "/jira/_control") as client:
        yield client


def draft(correlation_id="c0ffee01", **overrides) -> ChangeDraft:
    values = {"title": "Rotate TLS certificates on edge load balancers",
              "description": "Planned rotation.\nRollback: restore the old certificate.", "risk_score": 65,
              "planned_start": datetime(2024, 6, 4, 20, 0, tzinfo=UTC),
              "planned_end": datetime(2024, 6, 4, 22, 0, tzinfo=UTC),
              "requester_email": "change.manager@acme.example", "affected_assets": ("lb-edge-01", "lb-edge-02")}
    return ChangeDraft(correlation_id=correlation_id, **{**values, **overrides})


def test_create_then_find_by_correlation_id_returns_the_same_change(make, sim):
    connector = make()
    created = connector.create_change(draft())
    assert (created.external_id, created.number) == ("10001", "ITSM-1")
    assert created.state == "assess"  # the template's automation asked the CAB at once
    assert created.correlation_id == "c0ffee01"
    found = make().find_change("c0ffee01")
    assert found is not None and (found.external_id, found.number, found.state) == ("10001", "ITSM-1", "assess")
    assert make().find_change("not-created") is None
    changes = sim.service_management.changes()
    assert len(changes) == 1  # exactly one exists
    fields = changes[0]["fields"]
    assert fields["labels"] == ["syncplane", "syncplane-c0ffee01"]
    assert fields[FIELD_RISK] == {"value": "High"}  # risk 65 -> band high
    assert (fields[FIELD_PLANNED_START], fields[FIELD_PLANNED_END]) == ("2024-06-04T20:00:00.000+0000",
                                                                        "2024-06-04T22:00:00.000+0000")
    texts = [p["content"][0]["text"] for p in fields["description"]["content"]]
    assert texts[:2] == ["Planned rotation.", "Rollback: restore the old certificate."]
    assert "Affected assets: lb-edge-01, lb-edge-02" in texts


def test_a_new_change_before_automation_is_submitted(make, control):
    control.post("/jsm-config", json={"request_approval_on_create": False})
    assert make().create_change(draft()).state == "submitted"


def test_get_changes_reads_one_page_per_chunk_not_one_request_per_change(make, sim):
    creator = make(page_size=3)
    ids = [creator.create_change(draft(f"corr-{n}")).external_id for n in range(7)]
    connector = make(page_size=3)
    connector.resolve_fields()
    searches, reads = sim.stats["search_requests"], sim.stats["issue_reads"]
    changes = connector.get_changes(ids + ids[:2])
    assert sorted(c.external_id for c in changes) == sorted(ids)
    assert sim.stats["search_requests"] - searches == 3  # ceil(7 / 3), duplicates asked once
    assert sim.stats["issue_reads"] == reads


def test_get_changes_with_a_missing_id_reads_that_chunk_one_by_one(make, sim):
    connector = make()
    first = connector.create_change(draft("one")).external_id
    reads = sim.stats["issue_reads"]
    changes = connector.get_changes([first, "99999"])  # JQL answers 400 for the unknown id
    assert [c.external_id for c in changes] == [first]
    assert sim.stats["issue_reads"] - reads == 2


@pytest.mark.parametrize(("actions", "state", "decisions"), [
    (["approve"], "approved", [("approved", "zoe.odegard@acme.example")]),
    (["reject"], "rejected", [("rejected", "zoe.odegard@acme.example")]),
    (["approve", "implement"], "implementing", [("approved", "zoe.odegard@acme.example")]),
    (["approve", "implement", "close"], "completed", [("approved", "zoe.odegard@acme.example")]),
    (["cancel"], "cancelled", []),
])
def test_cab_actions_come_back_through_get_changes(make, control, actions, state, decisions):
    connector = make()
    created = connector.create_change(draft())
    for action in actions:
        answer = control.post(f"/changes/{created.external_id}/{action}",
                              json={"approver": "zoe.odegard@acme.example", "comment": "CAB minutes #12"})
        assert answer.status_code == 200, answer.text
    [change] = connector.get_changes([created.external_id])
    assert change.state == state
    assert [(a.decision, a.approver) for a in change.approvals] == decisions
    assert all(a.external_id.startswith("1:") and a.decided_at for a in change.approvals)


def test_cancel_change_uses_the_workflow_transition(make, sim):
    connector = make()
    created = connector.create_change(draft())
    cancelled = connector.cancel_change(created.external_id, "Superseded by CHG-7")
    assert cancelled.state == "cancelled"
    issue = sim.service_management.issue(created.external_id)
    assert issue["fields"]["status"]["name"] == "Canceled"
    comment = issue["fields"]["comment"]["comments"][-1]["body"]
    assert comment["content"][0]["content"][0]["text"] == "Superseded by CHG-7"
    assert connector.cancel_change(created.external_id, "again").state == "cancelled"  # no transition: no error


def test_cancel_is_refused_where_the_workflow_has_no_cancel(make, control):
    connector = make()
    created = connector.create_change(draft())
    control.post(f"/changes/{created.external_id}/approve")
    control.post(f"/changes/{created.external_id}/implement")
    with pytest.raises(PermanentError, match="cannot be cancelled from status 'Implementing'"):
        connector.cancel_change(created.external_id, "too late")


def test_a_400_is_a_permanent_error_with_the_vendor_reason_and_is_not_retried(make, sim):
    with pytest.raises(PermanentError) as caught:
        make(issue_type="Task").create_change(draft())
    assert caught.value.status_code == 400
    assert "issuetype: valid issue type is required" in str(caught.value)
    assert sim.stats["creates"] == 1
    assert sim.service_management.changes() == []


def test_429_with_retry_after_and_503_are_retried_and_create_once(make, sim, control, waits):
    control.post("/faults", json={"faults": [
        {"status": 429, "retry_after": 2, "path": "/rest/api/3/issue", "count": 1},
        {"status": 503, "path": "/rest/api/3/issue", "count": 1},
    ]})
    created = make().create_change(draft())
    assert created.number == "ITSM-1"
    assert 2 in waits  # the server's Retry-After was honoured
    assert sim.stats["faults_fired"] == 2 and sim.stats["creates"] == 1
    assert len(sim.service_management.changes()) == 1


def test_a_500_on_create_is_not_repeated(make, sim, control):
    control.post("/faults", json={"status": 500, "path": "/rest/api/3/issue", "count": 1})
    with pytest.raises(TransientError):
        make().create_change(draft())  # the POST may have been processed: the outbox decides, via find_change
    assert sim.stats["faults_fired"] == 1 and sim.stats["creates"] == 0


def test_bad_credentials_are_an_authentication_error(make):
    with pytest.raises(AuthenticationError) as caught:
        make(password="wrong-token").test_connection()
    assert caught.value.status_code == 401
    assert "wrong-token" not in str(caught.value)


def test_test_connection_discovers_the_custom_fields(make, sim, control):
    result = make().test_connection()
    assert result.ok, result.message
    assert result.details["fields"]["approvals_field"] == "customfield_10025"
    assert result.details["missing_fields"] == []
    fields_asked = sim.stats["field_requests"]
    make().create_change(draft())  # the discovery is cached for the site
    assert sim.stats["field_requests"] == fields_asked
    jsm._field_cache.clear()
    control.post("/jsm-config", json={"field_names": {"customfield_10025": "CAB sign-off"}})  # a renamed field
    missing = make().test_connection()
    assert not missing.ok and "approvals field was not found" in missing.message
    assert make(field_names={"approvals_field": "CAB sign-off"}).test_connection().ok


def test_the_planned_window_is_found_by_jsms_own_field_names(make, sim):
    # The simulator names its fields as JSM does: "Change start date", "Change completion date".
    result = make().test_connection()
    assert (result.details["fields"]["planned_start_field"], result.details["fields"]["planned_end_field"]) == (
        FIELD_PLANNED_START, FIELD_PLANNED_END)
    assert result.details["missing_fields"] == []


def test_older_names_and_configured_names_are_still_found(make, sim, control):
    control.post("/jsm-config", json={"field_names": {FIELD_PLANNED_START: "Planned start",
                                                      FIELD_PLANNED_END: "Planned end"}})
    fields = make().test_connection().details["fields"]
    assert (fields["planned_start_field"], fields["planned_end_field"]) == (FIELD_PLANNED_START, FIELD_PLANNED_END)
    jsm._field_cache.clear()
    control.post("/jsm-config", json={"field_names": {FIELD_PLANNED_START: "Wartungsbeginn"}})
    assert "planned_start_field" not in make().test_connection().details["fields"]
    result = make(field_names={"planned_start_field": "Wartungsbeginn"}).test_connection()
    assert result.details["fields"]["planned_start_field"] == FIELD_PLANNED_START
    control.post("/jsm-config", json={"field_names": {}})


def test_fetch_full_and_incremental_yield_only_syncplanes_changes(make, server, control):
    connector = make(page_size=2)
    ids = [connector.create_change(draft(f"corr-{n}")).external_id for n in range(3)]
    foreign = httpx.post(f"{server.url}/jira/rest/api/3/issue", auth=(DEFAULT_EMAIL, DEFAULT_API_TOKEN), json={
        "fields": {"project": {"key": "ITSM"}, "issuetype": {"name": "Change"}, "summary": "made by hand",
                   "description": _adf("not Syncplane's"), "labels": ["manual"]}}).json()["id"]
    pages = list(make(page_size=2).fetch("full"))
    assert [len(p.records) for p in pages] == [2, 1]
    assert pages[0].resume is not None and pages[-1].resume is None
    seen = [r["id"] for p in pages for r in p.records]
    assert seen == ids and foreign not in seen
    cursor = pages[-1].cursor
    assert cursor == max(p.cursor for p in pages)
    # Nothing changed: only the change at the cursor comes back (unchanged, by its fingerprint).
    again = [r["id"] for p in make().fetch("incremental", cursor) for r in p.records]
    assert again == [ids[-1]]
    control.post(f"/changes/{ids[0]}/approve")
    changed = list(make().fetch("incremental", cursor))
    records = [r for p in changed for r in p.records]
    assert [r["id"] for r in records] == [ids[-1], ids[0]]
    assert make().map_change(records[-1]).state == "approved"  # the page carries the approvals
    assert changed[-1].cursor > cursor


def test_webhook_change_ids_on_the_recorded_notification(make, control):
    control.post("/webhook", json={"secret": "whsec"})
    connector = make()
    created = connector.create_change(draft())
    control.post(f"/changes/{created.external_id}/approve")
    hooks = control.get("/webhooks").json()["webhooks"]
    assert hooks and all("X-Hub-Signature" in h["headers"] for h in hooks)
    assert connector.webhook_change_ids(json.loads(hooks[-1]["body"])) == [created.external_id]


@pytest.mark.django_db
def test_submit_deliver_then_a_sync_run_brings_the_cab_decisions_in(server, control, sim):
    """The whole loop: submit -> outbox creates the Jira change -> the CAB decides in Jira -> the sync engine
    (full, then incremental) moves the ChangeRequests and records the approvals."""
    from syncplane.integrations.choices import AuthType, RunStatus, SyncMode, SystemType
    from syncplane.integrations.engine import run_sync, start_sync
    from syncplane.integrations.models import ExternalSystem, OutboxMessage
    from syncplane.integrations.secrets import to_reference
    from syncplane.integrations.sinks import sink_for

    try:
        sink_for("change", 0)
    except ValueError:
        pytest.skip("the changes app's ChangeSink is not wired into inventory.sink.sink_for yet")
    from syncplane.changes import actions
    from syncplane.changes.models import ApprovalRecord, ChangeRequest
    from syncplane.integrations import outbox

    system = ExternalSystem.objects.create(
        name="JSM test", system_type=SystemType.JIRA_SERVICE_MANAGEMENT, category="itsm",
        base_url=f"{server.url}/jira", auth_type=AuthType.BASIC,
        credentials={"username": DEFAULT_EMAIL, "password": to_reference(DEFAULT_API_TOKEN)},
        config={"page_size": 2},
    )
    changes = []
    for n in range(3):
        change = ChangeRequest.objects.create(title=f"Patch edge firewall {n}", description="Apply vendor fix.",
                                              risk_score=85)
        actions.submit(change, external_system=system)
        message = OutboxMessage.objects.get(subject_type="change", subject_id=str(change.pk))
        assert outbox.deliver(message.pk) == "delivered"
        changes.append(ChangeRequest.objects.get(pk=change.pk))
    assert [c.external_change_request_id for c in changes] == ["ITSM-1", "ITSM-2", "ITSM-3"]
    assert {c.state for c in changes} == {"assess"}
    issue = sim.service_management.issue(changes[0].external_key)
    assert issue["fields"][FIELD_RISK] == {"value": "Critical"}
    assert f"syncplane-{changes[0].correlation_id}" in issue["fields"]["labels"]

    control.post(f"/changes/{changes[0].external_key}/approve", json={"approver": "zoe.odegard@acme.example"})
    control.post(f"/changes/{changes[1].external_key}/reject", json={"approver": "juergen.mueller@acme.example"})
    log = run_sync(start_sync(system).pk)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert (log.records_read, log.records_failed, log.pages) == (3, 0, 2)
    states = dict(ChangeRequest.objects.filter(pk__in=[c.pk for c in changes]).values_list("pk", "state"))
    assert [states[c.pk] for c in changes] == ["approved", "rejected", "assess"]
    approvals = ApprovalRecord.objects.filter(change=changes[0])
    assert [(a.approver, a.decision) for a in approvals] == [("zoe.odegard@acme.example", "approved")]

    control.post(f"/changes/{changes[2].external_key}/approve")
    log = run_sync(start_sync(system, mode=SyncMode.INCREMENTAL).pk)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert ChangeRequest.objects.get(pk=changes[2].pk).state == "approved"
    assert ApprovalRecord.objects.filter(change=changes[0]).count() == 1  # a decision is recorded once


@pytest.mark.django_db
def test_a_recorded_notification_posted_to_the_webhook_endpoint_applies_the_decision(server, control):
    from rest_framework.test import APIClient

    from syncplane.changes import actions
    from syncplane.changes.models import ChangeRequest
    from syncplane.integrations import outbox
    from syncplane.integrations.choices import AuthType, SystemType
    from syncplane.integrations.models import ExternalSystem, OutboxMessage
    from syncplane.integrations.secrets import to_reference

    system = ExternalSystem.objects.create(
        name="JSM webhook test", system_type=SystemType.JIRA_SERVICE_MANAGEMENT, category="itsm",
        base_url=f"{server.url}/jira", auth_type=AuthType.BASIC,
        credentials={"username": DEFAULT_EMAIL, "password": to_reference(DEFAULT_API_TOKEN)},
        webhook_secret=to_reference("whsec-jsm"),
    )
    control.post("/webhook", json={"secret": "whsec-jsm"})
    change = ChangeRequest.objects.create(title="Replace core switch", risk_score=40)
    actions.submit(change, external_system=system)
    outbox.deliver(OutboxMessage.objects.get(subject_type="change", subject_id=str(change.pk)).pk)
    change.refresh_from_db()
    control.post(f"/changes/{change.external_key}/approve", json={"approver": "zoe.odegard@acme.example"})
    hook = control.get("/webhooks").json()["webhooks"][-1]
    client = APIClient()
    url = f"/api/v1/webhooks/{system.pk}/"
    tampered = client.post(url, data=hook["body"].replace("Awaiting", "Awaitinq"), content_type="application/json",
                           headers={"X-Hub-Signature": hook["headers"]["X-Hub-Signature"]})
    assert tampered.status_code == 401
    answer = client.post(url, data=hook["body"], content_type="application/json",
                         headers={"X-Hub-Signature": hook["headers"]["X-Hub-Signature"]})
    assert answer.status_code == 200, answer.content
    assert answer.json()["changes"] == 1
    change.refresh_from_db()
    assert change.state == "approved"
