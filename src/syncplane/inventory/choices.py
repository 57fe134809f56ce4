from django.db import models


class AssetType(models.TextChoices):
    LAPTOP = "laptop", "Laptop"
    DESKTOP = "desktop", "Desktop"
    SERVER = "server", "Server"
    VIRTUAL_MACHINE = "virtual_machine", "Virtual machine"
    MOBILE = "mobile", "Mobile"
    TABLET = "tablet", "Tablet"
    NETWORK_DEVICE = "network_device", "Network device"
    PRINTER = "printer", "Printer"
    CONTAINER_IMAGE = "container_image", "Container image"
    OTHER = "other", "Other"


class AssetStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    IN_STOCK = "in_stock", "In stock"
    IN_MAINTENANCE = "in_maintenance", "In maintenance"
    RETIRED = "retired", "Retired"
    DISPOSED = "disposed", "Disposed"
    UNKNOWN = "unknown", "Unknown"


class ComplianceState(models.TextChoices):
    COMPLIANT = "compliant", "Compliant"
    NONCOMPLIANT = "noncompliant", "Non-compliant"
    UNKNOWN = "unknown", "Unknown"
