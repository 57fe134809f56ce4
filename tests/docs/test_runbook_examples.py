"""The runbook's examples run as written (docs/runbooks/integration-setup.md): every JSON create body of an
integration and the field-mapping example are POSTed through the API against the simulators and synced.

Only what cannot exist here is substituted: the vendor's host becomes the simulator's URL (and its path
prefix), and the credentials become the simulator's (the runbook's `vault:` references point at a Vault this
machine does not have). Names, auth types and every config value, the maps included, are the runbook's."""

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from syncplane.integrations.choices import RunStatus
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog
from syncplane.inventory.models import Asset
from syncplane_simulators.freshservice_cmdb import DEFAULT_API_KEY as FRESHSERVICE_KEY
from syncplane_simulators.jira_assets import DEFAULT_API_TOKEN, DEFAULT_EMAIL, DEFAULT_PAT

RUNBOOK = Path(__file__).resolve().parents[2] / "docs/runbooks/integration-setup.md"
SERVICENOW = {"username": "syncplane.integration", "password": "demo-password"}
# system_type -> (the simulator's path prefix, its credentials per auth type)
SIMULATED = {
    "servicenow_cmdb": ("servicenow", {"basic": SERVICENOW}),
    "servicenow_itsm": ("servicenow", {"basic": SERVICENOW}),
    "jira_assets": ("jira", {"basic": {"username": DEFAULT_EMAIL, "password": DEFAULT_API_TOKEN},
                             "bearer": {"token": DEFAULT_PAT}}),
    "jira_service_management": ("jira", {"basic": {"username": DEFAULT_EMAIL, "password": DEFAULT_API_TOKEN}}),
    "freshservice_cmdb": ("freshservice", {"api_key": {"api_key": FRESHSERVICE_KEY}}),
    "freshservice_itsm": ("freshservice", {"api_key": {"api_key": FRESHSERVICE_KEY}}),
}
NOT_HERE = {"active_directory"}  # needs slapd and its CA: tests/integrations/connectors/active_directory/


def json_blocks() -> list:
    """Every ```json block of the runbook, parsed; a fragment (`"field_mapping": {...}`) as an object."""
    blocks = []
    for _indent, text in re.findall(r"^([ \t]*)```json\n(.*?)\n\1```", RUNBOOK.read_text(), flags=re.S | re.M):
        try:
            blocks.append(json.loads(text))
        except ValueError:
            blocks.append(json.loads("{" + text + "}"))
    return blocks


def create_bodies() -> list[dict]:
    return [b for b in json_blocks() if isinstance(b, dict) and "system_type" in b]


def simulated(body: dict, simulator_url: str) -> dict:
    prefix, credentials = SIMULATED[body["system_type"]]
    path = urlsplit(body["base_url"]).path.rstrip("/")  # what the example appends to the host, kept
    moved = {**body, "base_url": f"{simulator_url}/{prefix}{path}",
             "credentials": credentials[body["auth_type"]]}
    if "webhook_secret" in body:
        moved["webhook_secret"] = "a-webhook-secret-for-the-test"
    if body["system_type"] == "jira_assets" and body["config"].get("deployment", "cloud") == "cloud":
        # Cloud finds its Assets API at api.atlassian.com: the simulator serves it on the site.
        moved["config"] = {**body["config"], "assets_api_base": f"{simulator_url}/jira"}
    return moved


def test_the_runbook_has_an_example_for_each_connector():
    types = {body["system_type"] for body in create_bodies()}
    assert types == set(SIMULATED) | NOT_HERE
    assert any("field_mapping" in block for block in json_blocks())


@pytest.mark.parametrize("body", [b for b in create_bodies() if b["system_type"] not in NOT_HERE],
                         ids=lambda body: body["name"])
def test_each_create_example_is_accepted_and_syncs(body, simulator, api_as, django_capture_on_commit_callbacks):
    simulator.freshservice.rate_limit_per_minute = 100_000
    admin = api_as("admin")
    created = admin.post("/api/v1/integrations/", simulated(body, simulator.url), format="json")
    assert created.status_code == 201, created.data
    system = ExternalSystem.objects.get(pk=created.data["id"])
    assert system.config == {**system.config, **created.data["config"]}
    with django_capture_on_commit_callbacks(execute=True):
        answer = admin.post(f"/api/v1/integrations/{system.pk}/sync/", {"mode": "full"}, format="json")
    assert answer.status_code == 202, answer.data
    log = IntegrationSyncLog.objects.get(pk=answer.data["sync_log_id"])
    assert log.status == RunStatus.SUCCESS, log.error_summary
    if system.category == "cmdb":
        assert log.records_created > 0 and Asset.objects.exists()


def test_the_freshservice_state_map_example_keeps_every_default_state(simulator, api_as,
                                                                     django_capture_on_commit_callbacks):
    [body] = [b for b in create_bodies() if b["system_type"] == "freshservice_cmdb"]
    assert "state_map" in body["config"]  # the example that used to lose "In Stock"
    simulator.freshservice.rate_limit_per_minute = 100_000
    admin = api_as("admin")
    system = admin.post("/api/v1/integrations/", simulated(body, simulator.url), format="json").data["id"]
    with django_capture_on_commit_callbacks(execute=True):
        admin.post(f"/api/v1/integrations/{system}/sync/", {"mode": "full"}, format="json")
    statuses = set(Asset.objects.values_list("status", flat=True))
    assert {"active", "in_stock", "in_maintenance", "retired"} <= statuses


def test_the_field_mapping_example_is_accepted_and_a_sync_works(simulator, api_as,
                                                                django_capture_on_commit_callbacks):
    [mapping] = [block["field_mapping"] for block in json_blocks() if "field_mapping" in block]
    [body] = [b for b in create_bodies() if b["system_type"] == "servicenow_cmdb"]
    admin = api_as("admin")
    system = admin.post("/api/v1/integrations/", simulated(body, simulator.url), format="json").data["id"]
    patched = admin.patch(f"/api/v1/integrations/{system}/", {"field_mapping": mapping}, format="json")
    assert patched.status_code == 200, patched.data
    assert patched.data["field_mapping"] == mapping
    with django_capture_on_commit_callbacks(execute=True):
        answer = admin.post(f"/api/v1/integrations/{system}/sync/", {"mode": "full"}, format="json")
    log = IntegrationSyncLog.objects.get(pk=answer.data["sync_log_id"])
    assert log.status == RunStatus.SUCCESS, log.error_summary
