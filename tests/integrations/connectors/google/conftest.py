"""Android Enterprise fixtures: the simulator with a service account registered, and an integration on it."""

import json

import pytest

from syncplane.integrations.choices import AuthType, SystemType
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.secrets import to_reference
from syncplane_simulators import android_enterprise as android_sim


@pytest.fixture
def android(simulator):
    """The Android Management simulator, with small pages so that a run reads several."""
    return simulator.android


@pytest.fixture
def service_account(simulator, android):
    """A key file made now (never committed), its public key registered with the simulator."""
    key, public = android_sim.make_service_account_key(f"{simulator.url}/android/token")
    android.register_service_account(key["client_email"], public, key["private_key_id"])
    return key


@pytest.fixture
def android_enterprise(simulator, service_account, db):
    return ExternalSystem.objects.create(
        name="Android test", system_type=SystemType.ANDROID_ENTERPRISE, category="mdm",
        base_url=f"{simulator.url}/android/v1", auth_type=AuthType.GOOGLE_SERVICE_ACCOUNT,
        credentials={"service_account_key": to_reference(json.dumps(service_account))},
        config={"enterprise_id": android_sim.DEFAULT_ENTERPRISE, "page_size": 25},
    )
