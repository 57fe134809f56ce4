"""`syncplane bench api` at a small N: the inventory filled by COPY, gunicorn serving it, the asyncio clients, every
endpoint answering 200 with queries that do not grow with rows; and the asset search on PostgreSQL using the trigram
indexes of inventory migration 0004 rather than reading every asset.

Needs PostgreSQL (DATABASE_URL=postgres://...): skipped without it, failed instead with SYNCPLANE_REQUIRE_SERVICES=1.
The timings mean nothing at this size (docs/performance.md)."""

import pytest
from django.db import connection
from django.utils import timezone

from syncplane.devtools.bench_api import API_TARGETS
from syncplane.inventory.models import Asset
from tests.conftest import postgres_url, require_service
from tests.devtools.test_bench_parallel import run_bench


@pytest.mark.services
def test_the_api_bench_serves_every_endpoint_without_errors(tmp_path):
    database = postgres_url()
    require_service("PostgreSQL", database is not None, "set DATABASE_URL=postgres://...")
    results, stdout = run_bench("api", 2000, tmp_path, database)
    assert set(results["ratios"]) == set(API_TARGETS)
    assert results["ratios"]["errors"] == 0, results["errors"]
    assert results["ratios"]["queries that grow with rows"] == 0, results["queries"]
    assert results["requests"] == 20 * 40 and results["saturated"]["requests"] == 20 * 15
    assert all(endpoint["requests"] > 0 and endpoint["p95_ms"] > 0 for endpoint in results["endpoints"].values())
    assert "sync log detail, 5,000 outcomes" in stdout


@pytest.mark.services
@pytest.mark.django_db
def test_the_asset_search_uses_the_trigram_indexes_on_postgresql(api_as):
    require_service("PostgreSQL", connection.vendor == "postgresql", "set DATABASE_URL=postgres://...")
    now = timezone.now()
    Asset.objects.bulk_create(Asset(name=f"host-{i:05}", serial_number=f"SN{i:06}X", created_at=now, updated_at=now)
                              for i in range(500))
    response = api_as("viewer").get("/api/v1/assets/?search=n000120")
    assert [a["serial_number"] for a in response.data["results"]] == ["SN000120X"]  # any case, any part
    with connection.cursor() as cursor:
        # Leave the planner only bitmap scans: for `icontains` (UPPER(col::text) LIKE '%...%', as the search filter
        # writes it) the one it can use is the column's trigram index; without it, only reading every row remains.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
    for column in ("name", "serial_number", "hostname", "fqdn", "asset_tag", "ip_address", "owner_email",
                   "assigned_to"):
        plan = Asset.objects.filter(**{f"{column}__icontains": "n000120"}).explain()
        assert f"Bitmap Index Scan on asset_search_{column}_trgm" in plan, plan
