"""Trivy: JSON reports (SchemaVersion 2) and the `trivy` command line.

Report: `ArtifactName` / `ArtifactType` / `Metadata` say what was scanned; `Results[]` (one per OS and language
ecosystem) carry `Vulnerabilities[]` (absent, null or [] alike), after `Packages[]` when --list-all-pkgs listed
them (the bulk of a large report: streamed past, never built). Results of class secret / config / license have
no vulnerabilities. One finding per vulnerability and package version; the same one at two `PkgPath`s is one
finding with both locations. Pre-2021 output (a bare array of results) is refused with the reason.
Command: `trivy image|fs|rootfs --format json --output <file> --scanners vuln --quiet --timeout <t>s
--exit-code 0 --list-all-pkgs=false [--cache-dir <dir>] [--skip-db-update --skip-java-db-update --offline-scan]
<target>`. Exit 0 is a scan whatever it found (--exit-code 0 pins it); anything else an error (Trivy exits 1 on
every failure). Offline: the cache is filled beforehand (`trivy image --download-db-only`), the DB never updated
by a run.
"""

from __future__ import annotations

from typing import IO

import orjson

from syncplane.integrations.choices import SystemType
from syncplane.integrations.connectors.scanners.base import (
    Builder,
    ReportRead,
    ScannerConnector,
    Slot,
    check_top_level_key,
    choose_vulnerability_id,
    common_properties,
    image_target,
    package_type,
    report_events,
    severity_of,
    text,
)
from syncplane.integrations.errors import RecordError
from syncplane.integrations.records import FindingTarget
from syncplane.integrations.registry import register

VULNERABILITY = "Results.item.Vulnerabilities.item"
HEADER = {"SchemaVersion", "CreatedAt", "ArtifactName", "ArtifactType", "Metadata.ImageID"}
RESULT_FIELDS = {"Results.item.Target": "Target", "Results.item.Class": "Class", "Results.item.Type": "Type"}
INTERESTING = {"", "item", VULNERABILITY, "Results.item", "Metadata.RepoDigests.item", *HEADER, *RESULT_FIELDS}
NOT_VULNERABILITIES = {"secret", "config", "license", "license-file"}
SEVERITIES = {"critical": "critical", "high": "high", "medium": "medium", "low": "low", "unknown": "unknown"}
CVSS_PREFERRED = ("nvd", "{source}", "ghsa", "redhat")  # then any other vendor, alphabetically; then nvd's v2


def read_trivy(stream: IO[bytes], spool: IO[bytes]) -> ReportRead:
    read = ReportRead("trivy", spool)
    header: dict = {}
    digests: list[str] = []
    result: dict = {}
    builder: Builder | None = None
    for prefix, event, value in report_events(stream, "trivy"):
        if builder is not None:
            if builder.feed(prefix, event, value):
                if result.get("Class") not in NOT_VULNERABILITIES:
                    finding, unmapped = map_vulnerability(builder.value, result)
                    read.add("report", finding, unmapped)
                builder = None
            continue
        if prefix not in INTERESTING:
            continue
        if prefix == VULNERABILITY:
            if event == "start_map":
                builder = Builder(VULNERABILITY)
                builder.feed(prefix, event, value)
        elif prefix == "":
            if event == "map_key":
                check_top_level_key("trivy", value)
            elif event not in ("start_map", "end_map", "start_array"):
                raise RecordError("not a Trivy report: the JSON is not an object")
        elif prefix == "item" and event == "map_key":
            check_top_level_key("trivy", value)
            raise RecordError("a Trivy report from before schema version 2 (a bare array of results, no "
                              "SchemaVersion): re-run the scan with a current Trivy and --format json")
        elif prefix == "Results.item" and event == "start_map":
            result = {}
        elif prefix in RESULT_FIELDS:
            result[RESULT_FIELDS[prefix]] = value
        elif prefix == "Metadata.RepoDigests.item" and isinstance(value, str):
            digests.append(value)
        elif prefix in HEADER:
            header[prefix] = value
    if header.get("SchemaVersion") != 2:
        raise RecordError("not a Trivy JSON report of schema version 2 (no \"SchemaVersion\": 2); "
                          "re-run the scan with --format json")
    read.scanned_at = text(header.get("CreatedAt")) or None
    read.slots["report"] = Slot(target=trivy_target(header, digests))
    return read


def trivy_target(header: dict, digests: list[str]) -> FindingTarget | None:
    """`ArtifactName` (not a Result's Target, which says "Python" or the OS): an image by its digest; any other
    artifact (a checkout, a file system) is a repository, unless the caller says which host it was."""
    name = text(header.get("ArtifactName"))
    if not name:
        return None
    if header.get("ArtifactType") == "container_image":
        return image_target(name, digests, text(header.get("Metadata.ImageID")))
    return {"kind": "repository", "ref": name, "name": name}


def cvss(entry: dict) -> tuple[float | None, str]:
    """(score, vector) by the notes' order: NVD's v3, the rating vendor's, GHSA's, Red Hat's, any other vendor's
    (alphabetically), NVD's v2."""
    scores = entry.get("CVSS")
    if not isinstance(scores, dict):
        return None, ""
    source = text(entry.get("SeveritySource"))
    preferred = [name.format(source=source) for name in CVSS_PREFERRED]
    order = [*dict.fromkeys([*preferred, *sorted(scores)])]
    candidates = [(name, "V3") for name in order] + [("nvd", "V2")]
    for name, version in candidates:
        vendor = scores.get(name)
        score = vendor.get(f"{version}Score") if isinstance(vendor, dict) else None
        if isinstance(score, int | float) and not isinstance(score, bool) and score > 0:
            return float(score), text(vendor.get(f"{version}Vector"))
    return None, ""


def map_vulnerability(entry, result: dict) -> tuple[dict, dict]:
    """One `Vulnerabilities[]` entry of a Result -> a finding without its target (base.emit_records adds it)."""
    if not isinstance(entry, dict):
        raise RecordError("a Trivy vulnerability entry is not an object")
    vulnerability = text(entry.get("VulnerabilityID"))
    package, version = text(entry.get("PkgName")), text(entry.get("InstalledVersion"))
    if not vulnerability or not package:
        raise RecordError(f"a Trivy vulnerability has no VulnerabilityID or PkgName: {orjson.dumps(entry)[:300]!r}")
    vendor_ids = entry.get("VendorIDs") if isinstance(entry.get("VendorIDs"), list) else []
    chosen, aliases = choose_vulnerability_id([vulnerability, *vendor_ids])
    severity, unmapped = severity_of(entry.get("Severity"), SEVERITIES)
    score, vector = cvss(entry)
    identifier = entry.get("PkgIdentifier") if isinstance(entry.get("PkgIdentifier"), dict) else {}
    purl = text(identifier.get("PURL"))
    description = text(entry.get("Description")).split("\n", 1)[0].strip()
    return {
        "vulnerability_id": chosen,
        "aliases": aliases,
        "title": (text(entry.get("Title")) or description or chosen)[:500],
        "package_name": package,
        "package_type": package_type(purl, text(result.get("Type"))),
        "installed_version": version,
        "fixed_version": text(entry.get("FixedVersion")),
        "purl": purl,
        "severity": severity,
        "cvss_score": score,
        "cvss_vector": vector,
        "locations": [text(entry.get("PkgPath")) or text(result.get("Target"))],
        "first_seen_at": None,
    }, unmapped


@register
class TrivyConnector(ScannerConnector):
    system_type = SystemType.TRIVY
    display_name = "Trivy"
    base_url_help = "Not used: Trivy runs as a command on the worker. Enter local://trivy."
    base_url_example = "local://trivy"
    exit_codes = {1: "error (an image that cannot be pulled, a vulnerability DB missing or failing to download, "
                     "the scan's own timeout)"}
    config_schema = {
        "type": "object",
        "properties": {
            **common_properties("trivy"),
            "cache_dir": {"type": "string", "maxLength": 1000, "default": "", "pattern": "^(/.*)?$",
                          "description": "--cache-dir: where the vulnerability DB lives (default: Trivy's own)."},
            "offline": {"type": "boolean", "default": True,
                        "description": "Scan with the DB already in the cache (--skip-db-update "
                                       "--skip-java-db-update --offline-scan): no download during a run."},
        },
        "required": ["targets"],
        "additionalProperties": False,
    }

    @classmethod
    def read_report(cls, stream, spool):
        return read_trivy(stream, spool)

    def command(self, target: dict, report_path: str) -> list[str]:
        subcommand, scanned = (("image", target["image"]) if "image" in target
                               else ("rootfs", target["host"]) if "host" in target else ("fs", target["path"]))
        timeout = self.config["timeout_seconds"]
        argv = [subcommand, "--format", "json", "--output", report_path, "--scanners", "vuln", "--quiet",
                # Trivy's own timeout first, so that it says why it stopped; the kill comes a little later.
                "--timeout", f"{max(timeout - max(10, timeout // 20), 20)}s",
                "--exit-code", "0", "--list-all-pkgs=false"]
        if self.config["cache_dir"]:
            argv += ["--cache-dir", self.config["cache_dir"]]
        if self.config["offline"]:
            argv += ["--skip-db-update", "--skip-java-db-update", "--offline-scan"]
        return [*argv, scanned]

    def version_command(self) -> list[str]:
        cache = ["--cache-dir", self.config["cache_dir"]] if self.config["cache_dir"] else []
        return ["version", "--format", "json", *cache]

    def describe_version(self, output: bytes) -> str:
        try:
            version = orjson.loads(output)
        except orjson.JSONDecodeError:
            return super().describe_version(output)
        db = version.get("VulnerabilityDB") if isinstance(version, dict) else None
        described = f"version {version.get('Version', '?')}" if isinstance(version, dict) else "version ?"
        if isinstance(db, dict):
            return f"{described}, vulnerability DB updated {db.get('UpdatedAt', '?')}"
        return f"{described}, no vulnerability DB downloaded yet (run trivy image --download-db-only)"
