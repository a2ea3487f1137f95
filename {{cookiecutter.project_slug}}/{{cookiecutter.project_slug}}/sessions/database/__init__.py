"""The SQL store, on an SQLite file or PostgreSQL: what the session engine uses of it.

settings.py reads the ``session.database_*`` settings; schema.py is the table, statements.py
every statement, engine.py the pooled engine, connections.py each thread's connection and
the statements run on it; store.py puts them together.
"""

from .store import STORE_ERRORS, DatabaseStore, error_reason, make_database_store, make_store

__all__ = ["STORE_ERRORS", "DatabaseStore", "error_reason", "make_database_store", "make_store"]
