from django.apps import AppConfig
from django.db.models import Count


class InventoryConfig(AppConfig):
    name = "syncplane.inventory"
    label = "inventory"
    verbose_name = "Inventory"

    def ready(self):
        from syncplane.integrations.choices import RecordKind
        from syncplane.integrations.metrics import register_gauge
        from syncplane.integrations.sinks import register_sink
        from syncplane.inventory.sink import AssetSink

        register_sink(RecordKind.ASSET, AssetSink)
        register_gauge("assets", "Assets in the inventory, by status.", ("status",), assets_by_status)


def assets_by_status():
    """The inventory's gauge on /metrics (integrations/metrics.py): one grouped count."""
    from syncplane.inventory.models import Asset

    rows = Asset.objects.order_by().values("status").annotate(count=Count("id")).values_list("status", "count")
    return [((status,), count) for status, count in rows]
