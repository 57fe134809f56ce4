"""The legacy server-token flow (Device Assignment API) end to end: OAuth 1.0a session, X-ADM-Auth-Session
rotation, fetch then sync cursors, deletions -> sync engine -> inventory, against the simulator over HTTP."""

import time

import pytest

from syncplane.integrations.choices import ErrorKind, RunStatus, SyncMode
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import SyncState
from syncplane.integrations.registry import build_connector
from syncplane.integrations.secrets import to_reference
from syncplane.inventory.models import AssetSource
from syncplane_simulators import apple_business_manager as abm_sim
from syncplane_simulators.server import SimulatorServer
from tests.integrations.assertions import assert_counters_match_outcomes

pytestmark = pytest.mark.django_db


@pytest.fixture
def simulator():
    """Enough devices for the DEP server's listing to take three pages of Apple's smallest limit (100)."""
    with SimulatorServer(records=1000, seed=7) as server:
        yield server


def sync(system, mode=SyncMode.FULL):
    return assert_counters_match_outcomes(run_sync(start_sync(system, mode=mode).pk))


def on_dep_server(apple):
    return [i for i in apple.live_indices() if apple.server_index(i) == abm_sim.DEP_SERVER]


def test_full_fetch_pages_with_one_session_rotated_on_every_answer(dep, apple):
    expected = on_dep_server(apple)
    assert 200 < len(expected) < 300
    log = sync(dep)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert (log.records_read, log.records_created, log.pages) == (len(expected), len(expected), 3)
    stats = apple.stats
    # One session for the whole run although every answer handed out a new token and spent the old one.
    assert stats["dep_session_requests"] == 1 and stats["dep_fetch_requests"] == 3
    assert stats["dep_rotations"] == 3 and stats["dep_unauthorized"] == 0
    serials = set(AssetSource.objects.filter(external_system=dep).values_list("external_id", flat=True))
    assert serials == {apple.device(i)["id"].upper() for i in expected}
    assert set(AssetSource.objects.filter(external_system=dep).values_list("asset__status", flat=True)) == {"active"}
    assert set(SyncState.objects.get(external_system=dep).cursor) == {"dep"}


def test_incremental_reads_the_changes_since_the_cursor_and_marks_removed_devices_deleted(dep, apple):
    assert sync(dep).status == RunStatus.SUCCESS
    devices = on_dep_server(apple)
    changed = apple.touch(devices[:3])
    apple.touch(devices[:1])  # the same device twice in one millisecond: the later change wins, it is read once
    time.sleep(0.002)
    apple.touch(devices[1:2])  # and once more a moment later (a newer op_date): still read once
    gone = apple.release(devices[-2:])
    before = apple.stats.as_dict()
    log = sync(dep, SyncMode.INCREMENTAL)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert log.records_read == 3 and log.records_deleted == 2
    assert apple.stats["dep_sync_requests"] - before.get("dep_sync_requests", 0) == 1
    # The deletions: the devices left this MDM server, so the id listing (a fetch) no longer has them.
    for serial in gone:
        assert AssetSource.objects.get(external_system=dep, external_id=serial.upper()).deleted_at is not None
    assert {c.upper() for c in changed} <= set(AssetSource.objects.filter(
        external_system=dep, deleted_at__isnull=True).values_list("external_id", flat=True))
    # Nothing changed since: nothing read, nothing deleted.
    log = sync(dep, SyncMode.INCREMENTAL)
    assert (log.status, log.records_read, log.records_deleted) == (RunStatus.SUCCESS, 0, 0)


def test_an_expired_cursor_starts_over_with_a_fetch(dep, apple):
    assert sync(dep).status == RunStatus.SUCCESS
    apple.expire_cursors()
    before = apple.stats["dep_fetch_requests"]
    log = sync(dep, SyncMode.INCREMENTAL)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert log.records_read == len(on_dep_server(apple)) and log.records_unchanged == log.records_read
    assert apple.stats["dep_fetch_requests"] - before == 6  # the fetch, then list_ids' own listing


def test_a_session_that_ends_mid_run_is_started_again_once(dep, apple):
    with build_connector(dep) as connector:
        pages = connector.fetch("full")
        first = next(pages)
        apple.expire_sessions()
        rest = list(pages)
    assert len(first.records) + sum(len(p.records) for p in rest) == len(on_dep_server(apple))
    assert connector.auth.sessions_started == 2 and apple.stats["dep_forbidden"] == 1


def test_a_refused_server_token_fails_for_good_and_writes_nothing(dep, apple):
    dep.credentials = {**dep.credentials, "access_secret": to_reference("AS_not-the-right-one")}
    dep.save()
    log = sync(dep)
    assert (log.status, log.error_kind, log.attempts) == (RunStatus.FAILED, ErrorKind.PERMANENT, 1)
    assert "server token was refused" in log.error_summary and "AS_not-the-right-one" not in log.error_summary
    assert apple.stats["dep_session_requests"] == 1 and apple.stats["dep_signatures_refused"] == 1
    assert not AssetSource.objects.filter(external_system=dep).exists()
