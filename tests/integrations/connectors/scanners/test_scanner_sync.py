"""A Trivy integration end to end: the engine runs the (fake) trivy command on each configured target, reads the
reports and writes the findings through the findings sink; a later scan fixes what it no longer reports, a
failed scan fixes nothing."""

import pytest

from syncplane.devtools import scan_reports as sr
from syncplane.findings.models import Finding, FindingSource, Scan
from syncplane.integrations.choices import AuthType, RunStatus, SystemType
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem, SyncRecordOutcome
from syncplane.integrations.secrets import to_reference
from tests.integrations.assertions import assert_counters_match_outcomes

pytestmark = pytest.mark.django_db

API = "registry.example.internal/itgov/asset-api:2.3.1"
WORKER = "registry.example.internal/itgov/sync-worker:1.8.0"


@pytest.fixture
def trivy(fake):
    cli = fake("trivy")
    cli.plan(API, report=sr.trivy_report(60, image=API, packages=20))
    cli.plan(WORKER, report=sr.trivy_report(30, image=WORKER, seed=2))
    return cli


@pytest.fixture
def integration(trivy):
    return ExternalSystem.objects.create(
        name="Trivy test", system_type=SystemType.TRIVY, category="security", base_url="local://trivy",
        auth_type=AuthType.NONE, config={"targets": [{"image": API}, {"image": WORKER}]},
    )


def sync(system, **kwargs):
    return assert_counters_match_outcomes(run_sync(start_sync(system, **kwargs).pk))


def open_findings(image: str) -> set[str]:
    return set(Finding.objects.filter(target__name=image, state="open").values_list("vulnerability_id", flat=True)
               .distinct())


def expected(count: int, seed: int, changed: float = 0.0) -> int:
    return len({(v.id, v.package, v.version) for v in sr.catalogue(count, seed=seed, changed=changed)})


def test_first_scan_writes_every_finding_and_a_rescan_changes_nothing(integration, trivy):
    log = sync(integration)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert log.records_created == expected(60, 1) + expected(30, 2)
    assert Finding.objects.filter(target__name=API).count() == expected(60, 1)
    assert Finding.objects.filter(target__ref=f"{sr.IMAGE}@{sr.OS_DIGEST}").count() == expected(60, 1)
    assert set(FindingSource.objects.values_list("tool", flat=True)) == {"trivy"}
    assert FindingSource.objects.filter(integration=integration).count() == Finding.objects.count()
    assert len(trivy.calls()) == 2
    again = sync(integration)
    assert again.status == RunStatus.SUCCESS
    assert (again.records_created, again.records_updated) == (0, 0)
    assert again.records_unchanged == log.records_created
    assert Scan.objects.filter(integration=integration, status="complete").count() == 2


def test_a_later_scan_fixes_what_it_no_longer_reports(integration, trivy):
    sync(integration)
    before = Finding.objects.filter(target__name=API).count()
    trivy.plan(API, report=sr.trivy_report(60, image=API, changed=0.1))  # a tenth upgraded
    log = sync(integration)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    fixed = Finding.objects.filter(target__name=API, state="fixed")
    assert fixed.count() > 0 and log.records_created == fixed.count()
    assert Finding.objects.filter(target__name=API, state="open").count() == before
    assert not Finding.objects.filter(target__name=WORKER, state="fixed").exists()


def test_a_failed_scan_is_a_record_error_and_fixes_nothing_of_its_target(integration, trivy):
    sync(integration)
    trivy.plan(API, report=sr.trivy_report(60, image=API, changed=0.1))
    trivy.plan(WORKER, exit=1, stderr="FATAL\tunable to initialize the vulnerability DB: --skip-db-update cannot "
                                      "be specified on the first run\n")
    log = sync(integration)
    assert log.status == RunStatus.PARTIAL
    (failure,) = SyncRecordOutcome.objects.filter(sync_log=log, status="failed")
    assert failure.external_id == f"scan:trivy:{WORKER}"
    assert "exit code 1" in failure.reason and "--skip-db-update cannot be specified" in failure.reason
    # The API image's scan was complete: what it no longer reports is fixed. The worker's failed: nothing of it.
    assert Finding.objects.filter(target__name=API).count() > expected(60, 1)
    assert Finding.objects.filter(target__name=API, state="fixed").count() == log.records_created > 0
    assert not Finding.objects.filter(target__name=WORKER, state="fixed").exists()
    assert Scan.objects.filter(integration=integration).latest("id").status == "partial"


def test_dry_run_writes_nothing(integration):
    log = sync(integration, dry_run=True)
    assert log.status == RunStatus.SUCCESS and log.records_created == expected(60, 1) + expected(30, 2)
    assert not Finding.objects.exists()


def test_missing_binary_fails_the_run_plainly(integration, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    log = sync(integration)
    assert log.status == RunStatus.FAILED and log.error_kind == "permanent"
    assert log.error_summary.startswith("trivy was not found on PATH; install it or set executable")


def test_the_api_accepts_the_placeholder_base_url(api_as):
    admin = api_as("admin")
    created = admin.post("/api/v1/integrations/", {
        "name": "Trivy", "system_type": "trivy", "base_url": "local://trivy", "auth_type": "none",
        "config": {"targets": [{"image": API}]},
    }, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["category"] == "security"
    refused = admin.post("/api/v1/integrations/", {
        "name": "Grype", "system_type": "grype", "base_url": "https://grype.example.org", "auth_type": "none",
        "config": {"targets": [{"image": API}]},
    }, format="json")
    assert refused.status_code == 400 and "Enter local://grype" in str(refused.json()["base_url"])


def test_a_snyk_integration_passes_its_token_to_the_cli_only(fake):
    token = "snyk-service-account-token-0b7c"
    snyk = fake("snyk")
    snyk.plan("/srv/portal", report=sr.snyk_project(20), exit=1)  # vulnerabilities found: a completed scan
    system = ExternalSystem.objects.create(
        name="Snyk test", system_type=SystemType.SNYK, category="security", base_url="https://api.snyk.io",
        auth_type=AuthType.API_KEY, credentials={"api_key": to_reference(token)},
        config={"targets": [{"path": "/srv/portal"}]},
    )
    log = sync(system)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert Finding.objects.filter(target__ref="itgov-portal-ui").count() == log.records_created > 0
    (call,) = snyk.calls()
    assert call["env"]["SNYK_TOKEN"] == token and token not in " ".join(call["args"])
    assert "SNYK_API" not in call["env"]  # the default API
