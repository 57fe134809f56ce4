import os

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from syncplane.core import roles
from syncplane.integrations.choices import AuthType, SystemType
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.secrets import to_reference

# The Active Directory fixtures (a real slapd) serve the connector tests and the directory sign-in tests.
pytest_plugins = ["tests.integrations.connectors.active_directory.fixtures"]


def require_service(name: str, available: bool, why: str = "") -> None:
    """Skip a test whose real server is missing, unless the run says services are required (CI)."""
    if available:
        return
    message = f"{name} is not available{': ' + why if why else ''}"
    if settings.SYNCPLANE_REQUIRE_SERVICES or os.environ.get("SYNCPLANE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (SYNCPLANE_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def postgres_url() -> str | None:
    """DATABASE_URL when it names a PostgreSQL server that answers, else None."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return None
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return None
    return url


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def redis_url() -> str | None:
    """CELERY_BROKER_URL when it names a Redis server that answers, else None."""
    url = os.environ.get("CELERY_BROKER_URL", "")
    return url if url.startswith("redis://") and redis_answers(url) else None


@pytest.fixture(autouse=True)
def fresh_cache():
    """Sign-in throttles and lockouts live in the cache, which outlives a test: no test inherits another's."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def simulator():
    from syncplane_simulators.server import SimulatorServer

    with SimulatorServer(records=250, seed=7) as server:
        yield server


@pytest.fixture
def servicenow(simulator, db):
    """A ServiceNow CMDB integration pointed at the simulator, with Basic auth and small pages."""
    return ExternalSystem.objects.create(
        name="ServiceNow test",
        system_type=SystemType.SERVICENOW_CMDB,
        category="cmdb",
        base_url=f"{simulator.url}/servicenow",
        auth_type=AuthType.BASIC,
        credentials={"username": "syncplane.integration", "password": to_reference("demo-password")},
        config={"page_size": 50},
    )


@pytest.fixture
def make_user(db):
    def make(role: str | None, username: str | None = None):
        user = get_user_model().objects.create_user(username or f"user-{role}", password="pw-for-tests-123")
        if role:
            roles.grant_role(user, role)
        return user

    return make


@pytest.fixture
def api_as(make_user):
    """An API client logged in with a token as a user of the given role (None: no role; "anonymous")."""

    def client_for(role: str | None):
        client = APIClient()
        if role == "anonymous":
            return client
        from rest_framework.authtoken.models import Token

        token = Token.objects.create(user=make_user(role))
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return client_for
