"""`syncplane bench directory` at a tiny N, so the command cannot rot: it runs end to end (its own database,
the Graph simulators in processes of their own, every step) and reports every ratio it promises. The figures
themselves mean nothing at this size; docs/performance.md has the real ones."""

import json
import os
import subprocess
import sys

from syncplane.devtools.management.commands.bench import DIRECTORY_TARGETS


def test_directory_bench_runs_end_to_end_and_reports_every_ratio(tmp_path):
    out = tmp_path / "bench.json"
    # A database of its own in tmp_path, never the one the tests run on (the bench creates and drops it).
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "syncplane.settings", "SYNCPLANE_DATA_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'syncplane.sqlite3'}"}
    done = subprocess.run(
        [sys.executable, "-m", "syncplane", "bench", "directory", "--records", "100", "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results["ratios"]) == set(DIRECTORY_TARGETS)
    assert results["records"] == 100
    assert results["records_read"]["N"] > 100  # users, group slices and devices
    assert 0 < results["queries"]["per page max N/10"] and 0 < results["queries"]["per page max N"]
    assert all(value > 0 for value in results["seconds"].values())
    assert "incremental 1% / full" in done.stdout
