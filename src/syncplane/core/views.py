from django.db import connection
from django.http import JsonResponse


def health(request):
    """Liveness for load balancers and the demo's start-up wait: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
