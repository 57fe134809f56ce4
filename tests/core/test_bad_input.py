"""Bad input is a 400 that names what is wrong: never a 500, never silently ignored (issue 10.14, 16.7)."""

import json

import pytest

from syncplane.integrations.engine import start_sync
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog

pytestmark = pytest.mark.django_db

HUGE = "9" * 30  # beyond what a 64-bit database integer holds


def nested(depth: int) -> str:
    return '{"name": ' + "[" * depth + "]" * depth + "}"


def new_body(simulator, **overrides):
    body = {
        "name": "SN", "system_type": "servicenow_cmdb", "base_url": f"{simulator.url}/servicenow",
        "auth_type": "basic", "credentials": {"username": "svc", "password": "pw"}, "config": {},
    }
    return {**body, **overrides}


@pytest.mark.parametrize("depth", [40, 5000, 100_000])
def test_deeply_nested_json_is_a_400(api_as, depth):
    response = api_as("admin").post("/api/v1/integrations/", nested(depth), content_type="application/json")
    assert response.status_code == 400, response.content[:200]
    assert "nested deeper" in response.json()["detail"]


def test_deeply_nested_json_on_the_token_endpoint_is_a_400_without_signing_in(client):
    response = client.post("/api/v1/auth/token/", nested(50_000), content_type="application/json")
    assert response.status_code == 400, response.content[:200]


@pytest.mark.parametrize("config", ["table=x", [1, 2], 5, True])
def test_a_config_that_is_not_an_object_is_a_400(api_as, simulator, config):
    response = api_as("admin").post("/api/v1/integrations/", new_body(simulator, config=config), format="json")
    assert response.status_code == 400, response.content
    assert "object" in str(response.json()["config"])


@pytest.mark.parametrize("field", ["config", "field_mapping", "credentials"])
def test_a_nul_character_in_a_json_field_is_a_400_with_the_reason(api_as, simulator, field):
    values = {
        "config": {"query": "install_status=1\x00"},
        "field_mapping": {"location": {"source": "u_site\x00"}},
        "credentials": {"username": "svc\x00", "password": "pw"},
    }
    response = api_as("admin").post("/api/v1/integrations/", new_body(simulator, **{field: values[field]}),
                                    format="json")
    assert response.status_code == 400, response.content
    assert "NUL" in json.dumps(response.json()[field])
    assert not ExternalSystem.objects.exists()


def test_a_nul_character_in_a_query_parameter_is_a_400(api_as):
    response = api_as("viewer").get("/api/v1/integrations/", {"search": "a\x00b"})
    assert response.status_code == 400 and "NUL" in json.dumps(response.json()["search"])


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"limit": HUGE}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": HUGE}, "offset"),
    ],
)
def test_paging_it_cannot_honour_is_a_400_naming_the_parameter(api_as, servicenow, params, name):
    viewer = api_as("viewer")
    for url in ("/api/v1/integrations/", "/api/v1/integration-sync-logs/", "/api/v1/changes/",
                "/api/v1/directory/users/", f"/api/v1/integrations/{servicenow.pk}/logs/"):
        response = viewer.get(url, params)
        assert response.status_code == 400, (url, response.content)
        assert name in response.json(), (url, response.json())


def test_every_list_has_a_maximum_page_size(api_as, servicenow):
    viewer = api_as("viewer")
    assert viewer.get("/api/v1/integrations/", {"limit": "500"}).status_code == 200
    assert viewer.get("/api/v1/assets/", {"page_size": "500"}).status_code == 200
    # Above the maximum, a page of the maximum (scripts asking for more follow `next`); beyond 64 bits, a 400.
    response = viewer.get("/api/v1/directory/users/", {"limit": "2000"})
    assert response.status_code == 200 and response.json()["next"] is None
    page = viewer.get("/api/v1/integrations/", {"limit": "501", "offset": "1"}).json()
    assert "limit=500" in page["previous"]  # the limit it answered with
    assert viewer.get("/api/v1/assets/", {"page_size": "501"}).status_code == 200
    assert viewer.get("/api/v1/assets/", {"page_size": HUGE}).status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/integration-sync-logs/?external_system=" + HUGE,
        "/api/v1/assets/?source_system=" + HUGE,
        "/api/v1/assets/?source_system=1.5",
        "/api/v1/directory/users/?external_system=" + HUGE,
        "/api/v1/changes/?external_system=" + HUGE,
    ],
)
def test_an_id_filter_beyond_64_bits_is_a_400(api_as, url):
    response = api_as("viewer").get(url)
    assert response.status_code == 400, response.content


@pytest.mark.parametrize("path", ["integrations", "integration-sync-logs", "assets", "changes", "directory/users"])
def test_an_id_beyond_64_bits_in_the_path_is_a_404(api_as, path):
    assert api_as("viewer").get(f"/api/v1/{path}/{HUGE}/").status_code == 404


def test_an_unknown_key_in_a_body_is_a_400_naming_it_and_runs_nothing(api_as, servicenow):
    admin = api_as("admin")
    response = admin.post(f"/api/v1/integrations/{servicenow.pk}/sync/", {"dryrun": True}, format="json")
    assert response.status_code == 400, response.content
    assert "dryrun" in response.json() and "dry_run" in response.json()["dryrun"][0]
    assert not IntegrationSyncLog.objects.exists()
    for action in ("test", "preview"):
        refused = admin.post(f"/api/v1/integrations/{servicenow.pk}/{action}/", {"full": True},
                                          format="json")
        assert refused.status_code == 400 and "full" in refused.json()
    patch = admin.patch(f"/api/v1/integrations/{servicenow.pk}/", {"enable": False}, format="json")
    assert patch.status_code == 400 and "enable" in patch.json()
    servicenow.refresh_from_db()
    assert servicenow.enabled is True


def test_an_unknown_key_in_a_change_body_is_a_400(api_as):
    response = api_as("operator").post("/api/v1/changes/", {"title": "Patch", "risk": 10}, format="json")
    assert response.status_code == 400 and "risk" in response.json()


def test_read_only_fields_sent_back_are_not_unknown(api_as, servicenow):
    admin = api_as("admin")
    current = admin.get(f"/api/v1/integrations/{servicenow.pk}/").json()
    current.pop("credentials_status"), current.pop("webhook_secret_status")
    response = admin.patch(f"/api/v1/integrations/{servicenow.pk}/", {**current, "name": "Renamed"},
                           format="json")
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/api/v1/assets/?external_id=abc", "external_id"),
        ("/api/v1/integrations/?type=servicenow_cmdb", "type"),
        ("/api/v1/integration-sync-logs/?state=failed", "state"),
        ("/api/v1/integration-sync-logs/{log}/?verbose=1", "verbose"),
        ("/api/v1/changes/?status=draft", "status"),
        ("/api/v1/directory/groups/?username=x", "username"),
    ],
)
def test_an_unknown_query_parameter_is_a_400_naming_it(api_as, servicenow, url, name):
    log = start_sync(servicenow)
    response = api_as("viewer").get(url.format(log=log.pk))
    assert response.status_code == 400, response.content
    assert name in response.json()


def test_known_query_parameters_still_work(api_as, servicenow):
    viewer = api_as("viewer")
    for url in ("/api/v1/integrations/?format=json&search=Service&ordering=name&limit=5&offset=0&enabled=true",
                "/api/v1/assets/?page_size=10&search=x&asset_type=laptop&source_system=1",
                f"/api/v1/integration-sync-logs/?status=failed&external_system={servicenow.pk}"):
        assert viewer.get(url).status_code == 200, url
