"""The findings sink through the real sync engine: findings, complete scans at the end of the pass, machines
as inventory assets linked to the findings on them."""

import pytest

from syncplane.findings.models import Finding, Scan
from syncplane.integrations.choices import RunStatus
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem
from syncplane.inventory.models import Asset
from tests.findings.connector import TOOL, connector_for, raw
from tests.findings.factories import finding, summary

pytestmark = pytest.mark.django_db

MACHINE_TARGET = {"kind": "asset", "ref": "machine-1", "name": "web-01",
                  "asset": {"hostname": "web-01", "azure_ad_device_id": "0f0f0f0f-1111-2222-3333-444455556666"}}


def machine(removed=False):
    return {"id": "machine-1", "attributes": {"kind": "machine", "removed": removed, "asset": {
        "name": "web-01", "hostname": "web-01", "asset_type": "server", "serial_number": "SRV-0001",
        "azure_ad_device_id": "0f0f0f0f-1111-2222-3333-444455556666", "exposure_level": "high"}}}


@pytest.fixture
def system(db):
    return ExternalSystem.objects.create(name="Security", system_type=TOOL, category="security",
                                         base_url="https://scanner.invalid", auth_type="none")


def sync(system, pages, dry_run=False):
    log = start_sync(system, dry_run=dry_run)
    return run_sync(log.pk, connector=connector_for(pages))


def test_a_sync_writes_findings_and_machines_linked_to_their_asset(system):
    v1 = finding("CVE-1", tool=TOOL, target=MACHINE_TARGET, severity="critical")
    v2 = finding("CVE-2", "curl", tool=TOOL, target=MACHINE_TARGET)
    # Vulnerabilities first, the machine on a later page: linked at the end of the pass.
    log = sync(system, [[raw(v1)], [raw(v2), machine()], [raw(summary(tool=TOOL, target=MACHINE_TARGET))]])
    assert log.status == RunStatus.SUCCESS, log.error_summary
    asset = Asset.objects.get()
    assert asset.exposure_level == "high"
    assert set(asset.findings.values_list("vulnerability_id", flat=True)) == {"CVE-1", "CVE-2"}
    assert log.records_created == 3
    scan = Scan.objects.get()
    assert (scan.integration_id, scan.status, scan.new, scan.tool) == (system.pk, "complete", 2, TOOL)


def test_a_complete_pass_fixes_what_it_no_longer_reports_and_a_failed_one_nothing(system):
    v1, v2 = finding("CVE-1", tool=TOOL), finding("CVE-2", "curl", tool=TOOL)
    done = raw(summary(tool=TOOL))
    sync(system, [[raw(v1), raw(v2)], [done]])
    # A pass that breaks before its end: its summary is never applied.
    bad = {"id": "broken", "attributes": {"kind": "finding"}}
    log = sync(system, [[raw(v1)], [bad, done]])
    assert log.status == RunStatus.PARTIAL
    assert set(Finding.objects.values_list("state", flat=True)) == {"open"}
    log = sync(system, [[raw(v1)], [done]])
    assert log.status == RunStatus.SUCCESS
    assert dict(Finding.objects.values_list("vulnerability_id", "state")) == {"CVE-1": "open", "CVE-2": "fixed"}


def test_a_dry_run_writes_nothing(system):
    log = sync(system, [[raw(finding(tool=TOOL)), raw(summary(tool=TOOL))]], dry_run=True)
    assert log.status == RunStatus.SUCCESS and log.records_created == 1
    assert not Finding.objects.exists() and not Scan.objects.exists()


def test_a_removed_machine_is_marked_deleted_in_the_inventory(system):
    sync(system, [[machine()]])
    sync(system, [[machine(removed=True)]])
    assert Asset.objects.get().sources.get().deleted_at is not None


OTHER = {"kind": "image", "ref": "registry.example/other@sha256:" + "c" * 64, "name": "registry.example/other:2"}


def test_completeness_is_per_target_a_failed_record_stops_only_its_own(system):
    a1, a2 = finding("CVE-1", tool=TOOL), finding("CVE-2", "curl", tool=TOOL)
    b1, b2 = finding("CVE-3", tool=TOOL, target=OTHER), finding("CVE-4", "zlib", tool=TOOL, target=OTHER)
    done_a, done_b = raw(summary(tool=TOOL)), raw(summary(tool=TOOL, target=OTHER))
    sync(system, [[raw(a1), raw(a2), raw(b1), raw(b2)], [done_a, done_b]])
    # The next pass: A's scan has a record that cannot be used (a severity no scale knows), B's is clean.
    bad = raw(finding("CVE-5", "musl", tool=TOOL, severity="apocalyptic"))
    log = sync(system, [[raw(a1), bad, raw(b1)], [done_a, done_b]])
    assert log.status == RunStatus.PARTIAL
    assert dict(Finding.objects.values_list("vulnerability_id", "state")) == {
        "CVE-1": "open", "CVE-2": "open", "CVE-3": "open", "CVE-4": "fixed"}
    assert Scan.objects.latest("id").status == "partial"


def test_a_failure_that_names_its_target_only_in_its_raw_record_counts_too(system):
    """A record the connector could not map (a failed scan) says which target in its raw payload."""
    a1, a2 = finding("CVE-1", tool=TOOL), finding("CVE-2", "curl", tool=TOOL)
    b1, b2 = finding("CVE-3", tool=TOOL, target=OTHER), finding("CVE-4", "zlib", tool=TOOL, target=OTHER)
    sync(system, [[raw(a1), raw(a2), raw(b1), raw(b2)], [raw(summary(tool=TOOL)),
                                                        raw(summary(tool=TOOL, target=OTHER))]])
    failed_scan = {"error": "the scan of other:2 failed (exit code 1)", "target": OTHER}
    log = sync(system, [[raw(a1), raw(b1), failed_scan], [raw(summary(tool=TOOL)),
                                                          raw(summary(tool=TOOL, target=OTHER))]])
    assert log.status == RunStatus.PARTIAL
    assert dict(Finding.objects.values_list("vulnerability_id", "state")) == {
        "CVE-1": "open", "CVE-2": "fixed", "CVE-3": "open", "CVE-4": "open"}


def test_a_cancelled_run_fixes_nothing(system):
    from syncplane.integrations.engine import RunCancelled

    a1, a2 = finding("CVE-1", tool=TOOL), finding("CVE-2", "curl", tool=TOOL)
    sync(system, [[raw(a1), raw(a2)], [raw(summary(tool=TOOL))]])
    log = sync(system, [[raw(a1)], [raw(summary(tool=TOOL))], RunCancelled()])
    assert log.status == RunStatus.CANCELLED
    assert set(Finding.objects.values_list("state", flat=True)) == {"open"}
