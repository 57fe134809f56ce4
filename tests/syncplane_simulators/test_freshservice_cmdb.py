"""The Freshservice simulator over real HTTP: it must behave like the v2 assets API in the api notes."""

import re

import httpx
import pytest

from syncplane_simulators.devices import PLACEHOLDER_SERIALS, device_identity
from syncplane_simulators.freshservice_cmdb import DEFAULT_API_KEY, HARDWARE, FreshserviceSimulator
from syncplane_simulators.server import SimulatorServer

RECORDS = 400
ASSETS = "/api/v2/assets"


@pytest.fixture(scope="module")
def server():
    sim = FreshserviceSimulator(records=RECORDS, seed=42)
    with SimulatorServer(records=RECORDS, seed=42, extra_apps={"/freshservice": sim}) as running:
        running.freshservice = sim
        yield running


@pytest.fixture
def sim(server):
    server.freshservice.reset()
    server.freshservice.rate_limit_per_minute, server.freshservice.rate_limit_window = 100_000, 60.0
    return server.freshservice


@pytest.fixture
def fs(server, sim):
    with httpx.Client(base_url=server.url + "/freshservice", auth=(DEFAULT_API_KEY, "X")) as client:
        yield client


def all_pages(client, params):
    page, rows, responses = 1, [], []
    while True:
        response = client.get(ASSETS, params={**params, "page": page})
        assert response.status_code == 200, response.text
        responses.append(response)
        rows += response.json()["assets"]
        if "next" not in response.links:
            return rows, responses
        page = int(httpx.URL(response.links["next"]["url"]).params["page"])


def test_list_pages_with_link_header_absent_on_the_last_page(fs):
    rows, responses = all_pages(fs, {"per_page": 100, "include": "type_fields"})
    assert len(rows) == RECORDS and len(responses) == 4
    assert "Link" not in responses[-1].headers
    assert [r["display_id"] for r in rows] == list(range(1, RECORDS + 1))
    assert all(r["id"] > 2**31 for r in rows)
    first = responses[0].headers["Link"]
    assert re.fullmatch(r'<http://[^>]+/freshservice/api/v2/assets\?[^>]*page=2[^>]*>; rel="next"', first)


def test_default_page_size_and_per_page_limit(fs):
    assert len(fs.get(ASSETS).json()["assets"]) == 30
    response = fs.get(ASSETS, params={"per_page": 101})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "per_page"


def test_type_fields_only_with_include_and_suffixed_with_the_defining_type(fs, sim):
    plain = fs.get(ASSETS, params={"per_page": 5}).json()["assets"]
    assert all("type_fields" not in a for a in plain)
    rows = fs.get(ASSETS, params={"per_page": 100, "include": "type_fields"}).json()["assets"]
    laptop = next(a for a in rows if a["asset_type_id"] == 21000855304)
    keys = set(laptop["type_fields"])
    assert f"serial_number_{HARDWARE}" in keys and "hostname_21000855272" in keys and "salvage" in keys
    tablet = next((a for a in rows if a["asset_type_id"] == 21000855309), None)
    if tablet is not None:
        assert "os_21000855281" in tablet["type_fields"]


def test_one_asset_by_display_id_and_404_when_gone(fs, sim):
    asset = fs.get(f"{ASSETS}/5", params={"include": "type_fields"}).json()["asset"]
    assert asset["display_id"] == 5 and asset["id"] == sim.asset_id_for(4)
    sim.delete(indices=[4])
    assert fs.get(f"{ASSETS}/5").status_code == 404
    trashed = fs.get(ASSETS, params={"trashed": "true"}).json()["assets"]
    assert [a["display_id"] for a in trashed] == [5]


def test_filter_pages_of_30_without_link_and_at_most_40_pages(fs, sim):
    touched = sim.touch(count=45)
    today = sim.record(int(touched[0]) - 1)["updated_at"][:10]
    import datetime

    day_before = (datetime.date.fromisoformat(today) - datetime.timedelta(days=1)).isoformat()
    query = f"\"updated_at:>'{day_before}'\""
    first = fs.get(ASSETS, params={"filter": query, "page": 1})
    second = fs.get(ASSETS, params={"filter": query, "page": 2})
    assert len(first.json()["assets"]) == 30 and len(second.json()["assets"]) == 15
    assert "Link" not in first.headers
    got = {str(a["display_id"]) for a in first.json()["assets"] + second.json()["assets"]}
    assert got == set(touched)
    # Day granularity: the day itself does not match, only what comes after it.
    assert fs.get(ASSETS, params={"filter": f"\"updated_at:>'{today}'\""}).json()["assets"] == []
    assert fs.get(ASSETS, params={"filter": query, "page": 41}).status_code == 400
    assert fs.get(ASSETS, params={"filter": f"updated_at:>'{day_before}'"}).status_code == 400  # unquoted


def test_reference_lists_page_and_asset_types_have_parents(fs):
    types = fs.get("/api/v2/asset_types", params={"per_page": 100}).json()["asset_types"]
    by_id = {t["id"]: t for t in types}
    laptop = next(t for t in types if t["name"] == "Laptop")
    assert by_id[laptop["parent_asset_type_id"]]["name"] == "Computer"
    first = fs.get("/api/v2/requesters", params={"per_page": 100})
    assert len(first.json()["requesters"]) == 100 and 'rel="next"' in first.headers["Link"]
    for path in ("departments", "locations", "products", "agents"):
        response = fs.get(f"/api/v2/{path}")
        assert response.status_code == 200 and response.json()[path]


def test_basic_auth_with_the_api_key_and_any_password(server, sim):
    url = server.url + "/freshservice" + ASSETS
    assert httpx.get(url, auth=(DEFAULT_API_KEY, "anything")).status_code == 200
    denied = httpx.get(url, auth=("wrong-key", "X"))
    assert denied.status_code == 401 and denied.json()["code"] == "invalid_credentials"
    assert denied.headers["X-Ratelimit-Remaining"].isdigit()  # errors carry the rate-limit headers too
    assert httpx.get(url).status_code == 401


def test_rate_limit_headers_credits_and_429(fs, sim):
    sim.rate_limit_per_minute = 10
    plain = fs.get(ASSETS)
    assert plain.headers["X-Ratelimit-Total"] == "10"
    assert plain.headers["X-Ratelimit-Used-CurrentRequest"] == "1"
    assert plain.headers["X-Ratelimit-Remaining"] == "9"
    embedded = fs.get(ASSETS, params={"include": "type_fields"})
    assert embedded.headers["X-Ratelimit-Used-CurrentRequest"] == "3"  # include costs 2 extra credits
    assert embedded.headers["X-Ratelimit-Remaining"] == "6"
    fs.get(ASSETS, params={"include": "type_fields"})
    fs.get(ASSETS, params={"include": "type_fields"})
    limited = fs.get(ASSETS, params={"include": "type_fields"})
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-Ratelimit-Remaining"] == "0"


def test_faults_and_control_endpoints(server, fs, sim):
    control = server.url + "/freshservice/_control"
    httpx.post(control + "/faults", json={"kind": "status", "status": 503, "count": 1})
    assert fs.get(ASSETS).status_code == 503
    assert fs.get(ASSETS).status_code == 200
    sim.inject_fault("malformed", indices=[0, 1, 2])
    rows = fs.get(ASSETS, params={"include": "type_fields"}).json()["assets"]
    assert "display_id" not in rows[0] and rows[1]["updated_at"] == "18/05/2024 09:01" and rows[2]["name"] == 5
    touched = httpx.post(control + "/touch", json={"count": 3}).json()["display_ids"]
    deleted = httpx.post(control + "/delete", json={"indices": [10]}).json()["display_ids"]
    assert len(touched) == 3 and deleted == ["11"]
    state = httpx.get(control + "/state").json()
    assert (state["touched"], state["deleted"], state["records"]) == (3, 1, RECORDS - 1)
    assert httpx.post(control + "/reset").json()["deleted"] == 0


def test_touch_changes_version_and_updated_at(sim):
    before = sim.record(7)
    sim.touch(indices=[7])
    after = sim.record(7)
    assert after["updated_at"] > before["updated_at"]
    assert after["type_fields"]["os_version_21000855272"] != before["type_fields"]["os_version_21000855272"] \
        or after["asset_type_id"] == 21000855309


def test_devices_overlap_with_servicenow_then_diverge(sim):
    shared = int(0.6 * RECORDS)
    same_name = sum(sim.record(i)["name"] == device_identity(42, i).name for i in range(shared))
    assert same_name == shared
    assert all(sim.record(i)["name"] != device_identity(42, i).name for i in range(shared, RECORDS))
    serials = [sim.serial_for(i) for i in range(shared)]
    assert any(s != s.strip() for s in serials)  # stray spaces
    assert any(s.strip() and s.strip() != device_identity(42, i).serial and s.strip().upper()
               == device_identity(42, i).serial.upper() for i, s in enumerate(serials))  # other case
    assert any(s in PLACEHOLDER_SERIALS for s in serials)


def test_data_is_deterministic_and_lazy():
    a, b = FreshserviceSimulator(records=10**7, seed=5), FreshserviceSimulator(records=10**7, seed=5)
    assert a.record(9_999_999) == b.record(9_999_999)
    assert FreshserviceSimulator(records=10, seed=6).record(3) != a.record(3)
