"""Install the triggers that keep finished sync evidence immutable (see syncplane.integrations.evidence)."""

from django.db import migrations

from syncplane.integrations.evidence import install_triggers, remove_triggers


def install(apps, schema_editor):
    install_triggers(schema_editor.connection)


def remove(apps, schema_editor):
    remove_triggers(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("integrations", "0001_initial")]

    operations = [migrations.RunPython(install, remove)]
