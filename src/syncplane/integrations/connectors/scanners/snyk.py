"""Snyk: `snyk test --json` / `snyk container test --json` output and the `snyk` command line.

Report: one project object, or an array of them (--all-projects, some container runs). A project's
`vulnerabilities[]` come first, one entry per dependency path (`from`: the same issue in the same package version
twice is one finding, with both paths), license issues among them (`type` "license": not vulnerabilities);
its `projectName`, `displayTargetFile` and `path` after them. A container project (`docker`, a projectName
"docker-image|...") is the image in `path`; its `applications[]` are project objects whose findings belong to
the same image, located by their manifest. Two projects of one run with the same name are told apart by
`:` + displayTargetFile. `ok: true` with no vulnerabilities is a clean project: its summary fixes what it no
longer reports. A failure prints `{"ok": false, "error": ...}`.
Command: `snyk test <path> --json-file-output=<file> [--all-projects] [--org=<org>]` or `snyk container test
<image> --json-file-output=<file>`, with SNYK_TOKEN (the integration's API key) in the child's environment only,
and SNYK_API when base_url is another region's API. Snyk always calls its API: there is no offline mode. Exit 0:
no vulnerabilities; 1: vulnerabilities found (a completed scan); 2: failure (authentication, network); 3: no
supported project found.
"""

from __future__ import annotations

from typing import IO
from urllib.parse import quote

import orjson

from syncplane.integrations.choices import AuthType, SystemType
from syncplane.integrations.connectors.scanners.base import (
    Builder,
    ReportRead,
    ScannerConnector,
    Slot,
    check_top_level_key,
    choose_vulnerability_id,
    common_properties,
    package_type,
    report_events,
    severity_of,
    text,
)
from syncplane.integrations.errors import ConfigurationError, RecordError
from syncplane.integrations.records import FindingTarget
from syncplane.integrations.registry import register

SNYK_API = "https://api.snyk.io"
SEVERITIES = {"critical": "critical", "high": "high", "medium": "medium", "low": "low"}
PROJECT_FIELDS = ("projectName", "displayTargetFile", "targetFile", "path", "error", "packageManager")
PURL_TYPES = {"npm": "npm", "yarn": "npm", "pnpm": "npm", "pip": "pypi", "poetry": "pypi", "pipenv": "pypi",
              "maven": "maven", "gradle": "maven", "sbt": "maven", "rubygems": "gem", "nuget": "nuget",
              "composer": "composer", "gomodules": "golang", "golangdep": "golang", "cargo": "cargo"}


def joined(prefix: str, rest: str) -> str:
    return f"{prefix}.{rest}" if prefix else rest


class SnykReader:
    """The event prefixes of one layout: a single project object (prefix "") or an array of them ("item")."""

    def __init__(self, read: ReportRead, base: str):
        self.read = read
        self.base = base
        self.vulnerability = joined(base, "vulnerabilities.item")
        self.application = joined(base, "applications.item")
        self.application_vulnerability = joined(self.application, "vulnerabilities.item")
        self.fields = {joined(base, name): name for name in PROJECT_FIELDS}
        self.application_fields = {joined(self.application, name): name for name in PROJECT_FIELDS}
        self.projects: list[dict] = []
        self.builder: Builder | None = None

    def feed(self, prefix: str, event: str, value) -> None:
        if self.builder is not None:
            if self.builder.feed(prefix, event, value):
                project = self.projects[-1]
                slot = str(len(self.projects) - 1)
                if self.builder.prefix == self.application_vulnerability:
                    slot += f".{len(project['applications']) - 1}"
                mapped = map_vulnerability(self.builder.value)
                if mapped:
                    self.read.add(slot, *mapped)
                self.builder = None
            return
        if prefix in (self.vulnerability, self.application_vulnerability):
            if event == "start_map":
                self.builder = Builder(prefix)
                self.builder.feed(prefix, event, value)
        elif prefix == self.base:
            if event == "start_map":
                self.projects.append({"applications": [], "snyk": False, "container": False})
            elif event == "map_key":
                check_top_level_key("snyk", value)
                self.projects[-1]["snyk"] |= value in ("vulnerabilities", "error", "projectName", "ok")
            elif event != "end_map":
                raise RecordError("not a Snyk report: a project is not a JSON object")
        elif prefix == self.application and event == "start_map":
            self.projects[-1]["applications"].append({})
        elif prefix in self.fields and isinstance(value, str):
            self.projects[-1][self.fields[prefix]] = value
        elif prefix in self.application_fields and isinstance(value, str):
            self.projects[-1]["applications"][-1][self.application_fields[prefix]] = value
        elif prefix == joined(self.base, "docker") and event == "start_map":
            self.projects[-1]["container"] = True


def read_snyk(stream: IO[bytes], spool: IO[bytes]) -> ReportRead:
    read = ReportRead("snyk", spool)
    reader: SnykReader | None = None
    for prefix, event, value in report_events(stream, "snyk"):
        if reader is None:
            if event not in ("start_map", "start_array"):
                raise RecordError("not a Snyk report: the JSON is neither a project object nor an array of them")
            reader = SnykReader(read, "" if event == "start_map" else "item")
            if event == "start_array":
                continue
        reader.feed(prefix, event, value)
    projects = reader.projects if reader else []
    if not projects:
        raise RecordError("the Snyk report holds no project")
    if not all(project["snyk"] for project in projects):
        raise RecordError("not a Snyk report: a project object has neither `vulnerabilities` nor `error`")
    if len(projects) == 1 and projects[0].get("error") and not read.findings:
        raise RecordError(f"the Snyk report is the failure of its run: {projects[0]['error'][:1000]}")
    resolve_targets(read, projects)
    return read


def resolve_targets(read: ReportRead, projects: list[dict]) -> None:
    """Each project's target, now that the report is read: a container's image (its applications with it), or
    a repository by project name (and manifest, when two projects share the name)."""
    names = [p.get("projectName", "") for p in projects if not is_container(p)]
    for number, project in enumerate(projects):
        manifest = project.get("displayTargetFile") or project.get("targetFile") or ""
        target: FindingTarget | None
        if is_container(project):
            image = project.get("path", "")
            if not image or image.startswith("/"):
                image = project.get("projectName", "").removeprefix("docker-image|")
            target = {"kind": "image", "ref": image, "name": image} if image else None
        else:
            name = project.get("projectName") or project.get("path") or ""
            if name and names.count(name) > 1 and manifest:
                name = f"{name}:{manifest}"
            target = {"kind": "repository", "ref": name, "name": name} if name else None
        read.slots[str(number)] = Slot(target=target, complete=not project.get("error"),
                                       location_prefix="" if is_container(project) else manifest)
        for index, application in enumerate(project["applications"]):
            read.slots[f"{number}.{index}"] = Slot(
                target=target, location_prefix=application.get("displayTargetFile")
                or application.get("targetFile") or application.get("projectName", ""))


def is_container(project: dict) -> bool:
    return project["container"] or project.get("projectName", "").startswith("docker-image|")


def purl(manager: str, name: str, version: str) -> str:
    kind = PURL_TYPES.get(manager)
    if not kind or not name or not version:
        return ""
    if kind == "maven" and ":" in name:
        group, artifact = name.split(":", 1)
        return f"pkg:maven/{quote(group)}/{quote(artifact)}@{quote(version)}"
    if kind == "npm" and name.startswith("@") and "/" in name:
        scope, package = name.split("/", 1)
        return f"pkg:npm/{quote(scope)}/{quote(package)}@{quote(version)}"
    return f"pkg:{kind}/{quote(name, safe='/')}@{quote(version)}"


def map_vulnerability(entry) -> tuple[dict, dict] | None:
    """One `vulnerabilities[]` entry (one dependency path) -> a finding without its target; None for a license
    issue."""
    if not isinstance(entry, dict):
        raise RecordError("a Snyk vulnerability entry is not an object")
    if entry.get("type") == "license" or text(entry.get("id")).startswith("snyk:lic:"):
        return None
    own_id = text(entry.get("id"))
    package = text(entry.get("packageName")) or text(entry.get("name"))
    if not own_id or not package:
        raise RecordError("a Snyk vulnerability has no id or packageName")
    identifiers = entry.get("identifiers") if isinstance(entry.get("identifiers"), dict) else {}
    listed = [i for key in ("CVE", "GHSA", "ALTERNATIVE") for i in identifiers.get(key) or [] if isinstance(i, str)]
    chosen, aliases = choose_vulnerability_id([own_id, *listed])
    severity, unmapped = severity_of(entry.get("severity"), SEVERITIES)
    score = entry.get("cvssScore")
    version = text(entry.get("version"))
    manager = text(entry.get("packageManager"))
    chain = [text(hop) for hop in entry.get("from") or [] if text(hop)]
    return {
        "vulnerability_id": chosen,
        "aliases": aliases,
        "title": (text(entry.get("title")) or own_id)[:500],
        "package_name": package,
        "package_type": package_type("", manager),
        "installed_version": version,
        "fixed_version": ", ".join(text(v) for v in entry.get("fixedIn") or [] if text(v)),
        "purl": purl(manager, package, version),
        "severity": severity,
        "cvss_score": float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None,
        "cvss_vector": text(entry.get("CVSSv3")),
        "locations": [" > ".join(chain)] if chain else [],
        "first_seen_at": None,
    }, unmapped


@register
class SnykConnector(ScannerConnector):
    system_type = SystemType.SNYK
    display_name = "Snyk"
    calls_api = True
    base_url_help = ("The Snyk API the CLI calls with the token: https://api.snyk.io, or your region's "
                     "(https://api.eu.snyk.io, https://api.au.snyk.io); passed to the CLI as SNYK_API.")
    base_url_example = SNYK_API
    # api_key: the integration's token. none: the worker's own SNYK_TOKEN (its environment), for a worker
    # that holds a service-account token of its own.
    auth_types = (AuthType.API_KEY, AuthType.NONE)
    success_codes = frozenset({0, 1})
    exit_codes = {
        0: "no vulnerabilities",
        1: "vulnerabilities found: a completed scan",
        2: "failure, to be re-run (authentication, network, a manifest Snyk cannot read)",
        3: "no supported project was found",
    }
    config_schema = {
        "type": "object",
        "properties": {
            **common_properties("snyk"),
            "org": {"type": "string", "maxLength": 100, "default": "", "pattern": "^[A-Za-z0-9_-]*$",
                    "description": "--org: the Snyk organisation (id or slug) the tests count against."},
            "all_projects": {"type": "boolean", "default": False,
                             "description": "--all-projects: every manifest under each path, not only the "
                                            "one at its root."},
        },
        "required": ["targets"],
        "additionalProperties": False,
    }

    @classmethod
    def validated_config(cls, config):
        config = super().validated_config(config)
        for number, target in enumerate(config["targets"]):
            if "host" in target:
                raise ConfigurationError(f"targets.{number}: Snyk tests images and project directories, not the "
                                         "file system of a host; use Trivy or Grype for hosts")
        return config

    @classmethod
    def read_report(cls, stream, spool):
        return read_snyk(stream, spool)

    def command(self, target: dict, report_path: str) -> list[str]:
        output = f"--json-file-output={report_path}"
        org = [f"--org={self.config['org']}"] if self.config["org"] else []
        if "image" in target:
            return ["container", "test", target["image"], output, *org]
        every = ["--all-projects"] if self.config["all_projects"] else []
        return ["test", target["path"], output, *every, *org]

    def environment(self) -> dict[str, str]:
        # The token travels in the child's environment only: never on its command line, never logged.
        env = super().environment()
        if self.context.auth_type == AuthType.API_KEY:
            env["SNYK_TOKEN"] = self.context.credential("api_key")
        elif not env.get("SNYK_TOKEN"):
            raise ConfigurationError("Snyk needs a token: set auth type api_key with the token, or SNYK_TOKEN in "
                                     "the worker's environment")
        if self.context.base_url.rstrip("/") != SNYK_API:
            env["SNYK_API"] = self.context.base_url
        return env

    def version_command(self) -> list[str]:
        return ["--version"]

    def failure_detail(self, report_path: str) -> str:
        """Snyk writes its failure as JSON too: `{"ok": false, "error": ...}`."""
        try:
            with open(report_path, "rb") as report:
                body = orjson.loads(report.read(256 * 1024))
        except (OSError, orjson.JSONDecodeError):
            return ""
        error = body.get("error") if isinstance(body, dict) else None
        return self.redact(text(error))[:1000] if error else ""
