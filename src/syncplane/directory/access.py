"""Access follows the directory: group memberships into Django groups, then directory groups into roles.

Both run after every (non-dry) pass of an identity integration, in the engine's final transaction, and both
are set-based and write only the difference. Memberships named by external id (Entra ID) are resolved by the
database in two statements, in constant memory; memberships named by DN (Active Directory) are resolved in
memory, which takes that of the integration's accounts, groups and memberships (ids and DNs): tens of
megabytes for a directory of 100,000 people. The role mapping reads only the members of mapped groups.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection

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
    # member name -> user id, and -> group id (a group wins over an account of the same name); plain dicts of
    # ints, the largest structures here (one entry per account: ~200 bytes each).
    user_by_id, user_by_dn, group_by_id, group_by_dn = {}, {}, {}, {}
    accounts = DirectoryAccount.objects.filter(external_system_id=system_id, removed_at__isnull=True,
                                               user__isnull=False)
    for eid, dn, user_id in accounts.values_list("external_id", "dn", "user_id").iterator():
        user_by_id[eid] = user_id
        if dn:
            user_by_dn[_dn_key(dn)] = user_id
    groups = DirectoryGroup.objects.filter(external_system_id=system_id, removed_at__isnull=True)
    ref_of = {}
    for pk, eid, dn, member_ref in groups.values_list("id", "external_id", "dn", "member_ref"):
        group_by_id[eid] = pk
        if dn:
            group_by_dn[_dn_key(dn)] = pk
        ref_of[pk] = member_ref
    users, children = defaultdict(set), defaultdict(set)
    memberships = DirectoryMembership.objects.filter(group_id__in=groups.values("id"))
    for group_id, member in memberships.values_list("group_id", "member").iterator():
        by_dn = ref_of.get(group_id) == MemberRef.DN
        child = (group_by_dn if by_dn else group_by_id).get(member)
        if child is not None:
            children[group_id].add(child)
            continue
        user_id = (user_by_dn if by_dn else user_by_id).get(member)
        if user_id is not None:
            users[group_id].add(user_id)
    del user_by_id, user_by_dn, group_by_id, group_by_dn
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


# The wanted (user, Django group) pairs of an integration whose groups name members by external id, computed by
# the database: direct user members (a name that is a live group is a nested group, not a user), the groups
# reachable from each live group through nesting (UNION ends cycles), and their users. The same result as
# transitive_members, without holding the integration in memory. Every %s is the integration id.
_WANTED_SQL = """
WITH RECURSIVE
live AS (SELECT g.id, g.external_id FROM {dgroup} g WHERE g.external_system_id = %s AND g.removed_at IS NULL),
reach (root, grp) AS (
    SELECT id, id FROM live
    UNION
    SELECT r.root, c.id FROM reach r JOIN {membership} m ON m.group_id = r.grp JOIN live c ON c.external_id = m.member
),
wanted (user_id, group_id) AS (
    SELECT DISTINCT a.user_id, g.group_id FROM reach r
    JOIN {dgroup} g ON g.id = r.root AND g.group_id IS NOT NULL
    JOIN {membership} m ON m.group_id = r.grp
    JOIN {account} a ON a.external_system_id = %s AND a.external_id = m.member AND a.removed_at IS NULL
        AND a.user_id IS NOT NULL
    WHERE NOT EXISTS (SELECT 1 FROM live c WHERE c.external_id = m.member)
)
"""


def _sync_group_memberships_in_database(system_id: int) -> tuple[int, int]:
    """Add the missing pairs and delete the extra ones of this integration's Django groups, in two statements."""
    through = get_user_model().groups.through
    names = {"dgroup": DirectoryGroup._meta.db_table, "membership": DirectoryMembership._meta.db_table,
             "account": DirectoryAccount._meta.db_table, "through": through._meta.db_table}
    wanted = _WANTED_SQL.format(**names)
    # `WHERE true`: SQLite's parser needs a WHERE before ON CONFLICT in an INSERT ... SELECT.
    insert = wanted + """
INSERT INTO {through} (user_id, group_id)
SELECT d.user_id, d.group_id FROM (
    SELECT user_id, group_id FROM wanted EXCEPT SELECT user_id, group_id FROM {through}
) d WHERE true
ON CONFLICT DO NOTHING""".format(**names)  # noqa: S608 - table names from the models, values as parameters
    delete = wanted + """
DELETE FROM {through} WHERE id IN (
    SELECT x.id FROM {through} x WHERE x.group_id IN (
        SELECT group_id FROM {dgroup} WHERE external_system_id = %s AND group_id IS NOT NULL
    )
    EXCEPT
    SELECT x.id FROM {through} x JOIN wanted w ON w.user_id = x.user_id AND w.group_id = x.group_id
)""".format(**names)  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(insert, [system_id, system_id])
        added = cursor.rowcount
        cursor.execute(delete, [system_id, system_id, system_id])
        removed = cursor.rowcount
    return added, removed


def sync_group_memberships(system_id: int) -> None:
    """Make the Django groups of this integration's directory groups hold exactly their (transitive) members:
    add what is missing, remove what is extra. Memberships of any other group are never touched.

    Groups that name members by external id (Entra ID) are resolved by the database, whatever their size;
    groups that name them by DN (Active Directory) in memory (transitive_members), because DNs compare by
    `_dn_key`, which the database cannot spell the same way."""
    live = DirectoryGroup.objects.filter(external_system_id=system_id, removed_at__isnull=True)
    if not live.filter(member_ref=MemberRef.DN).exists():
        added, removed = _sync_group_memberships_in_database(system_id)
        if added or removed:
            logger.info("directory group memberships synced", extra={"external_system_id": system_id,
                                                                     "added": added, "removed": removed})
        return
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
    missing = sorted(wanted - set(current))
    for part in chunks(missing):  # model instances 500 at a time: all at once they would outweigh the rest
        through.objects.bulk_create([through(user_id=u, group_id=g) for u, g in part], ignore_conflicts=True)
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


def wanted_roles() -> dict[int, str]:
    """Active directory-managed user id -> the highest role its directory groups map to.

    Memberships are read from the Django groups, which sync_group_memberships keeps transitive, so a user in
    a nested group of a mapped group has the role. Deactivated users get none. Only the members of mapped
    groups are read, not every directory user."""
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
    managed = user_model.objects.filter(directory_accounts__isnull=False).values("pk")
    wanted: dict[int, str] = {}
    through = user_model.groups.through
    for part in chunks(sorted(group_role)):
        members = through.objects.filter(group_id__in=part, user__is_active=True, user_id__in=managed)
        for user_id, group_id in members.values_list("user_id", "group_id"):
            role = group_role[group_id]
            if _RANK[role] > _RANK.get(wanted.get(user_id), 0):
                wanted[user_id] = role
    return wanted


def apply_role_mapping() -> dict[str, int]:
    """Give every directory-managed user exactly the role its directory groups map to (none when no group
    maps, or when the user is deactivated). Users without a DirectoryAccount (local admins, the demo admin)
    are never touched. Returns how many role memberships were added and removed."""
    wanted = wanted_roles()
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
    extra = [pk for key, pk in current.items() if key not in wanted_pairs]  # current: directory users only
    for part in chunks(extra):
        through.objects.filter(pk__in=part).delete()
    if missing or extra:
        logger.info("directory role mapping applied", extra={"granted": len(missing), "revoked": len(extra)})
    return {"granted": len(missing), "revoked": len(extra)}
