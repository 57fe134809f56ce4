"""The ServiceNow change tables of the simulator over real HTTP: they must behave like the Table API in the
api notes (servicenow-itsm.md, servicenow-cmdb.md), and the CAB controls must change records as the vendor
would."""

import json
import re
import time

import httpx
import pytest

from syncplane_simulators.server import SimulatorServer
from syncplane_simulators.servicenow_cmdb import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
)
from syncplane_simulators.servicenow_itsm import WEBHOOK_SECRET_HEADER
from tests.integrations.httpserver import Reply, ScriptedServer

CHANGES = "/api/now/v2/table/change_request"
APPROVALS = "/api/now/v2/table/sysapproval_approver"


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(records=20, seed=3) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server):
    server.servicenow.reset()
    yield


@pytest.fixture
def sn(server):
    with httpx.Client(base_url=server.url + "/servicenow", auth=(DEFAULT_USERNAME, DEFAULT_PASSWORD)) as client:
        yield client


@pytest.fixture
def control(server):
    with httpx.Client(base_url=server.url + "/servicenow/_control") as client:
        yield client


def cab_group(sn) -> str:
    params = {"sysparm_query": "name=CAB", "sysparm_fields": "sys_id,name"}
    answer = sn.get("/api/now/v2/table/sys_user_group", params=params)
    assert answer.status_code == 200
    (group,) = answer.json()["result"]
    return group["sys_id"]


def create(sn, **fields) -> dict:
    body = {"short_description": "Rotate TLS certificates", "type": "normal", "risk": "3",
            "correlation_id": "syncplane-chg-1", **fields}
    answer = sn.post(CHANGES, json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()["result"]


def test_every_change_table_refuses_requests_without_valid_credentials(server, sn):
    for path in (CHANGES, APPROVALS, "/api/now/table/sys_user_group", "/api/now/table/sys_user"):
        answer = httpx.get(server.url + "/servicenow" + path)
        assert answer.status_code == 401
        assert answer.json() == {"error": {"message": "User Not Authenticated",
                                           "detail": "Required to provide Auth information"}, "status": "failure"}
    wrong = httpx.post(
        server.url + "/servicenow" + CHANGES, json={"short_description": "x"}, auth=(DEFAULT_USERNAME, "no")
    )
    assert wrong.status_code == 401
    assert server.servicenow.itsm.changes == {}  # nothing was created by the refused POST


def test_the_oauth_token_of_the_instance_works_on_the_change_tables(server):
    token = httpx.post(server.url + "/servicenow/oauth_token.do", data={
        "grant_type": "password", "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
        "username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD,
    }).json()["access_token"]
    answer = httpx.get(server.url + "/servicenow" + CHANGES, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json() == {"result": []}


def test_create_answers_201_with_the_full_record_in_the_vendor_shapes(server, sn):
    group = cab_group(sn)
    answer = sn.post(CHANGES, json={
        "short_description": "Rotate TLS certificates", "type": "normal", "risk": 2, "impact": "2",
        "start_date": "2024-06-04 20:00:00", "end_date": "2024-06-04 22:00:00", "assignment_group": group,
        "correlation_id": "syncplane-chg-8f3c", "correlation_display": "Syncplane", "no_such_field": "ignored",
    })
    assert answer.status_code == 201
    record = answer.json()["result"]
    assert re.fullmatch(r"[0-9a-f]{32}", record["sys_id"])
    assert record["number"] == "CHG0030001"
    assert answer.headers["Location"].endswith(f"/servicenow/api/now/table/change_request/{record['sys_id']}")
    assert record["state"] == "-5"
    # A group on creation: the flow requests its approval at once.
    assert record["approval"] == "requested"
    assert record["risk"] == "2"  # every value is a string
    assert record["priority"] == "4"  # recomputed by a business rule: impact 2 x urgency 3 (default) -> 4 Low
    assert record["assignment_group"] == {
        "link": f"{server.url}/servicenow/api/now/table/sys_user_group/{group}", "value": group,
    }
    assert record["requested_by"] == "" and record["close_code"] == ""  # empty is "", reference included
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", record["sys_updated_on"])
    assert "no_such_field" not in record
    assert create(sn, correlation_id="syncplane-chg-2")["number"] == "CHG0030002"


def test_create_without_a_group_requests_no_approval(sn):
    record = create(sn)
    assert (record["state"], record["approval"]) == ("-5", "not requested")
    assert sn.get(APPROVALS).json()["result"] == []


def test_create_with_a_missing_mandatory_field_answers_400_in_the_error_envelope(sn, server):
    answer = sn.post(CHANGES, json={"description": "no title", "correlation_id": "syncplane-chg-1"})
    assert answer.status_code == 400
    assert answer.json() == {"error": {"message": "Data Policy Exception",
                                       "detail": "The following fields are mandatory: Short description"},
                             "status": "failure"}
    broken = sn.post(CHANGES, content=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400
    assert broken.json()["error"]["message"] == "Exception while reading request"
    assert server.servicenow.itsm.changes == {}


def test_list_supports_the_queries_and_paging_the_connector_uses(sn):
    created = [create(sn, correlation_id=f"syncplane-chg-{i}") for i in range(5)]
    create(sn, correlation_id="other-tool-1")
    create(sn, correlation_id="")
    query = "correlation_idSTARTSWITHsyncplane-^ORDERBYsys_updated_on^ORDERBYsys_id"
    mine = sn.get(CHANGES, params={"sysparm_query": query, "sysparm_limit": "2", "sysparm_fields": "sys_id,number"})
    assert mine.headers["X-Total-Count"] == "5"
    assert len(mine.json()["result"]) == 2
    numbers = [r["number"] for r in mine.json()["result"]]
    while 'rel="next"' in mine.headers.get("Link", ""):
        mine = sn.get(httpx.Response(200, headers={"Link": mine.headers["Link"]}).links["next"]["url"])
        numbers += [r["number"] for r in mine.json()["result"]]
    assert sorted(numbers) == sorted(c["number"] for c in created)

    wanted = [created[1]["sys_id"], created[3]["sys_id"]]
    by_id = sn.get(CHANGES, params={"sysparm_query": "sys_idIN" + ",".join(wanted)}).json()["result"]
    assert {r["sys_id"] for r in by_id} == set(wanted)

    later = sn.get(CHANGES, params={"sysparm_query": "sys_updated_on>=2999-01-01 00:00:00"})
    assert later.status_code == 200 and later.json()["result"] == []
    # v1 (unversioned) answers "no rows" with 404, as the CMDB tables do.
    assert sn.get("/api/now/table/change_request", params={"sysparm_query": "number=CHG9999999"}).status_code == 404


def test_display_value_all_and_dot_walked_fields(sn, control):
    change = create(sn, assignment_group=cab_group(sn))
    control.post(f"/changes/{change['number']}/approve", json={"comment": "Fine"})
    shown = sn.get(f"{CHANGES}/{change['sys_id']}", params={"sysparm_display_value": "all",
                                                            "sysparm_fields": "state,approval,assignment_group"})
    result = shown.json()["result"]
    assert result["state"] == {"display_value": "Scheduled", "value": "-2"}
    assert result["approval"] == {"display_value": "Approved", "value": "approved"}
    assert result["assignment_group"]["display_value"] == "CAB"
    rows = sn.get(APPROVALS, params={"sysparm_query": f"sysapproval={change['sys_id']}",
                                     "sysparm_fields": "approver.name,approver.email,state,comments",
                                     "sysparm_exclude_reference_link": "true"}).json()["result"]
    assert rows == [{"approver.name": "Casey Approver", "approver.email": "cab.manager@acme.example",
                     "state": "approved", "comments": "Fine"}]


def test_approve_control_updates_the_change_and_its_approval_rows(sn, control):
    change = create(sn, assignment_group=cab_group(sn))
    (row,) = sn.get(APPROVALS, params={"sysparm_query": f"sysapproval={change['sys_id']}"}).json()["result"]
    assert row["state"] == "requested"
    time.sleep(1.1)  # sys_updated_on has one-second resolution
    answer = control.post(f"/changes/{change['sys_id']}/approve", json={"approver": "cab.manager", "comment": "OK"})
    assert answer.status_code == 200
    record = sn.get(f"{CHANGES}/{change['sys_id']}").json()["result"]
    assert (record["state"], record["approval"]) == ("-2", "approved")
    assert record["approval_set"] and record["sys_updated_on"] > change["sys_updated_on"]
    (row,) = sn.get(APPROVALS, params={"sysparm_query": f"sysapproval={change['sys_id']}"}).json()["result"]
    assert (row["state"], row["comments"]) == ("approved", "OK")
    implemented = control.post(f"/changes/{change['number']}/implement").json()["change"]
    assert implemented["state"] == "-1"
    closed = control.post(f"/changes/{change['number']}/close", json={"close_code": "successful_issues"}).json()
    assert (closed["change"]["state"], closed["change"]["close_code"]) == ("3", "successful_issues")
    assert control.post(f"/changes/{change['number']}/cancel").status_code == 409  # closed is final


def test_reject_control_rolls_up_to_rejected_and_back_to_new(sn, control):
    change = create(sn, assignment_group=cab_group(sn))
    sn.patch(f"{CHANGES}/{change['sys_id']}", json={"state": "-4"})
    answer = control.post(f"/changes/{change['number']}/reject", json={"comment": "Freeze week"})
    assert answer.status_code == 200
    record = sn.get(f"{CHANGES}/{change['sys_id']}").json()["result"]
    assert (record["state"], record["approval"]) == ("-5", "rejected")
    rows = sn.get(APPROVALS, params={"sysparm_query": f"sysapproval={change['sys_id']}"}).json()["result"]
    assert [(r["state"], r["comments"]) for r in rows] == [("rejected", "Freeze week")]
    # Nothing to implement: not approved.
    assert control.post(f"/changes/{change['number']}/implement").status_code == 409


def test_patch_to_assess_requests_approval_and_patching_a_row_rolls_up(sn):
    change = create(sn)
    updated = sn.patch(f"{CHANGES}/{change['sys_id']}", json={"state": "-4", "assignment_group": cab_group(sn)})
    assert updated.status_code == 200
    assert (updated.json()["result"]["state"], updated.json()["result"]["approval"]) == ("-4", "requested")
    # Text instead of the code does not move the state (note §3).
    assert sn.patch(f"{CHANGES}/{change['sys_id']}", json={"state": "assess"}).json()["result"]["state"] == "-4"
    (row,) = sn.get(APPROVALS).json()["result"]
    assert sn.patch(f"{APPROVALS}/{row['sys_id']}", json={"state": "approved"}).status_code == 200
    record = sn.get(f"{CHANGES}/{change['sys_id']}").json()["result"]
    assert (record["state"], record["approval"]) == ("-2", "approved")


def test_cancel_and_close_rules(sn, control):
    change = create(sn, assignment_group=cab_group(sn))
    refused = sn.patch(f"{CHANGES}/{change['sys_id']}", json={"state": "3"})
    assert refused.status_code == 403 and "Close code" in refused.json()["error"]["detail"]
    assert sn.patch(f"{CHANGES}/{'0' * 32}", json={"state": "4"}).status_code == 404
    cancelled = control.post(f"/changes/{change['number']}/cancel", json={"reason": "Not needed"}).json()
    assert cancelled["change"]["state"] == "4"
    assert [a["state"] for a in cancelled["approvals"]] == ["not_required"]  # withdrawn when cancelled


def test_webhooks_are_recorded_signed_with_the_shared_secret_and_delivered(sn, control):
    receiver = ScriptedServer().start()
    try:
        receiver.script("/hooks/servicenow", Reply(204))
        answer = control.post("/webhook", json={"url": receiver.url + "/hooks/servicenow", "secret": "s3cr3t-hook"})
        assert answer.json() == {"url": receiver.url + "/hooks/servicenow", "secret_set": True}  # not echoed
        change = create(sn, assignment_group=cab_group(sn))
        control.post(f"/changes/{change['number']}/approve")
        notes = control.get("/webhooks").json()["notifications"]
        bodies = [json.loads(n["body"]) for n in notes]
        assert [(b["event"], b["state"], b["approval"]) for b in bodies] == [
            ("inserted", "-5", "requested"), ("updated", "-2", "approved"),
        ]
        assert all(b["sys_id"] == change["sys_id"] and b["table"] == "change_request" for b in bodies)
        assert all(n["headers"][WEBHOOK_SECRET_HEADER] == "s3cr3t-hook" for n in notes)
        deadline = time.monotonic() + 5
        while len(receiver.requests_to("/hooks/servicenow")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        delivered = receiver.requests_to("/hooks/servicenow")
        assert sorted(r.body.decode() for r in delivered) == sorted(n["body"] for n in notes)
        assert {r.header(WEBHOOK_SECRET_HEADER) for r in delivered} == {"s3cr3t-hook"}
    finally:
        receiver.stop()


def test_auto_approve_approves_each_new_change_after_the_delay(sn, control):
    assert control.post("/cab", json={"auto_approve_seconds": 0.3}).json() == {"auto_approve_seconds": 0.3}
    change = create(sn, assignment_group=cab_group(sn))
    assert change["approval"] == "requested"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        record = sn.get(f"{CHANGES}/{change['sys_id']}").json()["result"]
        if record["approval"] == "approved":
            break
        time.sleep(0.05)
    assert (record["state"], record["approval"]) == ("-2", "approved")
    assert control.post("/cab", json={"auto_approve_seconds": -1}).status_code == 400


def test_faults_apply_to_the_change_tables_and_reset_clears_changes(server, sn, control):
    create(sn)
    server.servicenow.inject_fault("status", status=429, retry_after=2, path="change_request")
    limited = sn.get(CHANGES)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert limited.json()["error"]["message"] == "Rate limit exceeded"
    assert sn.get(CHANGES).status_code == 200
    assert httpx.post(server.url + "/servicenow/_control/reset").status_code == 200
    assert sn.get(CHANGES).json()["result"] == []
    assert control.get("/changes").json() == {"changes": []}
    assert create(sn)["number"] == "CHG0030001"
