"""Set-based writes straight through the database driver.

Django's bulk_update builds CASE expressions and runs at about 1k rows/s here; executemany on the driver is
two orders of magnitude faster (see docs/performance.md). These helpers keep that path small and typed:
values are adapted per column type once, by the same rules Django uses.
"""

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC

import orjson
from django.db import connection, models


def _adapter(field: models.Field) -> Callable | None:
    """How a Python value of this column becomes a driver parameter, by the rules Django's backend uses.

    Django's own get_db_prep_save costs ~20 us a value through its layers; these do the same for the column
    types the sync engine writes, in a fraction of that, and serialise JSON with orjson (10x the standard
    library's speed; measured in docs/performance.md).
    """
    target = field.target_field if isinstance(field, models.ForeignKey) else field
    sqlite = connection.vendor == "sqlite"
    if isinstance(target, models.UUIDField):
        # Ids read back with raw SQL are already hex text on SQLite.
        return (lambda value: value.hex if type(value) is uuid.UUID else value) if sqlite else None
    if isinstance(target, models.DateTimeField):
        return _sqlite_datetime if sqlite else None
    if isinstance(target, models.JSONField):
        if sqlite:
            return lambda value: None if value is None else orjson.dumps(value).decode()
        return _postgres_json
    return None  # the driver takes the value as it is


def _postgres_json(value):
    from psycopg.types.json import Jsonb

    return None if value is None else Jsonb(value, dumps=_orjson_text)


def _orjson_text(value) -> str:
    return orjson.dumps(value).decode()


def _sqlite_datetime(value):
    # Django stores aware datetimes in SQLite as naive UTC text; one run writes the same `now` thousands of
    # times, so remember the last conversion.
    if value is None:
        return None
    if value is not _last_datetime[0]:
        utc = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        _last_datetime[:] = [value, str(utc)]
    return _last_datetime[1]


_last_datetime = [None, None]


class Table:
    """One model's table, for executemany inserts and updates by primary key."""

    def __init__(self, model: type[models.Model], columns: Sequence[str]):
        self.model = model
        self.fields = [model._meta.get_field(name) for name in columns]
        # Only the columns that need it are adapted: this runs for every value of every row written.
        self.adapters = [(index, adapt) for index, f in enumerate(self.fields) if (adapt := _adapter(f))]
        quote = connection.ops.quote_name
        self.table = quote(model._meta.db_table)
        self.columns = [quote(f.column) for f in self.fields]
        self.pk_column = quote(model._meta.pk.column)
        self.pk_adapter = _adapter(model._meta.pk) or (lambda value: value)

    def adapt_value(self, column: str, value):
        for index, adapt in self.adapters:
            if column in (self.fields[index].name, self.fields[index].attname):
                return adapt(value)
        return value

    def adapt(self, row: Sequence) -> list:
        if len(row) != len(self.fields):
            raise ValueError(f"{len(row)} values for {len(self.fields)} columns of {self.table}")
        row = list(row)
        for index, adapt in self.adapters:
            row[index] = adapt(row[index])
        return row

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
