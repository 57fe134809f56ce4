"""The outbox page: backlog and dead letters, and "send again" for admins only."""

import pytest

from syncplane.integrations.choices import Category, SystemType
from syncplane.integrations.models import ExternalSystem, OutboxKind, OutboxMessage, OutboxStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def dead_letter():
    sink = ExternalSystem.objects.create(
        name="Elastic", system_type=SystemType.ELASTIC, category=Category.MONITORING,
        base_url="https://127.0.0.1:9200", auth_type="api_key", credentials={"api_key": "env:ELASTIC_KEY"},
    )
    return OutboxMessage.objects.create(
        kind=OutboxKind.EVENT, external_system=sink, subject_type="integration", subject_id="1",
        idempotency_key="evt-1", status=OutboxStatus.FAILED, attempts=5, last_error="mapper_parsing_exception",
    )


def test_the_outbox_shows_dead_letters_with_their_reason(browser_as, dead_letter):
    page = browser_as("viewer").get("/outbox/?status=failed").content.decode()
    assert "mapper_parsing_exception" in page and "dead letters" in page
    assert "Send again" not in page


def test_an_admin_sends_a_dead_letter_again(browser_as, dead_letter, monkeypatch):
    monkeypatch.setattr("syncplane.integrations.outbox.queue_sink_delivery", lambda system_id: None)
    admin = browser_as("admin")
    assert "Send again" in admin.get("/outbox/?status=failed").content.decode()
    admin.post(f"/outbox/{dead_letter.pk}/resend/")
    dead_letter.refresh_from_db()
    assert (dead_letter.status, dead_letter.attempts) == (OutboxStatus.PENDING, 0)
    assert browser_as("operator").post(f"/outbox/{dead_letter.pk}/resend/").status_code == 403
