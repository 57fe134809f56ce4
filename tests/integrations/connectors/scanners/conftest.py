import io

import pytest

from syncplane.devtools.scan_reports import report_bytes
from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.choices import AuthType
from syncplane.integrations.secrets import resolve_secret, to_reference
from tests.integrations.connectors.scanners.fake_cli import FakeCli, on_path


def parse(connector_class, report, **kwargs) -> list:
    """Every record parse_report yields for a generated report (or raw bytes)."""
    data = report if isinstance(report, bytes) else report_bytes(report)
    return list(connector_class.parse_report(io.BytesIO(data), **kwargs))


def findings(records) -> list:
    return [r for r in records if r.attributes["kind"] == "finding"]


def summaries(records) -> list:
    return [r for r in records if r.attributes["kind"] == "scan"]


def by_key(records) -> dict:
    """Findings by (vulnerability id, package, version)."""
    return {(r.attributes["vulnerability_id"], r.attributes["package_name"], r.attributes["installed_version"]): r
            for r in findings(records)}


@pytest.fixture
def bin_dir(tmp_path, monkeypatch):
    directory = tmp_path / "bin"
    directory.mkdir()
    on_path(monkeypatch, directory)
    return directory


@pytest.fixture
def fake(bin_dir):
    return lambda tool: FakeCli(bin_dir, tool)


def make_connector(connector_class, config: dict, *, base_url: str = "", token: str = ""):
    auth_type = AuthType.API_KEY if token else AuthType.NONE
    return connector_class(ConnectorContext(
        base_url=base_url or connector_class.placeholder_base_url(), auth_type=auth_type, config=config,
        credentials={"api_key": to_reference(token)} if token else {}, resolve_secret=resolve_secret,
        name=f"{connector_class.system_type} test"))
