"""Real OpenLDAP (slapd) with an AD-like schema for the Active Directory tests (simulators/slapd.py).

`slapd` holds the full data set (1,600 users, so one group has more members than one AD range), is started
once per module and only read; `slapd_small` (40 users) is started fresh for each test that uses it, which
may change it (incremental and end-to-end tests): about half a second each. Both skip where slapd is not
installed, and fail under SYNCPLANE_REQUIRE_SERVICES=1 (CI).
"""

import pytest

from syncplane.integrations.base import ConnectorContext
from syncplane_simulators.active_directory import SlapdDirectory, slapd_available
from tests.conftest import require_service


def _directory(**size):
    require_service("slapd", slapd_available(), "install the OS packages slapd and ldap-utils")
    return SlapdDirectory(**size)


@pytest.fixture(scope="module")
def slapd():
    with _directory(users=1600, computers=24) as directory:
        yield directory


@pytest.fixture
def slapd_small():
    with _directory(users=40, computers=6) as directory:
        yield directory


def ad_context(directory: SlapdDirectory, url: str | None = None, *, password: str | None = None,
               **config) -> ConnectorContext:
    """A connector context for the service account of `directory`, over ldaps with the harness CA by default."""
    return ConnectorContext(
        base_url=url or directory.ldaps_url,
        auth_type="basic",
        config={"base_dn": directory.base_dn, "ca_file": str(directory.ca_file), **config},
        credentials={"username": directory.service_dn, "password": "env:UNUSED"},
        resolve_secret=lambda _ref: directory.service_password if password is None else password,
        name="Active Directory (slapd)",
    )
