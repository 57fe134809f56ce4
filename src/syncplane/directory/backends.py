"""Sign in with an Active Directory password, checked by the directory itself.

Syncplane never receives nor stores directory passwords (synced users get an unusable one). This backend
lets such a user sign in (web login, `POST /api/v1/auth/token/`) by binding to their integration's domain
controller with the password they typed: the bind succeeding is the proof. Only users with a live, enabled
DirectoryAccount on an enabled Active Directory integration qualify; any bind failure (wrong password, locked
or disabled account, DC unreachable, TLS problem) simply fails this login — the reason goes to the log, never
to the person signing in, and never with the password.

The bind uses the account's DN from the last sync (accepted by AD and OpenLDAP alike), then, if the DN moved
since, the UPN (AD only). An empty password is refused before anything is sent: LDAP treats a simple bind
with a DN and no password as an *unauthenticated* bind, which succeeds (RFC 4513 5.1.2).
"""

from __future__ import annotations

import logging

from django.contrib.auth.backends import ModelBackend

from syncplane.integrations.choices import SystemType
from syncplane.integrations.errors import AuthenticationError, IntegrationError

logger = logging.getLogger("syncplane.directory")


class ActiveDirectoryBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if not username or not password:
            return None
        from syncplane.directory.models import DirectoryAccount
        from syncplane.integrations.registry import build_connector

        accounts = (
            DirectoryAccount.objects.filter(
                username=username.strip().lower(), is_active=True, removed_at__isnull=True, user__isnull=False,
                user__is_active=True, external_system__system_type=SystemType.ACTIVE_DIRECTORY,
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
            for name in names:
                try:
                    connector.connect(user=name, password=password).unbind()
                except AuthenticationError:
                    continue  # wrong password, or a DN that moved: try the next form
                except IntegrationError as exc:
                    logger.warning("directory sign-in: bind failed",
                                   extra={"external_system_id": account.external_system_id, "error": str(exc)})
                    break
                if self.user_can_authenticate(account.user):
                    logger.info("directory sign-in", extra={"external_system_id": account.external_system_id,
                                                            "user_id": account.user_id})
                    return account.user
        return None
