from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "syncplane.inventory"
    label = "inventory"
    verbose_name = "Inventory"
