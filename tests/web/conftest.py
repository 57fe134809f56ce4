import pytest
from django.test import Client


@pytest.fixture
def browser_as(make_user):
    """A browser (Django's client) signed in as a user of the given role; one user per role per test;
    "anonymous": not signed in."""
    users = {}

    def client_for(role):
        client = Client()
        if role == "anonymous":
            return client
        if role not in users:
            users[role] = make_user(role)
        client.force_login(users[role], backend="django.contrib.auth.backends.ModelBackend")
        return client

    return client_for
