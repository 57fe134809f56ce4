"""Start-up configuration: a bad or missing value stops the process with a message naming the variable."""

import os
import subprocess
import sys

import pytest

BASE_ENV = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "syncplane.settings"}
GOOD_KEY = "a-production-secret-key-that-is-long-enough-0123456789"


def check(**env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syncplane", "check"], env={**BASE_ENV, **env},
                          capture_output=True, text=True, timeout=60)


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = check(SYNCPLANE_DATA_DIR=str(tmp_path))
    assert result.returncode != 0 and "SECRET_KEY is not set" in result.stderr


def test_a_good_configuration_starts(tmp_path):
    result = check(SECRET_KEY=GOOD_KEY, SYNCPLANE_DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr


def test_the_demo_generates_and_keeps_its_key(tmp_path):
    assert check(SYNCPLANE_DEMO="1", SYNCPLANE_DATA_DIR=str(tmp_path)).returncode == 0
    key = (tmp_path / "demo-secret-key").read_text()
    assert len(key) >= 50 and (tmp_path / "demo-secret-key").stat().st_mode & 0o077 == 0
    assert check(SYNCPLANE_DEMO="1", SYNCPLANE_DATA_DIR=str(tmp_path)).returncode == 0
    assert (tmp_path / "demo-secret-key").read_text() == key


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SYNCPLANE_ALLOW_INSECURE_OUTBOUND", "perhaps"),
        ("SYNCPLANE_STALE_RUN_SECONDS", "ten"),
        ("SYNCPLANE_STALE_RUN_SECONDS", "5"),
        ("SYNCPLANE_STALE_QUEUED_SECONDS", "an hour"),
        ("SYNCPLANE_LOG_FORMAT", "xml"),
        ("DATABASE_URL", "mysql://db/syncplane"),
        ("CELERY_BROKER_URL", "kafka://broker"),
        ("SECRET_KEY", "short"),
    ],
)
def test_a_bad_value_names_its_variable(tmp_path, variable, value):
    result = check(**{"SECRET_KEY": GOOD_KEY, "SYNCPLANE_DATA_DIR": str(tmp_path), variable: value})
    assert result.returncode != 0
    assert variable in result.stderr.splitlines()[-1], result.stderr[-500:]
