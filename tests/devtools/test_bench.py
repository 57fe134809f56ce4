"""`syncplane bench directory` at a tiny N, so the command cannot rot: it runs end to end (its own database,
the Graph simulators in processes of their own, every step) and reports every ratio it promises. The figures
themselves mean nothing at this size; docs/performance.md has the real ones."""

import json
import os
import subprocess
import sys

from syncplane.devtools.management.commands.bench import DIRECTORY_TARGETS, RECONCILE_TARGETS


def bench(tmp_path, *args):
    # A database of its own in tmp_path, never the one the tests run on (the bench creates and drops it).
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "syncplane.settings", "SYNCPLANE_DATA_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'syncplane.sqlite3'}"}
    return subprocess.run([sys.executable, "-m", "syncplane", "bench", *args],
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def test_directory_bench_runs_end_to_end_and_reports_every_ratio(tmp_path):
    out = tmp_path / "bench.json"
    done = bench(tmp_path, "directory", "--records", "100", "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results["ratios"]) == set(DIRECTORY_TARGETS)
    assert results["records"] == 100
    assert results["records_read"]["N"] > 100  # users, group slices and devices
    assert 0 < results["queries"]["per page max N/10"] and 0 < results["queries"]["per page max N"]
    assert all(value > 0 for value in results["seconds"].values())
    assert "incremental 1% / full" in done.stdout


def test_the_reconcile_memory_step_runs_alone(tmp_path):
    """Untimed, it can run apart from the timed syncs (beside other work); it reports its own ratio only."""
    out = tmp_path / "bench.json"
    done = bench(tmp_path, "reconcile", "--records", "100", "--steps", "memory", "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results["ratios"]) == {"peak memory N / N/10"} < set(RECONCILE_TARGETS)
    assert "seconds" not in results and results["peak_memory_mib"]["N"] > 0
    assert "independent" not in done.stdout


def test_unknown_steps_are_refused_naming_the_ones_there_are(tmp_path):
    done = bench(tmp_path, "reconcile", "--records", "100", "--steps", "full")
    assert done.returncode != 0 and "the reconcile steps are overlap, memory" in done.stderr
