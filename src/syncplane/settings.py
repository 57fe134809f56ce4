"""Django settings, all from environment variables with safe defaults.

The README lists every variable. The defaults run Syncplane on one machine with nothing to install:
SQLite in the data folder and a Celery broker that needs no server. Production points DATABASE_URL and
CELERY_BROKER_URL at PostgreSQL and Redis; the code path is the same.
"""

import ipaddress
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from syncplane.config import (
    demo_secret_key,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_str,
    identification_rules,
    precedence,
)

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(env_str("SYNCPLANE_DATA_DIR", str(PACKAGE_DIR.parent.parent / "var"))).resolve()

DEBUG = env_bool("SYNCPLANE_DEBUG", False)

# Production must set SECRET_KEY. The demo (SYNCPLANE_DEMO=1) generates one once and keeps it in the data
# folder, so its sessions and encrypted secrets survive a restart.
SYNCPLANE_DEMO = env_bool("SYNCPLANE_DEMO", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY and SYNCPLANE_DEMO:
    SECRET_KEY = demo_secret_key(DATA_DIR)
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: set it to a long random string (at least 32 characters), "
        "or set SYNCPLANE_DEMO=1 for the demo, which generates one."
    )
if len(SECRET_KEY) < 32 and not DEBUG:
    raise ImproperlyConfigured("SECRET_KEY is too short: use at least 32 random characters.")

ALLOWED_HOSTS = env_list("SYNCPLANE_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("SYNCPLANE_CSRF_TRUSTED_ORIGINS", [])

# Where people reach this server: the CLI prints the API address of a run under it (empty: the path alone).
SYNCPLANE_PUBLIC_URL = env_str("SYNCPLANE_PUBLIC_URL", "")

# Plain http and loopback / private addresses for outbound calls: only for the demo and tests.
SYNCPLANE_ALLOW_INSECURE_OUTBOUND = env_bool("SYNCPLANE_ALLOW_INSECURE_OUTBOUND", SYNCPLANE_DEMO)
# Tests that need PostgreSQL, Redis or slapd skip without them, unless this says they must run (CI).
SYNCPLANE_REQUIRE_SERVICES = env_bool("SYNCPLANE_REQUIRE_SERVICES", False)

# Secrets typed into the API are stored encrypted (enc:...). First key encrypts, all decrypt (rotation);
# empty means a key derived from SECRET_KEY.
SYNCPLANE_ENCRYPTION_KEYS = env_list("SYNCPLANE_ENCRYPTION_KEYS", [])
# The keys of the sync-log hash chain (HMAC-SHA256), kept out of the database so a database writer cannot forge
# a chain that verifies. First key signs, all verify (rotation); empty means a key derived from SECRET_KEY
# (and SECRET_KEY_FALLBACKS).
SYNCPLANE_EVIDENCE_KEYS = env_list("SYNCPLANE_EVIDENCE_KEYS", [])
if any(len(key) < 32 for key in SYNCPLANE_EVIDENCE_KEYS):
    raise ImproperlyConfigured("SYNCPLANE_EVIDENCE_KEYS: each key must be at least 32 random characters.")
# `syncplane flush` refuses while evidence exists; only the test settings allow it (test teardown flushes).
SYNCPLANE_ALLOW_EVIDENCE_FLUSH = False
SYNCPLANE_VAULT_ADDR = env_str("SYNCPLANE_VAULT_ADDR", "")
SYNCPLANE_VAULT_TOKEN = env_str("SYNCPLANE_VAULT_TOKEN", "env:VAULT_TOKEN")
SYNCPLANE_VAULT_MOUNT = env_str("SYNCPLANE_VAULT_MOUNT", "secret")
# Which env: and file: references an integration may be given through the API. Without a limit an admin could
# reference the server's own secrets (env:DATABASE_URL, file:/etc/...) and send them to a URL of their choice.
SYNCPLANE_SECRET_REFERENCE_ALLOW = env_list(
    "SYNCPLANE_SECRET_REFERENCE_ALLOW",
    ["env:SYNCPLANE_SECRET_*", "file:/run/secrets/*", "file:/etc/syncplane/secrets/*"],
)
# Which Vault paths vault: references may name (shell patterns; `*` also crosses `/`). The server's Vault token
# may read more than integrations need; without a limit an admin could send any of it to a URL they choose.
SYNCPLANE_VAULT_PATH_ALLOW = env_list("SYNCPLANE_VAULT_PATH_ALLOW", ["syncplane/*"])

# The schedule runs incremental syncs, and a full one (which reconciles deletions) after this many hours.
SYNCPLANE_FULL_SYNC_HOURS = env_int("SYNCPLANE_FULL_SYNC_HOURS", 24, minimum=1)
# Reconciliation: the identification rules in order, and which system's value wins per attribute.
SYNCPLANE_IDENTIFICATION_RULES = identification_rules(
    # A serial decides first (a re-enrolled machine gets a new Entra deviceId); then the Entra deviceId, which
    # joins Entra, Intune and Defender records of one machine when they carry no serial in common.
    env_list("SYNCPLANE_IDENTIFICATION_RULES", ["serial_number", "azure_ad_device_id", "mac_address", "hostname"])
)
SYNCPLANE_PRECEDENCE = precedence(env_str("SYNCPLANE_PRECEDENCE", ""))
# GET /metrics (Prometheus): a bearer token, or a client address in these networks (CIDRs; default loopback).
SYNCPLANE_METRICS_TOKEN = env_str("SYNCPLANE_METRICS_TOKEN", "")
if SYNCPLANE_METRICS_TOKEN and len(SYNCPLANE_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("SYNCPLANE_METRICS_TOKEN must be at least 16 random characters.")
SYNCPLANE_METRICS_ALLOW_NETWORKS = env_list("SYNCPLANE_METRICS_ALLOW_NETWORKS", ["127.0.0.1/32", "::1/128"])
for _network in SYNCPLANE_METRICS_ALLOW_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"SYNCPLANE_METRICS_ALLOW_NETWORKS must list networks such as 10.0.0.0/8; got {_network!r}"
        ) from None
# The largest scanner report POST /api/v1/scans/ accepts (bytes); Django streams uploads to a temporary file.
SYNCPLANE_MAX_REPORT_BYTES = env_int("SYNCPLANE_MAX_REPORT_BYTES", 1024**3, minimum=1024)
# Liveness: a running sync beats (a thread of its worker updates heartbeat_at) every HEARTBEAT_SECONDS, whether it
# waits or works. Missing DEAD_AFTER beats in a row, it is taken as dead (its worker was killed or cut off): the
# beat job `requeue_lost_syncs` then fails that attempt and queues a new one that resumes from its checkpoint.
SYNCPLANE_HEARTBEAT_SECONDS = env_int("SYNCPLANE_HEARTBEAT_SECONDS", 10, minimum=1)
SYNCPLANE_HEARTBEAT_DEAD_AFTER = env_int("SYNCPLANE_HEARTBEAT_DEAD_AFTER", 3, minimum=2)
# A queued run that no worker has taken yet is usually waiting behind a long one, not dead (tasks survive a
# worker's death: acks late); only a task lost before it reached the broker leaves one queued for good.
SYNCPLANE_STALE_QUEUED_SECONDS = env_int("SYNCPLANE_STALE_QUEUED_SECONDS", 6 * 3600, minimum=60)
# Delivered events are deleted from the outbox this many days after delivery (0 keeps them): each sync writes one
# per sink, so they would otherwise grow without end. Change requests' messages are kept: they are the CAB's evidence.
SYNCPLANE_DELIVERED_EVENTS_KEEP_DAYS = env_int("SYNCPLANE_DELIVERED_EVENTS_KEEP_DAYS", 7, minimum=0)
# A sync task running longer than this is stopped (Celery's soft time limit): its run fails with "stopped after
# the time limit of N s", keeps its checkpoint, and the worker is free again. The hard limit kills the worker
# process of a task that could not be stopped (a call that never returns to Python).
SYNCPLANE_SYNC_TIME_LIMIT_SECONDS = env_int("SYNCPLANE_SYNC_TIME_LIMIT_SECONDS", 4 * 3600, minimum=60)
SYNCPLANE_SYNC_HARD_TIME_LIMIT_SECONDS = env_int(
    "SYNCPLANE_SYNC_HARD_TIME_LIMIT_SECONDS", SYNCPLANE_SYNC_TIME_LIMIT_SECONDS + 300, minimum=60
)
if SYNCPLANE_SYNC_HARD_TIME_LIMIT_SECONDS <= SYNCPLANE_SYNC_TIME_LIMIT_SECONDS:
    raise ImproperlyConfigured(
        "SYNCPLANE_SYNC_HARD_TIME_LIMIT_SECONDS must be longer than SYNCPLANE_SYNC_TIME_LIMIT_SECONDS "
        f"({SYNCPLANE_SYNC_HARD_TIME_LIMIT_SECONDS} <= {SYNCPLANE_SYNC_TIME_LIMIT_SECONDS})"
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "syncplane.core",
    "syncplane.integrations",
    "syncplane.inventory",
    "syncplane.directory",
    "syncplane.changes",
    "syncplane.findings",
    "django_htmx",
    "syncplane.web",
]
# demo, bench and simulate: developer tools, with the simulators they drive; never part of a production install.
SYNCPLANE_DEVTOOLS = env_bool("SYNCPLANE_DEVTOOLS", SYNCPLANE_DEMO)
if SYNCPLANE_DEVTOOLS:
    INSTALLED_APPS.append("syncplane.devtools")

MIDDLEWARE = [
    "syncplane.core.middleware.CorrelationIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "syncplane.urls"
WSGI_APPLICATION = "syncplane.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "syncplane.web.context_processors.web",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database() -> dict:
    url = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'syncplane.sqlite3'}")
    try:
        # Health checks: a kept connection that a database restart broke is replaced before a request uses it.
        config = dj_database_url.parse(url, conn_max_age=env_int("SYNCPLANE_DB_CONN_MAX_AGE", 60),
                                       conn_health_checks=True)
    except Exception as exc:  # dj-database-url raises several types for a bad URL
        raise ImproperlyConfigured(f"DATABASE_URL is not a usable database URL: {exc}") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["CONN_MAX_AGE"] = 0
        # WAL lets the web server read while the worker writes; IMMEDIATE takes the write lock up front so
        # two writers queue on the busy timeout instead of failing with "database is locked". A 64 MB page
        # cache and rarer WAL checkpoints cut a bulk sync's write time by a quarter (docs/performance.md).
        config["OPTIONS"] = {
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536; "
                "PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=16384;"
            ),
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    elif config["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must be a sqlite:// or postgres:// URL.")
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Local users first; a user synced from Active Directory (unusable local password) signs in by a bind to
# their domain controller (syncplane/directory/backends.py).
AUTHENTICATION_BACKENDS = [
    "syncplane.core.auth.LockoutBackend",  # first: refuses a locked-out name or address for every backend
    "django.contrib.auth.backends.ModelBackend",
    "syncplane.directory.backends.DirectoryPasswordBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # also creates the data folder, where SQLite lives
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files straight from the apps, so the demo needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGIN_URL = "web:login"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SYNCPLANE_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate header is what makes DRF answer anonymous callers 401, not 403.
        "syncplane.core.auth.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["syncplane.core.permissions.RolePermission"],
    # JSON with a nesting limit: a body of a few thousand brackets is a 400, not a RecursionError.
    "DEFAULT_PARSER_CLASSES": [
        "syncplane.core.api.DepthLimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "syncplane.core.api.UnknownQueryParametersFilter",  # first: a misspelt filter is a 400
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "syncplane.core.api.StrictLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "syncplane.core.schema.SyncplaneAutoSchema",
    "EXCEPTION_HANDLER": "syncplane.core.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # How many proxies in front of the server add to X-Forwarded-For; 0 trusts none of it, so a client cannot
    # pick the address that sign-in throttles and lockouts count against.
    "NUM_PROXIES": env_int("SYNCPLANE_NUM_PROXIES", 0, minimum=0),
}

# Sign-in (syncplane/core/auth.py): API tokens expire this long after they are issued; the token endpoint is
# throttled per address and per user name; repeated failures lock a user name (or an address) out for a while.
SYNCPLANE_TOKEN_TTL_HOURS = env_int("SYNCPLANE_TOKEN_TTL_HOURS", 24, minimum=1)
SYNCPLANE_LOGIN_RATE = env_str("SYNCPLANE_LOGIN_RATE", "20/min")
if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", SYNCPLANE_LOGIN_RATE):
    raise ImproperlyConfigured(f"SYNCPLANE_LOGIN_RATE must look like 20/min (per s, min, hour or day); "
                               f"got {SYNCPLANE_LOGIN_RATE!r}")
SYNCPLANE_LOGIN_MAX_FAILURES = env_int("SYNCPLANE_LOGIN_MAX_FAILURES", 10, minimum=1)
SYNCPLANE_LOGIN_MAX_FAILURES_PER_ADDRESS = env_int("SYNCPLANE_LOGIN_MAX_FAILURES_PER_ADDRESS", 50, minimum=1)
SYNCPLANE_LOGIN_LOCKOUT_SECONDS = env_int("SYNCPLANE_LOGIN_LOCKOUT_SECONDS", 900, minimum=1)

# The API schema and its Swagger page: open to anyone in the demo, to signed-in users with a role elsewhere
# (syncplane/urls.py reads it on each request).
SYNCPLANE_API_DOCS_PUBLIC = env_bool("SYNCPLANE_API_DOCS_PUBLIC", SYNCPLANE_DEMO)

SPECTACULAR_SETTINGS = {
    "TITLE": "Syncplane API",
    "DESCRIPTION": "Integration hub: integrations, syncs and their evidence, the reconciled inventory.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "TAGS": [
        {"name": "Authentication", "description": "Tokens for API clients."},
        {"name": "Integrations", "description": "Connections to external systems, their syncs, evidence, health "
                                                "and the outbox of what Syncplane sends out."},
        {"name": "Inventory", "description": "The reconciled assets and where each value came from."},
        {"name": "Directory", "description": "Users and groups as the identity syncs left them."},
        {"name": "Changes", "description": "Change requests for the CAB and the ITSM tools' webhooks."},
        {"name": "Findings", "description": "Vulnerabilities on assets, images and repositories; scanner uploads."},
    ],
    # state, from_state and to_state of changes share one choice set: one schema enum, one name.
    "ENUM_NAME_OVERRIDES": {
        "ChangeStateEnum": "syncplane.changes.choices.ChangeState",
        "RunStatusEnum": "syncplane.integrations.choices.RunStatus",
        "RecordStatusEnum": "syncplane.integrations.choices.RecordStatus",
        "AssetStatusEnum": "syncplane.integrations.records.AssetStatus",
        "FindingStateEnum": "syncplane.integrations.records.FindingState",
        "SeverityEnum": "syncplane.integrations.records.Severity",
    },
}

# Celery. The default broker is kombu's filesystem transport: durable, shared between processes through a
# folder, no server to run. Production sets CELERY_BROKER_URL=redis://...
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = DATA_DIR / "broker"
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # kombu's default is ./control, wherever that is
        "store_processed": False,
    }
elif not CELERY_BROKER_URL.startswith(("redis://", "rediss://", "amqp://", "amqps://", "memory://")):
    raise ImproperlyConfigured("CELERY_BROKER_URL must be filesystem://, redis://, rediss:// or amqp://.")
# Redis hands a task that was taken but not acknowledged (acks late: until it ends) to another worker after this
# long. Longer than the longest sync (its hard time limit), so a running sync's task is not delivered again.
SYNCPLANE_BROKER_VISIBILITY_TIMEOUT = env_int(
    "SYNCPLANE_BROKER_VISIBILITY_TIMEOUT", SYNCPLANE_SYNC_HARD_TIME_LIMIT_SECONDS + 600, minimum=60
)
if SYNCPLANE_BROKER_VISIBILITY_TIMEOUT <= SYNCPLANE_SYNC_HARD_TIME_LIMIT_SECONDS:
    raise ImproperlyConfigured(
        "SYNCPLANE_BROKER_VISIBILITY_TIMEOUT must be longer than SYNCPLANE_SYNC_HARD_TIME_LIMIT_SECONDS "
        f"({SYNCPLANE_BROKER_VISIBILITY_TIMEOUT} <= {SYNCPLANE_SYNC_HARD_TIME_LIMIT_SECONDS})"
    )
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": SYNCPLANE_BROKER_VISIBILITY_TIMEOUT}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = "integrations"
CELERY_TASK_ROUTES = {"syncplane.integrations.tasks.*": {"queue": "integrations"}}
CELERY_TASK_ACKS_LATE = True  # a task whose worker dies is delivered again; the engine resumes it
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("SYNCPLANE_CELERY_EAGER", False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    # Re-sends pending outbox messages that are due: retries, and work a dead worker left behind.
    "deliver-due-outbox-messages": {
        "task": "syncplane.changes.tasks.deliver_due_outbox_messages",
        "schedule": 60.0,
        "options": {"queue": "integrations"},
    },
    # Queues each integration whose own sync_interval_minutes has passed; ITSM polls default to 5 minutes.
    "sync-all-integrations": {
        "task": "syncplane.integrations.tasks.sync_all_integrations",
        "schedule": 5 * 60.0,
        "options": {"queue": "integrations"},
    },
}
CELERY_BEAT_SCHEDULE["requeue-lost-syncs"] = {
    # Finds running syncs whose heartbeat died with their worker and queues a new attempt from the checkpoint.
    "task": "syncplane.integrations.tasks.requeue_lost_syncs",
    "schedule": 20.0,
    "options": {"queue": "integrations"},
}
CELERY_BEAT_SCHEDULE["prune-delivered-events"] = {
    # Deletes delivered events older than SYNCPLANE_DELIVERED_EVENTS_KEEP_DAYS, a few thousand rows a statement.
    "task": "syncplane.integrations.tasks.prune_delivered_events",
    "schedule": 3600.0,
    "options": {"queue": "integrations"},
}
CELERY_BEAT_SCHEDULE["send-metrics-to-sinks"] = {
    # The figures of /metrics, to every monitoring sink that takes metrics (Datadog).
    "task": "syncplane.integrations.tasks.send_metrics_to_sinks",
    "schedule": 60.0,
    "options": {"queue": "integrations"},
}
CELERY_TIMEZONE = TIME_ZONE


def _cache(url: str) -> dict:
    if url.startswith(("redis://", "rediss://")):
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    if url == "db://":
        return {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "syncplane_cache"}
    if url == "locmem://":
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    raise ImproperlyConfigured("SYNCPLANE_CACHE_URL must be redis://..., rediss://..., db:// or locmem://.")


# The cache holds sign-in throttles and lockout counters, so it must be shared by every web process: Redis
# (the broker's, by default, when the broker is Redis), or db:// (run `syncplane createcachetable` once).
# locmem:// is per process: right for one process (the demo), weaker with several (each counts alone).
SYNCPLANE_CACHE_URL = env_str(
    "SYNCPLANE_CACHE_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "locmem://"
)
CACHES = {"default": {**_cache(SYNCPLANE_CACHE_URL), "KEY_PREFIX": "syncplane"}}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

LOG_FORMAT = env_choice("SYNCPLANE_LOG_FORMAT", "json", ("json", "console"))
LOG_LEVEL = env_choice("SYNCPLANE_LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOGGING_CONFIG = None  # configured by syncplane.core.logging, once, in every process

from syncplane.core.logging import configure_logging  # noqa: E402

configure_logging(LOG_FORMAT, LOG_LEVEL)
