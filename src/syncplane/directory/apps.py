from django.apps import AppConfig


class DirectoryConfig(AppConfig):
    name = "syncplane.directory"
    label = "directory"
    verbose_name = "Directory"
