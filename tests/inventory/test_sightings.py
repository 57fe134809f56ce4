"""A record read unchanged moves its sighting (a narrow row of its own), never its source row: the re-sync of an
unchanged inventory rewrites no source. What a user sees is the same as before: a source's last_seen_at is when
a sync last read it, and a full pass marks deleted exactly the sources it neither wrote nor sighted."""

from datetime import datetime

import pytest

from syncplane.integrations.engine import run_sync, start_sync
from syncplane.inventory.models import AssetSource, SourceSighting
from tests.integrations.assertions import assert_counters_match_outcomes

pytestmark = pytest.mark.django_db
RECORDS = 250  # the simulator fixture's


def sync(system, **kwargs):
    return assert_counters_match_outcomes(run_sync(start_sync(system, **kwargs).pk))


def source_rows():
    return list(AssetSource.objects.order_by("id").values_list(
        "id", "fingerprint", "last_seen_at", "updated_at", "deleted_at", "attributes"))


def test_an_unchanged_record_moves_its_sighting_not_its_source(servicenow, api_as):
    first = sync(servicenow)
    assert first.records_created == RECORDS and not SourceSighting.objects.exists()
    written = source_rows()
    again = sync(servicenow)
    assert again.records_unchanged == RECORDS
    assert source_rows() == written  # not one source row rewritten
    sightings = dict(SourceSighting.objects.values_list("source_id", "seen_at"))
    assert len(sightings) == RECORDS and min(sightings.values()) >= again.started_at
    # The API shows when a sync last read the record: the sighting's time, later than the row's.
    source = AssetSource.objects.select_related("sighting").first()
    assert source.seen_at == sightings[source.id] > source.last_seen_at
    detail = api_as("viewer").get(f"/api/v1/assets/{source.asset_id}/").json()
    shown = next(s for s in detail["sources"] if s["id"] == str(source.id))
    assert datetime.fromisoformat(shown["last_seen_at"]) == sightings[source.id]


def test_a_full_pass_deletes_what_it_neither_wrote_nor_sighted(servicenow, simulator):
    sync(servicenow)
    sync(servicenow)  # every source sighted
    simulator.servicenow.touch(indices=[3, 4])
    simulator.servicenow.delete(indices=[10, 11, 12])
    log = sync(servicenow)
    assert (log.records_updated, log.records_unchanged, log.records_deleted) == (2, RECORDS - 5, 3)
    deleted = AssetSource.objects.filter(deleted_at__isnull=False)
    assert deleted.count() == 3
    # The changed ones were written (their rows' time is this run's); the rest sighted again.
    live = AssetSource.objects.filter(deleted_at__isnull=True).select_related("sighting")
    assert all(source.seen_at >= log.started_at for source in live)
    assert live.filter(last_seen_at__gte=log.started_at).count() == 2
    # Once more with nothing changed: nothing else is deleted, and the deleted stay deleted.
    assert sync(servicenow).records_deleted == 0 and deleted.count() == 3


def test_a_dry_run_moves_no_sighting(servicenow):
    sync(servicenow)
    sync(servicenow)
    before = dict(SourceSighting.objects.values_list("source_id", "seen_at"))
    assert sync(servicenow, dry_run=True).records_unchanged == RECORDS
    assert dict(SourceSighting.objects.values_list("source_id", "seen_at")) == before
