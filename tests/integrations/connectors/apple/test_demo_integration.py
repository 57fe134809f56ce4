"""The demo's Apple Business Manager integration: a key pair made at start, the public half registered with the
simulator, the private half stored only as an encrypted reference; its first sync works."""

import pytest

from syncplane.devtools.management.commands.demo import Command
from syncplane.integrations.choices import RunStatus
from syncplane.integrations.engine import run_sync, start_sync

pytestmark = pytest.mark.django_db


def test_the_demo_makes_a_key_registers_it_and_syncs(simulator, settings):
    settings.SYNCPLANE_ALLOW_INSECURE_OUTBOUND = True
    system = Command()._apple_business_manager(simulator.url)
    assert system.credentials["private_key"].startswith("enc:")
    assert system.base_url == f"{simulator.url}/apple/v1"
    log = run_sync(start_sync(system).pk)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert log.records_created == simulator.apple.device_count
    again = Command()._apple_business_manager(simulator.url)  # a restart: a new key, the same integration
    assert again.pk == system.pk and again.credentials["private_key"] != system.credentials["private_key"]
    assert run_sync(start_sync(again).pk).status == RunStatus.SUCCESS
