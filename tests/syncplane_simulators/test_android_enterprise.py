"""The Android Management simulator behaves like Google's token endpoint and AMAPI where the connector
depends on it: the JWT bearer grant verified, paging, Google's error envelope, the data quirks of the note."""

import time

import httpx
import jwt
import pytest

from syncplane_simulators import android_enterprise as android_sim
from syncplane_simulators.server import SimulatorServer

ENTERPRISE = android_sim.DEFAULT_ENTERPRISE


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(records=10) as running:
        yield running


@pytest.fixture(scope="module")
def key(server):
    key, public = android_sim.make_service_account_key(f"{server.url}/android/token")
    response = httpx.post(f"{server.url}/android/_control/service-accounts", json={
        "client_email": key["client_email"], "public_key_pem": public, "private_key_id": key["private_key_id"]})
    assert response.status_code == 200
    return key


@pytest.fixture
def android(server, key):
    server.android.reset()
    return server.android


def assertion(key, pem=None, **overrides):
    """A JWT as google-auth signs it; an override of None leaves the claim out."""
    now = int(time.time())
    claims = {"iss": key["client_email"], "aud": key["token_uri"], "iat": now, "exp": now + 3600,
              "scope": android_sim.SCOPE, **overrides}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, pem or key["private_key"],
                      algorithm="RS256", headers={"kid": key["private_key_id"]})


def grant(key, signed: str, grant_type: str = android_sim.JWT_BEARER) -> httpx.Response:
    return httpx.post(key["token_uri"], data={"grant_type": grant_type, "assertion": signed})


def headers(key):
    response = grant(key, assertion(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and isinstance(body["expires_in"], int)
    return {"Authorization": f"Bearer {body['access_token']}"}


def devices_url(server):
    return f"{server.url}/android/v1/enterprises/{ENTERPRISE}/devices"


def test_a_signed_assertion_gets_a_token(android, key):
    headers(key)
    assert android.stats["tokens_issued"] == 1


@pytest.mark.parametrize(("overrides", "error", "words"), [
    ({"aud": "https://oauth2.googleapis.com/token"}, "invalid_grant", "audience"),
    ({"exp": int(time.time()) + 7200}, "invalid_grant", "short-lived"),
    ({"exp": int(time.time()) - 600, "iat": int(time.time()) - 1200}, "invalid_grant", "short-lived"),
    ({"iat": None}, "invalid_grant", "short-lived"),
    ({"scope": "https://www.googleapis.com/auth/androidenterprise"}, "invalid_scope", "scope"),
    ({"iss": "someone@else.iam.gserviceaccount.com"}, "invalid_grant", "account not found"),
])
def test_the_token_endpoint_checks_the_assertion(android, key, overrides, error, words):
    response = grant(key, assertion(key, **overrides))
    assert response.status_code == 400
    assert response.json()["error"] == error and words in response.json()["error_description"]


def test_a_signature_by_another_key_is_refused(android, key, server):
    other, _public = android_sim.make_service_account_key(key["token_uri"], client_email=key["client_email"])
    response = grant(key, assertion(key, pem=other["private_key"]))
    assert response.status_code == 400 and response.json() == {"error": "invalid_grant",
                                                               "error_description": "Invalid JWT Signature."}


def test_a_revoked_key_and_a_wrong_grant_type_are_refused(android, key):
    assert grant(key, assertion(key), grant_type="client_credentials").json()["error"] == "unsupported_grant_type"
    doomed, public = android_sim.make_service_account_key(key["token_uri"], client_email="doomed@p.iam.example")
    android.register_service_account(doomed["client_email"], public, doomed["private_key_id"])
    assert grant(doomed, assertion(doomed)).status_code == 200
    android.revoke_key(doomed["client_email"], doomed["private_key_id"])
    refused = grant(doomed, assertion(doomed))
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_device_pages_default_to_ten_and_cap_at_a_hundred(android, key, server):
    auth = headers(key)
    first = httpx.get(devices_url(server), headers=auth).json()
    assert len(first["devices"]) == 10 and "nextPageToken" in first
    big = httpx.get(devices_url(server), params={"pageSize": 500}, headers=auth).json()
    assert len(big["devices"]) == len(android.devices) and "nextPageToken" not in big  # 61 fit in the cap of 100
    names, token, pages = [], None, 0
    while True:
        body = httpx.get(devices_url(server), params={"pageSize": 25, **({"pageToken": token} if token else {})},
                         headers=auth).json()
        names += [d["name"] for d in body["devices"]]
        pages += 1
        token = body.get("nextPageToken")
        if not token:
            break
    assert pages == 3 and names == sorted(android.devices)


def test_errors_use_googles_envelope(android, key, server):
    auth = headers(key)
    bad_token = httpx.get(devices_url(server), params={"pageToken": "garbage"}, headers=auth)
    assert bad_token.status_code == 400 and bad_token.json()["error"]["status"] == "INVALID_ARGUMENT"
    nobody = httpx.get(devices_url(server), headers={"Authorization": "Bearer nope"})
    assert nobody.status_code == 401 and nobody.json()["error"]["status"] == "UNAUTHENTICATED"
    other = httpx.get(f"{server.url}/android/v1/enterprises/LC00other/devices", headers=auth)
    assert other.status_code == 403 and other.json()["error"]["status"] == "PERMISSION_DENIED"
    android.faults.add("status", status=429, retry_after=2)
    limited = httpx.get(devices_url(server), headers=auth)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert limited.json()["error"]["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"


def test_expired_tokens_and_an_unbound_enterprise(android, key, server):
    auth = headers(key)
    android.expire_tokens()
    assert httpx.get(devices_url(server), headers=auth).status_code == 401
    auth = headers(key)
    httpx.post(f"{server.url}/android/_control/config", json={"bound": False})
    assert httpx.get(devices_url(server), headers=auth).status_code == 403


def test_a_deleted_device_is_gone_from_the_list_and_answers_404(android, key, server):
    auth = headers(key)
    name = sorted(android.devices)[0]
    assert httpx.get(f"{server.url}/android/v1/{name}", headers=auth).json()["name"] == name
    httpx.post(f"{server.url}/android/_control/devices/remove", json={"name": name})
    assert httpx.get(f"{server.url}/android/v1/{name}", headers=auth).status_code == 404
    listed = httpx.get(devices_url(server), params={"pageSize": 100}, headers=auth).json()["devices"]
    assert name not in {d["name"] for d in listed}


def test_the_devices_carry_the_quirks_of_the_note(android, server):
    devices = list(android.devices.values())
    personal = [d for d in devices if d.get("ownership") == "PERSONALLY_OWNED"]
    assert all(d["apiLevel"] >= 31 for d in personal)
    with_serial = [d for d in personal if "serialNumber" in d["hardwareInfo"]]
    assert with_serial and all(d["hardwareInfo"]["serialNumber"] == d["hardwareInfo"]["enterpriseSpecificId"]
                               for d in with_serial)
    assert len(with_serial) < len(personal)  # some report no serial at all
    provisioning = [d for d in devices if d["state"] == "PROVISIONING"]
    assert provisioning and all("hardwareInfo" not in d and "policyCompliant" not in d for d in provisioning)
    noncompliant = [d for d in devices if d.get("policyCompliant") is False]
    assert noncompliant and all(d["nonComplianceDetails"] for d in noncompliant)
    assert any("softwareInfo" not in d for d in devices if "hardwareInfo" in d)
    assert any(d.get("networkInfo", {}).get("wifiMacAddress") == "02:00:00:00:00:00" for d in personal)
    assert any(len(d.get("lastStatusReportTime", "").split(".")[-1]) == 10 for d in devices)  # nanoseconds + Z
    fleet = android_sim.fleet_tablets(android.seed, android.shared_serials)
    serials = {d["hardwareInfo"].get("serialNumber") for d in devices if "hardwareInfo" in d}
    assert {s.lower() for s in fleet} <= serials  # the CMDBs' tablets, in lower case here
    new = next(d for d in devices if d.get("previousDeviceNames"))
    old = android.devices[new["previousDeviceNames"][0]]
    assert old["hardwareInfo"]["serialNumber"].upper() == new["hardwareInfo"]["serialNumber"]
    assert old["lastStatusReportTime"] < new["lastStatusReportTime"]
