"""`syncplane bench findings` at a tiny N, so the command cannot rot: it generates its reports, runs every step on a
database of its own and reports every ratio it promises. The figures mean nothing at this size;
docs/performance.md has the real ones."""

import json
import os
import subprocess
import sys

from syncplane.devtools.bench_findings import TARGETS


def test_findings_bench_runs_end_to_end_and_reports_every_ratio(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "syncplane.settings", "SYNCPLANE_DATA_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'syncplane.sqlite3'}", "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "syncplane", "bench", "findings", "--records", "300", "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results["ratios"]) == set(TARGETS)
    assert (results["records"], results["packages"]) == (300, 3000)
    assert results["findings"] > 300  # the same CVE in two packages counts twice
    assert all(value > 0 for value in results["seconds"].values())
    assert 0 < results["peak_memory_mib"]["N/10"] and 0 < results["peak_memory_mib"]["N"]
    assert "1% changed / first" in done.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("syncplane-bench-findings-")]  # cleaned up
