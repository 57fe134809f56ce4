from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "syncplane.inventory"
    label = "inventory"
    verbose_name = "Inventory"

    def ready(self):
        from syncplane.integrations.choices import RecordKind
        from syncplane.integrations.sinks import register_sink
        from syncplane.inventory.sink import AssetSink

        register_sink(RecordKind.ASSET, AssetSink)
