"""The inventory API: finding an asset by what its sources call it (issue 16.7)."""

from functools import reduce
from operator import or_

import pytest
from django.db.models import Q

from syncplane.integrations.engine import run_sync, start_sync
from syncplane.inventory import api as inventory_api
from syncplane.inventory.models import Asset, AssetSource

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


@pytest.mark.parametrize("window", [3, 5_000])  # 3: the page is not found in the window, the rare-term path
def test_a_search_pages_through_every_match_in_id_order_both_ways(api_as, servicenow, monkeypatch, window):
    monkeypatch.setattr(inventory_api, "SEARCH_WINDOW", window)
    run_sync(start_sync(servicenow).pk)
    viewer = api_as("viewer")
    word = AssetSource.objects.order_by("id")[0].asset.name[:3]
    searched = ("name", "serial_number", "hostname", "fqdn", "asset_tag", "ip_address", "owner_email", "assigned_to")
    expected = sorted(str(asset.pk) for asset in Asset.objects.filter(merged_into__isnull=True).filter(
        reduce(or_, (Q(**{f"{field}__icontains": word}) for field in searched))))
    assert len(expected) > 4

    pages, url, params = [], "/api/v1/assets/", {"search": word, "page_size": 2}
    while url:
        page = viewer.get(url, params).data
        pages.append([asset["id"] for asset in page["results"]])
        last, url, params = page, page["next"], None
    assert [asset_id for page in pages for asset_id in page] == expected
    back, url = [], last["previous"]
    while url:
        page = viewer.get(url).data
        back.insert(0, [asset["id"] for asset in page["results"]])
        url = page["previous"]
    assert back == pages[:-1]


@pytest.mark.parametrize("window", [3, 5_000])
def test_a_search_keeps_the_filters_beside_it_including_those_through_the_sources(api_as, servicenow,
                                                                                  monkeypatch, window):
    monkeypatch.setattr(inventory_api, "SEARCH_WINDOW", window)
    run_sync(start_sync(servicenow).pk)
    first = AssetSource.objects.order_by("id")[0].asset
    word, status = first.name[:3], first.status
    matching = Asset.objects.filter(merged_into__isnull=True, name__icontains=word)
    expected = sorted(str(pk) for pk in matching.filter(status=status, sources__external_system=servicenow)
                      .values_list("id", flat=True).distinct())
    assert 0 < len(expected) < matching.count()

    found = api_as("viewer").get("/api/v1/assets/", {"search": word, "status": status,
                                                    "source_system": servicenow.pk, "page_size": 200})
    assert found.status_code == 200
    assert [asset["id"] for asset in found.data["results"]] == expected


def test_the_plain_list_stays_in_name_order(api_as, servicenow):
    run_sync(start_sync(servicenow).pk)
    listed = api_as("viewer").get("/api/v1/assets/", {"page_size": 200}).data["results"]
    assert len(listed) > 10
    assert [(a["name"], a["id"]) for a in listed] == sorted((a["name"], a["id"]) for a in listed)
