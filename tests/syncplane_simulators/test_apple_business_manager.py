"""The Apple Business Manager simulator follows the API notes: the token endpoint verifies the ES256 client
assertion, the API pages by cursor with absolute next links, DEP checks the OAuth 1.0a signature and rotates
its session token."""

import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from oauthlib.oauth1 import SIGNATURE_HMAC
from oauthlib.oauth1 import Client as OAuth1Client

from syncplane_simulators import apple_business_manager as sim
from tests.integrations.connectors.apple.keys import key_pair

CLIENT, KID = sim.DEFAULT_CLIENT_ID, sim.DEFAULT_KEY_ID


@pytest.fixture(scope="module")
def keys():
    return key_pair()


@pytest.fixture
def apple(simulator, keys):
    simulator.apple.register_key(CLIENT, KID, keys[1])
    return simulator.apple


def assertion(keys, *, kid=KID, **claims):
    now = int(time.time())
    payload = {"iss": CLIENT, "sub": CLIENT, "aud": sim.AUDIENCE, "iat": now, "exp": now + 600,
               "jti": str(uuid.uuid4()), **claims}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(payload, load_pem_private_key(keys[0].encode(), None), algorithm="ES256", headers=headers)


def token_request(simulator, signed, *, path="/auth/oauth2/token", in_query=False, scope="business.api"):
    params = {"grant_type": "client_credentials", "client_id": CLIENT, "scope": scope,
              "client_assertion_type": sim.JWT_BEARER, "client_assertion": signed}
    url = f"{simulator.url}/apple{path}"
    return httpx.post(url, params=params) if in_query else httpx.post(url, data=params)


@pytest.mark.parametrize(("path", "in_query"), [("/auth/oauth2/token", False), ("/auth/oauth2/v2/token", False),
                                                ("/auth/oauth2/token", True)])
def test_a_good_assertion_gets_an_hour_long_token_on_either_path_and_in_either_place(simulator, apple, keys, path,
                                                                                      in_query):
    answer = token_request(simulator, assertion(keys), path=path, in_query=in_query)
    assert answer.status_code == 200, answer.text
    assert answer.json()["expires_in"] == 3600 and answer.json()["scope"] == "business.api"


@pytest.mark.parametrize(("claims", "kid", "reason"), [
    ({"aud": "https://account.apple.com/auth/oauth2/token"}, KID, "aud must be"),
    ({"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, KID, "expired"),
    ({}, None, "kid"),
    ({}, "another-key", "does not name a key"),
    ({"sub": "someone-else"}, KID, "sub must be"),
    ({"exp": int(time.time()) + 200 * 86400}, KID, "180 days"),
])
def test_a_bad_assertion_is_invalid_client_with_the_reason(simulator, apple, keys, claims, kid, reason):
    answer = token_request(simulator, assertion(keys, kid=kid, **claims))
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_client" and reason in answer.json()["error_description"]


def test_another_key_a_replay_a_revoked_key_and_a_wrong_scope_are_refused(simulator, apple, keys):
    other = key_pair()
    assert "does not verify" in token_request(simulator, assertion(other)).json()["error_description"]
    signed = assertion(keys)
    assert token_request(simulator, signed).status_code == 200
    assert "used before" in token_request(simulator, signed).json()["error_description"]
    assert token_request(simulator, assertion(keys), scope="school.api").json()["error"] == "invalid_scope"
    apple.revoke_key(CLIENT, KID)
    assert "revoked" in token_request(simulator, assertion(keys)).json()["error_description"]


def test_asking_for_tokens_too_often_is_a_400(simulator, apple, keys):
    apple.max_token_requests_per_minute = 2
    statuses = [token_request(simulator, assertion(keys)).status_code for _ in range(3)]
    assert statuses == [200, 200, 400]


def api(simulator, apple, keys):
    token = token_request(simulator, assertion(keys)).json()["access_token"]
    return httpx.Client(base_url=f"{simulator.url}/apple/v1", headers={"Authorization": f"Bearer {token}"})


def test_org_devices_page_by_cursor_with_absolute_links_until_there_is_none(simulator, apple, keys):
    with api(simulator, apple, keys) as client:
        first = client.get("/orgDevices", params={"limit": 100}).json()
        assert len(first["data"]) == 100 and first["meta"]["paging"]["limit"] == 100
        link = first["links"]["next"]
        assert link.startswith(f"{simulator.url}/apple/v1/orgDevices?") and "cursor=" in link
        seen = [d["id"] for d in first["data"]]
        while link:
            page = client.get(link).json()
            seen += [d["id"] for d in page["data"]]
            link = page["links"].get("next")
        assert len(seen) == len(set(seen)) == 250
        assert client.get("/orgDevices").json()["meta"]["paging"]["limit"] == 100  # the default
        assert client.get("/orgDevices", params={"limit": 1001}).status_code == 400
        sparse = client.get("/orgDevices", params={"fields[orgDevices]": "serialNumber"}).json()["data"][0]
        assert list(sparse["attributes"]) == ["serialNumber"]


def test_without_a_live_token_the_api_answers_401_in_json_api_form(simulator, apple, keys):
    assert httpx.get(f"{simulator.url}/apple/v1/orgDevices").json()["errors"][0]["code"] == "NOT_AUTHORIZED"
    with api(simulator, apple, keys) as client:
        apple.expire_tokens()
        assert client.get("/orgDevices").status_code == 401


def test_a_released_device_leaves_the_listing_but_its_single_read_says_when(simulator, apple, keys):
    (serial,) = apple.release([3])
    with api(simulator, apple, keys) as client:
        listed = {d["id"] for d in client.get("/orgDevices", params={"limit": 1000}).json()["data"]}
        assert serial not in listed and len(listed) == 249
        single = client.get(f"/orgDevices/{serial}").json()["data"]
        assert single["attributes"]["releasedFromOrgDateTime"]


def test_shared_devices_carry_the_fleet_serials_some_in_another_case(simulator, apple):
    from syncplane_simulators.devices import device_identity

    shared = [i for i in range(apple.shared) if apple._fleet(i) is not None]
    serials = [apple.device(i)["id"] for i in shared]
    assert all(s.upper() == device_identity(apple.seed, i).serial.upper() for s, i in zip(serials, shared))
    assert any(s != s.upper() for s in serials) and any(s == s.upper() for s in serials)
    assert 0.4 * apple.base_records < len(shared) <= 0.6 * apple.base_records


def dep_session(simulator, *, secret=sim.DEP_ACCESS_SECRET):
    url = f"{simulator.url}/apple/dep/session"
    signer = OAuth1Client(sim.DEP_CONSUMER_KEY, client_secret=sim.DEP_CONSUMER_SECRET,
                          resource_owner_key=sim.DEP_ACCESS_TOKEN, resource_owner_secret=secret,
                          signature_method=SIGNATURE_HMAC)
    _, headers, _ = signer.sign(url, http_method="GET")
    return httpx.get(url, headers=headers)


def test_dep_checks_the_signature_and_rotates_the_session_on_every_answer(simulator, apple):
    assert dep_session(simulator, secret="wrong").status_code == 401
    session = dep_session(simulator).json()["auth_session_token"]
    url = f"{simulator.url}/apple/dep"
    answer = httpx.post(f"{url}/server/devices", json={"limit": 100}, headers={sim.SESSION_HEADER: session})
    assert answer.status_code == 200 and "cursor" in answer.json() and "more_to_follow" in answer.json()
    fresh = answer.headers[sim.SESSION_HEADER]
    assert fresh != session
    assert httpx.get(f"{url}/account", headers={sim.SESSION_HEADER: session}).status_code == 401  # spent
    account = httpx.get(f"{url}/account", headers={sim.SESSION_HEADER: fresh})
    assert account.json()["server_name"] == sim.SERVERS[sim.DEP_SERVER][1]
    cursor = answer.json()["cursor"]
    apple.expire_cursors()
    expired = httpx.post(f"{url}/devices/sync", json={"cursor": cursor},
                         headers={sim.SESSION_HEADER: account.headers[sim.SESSION_HEADER]})
    assert (expired.status_code, expired.text) == (400, "EXPIRED_CURSOR")
