"""Who holds a device: the person an MDM names in `assigned_to`, linked to the Syncplane user it is.

An MDM names the person by UPN or e-mail. Directory users are Django users named by their lower-cased UPN
(the directory app), so the handle is first looked up as a user name, then as an e-mail (case-insensitive).
The inventory reads django.contrib.auth's user model only, never the directory app: domain apps stay apart.
"""

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.db.models.functions import Lower


def handle_of(assigned_to: str) -> str:
    return (assigned_to or "").strip().lower()


def assigned_users(handles: set[str]) -> dict:
    """handle -> the user it names, for a whole page of assets in one query. A user name match beats an e-mail
    match (two people may share a mailbox alias); among e-mail matches an active user beats a deactivated one,
    then the smaller user name, so the answer never depends on the database's row order."""
    handles = {handle for handle in handles if handle}
    if not handles:
        return {}
    user_model = get_user_model()
    username_field = user_model.USERNAME_FIELD
    email_field = user_model.get_email_field_name()
    candidates = (
        user_model.objects.annotate(email_key=Lower(email_field))
        .filter(Q(**{f"{username_field}__in": handles}) | Q(email_key__in=handles))
        .order_by(username_field)
    )
    by_handle: dict[str, tuple] = {}
    for user in candidates:
        for handle, rank in ((user.get_username(), 0), (user.email_key, 1 if user.is_active else 2)):
            if handle in handles and (handle not in by_handle or rank < by_handle[handle][0]):
                by_handle[handle] = (rank, user)
    return {handle: user for handle, (_rank, user) in by_handle.items()}
