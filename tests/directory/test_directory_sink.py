"""The directory sink through the sync engine: users, groups, memberships, deactivation, two directories,
roles from the directory, and set-based writes."""

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from syncplane.core import roles
from syncplane.directory.models import DirectoryAccount, DirectoryGroup
from syncplane.directory.sink import DirectorySink
from syncplane.integrations.base import Connector, MappedRecord, Page
from syncplane.integrations.choices import SyncMode
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem, SyncRecordOutcome
from syncplane.integrations.sinks import sink_for
from syncplane.inventory.models import AssetSource
from tests.integrations.assertions import assert_counters_match_outcomes

pytestmark = pytest.mark.django_db


class ScriptedDirectory(Connector):
    system_type = "scripted_directory"  # never registered: tests pass the instance to run_sync
    category = "identity"
    display_name = "Scripted directory"
    record_kind = "directory"

    def __init__(self, pages: list[list[dict]]):
        self.pages = pages
        self.context = None
        self.config = {}

    def fetch(self, mode, cursor=None, resume=None):
        start = resume["page"] if resume else 0
        for index in range(start, len(self.pages)):
            last = index == len(self.pages) - 1
            yield Page(records=self.pages[index], resume=None if last else {"page": index + 1})

    def map_record(self, raw):
        attributes = {k: v for k, v in raw.items() if k != "id"}
        return MappedRecord(raw["id"], attributes, raw)

    def external_id(self, raw):
        return raw.get("id", "")


def user(eid, username, *, active=True, dn="", **extra):
    first, _, last = username.partition(".")
    return {"id": eid, "kind": "user", "username": username, "email": f"{username}@example.test",
            "first_name": first.title(), "last_name": last.split("@")[0].title(), "display_name": username,
            "is_active": active, "dn": dn, "removed": False, **extra}


def group(eid, name, members=None, *, ref="external_id", dn="", added=(), removed=(), gone=False):
    return {"id": eid, "kind": "group", "name": name, "dn": dn, "member_ref": ref, "members": members,
            "members_added": list(added), "members_removed": list(removed), "removed": gone}


def make_directory(name, system_type="entra_id", role_mapping=None) -> ExternalSystem:
    return ExternalSystem.objects.create(
        name=name, system_type=system_type, category="identity", base_url="https://directory.example.test",
        auth_type="none", config={"role_mapping": role_mapping or {}},
    )


def run(system, pages, mode=SyncMode.FULL, dry_run=False):
    log = run_sync(start_sync(system, mode=mode, dry_run=dry_run).pk, connector=ScriptedDirectory(pages))
    assert log.status in ("success", "partial"), log.error_summary
    return assert_counters_match_outcomes(log)

ANA, BOB, CAROL = "11111111-0000-0000-0000-000000000001", "11111111-0000-0000-0000-000000000002", \
    "11111111-0000-0000-0000-000000000003"
ENG, OPS, ALL = "22222222-0000-0000-0000-000000000001", "22222222-0000-0000-0000-000000000002", \
    "22222222-0000-0000-0000-000000000003"


def members_of(system, external_id):
    django_group = DirectoryGroup.objects.get(external_system=system, external_id=external_id).group
    return set(django_group.user_set.values_list("username", flat=True))


def test_sink_for_directory_records():
    system = make_directory("Entra")
    assert isinstance(sink_for("directory", system.pk), DirectorySink)


def test_users_and_groups_land_in_django_with_their_members():
    entra = make_directory("Entra")
    # The group arrives before its members: memberships are resolved after the pass.
    run(entra, [[group(ENG, "Engineering", [ANA, BOB])], [user(ANA, "ana.lopez@fabrikam.test"),
                                                          user(BOB, "bob@fabrikam.test")]])
    ana = User.objects.get(username="ana.lopez@fabrikam.test")
    assert ana.is_active and not ana.has_usable_password()
    assert (ana.first_name, ana.email) == ("Ana", "ana.lopez@fabrikam.test@example.test")
    assert members_of(entra, ENG) == {"ana.lopez@fabrikam.test", "bob@fabrikam.test"}
    django_group = DirectoryGroup.objects.get(external_id=ENG).group
    assert django_group.name == f"{entra.pk}:Engineering"


def test_membership_added_and_removed_to_match():
    entra = make_directory("Entra")
    run(entra, [[user(ANA, "ana@f.test"), user(BOB, "bob@f.test"), user(CAROL, "carol@f.test"),
                 group(ENG, "Engineering", [ANA, BOB])]])
    assert members_of(entra, ENG) == {"ana@f.test", "bob@f.test"}
    # Full list (AD style): the list is the truth.
    run(entra, [[user(ANA, "ana@f.test"), user(BOB, "bob@f.test"), user(CAROL, "carol@f.test"),
                 group(ENG, "Engineering", [BOB, CAROL])]])
    assert members_of(entra, ENG) == {"bob@f.test", "carol@f.test"}
    # Changes only (Entra delta style), in an incremental run carrying nothing else.
    run(entra, [[{"id": ENG, "kind": "group", "members_added": [ANA], "members_removed": [CAROL]}]],
        mode=SyncMode.INCREMENTAL)
    assert members_of(entra, ENG) == {"ana@f.test", "bob@f.test"}
    # A Django group that is not a directory group keeps its members.
    local = Group.objects.create(name="auditors")
    User.objects.get(username="carol@f.test").groups.add(local)
    run(entra, [[{"id": ENG, "kind": "group", "members_removed": [ANA, BOB]}]], mode=SyncMode.INCREMENTAL)
    assert members_of(entra, ENG) == set()
    assert set(local.user_set.values_list("username", flat=True)) == {"carol@f.test"}


def test_a_group_in_slices_on_several_pages_merges():
    entra = make_directory("Entra")
    run(entra, [[user(ANA, "ana@f.test"), user(BOB, "bob@f.test")],
                [group(ENG, "Engineering", added=[ANA])], [group(ENG, "Engineering", added=[BOB])]])
    assert members_of(entra, ENG) == {"ana@f.test", "bob@f.test"}


def test_a_full_pass_drops_memberships_it_did_not_see():
    entra = make_directory("Entra")
    run(entra, [[user(ANA, "ana@f.test"), user(BOB, "bob@f.test"), group(ENG, "Engineering", added=[ANA, BOB])]])
    run(entra, [[user(ANA, "ana@f.test"), user(BOB, "bob@f.test"), group(ENG, "Engineering", added=[BOB])]])
    assert members_of(entra, ENG) == {"bob@f.test"}


def test_disabled_or_removed_users_are_deactivated_never_deleted():
    entra = make_directory("Entra")
    run(entra, [[user(ANA, "ana@f.test"), user(BOB, "bob@f.test"), user(CAROL, "carol@f.test")]])
    # Disabled in the directory; Bob removed by a delta; Carol's record says nothing of her state.
    run(entra, [[{"id": ANA, "kind": "user", "is_active": False}, {"id": BOB, "kind": "user", "removed": True},
                 {"id": CAROL, "kind": "user", "display_name": "Carol C."}]], mode=SyncMode.INCREMENTAL)
    state = dict(User.objects.values_list("username", "is_active"))
    assert state == {"ana@f.test": False, "bob@f.test": False, "carol@f.test": True}
    carol = DirectoryAccount.objects.get(external_id=CAROL)
    assert carol.attributes["email"] == "carol@f.test@example.test"  # absent from the delta: kept
    assert carol.attributes["display_name"] == "Carol C." and carol.username == "carol@f.test"
    assert DirectoryAccount.objects.get(external_id=BOB).removed_at is not None
    # Re-enabled and restored: active again.
    run(entra, [[{"id": ANA, "kind": "user", "is_active": True}, user(BOB, "bob@f.test")]],
        mode=SyncMode.INCREMENTAL)
    assert User.objects.filter(is_active=True).count() == 3
    assert DirectoryAccount.objects.get(external_id=BOB).removed_at is None


def test_a_delta_removal_counts_as_a_deletion():
    entra = make_directory("Entra")
    run(entra, [[user(ANA, "ana@f.test"), user(BOB, "bob@f.test"), group(ENG, "Engineering", [ANA])]])
    log = run(entra, [[{"id": BOB, "kind": "user", "removed": True}, group(ENG, "Engineering", gone=True),
                       {"id": ANA, "kind": "user", "display_name": "Ana L."}]], mode=SyncMode.INCREMENTAL)
    assert (log.records_deleted, log.records_updated) == (2, 1)


def test_values_the_database_cannot_keep_fail_their_record_and_nuls_are_dropped():
    entra = make_directory("Entra")
    long_dn = "cn=" + "x" * 1000 + ",dc=f,dc=test"
    log = run(entra, [[user(ANA, "ana@f.test", display_name="Ana\x00 L."), user(BOB, "bob@f.test", dn=long_dn),
                       group(ENG, "Engineering", ["m" * 1001]), group(OPS, "Ops\x00", [ANA])]])
    assert (log.status, log.records_created, log.records_failed) == ("partial", 2, 2)
    reasons = dict(SyncRecordOutcome.objects.filter(sync_log=log, status="failed").values_list("external_id",
                                                                                                "reason"))
    assert reasons[BOB] == "dn is 1016 characters long, more than the 1000 its column holds"
    assert reasons[ENG] == "a member of members is 1001 characters long, more than the 1000 its column holds"
    assert DirectoryAccount.objects.get(external_id=ANA).attributes["display_name"] == "Ana L."
    assert DirectoryGroup.objects.get(external_id=OPS).name == "Ops"
    assert members_of(entra, OPS) == {"ana@f.test"}


def test_a_full_pass_deactivates_unseen_users_and_empties_unseen_groups():
    entra = make_directory("Entra")
    run(entra, [[user(ANA, "ana@f.test"), user(BOB, "bob@f.test"), group(ENG, "Engineering", [ANA, BOB])]])
    log = run(entra, [[user(ANA, "ana@f.test")]])
    assert log.records_deleted == 2
    assert not User.objects.get(username="bob@f.test").is_active
    assert User.objects.count() == 2  # never deleted
    eng = DirectoryGroup.objects.get(external_id=ENG)
    assert eng.removed_at is not None and not eng.group.user_set.exists()


def test_a_dry_run_writes_nothing():
    entra = make_directory("Entra")
    log = run(entra, [[user(ANA, "ana@f.test"), group(ENG, "Engineering", [ANA])]], dry_run=True)
    assert log.records_created == 2
    assert not User.objects.exists() and not DirectoryGroup.objects.exists()


def test_one_person_in_two_directories_is_one_user():
    ad = make_directory("AD", system_type="active_directory")
    entra = make_directory("Entra")
    ad_guid = "33333333-0000-0000-0000-000000000001"
    run(ad, [[user(ad_guid, "ana", dn="CN=Ana,OU=People,DC=f,DC=test"),
              group("44444444-0000-0000-0000-000000000001", "Staff", ["cn=ana,ou=people,dc=f,dc=test"], ref="dn",
                    dn="CN=Staff,DC=f,DC=test")]])
    run(entra, [[user(ANA, "ana"), group(ENG, "Staff", [ANA])]])
    ana = User.objects.get(username="ana")
    assert User.objects.count() == 1
    assert set(ana.directory_accounts.values_list("external_system__name", flat=True)) == {"AD", "Entra"}
    # Same group name in both directories: two Django groups, and the user is in both.
    assert set(ana.groups.values_list("name", flat=True)) == {f"{ad.pk}:Staff", f"{entra.pk}:Staff"}
    # Disabled in one directory locks the person out; the other directory's pass does not undo it.
    run(ad, [[user(ad_guid, "ana", active=False, dn="CN=Ana,OU=People,DC=f,DC=test")]])
    run(entra, [[user(ANA, "ana"), group(ENG, "Staff", [ANA])]])
    assert not User.objects.get(username="ana").is_active


def test_a_local_user_is_never_taken_over():
    local = User.objects.create_user("admin", password="a-local-password-123")
    entra = make_directory("Entra")
    run(entra, [[user(ANA, "admin", active=False)]])
    local.refresh_from_db()
    assert local.is_active and local.check_password("a-local-password-123")
    assert DirectoryAccount.objects.get(external_id=ANA).user is None


def test_nested_groups_and_cycles():
    entra = make_directory("Entra")
    run(entra, [[user(ANA, "ana@f.test"), user(BOB, "bob@f.test"),
                 group(ALL, "Everyone", [ENG]), group(ENG, "Engineering", [ANA, OPS]),
                 group(OPS, "Ops", [BOB, ALL])]])  # Ops contains Everyone: a cycle
    assert members_of(entra, ALL) == members_of(entra, OPS) == {"ana@f.test", "bob@f.test"}


def test_devices_go_to_the_inventory():
    entra = make_directory("Entra")
    device = {"id": "d-1", "kind": "device", "removed": False,
              "asset": {"name": "Tom's iPhone", "asset_type": "mobile", "compliance_state": "noncompliant"}}
    run(entra, [[device]])
    source = AssetSource.objects.select_related("asset").get(external_id="d-1")
    assert source.asset.compliance_state == "noncompliant" and source.deleted_at is None
    run(entra, [[{"id": "d-1", "kind": "device", "removed": True}]], mode=SyncMode.INCREMENTAL)
    assert AssetSource.objects.get(external_id="d-1").deleted_at is not None


def test_live_names_the_accounts_groups_and_devices_still_in_the_directory():
    entra = make_directory("Entra")
    device = {"id": "d-1", "kind": "device", "removed": False, "asset": {"name": "Tom's iPhone"}}
    run(entra, [[user(ANA, "ana@f.test"), user(BOB, "bob@f.test"), group(ENG, "Engineering", [ANA]), device]])
    run(entra, [[{"id": BOB, "kind": "user", "removed": True}]], mode=SyncMode.INCREMENTAL)
    live = sink_for("directory", entra.pk).live([ANA, BOB, ENG, "d-1", "never-seen"])
    assert sorted(live) == sorted([ANA, ENG, "d-1"])
    assert sink_for("directory", make_directory("Other").pk).live([ANA]) == []  # per integration


def test_role_mapping_grants_and_revokes_on_the_next_sync(api_as):
    entra = make_directory("Entra", role_mapping={"Engineering": "operator", ALL: "viewer"})
    admin = User.objects.create_user("local-admin")
    roles.grant_role(admin, roles.ADMIN)
    pages = [[user(ANA, "ana@f.test"), user(BOB, "bob@f.test"), group(ENG, "engineering", [ANA]),
              group(ALL, "Everyone", [ENG, BOB])]]
    run(entra, pages)
    ana, bob = User.objects.get(username="ana@f.test"), User.objects.get(username="bob@f.test")
    assert roles.role_of(ana) == roles.OPERATOR  # the highest of operator (direct) and viewer (nested)
    assert roles.role_of(bob) == roles.VIEWER
    # Ana leaves Engineering: still in Everyone through nothing -> no role at all; Bob keeps viewer.
    run(entra, [[user(ANA, "ana@f.test"), user(BOB, "bob@f.test"), group(ENG, "engineering", []),
                 group(ALL, "Everyone", [ENG, BOB])]])
    ana, bob = User.objects.get(username="ana@f.test"), User.objects.get(username="bob@f.test")
    assert roles.role_of(ana) is None and not roles.has_role(ana, roles.VIEWER)
    assert roles.has_role(bob, roles.VIEWER)
    # A local admin is never touched by the mapping.
    assert roles.role_of(User.objects.get(username="local-admin")) == roles.ADMIN


def test_role_mapping_follows_through_the_api():
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    entra = make_directory("Entra", role_mapping={"Viewers": "viewer"})
    run(entra, [[user(ANA, "ana@f.test"), group(ENG, "Viewers", [ANA])]])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=User.objects.get()).key}")
    assert client.get("/api/v1/directory/users/").status_code == 200
    run(entra, [[user(ANA, "ana@f.test"), group(ENG, "Viewers", [])]])
    assert client.get("/api/v1/directory/users/").status_code == 403
    # Deactivated users keep no role (and cannot authenticate at all).
    run(entra, [[user(ANA, "ana@f.test", active=False), group(ENG, "Viewers", [ANA])]])
    assert not User.objects.get().groups.filter(name="viewer").exists()
    assert client.get("/api/v1/directory/users/").status_code == 401


def test_directory_api_lists_users_and_groups(api_as):
    entra = make_directory("Entra", role_mapping={"Engineering": "operator"})
    run(entra, [[user(ANA, "ana@f.test"), group(ENG, "Engineering", [ANA])]])
    client = api_as("viewer")
    users = client.get("/api/v1/directory/users/").json()["results"]
    assert [(u["username"], u["integration_name"], u["is_active"], u["role"], u["groups"]) for u in users] == [
        ("ana@f.test", "Entra", True, "operator", ["Engineering"])
    ]
    groups = client.get("/api/v1/directory/groups/").json()["results"]
    assert [(g["name"], g["member_count"], g["role"]) for g in groups] == [("Engineering", 1, "operator")]
    assert api_as(None).get("/api/v1/directory/users/").status_code == 403


QUERY_BUDGET = 20
FINISH_BUDGET = 40  # ~3,000 new memberships: inserts go 500 rows a statement


def test_a_page_is_written_with_a_bounded_number_of_queries(django_assert_max_num_queries):
    entra = make_directory("Entra")
    sink = DirectorySink(entra.pk)

    def page(n, offset=0):
        users = [user(f"u-{i}", f"user{i}@f.test") for i in range(offset, offset + n)]
        groups = [group(f"g-{i}", f"Group {i}", [f"u-{j}" for j in range(offset, offset + n, 7)])
                  for i in range(offset // 10, offset // 10 + n // 10)]
        return [MappedRecord(r["id"], {k: v for k, v in r.items() if k != "id"}, r) for r in users + groups]

    def write(records):
        for record in records:
            sink.validate(record)
        sink.apply(sink.plan(records), timezone.now())

    write(page(10))  # warm up: role groups, content types
    with django_assert_max_num_queries(QUERY_BUDGET):
        write(page(300, offset=100))
    # Twice the records, same number of statements: nothing grows per record.
    with django_assert_max_num_queries(QUERY_BUDGET):
        write(page(450, offset=1000))
    assert User.objects.count() == 760
    with django_assert_max_num_queries(8):  # unchanged: reads, and one last_seen_at update per table and 500
        write(page(450, offset=1000))
    # After the pass: memberships resolved and roles applied in a fixed number of statements too.
    with django_assert_max_num_queries(FINISH_BUDGET):
        sink.finish(complete_full_pass=False, dry_run=False, now=timezone.now())
    assert len(members_of(entra, "g-100")) == 65
