"""Entra ID end to end: connector (msal + Graph delta) -> sync engine -> directory sink, against the Graph
simulator over real HTTP."""

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from syncplane.core import roles
from syncplane.directory.models import DirectoryAccount, DirectoryGroup
from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.choices import AuthType, RunStatus, SyncMode, SystemType
from syncplane.integrations.connectors.microsoft.entra_id import EntraIDConnector
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem, SyncState
from syncplane.integrations.secrets import resolve_secret, to_reference
from syncplane.inventory.models import AssetSource
from syncplane_simulators import entra_id as graph_sim
from syncplane_simulators.server import SimulatorServer
from tests.integrations.assertions import assert_counters_match_outcomes

pytestmark = pytest.mark.django_db


@pytest.fixture
def graph(simulator):
    sim = simulator.graph
    sim.page_size = sim.member_slice = 10  # several pages per stream, a large group in many slices
    return sim


@pytest.fixture
def entra(simulator, graph):
    return ExternalSystem.objects.create(
        name="Entra test", system_type=SystemType.ENTRA_ID, category="identity",
        base_url=f"{simulator.url}/graph/v1.0", auth_type=AuthType.OAUTH2_CLIENT_CREDENTIALS,
        credentials={"client_id": graph_sim.DEFAULT_CLIENT_ID,
                     "client_secret": to_reference(graph_sim.DEFAULT_CLIENT_SECRET)},
        config={"tenant_id": graph_sim.DEFAULT_TENANT, "authority_url": f"{simulator.url}/graph/login",
                "role_mapping": {"Syncplane Operators": "operator"}},
    )


def connector_for(system):
    return EntraIDConnector(ConnectorContext(
        base_url=system.base_url, auth_type=system.auth_type, config=system.config, credentials=system.credentials,
        resolve_secret=resolve_secret, name=system.name))


def sync(system, mode=SyncMode.FULL, **kwargs):
    return assert_counters_match_outcomes(run_sync(start_sync(system, mode=mode).pk, **kwargs))


def group_members(system, name):
    group = DirectoryGroup.objects.get(external_system=system, name=name).group
    return set(group.user_set.values_list("username", flat=True))


def username(graph, user_id):
    return graph.users[user_id]["userPrincipalName"].lower()


def test_full_sync_pages_through_every_stream(entra, graph):
    log = sync(entra)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    stats = graph.stats
    # 120 users at 10 a page, after the empty first page of the initial chain; groups come in member slices.
    assert stats["users_delta_requests"] == 1 + 12
    assert stats["groups_delta_requests"] >= 3 and stats["devices_delta_requests"] == 4
    assert stats["token_requests"] == 1 and stats["openid_configuration_requests"] == 1
    assert User.objects.count() == 120
    disabled = {u["userPrincipalName"].lower() for u in graph.users.values() if not u["accountEnabled"]}
    assert disabled and set(User.objects.filter(is_active=False).values_list("username", flat=True)) == disabled
    # Lower-cased UPNs, names kept as they are (not ASCII).
    assert not User.objects.exclude(username=graph_sim.DEFAULT_DOMAIN).filter(username__regex=r"[A-Z]").exists()
    assert User.objects.filter(first_name="Renée").exists() and User.objects.filter(last_name="Müller").exists()
    # The large group arrived in slices on several pages, and merged; a group deleted before the first sync
    # (listed as @removed) was never created; a group of devices has no user members.
    assert len(group_members(entra, "All Staff")) == 120
    assert not DirectoryGroup.objects.filter(name="Legacy VPN Users").exists()
    assert group_members(entra, "Kiosk Devices") == set()
    # Nesting: Platform Team is inside Syncplane Operators.
    platform = group_members(entra, "Platform Team")
    assert len(platform) == 4 and platform < group_members(entra, "Syncplane Operators")
    assert len(group_members(entra, "Syncplane Operators")) == 7
    # Devices joined the inventory with their compliance.
    sources = AssetSource.objects.filter(external_system=entra).select_related("asset")
    assert sources.count() == 40
    states = {s.asset.compliance_state for s in sources}
    assert states == {"compliant", "noncompliant", "unknown"}
    # Their status follows accountEnabled: disabled registrations are retired, none is left unknown.
    statuses = {s.external_id: s.asset.status for s in sources}
    assert statuses == {d: "active" if graph.devices[d]["accountEnabled"] else "retired" for d in graph.devices}
    assert set(statuses.values()) == {"active", "retired"}
    iphone = next(s for s in sources if s.raw_payload["operatingSystem"] == "IPhone")
    assert (iphone.asset.asset_type, iphone.asset.operating_system) == ("mobile", "iOS")
    assert "isManaged" in iphone.raw_payload
    state = SyncState.objects.get(external_system=entra)
    assert set(state.cursor) == {"users", "groups", "devices"}
    assert all("$deltatoken=" in link for link in state.cursor.values())


def test_delta_round_applies_removals_disables_and_membership_changes(entra, graph):
    sync(entra)
    ids = list(graph.users)
    engineering = graph.find_group("Engineering")
    gone, disabled, leaver = ids[3], ids[6], ids[9]  # all three in Engineering (every third user)
    assert {gone, leaver} <= set(graph.members[engineering])
    graph.remove_user(gone)
    graph.disable_user(disabled)
    graph.remove_member("Engineering", leaver)
    (joiner,) = graph.add_users(1)
    graph.add_member("Engineering", joiner)
    before = graph.stats.as_dict()

    log = sync(entra, mode=SyncMode.INCREMENTAL)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    # Only the changes were read: the removed, the disabled and the new user (the leaver's user object did
    # not change), Engineering and All Staff (which the removed user left), no device.
    assert log.records_read == 3 + 2
    assert graph.stats["token_requests"] - before.get("token_requests", 0) == 1
    assert not User.objects.get(username=username_of(entra, gone)).is_active
    assert DirectoryAccount.objects.get(external_id=gone).removed_at is not None
    assert not User.objects.get(username=username(graph, disabled)).is_active
    members = group_members(entra, "Engineering")
    assert username(graph, leaver) not in members and username_of(entra, gone) not in members
    assert username(graph, joiner) in members
    assert User.objects.get(username=username(graph, joiner)).is_active
    assert User.objects.count() == 121  # never deleted
    # A second incremental run with nothing changed reads nothing.
    assert sync(entra, mode=SyncMode.INCREMENTAL).records_read == 0


def test_a_disabled_device_is_retired_by_the_next_delta_round(entra, graph):
    sync(entra)
    device = next(d for d, raw in graph.devices.items() if raw["accountEnabled"])
    graph.disable_device(device)
    log = sync(entra, mode=SyncMode.INCREMENTAL)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert (log.records_read, log.records_updated) == (1, 1)
    assert AssetSource.objects.get(external_system=entra, external_id=device).asset.status == "retired"


def test_a_moved_graph_starts_the_delta_chain_over_instead_of_following_the_old_links(entra, graph):
    sync(entra)
    old_requests = graph.stats["users_delta_requests"]
    with SimulatorServer(records=250, seed=7) as moved:  # the same tenant behind another port
        entra.base_url = f"{moved.url}/graph/v1.0"
        entra.config = {**entra.config, "authority_url": f"{moved.url}/graph/login"}
        entra.save()
        assert SyncState.objects.get(external_system=entra).cursor is None
        log = sync(entra, mode=SyncMode.INCREMENTAL)
        assert log.status == RunStatus.SUCCESS, log.error_summary
        assert graph.stats["users_delta_requests"] == old_requests  # nothing went to the old address
        assert moved.graph.stats["users_delta_requests"] >= 1
        links = SyncState.objects.get(external_system=entra).cursor
        assert all(link.startswith(moved.url) for link in links.values())


def username_of(system, external_id):
    return DirectoryAccount.objects.get(external_system=system, external_id=external_id).username


def test_throttling_429_is_retried_after_retry_after(entra, graph):
    graph.faults.add("status", status=429, retry_after=1, path="/groups/delta")
    connector = connector_for(entra)
    log = sync(entra, connector=connector)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert graph.stats["faults_fired"] == 1
    assert connector.client.stats["retries"] == 1
    assert DirectoryGroup.objects.filter(external_system=entra).count() == 7


def test_an_expired_token_is_renewed_once_and_the_run_goes_on(entra, graph):
    expired = []

    def expire_after_first_page(log):
        if not expired:
            graph.expire_tokens()
            expired.append(log.pages)

    log = sync(entra, progress=expire_after_first_page)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert graph.stats["expired_token_requests"] == 1
    assert graph.stats["token_requests"] == 2
    assert User.objects.count() == 120


def test_a_bad_secret_fails_with_the_aadsts_code_and_no_secret(entra, graph):
    graph.client_secret = "rotated-secret-value"
    log = sync(entra)
    assert log.status == RunStatus.FAILED
    assert "invalid_client" in log.error_summary and "AADSTS7000215" in log.error_summary
    assert graph_sim.DEFAULT_CLIENT_SECRET not in log.error_summary


def test_an_unknown_tenant_is_an_authentication_error(entra, graph):
    entra.config = {**entra.config, "tenant_id": "not-our-tenant"}
    entra.save()
    log = sync(entra)
    assert log.status == RunStatus.FAILED and "tenant" in log.error_summary


def test_an_expired_delta_link_asks_for_a_full_sync(entra, graph):
    sync(entra)
    state = SyncState.objects.get(external_system=entra)
    state.cursor = {**state.cursor, "users": state.cursor["users"].split("$deltatoken=")[0] + "$deltatoken=bm9wZQ"}
    state.save()
    log = sync(entra, mode=SyncMode.INCREMENTAL)
    assert log.status == RunStatus.FAILED and "run a full sync" in log.error_summary


def test_the_role_mapping_follows_the_directory(entra, graph):
    sync(entra)
    platform = graph.find_group("Platform Team")
    nested_member = next(iter(graph.members[platform]))  # operator only through the nested group
    user = User.objects.get(username=username(graph, nested_member))
    assert roles.has_role(user, roles.OPERATOR)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert client.get("/api/v1/directory/groups/").status_code == 200
    graph.remove_member("Platform Team", nested_member)
    sync(entra, mode=SyncMode.INCREMENTAL)
    user = User.objects.get(pk=user.pk)
    assert not roles.has_role(user, roles.VIEWER)
    assert client.get("/api/v1/directory/groups/").status_code == 403



def test_a_failed_run_resumes_from_the_next_link_and_saves_the_cursor_only_at_the_end(entra, graph):
    graph.faults.add("status", status=404, path="/devices/delta")  # permanent: the run fails there
    log = sync(entra)
    assert log.status == RunStatus.FAILED
    state = SyncState.objects.get(external_system=entra)
    assert state.cursor is None  # no delta link saved from an unfinished run
    assert state.checkpoint["resume"]["stream"] == "devices"
    users_requests = graph.stats["users_delta_requests"]
    log = sync(entra)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert graph.stats["users_delta_requests"] == users_requests  # users were not read again
    state.refresh_from_db()
    assert set(state.cursor) == {"users", "groups", "devices"} and state.checkpoint is None
    assert AssetSource.objects.filter(external_system=entra).count() == 40
    assert User.objects.count() == 120


def test_the_demo_integration_syncs_and_its_mapped_group_grants_operator(simulator):
    from syncplane.devtools.management.commands.demo import DEMO_ENTRA, Command

    system = Command()._integration(DEMO_ENTRA, simulator.url)
    log = sync(system)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    operators = User.objects.filter(groups__name=roles.OPERATOR)
    assert operators.count() == 7  # 3 direct members + the 4 of the nested Platform Team
    assert all(roles.has_role(user, roles.OPERATOR) for user in operators)
    assert not User.objects.filter(groups__name=roles.ADMIN).exists()
