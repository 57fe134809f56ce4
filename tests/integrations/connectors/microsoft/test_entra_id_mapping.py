"""Entra ID mapping: Graph objects (as the delta queries return them) -> the directory record contract."""

import pytest

from syncplane.integrations.choices import RecordKind
from syncplane.integrations.connectors.microsoft.entra_id import EntraIDConnector, map_directory_object
from syncplane.integrations.errors import ConfigurationError, RecordError
from syncplane.integrations.sinks import sink_for

USER = "#microsoft.graph.user"
GROUP = "#microsoft.graph.group"
DEVICE = "#microsoft.graph.device"


def mapped(raw):
    record = map_directory_object(raw)
    sink_for(RecordKind.DIRECTORY, 0).validate(record)  # the record passes the directory sink's checks
    return record.attributes


def test_user_lower_cases_the_upn_and_keeps_names():
    attributes = mapped({"@odata.type": USER, "id": "u1", "userPrincipalName": "Renee.Dubois@Fabrikam.Example",
                         "mail": "Renee.Dubois@Fabrikam.Example", "givenName": "Renée", "surname": "Dubois",
                         "displayName": "Renée Dubois", "accountEnabled": False})
    assert attributes == {"kind": "user", "dn": "", "username": "renee.dubois@fabrikam.example",
                          "email": "renee.dubois@fabrikam.example", "first_name": "Renée", "last_name": "Dubois",
                          "display_name": "Renée Dubois", "is_active": False, "removed": False}


def test_absent_properties_stay_absent_and_null_mail_is_empty():
    attributes = mapped({"@odata.type": USER, "id": "u1", "accountEnabled": True, "mail": None})
    assert attributes == {"kind": "user", "dn": "", "email": "", "is_active": True, "removed": False}


def test_removed_user():
    attributes = mapped({"@odata.type": USER, "id": "u1", "@removed": {"reason": "changed"}})
    assert attributes["removed"] is True and "username" not in attributes


def test_group_members_delta_keeps_people_and_groups_only():
    attributes = mapped({"@odata.type": GROUP, "id": "g1", "displayName": "Engineering", "members@delta": [
        {"@odata.type": USER, "id": "u1"},
        {"@odata.type": USER, "id": "u2", "@removed": {"reason": "deleted"}},
        {"@odata.type": GROUP, "id": "g2"},
        {"@odata.type": DEVICE, "id": "d1"},
        {"@odata.type": "#microsoft.graph.servicePrincipal", "id": "sp1"},
    ]})
    assert attributes == {"kind": "group", "dn": "", "name": "Engineering", "member_ref": "external_id",
                          "members": None, "members_added": ["u1", "g2"], "members_removed": ["u2"],
                          "removed": False}


@pytest.mark.parametrize(("os_name", "compliant", "expected"), [
    ("IPhone", False, ("iOS", "mobile", "noncompliant")),
    ("IPad", True, ("iPadOS", "tablet", "compliant")),
    ("MacMDM", None, ("macOS", "laptop", "unknown")),
    ("Windows", True, ("Windows", "laptop", "compliant")),
    ("Windows Server", True, ("Windows Server", "server", "compliant")),
    ("Linux", None, ("Linux", "other", "unknown")),
])
def test_device_types_and_compliance(os_name, compliant, expected):
    attributes = mapped({"@odata.type": DEVICE, "id": "d1", "displayName": "LAPTOP-0042", "operatingSystem": os_name,
                         "operatingSystemVersion": "1.0", "isCompliant": compliant, "isManaged": compliant is not None,
                         "approximateLastSignInDateTime": "2025-06-11T08:12:00Z"})
    asset = attributes["asset"]
    assert (asset["operating_system"], asset["asset_type"], asset["compliance_state"]) == expected
    assert asset["last_seen_at"] == "2025-06-11T08:12:00+00:00" and asset["hostname"] == "LAPTOP-0042"


def test_a_free_text_device_name_is_not_a_hostname():
    asset = mapped({"@odata.type": DEVICE, "id": "d1", "displayName": "Tom's iPhone", "operatingSystem": "IPhone"})
    assert asset["asset"]["name"] == "Tom's iPhone" and asset["asset"]["hostname"] == ""


@pytest.mark.parametrize(("enabled", "status"), [(True, "active"), (False, "retired"), (None, "unknown")])
def test_device_status_follows_account_enabled(enabled, status):
    raw = {"@odata.type": DEVICE, "id": "d1", "displayName": "LAPTOP-0042", "operatingSystem": "Windows"}
    if enabled is not None:
        raw["accountEnabled"] = enabled
    assert mapped(raw)["asset"]["status"] == status


def test_removed_device_has_no_asset():
    assert mapped({"@odata.type": DEVICE, "id": "d1", "@removed": {"reason": "deleted"}}) == {
        "kind": "device", "removed": True}


@pytest.mark.parametrize("raw", [
    {"@odata.type": USER},
    {"@odata.type": USER, "id": "u1", "accountEnabled": "yes"},
    {"@odata.type": DEVICE, "id": "d1", "approximateLastSignInDateTime": "yesterday"},
    {"@odata.type": DEVICE, "id": "d1", "accountEnabled": "false"},
    {"@odata.type": "#microsoft.graph.orgContact", "id": "c1"},
])
def test_unusable_records_are_record_errors(raw):
    with pytest.raises(RecordError):
        map_directory_object(raw)


def test_config_needs_a_tenant_and_takes_the_role_mapping():
    with pytest.raises(ConfigurationError):
        EntraIDConnector.validated_config({})
    with pytest.raises(ConfigurationError):
        EntraIDConnector.validated_config({"tenant_id": "t", "role_mapping": {"Admins": "root"}})
    config = EntraIDConnector.validated_config({"tenant_id": "t"})
    assert config["authority_url"] == "https://login.microsoftonline.com" and config["role_mapping"] == {}
    assert EntraIDConnector.config_schema["properties"]["role_mapping"] == {
        "type": "object", "additionalProperties": {"enum": ["admin", "operator", "viewer"]}, "default": {},
        "description": "Directory group (name or id) -> Syncplane role, applied after each sync."}
