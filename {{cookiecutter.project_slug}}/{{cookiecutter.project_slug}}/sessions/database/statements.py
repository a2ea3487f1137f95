"""Every statement the store sends, built once per dialect (SQLite or PostgreSQL).

Every statement that renews or writes a session carries the condition that it is live
(not expired, not past its absolute lifetime, of a sane shape), so a session revoked or
expired while a request used it is never brought back; counting a visit is one atomic
UPDATE ... RETURNING.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    LargeBinary,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    not_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from .schema import sessions

# A counter this high is corrupt (a visit a microsecond for 30 years is 10**15): counting
# on would overflow a 64-bit integer.
MAX_COUNTER = 10**18
# A creation time further ahead of the database's clock than this is corrupt (a row
# restored from another server whose clock was ahead, say).
CLOCK_SKEW = 60
# Rows deleted per statement by clear-sessions: each batch is a range of an index, stays
# well inside the statement timeout, and SQLite's writers wait for one batch at most.
CLEAR_BATCH = 5000
UPSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
# Bound per statement: the session's id, and the idle and absolute timeouts.
ID, IDLE, LIFETIME = bindparam("session_id"), bindparam("idle"), bindparam("lifetime")


def database_now(dialect: str) -> Any:
    """The database's clock, in whole seconds since the epoch: every machine that shares
    the database reads the same one (as Redis's clock serves the Redis store)."""
    if dialect == "sqlite":
        return cast(func.strftime("%s", "now"), BigInteger)
    return cast(func.floor(func.extract("epoch", func.now())), BigInteger)


def this_live_session(now: Any) -> Any:
    """The row of the session the statement names (its id), if that session is live."""
    return and_(sessions.c.id == ID, is_live(now))


def is_live(now: Any) -> Any:
    """Whether a row is live: not expired, not past its absolute timeout, of a sane shape
    (whole numbers: SQLite keeps whatever another writer put in a column)."""
    return and_(
        sessions.c.expiry > now,
        sessions.c.created > now - LIFETIME,
        sessions.c.created <= now + CLOCK_SKEW,
        sessions.c.counter >= 0,
        sessions.c.counter < MAX_COUNTER,
        sessions.c.counter == cast(sessions.c.counter, BigInteger),
        sessions.c.created == cast(sessions.c.created, BigInteger),
    )


def next_expiry(now: Any) -> Any:
    """The idle timeout from now, but never past the absolute end."""
    end = sessions.c.created + LIFETIME
    return case((end < now + IDLE, end), else_=now + IDLE)


def data_as_bytes(dialect: str) -> Any:
    """The data column read as UTF-8 bytes: text that is not UTF-8 (only another writer
    can store it in SQLite) becomes a corrupt session, not an error on every request."""
    if dialect == "sqlite":
        return cast(sessions.c.data, LargeBinary)
    return func.convert_to(sessions.c.data, "UTF8")


class Statements:
    """The statements of one dialect, built once: SQLAlchemy caches their compiled form."""

    def __init__(self, dialect: str) -> None:
        data, now = data_as_bytes(dialect).label("data"), database_now(dialect)
        renew, renewed = update(sessions).where(this_live_session(now)), next_expiry(now)
        self.load = renew.values(expiry=renewed).returning(data, sessions.c.created)
        counting = renew.values(expiry=renewed, counter=sessions.c.counter + 1)
        self.load_and_count = counting.returning(data, sessions.c.created, sessions.c.counter)
        self.count = counting.returning(sessions.c.counter)
        self.save = renew.values(expiry=renewed, data=bindparam("new_data"))
        self.move = renew.values(id=bindparam("new_id"))
        # A new session's first count makes its row; a second count in the same request
        # finds it.
        first = UPSERT[dialect](sessions).values(
            id=ID, data="{}", counter=1, created=now, expiry=now + IDLE
        )
        self.create = first.on_conflict_do_update(
            index_elements=[sessions.c.id], set_={"counter": sessions.c.counter + 1}
        ).returning(sessions.c.counter)
        new = UPSERT[dialect](sessions).values(
            id=ID, data=bindparam("new_data"), counter=0, created=now, expiry=now + IDLE
        )
        self.save_new = new.on_conflict_do_update(
            index_elements=[sessions.c.id], set_={"data": new.excluded.data}
        )
        self.delete = delete(sessions).where(sessions.c.id == ID)
        # A DELETE of dead rows says so in its own WHERE: PostgreSQL checks that again on a
        # row another request renewed meanwhile, and leaves it (a subquery's pick or an
        # earlier statement's finding it would not check again).
        self.delete_dead = delete(sessions).where(sessions.c.id == ID, not_(is_live(now)))
        self.reset_counter = update(sessions).where(sessions.c.id == ID).values(counter=0)
        # clear-sessions: a range of the expiry index. A row's expiry never lies past its
        # absolute end (next_expiry), so this finds every dead row; only after
        # session.absolute_timeout is shortened does a row past the new end wait for its
        # expiry (one idle timeout at most: no statement renews it meanwhile).
        self.clear_batch = CLEAR_BATCH
        expired = select(sessions.c.id).where(sessions.c.expiry <= now).limit(self.clear_batch)
        self.clear_expired = delete(sessions).where(
            sessions.c.id.in_(expired.scalar_subquery()), not_(is_live(now))
        )
        # clear-sessions --all: every row, in one statement (SQLite frees the table's pages
        # at once; PostgreSQL only marks each row deleted): every session ends at the same
        # instant, and no request can bring one back (all their writes check liveness).
        self.end_all = delete(sessions)
