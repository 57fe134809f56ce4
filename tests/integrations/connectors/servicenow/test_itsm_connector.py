"""The ServiceNow ITSM connector against the simulator over real HTTP: create, find, batch reads, CAB
decisions coming back, cancel, errors and retries, sync pages, webhooks."""

import json
import time
from datetime import UTC, datetime

import httpx
import pytest

from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.choices import AuthType
from syncplane.integrations.connectors.servicenow.itsm import ServiceNowItsmConnector
from syncplane.integrations.errors import AuthenticationError, ConfigurationError, PermanentError, TransientError
from syncplane.integrations.itsm import ChangeDraft
from syncplane_simulators.server import SimulatorServer
from syncplane_simulators.servicenow_cmdb import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
)

CHANGES = "/api/now/v2/table/change_request"


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(records=10, seed=5) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server):
    server.servicenow.reset()
    yield


@pytest.fixture
def sim(server):
    return server.servicenow


def context(server, auth_type=AuthType.BASIC, password=DEFAULT_PASSWORD, **config) -> ConnectorContext:
    credentials = {"username": DEFAULT_USERNAME, "password": password}
    if auth_type == AuthType.OAUTH2_PASSWORD:
        credentials |= {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}
    return ConnectorContext(
        base_url=f"{server.url}/servicenow", auth_type=auth_type, config=config, credentials=credentials,
        resolve_secret=lambda ref: ref,
    )


@pytest.fixture
def connect(server):
    opened = []

    def make(**kwargs) -> ServiceNowItsmConnector:
        connector = ServiceNowItsmConnector(context(server, **kwargs))
        connector.client._sleep = lambda seconds: time.sleep(min(seconds, 0.2))  # Retry-After is asserted apart
        opened.append(connector)
        return connector

    yield make
    for connector in opened:
        connector.close()


def draft(n: int = 1, **fields) -> ChangeDraft:
    values = {
        "correlation_id": f"syncplane-chg-{n:04d}", "title": f"Rotate TLS certificates #{n}",
        "description": "Replace the expiring certificates.", "risk_score": 85,
        "planned_start": datetime(2024, 6, 4, 20, 0, tzinfo=UTC),
        "planned_end": datetime(2024, 6, 4, 22, 0, tzinfo=UTC),
        "requester_email": "jane.doe@acme.example", "affected_assets": ("lb-edge-01", "lb-edge-02"),
    }
    return ChangeDraft(**(values | fields))


def control(server, path: str, **body) -> dict:
    answer = httpx.post(f"{server.url}/servicenow/_control/{path}", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_create_then_find_by_correlation_id_returns_the_same_single_change(connect, sim):
    connector = connect()
    created = connector.create_change(draft())
    assert created.number == "CHG0030001" and len(created.external_id) == 32
    assert created.correlation_id == "syncplane-chg-0001"
    assert created.state == "assess"  # Request Approval: moved to Assess, the CAB group asked
    found = connector.find_change("syncplane-chg-0001")
    assert (found.external_id, found.number, found.state) == (created.external_id, created.number, "assess")
    assert len(sim.itsm.changes) == 1  # exactly one exists
    record = sim.itsm.changes[created.external_id]
    assert record["correlation_display"] == "Syncplane"
    assert record["risk"] == "1"  # 85 -> very high
    assert (record["start_date"], record["end_date"]) == ("2024-06-04 20:00:00", "2024-06-04 22:00:00")
    assert record["assignment_group"] == sim.itsm.group["sys_id"]  # "CAB" resolved through sys_user_group
    assert (record["type"], record["state"], record["approval"]) == ("normal", "-4", "requested")
    assert "lb-edge-01, lb-edge-02" in record["description"]
    assert "Requested by: jane.doe@acme.example" in record["description"]  # no sys_user has that email
    assert connector.find_change("syncplane-chg-9999") is None


def test_group_lookup_once_requester_found_and_emergency_goes_to_authorize(connect, sim):
    connector = connect(change_type="emergency")
    connector.create_change(draft(1, requester_email="cab.manager@acme.example", risk_score=10))
    connector.create_change(draft(2))
    assert sim.stats["GET sys_user_group"] == 1  # resolved once per connector
    first = next(c for c in sim.itsm.changes.values() if c["correlation_id"] == "syncplane-chg-0001")
    assert first["requested_by"] == sim.itsm.cab_user["sys_id"]
    assert (first["type"], first["state"], first["risk"]) == ("emergency", "-3", "4")


def test_get_changes_reads_many_in_one_request_per_hundred(connect, sim):
    connector = connect()
    created = [connector.create_change(draft(n)) for n in range(5)]
    sim.stats.reset()
    real, unknown = [c.external_id for c in created], [f"{n:032x}" for n in range(1, 146)]
    ids = real[:2] + unknown[:100] + real[2:] + unknown[100:] + ["not-a-sys-id"]  # found ones in both batches
    changes = connector.get_changes(ids)
    assert sorted(c.number for c in changes) == sorted(c.number for c in created)  # missing ones left out
    # 150 sys_ids: two batches, each one change request and one approvals request; never one per change.
    assert (sim.stats["GET change_request"], sim.stats["GET sysapproval_approver"]) == (2, 2)


def test_cab_decisions_come_back_as_states_and_approvals(server, connect):
    connector = connect()
    approved, rejected, implemented, closed = (connector.create_change(draft(n)) for n in range(4))
    control(server, f"changes/{approved.number}/approve", approver="cab.manager", comment="Low blast radius")
    control(server, f"changes/{rejected.number}/reject", comment="Not during the freeze")
    control(server, f"changes/{implemented.number}/approve")
    control(server, f"changes/{implemented.number}/implement")
    control(server, f"changes/{closed.number}/approve")
    control(server, f"changes/{closed.number}/implement")
    control(server, f"changes/{closed.number}/close", close_code="successful")
    by_number = {c.number: c for c in connector.get_changes(
        [c.external_id for c in (approved, rejected, implemented, closed)]
    )}
    assert {n: c.state for n, c in by_number.items()} == {
        approved.number: "approved", rejected.number: "rejected",
        implemented.number: "implementing", closed.number: "completed",
    }
    (decision,) = by_number[approved.number].approvals
    assert (decision.decision, decision.approver) == ("approved", "Casey Approver")
    assert decision.comment == "Low blast radius"
    assert decision.decided_at is not None and len(decision.external_id) == 32
    (refusal,) = by_number[rejected.number].approvals
    assert (refusal.decision, refusal.comment) == ("rejected", "Not during the freeze")
    assert "close code: successful" in by_number[closed.number].detail


def test_cancel(connect, sim):
    connector = connect()
    created = connector.create_change(draft())
    cancelled = connector.cancel_change(created.external_id, "Superseded by CHG0030002")
    assert cancelled.state == "cancelled"
    record = sim.itsm.changes[created.external_id]
    assert (record["state"], record["work_notes"]) == ("4", "Superseded by CHG0030002")
    with pytest.raises(PermanentError, match="404"):
        connector.cancel_change("0" * 32, "gone")


def test_a_refused_create_is_permanent_with_the_vendor_reason(connect, sim):
    with pytest.raises(PermanentError) as refused:
        connect().create_change(draft(title=""))
    assert refused.value.status_code == 400
    assert "The following fields are mandatory: Short description" in str(refused.value)
    assert not isinstance(refused.value, AuthenticationError)
    assert sim.itsm.changes == {}


@pytest.mark.parametrize(("status", "retry_after"), [(429, 1), (503, None)])
def test_not_processed_answers_are_retried_even_for_the_create(connect, sim, status, retry_after):
    connector = connect()
    waits = []
    connector.client._sleep = waits.append
    connector.assignment_group()  # resolved before the fault, so the fault hits the POST
    sim.inject_fault("status", status=status, retry_after=retry_after, path="change_request", count=1)
    created = connector.create_change(draft())
    assert created.number == "CHG0030001" and len(sim.itsm.changes) == 1
    assert sim.stats["POST change_request"] == 1  # the refused attempt never reached the table
    assert connector.client.stats["retries"] == 1
    if retry_after:
        assert waits == [retry_after]  # Retry-After honoured


def test_a_500_on_create_is_not_repeated_blindly(connect, sim):
    connector = connect()
    connector.assignment_group()
    sim.inject_fault("status", status=500, path="change_request", count=1)
    with pytest.raises(TransientError):
        connector.create_change(draft())
    assert connector.client.stats["retries"] == 0  # the caller looks it up with find_change first


def test_bad_credentials_are_an_authentication_error(connect):
    connector = connect(password="wrong-password")
    with pytest.raises(AuthenticationError, match="401"):
        connector.test_connection()
    with pytest.raises(AuthenticationError):
        connector.create_change(draft())


def test_test_connection_and_oauth(connect, sim):
    result = connect(auth_type=AuthType.OAUTH2_PASSWORD).test_connection()
    assert result.ok and "assignment group CAB" in result.message
    assert result.details == {"changes": 0, "assignment_group": sim.itsm.group["sys_id"]}
    assert sim.stats["grant_password"] == 1
    with pytest.raises(ConfigurationError, match="no group named 'Change Board'"):
        connect(assignment_group="Change Board").test_connection()
    by_id = connect(assignment_group=sim.itsm.group["sys_id"])
    assert by_id.assignment_group()[0] == sim.itsm.group["sys_id"]


def test_fetch_full_then_incremental_yields_only_syncplane_changes(server, connect, sim):
    connector = connect(page_size=2)
    mine = [connector.create_change(draft(n)) for n in range(5)]
    with httpx.Client(base_url=f"{server.url}/servicenow", auth=(DEFAULT_USERNAME, DEFAULT_PASSWORD)) as raw:
        by_hand = {"short_description": "By hand", "correlation_id": "jira-sync-77"}
        assert raw.post(CHANGES, json=by_hand).status_code == 201
        assert raw.post(CHANGES, json={"short_description": "No correlation"}).status_code == 201
    sim.stats.reset()
    pages = list(connector.fetch("full"))
    assert [len(p.records) for p in pages] == [2, 2, 1]
    assert [p.resume is None for p in pages] == [False, False, True]
    assert (sim.stats["GET change_request"], sim.stats["GET sysapproval_approver"]) == (3, 3)  # per page
    ids = [connector.map_record(r).external_id for p in pages for r in p.records]
    assert sorted(ids) == sorted(c.external_id for c in mine)
    cursor = pages[-1].cursor
    assert cursor == max(sim.itsm.changes[c.external_id]["sys_updated_on"] for c in mine)

    time.sleep(1.1)  # sys_updated_on has one-second resolution
    control(server, f"changes/{mine[1].number}/approve", comment="ok")
    incremental = list(connector.fetch("incremental", cursor=cursor))
    records = [r for p in incremental for r in p.records]
    changed = {change.external_id: change for change in map(connector.map_change, records)}
    boundary = {c.external_id for c in mine if sim.itsm.changes[c.external_id]["sys_updated_on"] == cursor}
    assert set(changed) == {mine[1].external_id} | boundary  # >= re-reads the boundary second only
    approved = changed[mine[1].external_id]
    assert approved.state == "approved" and [a.comment for a in approved.approvals] == ["ok"]
    assert incremental[-1].cursor > cursor


def test_webhook_change_ids_on_the_recorded_notification(server, connect):
    control(server, "webhook", secret="hook-secret")
    connector = connect()
    created = connector.create_change(draft())
    control(server, f"changes/{created.number}/approve")
    notes = httpx.get(f"{server.url}/servicenow/_control/webhooks").json()["notifications"]
    assert notes and all(n["headers"]["X-Syncplane-Webhook-Secret"] == "hook-secret" for n in notes)
    for note in notes:
        assert connector.webhook_change_ids(json.loads(note["body"])) == [created.external_id]
    (latest,) = connector.get_changes(connector.webhook_change_ids(json.loads(notes[-1]["body"])))
    assert latest.state == "approved"


def test_a_standard_change_is_created_from_its_template_without_an_approval_request(connect, sim):
    template = "f" * 32
    created = connect(change_type="standard", standard_change_template=template).create_change(draft())
    record = sim.itsm.changes[created.external_id]
    assert (record["type"], record["std_change_producer_version"]) == ("standard", template)
    assert sim.stats["PATCH change_request"] == 0  # pre-approved: nothing to request
    assert (record["state"], created.state) == ("-5", "submitted")
