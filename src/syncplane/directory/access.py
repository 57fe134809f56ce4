"""Access follows the directory: group memberships into Django groups, then directory groups into roles.

Both run after every (non-dry) pass of an identity integration, in the engine's final transaction, and both
are set-based: they read what they need in a few queries, compute the wanted state in memory and write only
the difference. The memory they take is that of the integration's accounts, groups and memberships (ids and
DNs), which for a directory of 100,000 people is tens of megabytes.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from syncplane.core import roles
from syncplane.core.bulk import chunks
from syncplane.directory.choices import MemberRef
from syncplane.directory.models import DirectoryAccount, DirectoryGroup, DirectoryMembership
from syncplane.integrations.choices import Category
from syncplane.integrations.models import ExternalSystem

logger = logging.getLogger("syncplane.directory")

_RANK = {role: rank for rank, role in enumerate(roles.ROLES, start=1)}


def _dn_key(dn: str) -> str:
    return ",".join(part.strip() for part in dn.split(",")).lower()


def transitive_members(system_id: int) -> dict:
    """directory group id -> the Django user ids of its members, nested groups expanded (cycles tolerated).

    A member is looked up the way its group names it: by external id (Entra) or by DN (Active Directory).
    Members that name nothing Syncplane knows (a device, a service principal, an object outside the synced
    scope) are ignored; removed accounts and groups count as absent."""
    by_id, by_dn = {}, {}
    accounts = DirectoryAccount.objects.filter(external_system_id=system_id, removed_at__isnull=True,
                                               user__isnull=False)
    for eid, dn, user_id in accounts.values_list("external_id", "dn", "user_id").iterator():
        by_id[eid] = ("user", user_id)
        if dn:
            by_dn[_dn_key(dn)] = ("user", user_id)
    groups = DirectoryGroup.objects.filter(external_system_id=system_id, removed_at__isnull=True)
    ref_of = {}
    for pk, eid, dn, member_ref in groups.values_list("id", "external_id", "dn", "member_ref"):
        by_id[eid] = ("group", pk)
        if dn:
            by_dn[_dn_key(dn)] = ("group", pk)
        ref_of[pk] = member_ref
    users, children = defaultdict(set), defaultdict(set)
    memberships = DirectoryMembership.objects.filter(group_id__in=groups.values("id"))
    for group_id, member in memberships.values_list("group_id", "member").iterator():
        found = (by_dn if ref_of.get(group_id) == MemberRef.DN else by_id).get(member)
        if found is None:
            continue
        (users if found[0] == "user" else children)[group_id].add(found[1])
    expanded = {}
    for group_id in ref_of:
        seen, stack, members = {group_id}, [group_id], set()
        while stack:
            current = stack.pop()
            members |= users.get(current, set())
            for child in children.get(current, ()):
                if child not in seen:  # a cycle (A in B in A) ends here
                    seen.add(child)
                    stack.append(child)
        expanded[group_id] = members
    return expanded


def sync_group_memberships(system_id: int) -> None:
    """Make the Django groups of this integration's directory groups hold exactly their (transitive) members:
    add what is missing, remove what is extra. Memberships of any other group are never touched."""
    expanded = transitive_members(system_id)
    django_of = dict(DirectoryGroup.objects.filter(external_system_id=system_id, group__isnull=False)
                     .values_list("id", "group_id"))
    wanted = {(user_id, django_of[gid]) for gid, members in expanded.items() if gid in django_of
              for user_id in members}
    through = get_user_model().groups.through
    current = {}
    for part in chunks(sorted(set(django_of.values()))):
        current.update(((u, g), pk) for pk, u, g in through.objects.filter(group_id__in=part)
                       .values_list("pk", "user_id", "group_id"))
    missing = wanted - set(current)
    through.objects.bulk_create([through(user_id=u, group_id=g) for u, g in sorted(missing)], batch_size=500,
                                ignore_conflicts=True)
    extra = [pk for key, pk in current.items() if key not in wanted]
    for part in chunks(extra):
        through.objects.filter(pk__in=part).delete()
    if missing or extra:
        logger.info("directory group memberships synced", extra={"external_system_id": system_id,
                                                                 "added": len(missing), "removed": len(extra)})


def role_mappings() -> dict[int, dict[str, str]]:
    """integration id -> {lower-cased group name or id: role} for every live identity integration."""
    mappings = {}
    for pk, config in ExternalSystem.objects.live().filter(category=Category.IDENTITY).values_list("pk", "config"):
        mapping = (config or {}).get("role_mapping") or {}
        mappings[pk] = {str(k).lower(): v for k, v in mapping.items() if v in _RANK}
    return mappings


def wanted_roles() -> tuple[set[int], dict[int, str]]:
    """(every directory-managed user id, user id -> the highest role its directory groups map to).

    Memberships are read from the Django groups, which sync_group_memberships keeps transitive, so a user in
    a nested group of a mapped group has the role. Deactivated users get none."""
    mappings = role_mappings()
    group_role: dict[int, str] = {}
    groups = DirectoryGroup.objects.filter(external_system_id__in=list(mappings), removed_at__isnull=True,
                                           group__isnull=False)
    for system_id, name, eid, django_id in groups.values_list("external_system_id", "name", "external_id",
                                                             "group_id"):
        mapping = mappings[system_id]
        for key in (name.lower(), eid.lower()):
            role = mapping.get(key)
            if role and _RANK[role] > _RANK.get(group_role.get(django_id), 0):
                group_role[django_id] = role
    user_model = get_user_model()
    managed = user_model.objects.filter(directory_accounts__isnull=False).distinct()
    active = set()
    everyone = set()
    for pk, is_active in managed.values_list("pk", "is_active").iterator():
        everyone.add(pk)
        if is_active:
            active.add(pk)
    wanted: dict[int, str] = {}
    through = user_model.groups.through
    for part in chunks(sorted(group_role)):
        for user_id, group_id in through.objects.filter(group_id__in=part).values_list("user_id", "group_id"):
            role = group_role[group_id]
            if user_id in active and _RANK[role] > _RANK.get(wanted.get(user_id), 0):
                wanted[user_id] = role
    return everyone, wanted


def apply_role_mapping() -> dict[str, int]:
    """Give every directory-managed user exactly the role its directory groups map to (none when no group
    maps, or when the user is deactivated). Users without a DirectoryAccount (local admins, the demo admin)
    are never touched. Returns how many role memberships were added and removed."""
    everyone, wanted = wanted_roles()
    role_groups = {role: Group.objects.get_or_create(name=role)[0].pk for role in roles.ROLES}
    role_of_group = {pk: role for role, pk in role_groups.items()}
    through = get_user_model().groups.through
    current = {}
    managed = get_user_model().objects.filter(directory_accounts__isnull=False).values("pk")
    for pk, user_id, group_id in through.objects.filter(group_id__in=list(role_of_group), user_id__in=managed) \
            .values_list("pk", "user_id", "group_id"):
        current[(user_id, role_of_group[group_id])] = pk
    wanted_pairs = {(user_id, role) for user_id, role in wanted.items()}
    missing = sorted(wanted_pairs - set(current))
    through.objects.bulk_create([through(user_id=u, group_id=role_groups[r]) for u, r in missing], batch_size=500,
                                ignore_conflicts=True)
    extra = [pk for key, pk in current.items() if key not in wanted_pairs and key[0] in everyone]
    for part in chunks(extra):
        through.objects.filter(pk__in=part).delete()
    if missing or extra:
        logger.info("directory role mapping applied", extra={"granted": len(missing), "revoked": len(extra)})
    return {"granted": len(missing), "revoked": len(extra)}
