"""HashiCorp Vault simulator: the KV version 2 engine, as far as `vault:path#key` credential references need.

Real paths: `GET /v1/{mount}/data/{path}` (read, `?version=n` optional), `POST|PUT /v1/{mount}/data/{path}`
(write), `GET /v1/auth/token/lookup-self`, `GET /v1/sys/health`. The token travels in `X-Vault-Token` (or
`Authorization: Bearer`). Answers are shaped like Vault's, so the real `hvac` client works against it:
a bad token is 403 `{"errors": ["permission denied"]}`, a missing secret 404 `{"errors": []}`.
"""

from __future__ import annotations

import hmac
import re
import threading
import uuid
from datetime import UTC, datetime

from werkzeug.wrappers import Request, Response

from .base import FaultInjector, SimulatorApp, Stats, json_response, read_json

DEFAULT_TOKEN = "root-token-for-tests"

_DATA_PATH = re.compile(r"/v1/(?P<mount>[^/]+)/data/(?P<path>.+)")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class VaultSimulator(SimulatorApp):
    """A WSGI app; mount it under a prefix (`/vault`): hvac's `url` is then `http://host:port/vault`."""

    def __init__(self, token: str = DEFAULT_TOKEN):
        self.token = token
        self.faults = FaultInjector()
        self.stats = Stats()
        self._lock = threading.Lock()
        # (mount, path) -> versions, oldest first: [(data, created_time)]
        self._secrets: dict[tuple[str, str], list[tuple[dict, str]]] = {}

    # ------------------------------------------------------------------ Python control

    def put(self, path: str, data: dict, mount: str = "secret") -> int:
        """Write a new version of a secret; returns its version number (1 for a new secret)."""
        if not isinstance(data, dict):
            raise ValueError("secret data must be a JSON object")
        with self._lock:
            versions = self._secrets.setdefault((mount.strip("/"), path.strip("/")), [])
            versions.append((dict(data), _now()))
            return len(versions)

    def get(self, path: str, mount: str = "secret") -> dict | None:
        with self._lock:
            versions = self._secrets.get((mount.strip("/"), path.strip("/")))
            return dict(versions[-1][0]) if versions else None

    def delete(self, path: str, mount: str = "secret") -> None:
        with self._lock:
            self._secrets.pop((mount.strip("/"), path.strip("/")), None)

    def reset(self) -> None:
        with self._lock:
            self._secrets.clear()
        self.faults.clear()
        self.stats.reset()

    def inject_fault(self, kind: str = "status", **options):
        """E.g. `inject_fault("status", status=503)` (a sealed Vault), `inject_fault("slow", delay=2)`."""
        return self.faults.add(kind, **options)

    def clear_faults(self) -> None:
        self.faults.clear()

    # ------------------------------------------------------------------ HTTP

    def fault_response(self, fault) -> Response:
        return json_response({"errors": [f"simulated failure ({fault.status})"]}, fault.status)

    def serve(self, request: Request) -> Response:
        path = request.path
        if path == "/v1/sys/health":
            return json_response({"initialized": True, "sealed": False, "standby": False, "version": "1.15.6"})
        if not self._authorised(request):
            self.stats.incr("auth_failures")
            return json_response({"errors": ["permission denied"]}, 403)
        if path == "/v1/auth/token/lookup-self":
            return self._envelope({"id": self.token, "policies": ["root"], "ttl": 0, "renewable": False})
        match = _DATA_PATH.fullmatch(path)
        if match is None:
            route = path.removeprefix("/v1/")
            return json_response({"errors": [f'no handler for route "{route}". route entry not found.']}, 404)
        mount, secret_path = match["mount"], match["path"].strip("/")
        if request.method == "GET":
            return self._read(mount, secret_path, request.args.get("version"))
        if request.method in ("POST", "PUT"):
            try:
                body = read_json(request)
                version = self.put(secret_path, body.get("data"), mount)
            except ValueError as exc:
                return json_response({"errors": [str(exc)]}, 400)
            return self._envelope(self._metadata(mount, secret_path, version))
        return json_response({"errors": [f"unsupported operation {request.method}"]}, 405)

    def _authorised(self, request: Request) -> bool:
        token = request.headers.get("X-Vault-Token")
        if token is None and request.headers.get("Authorization", "").startswith("Bearer "):
            token = request.headers["Authorization"][len("Bearer ") :]
        return token is not None and hmac.compare_digest(token.encode(), self.token.encode())

    def _read(self, mount: str, path: str, version: str | None) -> Response:
        self.stats.incr("reads")
        with self._lock:
            versions = self._secrets.get((mount, path))
            if not versions:
                return json_response({"errors": []}, 404)
            number = len(versions)
            if version not in (None, "", "0"):
                try:
                    number = int(version)
                except ValueError:
                    return json_response({"errors": ["invalid version"]}, 400)
                if not 1 <= number <= len(versions):
                    return json_response({"errors": []}, 404)
            data = dict(versions[number - 1][0])
        return self._envelope({"data": data, "metadata": self._metadata(mount, path, number)})

    def _metadata(self, mount: str, path: str, version: int) -> dict:
        with self._lock:
            created = self._secrets[(mount, path)][version - 1][1]
        return {
            "created_time": created,
            "custom_metadata": None,
            "deletion_time": "",
            "destroyed": False,
            "version": version,
        }

    @staticmethod
    def _envelope(data: dict) -> Response:
        return json_response(
            {
                "request_id": str(uuid.uuid4()),
                "lease_id": "",
                "renewable": False,
                "lease_duration": 0,
                "data": data,
                "wrap_info": None,
                "warnings": None,
                "auth": None,
                "mount_type": "kv",
            }
        )

    def control(self, request: Request, action: str) -> Response:
        try:
            spec = read_json(request) if request.method in ("POST", "PUT") else {}
            if action == "secrets" and request.method == "POST":
                version = self.put(spec["path"], spec.get("data", {}), spec.get("mount", "secret"))
                return json_response({"path": spec["path"], "version": version}, 201)
            if action == "faults" and request.method == "POST":
                return json_response(self.faults.add_from_json(spec).as_dict(), 201)
            if action == "faults" and request.method == "DELETE":
                self.clear_faults()
                return json_response({"faults": []})
            if action == "reset" and request.method == "POST":
                self.reset()
                return json_response({"reset": True})
            if action == "state" and request.method == "GET":
                with self._lock:
                    secrets = sorted(f"{mount}/{path}" for mount, path in self._secrets)
                return json_response({"secrets": secrets, "stats": self.stats.as_dict()})
        except (KeyError, ValueError, TypeError) as exc:
            return json_response({"error": f"bad control request: {exc}"}, 400)
        return json_response({"error": f"unknown control action {request.method} {action!r}"}, 404)
