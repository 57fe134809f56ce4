"""The integration wizard: the catalogue, a form generated from the connector's schemas, the API's validation
shown next to each field, write-only secrets, the connection test inline, enable and disable."""

import pytest

from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.secrets import resolve_secret

pytestmark = pytest.mark.django_db


def servicenow_form(**overrides):
    form = {
        "name": "ServiceNow prod", "base_url": "https://127.0.0.1:8443", "auth_type": "basic",
        "credential__username": "syncplane.integration", "credential__password": "s3cret-Passw0rd",
        "config__table": "cmdb_ci_computer", "config__page_size": "500", "enabled": "on",
        "sync_interval_minutes": "60",
    }
    form.update(overrides)
    return form


def test_the_catalogue_lists_every_connector_by_category_for_admins_only(browser_as):
    page = browser_as("admin").get("/integrations/new/").content.decode()
    for name in ("ServiceNow CMDB", "Entra ID", "Active Directory", "Jira Assets"):
        assert name in page
    assert browser_as("operator").get("/integrations/new/").status_code == 403
    assert browser_as("viewer").get("/integrations/new/servicenow_cmdb/").status_code == 403


def test_the_form_comes_from_the_schemas_with_types_defaults_help_and_required_marks(browser_as):
    page = browser_as("admin").get("/integrations/new/servicenow_cmdb/").content.decode()
    assert 'name="config__page_size"' in page and 'type="number"' in page
    assert 'name="credential__password"' in page and 'type="password"' in page
    assert "(required)" in page
    assert "?auth_type=oauth2_client_credentials" in page  # the other auth types, one click away
    oauth = browser_as("admin").get("/integrations/new/servicenow_cmdb/?auth_type=oauth2_client_credentials")
    assert 'name="credential__client_secret"' in oauth.content.decode()
    assert browser_as("admin").get("/integrations/new/no_such_system/").status_code == 404


def test_creating_an_integration_stores_the_secret_encrypted_and_never_shows_it(browser_as):
    admin = browser_as("admin")
    response = admin.post("/integrations/new/servicenow_cmdb/", servicenow_form())
    system = ExternalSystem.objects.get(name="ServiceNow prod")
    assert response["Location"] == f"/integrations/{system.pk}/"
    assert system.config["page_size"] == 500 and system.config["table"] == "cmdb_ci_computer"
    assert system.credentials["password"].startswith("enc:")
    assert resolve_secret(system.credentials["password"]) == "s3cret-Passw0rd"
    for url in (f"/integrations/{system.pk}/", f"/integrations/{system.pk}/edit/"):
        page = admin.get(url).content.decode()
        assert "s3cret-Passw0rd" not in page and system.credentials["password"] not in page
    assert "password: set" in admin.get(f"/integrations/{system.pk}/").content.decode()


def test_the_apis_errors_show_next_to_the_field_they_name(browser_as):
    admin = browser_as("admin")
    page = admin.post("/integrations/new/servicenow_cmdb/", servicenow_form(
        base_url="https://127.0.0.1:8443/api/now")).content.decode()
    assert "the URL must stop before /api/now" in page
    page = admin.post("/integrations/new/servicenow_cmdb/", servicenow_form(config__page_size="0")).content.decode()
    assert "has-error" in page and "page_size" in page
    assert not ExternalSystem.objects.exists()


def test_editing_keeps_a_secret_left_blank_and_replaces_one_entered(browser_as):
    admin = browser_as("admin")
    admin.post("/integrations/new/servicenow_cmdb/", servicenow_form())
    system = ExternalSystem.objects.get()
    kept = system.credentials["password"]
    admin.post(f"/integrations/{system.pk}/edit/", servicenow_form(credential__password="", config__page_size="100"))
    system.refresh_from_db()
    assert system.credentials["password"] == kept and system.config["page_size"] == 100
    admin.post(f"/integrations/{system.pk}/edit/", servicenow_form(credential__password="n3w-Passw0rd"))
    system.refresh_from_db()
    assert resolve_secret(system.credentials["password"]) == "n3w-Passw0rd"


def test_the_connection_test_answers_inline_against_the_simulator(browser_as, servicenow):
    operator = browser_as("operator")
    part = operator.post(f"/integrations/{servicenow.pk}/test/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="connection-result"' in part and "Connected" in part
    servicenow.credentials = {**servicenow.credentials, "username": "nobody"}
    servicenow.save()
    part = operator.post(f"/integrations/{servicenow.pk}/test/", HTTP_HX_REQUEST="true").content.decode()
    assert "Failed" in part
    assert browser_as("viewer").post(f"/integrations/{servicenow.pk}/test/").status_code == 403


def test_admins_enable_and_disable_operators_cannot(browser_as, servicenow):
    assert browser_as("operator").post(f"/integrations/{servicenow.pk}/enabled/", {"enabled": "0"}).status_code == 403
    browser_as("admin").post(f"/integrations/{servicenow.pk}/enabled/", {"enabled": "0"})
    servicenow.refresh_from_db()
    assert not servicenow.enabled
