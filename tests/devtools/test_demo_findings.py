"""The demo's scanner reports: once the first CMDB sync has filled the inventory, one report of each scanner is
uploaded through the upload API's path, and a server of the inventory shows open findings."""

from syncplane.devtools.management.commands.demo import DEMO_INTEGRATIONS, Command
from syncplane.findings.models import Finding, Scan
from syncplane.integrations.choices import RunStatus
from syncplane.integrations.engine import run_sync, start_sync


def test_the_demo_uploads_one_report_per_scanner_and_an_asset_shows_findings(simulator, make_user):
    make_user("admin", "admin")
    command = Command()
    cmdb = command._integration(DEMO_INTEGRATIONS[0], simulator.url)
    assert run_sync(start_sync(cmdb).pk).status == RunStatus.SUCCESS
    scans = command._scan_reports("admin")
    assert [(scan.tool, scan.status, scan.uploader) for scan in scans] == [
        ("trivy", "complete", "admin"), ("grype", "complete", "admin"), ("snyk", "complete", "admin")]
    assert all(scan.new > 0 for scan in scans)
    (host,) = scans[0].targets.all()
    assert host.kind == "asset" and host.asset is not None and host.asset.hostname == host.ref
    assert Finding.objects.filter(asset=host.asset, state="open").count() == scans[0].new
    assert {t.kind for scan in scans[1:] for t in scan.targets.all()} == {"image", "repository"}
    # A restart uploads them again: nothing new, nothing fixed.
    again = command._scan_reports("admin")
    assert [(scan.new, scan.fixed) for scan in again] == [(0, 0)] * 3
    assert Scan.objects.count() == 6
    text = command.banner(8000, simulator.url, "admin", "pw", [(cmdb, None)])
    assert "Findings              http://127.0.0.1:8000/findings/" in text


def test_without_a_host_in_the_inventory_nothing_is_uploaded(make_user):
    make_user("admin", "admin")
    assert Command()._scan_reports("admin") == []
    assert not Scan.objects.exists()
