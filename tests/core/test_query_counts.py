"""Every list endpoint answers in a number of queries that does not grow with its rows: an N+1 (a serializer
field that reads a relation the viewset's queryset did not load) fails here, not in production.

Each case lists the endpoint at 3 rows and at 30 (one page either way) and compares the query counts."""

from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from syncplane.changes.models import ChangeRequest
from syncplane.directory.models import DirectoryAccount, DirectoryGroup
from syncplane.integrations.choices import Category, RunStatus, SystemType
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog
from syncplane.inventory.models import Asset

pytestmark = pytest.mark.django_db

FEW, MANY = 3, 30


def integration(name: str, system_type: str = SystemType.SERVICENOW_CMDB, **config) -> ExternalSystem:
    category = Category.ITSM if system_type == SystemType.SERVICENOW_ITSM else Category.CMDB
    if system_type == SystemType.ENTRA_ID:
        category = Category.IDENTITY
    system, _ = ExternalSystem.objects.get_or_create(
        name=name,
        defaults={"system_type": system_type, "category": category, "base_url": "https://example.org",
                  "credentials": {"username": "sync", "password": "env:SN_PASSWORD"}, "config": config,
                  "webhook_secret": "env:SN_WEBHOOK"},
    )
    return system


def add_integrations(start: int, stop: int) -> None:
    for i in range(start, stop):
        integration(f"integration {i:03}")


def add_sync_logs(start: int, stop: int) -> None:
    """Finished logs, each of its own integration (a relation per row is what an N+1 would follow)."""
    for i in range(start, stop):
        system = integration(f"logged {i:03}")
        previous = IntegrationSyncLog.objects.filter(status=RunStatus.FAILED).first()
        IntegrationSyncLog.objects.create(
            external_system=system, system_name=system.name, system_type=system.system_type,
            status=RunStatus.FAILED, resumed_from=previous, started_at=timezone.now(), finished_at=timezone.now(),
        )


def add_logs_of_one_integration(start: int, stop: int) -> None:
    system = integration("one with history")
    for _ in range(start, stop):
        IntegrationSyncLog.objects.create(external_system=system, system_name=system.name,
                                          system_type=system.system_type, status=RunStatus.SUCCESS)


def asset(name: str) -> Asset:
    now = timezone.now()
    return Asset.objects.create(name=name, created_at=now, updated_at=now)


def add_assets(start: int, stop: int) -> None:
    for i in range(start, stop):
        asset(f"asset {i:03}")


def add_changes(start: int, stop: int) -> None:
    itsm = integration("itsm", SystemType.SERVICENOW_ITSM)
    for i in range(start, stop):
        requester = get_user_model().objects.create_user(f"requester {i:03}")
        change = ChangeRequest.objects.create(title=f"change {i:03}", requester=requester, external_system=itsm)
        change.affected_assets.add(asset(f"touched {i:03}"), asset(f"also touched {i:03}"))


def _directory_group(system: ExternalSystem, i: int) -> DirectoryGroup:
    now = timezone.now()
    django_group = Group.objects.create(name=f"{system.pk}:group {i:03}")
    return DirectoryGroup.objects.create(external_system=system, external_id=f"g{i}", name=f"group {i:03}",
                                         group=django_group, fingerprint="f", first_seen_at=now, last_seen_at=now)


def add_directory_users(start: int, stop: int) -> None:
    """Accounts, each with its own user in its own mirrored group (groups and role are read per account)."""
    system = integration("directory", SystemType.ENTRA_ID, role_mapping={"group 001": "viewer"})
    now = timezone.now()
    for i in range(start, stop):
        user = get_user_model().objects.create_user(f"person{i:03}@example.org")
        user.groups.add(_directory_group(system, i).group)
        DirectoryAccount.objects.create(external_system=system, external_id=f"u{i}", user=user,
                                        username=user.username, fingerprint="f", first_seen_at=now,
                                        last_seen_at=now)


def add_directory_groups(start: int, stop: int) -> None:
    system = integration("directory", SystemType.ENTRA_ID, role_mapping={"group 001": "operator"})
    for i in range(start, stop):
        group = _directory_group(system, i)
        group.group.user_set.add(get_user_model().objects.create_user(f"member{i:03}@example.org"))


# name -> (path, adds rows [start, stop)); {id} is the integration whose history is listed
CASES: dict[str, tuple[str, Callable[[int, int], None]]] = {
    "integrations": ("/api/v1/integrations/", add_integrations),
    "integration-sync-logs": ("/api/v1/integration-sync-logs/", add_sync_logs),
    "integration-logs": ("/api/v1/integrations/{id}/logs/", add_logs_of_one_integration),
    "assets": ("/api/v1/assets/", add_assets),
    "changes": ("/api/v1/changes/", add_changes),
    "directory-users": ("/api/v1/directory/users/", add_directory_users),
    "directory-groups": ("/api/v1/directory/groups/", add_directory_groups),
    "integration-types": ("/api/v1/integration-types/", add_integrations),  # rows of the database: none
}


def listed(client, path: str) -> tuple[int, int]:
    """(queries, rows listed) of one GET of a list endpoint."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200, response.data
    rows = response.data["results"] if isinstance(response.data, dict) else response.data
    return len(queries.captured_queries), len(rows)


@pytest.mark.parametrize("case", list(CASES))
def test_a_list_costs_the_same_queries_for_3_rows_as_for_30(api_as, case):
    path, add = CASES[case]
    viewer = api_as("viewer")
    add(0, FEW)
    path = path.format(id=integration("one with history").pk if "{id}" in path else "")
    listed(viewer, path)  # warm the per-process caches (content types, the connector registry)
    few, few_rows = listed(viewer, path)
    add(FEW, MANY)
    many, many_rows = listed(viewer, path)
    if case != "integration-types":
        assert (few_rows, many_rows) == (FEW, MANY)  # both lists fit on one page: every row was serialized
    assert few == many, f"{path}: {few} queries for {few_rows} rows, {many} for {many_rows}"


# Details: one object whose related rows (an asset's sources, a run's record outcomes) number 3, then 30.


def asset_with_sources(count: int) -> Asset:
    from syncplane.inventory.models import AssetSource

    target = Asset.objects.filter(name="detailed").first() or asset("detailed")
    now = timezone.now()
    have = target.sources.count()
    for i in range(have, count):
        system = integration(f"source system {i:03}")  # each source of its own integration, as after reconciliation
        AssetSource.objects.create(asset=target, external_system=system, external_id=f"rec-{i}",
                                   attributes={"serial_number": "S1"}, raw_payload={"id": i}, fingerprint="f" * 32,
                                   first_seen_at=now, last_seen_at=now, updated_at=now)
    return target


def log_with_outcomes(count: int) -> IntegrationSyncLog:
    """A finished run with `count` failed records and `count` changes."""
    from syncplane.integrations.choices import RecordAction, RecordStatus
    from syncplane.integrations.models import SyncRecordOutcome

    system = integration(f"run of {count}")
    log = IntegrationSyncLog.objects.create(external_system=system, system_name=system.name,
                                            system_type=system.system_type, status=RunStatus.QUEUED)
    SyncRecordOutcome.objects.bulk_create(
        [SyncRecordOutcome(sync_log=log, external_id=f"bad-{i}", action=RecordAction.NONE,
                           status=RecordStatus.FAILED, reason="refused", raw_payload={"id": i})
         for i in range(count)]
        + [SyncRecordOutcome(sync_log=log, external_id=f"ok-{i}", action=RecordAction.UPDATE,
                             status=RecordStatus.APPLIED, changes={"status": ["active", "retired"]})
           for i in range(count)]
    )
    log.status, log.started_at, log.finished_at = RunStatus.PARTIAL, timezone.now(), timezone.now()
    log.save()
    return log


def detail(client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200, response.data
    return len(queries.captured_queries)


def test_an_asset_detail_costs_the_same_queries_for_3_sources_as_for_30(api_as):
    viewer = api_as("viewer")
    path = f"/api/v1/assets/{asset_with_sources(FEW).pk}/"
    detail(viewer, path)  # warm the per-process caches
    few = detail(viewer, path)
    asset_with_sources(MANY)
    assert len(viewer.get(path).data["sources"]) == MANY
    assert detail(viewer, path) == few


def test_a_sync_log_detail_costs_the_same_queries_for_3_outcomes_as_for_30(api_as):
    viewer = api_as("viewer")
    few_log, many_log = log_with_outcomes(FEW), log_with_outcomes(MANY)
    detail(viewer, f"/api/v1/integration-sync-logs/{few_log.pk}/")  # warm the per-process caches
    few = detail(viewer, f"/api/v1/integration-sync-logs/{few_log.pk}/")
    answer = viewer.get(f"/api/v1/integration-sync-logs/{many_log.pk}/").data
    assert (answer["record_errors_total"], answer["changes_total"], len(answer["changes"])) == (MANY, MANY, MANY)
    assert detail(viewer, f"/api/v1/integration-sync-logs/{many_log.pk}/") == few
