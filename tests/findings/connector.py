"""A test-only security connector: pages of finding, scan and machine records for the engine, and a JSON-lines
report format for uploads (first line {"tool": "test_security"}, then one {"id", "attributes"} per line)."""

import json

import pytest

from syncplane.integrations import registry
from syncplane.integrations.base import Connector, ConnectorContext, MappedRecord, Page
from syncplane.integrations.choices import Capability, RecordKind
from syncplane.integrations.errors import RecordError

TOOL = "test_security"


class FakeSecurityConnector(Connector):
    system_type = TOOL
    category = "security"
    display_name = "Test security tool"
    record_kind = RecordKind.FINDING
    auth_types = ("none",)
    capabilities = frozenset({Capability.FULL, Capability.DRY_RUN, Capability.REPORT_UPLOAD})
    pages: list[list[dict]] = []

    def fetch(self, mode, cursor=None, resume=None):
        start = (resume or {}).get("page", 0)
        for index in range(start, len(self.pages)):
            if isinstance(self.pages[index], BaseException):  # the run stops here (a cancel, an error)
                raise self.pages[index]
            last = index + 1 == len(self.pages)
            yield Page(records=self.pages[index], resume=None if last else {"page": index + 1})

    def map_record(self, raw):
        if raw.get("error"):  # a failed scan, as the scanner connectors send it: its error and its target
            raise RecordError(raw["error"])
        return MappedRecord(raw["id"], raw["attributes"], raw)

    @classmethod
    def parse_report(cls, stream, *, target=None):
        lines = iter(stream)
        try:
            header = json.loads(next(lines))
        except (StopIteration, ValueError):
            raise RecordError("the file is empty or not JSON") from None
        if not isinstance(header, dict) or header.get("tool") != TOOL:
            raise RecordError(f"this is not a {TOOL} report")
        for number, line in enumerate(lines, start=2):
            try:
                item = json.loads(line)
            except ValueError:
                raise RecordError(f"the report is cut short at line {number}") from None
            if target is not None:  # the upload names what was scanned: it replaces the report's own
                item["attributes"]["target"] = target
            yield MappedRecord(item["id"], item["attributes"], item)


def connector_for(pages) -> FakeSecurityConnector:
    connector = FakeSecurityConnector(ConnectorContext(base_url="https://scanner.invalid", auth_type="none",
                                                       config={}, credentials={}, resolve_secret=str))
    connector.pages = pages
    return connector


def raw(record: MappedRecord) -> dict:
    return {"id": record.external_id, "attributes": record.attributes}


@pytest.fixture
def security_connector(monkeypatch):
    monkeypatch.setitem(registry._connectors, TOOL, FakeSecurityConnector)
    return FakeSecurityConnector
