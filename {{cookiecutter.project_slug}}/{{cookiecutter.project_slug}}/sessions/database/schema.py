"""The sessions table: one row per session, made at start-up when it is missing.

A row holds the session's data as JSON text, its counters as a JSON object (jsonb on
PostgreSQL), when it was created and when it expires (whole seconds on the database's
clock), and, once a user signed in with it, whose it is (``user_id``, indexed: the user's
sessions are listed and ended by it) and the client record the sign-in kept, if any; the
expiry index serves clear-sessions. The table is made only when missing, so a role that
may use the table but not create tables (the least privilege once it exists) runs the app
too. A table of an older layout (one ``counter`` column, or no ``user_id``) is brought up
to date at start-up.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

TABLE_NAME = "{{ cookiecutter.project_slug }}_sessions"
# Serializes table creation across the processes that start at once (PostgreSQL).
SCHEMA_LOCK = 0x5E55_10_05
# PostgreSQL's code for "relation does not exist", and SQLite's message.
UNDEFINED_TABLE = "42P01"
NO_SUCH_TABLE = "no such table"
NO_COUNTERS = "'{}'"  # a new row's counters, as SQL


metadata = MetaData()


sessions = Table(
    TABLE_NAME,
    metadata,
    Column("id", String(64), primary_key=True),
    Column("data", Text, nullable=False),
    Column(
        "counters",
        Text().with_variant(postgresql.JSONB(), "postgresql"),
        nullable=False,
        server_default=text(NO_COUNTERS),
    ),
    Column("created", BigInteger, nullable=False),
    Column("expiry", BigInteger, nullable=False),
    Column("user_id", String(255), nullable=True),
    Column("client", Text, nullable=True),
    Index(f"{TABLE_NAME}_expiry", "expiry"),
    Index(f"{TABLE_NAME}_user_id", "user_id"),
)
# The table and its expiry index, as SQLite's CREATE ... IF NOT EXISTS (no write when
# present), which each new connection runs. Not the user_id index: a table of an earlier
# release has no user_id column until create_table brings it up to date, and makes it.
SQLITE_SCHEMA = [
    str(create.compile(dialect=sqlite.dialect()))
    for create in (
        CreateTable(sessions, if_not_exists=True),
        *(
            CreateIndex(index, if_not_exists=True)
            for index in sessions.indexes
            if "user_id" not in index.columns
        ),
    )
]


def table_missing(error: Exception) -> bool:
    """Whether ``error`` says the sessions table is not there."""
    reason = getattr(error, "orig", None)
    return getattr(reason, "sqlstate", None) == UNDEFINED_TABLE or NO_SUCH_TABLE in str(reason)


def create_table(connection: Connection) -> None:
    """Make the table and its index if missing, safely when processes start together.

    Only when missing: a role that may use the table but not create tables (the
    least privilege once it exists) runs the app too.
    """
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")  # kept in the file
    if inspect(connection).has_table(TABLE_NAME):
        upgrade_table(connection)
        return
    if connection.dialect.name == "postgresql":
        # Two concurrent CREATE TABLE IF NOT EXISTS can both try to create it.
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK})
    try:
        connection.execute(CreateTable(sessions, if_not_exists=True))
        for index in sessions.indexes:
            connection.execute(CreateIndex(index, if_not_exists=True))
    finally:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK})


def upgrade_table(connection: Connection) -> None:
    """Bring a table of an older layout up to date: its one visit ``counter`` column
    becomes the ``counters`` object (the old counts are dropped: they were the demo's);
    the ``user_id`` column (and its index) and the ``client`` column are added, empty: the
    sessions made before name no user, as if nobody had signed in with them.
    Processes that start together may race to it: PostgreSQL's IF [NOT] EXISTS lets each
    go on; on SQLite the loser fails once, and its first request finds the work done."""
    columns = {column["name"] for column in inspect(connection).get_columns(TABLE_NAME)}
    guard = connection.dialect.name == "postgresql"
    for name in ("user_id", "client"):
        if name not in columns:
            kind = sessions.c[name].type.compile(dialect=connection.dialect)
            column = f"{'IF NOT EXISTS ' if guard else ''}{name} {kind}"
            connection.exec_driver_sql(f"ALTER TABLE {TABLE_NAME} ADD COLUMN {column}")
    indexes = {index["name"] for index in inspect(connection).get_indexes(TABLE_NAME)}
    for index in sessions.indexes:
        if index.name not in indexes:  # only then: a role that does not own it runs the app
            connection.execute(CreateIndex(index, if_not_exists=True))
    if "counters" not in columns:
        counters = sessions.c.counters.type.compile(dialect=connection.dialect)
        column = f"{'IF NOT EXISTS ' if guard else ''}counters {counters}"
        connection.exec_driver_sql(
            f"ALTER TABLE {TABLE_NAME} ADD COLUMN {column} NOT NULL DEFAULT {NO_COUNTERS}"
        )
    if "counter" in columns:
        column = f"{'IF EXISTS ' if guard else ''}counter"
        connection.exec_driver_sql(f"ALTER TABLE {TABLE_NAME} DROP COLUMN {column}")
