"""The API account's key is checked when the integration is saved through the REST API: a key Apple would not
take is refused, naming the field and the reason, never echoing the key."""

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog
from syncplane_simulators import apple_business_manager as abm_sim
from tests.integrations.connectors.apple.keys import key_pair, rsa_private_pem

pytestmark = pytest.mark.django_db


def body(simulator, private_key, **overrides):
    return {
        "name": "Apple Business Manager", "system_type": "apple_business_manager",
        "base_url": f"{simulator.url}/apple/v1", "auth_type": "oauth2_client_assertion",
        "credentials": {"client_id": abm_sim.DEFAULT_CLIENT_ID, "key_id": abm_sim.DEFAULT_KEY_ID,
                        "private_key": private_key},
        "config": {"token_url": f"{simulator.url}/apple/auth/oauth2/token"},
        **overrides,
    }


@pytest.mark.parametrize("sec1", [False, True], ids=["pkcs8", "sec1"])
def test_both_pem_forms_are_accepted_stored_encrypted_and_never_returned(api_as, simulator, sec1):
    private, _ = key_pair(sec1=sec1)
    response = api_as("admin").post("/api/v1/integrations/", body(simulator, private), format="json")
    assert response.status_code == 201, response.content
    system = ExternalSystem.objects.get(pk=response.data["id"])
    assert system.credentials["private_key"].startswith("enc:")
    assert "PRIVATE KEY" not in response.content.decode()
    assert system.category == "mdm"


@pytest.mark.parametrize(("make_key", "reason"), [
    (lambda: key_pair(ec.SECP384R1())[0], "secp384r1"),
    (rsa_private_pem, "RSA key"),
    (lambda: "garbage that is no key", "not a PEM private key"),
])
def test_a_wrong_key_is_refused_on_save_naming_the_field(api_as, simulator, make_key, reason):
    key = make_key()
    response = api_as("admin").post("/api/v1/integrations/", body(simulator, key), format="json")
    assert response.status_code == 400, response.content
    text = json.dumps(response.data)
    assert "private_key" in text and reason in text and "P-256" in text
    assert key.splitlines()[min(1, len(key.splitlines()) - 1)] not in text
    assert not ExternalSystem.objects.exists()


def test_the_legacy_server_token_takes_its_four_values(api_as, simulator):
    admin = api_as("admin")
    response = admin.post("/api/v1/integrations/", body(
        simulator, "", base_url=f"{simulator.url}/apple/dep", auth_type="apple_server_token", config={},
        credentials={"consumer_key": abm_sim.DEP_CONSUMER_KEY, "consumer_secret": abm_sim.DEP_CONSUMER_SECRET,
                     "access_token": abm_sim.DEP_ACCESS_TOKEN, "access_secret": abm_sim.DEP_ACCESS_SECRET}),
        format="json")
    assert response.status_code == 201, response.content
    system = ExternalSystem.objects.get(pk=response.data["id"])
    assert system.credentials["consumer_key"] == abm_sim.DEP_CONSUMER_KEY
    assert all(system.credentials[name].startswith("enc:")
               for name in ("consumer_secret", "access_token", "access_secret"))
    tested = admin.post(f"/api/v1/integrations/{system.pk}/test/", format="json")
    assert tested.status_code == 200 and tested.data["ok"], tested.content
    assert "Syncplane MDM (simulator)" in tested.data["message"]


def test_the_runbooks_example_creates_an_integration_that_syncs(api_as, simulator, api_key, apple,
                                                                 django_capture_on_commit_callbacks):
    """docs/runbooks/apple-business-manager.md's create body, with only the host and the key substituted."""
    import re
    from pathlib import Path

    runbook = Path(__file__).resolve().parents[4] / "docs/runbooks/apple-business-manager.md"
    (example,) = [json.loads(text) for text in re.findall(r"```json\n(.*?)\n```", runbook.read_text(), re.S)]
    example["base_url"] = f"{simulator.url}/apple/v1"
    example["credentials"]["private_key"] = api_key[0]
    example["config"]["token_url"] = f"{simulator.url}/apple/auth/oauth2/token"
    admin = api_as("admin")
    created = admin.post("/api/v1/integrations/", example, format="json")
    assert created.status_code == 201, created.content
    with django_capture_on_commit_callbacks(execute=True):
        started = admin.post(f"/api/v1/integrations/{created.data['id']}/sync/", {"mode": "full"}, format="json")
    assert started.status_code == 202, started.content
    log = IntegrationSyncLog.objects.get(pk=started.data["sync_log_id"])
    assert log.status == "success" and log.records_created == apple.device_count
