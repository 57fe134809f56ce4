"""Set-based writes straight through the database driver.

Django's bulk_update builds CASE expressions and runs at about 1k rows/s here; executemany on the driver is
two orders of magnitude faster (see docs/performance.md). These helpers keep that path small and typed:
values are adapted per column type once, by the same rules Django uses.
"""

from collections.abc import Callable, Iterable, Sequence

from django.db import connection, models


def _adapter(field: models.Field) -> Callable:
    if isinstance(field, (models.UUIDField, models.ForeignKey, models.DateTimeField, models.JSONField)):
        target = field.target_field if isinstance(field, models.ForeignKey) else field
        if isinstance(target, (models.UUIDField, models.DateTimeField, models.JSONField)):

            def adapt(value, _field=target):
                return None if value is None else _field.get_db_prep_save(value, connection)

            return adapt
    return lambda value: value


class Table:
    """One model's table, for executemany inserts and updates by primary key."""

    def __init__(self, model: type[models.Model], columns: Sequence[str]):
        self.model = model
        self.fields = [model._meta.get_field(name) for name in columns]
        self.adapters = [_adapter(f) for f in self.fields]
        quote = connection.ops.quote_name
        self.table = quote(model._meta.db_table)
        self.columns = [quote(f.column) for f in self.fields]
        self.pk_column = quote(model._meta.pk.column)
        self.pk_adapter = _adapter(model._meta.pk)

    def adapt(self, row: Sequence) -> list:
        return [adapt(value) for adapt, value in zip(self.adapters, row, strict=True)]

    def insert(self, rows: Iterable[Sequence]) -> None:
        rows = [self.adapt(row) for row in rows]
        if not rows:
            return
        marks = ", ".join(["%s"] * len(self.columns))
        # Table and column names come from model metadata, never from input; values are parameters.
        sql = f"INSERT INTO {self.table} ({', '.join(self.columns)}) VALUES ({marks})"  # noqa: S608
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)

    def update_by_pk(self, rows: Iterable[tuple]) -> None:
        """rows are (pk, value, value, ...) in column order."""
        prepared = [[*self.adapt(row[1:]), self.pk_adapter(row[0])] for row in rows]
        if not prepared:
            return
        assignments = ", ".join(f"{column} = %s" for column in self.columns)
        sql = f"UPDATE {self.table} SET {assignments} WHERE {self.pk_column} = %s"  # noqa: S608
        with connection.cursor() as cursor:
            cursor.executemany(sql, prepared)


def chunks(items: Sequence, size: int = 500):
    """SQLite and PostgreSQL both cap parameters per statement; IN lists go in slices of this size."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
