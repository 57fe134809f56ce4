import pytest

from tests.inventory.helpers import device_integrations


@pytest.fixture
def integrations(db):
    """One integration per system type that reports devices: a CMDB, Entra ID (with Intune), Android
    Enterprise, Apple Business Manager and Defender for Endpoint, keyed by system type."""
    return device_integrations()
