"""What Syncplane knows of an organisation's directories, and how it maps onto django.contrib.auth.

A DirectoryAccount is one user object in one directory, linked to the one Django user it stands for (a
person in both Active Directory and Entra ID has two accounts and one user). A DirectoryGroup is one group,
shadowed by a Django group whose memberships the sync keeps equal to the directory's (nesting expanded).
DirectoryMembership holds the directory's own member list as the directory names the members (object id or
DN), so members may arrive before the objects they name and nesting can be resolved after the whole pass.
"""

from django.conf import settings
from django.db import models

from syncplane.core.models import UUIDModel
from syncplane.directory.choices import MemberRef


class DirectoryAccount(UUIDModel):
    external_system = models.ForeignKey(
        "integrations.ExternalSystem", on_delete=models.PROTECT, related_name="directory_accounts",
        verbose_name="integration",
    )
    external_id = models.CharField(
        max_length=255, verbose_name="external id",
        help_text="The object's id in the directory: Entra object id, or AD objectGUID (lower-case GUID).",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
        related_name="directory_accounts", verbose_name="user",
        help_text="The Syncplane user this account signs in as. Empty when the user name belongs to a local "
        "(non-directory) user, which a directory is never allowed to take over.",
    )
    username = models.CharField(
        max_length=150, blank=True, verbose_name="user name",
        help_text="Lower-cased userPrincipalName, else sAMAccountName.",
    )
    dn = models.CharField(max_length=1000, blank=True, verbose_name="distinguished name",
                          help_text="The account's DN (Active Directory); empty for Entra ID.")
    is_active = models.BooleanField(default=True, verbose_name="enabled in the directory",
                                    help_text="False when the directory disables the account.")
    attributes = models.JSONField(default=dict, verbose_name="attributes",
                                  help_text="The mapped directory record, merged over incremental syncs.")
    fingerprint = models.CharField(max_length=32, verbose_name="fingerprint",
                                   help_text="Hash of the mapped attributes: unchanged = equal.")
    first_seen_at = models.DateTimeField(verbose_name="first seen at")
    last_seen_at = models.DateTimeField(verbose_name="last seen at", help_text="When a sync last read it.")
    removed_at = models.DateTimeField(
        null=True, blank=True, verbose_name="removed at",
        help_text="When the directory said the account is gone (or a complete full sync no longer found it).",
    )

    class Meta:
        verbose_name = "directory account"
        constraints = [
            models.UniqueConstraint(fields=["external_system", "external_id"], name="unique_directory_account")
        ]
        ordering = ["username", "id"]

    def __str__(self):
        return self.username or self.external_id


class DirectoryGroup(UUIDModel):
    external_system = models.ForeignKey(
        "integrations.ExternalSystem", on_delete=models.PROTECT, related_name="directory_groups",
        verbose_name="integration",
    )
    external_id = models.CharField(max_length=255, verbose_name="external id",
                                   help_text="The group's id in the directory (object id / objectGUID).")
    name = models.CharField(max_length=255, blank=True, verbose_name="name",
                            help_text="displayName (Entra) or cn (AD); what the role mapping matches.")
    dn = models.CharField(max_length=1000, blank=True, verbose_name="distinguished name",
                          help_text="The group's DN (Active Directory); empty for Entra ID.")
    member_ref = models.CharField(max_length=20, choices=MemberRef.choices, default=MemberRef.EXTERNAL_ID,
                                  verbose_name="members named by",
                                  help_text="Whether the directory names members by external id or by DN.")
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.PROTECT, related_name="directory_groups",
        verbose_name="Django group",
        help_text="The Syncplane group that mirrors it, named '<integration id>:<group name>' so it never "
        "collides with the role groups admin, operator and viewer.",
    )
    attributes = models.JSONField(default=dict, verbose_name="attributes",
                                  help_text="The mapped directory record (without members), merged.")
    fingerprint = models.CharField(max_length=32, verbose_name="fingerprint")
    first_seen_at = models.DateTimeField(verbose_name="first seen at")
    last_seen_at = models.DateTimeField(verbose_name="last seen at")
    removed_at = models.DateTimeField(null=True, blank=True, verbose_name="removed at",
                                      help_text="When the directory said the group is gone; its members are "
                                      "removed, the Django group is kept (empty).")

    class Meta:
        verbose_name = "directory group"
        constraints = [
            models.UniqueConstraint(fields=["external_system", "external_id"], name="unique_directory_group")
        ]
        ordering = ["name", "id"]

    def __str__(self):
        return self.name or self.external_id


class DirectoryMembership(models.Model):
    """A direct member of a directory group, named the directory's way; resolved after each pass."""

    group = models.ForeignKey(DirectoryGroup, on_delete=models.CASCADE, related_name="memberships",
                              verbose_name="directory group")
    member = models.CharField(
        max_length=1000, verbose_name="member",
        help_text="The member's external id, or its DN lower-cased, per the group's member_ref. The member may "
        "be a user or a group (nesting), and may not have been read yet.",
    )
    last_seen_at = models.DateTimeField(verbose_name="last seen at",
                                        help_text="When a sync last saw this membership; a complete full sync "
                                        "removes the ones it did not see.")

    class Meta:
        verbose_name = "directory membership"
        constraints = [models.UniqueConstraint(fields=["group", "member"], name="unique_directory_membership")]

    def __str__(self):
        return f"{self.group_id} <- {self.member}"
