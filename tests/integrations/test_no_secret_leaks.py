"""Secrets typed into the API never come out again: not in an API answer, a log line, the console, a sync
log's error summary or a record's failure reason, whatever the external system answers.

The simulator here is a careless vendor: its error bodies quote what the client sent (the Authorization
header, the decoded Basic password, the token request's form), which is exactly what the redaction has to
catch on the way to our messages.
"""

import base64
import json
import logging
import sys
from io import BytesIO, StringIO
from unittest import mock
from urllib.parse import parse_qs, quote, quote_plus

import pytest
from django.core.management import CommandError, call_command

from syncplane.integrations.choices import RunStatus
from syncplane.integrations.http import HttpClient
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog, SyncRecordOutcome
from syncplane_simulators.server import SimulatorServer

pytestmark = pytest.mark.django_db

USERNAME = "syncplane.integration"
CLIENT_ID = "syncplane-client"
# Characters that travel differently in a header, a form body and a query string: ':', ' ', '/', '+', '='.
PASSWORD = "Adm1n typed:P@ss/w0rd+=x"
CLIENT_SECRET = "Cl1ent-S3cret/typed+in=form"


class CarelessVendor:
    """WSGI middleware: any error answer of the simulator is replaced by one quoting the request's credentials.

    ``bare_basic`` also quotes the Basic credential without its scheme word (``c3luY3...``), as some
    gateways do ("invalid credential '...'").
    """

    def __init__(self, app):
        self.app = app
        self.mounts = app.mounts
        self.bare_basic = False

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = BytesIO(body)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = b"".join(self.app(environ, capture))
        status = captured["status"]
        if int(status.split()[0]) < 400 or "/_control/" in environ.get("PATH_INFO", ""):
            start_response(status, captured["headers"])
            return [chunks]
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, credential = auth.partition(" ")
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        quoted = []
        if scheme.lower() == "basic":
            quoted.append("password " + base64.b64decode(credential).decode().partition(":")[2])
            if self.bare_basic:
                quoted.append(f"credential {credential}")
        for name in ("password", "client_secret"):
            if name in form:
                quoted.append(f"{name} {form[name]}")
        if auth:
            quoted.append(f"Authorization: {auth}")
        if body:
            quoted.append(f"body {body.decode()}")
        error = {"error": {"message": "rejected", "detail": "; ".join(quoted)}, "status": "failure"}
        if "error" in form or environ.get("PATH_INFO", "").endswith("oauth_token.do"):
            error = {"error": "invalid_client", "error_description": "; ".join(quoted)}
        data = json.dumps(error).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() not in ("content-length", "content-type")]
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        start_response(status, headers)
        return [data]


@pytest.fixture
def vendor():
    server = SimulatorServer(records=60, seed=3)
    careless = CarelessVendor(server.app)
    server.app = careless
    server.servicenow.password = PASSWORD
    server.servicenow.client_secret = CLIENT_SECRET
    with server:
        careless.server = server
        careless.servicenow = server.servicenow
        yield careless


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    """Retries without waiting: a 500 is tried 5 times per attempt, and eager Celery retries 3 times."""
    monkeypatch.setattr(HttpClient, "_backoff", lambda self, retry_index: 0.0)


class CurrentStderr:
    """sys.stderr as it is when a line is written (pytest swaps it between a test's phases)."""

    def write(self, text):
        return sys.stderr.write(text)

    def flush(self):
        sys.stderr.flush()


@pytest.fixture
def everything_logged(caplog, capfd):
    """Every log record at DEBUG (ours, httpx's, httpcore's, Celery's), and the console handler's output."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "django", "celery", "syncplane"):
        caplog.set_level(logging.DEBUG, logger=name)
    root = logging.getLogger()
    console = [h for h in root.handlers if type(h) is logging.StreamHandler]
    streams = [h.stream for h in console]
    for handler in console:
        handler.setStream(CurrentStderr())  # capfd's while the test runs
    formatter = logging.Formatter()

    def text() -> str:
        parts = []
        for record in caplog.records:
            parts.append(record.getMessage())
            parts.append(repr(vars(record)))
            if record.exc_info:
                parts.append(formatter.formatException(record.exc_info))
        captured = capfd.readouterr()
        return "\n".join([*parts, captured.out, captured.err])

    try:
        yield text
    finally:
        for handler, stream in zip(console, streams, strict=True):
            handler.setStream(stream)


def forms_of(secret: str, user: str) -> dict[str, str]:
    """The ways a secret travels: as is, URL-encoded, form-encoded, base64, and as a Basic credential."""
    return {
        "plain": secret,
        "url-encoded": quote(secret, safe=""),
        "form-encoded": quote_plus(secret),
        "base64": base64.b64encode(secret.encode()).decode(),
        "basic": base64.b64encode(f"{user}:{secret}".encode()).decode(),
    }


def needles(system: ExternalSystem, vendor) -> dict[str, str]:
    found = {f"password {k}": v for k, v in forms_of(PASSWORD, USERNAME).items()}
    found.update({f"client secret {k}": v for k, v in forms_of(CLIENT_SECRET, CLIENT_ID).items()})
    for name, ref in system.credentials.items():
        if ref.startswith("enc:"):
            found[f"stored {name}"] = ref
            found[f"stored {name} token"] = ref[4:]
    # The tokens the vendor gave out are secrets too.
    for i, token in enumerate([*vendor.servicenow._tokens, *vendor.servicenow._refresh_tokens]):
        found[f"issued token {i}"] = token
    return found


def assert_clean(where: str, text: str, secrets: dict[str, str]) -> None:
    leaked = [name for name, value in secrets.items() if value in text]
    assert not leaked, f"{where} leaks {leaked}"


@pytest.fixture
def api(api_as):
    """One logged-in client per role (each role is one user)."""
    return {role: api_as(role) for role in ("admin", "operator", "viewer")}


def create(api, vendor, auth_type: str) -> tuple[ExternalSystem, list]:
    credentials = {
        "basic": {"username": USERNAME, "password": PASSWORD},
        "oauth2_client_credentials": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        "oauth2_password": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "username": USERNAME,
                            "password": PASSWORD},
    }[auth_type]
    response = api["admin"].post("/api/v1/integrations/", {
        "name": f"Leak probe {auth_type}",
        "system_type": "servicenow_cmdb",
        "base_url": f"{vendor.server.url}/servicenow",
        "auth_type": auth_type,
        "credentials": credentials,
        "config": {"page_size": 25},
    }, format="json")
    assert response.status_code == 201, response.content
    system = ExternalSystem.objects.get(pk=response.data["id"])
    assert all(v.startswith("enc:") for k, v in system.credentials.items() if k in ("password", "client_secret"))
    return system, [response]


def exercise(api, system, django_capture_on_commit_callbacks) -> tuple[IntegrationSyncLog, list]:
    """Test the connection, sync, and read everything the API shows about it."""
    operator, viewer = api["operator"], api["viewer"]
    responses = [operator.post(f"/api/v1/integrations/{system.pk}/test/")]
    with django_capture_on_commit_callbacks(execute=True):
        responses.append(operator.post(f"/api/v1/integrations/{system.pk}/sync/", {}, format="json"))
    assert responses[-1].status_code == 202, responses[-1].content
    log = IntegrationSyncLog.objects.get(pk=responses[-1].data["sync_log_id"])
    responses += [
        viewer.get(f"/api/v1/integration-sync-logs/{log.pk}/"),
        viewer.get("/api/v1/integration-sync-logs/"),
        viewer.get(f"/api/v1/integrations/{system.pk}/logs/"),
        viewer.get(f"/api/v1/integrations/{system.pk}/"),
        viewer.get("/api/v1/integrations/"),
        api["admin"].get(f"/api/v1/integrations/{system.pk}/"),
    ]
    assert all(r.status_code < 300 for r in responses), [r.status_code for r in responses]
    return log, responses


def stored_text(system) -> str:
    system.refresh_from_db()
    rows = [system.last_error]
    for log in IntegrationSyncLog.objects.filter(external_system=system):
        rows.append(log.error_summary)
        rows.extend(SyncRecordOutcome.objects.filter(sync_log=log).values_list("reason", flat=True))
    return "\n".join(rows)


def check_everything(system, vendor, responses, logged_text) -> None:
    secrets = needles(system, vendor)
    for response in responses:
        assert_clean(f"{response.request['REQUEST_METHOD']} {response.request['PATH_INFO']}",
                     response.content.decode() + repr(dict(response.items())), secrets)
    assert_clean("the logs", logged_text, secrets)
    assert_clean("the stored evidence", stored_text(system), secrets)


# (auth type, how the vendor misbehaves, status expected in the error summary)
SCENARIOS = [
    ("basic", "wrong password", "401"),
    ("basic", "fault 403", "403"),
    ("basic", "fault 500", "500"),
    ("basic", "fault 429", "429"),
    ("oauth2_password", "wrong client secret", "401"),
    ("oauth2_password", "token endpoint 500", "500"),
    ("oauth2_password", "revoked tokens", "401"),
    ("oauth2_password", "fault 403", "403"),
    ("oauth2_client_credentials", "wrong client secret", "401"),
    ("oauth2_client_credentials", "fault 429", "429"),
]


def misbehave(vendor, how: str) -> None:
    sn = vendor.servicenow
    if how == "wrong password":
        sn.password = "the-real-one-is-different"
    elif how == "wrong client secret":
        sn.client_secret = "the-real-one-is-different"
    elif how == "token endpoint 500":
        sn.inject_fault("status", status=500, count=None, path="oauth_token")
    elif how == "revoked tokens":
        # Every table request says 401, as for a revoked token: refreshed once, then an error.
        sn.inject_fault("status", status=401, count=None, path="/api/now/")
    elif how.startswith("fault "):
        status = int(how.split()[1])
        extra = {"retry_after": 0} if status == 429 else {}
        sn.inject_fault("status", status=status, count=None, path="/api/now/", **extra)
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.mark.parametrize(("auth_type", "how", "status"), SCENARIOS)
def test_failed_syncs_leak_no_secret(api, vendor, everything_logged, django_capture_on_commit_callbacks,
                                     auth_type, how, status):
    system, responses = create(api, vendor, auth_type)
    misbehave(vendor, how)
    log, more = exercise(api, system, django_capture_on_commit_callbacks)
    responses += more
    log.refresh_from_db()
    assert log.status == RunStatus.FAILED and status in log.error_summary
    # The vendor quoted the credentials, and what reached us was masked: the redaction really ran.
    assert "***" in log.error_summary, log.error_summary
    connection_test = responses[1].json()
    assert connection_test["ok"] is False and "***" in connection_test["message"]
    check_everything(system, vendor, responses, everything_logged())


@pytest.mark.parametrize("auth_type", ["basic", "oauth2_password"])
def test_successful_and_partial_syncs_leak_no_secret(api, vendor, everything_logged,
                                                     django_capture_on_commit_callbacks, auth_type):
    system, responses = create(api, vendor, auth_type)
    vendor.servicenow.inject_fault("malformed", indices=[1, 2, 3], count=None)
    log, more = exercise(api, system, django_capture_on_commit_callbacks)
    responses += more
    log.refresh_from_db()
    assert log.status == RunStatus.PARTIAL and log.records_failed == 3
    reasons = list(SyncRecordOutcome.objects.filter(sync_log=log, status="failed").values_list("reason", flat=True))
    assert len(reasons) == 3 and all(reasons)
    assert responses[1].json()["ok"] is True
    check_everything(system, vendor, responses, everything_logged())


def test_a_failed_cli_sync_leaks_no_secret(api, vendor, everything_logged):
    system, responses = create(api, vendor, "oauth2_password")
    misbehave(vendor, "wrong client secret")
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("sync", str(system.pk), stdout=out, stderr=err)
    assert "401" in str(caught.value) and "***" in str(caught.value)
    text = "\n".join([str(caught.value), out.getvalue(), err.getvalue(), everything_logged()])
    assert_clean("the command's output", text, needles(system, vendor))
    assert_clean("the stored evidence", stored_text(system), needles(system, vendor))


def crash_with_the_password_in_the_message(api, vendor, django_capture_on_commit_callbacks):
    """An unexpected exception (not an IntegrationError) whose text holds the admin-typed password."""
    system, responses = create(api, vendor, "basic")
    from syncplane.integrations.connectors.servicenow import cmdb as servicenow_cmdb

    with mock.patch.object(servicenow_cmdb.ServiceNowCMDBConnector, "fetch",
                           side_effect=RuntimeError(f"unexpected: {PASSWORD}")):
        log, more = exercise(api, system, django_capture_on_commit_callbacks)
    log.refresh_from_db()
    assert log.status == RunStatus.FAILED and "RuntimeError" in log.error_summary
    return system, responses + more


def test_a_crash_inside_the_connector_keeps_its_text_out_of_the_api_and_evidence(
        api, vendor, everything_logged, django_capture_on_commit_callbacks):
    system, responses = crash_with_the_password_in_the_message(api, vendor, django_capture_on_commit_callbacks)
    secrets = needles(system, vendor)
    for response in responses:
        assert_clean(response.request["PATH_INFO"], response.content.decode(), secrets)
    assert_clean("the stored evidence", stored_text(system), secrets)


def test_a_crash_inside_the_connector_keeps_its_text_out_of_the_logs(
        api, vendor, everything_logged, django_capture_on_commit_callbacks):
    crash_with_the_password_in_the_message(api, vendor, django_capture_on_commit_callbacks)
    assert_clean("the logs", everything_logged(), {"password plain": PASSWORD})


def test_a_vendor_quoting_the_bare_basic_credential_leaks_nothing(api, vendor, everything_logged,
                                                                  django_capture_on_commit_callbacks):
    system, responses = create(api, vendor, "basic")
    vendor.bare_basic = True
    misbehave(vendor, "fault 403")
    log, more = exercise(api, system, django_capture_on_commit_callbacks)
    log.refresh_from_db()
    assert log.status == RunStatus.FAILED and "credential" in log.error_summary
    check_everything(system, vendor, responses + more, everything_logged())
