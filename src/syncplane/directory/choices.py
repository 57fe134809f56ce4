from django.db import models


class RecordKind(models.TextChoices):
    """The kinds of record an identity connector yields (the directory record contract)."""

    USER = "user", "User"
    GROUP = "group", "Group"
    DEVICE = "device", "Device"


class MemberRef(models.TextChoices):
    """How a group names its members: Entra by object id, Active Directory by distinguished name."""

    EXTERNAL_ID = "external_id", "External id"
    DN = "dn", "Distinguished name"
