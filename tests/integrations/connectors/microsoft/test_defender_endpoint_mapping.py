"""Defender for Endpoint mapping: machines, export rows, machinesVulnerabilities rows, scan summaries, the score
formula and the OData paging, on payloads of the api note's shapes."""

import pytest

from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.connectors.microsoft.defender_endpoint import (
    OPEN_COUNTS,
    STREAM,
    DefenderEndpointConnector,
    ODataPaginator,
    compliance_score,
    map_export_row,
    map_machine,
    map_machine_vulnerability,
    map_scan,
)
from syncplane.integrations.errors import ConfigurationError, PermanentError, RecordError

MACHINE = {
    "id": "c3a91f0e7d2b4a5c8e1f9a0b3c4d5e6f7a8b99b2", "computerDnsName": "PC-1187.Fabrikam.example",
    "firstSeen": "2024-02-03T09:00:00Z", "lastSeen": "2025-06-10T16:41:07.1234567Z", "osPlatform": "Windows11",
    "version": "23H2", "osBuild": 22631, "lastIpAddress": "10.8.4.17", "healthStatus": "Active",
    "onboardingStatus": "Onboarded", "riskScore": "Medium", "exposureLevel": "Medium", "isAadJoined": True,
    "aadDeviceId": "0F3B77E2-5A1C-4D2E-9B8A-7C6D5E4F3A2B", "machineTags": ["Sales"], "deviceValue": "Normal",
    "ipAddresses": [{"ipAddress": "10.8.4.18", "macAddress": "", "type": "Wireless80211", "operationalStatus": "Down"},
                    {"ipAddress": "10.8.4.17", "macAddress": "A0B1C2D3E4F5", "type": "Ethernet",
                     "operationalStatus": "Up"}],
    STREAM: "machines", OPEN_COUNTS: {"critical": 1, "high": 3},
}
ROW = {
    "id": "c3a9..9b2_chrome_116.0.5845.96_CVE-2023-4863_", "deviceId": MACHINE["id"],
    "deviceName": "pc-1187.fabrikam.example", "osPlatform": "Windows11", "softwareVendor": "google",
    "softwareName": "chrome", "softwareVersion": "116.0.5845.96", "cveId": "CVE-2023-4863",
    "vulnerabilitySeverityLevel": "High", "cvssScore": 8.8, "exploitabilityLevel": "ExploitIsVerified",
    "securityUpdateAvailable": True, "recommendedSecurityUpdateId": None,
    "firstSeenTimestamp": "2025-06-01 07:02:11", "lastSeenTimestamp": "2025-06-10 05:30:00",
    "diskPaths": ["C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe"], "registryPaths": [],
    STREAM: "export", "@syncplane.target": {"hostname": "pc-1187", "fqdn": "pc-1187.fabrikam.example",
                                             "azure_ad_device_id": "0f3b77e2-5a1c-4d2e-9b8a-7c6d5e4f3a2b"},
}


def test_a_machine_maps_to_an_asset_with_its_defender_fields_and_score():
    record = map_machine(MACHINE)
    assert record.external_id == MACHINE["id"]
    assert record.attributes["kind"] == "machine" and record.attributes["removed"] is False
    assert record.attributes["asset"] == {
        "name": "pc-1187", "hostname": "pc-1187", "fqdn": "pc-1187.fabrikam.example", "asset_type": "laptop",
        "status": "active", "operating_system": "Windows 11", "os_version": "23H2", "ip_address": "10.8.4.17",
        "mac_address": "a0:b1:c2:d3:e4:f5", "last_seen_at": "2025-06-10T16:41:07.123456+00:00",
        "azure_ad_device_id": "0f3b77e2-5a1c-4d2e-9b8a-7c6d5e4f3a2b", "exposure_level": "medium",
        "risk_score": "medium", "health_status": "active", "onboarding_status": "onboarded",
        "compliance_score": 100 - 25 - 20 - 15,
    }
    assert "compliance_state" not in record.attributes["asset"]  # Defender gives no verdict
    assert record.unmapped == {}


@pytest.mark.parametrize(("platform", "os_name", "asset_type"), [
    ("WindowsServer2022", "Windows Server 2022", "server"), ("Windows10", "Windows 10", "laptop"),
    ("macOS", "macOS", "laptop"), ("Linux", "Linux", "other"), ("iOS", "iOS", "mobile"),
    ("Android", "Android", "mobile"), ("Solaris", "Solaris", "other"),
])
def test_the_platform_gives_os_and_type(platform, os_name, asset_type):
    asset = map_machine({**MACHINE, "osPlatform": platform}).attributes["asset"]
    assert (asset["operating_system"], asset["asset_type"]) == (os_name, asset_type)


@pytest.mark.parametrize(("health", "status", "canonical"), [
    ("Active", "active", "active"), ("Inactive", "unknown", "inactive"),
    ("ImpairedCommunication", "active", "impaired_communication"), ("NoSensorData", "active", "no_sensor_data"),
    ("NoSensorDataImpairedCommunication", "active", "no_sensor_data_impaired_communication"),
    ("Unknown", "unknown", "unknown"),
])
def test_health_status(health, status, canonical):
    asset = map_machine({**MACHINE, "healthStatus": health}).attributes["asset"]
    assert (asset["status"], asset["health_status"]) == (status, canonical)


def test_unknown_codes_fall_back_and_are_reported():
    record = map_machine({**MACHINE, "healthStatus": "Hibernating", "exposureLevel": "Severe", "riskScore": None})
    asset = record.attributes["asset"]
    assert (asset["health_status"], asset["exposure_level"], asset["risk_score"]) == ("unknown", "", "")
    assert record.unmapped == {"health_status": "Hibernating", "exposure_level": "Severe"}


def test_a_bare_host_name_and_a_machine_without_telemetry():
    asset = map_machine({**MACHINE, "computerDnsName": "MBP-0002", "onboardingStatus": "CanBeOnboarded",
                         "aadDeviceId": None}).attributes["asset"]
    assert (asset["hostname"], asset["fqdn"], asset["azure_ad_device_id"]) == ("mbp-0002", "", "")
    assert asset["onboarding_status"] == "can_be_onboarded" and asset["compliance_score"] is None


@pytest.mark.parametrize("broken", [{"id": ""}, {"computerDnsName": None}, {"lastSeen": "yesterday"},
                                    {"computerDnsName": ["a"]}])
def test_unusable_machines(broken):
    with pytest.raises(RecordError):
        map_machine({**MACHINE, **broken})


@pytest.mark.parametrize(("exposure", "critical", "high", "score"), [
    ("none", 0, 0, 100), ("low", 0, 0, 90), ("medium", 0, 0, 75), ("high", 0, 0, 60), ("", 0, 0, 100),
    ("none", 1, 0, 80), ("none", 0, 1, 95), ("high", 2, 3, 5), ("high", 3, 0, 0), ("medium", 10, 10, 0),
])
def test_the_compliance_score_formula(exposure, critical, high, score):
    assert compliance_score(exposure, critical, high) == score


def test_an_export_row_is_a_finding_on_the_machine():
    record = map_export_row(ROW)
    assert record.external_id == f"asset:{MACHINE['id']}|CVE-2023-4863|chrome|116.0.5845.96"
    assert record.attributes == {
        "kind": "finding", "vulnerability_id": "CVE-2023-4863", "aliases": [],
        "target": {"kind": "asset", "ref": MACHINE["id"], "name": "pc-1187",
                   "asset": {"hostname": "pc-1187", "fqdn": "pc-1187.fabrikam.example",
                             "azure_ad_device_id": "0f3b77e2-5a1c-4d2e-9b8a-7c6d5e4f3a2b"}},
        "title": "CVE-2023-4863 in google chrome 116.0.5845.96", "package_name": "chrome", "package_type": "",
        "installed_version": "116.0.5845.96", "fixed_version": "", "purl": "pkg:generic/google/chrome@116.0.5845.96",
        "severity": "high", "cvss_score": 8.8, "cvss_vector": "",
        "locations": ["C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe"], "tool": "defender_endpoint",
        "first_seen_at": "2025-06-01T07:02:11+00:00",
    }


@pytest.mark.parametrize(("severity", "canonical", "unmapped"), [
    ("Critical", "critical", {}), ("High", "high", {}), ("Medium", "medium", {}), ("Low", "low", {}),
    (None, "unknown", {}), ("Extreme", "unknown", {"severity": "Extreme"}),
])
def test_severity(severity, canonical, unmapped):
    record = map_export_row({**ROW, "vulnerabilitySeverityLevel": severity})
    assert record.attributes["severity"] == canonical and record.unmapped == unmapped


def test_the_recommended_update_is_named_in_the_title_not_as_a_fixed_version():
    record = map_export_row({**ROW, "recommendedSecurityUpdateId": "KB5040442"})
    assert record.attributes["title"].endswith("(fix: KB5040442)") and record.attributes["fixed_version"] == ""


def test_without_the_machine_known_the_target_is_named_by_the_row():
    attributes = map_export_row({**ROW, "@syncplane.target": {}}).attributes
    assert attributes["target"]["asset"] == {"hostname": "pc-1187", "fqdn": "pc-1187.fabrikam.example",
                                             "azure_ad_device_id": ""}


@pytest.mark.parametrize("broken", [{"cveId": None}, {"deviceId": ""}, {"softwareName": None}, {"cvssScore": 11},
                                    {"cvssScore": "8.8"}, {"firstSeenTimestamp": "June"}])
def test_unusable_rows(broken):
    with pytest.raises(RecordError):
        map_export_row({**ROW, **broken})


def test_a_machines_vulnerabilities_row():
    record = map_machine_vulnerability({
        "id": "x", "cveId": "CVE-2024-38063", "machineId": MACHINE["id"], "fixingKbId": "5040442",
        "productName": "windows_11", "productVendor": "microsoft", "productVersion": "10.0.22631.3737",
        "severity": "Critical", STREAM: "machinesVulnerabilities"})
    assert record.external_id == f"asset:{MACHINE['id']}|CVE-2024-38063|windows_11|10.0.22631.3737"
    assert record.attributes["severity"] == "critical" and record.attributes["cvss_score"] is None
    assert record.attributes["title"] == "CVE-2024-38063 in microsoft windows_11 10.0.22631.3737 (fix: KB5040442)"


def test_a_scan_summary():
    record = map_scan({STREAM: "scan", "machineId": MACHINE["id"], "complete": True,
                       "machine": {"hostname": "pc-1187", "fqdn": "", "azure_ad_device_id": "0f3b"},
                       "scannedAt": "2026-12-06T10:00:00+00:00"})
    assert record.external_id == f"scan:asset:{MACHINE['id']}"
    assert record.attributes == {"kind": "scan", "tool": "defender_endpoint", "complete": True,
                                 "scanned_at": "2026-12-06T10:00:00+00:00",
                                 "target": {"kind": "asset", "ref": MACHINE["id"], "name": "pc-1187",
                                            "asset": {"hostname": "pc-1187", "fqdn": "", "azure_ad_device_id": "0f3b"}}}


def test_map_record_dispatches_on_the_stream():
    connector = DefenderEndpointConnector(ConnectorContext(
        base_url="http://127.0.0.1:9", auth_type="oauth2_client_credentials",  # nothing is called
        config={"tenant_id": "contoso.example", "authority_url": "http://127.0.0.1:9"},
        credentials={"client_id": "id", "client_secret": "s"},
        resolve_secret=lambda ref: ref))
    assert connector.map_record(MACHINE).attributes["kind"] == "machine"
    assert connector.map_record(ROW).attributes["kind"] == "finding"
    with pytest.raises(RecordError):
        connector.map_record({"id": "x"})


def test_config_names_the_field_that_is_wrong():
    with pytest.raises(ConfigurationError, match="token_endpoint"):
        DefenderEndpointConnector.validated_config({"tenant_id": "t", "token_endpoint": "v3"})
    with pytest.raises(ConfigurationError, match="resource"):
        DefenderEndpointConnector.validated_config({"tenant_id": "t", "resource": "http://example/x"})
    assert DefenderEndpointConnector.validated_config({"tenant_id": "t"})["vulnerability_source"] == "export"


def test_odata_paging_follows_the_link_and_else_skips_on_a_full_page():
    linked = ODataPaginator("/api/machines", 2, vendor="test")
    answers = {"/api/machines?%24top=2": {"value": [1, 2], "@odata.nextLink": "https://h/api/machines?$skip=2"},
               "https://h/api/machines?$skip=2": {"value": [3]}}
    assert [p["value"] for p in linked.pages(answers.__getitem__)] == [[1, 2], [3]]
    unlinked = ODataPaginator("/api/machines", 2, vendor="test")
    answers = {"/api/machines?%24top=2": {"value": [1, 2]}, "/api/machines?%24top=2&%24skip=2": {"value": [3, 4]},
               "/api/machines?%24top=2&%24skip=4": {"value": []}}
    assert [p["value"] for p in unlinked.pages(answers.__getitem__)] == [[1, 2], [3, 4], []]
    resumed = ODataPaginator("/api/machines", 2, vendor="test", start="/api/machines?%24top=2&%24skip=2")
    answers = {"/api/machines?%24top=2&%24skip=2": {"value": [3, 4]}, "/api/machines?%24top=2&%24skip=4": {
        "value": [5]}}
    assert [p["value"] for p in resumed.pages(answers.__getitem__)] == [[3, 4], [5]]
    looping = ODataPaginator("/api/machines", 2, vendor="test")
    with pytest.raises(PermanentError, match="again"):
        list(looping.pages(lambda url: {"value": [1, 2], "@odata.nextLink": "/api/machines?%24top=2"}))
