"""Defender for Endpoint end to end: connector (OAuth2 client credentials, OData paging, the vulnerability
export) -> sync engine -> findings sink and inventory, against the Defender simulator over real HTTP."""

from collections import Counter
from datetime import datetime

import pytest

from syncplane.findings.models import Finding, FindingSource
from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.choices import AuthType, RunStatus, SyncMode, SystemType
from syncplane.integrations.connectors.microsoft.defender_endpoint import (
    DefenderEndpointConnector,
    compliance_score,
)
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.errors import AuthenticationError
from syncplane.integrations.models import ExternalSystem, SyncState
from syncplane.integrations.secrets import resolve_secret, to_reference
from syncplane.inventory.models import AssetSource
from syncplane_simulators import defender_endpoint as defender_sim
from syncplane_simulators import entra_id as graph_sim
from tests.integrations.assertions import assert_counters_match_outcomes

pytestmark = pytest.mark.django_db

PAGE, EXPORT_PAGE = 10, 40


@pytest.fixture
def defender(simulator):
    return simulator.defender


@pytest.fixture
def integration(simulator, defender):
    return ExternalSystem.objects.create(
        name="Defender test", system_type=SystemType.DEFENDER_ENDPOINT, category="security",
        base_url=f"{simulator.url}/defender", auth_type=AuthType.OAUTH2_CLIENT_CREDENTIALS,
        credentials={"client_id": defender_sim.DEFAULT_CLIENT_ID,
                     "client_secret": to_reference(defender_sim.DEFAULT_CLIENT_SECRET)},
        config={"tenant_id": defender_sim.DEFAULT_TENANT, "authority_url": f"{simulator.url}/defender/login",
                "page_size": PAGE, "export_page_size": EXPORT_PAGE, "rate_limit_per_second": 1000},
    )


def connector_for(system):
    return DefenderEndpointConnector(ConnectorContext(
        base_url=system.base_url, auth_type=system.auth_type, config=system.config, credentials=system.credentials,
        resolve_secret=resolve_secret, name=system.name))


def sync(system, mode=SyncMode.FULL, **kwargs):
    return assert_counters_match_outcomes(run_sync(start_sync(system, mode=mode).pk, **kwargs))


def findings_of(system):
    return Finding.objects.filter(sources__integration=system).distinct()


def machine_source(system, machine_id):
    return AssetSource.objects.select_related("asset").get(external_system=system, external_id=machine_id)


def pages(count, size):
    return -(-count // size)


def test_a_full_sync_writes_machines_findings_and_scores(integration, defender):
    log = sync(integration)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    machines, rows = len(defender.machines), defender.open_rows()
    stats = defender.stats
    # Machines are read twice (identities, then the records with their scores), the export once, page by page.
    assert stats["machines_requests"] == 2 * pages(machines, PAGE)
    assert stats["machines_SoftwareVulnerabilitiesByMachine_requests"] == pages(len(defender.rows), EXPORT_PAGE)
    assert stats["token_requests"] == stats["token_requests_v2"] == 1
    assert AssetSource.objects.filter(external_system=integration).count() == machines
    # One finding per CVE row (software inventory rows without a CVE are not findings), all open, on its asset.
    findings = findings_of(integration)
    assert findings.count() == len(rows)
    assert set(findings.values_list("state", flat=True)) == {"open"}
    assert not findings.filter(asset__isnull=True).exists()
    assert Counter(findings.values_list("severity", flat=True)) == Counter(
        r["vulnerabilitySeverityLevel"].lower() for r in rows)
    chrome = findings.filter(vulnerability_id="CVE-2023-4863", package_name="chrome")
    assert chrome.count() >= 2 and set(chrome.values_list("cvss_score", flat=True)) == {8.8}
    # The same CVE in two installed versions on one machine: two findings.
    assert any(n == 2 for n in Counter(chrome.values_list("asset", flat=True)).values())
    # Each machine carries its compliance score, from its exposure and open critical / high findings.
    # (On the source: the asset takes the live source its system saw last, as for the re-onboarded PC.)
    for machine in defender.machines.values():
        reported = machine_source(integration, machine["id"]).attributes
        mine = Counter(r["vulnerabilitySeverityLevel"] for r in defender.open_rows(machine["id"]))
        if machine["onboardingStatus"] == "Onboarded":
            expected = compliance_score(machine["exposureLevel"].lower(), mine["Critical"], mine["High"])
            assert reported["compliance_score"] == expected, machine["computerDnsName"]
        assert reported["azure_ad_device_id"] == (machine["aadDeviceId"] or "").lower()
    discovered = next(m for m in defender.machines.values() if m["onboardingStatus"] == "CanBeOnboarded")
    source = machine_source(integration, discovered["id"])
    assert source.asset.compliance_score is None and source.asset.onboarding_status == "can_be_onboarded"
    # The next incremental run starts from when the export was read.
    cursor = SyncState.objects.get(external_system=integration).cursor
    assert datetime.fromisoformat(cursor.replace("Z", "+00:00")) <= datetime.now().astimezone()


def test_a_complete_pass_fixes_what_defender_no_longer_reports_and_a_failed_one_fixes_nothing(integration,
                                                                                              defender):
    assert sync(integration).status == RunStatus.SUCCESS
    row = defender.open_rows()[0]
    machine, cve = row["deviceId"], row["cveId"]
    defender.fix(machine, cve)
    defender.faults.add("status", status=400, path="SoftwareVulnerabilitiesByMachine")  # the pass fails
    assert sync(integration).status == RunStatus.FAILED
    assert set(findings_of(integration).values_list("state", flat=True)) == {"open"}
    log = sync(integration)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    fixed = findings_of(integration).filter(state="fixed")
    assert {(f.vulnerability_id, f.target.ref) for f in fixed} == {(cve, machine)}
    assert findings_of(integration).filter(state="open").count() == len(defender.open_rows())
    # The machine's score follows: one critical or high finding fewer.
    reported = machine_source(integration, machine).attributes
    mine = Counter(r["vulnerabilitySeverityLevel"] for r in defender.open_rows(machine))
    assert reported["compliance_score"] == compliance_score(defender.machines[machine]["exposureLevel"].lower(),
                                                      mine["Critical"], mine["High"])


def test_an_incremental_run_reads_the_changes_since_the_cursor(integration, defender):
    integration.config = {**integration.config, "export_page_size": 2}  # the delta's link names another path
    integration.save()
    assert sync(integration).status == RunStatus.SUCCESS
    before = findings_of(integration).count()
    machine = next(m["id"] for m in defender.machines.values() if defender.open_rows(m["id"]))
    defender.add_vulnerability(machine, ("CVE-2024-6387", "High", 8.1, "ExploitIsPublic", None),
                               ("openbsd", "openssh", "9.6p1"))
    changed = defender.open_rows(machine)[0]
    defender.update_vulnerability(machine, changed["cveId"], vulnerabilitySeverityLevel="Critical", cvssScore=9.9)
    gone = defender.open_rows(machine)[-2]
    defender.fix(machine, gone["cveId"])
    exports = defender.stats["machines_SoftwareVulnerabilitiesByMachine_requests"]

    log = sync(integration, mode=SyncMode.INCREMENTAL)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert defender.stats["machines_SoftwareVulnerabilitiesByMachine_requests"] == exports  # no full export
    assert defender.stats["machines_SoftwareVulnerabilitiesTimeline_requests"] >= 1  # the nextLink, verbatim
    assert (log.records_created, log.records_updated) == (1, 1)
    findings = findings_of(integration)
    assert findings.count() == before + 1
    new = findings.get(vulnerability_id="CVE-2024-6387")
    assert (new.package_name, new.installed_version, new.severity) == ("openssh", "9.6p1", "high")
    assert findings.get(vulnerability_id=changed["cveId"], target__ref=machine,
                        installed_version=changed["softwareVersion"]).severity == "critical"
    cursor = SyncState.objects.get(external_system=integration).cursor
    # Nothing new since: the next run reads the same 6-hour bucket again (overlap) and changes nothing.
    again = sync(integration, mode=SyncMode.INCREMENTAL)
    assert again.status == RunStatus.SUCCESS and again.records_created == again.records_updated == 0
    assert SyncState.objects.get(external_system=integration).cursor == cursor
    # The fix the delta reported is applied by the next full pass.
    assert findings.get(vulnerability_id=gone["cveId"], target__ref=machine,
                        installed_version=gone["softwareVersion"]).state == "open"
    assert sync(integration).status == RunStatus.SUCCESS
    assert findings.get(vulnerability_id=gone["cveId"], target__ref=machine,
                        installed_version=gone["softwareVersion"]).state == "fixed"


def test_throttling_429_is_retried_after_retry_after(integration, defender):
    defender.faults.add("status", status=429, retry_after=1, path="SoftwareVulnerabilitiesByMachine")
    connector = connector_for(integration)
    log = sync(integration, connector=connector)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert defender.stats["faults_fired"] == 1 and connector.client.stats["retries"] == 1
    assert findings_of(integration).count() == len(defender.open_rows())


def test_an_expired_token_is_renewed_once_and_the_run_goes_on(integration, defender):
    expired = []

    def expire_after_first_page(log):
        if not expired:
            defender.expire_tokens()
            expired.append(log.pages)

    log = sync(integration, progress=expire_after_first_page)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert defender.stats["expired_token_requests"] == 1 and defender.stats["token_requests"] == 2
    assert findings_of(integration).count() == len(defender.open_rows())


def test_the_v1_token_endpoint_with_a_resource(integration, defender):
    integration.config = {**integration.config, "token_endpoint": "v1",
                          "resource": "https://api.security.microsoft.com"}
    integration.save()
    log = sync(integration)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert defender.stats["token_requests_v1"] == 1 and defender.stats["token_requests_v2"] == 0


def test_a_missing_permission_fails_at_once_and_writes_nothing(integration, defender):
    defender.revoke("Vulnerability.Read.All")
    log = sync(integration)
    assert log.status == RunStatus.FAILED
    assert "403" in log.error_summary and "Vulnerability.Read.All" in log.error_summary
    assert defender.stats["machines_SoftwareVulnerabilitiesByMachine_requests"] == 0  # refused, not retried
    assert not findings_of(integration).exists()
    assert not AssetSource.objects.filter(external_system=integration).exists()


def test_a_bad_secret_fails_with_the_aadsts_code_and_no_secret(integration, defender):
    defender.client_secret = "rotated-secret-value"
    log = sync(integration)
    assert log.status == RunStatus.FAILED
    assert "invalid_client" in log.error_summary and "AADSTS7000215" in log.error_summary
    assert defender_sim.DEFAULT_CLIENT_SECRET not in log.error_summary
    assert defender.stats["token_requests"] == 1


def test_the_machines_vulnerabilities_source(integration, defender):
    integration.config = {**integration.config, "vulnerability_source": "machines_vulnerabilities"}
    integration.save()
    log = sync(integration)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    findings = findings_of(integration)
    assert findings.count() == len(defender.open_rows())
    assert set(findings.values_list("cvss_score", flat=True)) == {None}  # that API has no CVSS
    assert defender.stats["vulnerabilities_machinesVulnerabilities_requests"] == pages(len(defender.open_rows()),
                                                                                        PAGE)


def test_a_failed_run_resumes_with_the_machines_and_keeps_the_counts(integration, defender):
    export_pages = pages(len(defender.rows), EXPORT_PAGE)

    def fail_after_the_export(log):
        if log.pages == export_pages:
            defender.faults.add("status", status=400, path="/api/machines", count=None)

    log = sync(integration, progress=fail_after_the_export)
    assert log.status == RunStatus.FAILED
    assert SyncState.objects.get(external_system=integration).checkpoint["resume"]["phase"] == "machines"
    defender.faults.clear()
    exports = defender.stats["machines_SoftwareVulnerabilitiesByMachine_requests"]
    log = sync(integration)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert log.resumed_from_id is not None
    assert defender.stats["machines_SoftwareVulnerabilitiesByMachine_requests"] == exports  # not read again
    for machine in defender.machines.values():
        if machine["onboardingStatus"] == "Onboarded":
            mine = Counter(r["vulnerabilitySeverityLevel"] for r in defender.open_rows(machine["id"]))
            assert machine_source(integration, machine["id"]).attributes["compliance_score"] == compliance_score(
                machine["exposureLevel"].lower(), mine["Critical"], mine["High"])


def test_a_machine_joins_its_entra_device_by_the_aad_device_id(simulator, integration, defender):
    entra = ExternalSystem.objects.create(
        name="Entra test", system_type=SystemType.ENTRA_ID, category="identity",
        base_url=f"{simulator.url}/graph/v1.0", auth_type=AuthType.OAUTH2_CLIENT_CREDENTIALS,
        credentials={"client_id": graph_sim.DEFAULT_CLIENT_ID,
                     "client_secret": to_reference(graph_sim.DEFAULT_CLIENT_SECRET)},
        config={"tenant_id": graph_sim.DEFAULT_TENANT, "authority_url": f"{simulator.url}/graph/login"},
    )
    # Renamed since Entra registered it: only the Entra device id (upper-case here) ties the two together.
    machine = next(m for m in defender.machines.values()
                   if m["aadDeviceId"] and m["aadDeviceId"] != m["aadDeviceId"].lower())
    machine["computerDnsName"] = "renamed-pc.contoso.example"
    device = next(d for d in simulator.graph.devices.values() if d["deviceId"] == machine["aadDeviceId"].lower())
    assert sync(entra).status == RunStatus.SUCCESS
    assert sync(integration).status == RunStatus.SUCCESS
    mine = machine_source(integration, machine["id"])
    theirs = AssetSource.objects.get(external_system=entra, external_id=device["id"])
    assert mine.asset_id == theirs.asset_id
    asset = mine.asset
    assert asset.azure_ad_device_id == device["deviceId"] and asset.exposure_level == machine["exposureLevel"].lower()
    # Its findings point at that one asset.
    assert set(findings_of(integration).filter(target__ref=machine["id"]).values_list("asset", flat=True)) <= {
        asset.pk}
    # The re-onboarded PC: two Defender records (old and new machine id), one asset.
    old, new = defender.reonboarded
    assert machine_source(integration, old).asset_id == machine_source(integration, new).asset_id


def test_findings_carry_the_tool_and_a_tool_independent_key(integration, defender):
    assert sync(integration).status == RunStatus.SUCCESS
    row = defender.open_rows()[0]
    source = FindingSource.objects.get(integration=integration, finding__vulnerability_id=row["cveId"],
                                       finding__target__ref=row["deviceId"],
                                       finding__installed_version=row["softwareVersion"],
                                       finding__package_name=row["softwareName"])
    assert source.tool == "defender_endpoint"
    assert source.finding.target.kind == "asset"


def test_the_demo_integration_syncs(simulator):
    from syncplane.devtools.management.commands.demo import DEMO_DEFENDER, Command

    system = Command()._integration(DEMO_DEFENDER, simulator.url)
    log = sync(system)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert findings_of(system).count() == len(simulator.defender.open_rows())


def test_test_connection_checks_both_permissions(integration, defender):
    result = connector_for(integration).test_connection()
    assert result.ok and result.details["token_endpoint"] == "v2"
    defender.revoke("Machine.Read.All")
    with pytest.raises(AuthenticationError, match="Machine.Read.All"):
        connector_for(integration).test_connection()


def test_machines_gone_from_defender_are_marked_deleted_and_an_empty_fleet_is_a_404(integration, defender):
    assert sync(integration).status == RunStatus.SUCCESS
    gone = next(iter(defender.machines))
    defender.remove_machine(gone)
    assert sync(integration).status == RunStatus.SUCCESS
    assert machine_source(integration, gone).deleted_at is not None
    for machine_id in list(defender.machines):
        defender.remove_machine(machine_id)
    log = sync(integration)  # /api/machines answers 404: no machines, not an error
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert not AssetSource.objects.filter(external_system=integration, deleted_at__isnull=True).exists()


def test_machine_pages_without_a_next_link_are_read_with_skip(integration, defender):
    defender.machine_links = False  # the other form the note allows: $top/$skip until a short page
    log = sync(integration)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert AssetSource.objects.filter(external_system=integration).count() == len(defender.machines)
    assert defender.stats["machines_requests"] == 2 * (len(defender.machines) // PAGE + 1)
