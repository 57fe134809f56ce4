import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syncplane.settings")

app = Celery("syncplane")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def _keep_syncplane_logging(**_):
    """Celery would replace the root logger's handlers with its own format; the settings already set up
    structured logs (JSON, with correlation ids) and the worker and beat keep them."""
