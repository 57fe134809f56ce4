from rest_framework.views import exception_handler as drf_exception_handler

from syncplane.core.context import get_correlation_id


def exception_handler(exc, context):
    """DRF's handler, plus the correlation id in every error body so a user can quote it."""
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict):
        response.data.setdefault("correlation_id", get_correlation_id())
    return response
