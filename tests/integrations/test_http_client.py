"""HttpClient against a real HTTP server on 127.0.0.1: retries, errors, policy, redaction, logging."""

import base64
import gc
import logging
import socket
import time
import weakref
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import quote

import httpx
import pytest

from syncplane.core.context import reset_correlation_id, set_correlation_id
from syncplane.integrations.auth import basic_auth
from syncplane.integrations.errors import (
    AuthenticationError,
    ConnectFailure,
    PermanentError,
    PolicyViolation,
    TransientError,
)
from syncplane.integrations.http import HttpClient, TokenBucket, describe_connect_failure, parse_retry_after
from tests.integrations.httpserver import Reply, ScriptedServer

OK = Reply(200, json={"result": []})


@pytest.fixture
def server():
    s = ScriptedServer().start()
    yield s
    s.stop()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def make_client(server, sleeps):
    clients = []

    def make(**kwargs):
        kwargs.setdefault("allow_insecure", True)
        kwargs.setdefault("sleep", sleeps.append)
        client = HttpClient(kwargs.pop("base_url", server.url), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_a_read_response_is_freed_when_dropped_not_left_to_the_garbage_collector(server, make_client):
    # httpx links a response and its stream both ways; a page body kept alive until the next full collection
    # made a long sync's memory grow with its length.
    server.script("/x", Reply(200, json={"result": [{"name": "n" * 1000}] * 100}))
    response = make_client().get("/x")
    assert response.json()["result"][0]["name"] == "n" * 1000
    dropped = weakref.ref(response)
    gc.disable()
    try:
        del response
        assert dropped() is None
    finally:
        gc.enable()


# --- retries -------------------------------------------------------------------------------------------


def test_429_waits_exactly_retry_after_seconds(server, make_client, sleeps):
    server.script("/api/now/table/cmdb_ci", Reply(429, headers={"Retry-After": "7"}), OK)
    client = make_client()
    assert client.get_json("/api/now/table/cmdb_ci") == {"result": []}
    assert sleeps == [7.0]
    assert client.stats == {"requests": 2, "retries": 1}


def test_429_honours_retry_after_http_date(server, make_client, sleeps):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    server.script("/x", Reply(429, headers={"Retry-After": when}), OK)
    make_client().get("/x")
    assert len(sleeps) == 1
    assert 117 <= sleeps[0] <= 120


def test_503_then_success_backs_off_within_the_first_bound(server, make_client, sleeps):
    server.script("/x", Reply(503), OK)
    response = make_client(backoff_base=2.0).get("/x")
    assert response.status_code == 200
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 2.0


def test_attempts_are_bounded_then_transient_error(server, make_client, sleeps):
    server.script("/x", Reply(503, json={"error": {"message": "Service Unavailable"}}))
    client = make_client(max_attempts=6, backoff_base=1.0, backoff_max=5.0)
    with pytest.raises(TransientError) as caught:
        client.get("/x")
    assert caught.value.status_code == 503
    assert "GET /x answered 503: Service Unavailable" in str(caught.value)
    assert len(server.requests_to("/x")) == 6
    assert len(sleeps) == 5
    # Full jitter: the n-th retry waits somewhere in [0, min(backoff_max, base * 2**n)].
    for n, wait in enumerate(sleeps):
        assert 0 <= wait <= min(5.0, 1.0 * 2**n)
    assert client.stats == {"requests": 6, "retries": 5}


def test_jitter_spreads_waits(server, make_client, sleeps):
    server.script("/x", Reply(502))
    client = make_client(max_attempts=30, backoff_base=1.0, backoff_max=8.0)
    with pytest.raises(TransientError):
        client.get("/x")
    late = sleeps[5:]  # all capped at 8
    assert max(late) <= 8.0
    assert len({round(w, 6) for w in late}) > 1, "waits should be random, not fixed"


def test_last_attempt_error_carries_retry_after(server, make_client, sleeps):
    server.script("/x", Reply(429, headers={"Retry-After": "2"}))
    with pytest.raises(TransientError) as caught:
        make_client(max_attempts=3).get("/x")
    assert sleeps == [2.0, 2.0]
    assert caught.value.status_code == 429
    assert caught.value.retry_after == 2.0


def test_retry_after_above_the_cap_is_left_to_the_task_layer(server, make_client, sleeps):
    server.script("/x", Reply(429, headers={"Retry-After": "3600"}), OK)
    with pytest.raises(TransientError) as caught:
        make_client(retry_after_max=300).get("/x")
    assert caught.value.retry_after == 3600
    assert sleeps == []
    assert len(server.requests_to("/x")) == 1


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_other_4xx_are_permanent_and_not_retried(server, make_client, sleeps, status):
    body = {"error": {"message": "No Record found", "detail": "Record doesn't exist"}, "status": "failure"}
    server.script("/api/now/table/x", Reply(status, json=body))
    with pytest.raises(PermanentError) as caught:
        make_client().get("/api/now/table/x")
    assert not isinstance(caught.value, AuthenticationError)
    assert str(caught.value) == (
        f"GET /api/now/table/x answered {status}: No Record found: Record doesn't exist"
    )
    assert caught.value.status_code == status
    assert len(server.requests_to("/api/now/table/x")) == 1
    assert sleeps == []


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_authentication_errors(server, make_client, status):
    server.script("/x", Reply(status, json={"error": {"message": "User Not Authenticated"}}))
    with pytest.raises(AuthenticationError) as caught:
        make_client().get("/x")
    assert caught.value.status_code == status
    assert len(server.requests_to("/x")) == 1


def test_post_is_not_repeated_after_an_ambiguous_500(server, make_client, sleeps):
    server.script("/x", Reply(500), Reply(201, json={}))
    with pytest.raises(TransientError):
        make_client().post("/x", json={"a": 1}, expected=(201,))
    assert len(server.requests_to("/x")) == 1


def test_post_is_repeated_after_503(server, make_client, sleeps):
    server.script("/x", Reply(503, headers={"Retry-After": "1"}), Reply(201, json={"id": 1}))
    response = make_client().post("/x", json={"a": 1}, expected=(201,))
    assert response.json() == {"id": 1}
    bodies = [r.body for r in server.requests_to("/x")]
    assert len(bodies) == 2 and bodies[0] == bodies[1] == b'{"a":1}'


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_connection_fails_at_once_naming_host_port_and_cause(sleeps):
    port = closed_port()
    client = HttpClient(f"http://127.0.0.1:{port}", allow_insecure=True, max_attempts=3, sleep=sleeps.append)
    with pytest.raises(ConnectFailure) as caught:
        client.get("/x")
    assert str(caught.value) == (
        f"GET /x failed: cannot connect to 127.0.0.1:{port}: connection refused "
        "(nothing listens on that port: check the host and port)"
    )
    assert caught.value.kind == "transient" and caught.value.lasting
    assert sleeps == []  # a refusal does not heal in the seconds a retry would wait
    client.close()


def test_https_against_an_http_server_fails_at_once_as_a_tls_mismatch(server, sleeps):
    client = HttpClient(server.url.replace("http://", "https://"), allow_insecure=True, max_attempts=3,
                        sleep=sleeps.append)
    with pytest.raises(ConnectFailure) as caught:
        client.get("/x")
    port = server.url.rsplit(":", 1)[1]
    assert str(caught.value) == (
        f"GET /x failed: cannot connect to 127.0.0.1:{port}: TLS handshake failed: the server does not speak "
        "TLS on this port (is it an http:// address?)"
    )
    assert caught.value.lasting and sleeps == [] and server.requests_to("/x") == []
    client.close()


def test_a_connect_timeout_is_retried_and_says_so(sleeps):
    # A listening socket whose backlog is full: the next SYN is never answered, so connecting times out.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            client = HttpClient(f"http://127.0.0.1:{port}", allow_insecure=True, max_attempts=2,
                                connect_timeout=0.3, sleep=sleeps.append)
            with pytest.raises(ConnectFailure) as caught:
                client.get("/x")
            client.close()
        finally:
            for filler in fillers:
                filler.close()
    assert str(caught.value) == f"GET /x failed: cannot connect to 127.0.0.1:{port}: timed out while connecting"
    assert not caught.value.lasting and len(sleeps) == 1  # worth a retry


def test_a_name_that_stops_resolving_is_a_dns_failure_worth_a_retry():
    with pytest.raises(httpx.ConnectError) as raised:
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as exc:
            raise httpx.ConnectError("[Errno -2] Name or service not known") from exc
    assert describe_connect_failure(raised.value) == ("DNS: the host name does not resolve", False)


def test_read_timeout_is_retried_for_get(server, make_client, sleeps):
    calls = []

    def slow_once(request):
        calls.append(request)
        if len(calls) == 1:
            time.sleep(0.5)
        return OK

    server.route("/slow", slow_once)
    response = make_client(timeout=0.2).get("/slow")
    assert response.status_code == 200
    assert len(calls) == 2 and len(sleeps) == 1


def test_unexpected_2xx_is_permanent(server, make_client):
    server.script("/x", Reply(204))
    with pytest.raises(PermanentError, match="answered 204"):
        make_client().get("/x")


def test_expected_statuses_are_returned(server, make_client):
    server.script("/x", Reply(404, json={"error": {"message": "No Record found"}}))
    assert make_client().get("/x", expected=(200, 404)).status_code == 404


# --- JSON ----------------------------------------------------------------------------------------------


def test_html_200_from_a_sleeping_instance_is_transient(server, make_client):
    server.script(
        "/api/now/table/x",
        Reply(200, body="<html>Your instance is hibernating</html>", content_type="text/html; charset=utf-8"),
    )
    with pytest.raises(TransientError, match="expected JSON, got text/html"):
        make_client().get_json("/api/now/table/x")


def test_a_truncated_json_body_is_retried_within_the_request(server, make_client, sleeps):
    server.script("/page", Reply(200, body=b'{"result": [{"sys_id": "a"}, {"sys_', content_type="application/json"),
                  Reply(200, json={"result": [{"sys_id": "a"}]}))
    client = make_client()
    assert client.get_json("/page") == {"result": [{"sys_id": "a"}]}
    assert len(server.requests_to("/page")) == 2 and len(sleeps) == 1


def test_garbage_json_fails_after_the_bounded_attempts_with_a_clear_message(server, make_client, sleeps):
    server.script("/page", Reply(200, body=b"\x00garbage", content_type="application/json"))
    client = make_client(max_attempts=3)
    with pytest.raises(TransientError) as caught:
        client.json(client.get("/page"))
    assert str(caught.value).startswith("GET /page answered malformed JSON (a body cut short or not JSON: ")
    assert caught.value.status_code == 200
    assert len(server.requests_to("/page")) == 3 and len(sleeps) == 2


def test_a_post_with_a_malformed_answer_is_not_sent_again(server, make_client, sleeps):
    server.script("/create", Reply(201, body=b'{"id": ', content_type="application/json"))
    client = make_client()
    with pytest.raises(TransientError, match="malformed JSON"):
        client.json(client.post("/create", json={"a": 1}, expected=(201,)))
    assert len(server.requests_to("/create")) == 1  # the server may have acted on it


def test_vendor_message_is_truncated(server, make_client):
    server.script("/x", Reply(400, json={"message": "x" * 1000}))
    with pytest.raises(PermanentError) as caught:
        make_client().get("/x")
    vendor = str(caught.value).split(": ", 1)[1]
    assert len(vendor) == 300


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"errors": [{"message": "first"}, "second"]}, "first; second"),
        ({"errorMessages": ["Issue does not exist"], "errors": {}}, "Issue does not exist"),
        ({"error": "invalid_grant", "error_description": "expired"}, "invalid_grant: expired"),
        (
            {"description": "Validation failed", "errors": [{"field": "name", "message": "missing"}]},
            "Validation failed; name: missing",
        ),
    ],
)
def test_vendor_message_envelopes(server, make_client, body, expected):
    server.script("/x", Reply(400, json=body))
    with pytest.raises(PermanentError) as caught:
        make_client().get("/x")
    assert str(caught.value) == f"GET /x answered 400: {expected}"


# --- URL policy ----------------------------------------------------------------------------------------


def test_base_url_is_checked():
    with pytest.raises(PolicyViolation):
        HttpClient("http://127.0.0.1:9", allow_insecure=False)
    with pytest.raises(PolicyViolation):
        HttpClient("http://169.254.169.254/", allow_insecure=True)


def test_link_url_to_another_host_is_refused(server, make_client):
    client = make_client()
    for url in (
        "https://evil.example.com/api/now/table/x",
        f"http://127.0.0.1:{server.port + 1}/x",  # same host, another port
        f"https://127.0.0.1:{server.port}/x",  # another scheme
        "//evil.example.com/x",
    ):
        with pytest.raises(PolicyViolation):
            client.get(url)
    assert server.requests == []


def test_link_url_to_the_same_origin_is_followed(server, make_client):
    server.script("/api/now/table/x", OK)
    response = make_client().get(f"{server.url}/api/now/table/x?sysparm_offset=100")
    assert response.status_code == 200
    assert server.requests[0].query == {"sysparm_offset": ["100"]}


def test_redirect_to_another_host_is_refused(server, make_client):
    other = ScriptedServer().start()
    try:
        server.script("/x", Reply(302, headers={"Location": f"{other.url}/steal"}))
        with pytest.raises(PermanentError, match="redirect to .* refused"):
            make_client().get("/x")
        assert other.requests == []
    finally:
        other.stop()


def test_same_host_redirects_are_followed_up_to_three(server, make_client):
    server.script("/a", Reply(301, headers={"Location": "/b"}))
    server.script("/b", Reply(307, headers={"Location": f"{server.url}/c"}))
    server.script("/c", OK)
    assert make_client().get("/a").json() == {"result": []}
    server.script("/loop", Reply(302, headers={"Location": "/loop"}))
    with pytest.raises(PermanentError, match="redirects"):
        make_client().get("/loop")
    assert len(server.requests_to("/loop")) == 4


# --- headers, secrets, logs ---------------------------------------------------------------------------


def test_default_headers_and_correlation_id(server, make_client):
    server.script("/x", OK)
    token = set_correlation_id("corr-42")
    try:
        make_client().get("/x")
    finally:
        reset_correlation_id(token)
    sent = server.requests[0]
    assert sent.header("X-Correlation-ID") == "corr-42"
    assert sent.header("Accept") == "application/json"
    assert sent.header("User-Agent").startswith("Syncplane/")


def test_secrets_never_reach_messages_or_logs(server, make_client, caplog):
    secret = "Pa55-w0rd/very+secret"
    forms = [
        secret,
        quote(secret, safe=""),  # as it travels in a query string
        base64.b64encode(f"integration:{secret}".encode()).decode(),  # as it travels in Basic auth
    ]
    echo = {"error": {"message": f"bad password {secret}", "detail": "Authorization: Basic xyz123=="}}
    server.script("/x", Reply(503), Reply(400, json=echo))
    caplog.set_level(logging.DEBUG)
    client = make_client(auth=basic_auth("integration", secret), secrets=[secret])
    with pytest.raises(PermanentError) as caught:
        client.get("/x", params={"access_token": secret})
    assert all(form not in str(caught.value) for form in forms)
    assert "bad password ***" in str(caught.value)
    assert server.requests[0].header("Authorization") == f"Basic {forms[2]}"  # it was sent, though
    ours = [r for r in caplog.records if r.name == "syncplane.http"]
    assert len(ours) == 2, "one DEBUG line per request is expected"
    assert all("access_token=***" in r.getMessage() for r in ours)
    # Every record of the client side (ours, httpx's, httpcore's); werkzeug's are the server's.
    for record in caplog.records:
        if record.name == "werkzeug":
            continue
        text = record.getMessage() + " ".join(str(v) for v in vars(record).values())
        assert all(form not in text for form in forms), record.name


def test_debug_log_line_per_request(server, make_client, caplog):
    server.script("/x", Reply(503), OK)
    caplog.set_level(logging.DEBUG, logger="syncplane.http")
    make_client().get("/x", params={"q": "a"})
    lines = [r for r in caplog.records if r.name == "syncplane.http"]
    assert [(r.http_method, r.http_status, r.attempt) for r in lines] == [("GET", 503, 1), ("GET", 200, 2)]
    assert lines[0].http_url == f"{server.url}/x?q=a"
    assert isinstance(lines[0].duration_ms, float)


# --- rate limit ----------------------------------------------------------------------------------------


def test_token_bucket_spaces_requests():
    now = [100.0]
    waits = []
    bucket = TokenBucket(4.0, sleep=waits.append, clock=lambda: now[0])
    for _ in range(3):
        bucket.acquire()
    assert waits == [0.25, 0.5]  # callers queue: the third waits for the second's slot too
    now[0] += 10
    waits.clear()
    bucket.acquire()
    assert waits == []


def test_client_rate_limit_sleeps_between_requests(server, make_client, sleeps):
    server.script("/x", OK)
    # A slot of 2 s (the sleeps are only recorded, so it costs nothing): a request must take 2 s before the next
    # one no longer needs to wait, where 0.1 s (10 per second) was within reach of a loaded machine.
    client = make_client(rate_limit_per_second=0.5)
    for _ in range(3):
        client.get("/x")
    assert len(sleeps) == 2
    assert 0 < sleeps[0] <= 2.0 and sleeps[0] < sleeps[1] <= 4.0  # the third waits for the second's slot too


def test_parse_retry_after():
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("Wed, 01 Jan 2025 00:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Tue, 31 Dec 2024 00:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
