"""`syncplane bench events` at a tiny N, so the command cannot rot: it runs end to end (its own database, the
simulators in processes of their own, both delivery paths of the three sinks, the sync with and without sinks)
and reports every ratio it promises, with nothing lost, duplicated or out of order. The figures themselves
mean nothing at this size; docs/performance.md has the real ones."""

import json
import os
import subprocess
import sys

from syncplane.devtools.bench_events import EVENTS_TARGETS, out_of_order


def test_events_bench_runs_end_to_end_and_reports_every_ratio(tmp_path):
    out = tmp_path / "bench.json"
    # A database of its own in tmp_path, never the one the tests run on (the bench creates and drops it).
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "syncplane.settings", "SYNCPLANE_DATA_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'syncplane.sqlite3'}"}
    env.pop("CELERY_BROKER_URL", None)  # the embedded broker in tmp_path: what the check below looks into
    done = subprocess.run(
        [sys.executable, "-m", "syncplane", "bench", "events", "--records", "100", "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results["ratios"]) == set(EVENTS_TARGETS)
    assert results["checks"] == {"lost": 0, "duplicated": 0, "out of order": 0}
    assert all(value > 0 for value in results["seconds"].values())
    assert "each sink received the sync's sync.completed exactly once" in done.stdout
    assert not list((tmp_path / "broker" / "queue").iterdir()), "the bench queued Celery tasks on the real broker"


def test_out_of_order_counts_only_events_that_overtake_a_whole_batch():
    sent = list("abcdef")
    assert out_of_order(sent, list("bacdfe"), batch_size=2) == 0  # swapped within their batches
    assert out_of_order(sent, list("abcdef"), batch_size=1) == 0
    assert out_of_order(sent, list("cdabef"), batch_size=2) == 2  # a and b after the next batch
