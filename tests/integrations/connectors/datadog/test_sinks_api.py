"""The three monitoring sinks through the REST API: created, tested, and bad settings refused on save."""

import json

import pytest

from syncplane.integrations import urls_policy
from syncplane_simulators.datadog import DEFAULT_API_KEY
from syncplane_simulators.elastic import DEFAULT_ENCODED_KEY
from syncplane_simulators.splunk_hec import DEFAULT_TOKEN

SINKS = {
    "datadog": ("/datadog", DEFAULT_API_KEY, {"site": "datadoghq.eu"}),
    "splunk_hec": ("/splunk", DEFAULT_TOKEN, {"index": "itgov"}),
    "elastic": ("/elastic", DEFAULT_ENCODED_KEY, {}),
}


def body(system_type: str, base_url: str, **overrides) -> dict:
    _prefix, key, config = SINKS[system_type]
    return {"name": f"{system_type} sink", "system_type": system_type, "base_url": base_url, "auth_type": "api_key",
            "credentials": {"api_key": key}, "config": config, **overrides}


@pytest.fixture
def public_datadog_dns(monkeypatch):
    """Datadog's hosts resolve to a public address here, with no network."""
    real = urls_policy._resolve
    monkeypatch.setattr(urls_policy, "_resolve", lambda host, port: (
        [urls_policy.ipaddress.ip_address("3.233.146.1")] if "datadoghq" in host else real(host, port)))


@pytest.mark.parametrize("system_type", list(SINKS))
def test_a_sink_is_created_and_its_connection_tested(api_as, simulator, system_type):
    admin = api_as("admin")
    created = admin.post("/api/v1/integrations/", body(system_type, simulator.url + SINKS[system_type][0]),
                         format="json")
    assert created.status_code == 201, created.data
    assert created.data["category"] == "monitoring" and created.data["config"]["event_types"] == ["*"]
    assert SINKS[system_type][1] not in json.dumps(created.data)
    tested = admin.post(f"/api/v1/integrations/{created.data['id']}/test/", {}, format="json")
    assert tested.data["ok"], tested.data


@pytest.mark.parametrize("system_type", list(SINKS))
def test_plain_http_is_refused_outside_insecure_mode(api_as, settings, system_type):
    settings.SYNCPLANE_ALLOW_INSECURE_OUTBOUND = False
    response = api_as("admin").post("/api/v1/integrations/", body(system_type, "http://127.0.0.1:8088"),
                                    format="json")
    assert response.status_code == 400 and "plain http is not allowed" in str(response.data["base_url"])


def test_an_unknown_datadog_site_is_refused_naming_the_field(api_as, simulator):
    response = api_as("admin").post("/api/v1/integrations/", body(
        "datadog", simulator.url + "/datadog", config={"site": "datadoghq.de"}), format="json")
    assert response.status_code == 400 and "site" in str(response.data["config"])


def test_a_base_url_of_another_datadog_site_is_refused(api_as, public_datadog_dns):
    admin = api_as("admin")
    response = admin.post("/api/v1/integrations/", body("datadog", "https://api.datadoghq.com"),
                                    format="json")
    assert response.status_code == 400
    assert "Use https://api.datadoghq.eu, or choose site datadoghq.com" in str(response.data["config"])
    created = admin.post("/api/v1/integrations/", body("datadog", "https://api.datadoghq.eu"), format="json")
    assert created.status_code == 201, created.data
    switched = admin.patch(f"/api/v1/integrations/{created.data['id']}/",
                                     {"config": {"site": "us3.datadoghq.com"}}, format="json")
    assert switched.status_code == 400 and "https://api.us3.datadoghq.com" in str(switched.data["config"])


def test_the_web_ui_host_is_refused_with_the_api_host_to_use(api_as, public_datadog_dns):
    response = api_as("admin").post("/api/v1/integrations/", body("datadog", "https://app.datadoghq.eu"),
                                    format="json")
    assert response.status_code == 400 and "https://api.datadoghq.eu" in str(response.data["base_url"])


def test_an_elastic_key_that_is_not_the_encoded_form_is_refused(api_as, simulator):
    response = api_as("admin").post("/api/v1/integrations/", body(
        "elastic", simulator.url + "/elastic", credentials={"api_key": "just-the-key-part"}), format="json")
    assert response.status_code == 400 and "encoded" in str(response.data["credentials"])
    assert "just-the-key-part" not in json.dumps(response.data)
