"""The Jira Service Management part of the Jira simulator over real HTTP: paths, auth, bodies and the CAB
control endpoints must behave like the API described in the api note."""

import hashlib
import hmac
import json
import time

import httpx
import pytest

from syncplane_simulators.jira_assets import DEFAULT_API_TOKEN, DEFAULT_EMAIL, DEFAULT_PAT, JiraAssetsSimulator
from syncplane_simulators.jira_service_management import (
    ADF_ERROR,
    FIELD_APPROVALS,
    FIELD_RISK,
    _adf,
)
from syncplane_simulators.server import SimulatorServer


@pytest.fixture(scope="module")
def sim():
    return JiraAssetsSimulator(records=5, seed=1)


@pytest.fixture(scope="module")
def server(sim):
    with SimulatorServer(records=5, seed=1, extra_apps={"/jira": sim}) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(sim):
    sim.reset()
    yield
    sim.service_management.stop()


@pytest.fixture
def jira(server):
    with httpx.Client(base_url=server.url + "/jira", auth=(DEFAULT_EMAIL, DEFAULT_API_TOKEN)) as client:
        yield client


def new_change(jira, summary="Rotate TLS certificates", **fields) -> dict:
    body = {"fields": {"project": {"key": "ITSM"}, "issuetype": {"name": "Change"}, "summary": summary,
                       "description": _adf("Planned rotation.\nRollback: restore the old certificate."),
                       "labels": ["syncplane", "syncplane-c0ffee"], **fields}}
    response = jira.post("/rest/api/3/issue", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_auth_is_required_and_checked(server, jira):
    anonymous = httpx.get(server.url + "/jira/rest/api/3/myself")
    assert anonymous.status_code == 401
    wrong = httpx.get(server.url + "/jira/rest/api/3/myself", auth=(DEFAULT_EMAIL, "not-the-token"))
    assert wrong.status_code == 401
    assert jira.get("/rest/api/3/myself").json()["emailAddress"] == DEFAULT_EMAIL
    pat = httpx.get(server.url + "/jira/rest/api/3/field", headers={"Authorization": f"Bearer {DEFAULT_PAT}"})
    assert pat.status_code == 200


def test_custom_fields_carry_jsms_own_names_and_can_be_renamed(jira, server):
    names = {f["name"] for f in jira.get("/rest/api/3/field").json() if f["custom"]}
    assert names == {"Change type", "Change risk", "Change start date", "Change completion date", "Approvals"}
    httpx.post(server.url + "/jira/_control/jsm-config", json={"field_names": {FIELD_RISK: "Risiko"}})
    assert "Risiko" in {f["name"] for f in jira.get("/rest/api/3/field").json()}


def test_create_answers_201_with_id_key_and_self(jira, server):
    created = new_change(jira, **{FIELD_RISK: {"value": "High"}})
    assert created == {"id": "10001", "key": "ITSM-1", "self": f"{server.url}/jira/rest/api/3/issue/10001"}
    second = new_change(jira, summary="Second")
    assert (second["id"], second["key"]) == ("10002", "ITSM-2")
    issue = jira.get("/rest/api/3/issue/ITSM-1").json()  # by key as well as by id
    assert issue["id"] == "10001"
    fields = issue["fields"]
    assert fields["status"]["name"] == "Awaiting approval"
    assert fields["status"]["statusCategory"]["key"] == "indeterminate"
    assert fields[FIELD_RISK] == {"value": "High"}
    assert fields["updated"].endswith("+0000") and len(fields["updated"]) == 28
    [approval] = fields[FIELD_APPROVALS]
    assert approval["finalDecision"] == "pending"
    assert {a["approverDecision"] for a in approval["approvers"]} == {"pending"}


def test_create_refuses_a_plain_string_description_and_missing_fields(jira):
    response = jira.post("/rest/api/3/issue", json={"fields": {
        "project": {"key": "ITSM"}, "issuetype": {"name": "Change"}, "summary": "x", "description": "plain text"}})
    assert response.status_code == 400
    assert response.json() == {"errorMessages": [], "errors": {"description": ADF_ERROR}}
    response = jira.post("/rest/api/3/issue", json={"fields": {"project": {"key": "ITSM"},
                                                               "issuetype": {"name": "Change"}}})
    assert response.status_code == 400
    assert response.json() == {"errorMessages": [], "errors": {"summary": "You must specify a summary of the issue."}}
    response = jira.post("/rest/api/3/issue", json={"fields": {"project": {"key": "NOPE"}, "summary": "x",
                                                               "issuetype": {"name": "Change"},
                                                               FIELD_RISK: {"value": "Catastrophic"}}})
    assert set(response.json()["errors"]) == {"project", FIELD_RISK}


def test_control_approve_changes_status_approval_and_updated(jira):
    created = new_change(jira)
    before = jira.get(f"/rest/api/3/issue/{created['id']}").json()["fields"]
    answer = jira.post(f"/_control/changes/{created['id']}/approve",
                       json={"approver": "zoe.odegard@acme.example", "comment": "Fine by the CAB"})
    assert answer.status_code == 200
    after = jira.get(f"/rest/api/3/issue/{created['id']}").json()["fields"]
    assert after["status"]["name"] == "Awaiting implementation"
    assert after["updated"] > before["updated"]
    [approval] = after[FIELD_APPROVALS]
    assert approval["finalDecision"] == "approved" and "completedDate" in approval
    decisions = {a["approver"]["emailAddress"]: a["approverDecision"] for a in approval["approvers"]}
    assert decisions["zoe.odegard@acme.example"] == "approved"
    assert after["comment"]["comments"][-1]["body"]["content"][0]["content"][0]["text"] == "Fine by the CAB"
    # The servicedeskapi view agrees, with its paging envelope.
    listed = jira.get(f"/rest/servicedeskapi/request/{created['key']}/approval").json()
    assert listed["isLastPage"] is True and listed["values"][0]["finalDecision"] == "approved"
    # Then implement and close, each a workflow step.
    assert jira.post(f"/_control/changes/{created['id']}/implement").json()["fields"]["status"]["name"] == \
        "Implementing"
    closed = jira.post(f"/_control/changes/{created['id']}/close").json()["fields"]
    assert (closed["status"]["name"], closed["status"]["statusCategory"]["key"], closed["resolution"]["name"]) == \
        ("Completed", "done", "Done")


def test_control_reject_lands_in_done_as_declined(jira):
    created = new_change(jira)
    fields = jira.post(f"/_control/changes/{created['id']}/reject", json={"approver": "Jürgen Müller"}).json()["fields"]
    assert fields["status"]["name"] == "Declined" and fields["status"]["statusCategory"]["key"] == "done"
    assert fields["resolution"]["name"] == "Declined"
    assert fields[FIELD_APPROVALS][0]["finalDecision"] == "declined"
    # Nothing left to decide: a second decision is a conflict, implementing is refused.
    assert jira.post(f"/_control/changes/{created['id']}/approve").status_code == 409
    assert jira.post(f"/_control/changes/{created['id']}/implement").status_code == 409
    assert jira.post("/_control/changes/99999/approve").status_code == 404


def test_transitions_are_listed_and_applied(jira):
    created = new_change(jira)
    listing = jira.get(f"/rest/api/3/issue/{created['id']}/transitions").json()["transitions"]
    cancel = next(t for t in listing if t["name"] == "Cancel")
    assert jira.post(f"/rest/api/3/issue/{created['id']}/transitions", json={"transition": {"id": "31"}}
                     ).status_code == 400  # Complete is not available from Awaiting approval
    done = jira.post(f"/rest/api/3/issue/{created['id']}/transitions", json={"transition": {"id": cancel["id"]}})
    assert done.status_code == 204 and done.content == b""
    fields = jira.get(f"/rest/api/3/issue/{created['id']}").json()["fields"]
    assert (fields["status"]["name"], fields["resolution"]["name"]) == ("Canceled", "Won't Do")


def test_search_jql_pages_with_next_page_token(jira):
    ids = [new_change(jira, summary=f"Change {n}")["id"] for n in range(5)]
    jira.post("/rest/api/3/issue", json={"fields": {"project": {"key": "ITSM"}, "issuetype": {"name": "Change"},
                                                    "summary": "not Syncplane's", "labels": ["other"]}})
    seen, token, pages = [], None, 0
    while True:
        body = {"jql": 'labels = "syncplane" ORDER BY updated ASC', "maxResults": 2,
                "fields": ["status", "updated", FIELD_APPROVALS]}
        if token:
            body["nextPageToken"] = token
        answer = jira.post("/rest/api/3/search/jql", json=body).json()
        pages += 1
        seen += [i["id"] for i in answer["issues"]]
        assert all(FIELD_APPROVALS in i["fields"] and "summary" not in i["fields"] for i in answer["issues"])
        if answer["isLast"]:
            assert "nextPageToken" not in answer
            break
        token = answer["nextPageToken"]
    assert (seen, pages) == (ids, 3)
    by_id = jira.get("/rest/api/3/search/jql", params={"jql": f"id in ({ids[1]}, {ids[3]})"}).json()
    assert [i["id"] for i in by_id["issues"]] == [ids[1], ids[3]]
    missing = jira.post("/rest/api/3/search/jql", json={"jql": f"id in ({ids[0]}, 99999)"})
    assert missing.status_code == 400 and "does not exist" in missing.json()["errorMessages"][0]
    bad = jira.post("/rest/api/3/search/jql", json={"jql": "summary ~ cert"})
    assert bad.status_code == 400 and bad.json()["errorMessages"]


def test_search_filters_on_updated(jira):
    first = new_change(jira)
    answer = jira.post("/rest/api/3/search/jql", json={"jql": 'labels = syncplane AND updated >= "2999-01-01 00:00"'})
    assert answer.json()["issues"] == []
    answer = jira.post("/rest/api/3/search/jql", json={"jql": 'labels = syncplane AND updated >= "2020-01-01 00:00"'})
    assert [i["id"] for i in answer.json()["issues"]] == [first["id"]]


def test_field_list_names_the_custom_fields(jira):
    fields = {f["name"]: f for f in jira.get("/rest/api/3/field").json()}
    assert fields["Approvals"]["id"] == FIELD_APPROVALS and fields["Approvals"]["custom"] is True
    assert fields["Change risk"]["schema"]["type"] == "option"


def test_faults_are_shared_with_the_jira_site(jira):
    jira.post("/_control/faults", json={"status": 429, "retry_after": 2, "path": "/rest/api/3/"})
    limited = jira.get("/rest/api/3/myself")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert jira.get("/rest/api/3/myself").status_code == 200


def test_webhooks_are_recorded_with_an_hmac_signature(jira):
    assert jira.post("/_control/webhook", json={"secret": "whsec-test"}).status_code == 200
    created = new_change(jira)
    jira.post(f"/_control/changes/{created['id']}/approve")
    hooks = jira.get("/_control/webhooks").json()["webhooks"]
    events = [json.loads(h["body"])["webhookEvent"] for h in hooks]
    assert events[0] == "jira:issue_created" and events[-1] == "jira:issue_updated"
    last = hooks[-1]
    payload = json.loads(last["body"])
    assert payload["issue"]["id"] == created["id"] and payload["issue"]["key"] == created["key"]
    assert payload["issue"]["fields"]["status"]["name"] == "Awaiting implementation"
    expected = hmac.new(b"whsec-test", last["body"].encode(), hashlib.sha256).hexdigest()
    assert last["headers"]["X-Hub-Signature"] == f"sha256={expected}"
    # The shared-secret variant sends the secret in a header instead.
    jira.post("/_control/webhook", json={"secret": "s3", "signature": "shared-secret"})
    jira.post(f"/_control/changes/{created['id']}/implement")
    assert jira.get("/_control/webhooks").json()["webhooks"][-1]["headers"]["X-Syncplane-Webhook-Secret"] == "s3"


def test_webhooks_are_posted_to_a_configured_url(jira, server):
    received = []

    def receiver(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        received.append((environ["wsgi.input"].read(length), environ.get("HTTP_X_HUB_SIGNATURE")))
        start_response("204 No Content", [])
        return [b""]

    with SimulatorServer(records=1, extra_apps={"/hook": receiver}) as target:
        jira.post("/_control/webhook", json={"url": target.url + "/hook", "secret": "k"})
        new_change(jira)
        for _ in range(100):
            if len(received) >= 2:
                break
            time.sleep(0.05)
    assert len(received) >= 2
    body, signature = received[0]
    assert signature == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_cab_auto_approves_new_changes(jira):
    jira.post("/_control/cab", json={"auto_approve_seconds": 0})
    created = new_change(jira)
    fields = jira.get(f"/rest/api/3/issue/{created['id']}").json()["fields"]
    assert fields["status"]["name"] == "Awaiting implementation"
    jira.post("/_control/cab", json={"auto_approve_seconds": 0.2})
    later = new_change(jira)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        fields = jira.get(f"/rest/api/3/issue/{later['id']}").json()["fields"]
        if fields["status"]["name"] != "Awaiting approval":
            break
        time.sleep(0.05)
    assert fields["status"]["name"] == "Awaiting implementation"
    # It waited for the delay in Awaiting approval: its approval was opened at creation and decided 0.2 s later
    # (a busy machine only makes the wait longer). The margin: the simulator's clock runs a millisecond ahead
    # for each event within the same millisecond, so the opening can be stamped a few ms late.
    [approval] = fields[FIELD_APPROVALS]
    assert approval["finalDecision"] == "approved"
    assert approval["completedDate"]["epochMillis"] - approval["createdDate"]["epochMillis"] >= 150


def test_reset_clears_changes(jira):
    new_change(jira)
    assert len(jira.get("/_control/changes").json()["changes"]) == 1
    jira.post("/_control/reset")
    assert jira.get("/_control/changes").json()["changes"] == []
    assert new_change(jira)["key"] == "ITSM-1"
