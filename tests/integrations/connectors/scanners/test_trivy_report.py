"""Trivy's JSON (schema version 2) -> finding records and the scan summary, on generated reports."""

import pytest

from syncplane.devtools import scan_reports as sr
from syncplane.integrations.connectors.scanners.trivy import TrivyConnector
from syncplane.integrations.errors import RecordError
from tests.integrations.connectors.scanners.conftest import by_key, findings, parse, summaries

DIGEST_REF = f"{sr.IMAGE}@{sr.OS_DIGEST}"


def report_with(entries: list[dict], **result) -> dict:
    report = sr.materialize(sr.trivy_report(0))
    report["Results"] = [{"Target": "Python", "Class": "lang-pkgs", "Type": "python-pkg", **result,
                          "Vulnerabilities": entries}]
    return report


def entry(**fields) -> dict:
    base = {"VulnerabilityID": "CVE-2024-37891", "PkgName": "urllib3", "InstalledVersion": "2.0.7",
            "Severity": "MEDIUM", "SeveritySource": "ghsa",
            "PkgIdentifier": {"PURL": "pkg:pypi/urllib3@2.0.7"},
            "PkgPath": "usr/local/lib/python3.12/site-packages/urllib3-2.0.7.dist-info/METADATA"}
    return {**base, **fields}


def test_every_vulnerability_of_a_generated_report_becomes_one_finding_then_the_summary():
    records = parse(TrivyConnector, sr.trivy_report(120, packages=50))
    expected = {(v.id, v.package, v.version) for v in sr.catalogue(120)}
    assert set(by_key(records)) == expected and len(findings(records)) == len(expected)
    # The summary comes last, once, complete, dated by the report.
    assert records[-1].attributes == {
        "kind": "scan", "tool": "trivy", "complete": True, "scanned_at": "2025-03-14T09:12:44.118263Z",
        "target": {"kind": "image", "ref": DIGEST_REF, "name": f"{sr.IMAGE}:{sr.TAG}"},
    }
    assert records[-1].external_id == f"scan:trivy:{DIGEST_REF}" and len(summaries(records)) == 1
    one = findings(records)[0]
    assert one.external_id == f"image:{DIGEST_REF}|{one.attributes['vulnerability_id']}|" \
                              f"{one.attributes['package_name']}|{one.attributes['installed_version']}"
    assert {r.attributes["tool"] for r in findings(records)} == {"trivy"}
    # The secret result (class "secret") brought nothing; the listed packages neither.
    assert not any("/app/.env" in r.attributes["locations"] for r in findings(records))


def test_one_vulnerability_mapped_field_by_field():
    vulnerability = {
        "VulnerabilityID": "CVE-2024-5535", "VendorIDs": ["DSA-5739-1"], "PkgID": "libssl3@3.1.4-r5",
        "PkgName": "libssl3", "PkgIdentifier": {"PURL": "pkg:apk/alpine/libssl3@3.1.4-r5?arch=x86_64"},
        "InstalledVersion": "3.1.4-r5", "FixedVersion": " 3.1.6-r0 ", "Status": "fixed", "SeveritySource": "nvd",
        "Severity": "CRITICAL", "Title": "openssl: SSL_select_next_proto buffer overread",
        "VendorSeverity": {"nvd": 4, "redhat": 2},
        "CVSS": {"nvd": {"V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:H", "V3Score": 9.1},
                 "redhat": {"V3Vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:N/A:L", "V3Score": 5.9}},
    }
    report = report_with([vulnerability], Target=f"{sr.IMAGE}:{sr.TAG} (alpine 3.19.1)", Class="os-pkgs",
                         Type="alpine")
    (finding,) = findings(parse(TrivyConnector, report))
    assert finding.attributes == {
        "kind": "finding", "tool": "trivy",
        "target": {"kind": "image", "ref": DIGEST_REF, "name": f"{sr.IMAGE}:{sr.TAG}"},
        "vulnerability_id": "CVE-2024-5535", "aliases": ["DSA-5739-1"],
        "title": "openssl: SSL_select_next_proto buffer overread",
        "package_name": "libssl3", "package_type": "apk", "installed_version": "3.1.4-r5",
        "fixed_version": "3.1.6-r0", "purl": "pkg:apk/alpine/libssl3@3.1.4-r5?arch=x86_64",
        "severity": "critical", "cvss_score": 9.1, "cvss_vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:H",
        "locations": [f"{sr.IMAGE}:{sr.TAG} (alpine 3.19.1)"], "first_seen_at": None,
    }
    assert finding.unmapped == {}


@pytest.mark.parametrize(("cvss", "source", "expected"), [
    ({"ghsa": {"V3Score": 7.5, "V3Vector": "G"}, "redhat": {"V3Score": 5.0, "V3Vector": "R"}}, "ghsa", (7.5, "G")),
    ({"redhat": {"V3Score": 5.0, "V3Vector": "R"}, "bitnami": {"V3Score": 6.1, "V3Vector": "B"}}, "nvd", (5.0, "R")),
    ({"bitnami": {"V3Score": 6.1, "V3Vector": "B"}, "amazon": {"V3Score": 4.2, "V3Vector": "A"}}, "nvd", (4.2, "A")),
    ({"nvd": {"V2Score": 5.0, "V2Vector": "AV:N/AC:L/Au:N/C:P/I:N/A:N"}}, "nvd",
     (5.0, "AV:N/AC:L/Au:N/C:P/I:N/A:N")),
    ({}, "nvd", (None, "")),
])
def test_cvss_comes_from_the_vendor_the_notes_prefer(cvss, source, expected):
    (finding,) = findings(parse(TrivyConnector, report_with([entry(CVSS=cvss, SeveritySource=source)])))
    assert (finding.attributes["cvss_score"], finding.attributes["cvss_vector"]) == expected


def test_severities_unknown_and_unheard_of():
    records = findings(parse(TrivyConnector, report_with([
        entry(VulnerabilityID="CVE-2024-1", Severity="UNKNOWN"),
        entry(VulnerabilityID="CVE-2024-2", Severity="SEVERE"),
        entry(VulnerabilityID="CVE-2024-3", Severity="LOW"),
    ])))
    assert [(r.attributes["severity"], r.unmapped) for r in records] == [
        ("unknown", {}), ("unknown", {"severity": "SEVERE"}), ("low", {})]


def test_fixed_versions_missing_empty_or_a_list():
    records = findings(parse(TrivyConnector, report_with([
        entry(VulnerabilityID="CVE-2024-1"),
        entry(VulnerabilityID="CVE-2024-2", FixedVersion=""),
        entry(VulnerabilityID="CVE-2024-3", FixedVersion="1.26.19, 2.2.2"),
    ])))
    assert [r.attributes["fixed_version"] for r in records] == ["", "", "1.26.19, 2.2.2"]


def test_the_same_package_version_at_two_paths_is_one_finding_with_both_locations():
    records = findings(parse(TrivyConnector, report_with([
        entry(PkgPath="usr/local/lib/python3.12/site-packages/urllib3-2.0.7.dist-info/METADATA"),
        entry(VulnerabilityID="CVE-2023-45803"),
        entry(PkgPath="opt/venv/lib/python3.12/site-packages/urllib3-2.0.7.dist-info/METADATA"),
    ])))
    assert [r.attributes["vulnerability_id"] for r in records] == ["CVE-2024-37891", "CVE-2023-45803"]
    assert records[0].attributes["locations"] == [
        "opt/venv/lib/python3.12/site-packages/urllib3-2.0.7.dist-info/METADATA",
        "usr/local/lib/python3.12/site-packages/urllib3-2.0.7.dist-info/METADATA"]
    # The generated report has such a copy too, and the same CVE in two packages (two findings).
    generated = by_key(parse(TrivyConnector, sr.trivy_report(60)))
    assert any(len(r.attributes["locations"]) == 2 for r in generated.values())
    by_cve = {}
    for vulnerability_id, package, _ in generated:
        by_cve.setdefault(vulnerability_id, set()).add(package)
    assert any(len(packages) == 2 for packages in by_cve.values())


@pytest.mark.parametrize("results", ["absent", "null vulnerabilities", "empty vulnerabilities", "only secrets"])
def test_a_clean_scan_is_only_its_complete_summary(results):
    report = sr.materialize(sr.trivy_report(0))
    if results == "absent":
        del report["Results"]
    elif results == "null vulnerabilities":
        report["Results"] = [{"Target": "x (alpine 3.19.1)", "Class": "os-pkgs", "Type": "alpine",
                              "Vulnerabilities": None}]
    elif results == "empty vulnerabilities":
        report["Results"] = [{"Target": "Python", "Class": "lang-pkgs", "Type": "pip", "Vulnerabilities": []}]
    else:
        report["Results"] = [report["Results"][-1]]
        assert report["Results"][0]["Class"] == "secret"
    (only,) = parse(TrivyConnector, report)
    assert only.attributes["kind"] == "scan" and only.attributes["complete"] is True


def test_image_target_without_a_digest_falls_back_to_the_image_id_then_the_name():
    without_digest = sr.trivy_report(4, digest=False)
    assert parse(TrivyConnector, without_digest)[-1].attributes["target"]["ref"] == sr.CONFIG_DIGEST
    report = sr.materialize(without_digest)
    del report["Metadata"]["ImageID"]
    assert parse(TrivyConnector, report)[-1].attributes["target"] == {
        "kind": "image", "ref": f"{sr.IMAGE}:{sr.TAG}", "name": f"{sr.IMAGE}:{sr.TAG}"}


def test_a_file_system_scan_is_a_repository_unless_the_caller_names_the_host():
    report = sr.trivy_report(4, image="/builds/itgov/portal", artifact_type="filesystem")
    records = parse(TrivyConnector, report)
    assert {r.attributes["target"]["kind"] for r in records} == {"repository"}
    assert records[0].external_id.startswith("repository:/builds/itgov/portal|")
    host = {"kind": "asset", "ref": "web01.example.org", "name": "web01",
            "asset": {"hostname": "web01", "fqdn": "web01.example.org"}}
    records = parse(TrivyConnector, report, target=host)
    assert {r.attributes["target"]["ref"] for r in records} == {"web01.example.org"}
    assert records[-1].external_id == "scan:trivy:web01.example.org"


def test_report_of_schema_1_or_without_schema_version_is_refused():
    legacy = [{"Target": "alpine:3.10 (alpine 3.10.2)", "Vulnerabilities": None}]
    with pytest.raises(RecordError, match="before schema version 2"):
        parse(TrivyConnector, legacy)
    report = sr.materialize(sr.trivy_report(2))
    del report["SchemaVersion"]
    with pytest.raises(RecordError, match="SchemaVersion"):
        parse(TrivyConnector, report)


def test_a_vulnerability_without_package_name_fails_the_report():
    with pytest.raises(RecordError, match="no VulnerabilityID or PkgName"):
        parse(TrivyConnector, report_with([entry(PkgName="")]))
