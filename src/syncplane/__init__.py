"""Syncplane: the integration hub of an IT-governance control plane."""

__version__ = "0.1.0"

# Loaded with Django so that @shared_task binds to Syncplane's Celery app.
from syncplane.celery import app as celery_app  # noqa: E402

__all__ = ["celery_app", "__version__"]
