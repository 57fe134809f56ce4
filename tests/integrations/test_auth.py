"""OAuth2Auth and the simple authenticators, over real HTTP against a scripted token endpoint and API."""

import base64
import itertools
import logging
import threading
import time

import pytest

from syncplane.core.context import reset_correlation_id, set_correlation_id
from syncplane.integrations.auth import ApiKeyHeaderAuth, BearerTokenAuth, OAuth2Auth, basic_auth
from syncplane.integrations.errors import AuthenticationError, PolicyViolation, TransientError
from syncplane.integrations.http import HttpClient
from tests.integrations.httpserver import Recorded, Reply, ScriptedServer

TOKEN_PATH = "/oauth_token.do"
CLIENT_SECRET = "cs-Sup3r/Secret+value"
PASSWORD = "user-P4ssword!"


class FakeAuthServer:
    """A ServiceNow-like token endpoint and an API that accepts only the tokens it issued."""

    def __init__(self, expires_in: int = 1799, token_delay: float = 0.0):
        self.expires_in = expires_in
        self.token_delay = token_delay
        self.valid_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.token_status: int | None = None  # force an error answer
        self._numbers = itertools.count(1)

    def token(self, request: Recorded) -> Reply:
        if self.token_delay:
            time.sleep(self.token_delay)
        if self.token_status:
            return Reply(
                self.token_status,
                json={"error": "invalid_client", "error_description": "Client authentication failed"},
            )
        if request.header("Content-Type") != "application/x-www-form-urlencoded":
            return Reply(400, json={"error": "invalid_request", "error_description": "form body required"})
        form = request.form
        n = next(self._numbers)
        body = {"access_token": f"at-{n}", "token_type": "Bearer", "expires_in": self.expires_in}
        grant = form.get("grant_type")
        if grant == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                return Reply(401, json={"error": "invalid_grant", "error_description": "bad refresh token"})
        elif grant == "password":
            if form.get("password") != PASSWORD:
                return Reply(401, json={"error": "invalid_grant", "error_description": "bad user"})
            body["refresh_token"] = f"rt-{n}"
            self.refresh_tokens.add(body["refresh_token"])
        elif grant != "client_credentials":
            return Reply(400, json={"error": "unsupported_grant_type"})
        self.valid_tokens.add(body["access_token"])
        return Reply(200, json=body)

    def api(self, request: Recorded) -> Reply:
        auth = request.header("Authorization") or ""
        if auth.removeprefix("Bearer ") not in self.valid_tokens:
            return Reply(401, json={"error": {"message": "User Not Authenticated"}})
        return Reply(200, json={"result": [{"sys_id": "1"}]})

    def revoke_all(self) -> None:
        self.valid_tokens.clear()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server():
    s = ScriptedServer().start()
    yield s
    s.stop()


@pytest.fixture
def fake(server):
    fake = FakeAuthServer()
    server.route(TOKEN_PATH, fake.token)
    server.route("/api/", fake.api)
    return fake


@pytest.fixture
def clock():
    return Clock()


def oauth(server, clock, **kwargs):
    return OAuth2Auth(
        f"{server.url}{TOKEN_PATH}",
        "client-1",
        CLIENT_SECRET,
        clock=clock,
        allow_insecure=True,
        **kwargs,
    )


def client_for(server, auth, **kwargs):
    return HttpClient(server.url, auth=auth, allow_insecure=True, sleep=lambda s: None, **kwargs)


def test_token_is_fetched_once_and_cached(server, fake, clock):
    auth = oauth(server, clock)
    with client_for(server, auth) as client:
        for _ in range(3):
            assert client.get_json("/api/now/table/cmdb_ci")["result"]
    assert auth.token_requests == 1
    token_calls = server.requests_to(TOKEN_PATH)
    assert len(token_calls) == 1
    assert all(
        r.header("Authorization") == "Bearer at-1" for r in server.requests_to("/api/now/table/cmdb_ci")
    )


def test_token_request_is_form_encoded_with_credentials_in_the_body(server, fake, clock):
    auth = oauth(server, clock, scope="useraccount", extra_params={"resource": "https://r"})
    with client_for(server, auth) as client:
        client.get("/api/x")
    call = server.requests_to(TOKEN_PATH)[0]
    assert call.method == "POST"
    assert call.header("Content-Type") == "application/x-www-form-urlencoded"
    assert not call.body.startswith(b"{")
    assert call.form == {
        "grant_type": "client_credentials",
        "client_id": "client-1",
        "client_secret": CLIENT_SECRET,
        "scope": "useraccount",
        "resource": "https://r",
    }
    assert call.header("Authorization") is None


def test_client_credentials_in_basic_header(server, fake, clock):
    auth = oauth(server, clock, token_in_body=False)
    with client_for(server, auth) as client:
        client.get("/api/x")
    call = server.requests_to(TOKEN_PATH)[0]
    assert "client_secret" not in call.form
    expected = base64.b64encode(f"client-1:{CLIENT_SECRET}".encode()).decode()
    assert call.header("Authorization") == f"Basic {expected}"


def test_token_is_refreshed_early_when_it_expires(server, fake, clock):
    auth = oauth(server, clock, early_refresh_seconds=60)
    with client_for(server, auth) as client:
        client.get("/api/x")
        clock.now += 1799 - 60 - 1  # still inside the safe window
        client.get("/api/x")
        assert auth.token_requests == 1
        clock.now += 2  # now within 60 s of expiry
        client.get("/api/x")
    assert auth.token_requests == 2
    assert server.requests_to("/api/x")[-1].header("Authorization") == "Bearer at-2"


def test_401_refreshes_once_and_retries_once(server, fake, clock):
    auth = oauth(server, clock)
    with client_for(server, auth) as client:
        client.get("/api/x")
        fake.revoke_all()  # the token is revoked before it expires
        assert client.get_json("/api/x")["result"]
    assert auth.token_requests == 2
    assert [r.header("Authorization") for r in server.requests_to("/api/x")] == [
        "Bearer at-1",
        "Bearer at-1",
        "Bearer at-2",
    ]


def test_second_401_is_an_authentication_error(server, fake, clock):
    server.script("/api/denied", Reply(401, json={"error": {"message": "User Not Authenticated"}}))
    auth = oauth(server, clock)
    with client_for(server, auth) as client, pytest.raises(AuthenticationError) as caught:
        client.get("/api/denied")
    assert caught.value.status_code == 401
    assert len(server.requests_to("/api/denied")) == 2  # the original and one retry, no more
    assert auth.token_requests == 2


def test_password_grant_then_refresh_token_grant(server, fake, clock):
    auth = oauth(server, clock, grant="password", username="svc.syncplane", password=PASSWORD)
    with client_for(server, auth) as client:
        client.get("/api/x")
        clock.now += 1799
        client.get("/api/x")
    first, second = (r.form for r in server.requests_to(TOKEN_PATH))
    assert first["grant_type"] == "password"
    assert (first["username"], first["password"]) == ("svc.syncplane", PASSWORD)
    assert second["grant_type"] == "refresh_token"
    assert second["refresh_token"] == "rt-1"
    assert "password" not in second


def test_failed_refresh_falls_back_to_a_fresh_grant(server, fake, clock):
    auth = oauth(server, clock, grant="password", username="svc.syncplane", password=PASSWORD)
    with client_for(server, auth) as client:
        client.get("/api/x")
        fake.refresh_tokens.clear()  # the refresh token expired on the server
        clock.now += 1799
        assert client.get("/api/x").status_code == 200
    grants = [r.form["grant_type"] for r in server.requests_to(TOKEN_PATH)]
    assert grants == ["password", "refresh_token", "password"]


def test_token_endpoint_401_is_an_authentication_error_without_the_secret(server, fake, clock, caplog):
    caplog.set_level(logging.DEBUG)
    fake.token_status = 401
    auth = oauth(server, clock)
    with client_for(server, auth) as client, pytest.raises(AuthenticationError) as caught:
        client.get("/api/x")
    message = str(caught.value)
    assert message == "OAuth token request answered 401: invalid_client: Client authentication failed"
    assert CLIENT_SECRET not in message
    assert all(CLIENT_SECRET not in r.getMessage() for r in caplog.records)
    assert server.requests_to("/api/x") == []


def test_token_endpoint_503_is_transient_and_retried(server, fake, clock):
    auth = oauth(server, clock)
    sleeps = []
    server.script(TOKEN_PATH, Reply(503, headers={"Retry-After": "4"}))
    with HttpClient(
        server.url, auth=auth, allow_insecure=True, sleep=sleeps.append, max_attempts=2
    ) as client:
        with pytest.raises(TransientError) as caught:
            client.get("/api/x")
    assert caught.value.status_code == 503
    assert caught.value.retry_after == 4.0
    assert sleeps == [4.0]
    assert server.requests_to("/api/x") == []


def test_token_endpoint_recovers_after_transient_error(server, fake, clock):
    auth = oauth(server, clock)
    server.script(TOKEN_PATH, Reply(502), fake.token)
    with client_for(server, auth) as client:
        assert client.get("/api/x").status_code == 200
        assert client.stats["retries"] == 1
    assert auth.token_requests == 2
    assert len(server.requests_to("/api/x")) == 1


def test_concurrent_requests_share_one_token_request(server, clock):
    fake = FakeAuthServer(token_delay=0.2)
    server.route(TOKEN_PATH, fake.token)
    server.route("/api/", fake.api)
    auth = oauth(server, clock)
    errors = []
    with client_for(server, auth) as client:

        def work():
            try:
                client.get("/api/x")
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert auth.token_requests == 1
    assert len(server.requests_to("/api/x")) == 8


def test_token_request_carries_the_correlation_id(server, fake, clock):
    token = set_correlation_id("corr-oauth")
    try:
        with client_for(server, oauth(server, clock)) as client:
            client.get("/api/x")
    finally:
        reset_correlation_id(token)
    assert server.requests_to(TOKEN_PATH)[0].header("X-Correlation-ID") == "corr-oauth"


def test_token_url_is_checked_by_the_url_policy():
    with pytest.raises(PolicyViolation):
        OAuth2Auth("http://169.254.169.254/token", "id", "secret", allow_insecure=True)
    with pytest.raises(PolicyViolation):
        OAuth2Auth("http://127.0.0.1/token", "id", "secret", allow_insecure=False)


def test_simple_authenticators(server):
    server.script("/x", Reply(200, json={}))
    for auth, header, value in (
        (BearerTokenAuth("tok-1"), "Authorization", "Bearer tok-1"),
        (BearerTokenAuth("hec-1", scheme="Splunk"), "Authorization", "Splunk hec-1"),
        (ApiKeyHeaderAuth("DD-API-KEY", "dd-1"), "DD-API-KEY", "dd-1"),
        (basic_auth("u", "p"), "Authorization", "Basic " + base64.b64encode(b"u:p").decode()),
    ):
        with client_for(server, auth) as client:
            client.get("/x")
        assert server.requests[-1].header(header) == value
        assert list(auth.secret_values())
