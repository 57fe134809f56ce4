"""Database triggers that guard evidence, installed the same way by every app that keeps some.

The models refuse to change evidence; triggers make the database refuse too, for raw SQL. SQLite drops a
table's triggers when a migration rebuilds the table, so each app reinstalls its set after every migrate:
dropping first makes installing idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TriggerSet:
    """The statements that create and drop one app's triggers, per database vendor."""

    sqlite: list[str]
    sqlite_reverse: list[str]
    postgres: list[str]
    postgres_reverse: list[str]

    def install(self, connection) -> None:
        """Drop and create the triggers of this database's vendor: idempotent, safe after any migration."""
        self._run(connection, [*self._reverse(connection), *self._create(connection)])

    def remove(self, connection) -> None:
        self._run(connection, self._reverse(connection))

    def _create(self, connection) -> list[str]:
        return {"sqlite": self.sqlite, "postgresql": self.postgres}.get(connection.vendor, [])

    def _reverse(self, connection) -> list[str]:
        return {"sqlite": self.sqlite_reverse, "postgresql": self.postgres_reverse}.get(connection.vendor, [])

    @staticmethod
    def _run(connection, statements: list[str]) -> None:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
