"""The Active Directory connector against a real slapd with the AD-like schema: paging, the three streams,
disabled accounts, nesting, a group larger than one AD range, non-ASCII names, filter escaping, TLS and bind
errors. Incremental runs are in test_active_directory_incremental.py (they change the directory)."""

import logging

import pytest

from syncplane.integrations.connectors.active_directory import ActiveDirectoryConnector
from syncplane.integrations.errors import AuthenticationError, ConfigurationError, TransientError
from syncplane_simulators.active_directory import free_port, write_ca_file
from tests.integrations.connectors.active_directory.fixtures import ad_context


def connector(directory, url=None, **config):
    return ActiveDirectoryConnector(ad_context(directory, url, **config))


def full_run(directory, url=None, **config):
    with connector(directory, url, **config) as ad:
        pages = list(ad.fetch("full"))
        records = [ad.map_record(raw) for page in pages for raw in page.records]
    return pages, records


@pytest.fixture(scope="module")
def everything(slapd):
    return full_run(slapd, page_size=250)


def by_kind(records, kind):
    return [r for r in records if r.attributes["kind"] == kind]


def test_paged_search_yields_one_page_per_ldap_page_in_stream_order(slapd, everything):
    pages, records = everything
    streams = [page.records[0]["stream"] for page in pages if page.records]
    # 1,600 users in pages of 250 (7 pages), 6 groups, 24 computers; streams never interleave.
    assert [len(p.records) for p in pages] == [250] * 6 + [100, 6, 24]
    assert streams == ["users"] * 7 + ["groups", "computers"]
    assert len(by_kind(records, "user")) == 1600 == len({r.external_id for r in by_kind(records, "user")})
    assert len(by_kind(records, "device")) == 24
    # Each page says where to go on: the same stream while it has pages, then the next one; the last: done.
    assert pages[0].resume["stream"] == "users" and pages[6].resume["stream"] == "groups"
    assert pages[7].resume["stream"] == "computers" and pages[-1].resume is None
    # The cursor is the root DSE's USN, read before the first search, on every page.
    assert {tuple(p.cursor.items()) for p in pages} == {(("dc", "dc01.ad.example.org"), ("usn", slapd.usn))}


def test_a_resume_restarts_the_stream_it_stopped_in(slapd, everything):
    pages, _ = everything
    with connector(slapd, page_size=250) as ad:
        resumed = list(ad.fetch("full", None, pages[3].resume))  # a run that died after page 4 of users
    assert [len(p.records) for p in resumed] == [250] * 6 + [100, 6, 24]  # the paging cookie did not survive
    assert resumed[0].cursor == pages[0].cursor  # the cursor of the run that was interrupted is kept
    with connector(slapd, page_size=250) as ad:
        groups_on = list(ad.fetch("full", None, pages[6].resume))
    assert [len(p.records) for p in groups_on] == [6, 24]


def test_users_are_mapped_with_guid_username_and_names(slapd, everything):
    _, records = everything
    users = {r.attributes["username"]: r for r in by_kind(records, "user")}
    zoe = users["zoe.odegard@ad.example.org"]
    expected_guid = str(__import__("uuid").UUID(bytes_le=slapd.user("zoe.odegard").attributes["objectGUID"][0]))
    assert zoe.external_id == expected_guid
    assert zoe.attributes == {
        "kind": "user", "username": "zoe.odegard@ad.example.org", "email": "zoe.odegard@example.org",
        "first_name": "Zoë", "last_name": "Ødegård", "display_name": "Zoë Ødegård", "is_active": True,
        "dn": "cn=Zoë Ødegård,ou=People,dc=ad,dc=example,dc=org", "removed": False,
    }
    assert users["juergen.mueller@ad.example.org"].attributes["last_name"] == "Müller"
    assert "pat.nodomain" in users  # no UPN: sAMAccountName
    assert users["sam.nomail@ad.example.org"].attributes["email"] == ""
    # The service account (a plain person) and the computers (also objectClass user) are not users.
    assert not any("svc" in name for name in users)
    assert not any(name.startswith(("ws-", "srv-")) for name in users)


def test_disabled_accounts_are_inactive(slapd, everything):
    _, records = everything
    users = by_kind(records, "user")
    inactive = [r for r in users if not r.attributes["is_active"]]
    assert len(inactive) == 160  # every 10th of 1,600 (userAccountControl 0x202 or 0x10202)
    assert all(r.raw["userAccountControl"] & 2 for r in inactive)
    assert all(not r.raw["userAccountControl"] & 2 for r in users if r.attributes["is_active"])


def test_nested_groups_and_a_group_larger_than_one_range_come_complete(slapd, everything):
    _, records = everything
    groups = {r.attributes["name"]: r.attributes for r in by_kind(records, "group")}
    user_dns = {r.attributes["dn"] for r in by_kind(records, "user")}
    admins, operations = groups["Syncplane Admins"], groups["IT Operations"]
    assert operations["dn"] in admins["members"]  # a group that is a member: nesting, by DN
    assert admins["member_ref"] == "dn" and admins["members_added"] == [] and admins["removed"] is False
    assert len(groups["All Staff"]["members"]) == 1600 > 1500  # more than AD's MaxValRange
    assert set(groups["All Staff"]["members"]) == user_dns  # the same spelling as the users' own DNs
    assert groups["Empty Group"]["members"] == []


def test_a_dn_with_an_escaped_comma_matches_between_user_and_group(slapd, everything):
    _, records = everything
    kim = next(r for r in by_kind(records, "user") if r.attributes["username"] == "kim.lee@ad.example.org")
    viewers = next(r for r in by_kind(records, "group") if r.attributes["name"] == "Syncplane Viewers")
    assert kim.attributes["dn"] == r"cn=Lee\, Kim,ou=People,dc=ad,dc=example,dc=org"  # slapd sends cn=Lee\2C Kim
    assert kim.attributes["dn"] in viewers.attributes["members"]


def test_computers_become_devices(slapd, everything):
    _, records = everything
    devices = {r.attributes["asset"]["name"]: r.attributes["asset"] for r in by_kind(records, "device")}
    assert devices["SRV-004"]["asset_type"] == "server"
    assert devices["WS-0001"] == {
        "name": "WS-0001", "asset_type": "desktop", "status": "active", "hostname": "ws-0001",
        "fqdn": "ws-0001.ad.example.org", "operating_system": "Windows 11 Enterprise", "os_version": "10.0 (22631)",
        "last_seen_at": "2025-04-28T08:00:00+00:00",
    }
    assert devices["WS-0002"]["last_seen_at"] is None  # lastLogonTimestamp 0: never
    assert devices["WS-0003"]["last_seen_at"] is None  # no lastLogonTimestamp at all
    assert devices["WS-0006"]["operating_system"] == "Ubuntu" and devices["WS-0006"]["asset_type"] == "server"


def test_starttls_reads_the_same_as_ldaps(slapd):
    with connector(slapd, slapd.ldap_url) as ad:  # ldap:// -> StartTLS by default
        result = ad.test_connection()
        first = next(iter(ad.fetch("full")))
    assert result.ok and result.details["tls"] == "starttls"
    assert len(first.records) == 500  # the default page size


def test_filter_values_are_escaped_so_an_injection_finds_nothing(slapd):
    with connector(slapd) as ad:
        assert ad.lookup_user("zoe.odegard")["sAMAccountName"] == "zoe.odegard"
        assert ad.lookup_user(r"ADEX\zoe.odegard")["sAMAccountName"] == "zoe.odegard"  # down-level form
        assert ad.lookup_user("zoe.odegard@ad.example.org")["userPrincipalName"] == "zoe.odegard@ad.example.org"
        # Unescaped, each of these would widen the filter to every user (or break it).
        for attack in ("*", "*)(objectClass=*", "zoe*", "zoe.odegard)(|(cn=*", r"\2a", "*)(sAMAccountName=*"):
            assert ad.find_users(attack) == [], attack


def test_a_wrong_ca_names_ca_file_in_the_answer_and_the_cause_in_the_log(slapd, tmp_path, caplog):
    # The answer is the one every connection failure gets (no port scanning through it); the log has the cause.
    other_ca = str(write_ca_file(tmp_path / "other-ca.pem"))
    for url in (slapd.ldaps_url, slapd.ldap_url):
        with pytest.raises(TransientError) as caught, connector(slapd, url, ca_file=other_ca) as ad:
            ad.test_connection()
        assert "cannot reach the directory" in str(caught.value) and "ca_file" in str(caught.value)
        causes = [record.cause for record in caplog.records if hasattr(record, "cause")]
        assert "could not be verified against " + other_ca in causes[-1]
        assert "certificate verify failed" in causes[-1]


def test_a_missing_ca_file_is_named(slapd, tmp_path):
    with pytest.raises(ConfigurationError, match="ca_file .*nope.pem does not exist"):
        connector(slapd, ca_file=str(tmp_path / "nope.pem")).test_connection()


def test_bad_credentials_are_a_permanent_authentication_error_without_the_password(slapd):
    ad = ActiveDirectoryConnector(ad_context(slapd, password="Wr0ng-Pa55word!"))
    with pytest.raises(AuthenticationError) as caught:
        ad.test_connection()
    assert caught.value.kind == "permanent"
    assert "invalid credentials" in str(caught.value) and slapd.service_dn in str(caught.value)
    assert "Wr0ng-Pa55word!" not in str(caught.value)


def test_a_server_that_is_down_is_transient(slapd):
    with pytest.raises(TransientError, match="cannot reach the directory"):
        connector(slapd, f"ldaps://127.0.0.1:{free_port()}").test_connection()


def test_a_base_dn_that_does_not_exist_is_a_configuration_error(slapd):
    with pytest.raises(ConfigurationError, match="noSuchObject.*check base_dn"):
        connector(slapd, base_dn="ou=Nowhere,dc=ad,dc=example,dc=org").test_connection()


def test_a_page_size_above_the_server_limit_is_refused(slapd):
    with pytest.raises(ConfigurationError, match="page_size"):
        connector(slapd, page_size=1001)


def test_turning_verification_off_is_logged(slapd, caplog, tmp_path):
    other_ca = str(write_ca_file(tmp_path / "other-ca.pem"))
    with caplog.at_level(logging.WARNING), connector(slapd, ca_file=other_ca, tls_verify=False) as ad:
        assert ad.test_connection().ok
    assert "verification is off" in caplog.text
