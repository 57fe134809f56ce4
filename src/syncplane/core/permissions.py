from rest_framework.permissions import SAFE_METHODS, BasePermission

from syncplane.core import roles


class RolePermission(BasePermission):
    """Every API call needs a role. Reading needs viewer; a view says what writing needs.

    A view sets `write_role` (default admin) and may set `action_roles` = {"sync": "operator", ...} for
    custom actions. Anonymous callers get 401 (DRF does that when a permission fails without a user).
    """

    message = "Your role does not allow this."

    def has_permission(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return False
        return roles.has_role(request.user, self.required_role(request, view))

    @staticmethod
    def required_role(request, view) -> str:
        action_roles = getattr(view, "action_roles", {})
        action = getattr(view, "action", None)
        if action in action_roles:
            return action_roles[action]
        if request.method in SAFE_METHODS:
            return getattr(view, "read_role", roles.VIEWER)
        return getattr(view, "write_role", roles.ADMIN)
