"""The findings and scans endpoints keep their OpenAPI schema (the schemathesis check of tests/core, limited to
these operations, with findings behind every list and detail)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from rest_framework.authtoken.models import Token

from syncplane.findings.ingest import ingest_scan
from tests.core.test_schema_conformance import CHECKS, wsgi_app  # noqa: F401 (a fixture)
from tests.findings.factories import finding, summary

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(make_user):
    ingest_scan(tool="trivy", records=[finding("CVE-1", severity="critical"), finding("CVE-2", "zlib"), summary()])
    return Token.objects.create(user=make_user("admin", "schema-admin"))


def test_findings_and_scans_keep_their_schema(wsgi_app, token):  # noqa: F811
    headers = {"Authorization": f"Token {token.key}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app, headers=headers)
    failures, tested = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith(("/api/v1/findings/", "/api/v1/scans/")):
            continue

        @settings(max_examples=25, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            case.headers = {**(case.headers or {}), **headers}
            response = case.call()
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            check()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - schemathesis raises a group; report every operation
            failures.append(f"{operation.label}: {exc}")
        tested.append(operation.label)
    assert len(tested) >= 8, tested
    assert not failures, "\n\n".join(failures)
