"""The REST API: roles on every endpoint, validation, secrets never returned, sync triggering."""

import json

import pytest

from syncplane.integrations.choices import RunStatus
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog, verify_chain

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-typed-into-the-form"


def new_integration_body(simulator, **overrides):
    body = {
        "name": "SN",
        "system_type": "servicenow_cmdb",
        "base_url": f"{simulator.url}/servicenow",
        "auth_type": "basic",
        "credentials": {"username": "syncplane.integration", "password": SECRET},
        "config": {"page_size": 100},
    }
    body.update(overrides)
    return body


# (method, path template, body, role needed); {id} is an integration, {log} a sync log, {asset} an asset
ENDPOINTS = [
    ("get", "/api/v1/integrations/", None, "viewer"),
    ("get", "/api/v1/integrations/{id}/", None, "viewer"),
    ("get", "/api/v1/integrations/{id}/logs/", None, "viewer"),
    ("get", "/api/v1/integration-sync-logs/", None, "viewer"),
    ("get", "/api/v1/integration-sync-logs/{log}/", None, "viewer"),
    ("get", "/api/v1/integration-types/", None, "viewer"),
    ("get", "/api/v1/assets/", None, "viewer"),
    ("post", "/api/v1/integrations/{id}/test/", {}, "operator"),
    ("post", "/api/v1/integrations/{id}/sync/", {"dry_run": True}, "operator"),
    ("post", "/api/v1/integrations/{id}/preview/", {}, "operator"),
    ("patch", "/api/v1/integrations/{id}/", {"enabled": False}, "admin"),
    ("put", "/api/v1/integrations/{id}/", "full", "admin"),
    ("post", "/api/v1/integrations/", "new", "admin"),
    ("delete", "/api/v1/integrations/{id}/", None, "admin"),
]
RANK = {None: 0, "viewer": 1, "operator": 2, "admin": 3}


@pytest.mark.parametrize("caller", ["anonymous", None, "viewer", "operator", "admin"])
@pytest.mark.parametrize(("method", "path", "body", "needed"), ENDPOINTS)
def test_every_endpoint_checks_the_callers_role(api_as, servicenow, simulator, caller, method, path, body,
                                                needed):
    log = start_sync(servicenow)
    IntegrationSyncLog.objects.filter(pk=log.pk).update(status=RunStatus.FAILED)  # not active: sync may run
    url = path.format(id=servicenow.pk, log=log.pk)
    if body == "new":
        body = new_integration_body(simulator, name="Another")
    elif body == "full":
        body = new_integration_body(simulator, name="Renamed")
    response = getattr(api_as(caller), method)(url, body, format="json")
    if caller == "anonymous":
        assert response.status_code == 401
    elif RANK[caller] < RANK[needed]:
        assert response.status_code == 403
    else:
        assert response.status_code < 400, response.content


def test_secrets_are_stored_as_references_and_never_returned(api_as, simulator):
    admin = api_as("admin")
    created = admin.post("/api/v1/integrations/", new_integration_body(simulator), format="json")
    assert created.status_code == 201, created.content
    system = ExternalSystem.objects.get(pk=created.data["id"])
    assert system.credentials["password"].startswith("enc:")
    assert SECRET not in json.dumps(system.credentials)
    for response in (created, admin.get(f"/api/v1/integrations/{system.pk}/"), admin.get("/api/v1/integrations/")):
        assert SECRET not in response.content.decode()
        assert system.credentials["password"] not in response.content.decode()
    status = created.data["credentials_status"]
    assert status["password"] == {"set": True, "source": "enc"}
    assert status["username"] == {"set": True, "value": "syncplane.integration"}


def test_patch_keeps_credentials_not_sent(api_as, servicenow):
    before = dict(servicenow.credentials)
    response = api_as("admin").patch(f"/api/v1/integrations/{servicenow.pk}/", {"enabled": False}, format="json")
    assert response.status_code == 200
    servicenow.refresh_from_db()
    assert servicenow.credentials == before and servicenow.enabled is False


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"config": {"page_size": 0}}, "config", "page_size"),
        ({"config": {"tabel": "x"}}, "config", "tabel"),
        ({"config": {"table": "cmdb; drop"}}, "config", "table"),
        ({"system_type": "nope"}, "system_type", "nope"),
        ({"auth_type": "bearer"}, "auth_type", "supports"),
        ({"credentials": {"username": "u"}}, "credentials", "password"),
        ({"credentials": {"username": "u", "password": "p", "extra": "x"}}, "credentials", "extra"),
        ({"base_url": "ftp://example.com"}, "base_url", ""),
        ({"base_url": "http://169.254.169.254/latest"}, "base_url", "metadata"),
        ({"base_url": "ldaps://dc.example.org:636"}, "base_url", ""),  # an HTTP connector speaks no LDAP
        ({"credentials": {"username": "u", "password": "vault:"}}, "credentials", "password"),
    ],
)
def test_bad_input_gets_400_naming_the_field(api_as, simulator, overrides, field, reason):
    response = api_as("admin").post("/api/v1/integrations/", new_integration_body(simulator, **overrides),
                                    format="json")
    assert response.status_code == 400
    assert field in response.data, response.data
    assert reason.lower() in json.dumps(response.data).lower()


def test_a_directory_is_created_with_an_ldaps_url_and_refused_an_http_one(api_as):
    body = {
        "name": "AD", "system_type": "active_directory", "base_url": "ldaps://127.0.0.1:636",
        "auth_type": "basic", "credentials": {"username": "svc-syncplane@ad.example.org", "password": SECRET},
        "config": {"base_dn": "DC=ad,DC=example,DC=org"},
    }
    admin = api_as("admin")
    created = admin.post("/api/v1/integrations/", body, format="json")
    assert created.status_code == 201, created.data
    assert created.data["base_url"] == "ldaps://127.0.0.1:636"
    assert created.data["sync_interval_minutes"] == 60
    refused = admin.post("/api/v1/integrations/", {**body, "name": "AD2", "base_url": "https://dc.example.org"},
                         format="json")
    assert refused.status_code == 400 and "base_url" in refused.data


def test_an_itsm_integration_is_polled_every_five_minutes_unless_told_otherwise(api_as, simulator):
    body = new_integration_body(simulator, name="SN ITSM", system_type="servicenow_itsm", config={})
    admin = api_as("admin")
    assert admin.post("/api/v1/integrations/", body, format="json").data["sync_interval_minutes"] == 5
    chosen = admin.post("/api/v1/integrations/", {**body, "name": "SN ITSM 2", "sync_interval_minutes": 30},
                        format="json")
    assert chosen.data["sync_interval_minutes"] == 30


def test_test_connection_reports_success_and_bad_credentials(api_as, servicenow):
    operator = api_as("operator")
    ok = operator.post(f"/api/v1/integrations/{servicenow.pk}/test/")
    assert ok.status_code == 200 and ok.data["ok"] is True, ok.data
    assert "250" in ok.data["message"]
    api_as("admin").patch(f"/api/v1/integrations/{servicenow.pk}/",
                          {"credentials": {"password": "wrong-password"}}, format="json")
    bad = operator.post(f"/api/v1/integrations/{servicenow.pk}/test/")
    assert bad.data["ok"] is False and bad.data["error_kind"] == "permanent"
    assert "401" in bad.data["message"] and "wrong-password" not in bad.content.decode()


def test_sync_answers_202_runs_and_a_second_trigger_gets_409(api_as, servicenow, django_capture_on_commit_callbacks):
    operator = api_as("operator")
    # Tests run Celery eagerly: the task runs when the request's transaction commits.
    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(f"/api/v1/integrations/{servicenow.pk}/sync/", {"mode": "full"}, format="json")
    assert response.status_code == 202, response.data
    log = IntegrationSyncLog.objects.get(pk=response.data["sync_log_id"])
    assert log.status == RunStatus.SUCCESS and log.requested_by == "user-operator"
    detail = operator.get(f"/api/v1/integration-sync-logs/{log.pk}/")
    assert detail.data["records_created"] == 250 and detail.data["record_errors"] == []

    start_sync(servicenow)  # one queued and not picked up
    conflict = operator.post(f"/api/v1/integrations/{servicenow.pk}/sync/", {}, format="json")
    assert conflict.status_code == 409 and "already" in conflict.data["detail"]


def test_a_sync_log_records_where_the_time_went(api_as, servicenow):
    log = run_sync(start_sync(servicenow).pk)
    assert log.status == RunStatus.SUCCESS and log.pages > 1
    stored = IntegrationSyncLog.objects.get(pk=log.pk)
    phases = [stored.fetch_seconds, stored.map_seconds, stored.write_seconds, stored.reconcile_seconds]
    assert all(seconds >= 0 for seconds in phases), phases
    assert stored.fetch_seconds + stored.map_seconds + stored.write_seconds > 0
    assert sum(phases) <= stored.duration_ms / 1000 + 0.01  # phases never overlap each other
    assert verify_chain(servicenow.pk) is None  # the hash leaves the timings out, so the chain still holds
    viewer = api_as("viewer")
    detail = viewer.get(f"/api/v1/integration-sync-logs/{log.pk}/")
    assert detail.status_code == 200
    for name in ("fetch_seconds", "map_seconds", "write_seconds", "reconcile_seconds"):
        assert detail.data[name] == getattr(stored, name)
    listed = viewer.get(f"/api/v1/integrations/{servicenow.pk}/logs/")
    assert listed.data["results"][0]["write_seconds"] == stored.write_seconds


def test_sync_rejects_an_unknown_mode(api_as, servicenow):
    response = api_as("operator").post(f"/api/v1/integrations/{servicenow.pk}/sync/", {"mode": "sideways"},
                                       format="json")
    assert response.status_code == 400 and "mode" in response.data


def test_assets_list_filters_search_and_detail_with_sources(api_as, servicenow, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        api_as("operator").post(f"/api/v1/integrations/{servicenow.pk}/sync/", {}, format="json")
    viewer = api_as("viewer")
    page = viewer.get("/api/v1/assets/", {"page_size": 100})
    assert page.status_code == 200 and len(page.data["results"]) == 100 and page.data["next"]
    second = viewer.get(page.data["next"])
    assert not {a["id"] for a in page.data["results"]} & {a["id"] for a in second.data["results"]}
    servers = viewer.get("/api/v1/assets/", {"asset_type": "server", "page_size": 500})
    assert servers.data["results"] and all(a["asset_type"] == "server" for a in servers.data["results"])
    name = page.data["results"][0]["name"]
    found = viewer.get("/api/v1/assets/", {"search": name})
    assert any(a["name"] == name for a in found.data["results"])
    detail = viewer.get(f"/api/v1/assets/{page.data['results'][0]['id']}/")
    assert detail.data["sources"][0]["external_system"] == servicenow.pk
    assert detail.data["sources"][0]["raw_payload"]["sys_id"]
    assert detail.data["attributes"]["name"]["source"] == detail.data["sources"][0]["id"]


def test_delete_archives_and_keeps_the_evidence(api_as, servicenow, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        api_as("operator").post(f"/api/v1/integrations/{servicenow.pk}/sync/", {}, format="json")
    response = api_as("admin").delete(f"/api/v1/integrations/{servicenow.pk}/")
    assert response.status_code == 204
    assert api_as("viewer").get(f"/api/v1/integrations/{servicenow.pk}/").status_code == 404
    assert IntegrationSyncLog.objects.filter(external_system=servicenow).count() == 1


def test_token_endpoint_and_correlation_id(make_user, client):
    make_user("viewer", "alice")
    response = client.post("/api/v1/auth/token/", {"username": "alice", "password": "pw-for-tests-123"})
    assert response.status_code == 200
    token = response.json()["token"]
    listed = client.get("/api/v1/integrations/", HTTP_AUTHORIZATION=f"Token {token}",
                        HTTP_X_CORRELATION_ID="trace-123")
    assert listed.status_code == 200 and listed["X-Correlation-ID"] == "trace-123"
    fresh = client.get("/api/v1/integrations/", HTTP_AUTHORIZATION=f"Token {token}")
    assert len(fresh["X-Correlation-ID"]) == 32
    assert client.post("/api/v1/auth/token/", {"username": "alice", "password": "nope"}).status_code == 400


def test_integration_types_lists_schemas_with_secret_fields_marked(api_as):
    response = api_as("viewer").get("/api/v1/integration-types/")
    servicenow = next(t for t in response.data if t["system_type"] == "servicenow_cmdb")
    assert servicenow["config_schema"]["properties"]["table"]["default"] == "cmdb_ci_computer"
    basic = servicenow["credential_schema"]["basic"]["properties"]
    assert basic["password"]["x-secret"] is True and "x-secret" not in basic["username"]


def test_openapi_schema_and_swagger_ui_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    ui = client.get("/api/docs/")
    assert ui.status_code == 200 and b"swagger" in ui.content.lower()
