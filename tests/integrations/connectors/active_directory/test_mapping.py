"""Pure mapping and configuration of the Active Directory connector, from fixture dicts (no server)."""

import uuid

import pytest

from syncplane.integrations.connectors.active_directory import (
    ActiveDirectoryConnector,
    asset_type_for,
    filetime_to_datetime,
    ldap_filter_matching,
    map_directory_record,
    normalize_dn,
    raw_record,
)
from syncplane.integrations.errors import ConfigurationError, RecordError

GUID = "6ecc9c2c-1a2b-4c3d-8e4f-0123456789ab"


def user(**extra):
    return {"stream": "users", "dn": "cn=Ana,ou=People,dc=ad,dc=example,dc=org", "objectGUID": GUID,
            "objectClass": ["top", "person", "organizationalPerson", "user"], "sAMAccountName": "ana",
            "userPrincipalName": "Ana.Lopez@AD.example.org", "givenName": "Ana", "sn": "López",
            "displayName": "Ana López", "mail": "ana@example.org", "userAccountControl": 512, **extra}


def test_raw_record_decodes_the_guid_little_endian_and_normalises_dns():
    guid = uuid.UUID(GUID)
    entry = {"dn": r"CN=Lee\, Kim,OU=People,DC=ad,DC=example,DC=org", "type": "searchResEntry", "raw_attributes": {
        "objectGUID": [guid.bytes_le], "objectClass": [b"top", b"user"], "userAccountControl": [b"514"],
        "displayName": ["Zoë Ødegård".encode()], "member;range=0-*": [b"cn=Zo\\C3\\AB,dc=ad"],
        "unknownAttribute": [b"ignored"]}}
    raw = raw_record(entry, "users")
    assert raw["objectGUID"] == GUID  # bytes_le: the first three fields are little-endian in AD
    assert uuid.UUID(bytes=guid.bytes) != uuid.UUID(bytes=guid.bytes_le)  # so reading them big-endian is wrong
    assert raw["dn"] == r"cn=Lee\, Kim,ou=People,dc=ad,dc=example,dc=org"
    assert raw["userAccountControl"] == 514 and raw["displayName"] == "Zoë Ødegård"
    assert raw["member"] == ["cn=Zoë,dc=ad"] and "unknownAttribute" not in raw


def test_normalize_dn_gives_one_spelling():
    assert normalize_dn(r"CN=Lee\, Kim,OU=People,DC=ad") == normalize_dn(r"cn=Lee\2C Kim,ou=People,dc=ad")
    assert normalize_dn(r"cn=Pat \28Contractor\29,dc=ad") == "cn=Pat (Contractor),dc=ad"
    assert normalize_dn("") == ""


def test_user_mapping():
    record = map_directory_record(user())
    assert record.external_id == GUID
    assert record.attributes == {
        "kind": "user", "username": "ana.lopez@ad.example.org", "email": "ana@example.org", "first_name": "Ana",
        "last_name": "López", "display_name": "Ana López", "is_active": True,
        "dn": "cn=Ana,ou=People,dc=ad,dc=example,dc=org", "removed": False,
    }


@pytest.mark.parametrize(("uac", "active"), [(512, True), (514, False), (66050, False), (66048, True),
                                             (0x800000 | 512, True), (0x10 | 512, True), (None, True)])
def test_disabled_is_bit_0x2_only(uac, active):
    assert map_directory_record(user(userAccountControl=uac)).attributes["is_active"] is active


def test_username_falls_back_to_samaccountname_and_missing_values_are_empty():
    record = map_directory_record(user(userPrincipalName=None, mail=None, displayName=None, cn="Ana L."))
    assert record.attributes["username"] == "ana"
    assert record.attributes["email"] == "" and record.attributes["display_name"] == "Ana L."
    assert map_directory_record(user(mail=["first@example.org", "second@example.org"])).attributes["email"] == \
        "first@example.org"  # cosine's mail is multi-valued


def test_records_that_cannot_be_used():
    with pytest.raises(RecordError, match="objectGUID"):
        map_directory_record(user(objectGUID=""))
    with pytest.raises(RecordError, match="neither"):
        map_directory_record(user(userPrincipalName=None, sAMAccountName=None))
    with pytest.raises(RecordError, match="not a user, group or computer"):
        map_directory_record({"objectGUID": GUID, "objectClass": ["contact"]})


def test_group_mapping_keeps_every_member_dn():
    members = [f"cn=user{i},ou=People,dc=ad" for i in range(1600)] + ["cn=Nested,ou=Groups,dc=ad"]
    record = map_directory_record({"stream": "groups", "dn": "cn=All Staff,ou=Groups,dc=ad", "objectGUID": GUID,
                                   "objectClass": ["top", "group"], "cn": "All Staff", "member": members})
    assert record.attributes == {"kind": "group", "name": "All Staff", "dn": "cn=All Staff,ou=Groups,dc=ad",
                                 "member_ref": "dn", "members": members, "members_added": [],
                                 "members_removed": [], "removed": False}


def test_computer_mapping_to_a_device():
    record = map_directory_record({
        "stream": "computers", "dn": "cn=SRV-01,ou=Computers,dc=ad", "objectGUID": GUID,
        "objectClass": ["top", "person", "organizationalPerson", "user", "computer"], "cn": "SRV-01",
        "sAMAccountName": "SRV-01$", "dNSHostName": "SRV-01.ad.example.org.",
        "operatingSystem": "Windows Server 2022 Datacenter", "operatingSystemVersion": "10.0 (20348)",
        "userAccountControl": 4096 | 2, "lastLogonTimestamp": 133905312000000000})
    assert record.attributes == {"kind": "device", "removed": False, "asset": {
        "name": "SRV-01", "asset_type": "server", "status": "retired", "hostname": "srv-01",
        "fqdn": "srv-01.ad.example.org", "operating_system": "Windows Server 2022 Datacenter",
        "os_version": "10.0 (20348)", "last_seen_at": "2025-05-01T00:00:00+00:00"}}


def test_filetime_never_values():
    assert filetime_to_datetime(0) is None
    assert filetime_to_datetime(9223372036854775807) is None
    assert filetime_to_datetime(None) is None and filetime_to_datetime("junk") is None
    assert filetime_to_datetime(116444736000000000).isoformat() == "1970-01-01T00:00:00+00:00"


@pytest.mark.parametrize(("os_name", "uac", "kind"), [
    ("Windows Server 2019 Standard", 4096, "server"), ("Windows 10 Pro", 4096, "desktop"),
    ("Mac OS X", 4096, "desktop"), ("Ubuntu", 4096, "server"), ("", 8192, "server"), ("", 4096, "other"),
])
def test_asset_type_from_the_os(os_name, uac, kind):
    assert asset_type_for(os_name, uac) == kind


def test_filter_values_are_escaped():
    assert ldap_filter_matching("sAMAccountName", "*)(objectClass=*") == r"(sAMAccountName=\2a\29\28objectClass=\2a)"
    assert ldap_filter_matching("cn", "a\\b\x00") == r"(cn=a\5cb\00)"


def test_config_defaults_and_role_mapping_schema():
    config = ActiveDirectoryConnector.validated_config({"base_dn": "DC=ad,DC=example,DC=org"})
    assert config["user_filter"] == "(&(objectCategory=person)(objectClass=user))"
    assert config["page_size"] == 500 and config["tls_verify"] is True and config["role_mapping"] == {}
    assert ActiveDirectoryConnector.config_schema["properties"]["role_mapping"] == {
        "type": "object", "additionalProperties": {"enum": ["admin", "operator", "viewer"]}, "default": {},
        "description": "Directory group (name or id) -> Syncplane role, applied after each sync."}
    with pytest.raises(ConfigurationError, match="role_mapping.Admins"):
        ActiveDirectoryConnector.validated_config({"base_dn": "DC=ad", "role_mapping": {"Admins": "root"}})


@pytest.mark.parametrize(("config", "message"), [
    ({}, "'base_dn' is a required property"),
    ({"base_dn": "not a dn"}, "base_dn: 'not a dn' is not a DN"),
    ({"base_dn": "DC=ad", "user_filter": "(&(objectClass=user)"}, "user_filter: not a valid LDAP filter"),
    ({"base_dn": "DC=ad", "group_filter": "objectClass=group"}, "group_filter: an LDAP filter is written in"),
    ({"base_dn": "DC=ad", "computer_filter": "(cn=a)(cn=b)"}, "computer_filter: not a valid LDAP filter"),
    ({"base_dn": "DC=ad", "user_filter": "(cn=Lee\\, Kim)"}, "user_filter: a backslash"),
    ({"base_dn": "DC=ad", "page_size": 5000}, "page_size"),
])
def test_config_errors_name_the_field(config, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ActiveDirectoryConnector.validated_config(config)


def test_base_url_must_be_ldap_or_ldaps():
    from syncplane.integrations.base import ConnectorContext
    from syncplane.integrations.errors import PolicyViolation

    def make(url):
        return ActiveDirectoryConnector(ConnectorContext(url, "basic", {"base_dn": "DC=ad"}, {}, lambda r: r))

    with pytest.raises(ConfigurationError, match="ldaps://"):
        make("https://dc01.ad.example.org")
    with pytest.raises(PolicyViolation, match="credentials"):
        make("ldaps://svc:pw@dc01.ad.example.org")
    ad = make("ldap://dc01.ad.example.org")
    assert (ad.port, ad.start_tls, ad.encrypted) == (389, True, True)
    assert make("ldaps://dc01.ad.example.org").port == 636
