"""Android Enterprise mapping and input checks: AMAPI devices (shapes of the api note) -> asset records; the
enterprise id and the service-account key refused with a reason that names what is wrong."""

import copy
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from syncplane.integrations.choices import RecordKind
from syncplane.integrations.connectors.google.android_enterprise import AndroidEnterpriseConnector, map_device
from syncplane.integrations.connectors.google.service_account import load_key
from syncplane.integrations.errors import ConfigurationError, RecordError
from syncplane.integrations.sinks import sink_for
from syncplane_simulators.android_enterprise import make_service_account_key

DEVICES = json.loads((Path(__file__).parents[3] / "fixtures" / "google" / "android_devices.json").read_text())


def mapped(raw):
    record = map_device(copy.deepcopy(raw))
    sink_for(RecordKind.ASSET, 0).validate(record)  # the record passes the inventory sink's checks
    return record


def test_a_company_device_maps_hardware_software_and_compliance():
    record = mapped(DEVICES["company_fully_managed"])
    assert record.external_id == "enterprises/LC04exampl/devices/c0ffee1234567890"
    assert record.attributes == {
        "name": "SM-G991B (c0ffee1234567890)", "asset_type": "mobile", "status": "active",
        "serial_number": "RF8N20WXYZ1", "manufacturer": "Samsung", "model": "SM-G991B",
        "mac_address": "5c:51:81:0a:0b:0c", "operating_system": "Android", "os_version": "14",
        "compliance_state": "compliant", "compliance_reasons": [],
        "compliance_checked_at": "2025-06-11T06:30:44.210000+00:00",
        "assigned_to": "",  # userName is an opaque resource name, not an e-mail
        "last_seen_at": "2025-06-11T06:30:44.210000+00:00",
    }
    assert record.unmapped == {}


def test_non_compliance_details_become_reasons_and_applied_state_wins():
    attributes = mapped(DEVICES["company_noncompliant"]).attributes
    assert attributes["compliance_state"] == "noncompliant"
    assert attributes["compliance_reasons"] == ["passwordRequirements: USER_ACTION",
                                                "applications com.example.vpn: APP_NOT_INSTALLED"]
    assert attributes["status"] == "in_maintenance"  # appliedState LOST, although state says ACTIVE
    assert attributes["last_seen_at"] == "2025-06-10T22:01:02.123456+00:00"  # nanoseconds cut to microseconds
    assert attributes["os_version"] == "" and attributes["mac_address"] == ""  # not reported: unknown


def test_a_personal_device_loses_its_pseudo_serial_and_privacy_mac():
    attributes = mapped(DEVICES["personal_android_14"]).attributes
    assert attributes["serial_number"] == "" and attributes["mac_address"] == ""
    assert attributes["compliance_state"] == "compliant"


@pytest.mark.parametrize(("api_level", "serial", "kept"), [
    (30, "ZY22BCDEF1", True),  # Android 11: the hardware serial
    (31, "ZY22BCDEF1", False),  # Android 12+: may be the enterprise-specific id
    (None, "ZY22BCDEF1", False),  # unknown level: not trusted
    (30, "9F3E2D1C0B0A0908", False),  # equal to enterpriseSpecificId
])
def test_personal_serials_are_only_kept_when_they_are_hardware_serials(api_level, serial, kept):
    raw = copy.deepcopy(DEVICES["personal_android_14"])
    raw["hardwareInfo"]["serialNumber"] = serial
    raw.pop("apiLevel")
    if api_level is not None:
        raw["apiLevel"] = api_level
    assert mapped(raw).attributes["serial_number"] == (serial if kept else "")


def test_a_provisioning_device_has_almost_nothing_and_is_in_stock():
    attributes = mapped(DEVICES["provisioning"]).attributes
    assert attributes["status"] == "in_stock" and attributes["compliance_state"] == "unknown"
    assert attributes["serial_number"] == "" and attributes["last_seen_at"] is None
    assert attributes["compliance_checked_at"] is None and attributes["name"] == "1234567890abcdef"


@pytest.mark.parametrize(("state", "status"), [
    ("ACTIVE", "active"), ("PROVISIONING", "in_stock"), ("DISABLED", "in_maintenance"), ("LOST", "in_maintenance"),
    ("DELETED", "retired"), ("PREPARING_FOR_MIGRATION", "active"), ("DEACTIVATED_BY_DEVICE_FINANCE", "in_maintenance"),
    ("DEVICE_STATE_UNSPECIFIED", "unknown"),
])
def test_every_state_has_a_status(state, status):
    raw = {**DEVICES["company_fully_managed"], "appliedState": state}
    assert mapped(raw).attributes["status"] == status


def test_an_unknown_state_is_unknown_and_named_as_unmapped():
    record = mapped({**DEVICES["company_fully_managed"], "appliedState": "HIBERNATING"})
    assert record.attributes["status"] == "unknown" and record.unmapped == {"status": "HIBERNATING"}


def test_state_is_used_when_applied_state_is_absent():
    raw = {k: v for k, v in DEVICES["company_fully_managed"].items() if k != "appliedState"}
    assert mapped({**raw, "state": "DISABLED"}).attributes["status"] == "in_maintenance"


def test_an_email_user_name_is_the_assignee():
    raw = {**DEVICES["company_fully_managed"], "userName": "Ana.Lopez@Fabrikam.Example"}
    assert mapped(raw).attributes["assigned_to"] == "ana.lopez@fabrikam.example"


@pytest.mark.parametrize("raw", [
    {},
    {"name": "devices/123"},
    {"name": "enterprises/LC1/devices/1", "policyCompliant": "yes"},
    {"name": "enterprises/LC1/devices/1", "lastStatusReportTime": "yesterday"},
    {"name": "enterprises/LC1/devices/1", "lastStatusReportTime": "2025-06-11"},
    {"name": "enterprises/LC1/devices/1", "hardwareInfo": "SM-G991B"},
    {"name": "enterprises/LC1/devices/1", "policyCompliant": False, "nonComplianceDetails": "USER_ACTION"},
])
def test_unusable_devices_are_record_errors(raw):
    with pytest.raises(RecordError):
        map_device(raw)


# --- configuration and credentials ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["LC04exampl", "enterprises/LC04exampl"])
def test_the_enterprise_id_takes_the_bare_id_or_the_resource_name(value):
    assert AndroidEnterpriseConnector.validated_config({"enterprise_id": value})["page_size"] == 100


@pytest.mark.parametrize("value", ["enterprises/LC04exampl/devices/1", "https://play.google.com/LC04", "LC 04",
                                   "enterprises/", "x"])
def test_a_wrong_enterprise_id_shape_is_refused_naming_the_field(value):
    with pytest.raises(ConfigurationError, match="enterprise_id"):
        AndroidEnterpriseConnector.validated_config({"enterprise_id": value})


def test_the_page_size_cannot_pass_the_api_maximum():
    with pytest.raises(ConfigurationError, match="page_size"):
        AndroidEnterpriseConnector.validated_config({"enterprise_id": "LC04exampl", "page_size": 500})


@pytest.fixture(scope="module")
def key_file():
    key, _public = make_service_account_key("http://127.0.0.1:9/token")
    return key


def check(value):
    AndroidEnterpriseConnector.check_credential("google_service_account", "service_account_key", value)


def test_a_good_key_loads(key_file):
    check(json.dumps(key_file))
    key = load_key(json.dumps(key_file))
    assert key.client_email == key_file["client_email"] and key.key_id == key_file["private_key_id"]


@pytest.mark.parametrize(("change", "reason"), [
    (lambda key: "not json at all", "not JSON"),
    (lambda key: json.dumps([key]), "not a JSON object"),
    (lambda key: json.dumps({**key, "type": "authorized_user"}), "'authorized_user', not 'service_account'"),
    (lambda key: json.dumps({k: v for k, v in key.items() if k not in ("client_email", "token_uri")}),
     "client_email, token_uri missing"),
    (lambda key: json.dumps({k: v for k, v in key.items() if k != "type"}), "type missing"),
    (lambda key: json.dumps({**key, "private_key": key["private_key"][:200]}), "private_key does not load"),
    (lambda key: json.dumps({**key, "client_email": "syncplane"}), "client_email is not an e-mail"),
    (lambda key: json.dumps({**key, "token_uri": "http://169.254.169.254/token"}), "token_uri"),
])
def test_a_bad_key_is_refused_saying_what_is_wrong_without_quoting_it(key_file, change, reason):
    value = change(key_file)
    with pytest.raises(ConfigurationError) as caught:
        check(value)
    message = str(caught.value)
    assert reason in message
    assert "PRIVATE KEY" not in message and key_file["private_key"][40:80] not in message


def test_a_key_that_is_not_rsa_is_refused(key_file):
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    with pytest.raises(ConfigurationError, match="not an RSA key"):
        check(json.dumps({**key_file, "private_key": pem}))
