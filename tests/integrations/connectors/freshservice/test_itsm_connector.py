"""The Freshservice ITSM connector against the simulator over real HTTP (SimulatorServer on 127.0.0.1)."""

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.connectors.freshservice.itsm import FreshserviceITSMConnector
from syncplane.integrations.errors import AuthenticationError, PermanentError, TransientError
from syncplane.integrations.itsm import ChangeDraft
from syncplane_simulators.freshservice_cmdb import DEFAULT_API_KEY
from syncplane_simulators.server import SimulatorServer

FIELD = "syncplane_correlation_id"


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(records=20, seed=7) as running:
        yield running


@pytest.fixture
def sim(server):
    server.freshservice.reset()
    server.freshservice.api_key = DEFAULT_API_KEY
    server.freshservice.rate_limit_per_minute = 100_000
    return server.freshservice


@pytest.fixture
def control(server, sim):
    with httpx.Client(base_url=server.url + "/freshservice/_control") as client:
        yield client


@pytest.fixture
def make_connector(server, sim):
    made = []

    def make(api_key=DEFAULT_API_KEY, **config):
        config = {"rate_limit_per_second": 1000, "requester_email": sim.requesters[0]["primary_email"], **config}
        context = ConnectorContext(base_url=f"{server.url}/freshservice", auth_type="api_key", config=config,
                                   credentials={"api_key": api_key}, resolve_secret=lambda ref: ref)
        connector = FreshserviceITSMConnector(context, pace_sleep=lambda seconds: None)
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


@pytest.fixture
def connector(make_connector):
    return make_connector()


def draft(n=1, **overrides):
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    values = {"correlation_id": f"syncplane-chg-{n:04d}", "title": f"Patch edge switches #{n}",
              "description": "Firmware 9.3.\nRollback: previous image.", "risk_score": 65,
              "planned_start": start, "planned_end": start + timedelta(hours=2),
              "requester_email": "change.manager@acme.example", "affected_assets": ("SW-BER-01",)}
    values.update(overrides)
    return ChangeDraft(**values)


def test_create_then_find_by_correlation_id_returns_the_same_change(connector, sim):
    created = connector.create_change(draft())
    assert (created.external_id, created.number, created.state) == ("1", "1", "submitted")
    assert created.correlation_id == "syncplane-chg-0001"
    assert created.url.endswith("/freshservice/a/changes/1")
    stored = sim.itsm.change(1)
    assert stored["risk"] == 3 and stored["custom_fields"][FIELD] == "syncplane-chg-0001"
    assert stored["planned_start_date"].endswith("Z") and stored["requester_id"] == sim.requesters[0]["id"]
    connector.create_change(draft(2))
    found = connector.find_change("syncplane-chg-0001")
    assert found is not None and found.external_id == created.external_id
    assert [c["custom_fields"][FIELD] for c in sim.itsm.changes.values()].count("syncplane-chg-0001") == 1
    assert connector.find_change("syncplane-chg-9999") is None
    assert sim.stats["people_lookups"] == 1  # the requester e-mail is looked up once


def test_find_looks_back_only_as_far_as_configured(make_connector, control):
    control.post("changes", json={"count": 1, "days_ago": 20, "correlation_id": "syncplane-chg-old"})
    assert make_connector().find_change("syncplane-chg-old") is None  # 7 days by default
    found = make_connector(find_lookback_days=30).find_change("syncplane-chg-old")
    assert found is not None and found.external_id == "1"


def test_get_changes_pages_the_list_instead_of_reading_each_change(make_connector, sim, control):
    connector = make_connector(page_size=3)
    for n in range(1, 10):
        connector.create_change(draft(n))
    control.post("changes/4/approve")
    sim.stats.reset()
    changes = connector.get_changes(["9", "8", "5", "4"])
    assert [c.external_id for c in changes] == ["9", "8", "5", "4"]
    # Pages [9 8 7] [6 5 4]: two list requests, no per-change reads, approvals only for the decided one.
    assert sim.stats["change_list_requests"] == 2 and sim.stats["change_reads"] == 0
    assert sim.stats["approvals_requests"] == 1
    assert [len(c.approvals) for c in changes] == [0, 0, 0, 1]
    sim.stats.reset()
    # 99 does not exist: the pass stops on the last page; a deleted id is simply left out.
    assert [c.external_id for c in connector.get_changes(["2", "99", "7", "3"])] == ["2", "7", "3"]
    assert sim.stats["change_list_requests"] == 3 and sim.stats["change_reads"] == 0
    sim.stats.reset()
    # One or two ids: GET /changes/{id} each is cheaper than a page.
    assert [c.external_id for c in connector.get_changes(["1", "42"])] == ["1"]
    assert sim.stats["change_reads"] == 2 and sim.stats["change_list_requests"] == 0
    assert connector.get_changes([]) == [] and connector.get_changes(["not-a-number"]) == []


def test_cab_actions_come_back_as_states_and_approvals(connector, sim, control):
    for n in range(1, 7):
        connector.create_change(draft(n, planned_start=None, planned_end=None) if n == 6 else draft(n))
    control.post("changes/1/approve", json={"approver": sim.requesters[1]["primary_email"], "comment": "OK"})
    control.post("changes/2/request-approval")
    control.post("changes/2/reject", json={"comment": "No rollback tested"})
    for action in ("approve", "implement"):
        control.post(f"changes/3/{action}")
    for action in ("approve", "implement", "close"):
        control.post(f"changes/4/{action}")
    control.post("changes/5/request-approval")
    control.post("changes/6/approve")
    changes = {c.external_id: c for c in connector.get_changes(["1", "2", "3", "4", "5", "6"])}
    assert {k: c.state for k, c in changes.items()} == {
        "1": "scheduled", "2": "rejected", "3": "implementing", "4": "completed", "5": "assess", "6": "approved"}
    approval = changes["1"].approvals[0]
    requester = sim.requesters[1]
    assert (approval.decision, approval.approver, approval.comment) == (
        "approved", f"{requester['first_name']} {requester['last_name']}", "OK")
    assert approval.decided_at is not None
    assert [(a.decision, a.comment) for a in changes["2"].approvals] == [("rejected", "No rollback tested")]
    assert changes["5"].approvals == []  # requested is not a decision
    assert changes["2"].detail == "status: Awaiting Approval; approval: rejected"


def test_cancel_closes_the_change_and_notes_the_reason(connector, sim, control):
    connector.create_change(draft(1))
    connector.create_change(draft(2))
    control.post("changes/1/request-approval")
    cancelled = connector.cancel_change("1", "Superseded by CHG-2")
    assert cancelled.state == "cancelled"
    assert (sim.itsm.change(1)["status"], sim.itsm.change(1)["approval_status"]) == (6, 3)
    assert sim.itsm.notes[1][0]["body_text"] == "Cancelled from Syncplane: Superseded by CHG-2"
    assert connector.get_changes(["1"])[0].state == "cancelled"
    # Freshservice has no cancelled status: an approved change closed by Syncplane is still reported cancelled.
    control.post("changes/2/approve")
    assert connector.cancel_change("2", "").state == "cancelled"
    with pytest.raises(PermanentError, match="404"):
        connector.cancel_change("77", "gone")


def test_cancel_uses_the_custom_cancelled_status_when_configured(make_connector, sim, control):
    connector = make_connector(cancelled_status=7, status_map={"7": "cancelled"})
    connector.create_change(draft(1))
    control.post("changes/1/approve")
    assert connector.cancel_change("1", "window missed").state == "cancelled"
    assert sim.itsm.change(1)["status"] == 7
    assert connector.get_changes(["1"])[0].state == "cancelled"


def test_a_400_is_permanent_with_the_vendors_reason(make_connector, sim):
    with pytest.raises(PermanentError) as refused:
        make_connector(correlation_field="not_on_the_form").create_change(draft())
    assert refused.value.status_code == 400 and not isinstance(refused.value, TransientError)
    assert "Validation failed" in str(refused.value)
    assert "not_on_the_form: Unexpected/invalid field in request" in str(refused.value)
    with pytest.raises(PermanentError, match="requester_id: There is no contact matching"):
        make_connector(requester_id=12345, requester_email="").create_change(draft())
    assert sim.itsm.changes == {} and sim.stats["change_creates"] == 0


def test_429_with_retry_after_and_503_are_retried_once_each(connector, sim, control):
    connector.requester_id()  # the lookup is not what this test counts
    control.post("faults", json={"faults": [
        {"kind": "status", "status": 429, "retry_after": 1, "path": "/api/v2/changes"},
        {"kind": "status", "status": 503, "path": "/api/v2/changes"},
    ]})
    created = connector.create_change(draft())
    assert created.external_id == "1" and len(sim.itsm.changes) == 1
    assert sim.stats["faults_fired"] == 2 and connector.client.stats["retries"] == 2


def test_a_502_on_create_is_not_retried_the_post_may_have_been_processed(connector, sim, control):
    connector.requester_id()
    control.post("faults", json={"kind": "status", "status": 502, "path": "/api/v2/changes"})
    with pytest.raises(TransientError):
        connector.create_change(draft())
    assert connector.client.stats["retries"] == 0
    # The caller's retry path: look before creating again.
    assert connector.find_change(draft().correlation_id) is None


def test_bad_credentials_are_an_authentication_error(make_connector):
    connector = make_connector(api_key="not-the-key")
    with pytest.raises(AuthenticationError, match="401"):
        connector.create_change(draft())
    with pytest.raises(AuthenticationError):
        connector.test_connection()


def test_test_connection_reports_the_requester(make_connector, sim):
    result = make_connector().test_connection()
    assert result.ok and str(sim.requesters[0]["id"]) in result.message
    agent = make_connector(requester_email=sim.agents[0]["primary_email"]).test_connection()
    assert agent.ok and agent.details["requester_id"] == sim.agents[0]["id"]  # agents are looked up too
    missing = make_connector(requester_email="nobody@acme.example").test_connection()
    assert not missing.ok and "nobody@acme.example" in missing.message


def test_fetch_full_and_incremental_yield_only_syncplanes_changes(make_connector, sim, control):
    connector = make_connector(page_size=2)
    control.post("changes", json={"count": 2})  # raised by people: no correlation id
    old = control.post("changes", json={"count": 1, "days_ago": 45, "correlation_id": "syncplane-chg-old"})
    ours = [connector.create_change(draft(n)).external_id for n in range(1, 4)]
    control.post("changes/4/approve")
    pages = list(connector.fetch("full"))
    assert len(pages) == 3 and pages[-1].resume is None and pages[0].resume["page"] == 2
    fetched = [r["id"] for p in pages for r in p.records]
    assert sorted(str(i) for i in fetched) == sorted([*ours, str(old.json()["ids"][0])])  # 45 days old included
    approved = next(r for p in pages for r in p.records if r["id"] == 4)
    assert approved["approvals"][0]["approval_status"]["id"] == 1  # what map_change needs travels along
    cursor = pages[-1].cursor
    assert cursor == max(c["updated_at"] for c in sim.itsm.changes.values())
    # Resume from a checkpoint: the rest of the pass, same cursor.
    resumed = list(connector.fetch("full", None, pages[0].resume))
    assert [r["id"] for p in resumed for r in p.records] == fetched[len(pages[0].records):]
    assert resumed[-1].cursor == cursor

    control.post("changes/5/approve")
    control.post("changes", json={"count": 1})  # a person's change, after the cursor
    incremental = list(connector.fetch("incremental", cursor))
    records = [r for p in incremental for r in p.records]
    # updated_since is inclusive: the change at the cursor is read again (unchanged by fingerprint).
    assert sorted(r["id"] for r in records) == [4, 5]
    assert incremental[-1].cursor > cursor
    assert connector.map_record(records[0]).attributes["state"] in ("scheduled", "approved")


def test_fetch_recognises_its_changes_by_the_stored_id_when_list_items_lack_custom_fields(make_connector, sim,
                                                                                         control):
    connector = make_connector(page_size=2)
    control.post("changes", json={"count": 2})  # raised by people
    ours = [connector.create_change(draft(n)).external_id for n in range(1, 3)]
    control.post("quirks", json={"list_custom_fields": False})
    # Without the ids stored at create, nothing in the list says which changes are Syncplane's.
    assert [r for p in connector.fetch("full") for r in p.records] == []
    connector.context.known_ids = lambda: set(ours)
    control.post(f"changes/{ours[0]}/approve")
    records = [r for p in connector.fetch("full") for r in p.records]
    assert sorted(str(r["id"]) for r in records) == sorted(ours)
    approved = next(r for r in records if str(r["id"]) == ours[0])
    assert approved["approvals"][0]["approval_status"]["id"] == 1
    mapped = connector.map_record(approved).attributes
    assert mapped["state"] in ("scheduled", "approved") and mapped["correlation_id"] == ""
    # A change whose create answer was lost is still recognised by its custom field where the list has it.
    control.post("quirks", json={"list_custom_fields": True})
    lost = connector.create_change(draft(9)).external_id
    assert lost in {str(r["id"]) for p in connector.fetch("full") for r in p.records}


def test_find_reads_by_id_when_list_items_lack_custom_fields(make_connector, sim, control):
    connector = make_connector()
    created = connector.create_change(draft(3))
    control.post("changes", json={"count": 2})  # newer changes raised by people
    control.post("quirks", json={"list_custom_fields": False})
    reads = sim.stats["change_reads"]
    found = connector.find_change("syncplane-chg-0003")
    assert found is not None and found.external_id == created.external_id
    assert found.correlation_id == "syncplane-chg-0003"
    # The people's changes are read by id too (they might be ours), nothing else.
    assert sim.stats["change_reads"] - reads == 3
    assert connector.find_change("syncplane-chg-9999") is None


def test_webhook_change_ids_on_the_recorded_notification(connector, sim, control):
    control.post("webhook", json={"secret": "hook-secret-for-tests"})
    connector.create_change(draft())
    control.post("changes/1/approve")
    notifications = control.get("webhooks").json()["webhooks"]
    assert notifications[-1]["headers"]["X-Syncplane-Webhook-Secret"] == "hook-secret-for-tests"
    assert connector.webhook_change_ids(json.loads(notifications[-1]["body"])) == ["1"]
    assert connector.get_changes(connector.webhook_change_ids(json.loads(notifications[-1]["body"])))[0].state \
        == "scheduled"
