"""The token endpoint: `POST /api/v1/auth/token/` signs in, `DELETE` revokes the caller's token (core/auth.py)."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from syncplane.core.auth import (
    LoginAddressThrottle,
    LoginUsernameThrottle,
    clear_failures,
    locked_out_for,
    token_expires_at,
)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()


class TokenView(APIView):
    """`POST`: a token for a user name and password (throttled, with a lockout). `DELETE`: revoke your token."""

    serializer_class = AuthTokenSerializer
    # parser_classes: the project's defaults (ObtainAuthToken pins DRF's own JSON parser).

    def get_permissions(self):
        return [IsAuthenticated()] if self.request.method == "DELETE" else [AllowAny()]

    def get_throttles(self):
        if self.request.method == "POST":
            return [LoginAddressThrottle(), LoginUsernameThrottle()]
        return []

    @extend_schema(
        request=AuthTokenSerializer,
        responses={200: TokenSerializer, 400: OpenApiResponse(description="Wrong user name or password."),
                   429: OpenApiResponse(description="Too many attempts, or locked out after repeated failures; "
                                                    "Retry-After says for how long.")},
    )
    def post(self, request, *args, **kwargs):
        username = request.data.get("username") if hasattr(request.data, "get") else None
        wait = locked_out_for(request, username)
        if wait:
            return _locked_out(wait)
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        if not serializer.is_valid():
            # authenticate() has counted the failure; the lockout may have started with this very attempt.
            wait = locked_out_for(request, username)
            if wait:
                return _locked_out(wait)
            raise exceptions.ValidationError(serializer.errors)
        user = serializer.validated_data["user"]
        clear_failures(username)
        token, _created = Token.objects.get_or_create(user=user)
        if token_expires_at(token) <= timezone.now():
            token.delete()
            token = Token.objects.create(user=user)
        return Response({"token": token.key, "expires_at": token_expires_at(token)})

    @extend_schema(request=None, responses={204: None, 401: OpenApiResponse(description="Not signed in.")})
    def delete(self, request, *args, **kwargs):
        """Revoke the caller's token: requests with it fail from now on. Sign in again for a new one."""
        Token.objects.filter(user=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


def _locked_out(wait: int) -> Response:
    return Response(
        {"detail": f"Too many failed sign-ins: try again in {wait} seconds."},
        status=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(wait)},
    )
