"""Roles: admin manages integrations, operator runs and views them, viewer reads.

A role is membership of the Django group of the same name (so directory groups can later be mapped onto
them); a superuser is an admin. Each role includes the ones below it.
"""

from django.contrib.auth.models import Group

ADMIN = "admin"
OPERATOR = "operator"
VIEWER = "viewer"

ROLES = (VIEWER, OPERATOR, ADMIN)  # in increasing order of power
_RANK = {role: rank for rank, role in enumerate(ROLES, start=1)}


def role_of(user) -> str | None:
    if not user or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return ADMIN
    cached = getattr(user, "_syncplane_role", "unset")
    if cached != "unset":
        return cached
    names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    role = max(names, key=_RANK.__getitem__) if names else None
    user._syncplane_role = role
    return role


def has_role(user, required: str) -> bool:
    role = role_of(user)
    return role is not None and _RANK[role] >= _RANK[required]


def grant_role(user, role: str) -> None:
    if role not in _RANK:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)
    user.__dict__.pop("_syncplane_role", None)
