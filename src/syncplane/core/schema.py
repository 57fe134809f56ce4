"""The OpenAPI schema class (drf-spectacular): every endpoint documents the errors it can answer."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework.settings import api_settings

from syncplane.core.api import MAX_DB_INT

VALIDATION_ERROR = OpenApiResponse(
    response={"type": "object", "additionalProperties": True},
    description="The request was refused: each key names a field or query parameter, with the reasons.",
)
NOT_FOUND = OpenApiResponse(
    response={"type": "object", "additionalProperties": True},
    description="No such object (or not one this endpoint shows).",
)


# Swagger UI groups the endpoints by the app that serves them (the order and wording of settings' TAGS).
APP_TAGS = {
    "core": "Authentication", "integrations": "Integrations", "inventory": "Inventory", "directory": "Directory",
    "changes": "Changes", "findings": "Findings",
}


class SyncplaneAutoSchema(AutoSchema):
    """drf-spectacular's schema, with the answers every endpoint can give: 400 where it takes input (a body,
    filters, paging; and every query parameter is checked) and 404 where the path names an object; each
    endpoint tagged with its app."""

    def get_tags(self):
        module = type(self.view).__module__.split(".")
        app = module[1] if len(module) > 1 and module[0] == "syncplane" else ""
        return [APP_TAGS[app]] if app in APP_TAGS else super().get_tags()

    def _get_parameters(self):
        # An id in the path is a positive database integer: say so, so no client (nor schemathesis) sends -1.
        parameters = super()._get_parameters()
        for parameter in parameters:
            schema = parameter.get("schema", {})
            if parameter.get("in") == "path" and schema.get("type") == "integer":
                schema.setdefault("minimum", 1)
                schema.setdefault("maximum", MAX_DB_INT)
        return parameters

    def _get_filter_parameters(self):
        # DRF documents search and ordering on every list; they exist only where the view has fields for them
        # (core.api.UnknownQueryParametersFilter refuses them elsewhere).
        dropped = set()
        if not getattr(self.view, "search_fields", None):
            dropped.add(api_settings.SEARCH_PARAM)
        if not getattr(self.view, "ordering_fields", None):
            dropped.add(api_settings.ORDERING_PARAM)
        return [p for p in super()._get_filter_parameters() if p["name"] not in dropped]

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        extra = {"400": VALIDATION_ERROR}
        if "{" in self.path:
            extra["404"] = NOT_FOUND
        for code, response in extra.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code, direction=direction)
        return responses
