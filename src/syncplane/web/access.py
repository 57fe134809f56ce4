"""The web pages' roles: the same as the API's (core/roles.py). A page names the role it needs to be seen and
each action the role it needs to be done; templates hide what the user may not do (`can` in the context), and
the views refuse it anyway."""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied

from syncplane.core.roles import ADMIN, OPERATOR, VIEWER, has_role, role_of


class RoleRequiredMixin(LoginRequiredMixin):
    """Signed in (else to the login page) and at least `required_role` (else 403)."""

    required_role = VIEWER

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated and not has_role(request.user, self.required_role):
            raise PermissionDenied(f"this page needs the {self.required_role} role")
        return super().dispatch(request, *args, **kwargs)


def require_role(user, role: str) -> None:
    """For an action inside a page that any viewer may see: refuse it below `role`."""
    if not has_role(user, role):
        raise PermissionDenied(f"this action needs the {role} role")


def abilities(user) -> dict[str, bool]:
    """What the templates may offer: `can.operate` (sync, submit), `can.administer` (create, edit)."""
    return {"view": has_role(user, VIEWER), "operate": has_role(user, OPERATOR),
            "administer": has_role(user, ADMIN), "role": role_of(user) or ""}
