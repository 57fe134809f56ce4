"""Grype: JSON reports (`-o json`) and the `grype` command line.

Report: `matches[]` first, then `source` (what was scanned: an image object, or a directory path as a string),
`distro` and `descriptor` (`name` "grype", version, timestamp). A match's `vulnerability` may be a distro or
GHSA record; its `relatedVulnerabilities` (the NVD record of the CVE) are context, never findings of their own,
but they hold the CVE id and often the only CVSS. `artifact` is the binary package (libc6, not glibc), at its
`locations`. The same vulnerability in the same package version as several matches (two site-packages) is one
finding. Severity Negligible (Debian's "unimportant") is info, never low; Unknown or missing is unknown.
Command: `grype <image> | dir:<path> -o json --file <file> -q`, with GRYPE_DB_AUTO_UPDATE=false for an offline
run on a DB imported beforehand (`grype db import`). Exit 0 is a scan; 2 a scan whose --fail-on threshold was
breached (v0.91.1 and later, from a config file: the hub passes no --fail-on); 1 an error (before v0.91.1 also
the threshold, which is why the hub never sets one).
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
    first_sentence,
    image_target,
    package_type,
    report_events,
    severity_of,
    text,
)
from syncplane.integrations.errors import RecordError
from syncplane.integrations.records import FindingTarget
from syncplane.integrations.registry import register

MATCH = "matches.item"
SEVERITIES = {"critical": "critical", "high": "high", "medium": "medium", "low": "low", "negligible": "info",
              "unknown": "unknown"}
DESCRIPTOR = {"descriptor.name": "name", "descriptor.version": "version", "descriptor.timestamp": "timestamp"}


def read_grype(stream: IO[bytes], spool: IO[bytes]) -> ReportRead:
    read = ReportRead("grype", spool)
    builder: Builder | None = None
    source = None
    descriptor: dict = {}
    keys: set[str] = set()
    for prefix, event, value in report_events(stream, "grype"):
        if builder is not None:
            if builder.feed(prefix, event, value):
                if builder.prefix == MATCH:
                    finding, unmapped = map_match(builder.value)
                    read.add("report", finding, unmapped)
                else:
                    source = builder.value
                builder = None
        elif prefix == MATCH:
            if event == "start_map":
                builder = Builder(MATCH)
                builder.feed(prefix, event, value)
        elif prefix == "":
            if event == "map_key":
                check_top_level_key("grype", value)
                keys.add(value)
            elif event not in ("start_map", "end_map", "start_array", "end_array"):
                raise RecordError("not a Grype report: Grype writes a JSON object, with `matches`")
        elif prefix == "item" and event == "map_key":
            check_top_level_key("grype", value)
            raise RecordError("not a Grype report: Grype writes a JSON object, with `matches`")
        elif prefix == "source" and event in ("start_map", "string"):
            if event == "string":
                source = value
            else:
                builder = Builder("source")
                builder.feed(prefix, event, value)
        elif prefix in DESCRIPTOR:
            descriptor[DESCRIPTOR[prefix]] = value
    if "matches" not in keys:
        raise RecordError("not a Grype JSON report (no `matches`); run grype with -o json")
    if descriptor.get("name", "grype") != "grype":
        raise RecordError(f"not a Grype report: its descriptor names {descriptor['name']!r}")
    read.scanned_at = text(descriptor.get("timestamp")) or None
    read.slots["report"] = Slot(target=grype_target(source))
    return read


def grype_target(source) -> FindingTarget | None:
    """An image (`source.type` image, `target` an object): by digest; a directory or file (`target` a string):
    a repository; an SBOM: what it describes, as a repository."""
    if not isinstance(source, dict):
        return None
    target = source.get("target")
    if source.get("type") == "image" and isinstance(target, dict):
        name = text(target.get("userInput")) or (target.get("tags") or [""])[0]
        if not name:
            return None
        digests = target.get("repoDigests") if isinstance(target.get("repoDigests"), list) else []
        found = image_target(name, digests, text(target.get("imageID")))
        if found["ref"] == name and text(target.get("manifestDigest")):
            found["ref"] = f"{name.split('@', 1)[0].rsplit(':', 1)[0]}@{text(target.get('manifestDigest'))}"
        return found
    if isinstance(target, dict):
        target = text(target.get("userInput")) or text(target.get("path")) or text(target.get("name"))
    path = text(target)
    return {"kind": "repository", "ref": path, "name": path} if path else None


def cvss(vulnerability: dict, related: list[dict]) -> tuple[float | None, str]:
    """(score, vector) by the notes' rule: the match's own v3.x entries (Primary first, else the highest base
    score), then those of the related records, then the same for v2."""
    own = [c for c in vulnerability.get("cvss") or [] if isinstance(c, dict)]
    others = [c for record in related for c in record.get("cvss") or [] if isinstance(c, dict)]
    for major in ("3", "2"):
        for entries in (own, others):
            scored = [(c, c.get("metrics", {}).get("baseScore")) for c in entries
                      if text(c.get("version")).startswith(major) and isinstance(c.get("metrics"), dict)]
            scored = [(c, s) for c, s in scored if isinstance(s, int | float) and not isinstance(s, bool)]
            if scored:
                best = max(scored, key=lambda pair: (pair[0].get("type") == "Primary", pair[1]))
                return float(best[1]), text(best[0].get("vector"))
    return None, ""


def map_match(match) -> tuple[dict, dict]:
    """One `matches[]` item -> a finding without its target (base.emit_records adds it)."""
    if not isinstance(match, dict) or not isinstance(match.get("vulnerability"), dict) \
            or not isinstance(match.get("artifact"), dict):
        raise RecordError("a Grype match has no vulnerability or artifact object")
    vulnerability, artifact = match["vulnerability"], match["artifact"]
    related = [r for r in match.get("relatedVulnerabilities") or [] if isinstance(r, dict)]
    own_id, package = text(vulnerability.get("id")), text(artifact.get("name"))
    if not own_id or not package:
        raise RecordError("a Grype match has no vulnerability id or artifact name")
    chosen, aliases = choose_vulnerability_id([own_id, *(r.get("id") for r in related)])
    severity, unmapped = severity_of(vulnerability.get("severity"), SEVERITIES)
    fix = vulnerability.get("fix") if isinstance(vulnerability.get("fix"), dict) else {}
    versions = [text(v) for v in fix.get("versions") or [] if text(v)]
    score, vector = cvss(vulnerability, related)
    descriptions = [vulnerability.get("description"), *(r.get("description") for r in related)]
    title = next((first_sentence(d) for d in descriptions if first_sentence(d)), own_id)
    purl = text(artifact.get("purl"))
    return {
        "vulnerability_id": chosen,
        "aliases": aliases,
        "title": title,
        "package_name": package,
        "package_type": package_type(purl, text(artifact.get("type"))),
        "installed_version": text(artifact.get("version")),
        "fixed_version": ", ".join(versions) if fix.get("state") == "fixed" else "",
        "purl": purl,
        "severity": severity,
        "cvss_score": score,
        "cvss_vector": vector,
        "locations": [text(place.get("path")) for place in artifact.get("locations") or []
                      if isinstance(place, dict) and text(place.get("path"))],
        "first_seen_at": None,
    }, unmapped


@register
class GrypeConnector(ScannerConnector):
    system_type = SystemType.GRYPE
    display_name = "Grype"
    base_url_help = "Not used: Grype runs as a command on the worker. Enter local://grype."
    base_url_example = "local://grype"
    success_codes = frozenset({0, 2})
    exit_codes = {
        1: "error (a target that cannot be read, a vulnerability DB missing or older than its allowed age)",
        2: "the fail-on severity threshold was breached: a completed scan",
    }
    config_schema = {
        "type": "object",
        "properties": {
            **common_properties("grype"),
            "cache_dir": {"type": "string", "maxLength": 1000, "default": "", "pattern": "^(/.*)?$",
                          "description": "GRYPE_DB_CACHE_DIR: where the vulnerability DB lives (default: Grype's "
                                         "own, ~/.cache/grype/db)."},
            "offline": {"type": "boolean", "default": True,
                        "description": "GRYPE_DB_AUTO_UPDATE=false: scan with the DB imported beforehand (grype db "
                                       "import), no download during a run. Its age check still applies."},
        },
        "required": ["targets"],
        "additionalProperties": False,
    }

    @classmethod
    def read_report(cls, stream, spool):
        return read_grype(stream, spool)

    def command(self, target: dict, report_path: str) -> list[str]:
        scanned = target["image"] if "image" in target else f"dir:{target.get('path') or target['host']}"
        return [scanned, "-o", "json", "--file", report_path, "-q"]

    def environment(self) -> dict[str, str]:
        env = super().environment() | {"GRYPE_CHECK_FOR_APP_UPDATE": "false"}
        if self.config["offline"]:
            env["GRYPE_DB_AUTO_UPDATE"] = "false"
        if self.config["cache_dir"]:
            env["GRYPE_DB_CACHE_DIR"] = self.config["cache_dir"]
        return env

    def version_command(self) -> list[str]:
        return ["version", "-o", "json"]

    def describe_version(self, output: bytes) -> str:
        try:
            version = orjson.loads(output)
        except orjson.JSONDecodeError:
            return super().describe_version(output)
        return f"version {version.get('version', '?')}" if isinstance(version, dict) else "version ?"
