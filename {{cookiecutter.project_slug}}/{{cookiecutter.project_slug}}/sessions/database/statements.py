"""Every statement the store sends, built once per dialect (SQLite or PostgreSQL).

Every statement that renews or writes a session carries the condition that it is live
(not expired, not past its absolute lifetime, of a sane shape), so a session revoked or
expired while a request used it is never brought back; a counter's increment is one
atomic UPDATE ... RETURNING of the session's JSON counters (SQLite's json_set, PostgreSQL's
jsonb_set).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Dialect,
    Executable,
    LargeBinary,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from ..session_api import COUNTER_LIMIT
from .schema import NO_COUNTERS, sessions

# A creation time further ahead of the database's clock than this is corrupt (a row
# restored from another server whose clock was ahead, say).
CLOCK_SKEW = 60
# Rows deleted per statement by clear-sessions: each batch is a range of an index, stays
# well inside the statement timeout, and SQLite's writers wait for one batch at most.
CLEAR_BATCH = 5000
UPSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
# Bound per statement: the session's id, and the idle and absolute timeouts; for a
# counter, where it is in the JSON counters (counter_parameter) and the step.
ID, IDLE, LIFETIME = bindparam("session_id"), bindparam("idle"), bindparam("lifetime")
# Seconds after which a session's expiry is rewritten (settings.reissue_time).
RENEWAL = bindparam("renewal", type_=BigInteger())
COUNTER, STEP = bindparam("counter", type_=String()), bindparam("step", type_=BigInteger())
COUNTERS = sessions.c.counters


# What PostgreSQL's ->> gives of a counter that is a whole number of at most 18 digits.
WHOLE_NUMBER = "^-?[0-9]{1,18}$"


def constant(value: int | str, type_: Any = None) -> Any:
    """``value`` written into the statement's SQL, not bound: every bound value costs each
    execution its conversion (the counter page's statement had 38, now a few)."""
    text = str(value) if isinstance(value, int) else "'" + value.replace("'", "''") + "'"
    return literal_column(text, type_)


def expiry() -> Any:
    """The expiry as the conditions on one session (or one user's) read it: through an
    expression the expiry index cannot answer.

    PostgreSQL's cached generic plan of such a statement otherwise ranged over the expiry
    index, every live session's entry, instead of looking the id up, whenever the table's
    statistics were few or stale (a new or a small table): 29 µs a statement at 300
    sessions, and growing with them. Only clear-sessions reads that index: for the
    expired sessions.
    """
    return sessions.c.expiry + constant(0)


def counter_parameter(dialect: str, name: str) -> str:
    """How a statement names the counter ``name``: an SQLite JSON path, or PostgreSQL's
    jsonb key (names are checked: no quote to escape)."""
    return f'$."{name}"' if dialect == "sqlite" else name


def database_now(dialect: str) -> Any:
    """The database's clock, in whole seconds since the epoch: every machine that shares
    the database reads the same one (as Redis's clock serves the Redis store)."""
    if dialect == "sqlite":
        return cast(func.strftime(constant("%s"), constant("now")), BigInteger)
    # date_part's double, not EXTRACT's numeric (PostgreSQL 14 on): a statement reads the
    # clock several times, and numeric arithmetic made that 10 µs of it.
    return cast(func.floor(func.date_part(constant("epoch"), func.now())), BigInteger)


def this_live_session(dialect: str, now: Any) -> Any:
    """The row of the session the statement names (its id), if that session is live."""
    return and_(sessions.c.id == ID, is_live(dialect, now))


def is_live(dialect: str, now: Any) -> Any:
    """Whether a row is live: not expired, not past its absolute timeout, of a sane shape
    (whole numbers and a JSON object: SQLite keeps whatever another writer put in a
    column)."""
    conditions = [
        expiry() > now,
        sessions.c.created > now - LIFETIME,
        sessions.c.created <= now + constant(CLOCK_SKEW),
        counters_are_an_object(dialect),
    ]
    if dialect == "sqlite":  # PostgreSQL's bigint column holds whole numbers only
        conditions.append(sessions.c.created == cast(sessions.c.created, BigInteger))
    return and_(*conditions)


def counters_are_an_object(dialect: str) -> Any:
    """Whether the counters column holds a JSON object (PostgreSQL's jsonb column holds
    JSON, SQLite's text may hold anything: its JSON functions fail on what is not). Never
    NULL: a NOT of it must be true for a corrupt row."""
    if dialect == "sqlite":
        valid = func.json_valid(COUNTERS) == constant(1)
        return case((valid, func.json_type(COUNTERS) == constant("object")), else_=false())
    return func.jsonb_typeof(COUNTERS) == constant("object")


def counter_value(dialect: str) -> Any:
    """The counter's value, a whole number (NULL when the session has none yet)."""
    if dialect == "sqlite":
        return func.json_extract(COUNTERS, COUNTER)
    return cast(COUNTERS.op("->>")(COUNTER), BigInteger)


def counter_takes_the_step(dialect: str) -> Any:
    """Whether the counter is absent, or a whole number under COUNTER_LIMIT that stays
    under it after the step; anything else is another writer's doing: a corrupt session.
    (CASE: the value is read only once its kind is known, and the sum made only once the
    value is in range: SQLite's abs() and sums fail on the smallest 64-bit integer.)"""
    value = counter_value(dialect)
    if dialect == "sqlite":
        in_range = case((within_the_limit(value), within_the_limit(value + STEP)), else_=false())
        kind = func.json_type(COUNTERS, COUNTER)
        return case(
            (func.json_valid(COUNTERS) != constant(1), false()),
            (kind.is_(None), true()),
            (kind == constant("integer"), in_range),
            else_=false(),
        )
    kind, text = func.jsonb_typeof(COUNTERS.op("->")(COUNTER)), COUNTERS.op("->>")(COUNTER)
    whole = and_(kind == constant("number"), text.regexp_match(constant(WHOLE_NUMBER)))
    # 18 digits at most: the value is under the limit already, only the sum is checked.
    return case((kind.is_(None), true()), (whole, within_the_limit(value + STEP)), else_=false())


def within_the_limit(number: Any) -> Any:
    """Whether ``number`` lies strictly between minus and plus COUNTER_LIMIT."""
    limit = constant(COUNTER_LIMIT, BigInteger)
    return and_(number > -limit, number < limit)


def with_counter(dialect: str, counters: Any, value: Any) -> Any:
    """``counters`` with the counter set to ``value``."""
    if dialect == "sqlite":
        return func.json_set(counters, COUNTER, value)
    return func.jsonb_set(counters, postgresql.array([COUNTER]), func.to_jsonb(value))


def without_counter(dialect: str) -> Any:
    """The counters without the counter."""
    if dialect == "sqlite":
        return func.json_remove(COUNTERS, COUNTER)
    return COUNTERS.op("-")(COUNTER)


def next_expiry(now: Any) -> Any:
    """The idle timeout from now, but never past the absolute end."""
    end = sessions.c.created + LIFETIME
    return case((end < now + IDLE, end), else_=now + IDLE)


def data_as_bytes(dialect: str) -> Any:
    """The data column read as UTF-8 bytes: text that is not UTF-8 (only another writer
    can store it in SQLite) becomes a corrupt session, not an error on every request."""
    if dialect == "sqlite":
        return cast(sessions.c.data, LargeBinary)
    return func.convert_to(sessions.c.data, constant("UTF8"))


class Statements:
    """The statements of one dialect, built once (``statements_for``), compiled once per
    driver (``compiled_for``)."""

    def __init__(self, dialect: str) -> None:
        data, now = data_as_bytes(dialect).label("data"), database_now(dialect)
        live, renewed = this_live_session(dialect, now), next_expiry(now)
        # Reading a session renews its expiry once RENEWAL seconds went by since it was
        # last renewed; until then the indexed expiry is left alone (no index write in
        # SQLite, an update PostgreSQL makes in place). The store runs the statement of a
        # session not due first; when it finds none, the ``_renewing`` one.
        # (Due too when the expiry lies past a whole idle timeout from now: one stored
        # under a longer session.timeout than today's, which renewing shortens. Never due
        # once it is the absolute end, which no renewal moves.)
        capped = and_(expiry() == sessions.c.created + LIFETIME, expiry() <= now + IDLE)
        renewal_not_due = expiry().between(now + IDLE - RENEWAL, now + IDLE)
        not_due = and_(live, or_(renewal_not_due, capped))
        renew = update(sessions).where(live)
        self.load = select(data, sessions.c.created).where(not_due)
        self.load_renewing = renew.values(expiry=renewed).returning(data, sessions.c.created)
        # A counter's increment, on a live session whose counter takes the step.
        value, takes_step = counter_value(dialect), counter_takes_the_step(dialect)
        incremented = with_counter(dialect, COUNTERS, func.coalesce(value, constant(0)) + STEP)
        increment = update(sessions).where(not_due, takes_step).values(counters=incremented)
        increment_renewing = renew.where(takes_step).values(expiry=renewed, counters=incremented)
        self.load_and_increment = increment.returning(data, sessions.c.created, value)
        self.load_and_increment_renewing = increment_renewing.returning(
            data, sessions.c.created, value
        )
        self.increment = increment.returning(value)
        self.increment_renewing = increment_renewing.returning(value)
        # A save follows the request's load, which renewed the session if it was due.
        self.save = renew.values(data=bindparam("new_data"))
        # A sign-in's save also names the session's user (and the client record).
        owner, client = bindparam("owner", type_=String()), bindparam("owner_client")
        self.save_bound = self.save.values(user_id=owner, client=client)
        self.move = renew.values(id=bindparam("new_id"))
        # A new session's first increment makes its row; a second one in the same request
        # finds it.
        first = UPSERT[dialect](sessions).values(
            id=ID,
            data=constant("{}"),
            counters=with_counter(dialect, literal_column(NO_COUNTERS), STEP),
            created=now,
            expiry=now + IDLE,
        )
        self.create = first.on_conflict_do_update(
            index_elements=[sessions.c.id], set_={"counters": incremented}
        ).returning(value)
        new = UPSERT[dialect](sessions).values(
            id=ID, data=bindparam("new_data"), created=now, expiry=now + IDLE
        )
        self.save_new = new.on_conflict_do_update(
            index_elements=[sessions.c.id], set_={"data": new.excluded.data}
        )
        self.delete = delete(sessions).where(sessions.c.id == ID)
        # A DELETE of dead rows says so in its own WHERE: PostgreSQL checks that again on a
        # row another request renewed meanwhile, and leaves it (a subquery's pick or an
        # earlier statement's finding it would not check again).
        self.delete_dead = delete(sessions).where(sessions.c.id == ID, not_(is_live(dialect, now)))
        # ... or live, but with a counter that cannot take the step: corrupt.
        self.delete_dead_or_corrupt = delete(sessions).where(
            sessions.c.id == ID, not_(and_(is_live(dialect, now), takes_step))
        )
        self.reset_counter = (
            update(sessions)
            .where(sessions.c.id == ID, counters_are_an_object(dialect))
            .values(counters=without_counter(dialect))
        )
        # The user's sessions: a range of the user_id index, the live ones; ended at once.
        columns = (sessions.c.id, sessions.c.created, sessions.c.expiry, sessions.c.client)
        self.user_sessions = select(*columns).where(
            sessions.c.user_id == owner, is_live(dialect, now)
        )
        self.end_user_session = delete(sessions).where(
            sessions.c.id == ID, sessions.c.user_id == owner
        )
        self.end_user_sessions = delete(sessions).where(
            sessions.c.user_id == owner, sessions.c.id != bindparam("keep")
        )
        # clear-sessions: a range of the expiry index. A row's expiry never lies past its
        # absolute end (next_expiry), so this finds every dead row; only after
        # session.absolute_timeout is shortened does a row past the new end wait for its
        # expiry (one idle timeout at most: no statement renews it meanwhile).
        batch = bindparam("batch", type_=BigInteger())  # CLEAR_BATCH
        expired = select(sessions.c.id).where(sessions.c.expiry <= now).limit(batch)
        self.clear_expired = delete(sessions).where(
            sessions.c.id.in_(expired.scalar_subquery()), not_(is_live(dialect, now))
        )
        # clear-sessions --all: every row, in one statement (SQLite frees the table's pages
        # at once; PostgreSQL only marks each row deleted): every session ends at the same
        # instant, and no request can bring one back (all their writes check liveness).
        self.end_all = delete(sessions)
        # /readyz: the cheapest round trip.
        self.select_one = select(literal_column("1"))


@functools.cache
def statements_for(dialect: str) -> Statements:
    """The statements of ``dialect``, built once per process and shared by every store on
    it: they are immutable, and building them takes milliseconds each app (tests make
    hundreds)."""
    return Statements(dialect)


@dataclass(frozen=True)
class DriverStatement:
    """A statement as its driver takes it: the SQL text, and how to order its values.

    The store runs it on the driver's cursor itself: SQLAlchemy's execution of an already
    compiled statement (its cache look-up, execution context and result objects) cost 55
    µs a statement, more than the statement's own work in SQLite (BENCHMARKS.md).
    """

    sql: str
    # The values SQLAlchemy bound itself (the constants), then the caller's.
    constants: Mapping[str, Any]
    # For a driver that takes positional values (sqlite3's ``?``): their names in order.
    order: Callable[[Mapping[str, Any]], tuple] | None
    # Whether it gives rows (a SELECT, a RETURNING): known here, the cursor's
    # ``description`` is not asked (psycopg builds its columns' descriptions anew).
    returns_rows: bool

    def values(self, given: Mapping[str, Any]) -> tuple | dict[str, Any]:
        """What the driver's ``execute`` takes for the values ``given`` by name."""
        merged = {**self.constants, **given}
        return merged if self.order is None else self.order(merged)


def driver_statement(statement: Executable, dialect: Dialect) -> DriverStatement:
    """``statement`` compiled for ``dialect``'s driver."""
    compiled = statement.compile(dialect=dialect)
    names = compiled.positiontup
    order = None if names is None else in_order(names)
    constants = {
        name: value for name, value in compiled.params.items() if not compiled.binds[name].required
    }
    returns_rows = bool(statement.exported_columns)
    return DriverStatement(str(compiled), constants, order, returns_rows)


def in_order(names: list[str]) -> Callable[[Mapping[str, Any]], tuple]:
    """What gives the values named ``names`` as a tuple, in that order."""
    if len(names) >= 2:  # itemgetter gives a tuple only for two names or more
        return operator.itemgetter(*names)
    return lambda values: tuple(values[name] for name in names)


# The statements compiled for each kind of driver and server version, once per process:
# the tests' hundreds of apps would each spend milliseconds on it.
COMPILED: dict[tuple, dict[str, DriverStatement]] = {}


def compiled_for(dialect: Dialect) -> dict[str, DriverStatement]:
    """Every statement of ``dialect``, compiled for its driver (after the engine's first
    connection, which tells the dialect the server's version)."""
    key = (type(dialect), dialect.paramstyle, dialect.server_version_info)
    if key not in COMPILED:
        statements = vars(statements_for(dialect.name)).items()
        COMPILED[key] = {
            name: driver_statement(statement, dialect)
            for name, statement in statements
            if isinstance(statement, Executable)
        }
    return COMPILED[key]
