"""`syncplane bench ui --records N`: the web pages' server time with N assets in the inventory.

The inventory is filled by a real ServiceNow sync of N records (the simulator in a process of its own); then
each page is requested REQUESTS times through Django's test client, signed in as a viewer, and timed from the
request to the rendered answer (middleware, queries, templates: what the server spends, without the network).
"""

import statistics
import time

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from syncplane.core import roles
from syncplane.integrations.choices import RunStatus
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.inventory.models import Asset

REQUESTS = 40
# The web lists' page size and count cap (syncplane.web.lists; devtools may not import the web app).
PAGE_SIZE, COUNT_CAP = 50, 10_000
P95_LIMIT_MS = 150
UI_TARGETS = {}  # filled per page below: "<page> p95 ms" -> (limit, "max")


class QueryLog(list):
    """An execute wrapper that keeps the SQL of every query (whatever DEBUG says)."""

    def __call__(self, execute, sql, params, many, context):
        self.append(sql)
        return execute(sql, params, many, context)


def run_ui_bench(stdout, records: int, simulator_url: str, integration_factory) -> dict:
    system = integration_factory(simulator_url)
    started = time.perf_counter()
    log = run_sync(start_sync(system).pk)
    if log.status != RunStatus.SUCCESS:
        raise RuntimeError(f"the sync that fills the inventory failed: {log.error_summary}")
    stdout.write(f"inventory filled: {Asset.objects.count()} assets in {time.perf_counter() - started:.1f} s")
    user = get_user_model().objects.create_user("bench-viewer", password="unused-password-123")
    roles.grant_role(user, roles.VIEWER)
    client = Client(SERVER_NAME="localhost")  # an allowed host, as a browser on the machine would send
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    assets = Asset.objects.filter(merged_into__isnull=True).count()
    sample = Asset.objects.order_by("name").values_list("pk", "serial_number")[assets // 2]
    middle = max(1, min(assets // PAGE_SIZE // 2, COUNT_CAP // PAGE_SIZE // 2))
    pages = {
        "dashboard": "/",
        "asset list": "/assets/",
        "asset list, a middle page": f"/assets/?page={middle}",
        "asset list, filtered and sorted": "/assets/?status=active&asset_type=laptop&sort=-updated",
        "asset search by serial": f"/assets/?q={sample[1]}",
        "asset detail": f"/assets/{sample[0]}/",
        "sync log list": "/sync-logs/",
        "sync log detail": f"/sync-logs/{log.pk}/",
    }
    results = {"records": records, "requests_per_page": REQUESTS, "pages": {}, "ratios": {}}
    for name, url in pages.items():
        timings, queries = [], QueryLog()
        with connection.execute_wrapper(queries):
            response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        for _ in range(REQUESTS):
            begun = time.perf_counter()
            client.get(url)
            timings.append((time.perf_counter() - begun) * 1000)
        timings.sort()
        p95 = timings[int(len(timings) * 0.95) - 1]
        results["pages"][name] = {"url": url, "p50_ms": round(statistics.median(timings), 1),
                                  "p95_ms": round(p95, 1), "queries": len(queries)}
        results["ratios"][f"{name} p95 ms"] = round(p95, 1)
        UI_TARGETS[f"{name} p95 ms"] = (P95_LIMIT_MS, "max")
        stdout.write(f"{name:<34} p50 {statistics.median(timings):7.1f} ms  p95 {p95:7.1f} ms  "
                     f"{len(queries):3} queries  {url}")
    return results
