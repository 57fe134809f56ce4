"""`syncplane bench mdm` at a tiny N, so the command cannot rot: it runs end to end (its own database, the
simulators in processes of their own, a generated API key) and reports every ratio it promises. The figures
mean nothing at this size; docs/performance.md has the real ones."""

import json
import os
import subprocess
import sys

from syncplane.devtools.bench_mdm import MDM_TARGETS


def test_mdm_bench_runs_end_to_end_and_reports_every_ratio(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "syncplane.settings", "SYNCPLANE_DATA_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'syncplane.sqlite3'}"}
    done = subprocess.run(
        [sys.executable, "-m", "syncplane", "bench", "mdm", "--records", "300", "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results["ratios"]) == set(MDM_TARGETS) and results["records"] == 300
    assert 0 < results["shared_serials"]["N"] < 300  # the ABM devices joined ServiceNow assets by serial
    assert all(value > 0 for value in results["seconds"].values())
    assert "ABM per device / ServiceNow per record" in done.stdout
