import pytest

from syncplane.integrations.choices import AuthType, SystemType
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.secrets import to_reference
from syncplane_simulators import apple_business_manager as abm_sim
from tests.integrations.connectors.apple.keys import key_pair


@pytest.fixture(scope="session")
def api_key():
    """The API account's key pair: generated once per test session, registered with each simulator."""
    return key_pair()


@pytest.fixture
def apple(simulator, api_key):
    sim = simulator.apple
    sim.register_key(abm_sim.DEFAULT_CLIENT_ID, abm_sim.DEFAULT_KEY_ID, api_key[1])
    return sim


@pytest.fixture
def abm(simulator, apple, api_key, db):
    """An Apple Business API integration against the simulator, 100 devices a page."""
    return ExternalSystem.objects.create(
        name="ABM test", system_type=SystemType.APPLE_BUSINESS_MANAGER, category="mdm",
        base_url=f"{simulator.url}/apple/v1", auth_type=AuthType.OAUTH2_CLIENT_ASSERTION,
        credentials={"client_id": abm_sim.DEFAULT_CLIENT_ID, "key_id": abm_sim.DEFAULT_KEY_ID,
                     "private_key": to_reference(api_key[0])},
        config={"token_url": f"{simulator.url}/apple/auth/oauth2/token", "page_size": 100},
    )


@pytest.fixture
def dep(simulator, apple, db):
    """The legacy server-token integration against the simulator's DEP API."""
    return ExternalSystem.objects.create(
        name="ABM DEP test", system_type=SystemType.APPLE_BUSINESS_MANAGER, category="mdm",
        base_url=f"{simulator.url}/apple/dep", auth_type=AuthType.APPLE_SERVER_TOKEN,
        credentials={"consumer_key": abm_sim.DEP_CONSUMER_KEY,
                     "consumer_secret": to_reference(abm_sim.DEP_CONSUMER_SECRET),
                     "access_token": to_reference(abm_sim.DEP_ACCESS_TOKEN),
                     "access_secret": to_reference(abm_sim.DEP_ACCESS_SECRET)},
        config={"page_size": 100},
    )
