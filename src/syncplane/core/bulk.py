"""Set-based writes straight through the database driver.

Django's bulk_update builds CASE expressions and runs at about 1k rows/s here; executemany on the driver is
two orders of magnitude faster (see docs/performance.md). These helpers keep that path small and typed:
values are adapted per column type once, by the same rules Django uses.

On PostgreSQL a batch goes through COPY instead (psycopg 3's `cursor.copy()`): inserts straight into the table,
updates into a temporary staging table and then one `UPDATE ... FROM` it. Django's executemany there formats
every row into its own statement on the client; COPY streams the rows in a few large messages, and the server
parses them while Python prepares the next batch. Small batches keep executemany (a staging table costs about
as much as a few rows).
"""

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC

import orjson
from django.db import connection, models, transaction

NUL = "\x00"
_NUL_IN_JSON = b"\\u0000"  # may also be a literal backslash-u0000 text: the walk then changes nothing
SQLITE_MAX_PARAMETERS = 32766  # SQLite's default SQLITE_MAX_VARIABLE_NUMBER since 3.32
COPY_FROM_ROWS = 50  # on PostgreSQL, batches of at least this many rows go through COPY (measured break-even)


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
        # JSON text on both: SQLite stores it as it is; on PostgreSQL COPY hands it to jsonb's input function, and
        # the statements cast it (`%s::jsonb`), so the driver never wraps or encodes it a second time.
        return lambda value: None if value is None else _json_text(value)
    return None  # the driver takes the value as it is


def _json_text(value) -> str:
    text = orjson.dumps(value)
    # PostgreSQL's jsonb refuses "\u0000" (a vendor's stray NUL in a raw payload): the NUL goes, on both databases
    # alike. Looking for it in text just made costs next to nothing; the walk runs only when one is there.
    if _NUL_IN_JSON in text:
        text = orjson.dumps(without_nul(value))
    return text.decode()


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
    """One model's table, for bulk inserts and updates by primary key: executemany on SQLite, COPY on PostgreSQL
    (for batches of COPY_FROM_ROWS or more). Same rows in, same rows stored, same errors (IntegrityError,
    DataError) for a batch the database refuses."""

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
        self.copy = connection.vendor == "postgresql"
        # The placeholder of each column: JSON arrives as text, which PostgreSQL must be told is jsonb.
        self.marks = ["%s::jsonb" if self.copy and isinstance(f, models.JSONField) else "%s" for f in self.fields]
        # One staging table per (table, columns) and transaction: a name of its own, so two Tables updating
        # other columns of one model never share it.
        digest = hashlib.blake2b(" ".join([self.table, *self.columns]).encode(), digest_size=6).hexdigest()
        self.staging = quote(f"staging_{model._meta.db_table[:40]}_{digest}")

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
        if self.copy and len(rows) >= COPY_FROM_ROWS:
            with connection.cursor() as cursor:
                _copy_rows(cursor, self.table, self.columns, rows)
            return
        marks = f"({', '.join(self.marks)})"
        into = f"INSERT INTO {self.table} ({', '.join(self.columns)}) VALUES "  # noqa: S608 - names from metadata
        with connection.cursor() as cursor:
            if self.copy:  # a small batch on PostgreSQL
                # Table and column names come from model metadata, never from input; values are parameters.
                cursor.executemany(into + marks, rows)
                return
            # SQLite: one multi-row INSERT per slice, not executemany. The driver then steps SQLite once a slice
            # instead of once a row, and releases the GIL for the whole slice, so a page written in the
            # write-behind thread overlaps the mapping of the next instead of queueing on the GIL row by row.
            per_statement = max(1, SQLITE_MAX_PARAMETERS // len(self.columns))
            for part in chunks(rows, per_statement):
                cursor.execute(into + ", ".join([marks] * len(part)),  # noqa: S608 - placeholders only
                               [value for row in part for value in row])

    def update_by_pk(self, rows: Iterable[tuple]) -> None:
        """rows are (pk, value, value, ...) in column order."""
        prepared = [[*self.adapt(row[1:]), self.pk_adapter(row[0])] for row in rows]
        if not prepared:
            return
        if self.copy and len(prepared) >= COPY_FROM_ROWS:
            self._update_from_staging(prepared)
            return
        assignments = ", ".join(f"{column} = {mark}" for column, mark in zip(self.columns, self.marks, strict=True))
        sql = f"UPDATE {self.table} SET {assignments} WHERE {self.pk_column} = %s"  # noqa: S608
        with connection.cursor() as cursor:
            cursor.executemany(sql, prepared)

    def _update_from_staging(self, prepared: list[list]) -> None:
        """PostgreSQL: the rows COPYed into a temporary table of the same column types (dropped at commit),
        then one UPDATE joining it by primary key. A primary key given twice updates once, with one of its rows
        (executemany's last-wins order is not kept: no caller sends a key twice)."""
        columns = [*self.columns, self.pk_column]
        assignments = ", ".join(f"{column} = staged.{column}" for column in self.columns)
        # Names from model metadata only; values travel through COPY.
        with transaction.atomic(savepoint=False), connection.cursor() as cursor:
            cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.staging} ON COMMIT DROP AS "  # noqa: S608
                           f"SELECT {', '.join(columns)} FROM {self.table} WITH NO DATA")
            cursor.execute(f"TRUNCATE {self.staging}")
            _copy_rows(cursor, self.staging, columns, prepared)
            cursor.execute(f"UPDATE {self.table} SET {assignments} FROM {self.staging} AS staged "  # noqa: S608
                           f"WHERE {self.table}.{self.pk_column} = staged.{self.pk_column}")


def _copy_rows(cursor, table: str, columns: Sequence[str], rows: list) -> None:
    """COPY the rows into the table (PostgreSQL, psycopg 3), with the driver's errors turned into Django's
    (IntegrityError, DataError), as executemany's are."""
    with connection.wrap_database_errors, \
            cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:  # noqa: S608
        write = copy.write_row
        for row in rows:
            write(row)


def chunks(items: Sequence, size: int = 500):
    """SQLite and PostgreSQL both cap parameters per statement; IN lists go in slices of this size."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- what the database accepts --------------------------------------------------------------------------------
# PostgreSQL refuses a NUL character in text and in jsonb ("\\u0000"), and a value longer than its varchar, with a
# DataError that fails the whole statement; SQLite stores both silently. So JSON columns lose their NULs as they
# are written (above), and the sinks check each record's text against the columns it is written to (`misfits`)
# before anything is written: one bad vendor record then fails alone, the same way on both databases.


def without_nul(value):
    """The value with every NUL removed from its strings, at any depth, dict keys included."""
    if isinstance(value, str):
        return value.replace(NUL, "")
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(without_nul(item) for item in value)
    return value


def max_lengths(model: type[models.Model], names: Iterable[str]) -> dict[str, int]:
    """name -> max_length of those of the model's fields that have one: the limits a sink checks records
    against, computed once."""
    fields = (model._meta.get_field(name) for name in names)
    return {field.name: field.max_length for field in fields if getattr(field, "max_length", None)}


def misfits(values: dict, limits: Mapping[str, int | None]) -> list[str]:
    """What keeps the text values named in `limits` out of their columns, one phrase each: not text, or longer
    than the column (a limit of None: any length, the writer cuts it). A NUL is no reason: it is removed (in
    `values`, in place)."""
    problems = []
    get = values.get
    for name, limit in limits.items():
        value = get(name)
        # The common case first, in one test: this runs for every text value of every record.
        if value is None or (type(value) is str and (limit is None or len(value) <= limit) and NUL not in value):
            continue
        if not isinstance(value, str):
            problems.append(f"{name} must be text, not {type(value).__name__}")
            continue
        if NUL in value:
            value = values[name] = value.replace(NUL, "")
        if limit is not None and len(value) > limit:
            problems.append(f"{name} is {len(value)} characters long, more than the {limit} its column holds")
    return problems
