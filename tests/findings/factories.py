"""Finding records as a scanner's parser produces them (integrations/records.py), for the findings tests."""

from syncplane.integrations.base import MappedRecord

IMAGE = {"kind": "image", "ref": "registry.example/app@sha256:" + "a" * 64, "name": "registry.example/app:1.0"}


def finding(vuln="CVE-2026-0001", package="openssl", version="3.0.1", *, tool="trivy", target=None,
            severity="high", locations=None, fixed="3.0.2", **extra) -> MappedRecord:
    target = target or IMAGE
    attributes = {
        "kind": "finding", "target": target, "vulnerability_id": vuln, "aliases": extra.pop("aliases", []),
        "title": f"{vuln} in {package}", "package_name": package, "package_type": "deb",
        "installed_version": version, "fixed_version": fixed, "purl": f"pkg:deb/debian/{package}@{version}",
        "severity": severity, "cvss_score": extra.pop("cvss_score", 7.5), "cvss_vector": "CVSS:3.1/AV:N",
        "locations": locations if locations is not None else [], "tool": tool, **extra,
    }
    return MappedRecord(f"{target['kind']}:{target['ref']}|{vuln}|{package}|{version}", attributes, {"id": vuln})


def summary(*, tool="trivy", target=None, complete=True) -> MappedRecord:
    target = target or IMAGE
    return MappedRecord(f"scan:{tool}:{target['ref']}",
                        {"kind": "scan", "target": target, "tool": tool, "complete": complete, "scanned_at": None})
