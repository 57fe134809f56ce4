"""The ServiceNow simulator over real HTTP: it must behave like the Table API described in the api notes."""

import os
import re
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import httpx
import pytest

from syncplane_simulators.server import SimulatorServer
from syncplane_simulators.servicenow_cmdb import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    ServiceNowSimulator,
)

RECORDS = 2500
TABLE = "/api/now/v2/table/cmdb_ci_computer"
FULL = "ORDERBYsys_updated_on^ORDERBYsys_id"
PROFILE_FIELDS = (
    "sys_id,name,sys_class_name,serial_number,asset_tag,manufacturer,model_id,host_name,fqdn,ip_address,"
    "mac_address,os,os_version,assigned_to,assigned_to.email,location,department,install_status,"
    "operational_status,virtual,form_factor,last_discovered,sys_created_on,sys_updated_on"
)
REFERENCE_FIELDS = ("assigned_to", "location", "department", "manufacturer", "model_id")
PLACEHOLDERS = {"To be filled by O.E.M.", "0", "N/A", "Default string"}


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(records=RECORDS, seed=42) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server):
    server.servicenow.reset()
    yield


@pytest.fixture
def sn(server):
    """A Basic-auth client with base URL = what a connector is configured with."""
    with httpx.Client(base_url=server.url + "/servicenow", auth=(DEFAULT_USERNAME, DEFAULT_PASSWORD)) as client:
        yield client


def fetch_all(client, params, path=TABLE):
    """Follow rel="next" as a connector must; returns (rows, responses)."""
    responses = [client.get(path, params=params)]
    while True:
        response = responses[-1]
        assert response.status_code == 200, response.text
        link = response.links.get("next")
        if not link:
            break
        responses.append(client.get(link["url"]))
    rows = [row for response in responses for row in response.json()["result"]]
    return rows, responses


def value(field):
    return field["value"] if isinstance(field, dict) else field


# ---------------------------------------------------------------------------------------------- paging


def test_link_next_paging_covers_every_record_exactly_once(sn):
    rows, responses = fetch_all(
        sn,
        {
            "sysparm_query": FULL,
            "sysparm_display_value": "all",
            "sysparm_exclude_reference_link": "true",
            "sysparm_fields": PROFILE_FIELDS,
            "sysparm_limit": 400,
        },
    )
    ids = [row["sys_id"]["value"] for row in rows]
    assert len(ids) == RECORDS
    assert len(set(ids)) == RECORDS
    assert len(responses) == 7
    assert {r.headers["X-Total-Count"] for r in responses} == {str(RECORDS)}
    assert responses[0].headers["Content-Type"] == "application/json;charset=UTF-8"
    first_links = responses[0].links
    assert "sysparm_offset=-400" in first_links["prev"]["url"]  # like the real capture
    assert "sysparm_offset=2400" in first_links["last"]["url"]
    assert "next" not in responses[-1].links
    # Every link repeats all parameters, only the offset changes.
    assert "sysparm_fields=sys_id%2Cname" in first_links["next"]["url"]
    assert "sysparm_display_value=all" in first_links["next"]["url"]


def test_order_is_sys_updated_on_then_sys_id_with_ties(sn):
    rows, _ = fetch_all(sn, {"sysparm_query": FULL, "sysparm_fields": "sys_id,sys_updated_on", "sysparm_limit": 1000})
    keys = [(row["sys_updated_on"], row["sys_id"]) for row in rows]
    assert keys == sorted(keys)
    assert len({k[0] for k in keys}) < len(keys)  # several records share a second: the sys_id tie-break matters


def test_suppress_pagination_header_drops_link(sn):
    response = sn.get(TABLE, params={"sysparm_limit": 10, "sysparm_suppress_pagination_header": "true"})
    assert "Link" not in response.headers
    assert response.headers["X-Total-Count"] == str(RECORDS)
    assert len(response.json()["result"]) == 10


def test_empty_result_is_404_on_v1_and_empty_list_on_v2(sn):
    query = {"sysparm_query": "sys_updated_on>=2099-01-01 00:00:00^" + FULL}
    v1 = sn.get("/api/now/table/cmdb_ci_computer", params=query)
    assert v1.status_code == 404
    assert v1.json() == {
        "error": {"message": "No Record found", "detail": v1.json()["error"]["detail"]},
        "status": "failure",
    }
    v2 = sn.get(TABLE, params=query)
    assert v2.status_code == 200
    assert v2.json() == {"result": []}
    assert v2.headers["X-Total-Count"] == "0"


# ---------------------------------------------------------------------------------------------- shapes


def test_display_value_false_references_have_link_and_value(sn, server):
    response = sn.get(TABLE, params={"sysparm_limit": 200, "sysparm_fields": PROFILE_FIELDS})
    rows = response.json()["result"]
    instance = server.url + "/servicenow"
    filled = [row for row in rows if row["location"] != ""]
    assert filled, "expected some records with a location"
    for row in filled:
        loc = row["location"]
        assert set(loc) == {"link", "value"}
        assert loc["link"] == f"{instance}/api/now/table/cmn_location/{loc['value']}"
        assert re.fullmatch(r"[0-9a-f]{32}", loc["value"])
    assert any(row["assigned_to"] == "" for row in rows)  # an empty reference is a plain ""
    assert all(isinstance(v, (str, dict)) for row in rows for v in row.values())
    assert all(isinstance(row["sys_updated_on"], str) for row in rows)


def test_exclude_reference_link_gives_bare_sys_id(sn):
    rows = sn.get(TABLE, params={"sysparm_limit": 50, "sysparm_exclude_reference_link": "true"}).json()["result"]
    for row in rows:
        for field in REFERENCE_FIELDS:
            assert isinstance(row[field], str)
            assert row[field] == "" or re.fullmatch(r"[0-9a-f]{32}", row[field])
        assert all(isinstance(v, str) for v in row.values())


def test_display_value_true_gives_display_strings(sn):
    params = {"sysparm_limit": 100, "sysparm_display_value": "true", "sysparm_fields": PROFILE_FIELDS}
    rows = sn.get(TABLE, params=params).json()["result"]
    statuses = {row["install_status"] for row in rows}
    assert "Installed" in statuses
    assert all(isinstance(v, str) for row in rows for v in row.values())
    located = [row["location"] for row in rows if row["location"]]
    assert located and all(not re.fullmatch(r"[0-9a-f]{32}", loc) for loc in located)
    assert all(re.fullmatch(r"\d\d\.\d\d\.\d{4} \d\d:\d\d:\d\d", row["sys_updated_on"]) for row in rows)


def test_display_value_all_wraps_every_field(sn, server):
    base = {"sysparm_limit": 100, "sysparm_display_value": "all", "sysparm_fields": PROFILE_FIELDS}
    rows = sn.get(TABLE, params=base).json()["result"]
    for row in rows:
        assert set(row) == set(PROFILE_FIELDS.split(","))
        for field, item in row.items():
            assert isinstance(item["display_value"], str) and isinstance(item["value"], str)
            if field in REFERENCE_FIELDS and item["value"]:
                assert item["link"].startswith(server.url + "/servicenow/api/now/table/")
            else:
                assert "link" not in item
        # January: Berlin is UTC+1, and the display format is dd.MM.yyyy
        raw = row["sys_updated_on"]["value"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", raw)
        shown = row["sys_updated_on"]["display_value"]
        assert shown[:2] == raw[8:10] and shown[3:5] == raw[5:7] and shown[6:10] == raw[:4]
        assert (int(raw[11:13]) + 1) % 24 == int(shown[11:13])
    emails = [row["assigned_to.email"] for row in rows if row["assigned_to"]["value"]]
    assert any(e["value"].endswith("@acme.example") and e["display_value"] == e["value"] for e in emails)
    assert any(row["assigned_to"] == {"display_value": "", "value": ""} for row in rows)  # empty reference
    installed = [row for row in rows if row["install_status"]["value"] == "1"]
    assert installed[0]["install_status"]["display_value"] == "Installed"

    excluded = sn.get(TABLE, params={**base, "sysparm_exclude_reference_link": "true"}).json()["result"]
    assert all("link" not in item for row in excluded for item in row.values())


def test_unknown_fields_are_ignored_and_dot_walk_is_supported(sn):
    rows = sn.get(TABLE, params={"sysparm_fields": "name,no_such_field,assigned_to.email", "sysparm_limit": 5})
    assert all(set(row) == {"name", "assigned_to.email"} for row in rows.json()["result"])


def test_single_record_and_missing_record(sn, server):
    sys_id = server.servicenow.sys_id_for(17)
    response = sn.get(f"{TABLE}/{sys_id}", params={"sysparm_display_value": "all"})
    assert response.status_code == 200
    assert response.json()["result"]["sys_id"]["value"] == sys_id
    missing = sn.get(f"{TABLE}/{'0' * 32}")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "No Record found"


def test_data_quirks_are_present(server):
    sim = server.servicenow
    records = [sim.record(i) for i in range(RECORDS)]
    serials = [r["serial_number"] for r in records]
    assert PLACEHOLDERS & set(serials)
    assert any(s.startswith("VMware-") and " " in s for s in serials)
    normalised = [s.strip().upper() for s in serials if s and s not in PLACEHOLDERS]
    assert len(set(normalised)) < len(normalised)  # duplicates differing only by case or spacing
    assert len(set(normalised)) > 0.95 * len(normalised)  # but mostly unique
    assert {r["sys_class_name"] for r in records} == {
        "cmdb_ci_computer",
        "cmdb_ci_server",
        "cmdb_ci_win_server",
        "cmdb_ci_linux_server",
        "cmdb_ci_esx_server",
    }
    assert {r["install_status"] for r in records} <= {"1", "2", "3", "4", "5", "6", "7", "8", "100"}
    assert sum(r["install_status"] == "1" for r in records) > RECORDS * 0.7
    assert any(not sim.display_value("assigned_to", r["assigned_to"]).isascii() for r in records)
    assert any(r["assigned_to"] == "" for r in records)
    assert any(r["fqdn"] == "" for r in records) and any(r["last_discovered"] == "" for r in records)
    assert {r["form_factor"] for r in records} == {"laptop", "desktop", "tablet", ""}
    assert {r["virtual"] for r in records} == {"true", "false"}
    assert re.fullmatch(r"[A-Z]{2,3}-[A-Z]{3}-\d{4}", records[142]["name"])


# ---------------------------------------------------------------------------------------------- queries


def test_incremental_query_returns_newer_and_touched_records_in_order(sn, server):
    sim = server.servicenow
    full, _ = fetch_all(
        sn, {"sysparm_query": FULL, "sysparm_fields": "sys_id,sys_updated_on,os_version", "sysparm_limit": 1000}
    )
    cursor = full[2000]["sys_updated_on"]
    old = {row["sys_id"]: row for row in full[:100]}
    touched = sim.touch(indices=[5, 50, 500, 1000])
    assert len(touched) == 4

    rows, responses = fetch_all(
        sn,
        {
            "sysparm_query": f"sys_updated_on>={cursor}^{FULL}",
            "sysparm_fields": "sys_id,sys_updated_on,os_version",
            "sysparm_limit": 100,
        },
    )
    expected_base = [row["sys_id"] for row in full if row["sys_updated_on"] >= cursor and row["sys_id"] not in touched]
    assert [row["sys_id"] for row in rows[:-4]] == expected_base
    assert sorted(row["sys_id"] for row in rows[-4:]) == sorted(touched)
    assert responses[0].headers["X-Total-Count"] == str(len(expected_base) + 4)
    assert all(row["sys_updated_on"] >= cursor for row in rows)
    keys = [(row["sys_updated_on"], row["sys_id"]) for row in rows]
    assert keys == sorted(keys)
    assert rows[-1]["sys_updated_on"] > full[-1]["sys_updated_on"]
    for row in rows[-4:]:
        if row["sys_id"] in old:
            assert row["os_version"] != old[row["sys_id"]]["os_version"]

    # `>` excludes the boundary second, `>=` re-reads it.
    strict = sn.get(TABLE, params={"sysparm_query": f"sys_updated_on>{cursor}^{FULL}", "sysparm_limit": 1})
    boundary = sum(row["sys_updated_on"] == cursor for row in full)
    assert int(strict.headers["X-Total-Count"]) == len(rows) - boundary


def test_extra_user_query_is_combined_with_the_incremental_query(sn):
    query = f"sys_class_nameSTARTSWITHcmdb_ci_win^install_status=1^sys_updated_on>=2024-01-08 06:00:00^{FULL}"
    rows, responses = fetch_all(sn, {"sysparm_query": query, "sysparm_limit": 100})
    assert rows
    assert all(r["sys_class_name"] == "cmdb_ci_win_server" and r["install_status"] == "1" for r in rows)
    assert int(responses[0].headers["X-Total-Count"]) == len(rows)
    keys = [(row["sys_updated_on"], row["sys_id"]) for row in rows]
    assert keys == sorted(keys)


def test_query_operators_and_unknown_fields(sn):
    def count(query):
        return int(sn.get(TABLE, params={"sysparm_query": query, "sysparm_limit": 1}).headers["X-Total-Count"])

    assert count("no_such_field=1") == RECORDS  # silently dropped: wider, not empty
    with_fqdn = count("fqdnISNOTEMPTY")
    assert 0 < with_fqdn < RECORDS
    assert count("fqdnISEMPTY") == RECORDS - with_fqdn
    installed = count("install_status=1")
    assert count("install_status!=1") == RECORDS - installed
    assert 0 < count("nameSTARTSWITHLT-") < RECORDS
    assert count("nameSTARTSWITHlt-") == 0  # values are case-sensitive
    descending = sn.get(TABLE, params={"sysparm_query": "ORDERBYDESCsys_updated_on", "sysparm_limit": 5})
    stamps = [r["sys_updated_on"] for r in descending.json()["result"]]
    assert stamps == sorted(stamps, reverse=True)


def test_subclass_table_returns_only_its_classes(sn):
    rows, _ = fetch_all(sn, {"sysparm_limit": 1000}, path="/api/now/v2/table/cmdb_ci_server")
    assert rows and {r["sys_class_name"] for r in rows} <= {
        "cmdb_ci_server",
        "cmdb_ci_win_server",
        "cmdb_ci_linux_server",
        "cmdb_ci_esx_server",
    }


def test_deleted_records_disappear(sn, server):
    sim = server.servicenow
    gone = sim.delete(indices=[0, 1, 2, 1234])
    via_http = sn.post("/_control/delete", json={"count": 3}).json()["sys_ids"]
    assert len(via_http) == 3
    rows, responses = fetch_all(sn, {"sysparm_query": FULL, "sysparm_fields": "sys_id", "sysparm_limit": 700})
    ids = {row["sys_id"] for row in rows}
    assert len(ids) == len(rows) == RECORDS - 7 == sim.record_count
    assert not ids & set(gone + via_http)
    assert responses[0].headers["X-Total-Count"] == str(RECORDS - 7)
    assert sn.get(f"{TABLE}/{gone[0]}").status_code == 404


def test_added_records_appear_at_the_end(sn, server):
    new = server.servicenow.add(3)
    rows, _ = fetch_all(sn, {"sysparm_query": FULL, "sysparm_fields": "sys_id", "sysparm_limit": 1000})
    assert [row["sys_id"] for row in rows[-3:]] == sorted(new)
    assert len(rows) == RECORDS + 3


# ---------------------------------------------------------------------------------------------- auth


def test_basic_auth_rejects_bad_and_missing_credentials(server):
    base = server.url + "/servicenow"
    bad = httpx.get(base + TABLE, auth=(DEFAULT_USERNAME, "wrong"))
    assert bad.status_code == 401
    assert bad.json() == {
        "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
        "status": "failure",
    }
    assert httpx.get(base + TABLE).status_code == 401


def token_request(server, **form):
    data = {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET, **form}
    return httpx.post(server.url + "/servicenow/oauth_token.do", data=data)


def test_oauth_password_grant_refresh_reuse_and_expiry(server):
    sim = server.servicenow
    first = token_request(server, grant_type="password", username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD)
    assert first.status_code == 200
    body = first.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "useraccount" and body["expires_in"] == 1799
    assert body["access_token"] and body["refresh_token"]
    assert sim.stats["token_grants"] == 1

    again = token_request(server, grant_type="password", username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD)
    assert again.json()["access_token"] == body["access_token"]  # same token while it is valid
    assert sim.stats["token_grants"] == 1 and sim.stats["token_requests"] == 2

    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert httpx.get(server.url + "/servicenow" + TABLE, headers=bearer, params={"sysparm_limit": 1}).status_code == 200

    sim.expire_all_tokens()
    expired = httpx.get(server.url + "/servicenow" + TABLE, headers=bearer)
    assert expired.status_code == 401
    assert expired.json()["error"]["message"] == "User Not Authenticated"

    refreshed = token_request(server, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert refreshed.status_code == 200
    assert "refresh_token" not in refreshed.json()
    new_token = refreshed.json()["access_token"]
    assert new_token != body["access_token"]
    ok = httpx.get(
        server.url + "/servicenow" + TABLE,
        headers={"Authorization": f"Bearer {new_token}"},
        params={"sysparm_limit": 1},
    )
    assert ok.status_code == 200
    assert sim.stats["token_grants"] == 2


def test_oauth_rejects_json_body_bad_secrets_and_bad_refresh_token(server):
    url = server.url + "/servicenow/oauth_token.do"
    as_json = httpx.post(
        url,
        json={
            "grant_type": "password",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "username": DEFAULT_USERNAME,
            "password": DEFAULT_PASSWORD,
        },
    )
    assert as_json.status_code == 400
    assert token_request(server, grant_type="password", username=DEFAULT_USERNAME, password="x").status_code == 401
    assert token_request(server, grant_type="refresh_token", refresh_token="nope").status_code == 401
    wrong_client = httpx.post(
        url, data={"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID, "client_secret": "wrong"}
    )
    assert wrong_client.status_code == 401
    assert server.servicenow.stats["token_grants"] == 0


def test_oauth_client_credentials_can_be_switched_off(server):
    granted = token_request(server, grant_type="client_credentials")
    assert granted.status_code == 200 and "refresh_token" not in granted.json()
    control = httpx.post(server.url + "/servicenow/_control/config", json={"client_credentials_enabled": False})
    assert control.status_code == 200
    refused = token_request(server, grant_type="client_credentials")
    assert refused.status_code == 401
    assert refused.json()["error"] == "access_denied"
    server.servicenow.client_credentials_enabled = True


# ---------------------------------------------------------------------------------------------- faults


def test_rate_limit_fault_with_retry_after_then_success(sn, server):
    added = sn.post("/_control/faults", json={"kind": "status", "status": 429, "retry_after": 2})
    assert added.status_code == 201
    limited = sn.get(TABLE, params={"sysparm_limit": 1})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert all(name in limited.headers for name in ("X-RateLimit-Limit", "X-RateLimit-Reset", "X-RateLimit-Rule"))
    assert limited.json() == {
        "error": {
            "message": "Rate limit exceeded",
            "detail": "Rate limit of 1000 requests per hour for Table API exceeded",
        },
        "status": "failure",
    }
    assert sn.get(TABLE, params={"sysparm_limit": 1}).status_code == 200


def test_server_errors_count_and_path_filter(sn, server):
    server.servicenow.inject_fault("status", status=503, count=2, path="/api/now/")
    assert sn.get(TABLE).status_code == 503
    # The token endpoint is not under the filtered path.
    assert token_request(server, grant_type="client_credentials").status_code == 200
    second = sn.get(TABLE)
    assert second.status_code == 503 and second.json()["status"] == "failure"
    assert sn.get(TABLE, params={"sysparm_limit": 1}).status_code == 200
    assert sn.delete("/_control/faults").status_code == 200


def test_slow_fault_causes_client_timeout(sn, server):
    server.servicenow.inject_fault("slow", delay=1.0)
    with pytest.raises(httpx.ReadTimeout):
        sn.get(TABLE, params={"sysparm_limit": 1}, timeout=0.2)
    assert sn.get(TABLE, params={"sysparm_limit": 1}, timeout=5).status_code == 200
    # The server still serves the abandoned request once its delay is over: wait for it, or it would be
    # counted in whichever test runs next.
    deadline = time.monotonic() + 5
    while server.servicenow.stats["table_requests"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.servicenow.stats["table_requests"] == 2


def test_malformed_fault_breaks_the_named_records(sn, server):
    sim = server.servicenow
    names = {i: sim.record(i)["name"] for i in (3, 4, 5)}
    sim.inject_fault("malformed", indices=[3, 4, 5])
    params = {"sysparm_query": FULL, "sysparm_limit": 20, "sysparm_display_value": "all"}
    rows = sn.get(TABLE, params=params).json()["result"]
    by_name = {}
    for row in rows:
        name = row["name"]["value"]
        by_name[name if name is not None else "<null>"] = row
    missing_id = by_name[names[3]]
    assert "sys_id" not in missing_id
    assert by_name[names[4]]["sys_updated_on"]["value"] == "not-a-date"
    garbage = by_name["<null>"]
    assert garbage["install_status"]["value"] == 1 and garbage["virtual"]["value"] is True
    assert garbage["sys_id"]["value"] == sim.sys_id_for(5)
    # count=1: the next response is clean again
    clean = sn.get(TABLE, params=params).json()["result"]
    assert all("sys_id" in row and isinstance(row["install_status"]["value"], str) for row in clean)


def test_hibernating_instance_answers_html_with_200(sn, server):
    server.servicenow.inject_fault("hibernate")
    response = sn.get(TABLE)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "hibernating" in response.text


def test_hidden_records_make_short_pages_but_next_is_still_there(sn, server):
    assert sn.post("/_control/hidden", json={"every": 7}).status_code == 200
    rows, responses = fetch_all(sn, {"sysparm_query": FULL, "sysparm_fields": "sys_id", "sysparm_limit": 100})
    hidden = RECORDS // 7
    assert len(rows) == RECORDS - hidden
    assert len({row["sys_id"] for row in rows}) == RECORDS - hidden
    assert all(r.headers["X-Total-Count"] == str(RECORDS) for r in responses)
    short_with_next = [r for r in responses if len(r.json()["result"]) < 100 and "next" in r.links]
    assert short_with_next
    assert sn.get(f"{TABLE}/{server.servicenow.sys_id_for(6)}").status_code == 404


def test_wrong_verb_unknown_table_and_unknown_path(sn):
    assert sn.post(TABLE, json={"name": "x"}).status_code == 405
    unknown = sn.get("/api/now/v2/table/foo")
    assert unknown.status_code == 400
    assert unknown.json() == {"error": {"message": "Invalid table foo", "detail": None}, "status": "failure"}
    assert sn.get("/api/now/nothing").status_code == 400


def test_control_touch_and_state(sn, server):
    touched = sn.post("/_control/touch", json={"count": 5}).json()["sys_ids"]
    assert len(set(touched)) == 5
    state = sn.get("/_control/state").json()
    assert state["records"] == RECORDS and state["touched"] == 5
    assert state["stats"]["control_requests"] >= 1
    assert sn.post("/_control/reset").status_code == 200
    assert sn.get("/_control/state").json()["touched"] == 0


def test_request_stats_are_counted(sn, server):
    sn.get(TABLE, params={"sysparm_limit": 1})
    sn.get(TABLE, params={"sysparm_limit": 1})
    assert server.servicenow.stats["table_requests"] == 2


# ---------------------------------------------------------------------------------------------- data set


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = ServiceNowSimulator(300, seed=7), ServiceNowSimulator(300, seed=7), ServiceNowSimulator(300, seed=8)
    assert [a.record(i) for i in range(300)] == [b.record(i) for i in range(300)]
    assert [a.sys_id_for(i) for i in range(300)] != [c.sys_id_for(i) for i in range(300)]
    assert [a.record(i)["serial_number"] for i in range(300)] != [c.record(i)["serial_number"] for i in range(300)]


def test_construction_does_not_materialise_records():
    tracemalloc.start()
    started = time.perf_counter()
    sim = ServiceNowSimulator(records=1_000_000)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 5_000_000  # bytes; a list of a million records would be gigabytes
    assert sim.record_count == 1_000_000
    assert sim.index_for(sim.sys_id_for(999_999)) == 999_999
    assert sim.record(999_999)["sys_updated_on"] > sim.record(0)["sys_updated_on"]


# ---------------------------------------------------------------------------------------------- command


def test_simulators_serve_without_django_and_stop_on_sigterm():
    script = (
        "import sys\n"
        "from syncplane_simulators.__main__ import main\n"
        "main(['--port', '0', '--records', '50'])\n"
        "assert 'django' not in sys.modules, 'the simulators imported Django'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        first = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", first)
        assert match, first + process.stderr.read()
        while "vault" not in process.stdout.readline():
            pass
        base = match.group(0)
        response = httpx.get(base + "/servicenow" + TABLE, auth=(DEFAULT_USERNAME, DEFAULT_PASSWORD))
        assert response.headers["X-Total-Count"] == "50"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
