"""The Jira Assets simulator over real HTTP: it must behave like the API described in the api notes."""

import calendar
import time
import tracemalloc

import httpx
import pytest

from syncplane_simulators.devices import PLACEHOLDER_SERIALS, device_identity
from syncplane_simulators.jira_assets import (
    DEFAULT_API_TOKEN,
    DEFAULT_EMAIL,
    DEFAULT_PAT,
    DEFAULT_WORKSPACE_ID,
    TYPE_ATTRIBUTES,
    JiraAssetsSimulator,
)
from syncplane_simulators.server import SimulatorServer

RECORDS = 1200
ASSETS = f"/jsm/assets/workspace/{DEFAULT_WORKSPACE_ID}/v1"
ALL_TYPES = 'objectType in ("Laptop", "Desktop", "Server", "Virtual Machine", "Tablet")'


@pytest.fixture(scope="module")
def sim():
    return JiraAssetsSimulator(records=RECORDS, seed=42)


@pytest.fixture(scope="module")
def server(sim):
    with SimulatorServer(records=10, seed=42, extra_apps={"/jira": sim}) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(sim):
    sim.reset()
    sim.type_attributes_in_search = True
    yield


@pytest.fixture
def jira(server):
    with httpx.Client(base_url=server.url + "/jira", auth=(DEFAULT_EMAIL, DEFAULT_API_TOKEN)) as client:
        yield client


def search(client, aql, start=0, size=100, **params):
    return client.post(f"{ASSETS}/object/aql", params={"startAt": start, "maxResults": size,
                                                       "includeAttributes": "true", **params},
                       json={"qlQuery": aql})


def search_all(client, aql, size=100):
    """Page as a client must: startAt += len(values), stop on isLast or an empty page."""
    start, ids, pages = 0, [], []
    while True:
        response = search(client, aql, start, size)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        ids += [v["id"] for v in body["values"]]
        if body["isLast"] or not body["values"]:
            return ids, pages
        start += len(body["values"])


# ---------------------------------------------------------------------------------------------- discovery, auth


def test_workspace_discovery_on_the_site(jira, sim):
    body = jira.get("/rest/servicedeskapi/assets/workspace").json()
    assert body["values"] == [{"workspaceId": DEFAULT_WORKSPACE_ID}] and body["isLastPage"] is True
    assert body["_links"]["base"].endswith("/jira/rest/servicedeskapi")
    sim.assets_enabled = False
    assert jira.get("/rest/servicedeskapi/assets/workspace").json()["values"] == []


def test_auth_failures_have_jira_bodies(server, sim):
    base = server.url + "/jira"
    for auth in (None, (DEFAULT_EMAIL, "wrong"), ("someone@else", DEFAULT_API_TOKEN)):
        response = httpx.post(f"{base}{ASSETS}/object/aql", json={"qlQuery": ALL_TYPES}, auth=auth)
        assert response.status_code == 401
        assert response.json()["errorMessages"] and response.json()["errors"] == {}
    # A personal access token is Data Center only.
    pat = {"Authorization": f"Bearer {DEFAULT_PAT}"}
    assert httpx.post(f"{base}{ASSETS}/object/aql", json={"qlQuery": ALL_TYPES}, headers=pat).status_code == 401
    assert httpx.get(f"{base}/rest/assets/1.0/objectschema/list", headers=pat).status_code == 200
    sim.permitted = False
    forbidden = httpx.get(f"{base}{ASSETS}/objectschema/list", auth=(DEFAULT_EMAIL, DEFAULT_API_TOKEN))
    assert forbidden.status_code == 403 and "permission" in forbidden.json()["errorMessages"][0]


def test_wrong_workspace_is_404(jira):
    response = jira.post("/jsm/assets/workspace/nope/v1/object/aql", json={"qlQuery": ALL_TYPES})
    assert response.status_code == 404 and response.json()["errorMessages"]


# ---------------------------------------------------------------------------------------------- search and paging


def test_paging_covers_every_object_once_and_the_server_caps_max_results(jira):
    ids, pages = search_all(jira, ALL_TYPES, size=700)
    assert len(ids) == RECORDS and len(set(ids)) == RECORDS
    assert pages[0]["maxResults"] == 500 and len(pages[0]["values"]) == 500  # fewer than asked
    assert [p["isLast"] for p in pages] == [False, False, True]
    assert {p["total"] for p in pages} == {RECORDS}


def test_islast_bug_at_1000_results(jira):
    body = search(jira, ALL_TYPES, size=1000).json()
    assert body["isLast"] is True and len(body["values"]) < body["total"]  # the historical bug


def test_object_shape_and_per_type_attribute_ids(jira, sim):
    body = search(jira, 'objectType in ("Laptop", "Server")', size=200).json()
    names = {a["id"]: a["name"] for a in body["objectTypeAttributes"]}
    laptop = next(v for v in body["values"] if v["objectType"]["name"] == "Laptop")
    server = next(v for v in body["values"] if v["objectType"]["name"] == "Server")
    assert laptop["id"].isdigit() and laptop["objectKey"] == f"ITAM-{laptop['id']}"
    assert laptop["globalId"] == f"{DEFAULT_WORKSPACE_ID}:{laptop['id']}"
    assert laptop["updated"].endswith("Z") and "T" in laptop["updated"]
    assert all("name" not in a for a in laptop["attributes"])  # only objectTypeAttributeId
    serial_ids = {names[a["objectTypeAttributeId"]]: a["objectTypeAttributeId"] for a in laptop["attributes"]}
    server_ids = {names[a["objectTypeAttributeId"]]: a["objectTypeAttributeId"] for a in server["attributes"]}
    assert serial_ids["Name"] != server_ids["Name"]
    status = next(a for a in laptop["attributes"] if names[a["objectTypeAttributeId"]] == "Status")
    assert set(status["objectAttributeValues"][0]["status"]) == {"id", "name", "category"}
    # Missing attribute and empty value list both occur.
    sizes = [len(a["objectAttributeValues"]) for v in body["values"] for a in v["attributes"]]
    assert 0 in sizes
    assert any(len(v["attributes"]) < len(TYPE_ATTRIBUTES[v["objectType"]["id"]]) for v in body["values"])


def test_type_attributes_endpoint_and_schema_reads(jira):
    attributes = jira.get(f"{ASSETS}/objecttype/31/attributes").json()
    assert [a["name"] for a in attributes][:2] == ["Key", "Name"]
    status = next(a for a in attributes if a["name"] == "Status")
    assert status["type"] == 7
    assert next(a for a in attributes if a["name"] == "Manufacturer")["referenceObjectTypeId"] == "40"
    schemas = jira.get(f"{ASSETS}/objectschema/list").json()
    assert schemas["values"][0]["objectSchemaKey"] == "ITAM"
    assert {t["name"] for t in jira.get(f"{ASSETS}/objectschema/3/objecttypes/flat").json()} >= {"Laptop", "Server"}
    assert jira.get(f"{ASSETS}/objecttype/99/attributes").status_code == 404


def test_single_object_embeds_attribute_definitions(jira, sim):
    body = jira.get(f"{ASSETS}/object/{sim.object_id_for(5)}").json()
    assert body["label"] == sim.device(5).name
    assert all("name" in a["objectTypeAttribute"] for a in body["attributes"])
    sim.delete(indices=[5])
    assert jira.get(f"{ASSETS}/object/{sim.object_id_for(5)}").status_code == 404


def test_aql_filters_and_order(jira, sim):
    servers, _ = search_all(jira, 'objectType = "Server"')
    expected = [sim.object_id_for(i) for i in range(RECORDS) if sim.object_type(i)[1] == "Server"]
    assert servers == expected
    by_id = search(jira, f"objectId in ({sim.object_id_for(3)}, {sim.object_id_for(9)}, 99999)").json()
    assert [v["id"] for v in by_id["values"]] == [sim.object_id_for(3), sim.object_id_for(9)]
    desc = search(jira, 'objectType = "Server" order by Updated desc', size=5).json()["values"]
    assert [v["updated"] for v in desc] == sorted((v["updated"] for v in desc), reverse=True)
    retired = search(jira, f'{ALL_TYPES} AND Status = "Retired"').json()
    assert retired["total"] > 0
    count = jira.post(f"{ASSETS}/object/aql/totalcount", json={"qlQuery": 'objectType = "Server"'}).json()
    assert count == {"totalCount": len(expected)}


def test_updated_filter_uses_minutes_and_touched_objects_come_last(jira, sim):
    touched = sim.touch(count=4)
    cut = time.strftime("%Y-%m-%d %H:%M", time.gmtime(time.time() - 600))
    body = search(jira, f'{ALL_TYPES} AND Updated > "{cut}" order by Updated asc').json()
    assert sorted(v["id"] for v in body["values"]) == sorted(touched)
    everything, _ = search_all(jira, f"{ALL_TYPES} order by Updated asc", size=500)
    assert set(everything[-4:]) == set(touched)
    base = search(jira, f'{ALL_TYPES} AND Updated > "2024-01-08 06:10"').json()
    limit = calendar.timegm((2024, 1, 8, 6, 10, 0)) * 1000
    assert base["total"] == sum(1 for i in range(RECORDS) if sim.updated_ms(i) > limit)
    assert RECORDS - 32 <= base["total"] <= RECORDS - 29


def test_bad_aql_is_400_with_a_reason(jira):
    for aql, reason in [("Colour = Blue", "Colour"), ('objectType in ("Laptop"', "missing"),
                        ('Updated > "yesterday"', "not a valid date"), ("objectType ~ x", "")]:
        response = search(jira, aql)
        assert response.status_code == 400, aql
        body = response.json()
        assert reason in body["errorMessages"][0] and set(body) == {"errorMessages", "errors"}
    assert jira.get(f"{ASSETS}/object/aql").status_code == 405


def test_deleted_objects_disappear(jira, sim):
    gone = sim.delete(count=3)
    ids, _ = search_all(jira, ALL_TYPES, size=500)
    assert len(ids) == RECORDS - 3 and not set(gone) & set(ids)


# ---------------------------------------------------------------------------------------------- data quality


def test_overlap_with_servicenow_devices_and_serial_variation(sim):
    shared = sim.shared
    assert shared == int(RECORDS * 0.6)
    assert sim.device(0) == device_identity(42, 0) and sim.device(shared - 1) == device_identity(42, shared - 1)
    assert sim.device(shared).serial != device_identity(42, shared).serial
    serials = [(sim.serial_for(i), device_identity(42, i).serial) for i in range(shared)]
    varied = [(ours, theirs) for ours, theirs in serials if ours != theirs]
    assert any(ours == theirs.lower() for ours, theirs in varied)
    assert any(ours != ours.strip() for ours, _ in varied)
    assert any(ours in PLACEHOLDER_SERIALS for ours, _ in varied)
    assert len(varied) < shared * 0.3


def test_deterministic_and_lazy():
    a, b = JiraAssetsSimulator(records=50, seed=1), JiraAssetsSimulator(records=50, seed=1)
    assert a.build_object(7, "x") == b.build_object(7, "x")
    assert JiraAssetsSimulator(records=50, seed=2).build_object(7, "x") != a.build_object(7, "x")
    tracemalloc.start()
    JiraAssetsSimulator(records=5_000_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2_000_000


# ---------------------------------------------------------------------------------------------- Data Center


def test_data_center_paging_ids_and_dates(server, sim):
    headers = {"Authorization": f"Bearer {DEFAULT_PAT}"}
    with httpx.Client(base_url=server.url + "/jira/rest/assets/1.0", headers=headers) as dc:
        first = dc.get("/aql/objects", params={"qlQuery": ALL_TYPES, "page": 1, "resultPerPage": 400}).json()
        assert (first["pageNumber"], first["pageSize"], first["totalFilterCount"]) == (1, 3, RECORDS)
        entry = first["objectEntries"][0]
        assert isinstance(entry["id"], int) and "/" in entry["updated"] and isinstance(entry["timestamp"], int)
        last = dc.get("/aql/objects", params={"qlQuery": ALL_TYPES, "page": 3, "resultPerPage": 400}).json()
        assert len(last["objectEntries"]) == RECORDS - 800
        # The older Insight path answers too, and Basic works on Data Center.
    legacy = httpx.get(server.url + "/jira/rest/insight/1.0/objecttype/31/attributes",
                       auth=(DEFAULT_EMAIL, DEFAULT_API_TOKEN))
    assert legacy.status_code == 200 and isinstance(legacy.json()[0]["id"], int)


# ---------------------------------------------------------------------------------------------- faults, control


def test_rate_limit_fault_has_retry_after(jira, sim):
    sim.inject_fault("status", status=429, retry_after=2, count=1)
    limited = search(jira, ALL_TYPES)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert limited.json()["errorMessages"]
    assert search(jira, ALL_TYPES).status_code == 200


def test_malformed_fault_breaks_the_named_objects(jira, sim):
    sim.inject_fault("malformed", indices=[0, 1, 2])
    values = search(jira, ALL_TYPES, size=5).json()["values"]
    assert "id" not in values[0]
    assert values[1]["updated"] == "not-a-date"
    assert values[2]["attributes"][0]["objectAttributeValues"] == "oops"
    assert search(jira, ALL_TYPES, size=5).json()["values"][0]["id"] == sim.object_id_for(0)  # consumed


def test_objects_rendered_once_answer_as_freshly_rendered_ones_and_follow_touches(jira, sim):
    search(jira, ALL_TYPES, size=20)  # rendered and kept
    first = search(jira, ALL_TYPES, size=20).json()  # answered from what was kept
    sim.kept_objects.limit = 0  # nothing kept is read: every object rendered again
    try:
        assert search(jira, ALL_TYPES, size=20).json() == first  # kept text == what rendering gives now
    finally:
        sim.kept_objects.limit = 20_000
    touched = sim.object_id_for(first_index := sim.index_for(first["values"][3]["id"]))
    sim.touch(indices=[first_index])
    again = {v["id"]: v for v in search(jira, f"objectId in ({touched})").json()["values"]}
    assert again[touched]["updated"] != first["values"][3]["updated"]
    assert search(jira, ALL_TYPES, size=20, includeAttributes="false").json()["values"][0]["attributes"] == []
    assert search(jira, ALL_TYPES, size=20).json()["values"][0]["attributes"]  # the kept objects kept theirs


def test_control_endpoints(server, sim):
    control = server.url + "/jira/_control"
    assert httpx.post(f"{control}/touch", json={"count": 2}).json()["object_ids"]
    assert httpx.post(f"{control}/delete", json={"indices": [4]}).json() == {"object_ids": [sim.object_id_for(4)]}
    added = httpx.post(f"{control}/faults", json={"kind": "status", "status": 503, "count": 2})
    assert added.status_code == 201 and len(added.json()["faults"]) == 1
    state = httpx.get(f"{control}/state").json()
    assert (state["touched"], state["deleted"], state["records"]) == (2, 1, RECORDS - 1)
    assert httpx.delete(f"{control}/faults").json() == {"faults": []}
    assert httpx.post(f"{control}/config", json={"permitted": False}).json()["permitted"] is False
    assert httpx.post(f"{control}/reset").json()["deleted"] == 0
    assert sim.permitted is True
    assert httpx.post(f"{control}/nope").status_code == 404
