"""Database triggers that guard evidence, installed the same way by every app that keeps some.

The models refuse to change evidence; triggers make the database refuse too, for raw SQL. SQLite drops a
table's triggers when a migration rebuilds the table, so every registered set is reinstalled after every
migrate (core's post_migrate handler): dropping first makes installing idempotent.

On SQLite, every set is also dropped before a migrate that applies anything (core's pre_migrate handler): the
rebuilt table is renamed into place, and SQLite refuses that while a trigger of another table names it.

A set also names its evidence tables, each with a query that finds evidence in it. On PostgreSQL a
BEFORE TRUNCATE trigger refuses to empty such a table while the query finds a row (row triggers do not fire
for TRUNCATE), and `syncplane flush` refuses on every database (core/management/commands/flush.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TriggerSet:
    """The statements that create and drop one app's triggers, per database vendor, and its evidence tables."""

    sqlite: list[str]
    sqlite_reverse: list[str]
    postgres: list[str]
    postgres_reverse: list[str]
    # table -> a SELECT that returns a row while the table holds evidence ("SELECT 1 FROM t" for any row)
    evidence: dict[str, str] = field(default_factory=dict)

    def install(self, connection) -> None:
        """Drop and create the triggers of this database's vendor: idempotent, safe after any migration."""
        self._run(connection, [*self._reverse(connection), *self._create(connection)])

    def remove(self, connection) -> None:
        self._run(connection, self._reverse(connection))

    def holds_evidence(self, connection) -> list[str]:
        """The evidence tables that are not empty of evidence."""
        found = []
        existing = set(connection.introspection.table_names())  # a database not migrated yet holds none
        with connection.cursor() as cursor:
            for table, query in self.evidence.items():
                if table not in existing:
                    continue
                cursor.execute(f"SELECT EXISTS ({query})")  # noqa: S608 (the queries are our own constants)
                if cursor.fetchone()[0]:
                    found.append(table)
        return found

    def _create(self, connection) -> list[str]:
        statements = {"sqlite": self.sqlite, "postgresql": [*self.postgres, *self._truncate_guards()]}
        return statements.get(connection.vendor, [])

    def _reverse(self, connection) -> list[str]:
        statements = {"sqlite": self.sqlite_reverse, "postgresql": [*self.postgres_reverse, *self._truncate_drops()]}
        return statements.get(connection.vendor, [])

    def _truncate_guards(self) -> list[str]:
        statements = []
        for table, query in self.evidence.items():
            statements += [
                f"""CREATE FUNCTION syncplane_guard_truncate_{table}() RETURNS trigger AS $$
                    BEGIN
                      IF EXISTS ({query}) THEN
                        RAISE EXCEPTION '{table} holds evidence: TRUNCATE refused';
                      END IF;
                      RETURN NULL;
                    END $$ LANGUAGE plpgsql""",
                f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                    FOR EACH STATEMENT EXECUTE FUNCTION syncplane_guard_truncate_{table}()""",
            ]
        return statements

    def _truncate_drops(self) -> list[str]:
        statements = []
        for table in self.evidence:
            statements += [
                f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
                f"DROP FUNCTION IF EXISTS syncplane_guard_truncate_{table}()",
            ]
        return statements

    @staticmethod
    def _run(connection, statements: list[str]) -> None:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)


_REGISTERED: list[TriggerSet] = []


def register(trigger_set: TriggerSet) -> TriggerSet:
    """Add an app's set to those installed after every migrate and checked by `flush` (from its AppConfig)."""
    if trigger_set not in _REGISTERED:
        _REGISTERED.append(trigger_set)
    return trigger_set


def registered() -> list[TriggerSet]:
    return list(_REGISTERED)


def install_all(connection) -> None:
    existing = set(connection.introspection.table_names())
    for trigger_set in _REGISTERED:
        if set(trigger_set.evidence) <= existing:  # an app not migrated yet (`migrate <app> <migration>`)
            trigger_set.install(connection)


def remove_all(connection) -> None:
    for trigger_set in reversed(_REGISTERED):
        trigger_set.remove(connection)


def tables_holding_evidence(connection) -> list[str]:
    return [table for trigger_set in _REGISTERED for table in trigger_set.holds_evidence(connection)]
