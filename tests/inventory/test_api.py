"""The inventory API: finding an asset by what its sources call it (issue 16.7)."""

import pytest

from syncplane.integrations.engine import run_sync, start_sync
from syncplane.inventory.models import AssetSource

pytestmark = pytest.mark.django_db


def test_an_asset_is_found_by_the_external_id_of_one_of_its_sources(api_as, servicenow):
    run_sync(start_sync(servicenow).pk)
    source = AssetSource.objects.order_by("id")[7]
    viewer = api_as("viewer")
    found = viewer.get("/api/v1/assets/", {"source_external_id": source.external_id})
    assert found.status_code == 200
    assert [a["id"] for a in found.data["results"]] == [str(source.asset_id)]
    both = viewer.get("/api/v1/assets/", {"source_external_id": source.external_id,
                                          "source_system": servicenow.pk})
    assert [a["id"] for a in both.data["results"]] == [str(source.asset_id)]
    assert viewer.get("/api/v1/assets/", {"source_external_id": "nope"}).data["results"] == []


def test_a_filter_the_inventory_does_not_have_is_refused_not_ignored(api_as, servicenow):
    run_sync(start_sync(servicenow).pk)
    response = api_as("viewer").get("/api/v1/assets/", {"external_id": "abc"})
    assert response.status_code == 400
    assert "external_id" in response.data
