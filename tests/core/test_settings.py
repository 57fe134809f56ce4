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
        ("SYNCPLANE_HEARTBEAT_SECONDS", "ten"),
        ("SYNCPLANE_HEARTBEAT_DEAD_AFTER", "1"),
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


def test_redis_keeps_a_running_syncs_task_longer_than_the_longest_sync(tmp_path):
    """The visibility timeout outlasts the hard time limit by default, and a shorter one is refused by name."""
    code = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'], "
            "settings.SYNCPLANE_SYNC_HARD_TIME_LIMIT_SECONDS, settings.DATABASES['default']['CONN_HEALTH_CHECKS'])")
    env = {**BASE_ENV, "SECRET_KEY": GOOD_KEY, "SYNCPLANE_DATA_DIR": str(tmp_path),
           "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0", "DATABASE_URL": "postgres://u:p@127.0.0.1:5432/db"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    visibility, hard_limit, health_checks = done.stdout.split()
    assert int(visibility) > int(hard_limit) and health_checks == "True"
    result = check(SECRET_KEY=GOOD_KEY, SYNCPLANE_DATA_DIR=str(tmp_path), SYNCPLANE_BROKER_VISIBILITY_TIMEOUT="3600")
    assert result.returncode != 0 and "SYNCPLANE_BROKER_VISIBILITY_TIMEOUT must be longer" in result.stderr
