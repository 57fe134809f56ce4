"""The Defender for Endpoint simulator behaves like the API where the connector depends on it."""

import time

import httpx
import pytest

from syncplane_simulators import defender_endpoint as defender_sim
from syncplane_simulators.server import SimulatorServer

TENANT = defender_sim.DEFAULT_TENANT
RESOURCE = "https://api.securitycenter.microsoft.com"


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(records=10) as running:
        yield running


@pytest.fixture
def defender(server):
    server.defender.reset()
    return server.defender


def credentials(**extra):
    return {"grant_type": "client_credentials", "client_id": defender_sim.DEFAULT_CLIENT_ID,
            "client_secret": defender_sim.DEFAULT_CLIENT_SECRET, **extra}


def token(server, version="v2"):
    if version == "v1":
        response = httpx.post(f"{server.url}/defender/login/{TENANT}/oauth2/token", data=credentials(resource=RESOURCE))
    else:
        response = httpx.post(f"{server.url}/defender/login/{TENANT}/oauth2/v2.0/token",
                              data=credentials(scope=f"{RESOURCE}/.default"))
    assert response.status_code == 200, response.text
    return response.json()


def auth(server):
    return {"Authorization": f"Bearer {token(server)['access_token']}"}


def test_the_v2_token_has_numbers_and_the_v1_token_strings(server, defender):
    v2 = token(server)
    assert isinstance(v2["expires_in"], int) and v2["token_type"] == "Bearer"
    v1 = token(server, "v1")
    assert isinstance(v1["expires_in"], str) and int(v1["expires_in"]) == 3599
    assert int(v1["expires_on"]) > time.time() and v1["resource"] == RESOURCE


@pytest.mark.parametrize(("path", "form", "status", "code"), [
    ("oauth2/v2.0/token", {"client_secret": "wrong", "scope": f"{RESOURCE}/.default"}, 401, 7000215),
    ("oauth2/v2.0/token", {"scope": "https://graph.microsoft.com/User.Read"}, 400, 1002012),
    ("oauth2/token", {"resource": "https://graph.microsoft.com"}, 400, 500011),
    ("oauth2/token", {"client_id": "someone-else", "resource": RESOURCE}, 400, 700016),
])
def test_token_errors_are_oauth_style(server, defender, path, form, status, code):
    response = httpx.post(f"{server.url}/defender/login/{TENANT}/{path}", data=credentials(**form))
    assert response.status_code == status and response.json()["error_codes"] == [code]
    assert f"AADSTS{code}" in response.json()["error_description"]


def test_machines_page_with_a_skip_link_and_share_entra_device_ids(server, defender):
    headers = auth(server)
    url, machines = f"{server.url}/defender/api/machines?$top=10", []
    while url:
        body = httpx.get(url, headers=headers).json()
        machines.extend(body["value"])
        url = body.get("@odata.nextLink")
        assert url is None or "$skip=" in url
    assert len(machines) == len(defender.machines) > 10
    entra = {d["deviceId"] for d in server.graph.devices.values()}
    linked = [m for m in machines if m["aadDeviceId"]]
    assert linked and all(m["aadDeviceId"].lower() in entra for m in linked)
    assert any(m["aadDeviceId"] != m["aadDeviceId"].lower() for m in linked)  # some agents send upper case
    assert {m["onboardingStatus"] for m in machines} == {"Onboarded", "CanBeOnboarded"}
    assert any("." not in m["computerDnsName"] for m in machines)  # bare host names (macOS, Linux)
    response = httpx.get(f"{server.url}/defender/api/machines?$top=10001", headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "InvalidInput"


def test_no_machines_is_a_404(server, defender):
    for machine_id in list(defender.machines):
        defender.remove_machine(machine_id)
    response = httpx.get(f"{server.url}/defender/api/machines", headers=auth(server))
    assert response.status_code == 404 and response.json()["error"]["code"] == "NotFound"


def test_the_export_pages_by_page_size_and_top_truncates(server, defender):
    headers = auth(server)
    url, rows, pages = f"{server.url}/defender/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=50", [], 0
    while url:
        body = httpx.get(url, headers=headers).json()
        rows.extend(body["value"])
        pages += 1
        url = body.get("@odata.nextLink")
        assert url is None or "$skiptoken=" in url
    assert len(rows) == len(defender.rows) and pages == -(-len(rows) // 50)
    assert any(r["cveId"] is None for r in rows)  # plain software inventory
    assert rows[0]["firstSeenTimestamp"].count(" ") == 1  # "2025-06-01 00:00:00": no zone
    truncated = httpx.get(f"{server.url}/defender/api/machines/SoftwareVulnerabilitiesByMachine?$top=5",
                          headers=headers).json()
    assert len(truncated["value"]) == 5 and "@odata.nextLink" not in truncated


def test_the_delta_export_reports_changes_and_links_to_another_path(server, defender):
    headers = auth(server)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    row = defender.open_rows()[0]
    fixed = defender.fix(row["deviceId"], row["cveId"])
    defender.add_vulnerability(row["deviceId"], ("CVE-2024-6387", "High", 8.1, "NoExploit", None),
                               ("openbsd", "openssh", "9.6p1"))
    url = f"{server.url}/defender/api/machines/SoftwareVulnerabilityChangesByMachine?sinceTime={since}&pageSize=1"
    rows = []
    while url:
        body = httpx.get(url, headers=headers).json()
        rows.extend(body["value"])
        url = body.get("@odata.nextLink")
        assert url is None or "/SoftwareVulnerabilitiesTimeline?" in url
    statuses = {(r["cveId"], r["status"]) for r in rows}
    assert (row["cveId"], "Fixed") in statuses and ("CVE-2024-6387", "New") in statuses
    assert all(r["eventTimestamp"].endswith("Z") for r in rows)
    # The initial state is older than the bucket: only the changes come back.
    assert sorted(r["status"] for r in rows) == ["Fixed"] * len(fixed) + ["New"]


def test_machines_vulnerabilities_rows(server, defender):
    body = httpx.get(f"{server.url}/defender/api/vulnerabilities/machinesVulnerabilities?$top=5",
                     headers=auth(server)).json()
    assert len(body["value"]) == 5 and "$skip=5" in body["@odata.nextLink"]
    assert set(body["value"][0]) == {"id", "cveId", "machineId", "fixingKbId", "productName", "productVendor",
                                     "productVersion", "severity"}


def test_auth_errors_and_permissions(server, defender):
    response = httpx.get(f"{server.url}/defender/api/machines")
    assert response.status_code == 401 and response.json()["error"]["code"] == "Unauthorized"
    headers = auth(server)
    defender.expire_tokens()
    assert httpx.get(f"{server.url}/defender/api/machines", headers=headers).status_code == 401
    headers = auth(server)
    httpx.post(f"{server.url}/defender/_control/revoke", json={"permission": "Vulnerability.Read.All"})
    response = httpx.get(f"{server.url}/defender/api/machines/SoftwareVulnerabilitiesByMachine", headers=headers)
    assert response.status_code == 403 and "Vulnerability.Read.All" in response.json()["error"]["message"]
    assert httpx.get(f"{server.url}/defender/api/machines", headers=headers).status_code == 200


def test_throttling_answers_429_with_retry_after_in_defenders_shape(server, defender):
    headers = auth(server)
    httpx.post(f"{server.url}/defender/_control/faults", json={"status": 429, "retry_after": 7, "path": "/api/"})
    response = httpx.get(f"{server.url}/defender/api/machines", headers=headers)
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert set(response.json()["error"]) == {"code", "message", "target"}
    assert response.json()["error"]["code"] == "TooManyRequests"
    assert httpx.get(f"{server.url}/defender/api/machines", headers=headers).status_code == 200


def test_control_fix_and_state(server, defender):
    row = defender.open_rows()[0]
    before = len(defender.open_rows())
    response = httpx.post(f"{server.url}/defender/_control/fix", json={"machine_id": row["deviceId"],
                                                                      "cve_id": row["cveId"]})
    assert response.status_code == 200 and len(defender.open_rows()) < before
    assert httpx.get(f"{server.url}/defender/_control/state").json()["vulnerabilities"] == len(defender.open_rows())
