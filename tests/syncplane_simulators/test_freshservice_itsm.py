"""The Freshservice changes simulator over real HTTP: it must behave like the v2 changes API in the api note."""

import json
import time

import httpx
import pytest

from syncplane_simulators.freshservice_cmdb import DEFAULT_API_KEY
from syncplane_simulators.freshservice_itsm import WEBHOOK_HEADER
from syncplane_simulators.server import SimulatorServer
from tests.integrations.httpserver import Reply, ScriptedServer

CHANGES = "/api/v2/changes"


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(records=20, seed=7) as running:
        yield running


@pytest.fixture
def sim(server):
    server.freshservice.reset()
    server.freshservice.rate_limit_per_minute = 100_000
    return server.freshservice


@pytest.fixture
def fs(server, sim):
    with httpx.Client(base_url=server.url + "/freshservice", auth=(DEFAULT_API_KEY, "X")) as client:
        yield client


@pytest.fixture
def control(server, sim):
    with httpx.Client(base_url=server.url + "/freshservice/_control") as client:
        yield client


def requester(sim):
    return sim.requesters[0]["id"]


def create(fs, sim, **overrides):
    body = {"requester_id": requester(sim), "subject": "Rotate TLS certificates",
            "description": "<div>Planned rotation &amp; rollback.</div>", "status": 1, "priority": 2, "impact": 2,
            "risk": 2, "change_type": 3, "planned_start_date": "2024-06-04T20:00:00Z",
            "planned_end_date": "2024-06-04T22:00:00Z", "custom_fields": {"syncplane_correlation_id": "corr-1"}}
    body.update(overrides)
    return fs.post(CHANGES, json=body)


def test_every_call_needs_the_api_key(server, sim):
    base = server.url + "/freshservice"
    assert httpx.get(base + CHANGES).status_code == 401
    assert httpx.post(base + CHANGES, json={"subject": "x"}).status_code == 401
    refused = httpx.get(base + CHANGES, auth=("wrong-key", "X"))
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    assert sim.itsm.changes == {}


def test_create_answers_201_with_the_change_as_the_note_shows(fs, sim):
    response = create(fs, sim)
    assert response.status_code == 201
    change = response.json()["change"]
    assert change["id"] == 1 and create(fs, sim).json()["change"]["id"] == 2  # small numbers, like the vendor
    assert change["approval_status"] == 4  # "Not requested" on a new change
    assert (change["status"], change["risk"], change["change_type"]) == (1, 2, 3)
    assert change["description_text"] == "Planned rotation & rollback."
    # Every custom field of the form comes back, null when not set.
    assert change["custom_fields"] == {"syncplane_correlation_id": "corr-1", "business_justification": None}
    assert change["created_at"] == change["updated_at"]
    assert fs.get(f"{CHANGES}/1").json()["change"] == change
    assert fs.get(f"{CHANGES}/99").status_code == 404


def test_create_without_requester_is_400_with_the_vendor_body(fs, sim):
    response = create(fs, sim, requester_id=None)
    assert response.status_code == 400
    body = response.json()
    assert body["description"] == "Validation failed"
    assert body["errors"] == [{"field": "requester_id", "message": "It should not be blank as this is a mandatory "
                               "field", "code": "missing_field"}]
    assert sim.itsm.changes == {}


@pytest.mark.parametrize(("override", "field", "code"), [
    ({"approval_status": 1}, "approval_status", "invalid_field"),
    ({"risk": 5}, "risk", "invalid_value"),
    ({"priority": "high"}, "priority", "datatype_mismatch"),
    ({"requester_id": 1}, "requester_id", "invalid_value"),
    ({"custom_fields": {"no_such_field": "x"}}, "no_such_field", "invalid_field"),
    ({"planned_end_date": "2024-06-04T19:00:00Z"}, "planned_end_date", "invalid_value"),
])
def test_create_validation_errors(fs, sim, override, field, code):
    response = create(fs, sim, **override)
    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [(field, code)]


def test_list_pages_newest_first_with_link_and_the_30_day_window(fs, sim, control):
    old = control.post("changes", json={"count": 1, "days_ago": 45}).json()["ids"]
    ids = [create(fs, sim).json()["change"]["id"] for _ in range(5)]
    # Without updated_since: created in the last 30 days only.
    listed = fs.get(CHANGES, params={"per_page": 100}).json()["changes"]
    assert [c["id"] for c in listed] == ids[::-1]
    pages, params = [], {"per_page": 2, "updated_since": "2000-01-01T00:00:00Z", "page": 1}
    while True:
        response = fs.get(CHANGES, params=params)
        pages.append([c["id"] for c in response.json()["changes"]])
        if "next" not in response.links:
            break
        params = dict(httpx.URL(response.links["next"]["url"]).params)
        assert params["updated_since"] == "2000-01-01T00:00:00Z"
    assert pages == [[6, 5], [4, 3], [2, 1]] and old == [1]
    assert fs.get(CHANGES, params={"per_page": 101}).status_code == 400
    assert fs.get(CHANGES, params={"updated_since": "yesterday"}).status_code == 400


def test_list_items_can_come_without_custom_fields_as_on_real_accounts(fs, sim, control):
    create(fs, sim)
    params = {"updated_since": "2000-01-01T00:00:00Z"}
    assert fs.get(CHANGES, params=params).json()["changes"][0]["custom_fields"]["syncplane_correlation_id"]
    assert control.post("quirks", json={"list_custom_fields": False}).json() == {"list_custom_fields": False}
    [item] = fs.get(CHANGES, params=params).json()["changes"]
    assert "custom_fields" not in item and item["id"] == 1
    # A read by id still carries them.
    assert fs.get(f"{CHANGES}/1").json()["change"]["custom_fields"]["syncplane_correlation_id"] == "corr-1"
    sim.reset()
    assert sim.itsm.list_custom_fields


def test_updated_since_is_inclusive_and_follows_updates(fs, sim, control):
    first = create(fs, sim).json()["change"]
    create(fs, sim)
    control.post("changes/1/approve")
    updated = fs.get(f"{CHANGES}/1").json()["change"]["updated_at"]
    assert updated > first["updated_at"]
    since = fs.get(CHANGES, params={"updated_since": updated}).json()["changes"]
    assert [c["id"] for c in since] == [1]


def test_approve_through_control_updates_the_change_and_its_approval_rows(fs, sim, control):
    create(fs, sim)
    approver = sim.requesters[1]
    answer = control.post("changes/1/approve", json={"approver": approver["primary_email"], "comment": "Fine"})
    assert answer.status_code == 200
    change = fs.get(f"{CHANGES}/1").json()["change"]
    assert (change["status"], change["approval_status"]) == (4, 1)  # Pending Release, Approved
    rows = fs.get(f"{CHANGES}/1/approvals").json()["approvals"]
    assert len(rows) == 1
    assert rows[0]["approval_status"] == {"id": 1, "name": "approved"}  # an object on rows, an int on the change
    assert rows[0]["approver_id"] == approver["id"]
    assert rows[0]["approver_name"] == f"{approver['first_name']} {approver['last_name']}"
    assert rows[0]["latest_remark"] == "Fine" and rows[0]["id"] > 2**31


def test_request_then_reject_answers_the_requested_row(fs, sim, control):
    create(fs, sim)
    control.post("changes/1/request-approval", json={"approver": "CAB"})
    change = fs.get(f"{CHANGES}/1").json()["change"]
    assert (change["status"], change["approval_status"]) == (3, 0)
    control.post("changes/1/reject", json={"comment": "No backout plan"})
    change = fs.get(f"{CHANGES}/1").json()["change"]
    assert (change["status"], change["approval_status"]) == (3, 2)
    rows = fs.get(f"{CHANGES}/1/approvals").json()["approvals"]
    assert [(r["approval_status"]["name"], r["latest_remark"]) for r in rows] == [("rejected", "No backout plan")]


def test_implement_close_and_cancel(fs, sim, control):
    create(fs, sim)
    create(fs, sim)
    control.post("changes/1/approve")
    assert control.post("changes/1/implement").json()["change"]["status"] == 5
    assert control.post("changes/1/close").json()["change"]["status"] == 6
    control.post("changes/2/request-approval")
    cancelled = control.post("changes/2/cancel").json()["change"]
    assert (cancelled["status"], cancelled["approval_status"]) == (6, 3)
    assert fs.get(f"{CHANGES}/2/approvals").json()["approvals"][0]["approval_status"]["name"] == "cancelled"
    assert control.post("changes/9/approve").status_code == 404
    assert control.post("changes/1/explode").status_code == 400


def test_update_and_notes(fs, sim):
    create(fs, sim)
    response = fs.put(f"{CHANGES}/1", json={"status": 6})
    assert response.status_code == 200 and response.json()["change"]["status"] == 6
    assert fs.put(f"{CHANGES}/1", json={"approval_status": 1}).status_code == 400
    assert fs.put(f"{CHANGES}/9", json={"status": 6}).status_code == 404
    note = fs.post(f"{CHANGES}/1/notes", json={"body": "<p>Cancelled from Syncplane</p>"})
    assert note.status_code == 201 and note.json()["note"]["body_text"] == "Cancelled from Syncplane"
    assert fs.post(f"{CHANGES}/1/notes", json={}).status_code == 400


def test_requester_and_agent_lookup_by_email(fs, sim):
    person = sim.requesters[2]
    found = fs.get("/api/v2/requesters", params={"email": person["primary_email"].upper()}).json()["requesters"]
    assert [p["id"] for p in found] == [person["id"]]
    agent = sim.agents[0]
    assert fs.get("/api/v2/requesters", params={"email": agent["primary_email"]}).json()["requesters"] == []
    assert fs.get("/api/v2/agents", params={"email": agent["primary_email"]}).json()["agents"][0]["id"] == agent["id"]


def test_webhook_is_recorded_with_the_shared_secret_header(fs, sim, control):
    control.post("webhook", json={"secret": "s3cret-for-tests"})
    create(fs, sim)
    control.post("changes/1/approve")
    hooks = control.get("webhooks").json()["webhooks"]
    assert [json.loads(h["body"]) for h in hooks] == [{"change_id": "1", "event": "created"},
                                                      {"change_id": "1", "event": "approve"}]
    assert all(h["headers"][WEBHOOK_HEADER] == "s3cret-for-tests" for h in hooks)
    assert hooks[0]["headers"]["Content-Type"] == "application/json"


def test_webhook_is_posted_to_the_configured_url():
    receiver = ScriptedServer().start()
    try:
        receiver.script("/hooks/freshservice", Reply(202))
        with SimulatorServer(records=5, seed=1) as server:
            base = server.url + "/freshservice"
            httpx.post(base + "/_control/webhook", json={"url": receiver.url + "/hooks/freshservice",
                                                         "secret": "another-secret"})
            created = httpx.post(base + CHANGES, auth=(DEFAULT_API_KEY, "X"), json={
                "requester_id": server.freshservice.requesters[0]["id"], "subject": "Webhook"})
            assert created.status_code == 201
            deadline = time.monotonic() + 5
            while not receiver.requests_to("/hooks/freshservice") and time.monotonic() < deadline:
                time.sleep(0.05)
        delivered = receiver.requests_to("/hooks/freshservice")
        assert len(delivered) == 1
        assert json.loads(delivered[0].body) == {"change_id": "1", "event": "created"}
        assert delivered[0].header(WEBHOOK_HEADER) == "another-secret"
    finally:
        receiver.stop()


def test_cab_auto_approves_new_changes(fs, sim, control):
    control.post("cab", json={"auto_approve_seconds": 0.2})
    create(fs, sim)
    deadline = time.monotonic() + 5
    while fs.get(f"{CHANGES}/1").json()["change"]["approval_status"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    change = fs.get(f"{CHANGES}/1").json()["change"]
    assert (change["status"], change["approval_status"]) == (4, 1)
    assert fs.get(f"{CHANGES}/1/approvals").json()["approvals"][0]["approver_name"] == "CAB (auto-approve)"


def test_rate_limit_and_faults_are_shared_with_the_assets_api(fs, sim, control):
    before = int(fs.get(CHANGES).headers["X-Ratelimit-Remaining"])
    assert int(fs.get("/api/v2/assets").headers["X-Ratelimit-Remaining"]) == before - 1
    control.post("faults", json={"kind": "status", "status": 429, "retry_after": 7, "path": CHANGES})
    limited = create(fs, sim)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert "X-Ratelimit-Total" in limited.headers
    assert sim.itsm.changes == {}  # not processed
    assert create(fs, sim).status_code == 201


def test_reset_clears_changes(fs, sim, control):
    create(fs, sim)
    control.post("webhook", json={"secret": "x"})
    control.post("changes/1/approve")
    assert control.post("reset").status_code == 200
    assert control.get("changes").json()["changes"] == []
    assert control.get("webhooks").json()["webhooks"] == []
    assert create(fs, sim).json()["change"]["id"] == 1
