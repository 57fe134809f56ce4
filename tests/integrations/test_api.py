"""The REST API: roles on every endpoint, validation, secrets never returned, sync triggering."""

import json

import pytest

from syncplane.integrations.choices import RunStatus
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.evidence import verify_chain
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog

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


def test_openapi_schema_and_swagger_ui_are_served(api_as):
    client = api_as("viewer")  # anonymous only with SYNCPLANE_API_DOCS_PUBLIC (tests/core/test_api_docs.py)
    assert client.get("/api/schema/").status_code == 200
    ui = client.get("/api/docs/")
    assert ui.status_code == 200 and b"swagger" in ui.content.lower()


# --- saved configurations that would crash or hang every sync (issue 10.3) ---------------------------------


def numeric_properties(schema, path="config"):
    """Every number or integer property of a JSON Schema, with its path."""
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if ("integer" in kinds or "number" in kinds) and "enum" not in schema:
        yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from numeric_properties(child, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from numeric_properties(schema["additionalProperties"], f"{path}.*")


def test_every_numeric_setting_of_every_connector_has_a_sane_range():
    from syncplane.integrations.registry import registered_types

    found = 0
    for system_type, connector in registered_types().items():
        for path, prop in numeric_properties(connector.config_schema):
            found += 1
            assert "maximum" in prop, f"{system_type} {path} has no maximum"
            assert "minimum" in prop, f"{system_type} {path} has no minimum"
            if path.endswith("rate_limit_per_second"):
                assert prop["minimum"] >= 0.1, f"{system_type} {path} allows a pace that sleeps for ever"
    assert found > 20


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"config": {"rate_limit_per_second": 1e-9}}, "config", "rate_limit_per_second"),
        ({"config": {"rate_limit_per_second": 1e9}}, "config", "rate_limit_per_second"),
        ({"sync_interval_minutes": 10**12}, "sync_interval_minutes", "10080"),
        ({"sync_interval_minutes": -1}, "sync_interval_minutes", "0"),
        ({"field_mapping": {"name": {"source": "x", "map": {"a": "b"}, "default": 5}}}, "field_mapping", "name"),
        ({"field_mapping": {"last_seen_at": {"source": "x", "default": 5}}}, "field_mapping", "last_seen_at"),
        ({"field_mapping": {"compliance_score": {"source": "x", "default": "high"}}}, "field_mapping", "0 to 100"),
    ],
)
def test_a_config_that_would_hang_or_crash_every_sync_is_refused(api_as, simulator, overrides, field, reason):
    response = api_as("admin").post("/api/v1/integrations/", new_integration_body(simulator, **overrides),
                                    format="json")
    assert response.status_code == 400, response.data
    assert field in response.data and reason in json.dumps(response.data), response.data


def test_a_freshservice_id_in_the_config_is_bounded_to_64_bits(api_as, simulator):
    body = new_integration_body(simulator, system_type="freshservice_cmdb", auth_type="api_key",
                                base_url=f"{simulator.url}/freshservice", credentials={"api_key": "k"},
                                config={"workspace_id": 2**64})
    response = api_as("admin").post("/api/v1/integrations/", body, format="json")
    assert response.status_code == 400 and "workspace_id" in str(response.data["config"])


# --- a base URL holding the API path (issue 16.6) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("system_type", "auth_type", "suffix", "part"),
    [
        ("servicenow_cmdb", "basic", "/api/now", "/api/now"),
        ("servicenow_itsm", "basic", "/api/now/v2/table/change_request", "/api/now"),
        ("freshservice_cmdb", "api_key", "/api/v2", "/api/v2"),
        ("jira_service_management", "basic", "/rest/api/3", "/rest"),
        ("entra_id", "oauth2_client_credentials", "/users", "/users"),
    ],
)
def test_a_base_url_with_the_api_path_appended_is_refused_naming_the_part(api_as, simulator, system_type,
                                                                        auth_type, suffix, part):
    from syncplane.integrations.base import CREDENTIAL_FIELDS

    root = f"{simulator.url}/vendor"
    body = new_integration_body(simulator, system_type=system_type, auth_type=auth_type, base_url=root + suffix,
                                credentials={name: "x" for name in CREDENTIAL_FIELDS[auth_type]},
                                config={"tenant_id": "t"} if system_type == "entra_id" else {})
    response = api_as("admin").post("/api/v1/integrations/", body, format="json")
    assert response.status_code == 400, response.data
    message = str(response.data["base_url"])
    assert part in message and f"Use {root}" in message


def test_a_base_url_under_a_path_of_its_own_is_kept(api_as, simulator):
    response = api_as("admin").post("/api/v1/integrations/", new_integration_body(simulator), format="json")
    assert response.status_code == 201 and response.data["base_url"].endswith("/servicenow")


# --- the browsable API's form (issue 16.9) -----------------------------------------------------------------


def test_the_browsable_api_form_creates_an_integration(api_as, simulator):
    import html
    import re

    admin = api_as("admin")
    page = admin.get("/api/v1/integrations/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    content = page.content.decode()
    assert "not currently supported" not in content
    for name in ("config", "field_mapping", "credentials"):
        assert re.search(rf'<textarea[^>]*name="{name}"', content), name
    # The raw data form's template, as it comes, only needs the values a person must choose.
    raw = re.search(r'<textarea[^>]*name="_content"[^>]*>(.*?)</textarea>', content, re.S).group(1)
    template = json.loads(html.unescape(raw))
    assert template["config"] == {} and template["field_mapping"] == {} and template["credentials"] == {}
    filled = {**template, "name": "From the template", "system_type": "servicenow_cmdb",
              "base_url": f"{simulator.url}/servicenow", "auth_type": "basic",
              "credentials": {"username": "svc", "password": SECRET}}
    filled = {k: v for k, v in filled.items() if v is not None}
    created = admin.post("/api/v1/integrations/", filled, format="json")
    assert created.status_code == 201, created.data
    # The HTML form posts each JSON field as text.
    form = {"name": "From the form", "system_type": "servicenow_cmdb", "base_url": f"{simulator.url}/servicenow",
            "auth_type": "basic", "credentials": json.dumps({"username": "svc", "password": SECRET}),
            "config": "{}", "field_mapping": "{}", "enabled": "true", "csrfmiddlewaretoken": "as the form sends"}
    posted = admin.post("/api/v1/integrations/", form, format="multipart")
    assert posted.status_code == 201, posted.data
    assert ExternalSystem.objects.get(name="From the form").credentials["password"].startswith("enc:")


# --- integration-types describes the whole create body (issue 16.10) --------------------------------------


def test_integration_types_describe_base_url_enabled_and_the_schedule(api_as):
    types = {t["system_type"]: t for t in api_as("viewer").get("/api/v1/integration-types/").data}
    servicenow = types["servicenow_cmdb"]
    assert servicenow["base_url"]["example"] == "https://acme.service-now.com"
    assert "/api/now" in servicenow["base_url"]["description"]
    assert servicenow["base_url"]["refused_path_parts"] == ["/api/now", "/oauth_token.do"]
    assert types["active_directory"]["base_url"]["example"].startswith("ldaps://")
    interval = types["servicenow_itsm"]["sync_interval_minutes"]
    assert interval["minimum"] == 0 and interval["maximum"] == 10080 and interval["default"] == 5
    assert "0 syncs" in interval["description"]
    assert types["entra_id"]["enabled"]["type"] == "boolean"
    scheduled = types["entra_id"]["scheduled"]
    assert scheduled["type"] == "boolean" and scheduled["default"] is False
    assert "first successful manual sync" in scheduled["description"]
    assert all(t["base_url"]["description"] and t["base_url"]["example"] for t in types.values())


# --- every record outcome of a run, paged (issue 16.11) ---------------------------------------------------


def test_a_run_shows_its_totals_and_pages_every_outcome(api_as, servicenow):
    from syncplane.integrations.models import SyncRecordOutcome

    log = start_sync(servicenow)
    SyncRecordOutcome.objects.bulk_create(
        [SyncRecordOutcome(sync_log=log, external_id=f"bad-{i}", action="create", status="failed",
                           reason="no name", raw_payload={"i": i}) for i in range(205)]
        + [SyncRecordOutcome(sync_log=log, external_id=f"ok-{i}", action="update", status="applied",
                             changes={"name": ["a", "b"]}) for i in range(3)]
    )
    viewer = api_as("viewer")
    detail = viewer.get(f"/api/v1/integration-sync-logs/{log.pk}/").data
    assert len(detail["record_errors"]) == 200 and detail["record_errors_total"] == 205
    assert detail["record_errors_truncated"] is True
    assert detail["changes_total"] == 3 and detail["changes_truncated"] is False
    assert detail["outcomes_url"].endswith(f"/api/v1/integration-sync-logs/{log.pk}/outcomes/")
    failed = viewer.get(detail["outcomes_url"], {"status": "failed", "limit": 100, "offset": 200}).data
    assert failed["count"] == 205 and [r["external_id"] for r in failed["results"]] == [
        f"bad-{i}" for i in range(200, 205)]
    assert failed["results"][0]["reason"] == "no name" and failed["results"][0]["raw_payload"] == {"i": 200}
    updates = viewer.get(detail["outcomes_url"], {"action": "update"}).data
    assert updates["count"] == 3 and updates["results"][0]["changes"] == {"name": ["a", "b"]}
    assert viewer.get(detail["outcomes_url"], {"external_id": "ok-1"}).data["count"] == 1
    assert viewer.get(detail["outcomes_url"], {"status": "exploded"}).status_code == 400
    assert viewer.get(detail["outcomes_url"], {"reason": "x"}).status_code == 400
    assert viewer.get(f"/api/v1/integration-sync-logs/{log.pk + 1}/outcomes/").status_code == 404
    assert api_as("anonymous").get(detail["outcomes_url"]).status_code == 401


# --- first contact (issue 16.15) ---------------------------------------------------------------------------


def test_the_root_is_the_dashboard_and_the_api_root_lists_integration_types(api_as, client):
    home = client.get("/")  # the web UI's dashboard: a newcomer is asked to sign in first
    assert home.status_code == 302 and home["Location"] == "/login/?next=/"
    root = api_as("viewer").get("/api/v1/")
    assert root.status_code == 200
    assert root.data["integration-types"].endswith("/api/v1/integration-types/")
    assert {"integrations", "integration-sync-logs", "assets", "changes"} <= set(root.data)
