"""Sign in with a directory password, checked by the directory itself.

Syncplane never receives nor stores directory passwords (synced users get an unusable one). This backend
lets such a user sign in (web login, `POST /api/v1/auth/token/`) by asking their integration's connector to
check the password they typed (`Connector.check_password`; for an LDAP directory, a bind as them). Only users
with a live, enabled DirectoryAccount on an enabled integration whose connector offers the "password_sign_in"
capability qualify; any failure (wrong password, locked or disabled account, server unreachable, TLS problem)
simply fails this login — the reason goes to the log, never to the person signing in, and never with the
password. A user name or address locked out after repeated failures (syncplane/core/auth.py) is not even
tried: each wrong bind would count towards the account's own lockout in the directory.

The account is named by its DN from the last sync (accepted by every LDAP server), then, if the DN moved
since, by its user principal name. An empty password is refused before anything is sent: LDAP treats a simple
bind with a DN and no password as an *unauthenticated* bind, which succeeds (RFC 4513 5.1.2).
"""

from __future__ import annotations

import logging

from django.contrib.auth.backends import ModelBackend

from syncplane.core.auth import locked_out_for
from syncplane.integrations.choices import Capability
from syncplane.integrations.errors import AuthenticationError, IntegrationError

logger = logging.getLogger("syncplane.directory")


def password_sign_in_types() -> list[str]:
    """The system types whose connector can check a person's password."""
    from syncplane.integrations.registry import registered_types

    return [system_type for system_type, connector in registered_types().items()
            if connector.supports(Capability.PASSWORD_SIGN_IN)]


class DirectoryPasswordBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if not username or not password:
            return None
        # Also asked by LockoutBackend, first in line; asked here again because every wrong bind counts towards
        # the account's lockout in Active Directory itself, which a guesser must not be able to trigger.
        if locked_out_for(request, username):
            return None
        from syncplane.directory.models import DirectoryAccount
        from syncplane.integrations.registry import build_connector

        accounts = (
            DirectoryAccount.objects.filter(
                username=username.strip().lower(), is_active=True, removed_at__isnull=True, user__isnull=False,
                user__is_active=True, external_system__system_type__in=password_sign_in_types(),
                external_system__enabled=True, external_system__archived_at__isnull=True,
            )
            .select_related("user", "external_system")
            .order_by("external_system_id")
        )
        for account in accounts:
            names = [n for n in (account.dn, account.username if "@" in account.username else "") if n]
            try:
                connector = build_connector(account.external_system)
            except IntegrationError as exc:
                logger.warning("directory sign-in: the integration cannot be used",
                               extra={"external_system_id": account.external_system_id, "error": str(exc)})
                continue
            with connector:
                for name in names:
                    try:
                        connector.check_password(name, password)
                    except AuthenticationError:
                        continue  # wrong password, or a DN that moved: try the next form
                    except IntegrationError as exc:
                        logger.warning("directory sign-in: the password could not be checked",
                                       extra={"external_system_id": account.external_system_id, "error": str(exc)})
                        break
                    if self.user_can_authenticate(account.user):
                        logger.info("directory sign-in", extra={"external_system_id": account.external_system_id,
                                                                "user_id": account.user_id})
                        return account.user
        return None

