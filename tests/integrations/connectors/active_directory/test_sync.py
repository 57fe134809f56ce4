"""Active Directory over a real slapd, incrementally and end to end: uSNChanged cursors (same DC only), then
the sync engine (start_sync + run_sync) into Django users, groups and roles through the DirectorySink.
Each test has a fresh slapd of its own (slapd_small), which it changes."""

import logging

import pytest
from django.contrib.auth.models import User
from ldap3 import MODIFY_DELETE

from syncplane.core import roles
from syncplane.directory.models import DirectoryAccount, DirectoryGroup
from syncplane.integrations.choices import Capability, RunStatus, SyncMode, SystemType
from syncplane.integrations.connectors.active_directory import ActiveDirectoryConnector
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem, SyncRecordOutcome, SyncState
from syncplane.integrations.secrets import to_reference
from syncplane.inventory.models import AssetSource
from syncplane_simulators.active_directory import guid_for
from tests.integrations.assertions import assert_counters_match_outcomes
from tests.integrations.connectors.active_directory.fixtures import ad_context


def changed_dns(directory, cursor):
    with ActiveDirectoryConnector(ad_context(directory)) as ad:
        pages = list(ad.fetch("incremental", cursor))
    return [raw["dn"] for page in pages for raw in page.records], pages[-1].cursor


def test_incremental_by_usnchanged_returns_only_changed_entries(slapd_small, caplog):
    with ActiveDirectoryConnector(ad_context(slapd_small)) as ad:
        cursor = next(iter(ad.fetch("full"))).cursor
    assert changed_dns(slapd_small, cursor) == ([], cursor)  # nothing changed since
    vera, zoe = slapd_small.user("vera.viewer").dn, slapd_small.user("zoe.odegard").dn
    with slapd_small.changes() as editor:
        editor.rename_user(vera, "Vera V. Viewer")
        editor.remove_member(slapd_small.group("Syncplane Viewers").dn, zoe)
    dns, after = changed_dns(slapd_small, cursor)
    assert dns == ["cn=Vera Viewer,ou=People,dc=ad,dc=example,dc=org",
                   "cn=Syncplane Viewers,ou=Groups,dc=ad,dc=example,dc=org"]
    assert after == {"dc": "dc01.ad.example.org", "usn": cursor["usn"] + 2}
    assert changed_dns(slapd_small, after)[0] == []  # the new cursor starts after those changes
    # USNs are per DC: a cursor from another DC reads everything, and says why.
    with caplog.at_level(logging.INFO, logger="syncplane.integrations.active_directory"):
        everything, _ = changed_dns(slapd_small, {"dc": "dc02.ad.example.org", "usn": after["usn"]})
    assert len(everything) == 40 + 6 + 6
    assert "USNs are per domain controller" in caplog.text


@pytest.fixture
def ad_system(db, slapd_small):
    return ExternalSystem.objects.create(
        name="Active Directory (slapd)",
        system_type=SystemType.ACTIVE_DIRECTORY,
        category="identity",
        base_url=slapd_small.ldaps_url,
        auth_type="basic",
        credentials={"username": slapd_small.service_dn, "password": to_reference(slapd_small.service_password)},
        config=ActiveDirectoryConnector.validated_config({
            "base_dn": slapd_small.base_dn, "ca_file": str(slapd_small.ca_file), "page_size": 15,
            "role_mapping": {"Syncplane Viewers": "viewer", "syncplane admins": "admin"},
        }),
    )


def sync(system, mode=SyncMode.FULL):
    log = assert_counters_match_outcomes(run_sync(start_sync(system, mode=mode).pk))
    assert log.status == RunStatus.SUCCESS, log.error_summary
    return log


def account(system, sam):
    return DirectoryAccount.objects.select_related("user").get(external_system=system,
                                                               username__startswith=f"{sam}@")


@pytest.mark.django_db
def test_end_to_end_users_groups_roles_and_changes(ad_system, slapd_small):
    log = sync(ad_system)
    assert log.pages == 3 + 1 + 1 and log.records_read == 40 + 6 + 6 and log.records_failed == 0
    zoe = account(ad_system, "zoe.odegard")
    assert zoe.user.username == "zoe.odegard@ad.example.org" and zoe.user.first_name == "Zoë"
    assert zoe.user.is_active and not zoe.user.has_usable_password()
    assert not account(ad_system, "user0002").user.is_active  # 10th user: disabled in AD
    assert DirectoryGroup.objects.filter(external_system=ad_system).count() == 6
    assert SyncState.objects.get(external_system=ad_system).cursor["usn"] == slapd_small.usn
    # Role mapping: Syncplane Admins (and IT Operations, nested in it) -> admin; Syncplane Viewers -> viewer.
    assert roles.role_of(account(ad_system, "vera.viewer").user) == roles.VIEWER
    assert roles.role_of(account(ad_system, "alex.admin").user) == roles.ADMIN
    assert roles.role_of(account(ad_system, "otto.operator").user) == roles.ADMIN  # through nesting
    assert roles.role_of(account(ad_system, "user0005").user) is None
    all_staff = DirectoryGroup.objects.get(external_system=ad_system, name="All Staff").group
    assert all_staff.user_set.count() == 40

    # Changes in AD, then an incremental sync: disabled -> deactivated; memberships follow; roles follow.
    with slapd_small.changes() as editor:
        editor.set_disabled(slapd_small.user("alex.admin").dn)
        editor.add_member(slapd_small.group("Syncplane Viewers").dn, slapd_small.user("user0005").dn)
        editor.remove_member(slapd_small.group("Syncplane Viewers").dn, slapd_small.user("vera.viewer").dn)
        new_dn = editor.add_user("nina.new", "Nina", "Neu")
        editor.add_member(slapd_small.group("Syncplane Viewers").dn, new_dn)
    log = sync(ad_system, SyncMode.INCREMENTAL)
    assert log.records_read == 3  # alex and Nina (users), the Viewers group
    assert not account(ad_system, "alex.admin").user.is_active
    assert roles.role_of(account(ad_system, "alex.admin").user) is None
    assert roles.role_of(account(ad_system, "user0005").user) == roles.VIEWER
    assert roles.role_of(account(ad_system, "nina.new").user) == roles.VIEWER
    assert roles.role_of(account(ad_system, "vera.viewer").user) is None
    viewers = DirectoryGroup.objects.get(external_system=ad_system, name="Syncplane Viewers").group
    assert set(viewers.user_set.values_list("username", flat=True)) == {
        "zoe.odegard@ad.example.org", "kim.lee@ad.example.org", "user0003@ad.example.org",
        "user0005@ad.example.org", "nina.new@ad.example.org"}
    assert User.objects.filter(username="alex.admin@ad.example.org").exists()  # deactivated, never deleted


def test_list_ids_lists_every_object_a_full_run_reads_and_only_their_ids(slapd_small):
    with ActiveDirectoryConnector(ad_context(slapd_small, page_size=15)) as ad:
        full = [raw["objectGUID"] for page in ad.fetch("full") for raw in page.records]
        listed = list(ad.list_ids())
    assert len(listed) == 40 + 6 + 6 and sorted(listed) == sorted(full)
    assert ActiveDirectoryConnector.supports(Capability.LIST_IDS)


@pytest.mark.django_db
def test_an_incremental_sync_sees_deletions_through_the_id_listing(ad_system, slapd_small):
    sync(ad_system)
    assert account(ad_system, "sam.nomail").user.is_active
    computer = slapd_small.data.computers[0]
    with slapd_small.changes() as editor:
        editor.delete(slapd_small.user("sam.nomail").dn)  # a tombstone: no uSNChanged a search can see
        editor.delete(slapd_small.group("Syncplane Viewers").dn)
        editor.delete(computer.dn)
    log = sync(ad_system, SyncMode.INCREMENTAL)
    assert (log.records_read, log.records_deleted) == (0, 3)
    gone = account(ad_system, "sam.nomail")
    assert gone.removed_at is not None and not gone.user.is_active  # deactivated, not deleted
    viewers = DirectoryGroup.objects.get(external_system=ad_system, name="Syncplane Viewers")
    assert viewers.removed_at is not None and not viewers.memberships.exists()
    assert roles.role_of(account(ad_system, "vera.viewer").user) is None  # the group granted it
    device = AssetSource.objects.get(external_system=ad_system, external_id=str(guid_for(computer.dn)))
    assert device.deleted_at is not None
    assert set(SyncRecordOutcome.objects.filter(sync_log=log, action="delete").values_list("external_id", flat=True)) \
        == {gone.external_id, viewers.external_id, device.external_id}
    # Nothing else is taken for deleted, and the next rounds find nothing more.
    assert DirectoryAccount.objects.filter(external_system=ad_system, removed_at__isnull=False).count() == 1
    assert sync(ad_system, SyncMode.INCREMENTAL).records_deleted == 0
    assert sync(ad_system).records_deleted == 0


@pytest.mark.django_db
def test_an_incremental_sync_with_a_failed_record_marks_nothing_deleted(ad_system, slapd_small):
    sync(ad_system)
    with slapd_small.changes() as editor:
        editor.delete(slapd_small.user("sam.nomail").dn)
        # A user with neither a userPrincipalName nor a sAMAccountName cannot be used: a failed record.
        editor.modify(slapd_small.user("user0005").dn, {"userPrincipalName": [(MODIFY_DELETE, [])],
                                                        "sAMAccountName": [(MODIFY_DELETE, [])]})
    log = assert_counters_match_outcomes(run_sync(start_sync(ad_system, mode=SyncMode.INCREMENTAL).pk))
    assert (log.status, log.records_failed, log.records_deleted) == (RunStatus.PARTIAL, 1, 0)
    assert account(ad_system, "sam.nomail").removed_at is None  # a partial pass proves nothing


@pytest.mark.django_db
def test_bad_credentials_fail_the_run_permanently_without_the_password(ad_system, slapd_small):
    ad_system.credentials = {**ad_system.credentials, "password": to_reference("Typed-Wr0ng:pa55")}
    ad_system.save()
    log = run_sync(start_sync(ad_system).pk, final_attempt=False)  # permanent: not put back in the queue
    assert_counters_match_outcomes(log)
    assert log.status == RunStatus.FAILED and log.error_kind == "permanent"
    assert "invalid credentials" in log.error_summary and "Typed-Wr0ng" not in log.error_summary
