"""One correlation id follows a piece of work: the HTTP request, the sync log, the Celery task and every
request the connector makes to the external system."""

import re
import uuid
from io import StringIO
from types import SimpleNamespace

import pytest
from celery import signals
from celery.app.trace import build_tracer
from django.core.management import call_command

from syncplane.celery import app as celery_app
from syncplane.core import celery_signals
from syncplane.core.context import get_correlation_id, reset_correlation_id, set_correlation_id
from syncplane.integrations.choices import AuthType, RunStatus, SystemType
from syncplane.integrations.engine import start_sync
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog
from syncplane.integrations.secrets import to_reference
from syncplane.integrations.tasks import run_integration_sync
from syncplane_simulators.server import SimulatorServer

FRESH = re.compile(r"^[0-9a-f]{32}$")


# --- the HTTP request ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_callers_id_is_returned_on_the_response(api_as):
    response = api_as("viewer").get("/api/v1/integrations/", HTTP_X_CORRELATION_ID="trace-abc.1:2_3-4")
    assert response.status_code == 200
    assert response["X-Correlation-ID"] == "trace-abc.1:2_3-4"


@pytest.mark.django_db
def test_without_an_id_each_response_gets_its_own_fresh_one(api_as):
    viewer = api_as("viewer")
    first = viewer.get("/api/v1/integrations/")["X-Correlation-ID"]
    second = viewer.get("/api/v1/integrations/")["X-Correlation-ID"]
    assert FRESH.match(first) and FRESH.match(second) and first != second
    assert get_correlation_id() is None  # the request's id does not outlive the request


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "role", "body", "status"),
    [
        ("post", "/api/v1/integrations/", "admin", {"name": "x", "system_type": "nope"}, 400),
        ("post", "/api/v1/integrations/", "viewer", {}, 403),
        ("get", "/api/v1/integrations/987654/", "viewer", None, 404),
        ("get", "/api/v1/integrations/", "anonymous", None, 401),
    ],
)
def test_error_bodies_carry_the_correlation_id(api_as, method, path, role, body, status):
    response = getattr(api_as(role), method)(path, body, format="json", HTTP_X_CORRELATION_ID="err-trace-7")
    assert response.status_code == status, response.content
    assert response.json()["correlation_id"] == "err-trace-7"
    assert response["X-Correlation-ID"] == "err-trace-7"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "bad",
    ["has spaces in it", "x" * 300, "semi;colon", "<script>alert(1)</script>", "é-not-ascii", "a" * 129],
)
def test_an_invalid_id_is_replaced_by_a_fresh_one(api_as, bad):
    response = api_as("viewer").get("/api/v1/integrations/987654/", HTTP_X_CORRELATION_ID=bad)
    assert response.status_code == 404
    given = response["X-Correlation-ID"]
    assert given != bad and FRESH.match(given)
    assert response.json()["correlation_id"] == given  # the body quotes the id that was really used


@pytest.mark.django_db
def test_the_longest_acceptable_id_is_kept(api_as):
    longest = "a" * 128
    assert api_as("viewer").get("/api/v1/integrations/", HTTP_X_CORRELATION_ID=longest)["X-Correlation-ID"] == longest


# --- a simulator that records the correlation id of every request --------------------------------------


class HeaderRecorder:
    """WSGI middleware in front of the simulators: (method, path, X-Correlation-ID) of each request."""

    def __init__(self, app):
        self.app = app
        self.mounts = app.mounts  # SimulatorServer.urls reads it
        self.requests: list[tuple[str, str, str | None]] = []

    def __call__(self, environ, start_response):
        self.requests.append(
            (environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ.get("HTTP_X_CORRELATION_ID"))
        )
        return self.app(environ, start_response)

    def api_requests(self) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if "/_control/" not in r[1]]


@pytest.fixture
def recorded():
    server = SimulatorServer(records=120, seed=11)
    recorder = HeaderRecorder(server.app)
    server.app = recorder
    with server:
        recorder.server = server
        yield recorder


def integration(recorder, auth_type=AuthType.BASIC) -> ExternalSystem:
    if auth_type == AuthType.BASIC:
        credentials = {"username": "syncplane.integration", "password": to_reference("demo-password")}
    else:
        credentials = {"client_id": "syncplane-client", "client_secret": to_reference("demo-client-secret")}
    return ExternalSystem.objects.create(
        name="Recorded",
        system_type=SystemType.SERVICENOW_CMDB,
        category="cmdb",
        base_url=f"{recorder.server.url}/servicenow",
        auth_type=auth_type,
        credentials=credentials,
        config={"page_size": 40},
    )


@pytest.mark.django_db
def test_an_api_triggered_sync_stores_the_request_id_on_its_log(api_as, recorded,
                                                                django_capture_on_commit_callbacks):
    system = integration(recorded)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api_as("operator").post(f"/api/v1/integrations/{system.pk}/sync/", {}, format="json",
                                           HTTP_X_CORRELATION_ID="api-sync-42")
    assert response.status_code == 202 and response["X-Correlation-ID"] == "api-sync-42"
    assert len(callbacks) == 1  # the task is queued once the log is committed
    log = IntegrationSyncLog.objects.get(pk=response.data["sync_log_id"])
    assert log.correlation_id == "api-sync-42"
    detail = api_as("viewer").get(f"/api/v1/integration-sync-logs/{log.pk}/")
    assert detail.data["correlation_id"] == "api-sync-42"


@pytest.mark.django_db
def test_an_api_triggered_sync_sends_the_request_id_on_every_outbound_request(api_as, recorded,
                                                                             django_capture_on_commit_callbacks):
    system = integration(recorded)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_as("operator").post(f"/api/v1/integrations/{system.pk}/sync/", {}, format="json",
                                           HTTP_X_CORRELATION_ID="api-sync-43")
    log = IntegrationSyncLog.objects.get(pk=response.data["sync_log_id"])
    assert log.status == RunStatus.SUCCESS and log.correlation_id == "api-sync-43"
    sent = recorded.api_requests()
    assert len(sent) >= 3  # 120 records in pages of 40
    assert {r[2] for r in sent} == {"api-sync-43"}


@pytest.mark.django_db
def test_a_cli_sync_sends_its_logs_id_on_every_outbound_request(recorded):
    system = integration(recorded)
    call_command("sync", str(system.pk), "--no-progress", stdout=StringIO(), stderr=StringIO())
    log = IntegrationSyncLog.objects.get(external_system=system)
    sent = recorded.api_requests()
    assert sent and {r[2] for r in sent} == {log.correlation_id}


# --- Celery: from the publisher to the task --------------------------------------------------------------


@pytest.fixture
def restore_context():
    token = set_correlation_id(None)
    yield
    reset_correlation_id(token)


def test_publish_attaches_the_current_id_and_keeps_one_already_there(restore_context):
    headers = {"id": "t1", "task": "x"}
    celery_signals._attach_correlation_id(headers=headers)
    assert "correlation_id" not in headers  # nothing to carry

    token = set_correlation_id("pub-1")
    try:
        celery_signals._attach_correlation_id(headers=headers)
        assert headers["correlation_id"] == "pub-1"
        retry_headers = {"correlation_id": "original-id"}  # a retry republished from another context
        celery_signals._attach_correlation_id(headers=retry_headers)
        assert retry_headers["correlation_id"] == "original-id"
    finally:
        reset_correlation_id(token)


@pytest.mark.parametrize(("sent", "expected"), [("task-7", "task-7"), ("bad id!", None), (None, None)])
def test_prerun_restores_a_clean_id_and_postrun_forgets_it(restore_context, sent, expected):
    outer = set_correlation_id("outer")
    try:
        request = SimpleNamespace(correlation_id=sent) if sent else SimpleNamespace()
        task = SimpleNamespace(request=request)
        celery_signals._restore_correlation_id(task_id="tid-1", task=task)
        inside = get_correlation_id()
        if expected:
            assert inside == expected
        else:
            assert FRESH.match(inside) and inside != sent
        celery_signals._forget_correlation_id(task_id="tid-1")
        assert get_correlation_id() == "outer"
        assert "tid-1" not in celery_signals._tokens
    finally:
        reset_correlation_id(outer)


@pytest.fixture
def broker():
    """The in-memory broker of the test settings, really published to (not eager)."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        with celery_app.connection_for_write() as connection:
            queue = connection.SimpleQueue("integrations")
            queue.clear()
            try:
                yield queue
            finally:
                queue.clear()
                queue.close()
    finally:
        celery_app.conf.task_always_eager = eager


def test_a_published_task_carries_the_publishers_id_in_its_message(broker, restore_context):
    token = set_correlation_id("published-9")
    try:
        run_integration_sync.apply_async((123,))
    finally:
        reset_correlation_id(token)
    message = broker.get(timeout=2)
    message.ack()
    assert message.headers["task"] == run_integration_sync.name
    assert message.headers["correlation_id"] == "published-9"


@pytest.mark.django_db
def test_the_worker_runs_the_task_and_its_requests_under_the_published_id(broker, recorded, restore_context):
    system = integration(recorded, AuthType.OAUTH2_CLIENT_CREDENTIALS)
    token = set_correlation_id("from-the-api-5")  # as in an API request: the log and the task share the id
    try:
        log = start_sync(system)
        run_integration_sync.apply_async((log.pk,))
    finally:
        reset_correlation_id(token)
    message = broker.get(timeout=2)
    message.ack()
    args, kwargs, _embed = message.decode()

    seen = {}

    @signals.task_prerun.connect(weak=False)
    def spy(task=None, **_):  # connected after the handler under test: sees what it restored
        seen["inside"] = get_correlation_id()

    try:
        # What a worker does with a message: its headers become the task's request.
        tracer = build_tracer(run_integration_sync.name, run_integration_sync, app=celery_app, eager=True,
                              propagate=True)
        result, *_ = tracer(message.headers["id"], args, kwargs, dict(message.headers))
    finally:
        signals.task_prerun.disconnect(spy)
    assert result == RunStatus.SUCCESS
    assert seen["inside"] == "from-the-api-5"
    assert get_correlation_id() is None  # postrun put the worker's context back
    sent = recorded.api_requests()
    assert any(path == "/servicenow/oauth_token.do" for _m, path, _c in sent)  # the token request too
    assert len(sent) >= 4 and {cid for _m, _p, cid in sent} == {"from-the-api-5"}


def test_ids_are_unique_per_task_without_a_publisher_id(restore_context):
    ids = set()
    for _ in range(3):
        task_id = str(uuid.uuid4())
        celery_signals._restore_correlation_id(task_id=task_id, task=SimpleNamespace(request=SimpleNamespace()))
        ids.add(get_correlation_id())
        celery_signals._forget_correlation_id(task_id=task_id)
    assert len(ids) == 3
