"""Settings for the test run: the project's settings with the variables a developer would otherwise set."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-0123456789-abcdefghijklmnop")
os.environ.setdefault("SYNCPLANE_ALLOW_INSECURE_OUTBOUND", "1")
os.environ.setdefault("SYNCPLANE_LOG_FORMAT", "console")
os.environ.setdefault("SYNCPLANE_DEVTOOLS", "1")

from syncplane.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast users in tests
CELERY_TASK_ALWAYS_EAGER = True
CELERY_BROKER_URL = "memory://"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
# Transactional tests end with a flush, which production refuses while evidence exists.
SYNCPLANE_ALLOW_EVIDENCE_FLUSH = True
# Sign-in counters: a cache of this run only, whatever the environment points SYNCPLANE_CACHE_URL at.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
