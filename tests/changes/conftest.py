"""Fixtures of the change tests: an in-memory ITSM tool (FakeItsm) for the domain rules, and the ServiceNow
ITSM integration on the simulator for the end-to-end tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from syncplane.changes.models import ChangeRequest
from syncplane.integrations import registry
from syncplane.integrations.itsm import ApprovalDecision, ChangeDraft, ExternalChange, ItsmConnector
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.secrets import to_reference


class FakeItsm(ItsmConnector):
    """An ITSM tool in memory, one store per test. `errors` holds exceptions the next calls raise (by method
    name), so a test can make the tool answer 429, 5xx or 400 exactly where it wants."""

    system_type = "fake_itsm"
    category = "itsm"
    display_name = "Fake ITSM"
    auth_types = ("none",)
    webhook_signature = "hmac-sha256"
    store: dict[str, dict] = {}
    errors: dict[str, list[Exception]] = {}
    calls: list[str] = []
    _ids = itertools.count(1)

    def _call(self, name: str) -> None:
        type(self).calls.append(name)
        queue = type(self).errors.get(name)
        if queue:
            raise queue.pop(0)

    def create_change(self, draft: ChangeDraft) -> ExternalChange:
        self._call("create_change")
        number = next(self._ids)
        key = f"ext-{number}"
        self.store[key] = {"number": f"FAKE-{number}", "state": "submitted", "correlation_id": draft.correlation_id,
                           "approvals": [], "title": draft.title, "updated": 0}
        return self._external(key)

    def find_change(self, correlation_id: str) -> ExternalChange | None:
        self._call("find_change")
        for key, row in self.store.items():
            if row["correlation_id"] == correlation_id:
                return self._external(key)
        return None

    def get_changes(self, external_ids: list[str]) -> list[ExternalChange]:
        self._call("get_changes")
        return [self._external(key) for key in external_ids if key in self.store]

    def cancel_change(self, external_id: str, reason: str) -> ExternalChange:
        self._call("cancel_change")
        self.store[external_id]["state"] = "cancelled"
        return self._external(external_id)

    def webhook_change_ids(self, payload: dict) -> list[str]:
        return [payload["id"]] if payload.get("id") else []

    def fetch(self, mode, cursor=None, resume=None):
        from syncplane.integrations.base import Page

        self._call("fetch")
        yield Page(records=[{"key": key, **row} for key, row in self.store.items()], resume=None)

    def map_change(self, raw: dict) -> ExternalChange:
        return self._external(raw["key"], raw)

    def test_connection(self):
        from syncplane.integrations.base import ConnectionResult

        return ConnectionResult(True, "ok")

    def _external(self, key: str, row: dict | None = None) -> ExternalChange:
        row = row or self.store[key]
        return ExternalChange(
            external_id=key, number=row["number"], state=row["state"], correlation_id=row["correlation_id"],
            updated_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=row["updated"]),
            approvals=[ApprovalDecision(**a) for a in row["approvals"]], url=f"https://itsm.example/{key}",
        )

    # Test helpers: what a CAB member does in the tool.
    @classmethod
    def move(cls, key: str, state: str, approval: dict | None = None) -> None:
        row = cls.store[key]
        row["state"] = state
        row["updated"] += 1
        if approval:
            row["approvals"].append(approval)


@pytest.fixture
def fake_itsm(monkeypatch):
    monkeypatch.setitem(registry._connectors, FakeItsm.system_type, FakeItsm)
    monkeypatch.setattr(FakeItsm, "store", {})
    monkeypatch.setattr(FakeItsm, "errors", {})
    monkeypatch.setattr(FakeItsm, "calls", [])
    monkeypatch.setattr(FakeItsm, "_ids", itertools.count(1))
    return FakeItsm


@pytest.fixture
def fake_system(db, fake_itsm):
    return ExternalSystem.objects.create(
        name="Fake ITSM", system_type=FakeItsm.system_type, category="itsm", base_url="https://itsm.example",
        auth_type="none", webhook_secret=to_reference("hook-secret-for-tests"),
    )


@pytest.fixture
def draft(db, make_user):
    def make(**fields):
        defaults = {"title": "Rotate TLS certificates", "description": "Edge load balancers", "risk_score": 45,
                    "planned_start": datetime(2026, 6, 4, 20, tzinfo=UTC),
                    "planned_end": datetime(2026, 6, 4, 22, tzinfo=UTC)}
        defaults.update(fields)
        return ChangeRequest.objects.create(**defaults)

    return make
