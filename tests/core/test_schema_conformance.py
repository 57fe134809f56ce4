"""The API keeps the promises of its OpenAPI schema (issue 10.14): schemathesis generates requests for every
operation of /api/schema/, sends them as the admin through the WSGI app (in-process, on the test database),
and fails on any server error, any undocumented status code and any response that breaks its declared
schema. Bounded and derandomized: the same examples on every run, well under two minutes."""

import time

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from syncplane.changes.models import ChangeRequest
from syncplane.integrations.engine import run_sync, start_sync

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 20
# Seconds of this process's CPU, not of the wall clock: the budget is there to catch too many examples, and a
# machine busy with other work (CI's database, broker, other tests) does not make the examples more.
BUDGET_SECONDS = 120
# Checked with data of their own behind every list: tests/findings/test_schema.py.
CHECKED_ELSEWHERE = ("/api/v1/findings/", "/api/v1/scans/")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def wsgi_app():
    # Django closes the connection at the end of each request, which would end the test's transaction: the
    # test client avoids that the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def data(servicenow, make_user):
    """Something behind every list and detail: an integration with a finished sync, its assets, a change."""
    admin = make_user("admin", "schema-admin")
    run_sync(start_sync(servicenow).pk)
    ChangeRequest.objects.create(title="Patch the fleet", risk_score=20, requester=admin)
    return Token.objects.create(user=admin)


def test_every_operation_keeps_its_schema(wsgi_app, data):
    headers = {"Authorization": f"Token {data.key}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app, headers=headers)
    started = time.process_time()
    failures, tested = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith(CHECKED_ELSEWHERE):
            continue
        if time.process_time() - started > BUDGET_SECONDS:
            pytest.fail(f"the CPU-time budget ran out after {len(tested)} operations: lower EXAMPLES_PER_OPERATION")

        @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            Token.objects.get_or_create(key=data.key, defaults={"user": data.user})  # DELETE auth/token revokes it
            case.headers = {**(case.headers or {}), **headers}  # not the token schemathesis makes up
            response = case.call()
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            check()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - schemathesis raises a group; report every operation
            failures.append(f"{operation.label}: {exc}")
        tested.append(operation.label)
    assert len(tested) > 20
    assert not failures, "\n\n".join(failures)
