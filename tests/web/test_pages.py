"""The web pages: who may see and do what (the API's roles), that each page renders what it promises, and that
the lists keep a constant number of queries whatever the data size."""

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from syncplane.integrations.choices import RunStatus, SystemType
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog
from syncplane.inventory.models import Asset, AssetSource

pytestmark = pytest.mark.django_db


@pytest.fixture
def system():
    return ExternalSystem.objects.create(
        name="CMDB one", system_type=SystemType.SERVICENOW_CMDB, category="cmdb", base_url="https://example.org",
        credentials={"username": "sync", "password": "env:SN_PASSWORD"},
    )


def make_assets(system, start, stop):
    now = timezone.now()
    for i in range(start, stop):
        asset = Asset.objects.create(name=f"laptop-{i:04}", serial_number=f"SN{i:06}", created_at=now, updated_at=now)
        AssetSource.objects.create(asset=asset, external_system=system, external_id=f"ci-{i}", fingerprint="x",
                                   first_seen_at=now, last_seen_at=now, updated_at=now)


def finished_log(system, status=RunStatus.SUCCESS, **counts):
    now = timezone.now()
    log = IntegrationSyncLog.objects.create(
        external_system=system, system_name=system.name, system_type=system.system_type, status=RunStatus.RUNNING,
        started_at=now,
    )
    for name, value in {"status": status, "finished_at": now, "duration_ms": 1200, **counts}.items():
        setattr(log, name, value)
    log.save()
    return log


PAGES = ["/", "/integrations/", "/sync-logs/", "/assets/", "/changes/", "/directory/users/", "/directory/groups/",
         "/findings/", "/scans/", "/outbox/"]


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("url", PAGES)
def test_a_user_without_a_role_is_refused(browser_as, url):
    assert browser_as(None).get(url).status_code == 403


@pytest.mark.parametrize("url", PAGES)
def test_every_role_reads_every_page(browser_as, system, url):
    make_assets(system, 0, 2)
    finished_log(system, records_read=2)
    for role in ("viewer", "operator", "admin"):
        response = browser_as(role).get(url)
        assert response.status_code == 200, (role, url)
        assert b'aria-current="page"' in response.content  # the navigation says where you are


def test_sign_in_page_signs_in_and_goes_to_the_dashboard(make_user):
    make_user("viewer", username="vera")
    client = Client()
    page = client.get("/login/")
    assert b'name="csrfmiddlewaretoken"' in page.content
    response = client.post("/login/", {"username": "vera", "password": "pw-for-tests-123", "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(make_user):
    make_user("viewer", username="vera")
    response = Client().post("/login/", {"username": "vera", "password": "wrong"})
    assert response.status_code == 200
    assert b"did not match" in response.content


def test_the_dashboard_shows_each_integration_and_the_counts(browser_as, system):
    make_assets(system, 0, 3)
    finished_log(system, status=RunStatus.FAILED)
    page = browser_as("viewer").get("/").content.decode()
    assert "CMDB one" in page
    assert "<strong>3</strong>Assets" in page
    assert "<svg" in page and "Failed runs per day" in page


def test_a_viewer_sees_no_sync_button_and_cannot_sync_anyway(browser_as, system):
    viewer = browser_as("viewer")
    assert b"Sync now" not in viewer.get(f"/integrations/{system.pk}/").content
    assert viewer.post(f"/integrations/{system.pk}/sync/", {"mode": "full"}).status_code == 403
    assert not IntegrationSyncLog.objects.exists()


def test_an_operator_syncs_and_is_sent_to_the_run_page(browser_as, system, monkeypatch):
    queued = []
    monkeypatch.setattr("syncplane.web.views.queue_sync", queued.append)
    operator = browser_as("operator")
    assert b"Sync now" in operator.get(f"/integrations/{system.pk}/").content
    response = operator.post(f"/integrations/{system.pk}/sync/", {"mode": "full", "dry_run": "1"})
    log = IntegrationSyncLog.objects.get()
    assert response["Location"] == f"/sync-logs/{log.pk}/"
    assert queued == [log.pk] and log.dry_run and log.requested_by == "user-operator"
    # While it runs, the page polls its progress part with htmx.
    page = operator.get(f"/sync-logs/{log.pk}/").content.decode()
    assert f'hx-get="/sync-logs/{log.pk}/?part=progress"' in page
    part = operator.get(f"/sync-logs/{log.pk}/?part=progress", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in part and "Records read" in part


def test_a_second_sync_while_one_runs_goes_to_the_running_one(browser_as, system, monkeypatch):
    monkeypatch.setattr("syncplane.web.views.queue_sync", lambda pk: None)
    operator = browser_as("operator")
    first = operator.post(f"/integrations/{system.pk}/sync/", {"mode": "full"})
    second = operator.post(f"/integrations/{system.pk}/sync/", {"mode": "full"})
    assert first["Location"] == second["Location"]
    assert IntegrationSyncLog.objects.count() == 1


def test_a_mode_the_connector_lacks_is_refused_with_a_message(browser_as, system):
    response = browser_as("operator").post(f"/integrations/{system.pk}/sync/", {"mode": "sideways"}, follow=True)
    assert b"does not support sideways syncs" in response.content
    assert not IntegrationSyncLog.objects.exists()


def test_the_finished_run_page_shows_failures_changes_and_the_evidence_chain(browser_as, system):
    log = finished_log(system, status=RunStatus.PARTIAL, records_failed=1)
    log.outcomes.create(external_id="ci-9", action="create", status="failed", reason="serial too long")
    page = browser_as("viewer").get(f"/sync-logs/{log.pk}/").content.decode()
    assert "serial too long" in page
    assert "Evidence chain" in page
    assert "hx-trigger" not in page  # finished: no polling


def test_lists_search_filter_sort_and_page(browser_as, system):
    make_assets(system, 0, 60)
    viewer = browser_as("viewer")
    page = viewer.get("/assets/?q=laptop-005").content.decode()
    assert "laptop-0050" in page and "laptop-0010" not in page
    page = viewer.get("/assets/?sort=-name").content.decode()
    assert page.index("laptop-0059") < page.index("laptop-0058")
    assert 'aria-sort="descending"' in page
    second = viewer.get("/assets/?page=2").content.decode()
    assert "laptop-0050" in second and "Page 2 of 2" in second
    assert "laptop-0001" not in viewer.get("/assets/?source=jira_assets").content.decode()


def test_an_unknown_filter_value_or_sort_is_ignored_not_an_error(browser_as, system):
    make_assets(system, 0, 2)
    viewer = browser_as("viewer")
    assert viewer.get("/assets/?status=nonsense&sort=bogus").status_code == 200
    assert viewer.get("/sync-logs/?integration=abc&date=yesterday").status_code == 200


def test_the_asset_page_shows_each_value_with_its_source_and_the_raw_record(browser_as, system):
    make_assets(system, 0, 1)
    asset = Asset.objects.get()
    source = asset.sources.get()
    source.raw_payload = {"sys_id": "ci-0", "u_vendor_field": "kept as sent"}
    source.save()
    asset.attribute_sources = {"serial_number": str(source.pk)}
    asset.save()
    page = browser_as("viewer").get(f"/assets/{asset.pk}/").content.decode()
    assert "SN000000" in page and f'href="#source-{source.pk}">CMDB one' in page
    assert "kept as sent" in page


@pytest.mark.parametrize("url, add", [
    ("/assets/", lambda system, a, b: make_assets(system, a, b)),
    ("/sync-logs/", lambda system, a, b: [finished_log(system) for _ in range(a, b)]),
    ("/", lambda system, a, b: [finished_log(system) for _ in range(a, b)]),
])
def test_pages_read_in_a_constant_number_of_queries(browser_as, system, url, add):
    client = browser_as("viewer")
    add(system, 0, 3)
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    add(system, 3, 40)
    cache.clear()  # the dashboard's counts are cached: count them again
    with CaptureQueriesContext(connection) as many:
        assert client.get(url).status_code == 200
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


def test_a_long_list_stops_counting_at_the_cap_and_says_so(browser_as, system, monkeypatch):
    monkeypatch.setattr("syncplane.web.lists.COUNT_CAP", 60)
    make_assets(system, 0, 120)
    page = browser_as("viewer").get("/assets/").content.decode()
    assert "more than 60 in all: search or filter to narrow it" in page
    assert browser_as("viewer").get("/assets/?page=2").status_code == 200


def test_the_dashboard_counts_are_kept_a_moment_and_say_when(browser_as, system):
    viewer = browser_as("viewer")
    make_assets(system, 0, 2)
    assert "<strong>2</strong>Assets" in viewer.get("/").content.decode()
    make_assets(system, 2, 5)
    page = viewer.get("/").content.decode()
    assert "<strong>2</strong>Assets" in page and "Counts as of" in page  # counted at most every 30 s
    cache.clear()
    assert "<strong>5</strong>Assets" in viewer.get("/").content.decode()
