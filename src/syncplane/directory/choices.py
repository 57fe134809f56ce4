from django.db import models


class DirectoryKind(models.TextChoices):
    """The kinds of record an identity connector yields (`kind` in integrations/records.py's directory shapes)."""

    USER = "user", "User"
    GROUP = "group", "Group"
    DEVICE = "device", "Device"


class MemberRef(models.TextChoices):
    """How a group names its members: Entra by object id, Active Directory by distinguished name."""

    EXTERNAL_ID = "external_id", "External id"
    DN = "dn", "Distinguished name"
