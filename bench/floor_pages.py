"""The floor of each store: the counter page's session work done as simply as it can be
done correctly, with the driver (or a socket) directly and no layer between.

Runs inside a generated project's environment, beside bench_app.py (it imports only the
standard library and the project's own dependencies). Each floor does what the counter
page needs of a session, with the same guarantees of substance: the cookie verified
(HMAC-SHA512 or SecretBox, as the project's), both timeouts checked on the store's clock
(the cookie's own for the cookie stores), the counter incremented atomically in the
store, the CSRF token read, the flash queue looked at, and the session written back (a
new cookie, or the idle expiry renewed). It does not check a stored value's shape, rotate
secrets or survive a store's failure as the project's engine does: a floor, not a
replacement.
"""

from __future__ import annotations

import binascii
import hmac
import json
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

COOKIE = "floor"
COUNTER = "_c_visits"
CSRF = "_csrft_"
FLASH = "_f_"
USERID = "auth.userid"  # where the app's security policy keeps the signed-in user
TO_BASE64URL = bytes.maketrans(b"+/", b"-_")
FROM_BASE64URL = bytes.maketrans(b"-_", b"+/")


def b64encode(data: bytes) -> str:
    """Unpadded base64url."""
    return binascii.b2a_base64(data, newline=False).translate(TO_BASE64URL).rstrip(b"=").decode()


def b64decode(text: str) -> bytes:
    """The bytes of unpadded base64url ``text``; binascii.Error if it is not."""
    return binascii.a2b_base64(text.encode().translate(FROM_BASE64URL) + b"==")


class Signer:
    """HMAC-SHA512, keyed once: signature then payload, as the project's cookies are."""

    def __init__(self, secret: bytes) -> None:
        self.keyed = hmac.new(b"pyramid.session." + secret, digestmod="sha512")

    def mac(self, payload: bytes) -> bytes:
        keyed = self.keyed.copy()
        keyed.update(payload)
        return keyed.digest()

    def sign(self, payload: bytes) -> str:
        return b64encode(self.mac(payload) + payload)

    def verify(self, value: str) -> bytes | None:
        """The payload of a value ``sign`` made, or None."""
        try:
            signed = b64decode(value)
        except (binascii.Error, ValueError):
            return None
        payload = signed[64:]
        return payload if hmac.compare_digest(signed[:64], self.mac(payload)) else None


class Box:
    """SecretBox (XSalsa20-Poly1305), as the encrypted cookie store seals its cookie."""

    def __init__(self, secret: bytes) -> None:
        from nacl.secret import SecretBox

        self.box = SecretBox(secret)

    def sign(self, payload: bytes) -> str:
        return b64encode(bytes(self.box.encrypt(payload)))

    def verify(self, value: str) -> bytes | None:
        from nacl.exceptions import CryptoError

        try:
            return self.box.decrypt(b64decode(value))
        except (binascii.Error, ValueError, CryptoError):
            return None


def cookie_in(header: str) -> str | None:
    """The floor's cookie in a Cookie header."""
    for pair in header.split(";"):
        name, _, value = pair.strip().partition("=")
        if name == COOKIE:
            return value
    return None


class CookieFloor:
    """The whole session in the cookie: [accessed, created, data] as compact JSON."""

    def __init__(self, sealer: Signer | Box, timeout: int, absolute_timeout: int) -> None:
        self.sealer, self.timeout, self.absolute_timeout = sealer, timeout, absolute_timeout
        self.encode = json.JSONEncoder(separators=(",", ":")).encode

    def visit(self, cookie_header: str) -> tuple[int, str, str | None, str]:
        """The count, the CSRF token, the signed-in user (None: a visitor) and the new
        cookie value."""
        now = int(time.time())
        value = cookie_in(cookie_header)
        payload = self.sealer.verify(value) if value else None
        session = json.loads(payload) if payload else None
        if session is None or not self.live(session, now):
            session = [now, now, {CSRF: secrets.token_hex(20)}]
        data = session[2]
        data[COUNTER] = count = data.get(COUNTER, 0) + 1
        _ = FLASH in data  # no message queued: nothing shown
        cookie = self.sealer.sign(self.encode([now, session[1], data]).encode())
        return count, data[CSRF], data.get(USERID), cookie

    def live(self, session: Any, now: int) -> bool:
        accessed, created = session[0], session[1]
        return now - accessed <= self.timeout and now - created <= self.absolute_timeout


class RespConnection:
    """One Redis connection, RESP2 by hand: a command out, its reply in."""

    def __init__(self, host: str, port: int) -> None:
        self.socket = socket.create_connection((host, port))
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.socket.makefile("rb")

    def call(self, *args: bytes) -> Any:
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        self.socket.sendall(b"".join(out))
        return self.reply()

    def reply(self) -> Any:
        line = self.reader.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.reader.read(size + 2)[:-2]
        if kind == b":":
            return int(rest)
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self.reply() for _ in range(size)]
        if kind == b"+":
            return rest
        raise RuntimeError(rest.decode())


# The session's hash: "data" (JSON), "created" (Redis's clock) and the counter's field.
# Live if not past its absolute end (the key's TTL is the idle timeout): renew and count.
REDIS_VISIT = b"""
local data = redis.call("HMGET", KEYS[1], "data", "created")
if not data[1] then return false end
local age = tonumber(redis.call("TIME")[1]) - tonumber(data[2])
if age > tonumber(ARGV[2]) then redis.call("DEL", KEYS[1]) return false end
redis.call("EXPIRE", KEYS[1], math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - age))
return {data[1], redis.call("HINCRBY", KEYS[1], "count:visits", 1)}
"""
REDIS_CREATE = b"""
redis.call("HSET", KEYS[1], "data", ARGV[2], "created", redis.call("TIME")[1],
           "count:visits", 1)
redis.call("EXPIRE", KEYS[1], ARGV[1])
return 1
"""


class ServerFloor:
    """A signed random id in the cookie; the session in the store, one round trip."""

    def __init__(self, secret: bytes) -> None:
        self.signer = Signer(secret)
        self.local = threading.local()

    def visit(self, cookie_header: str) -> tuple[int, str, str | None, str]:
        value = cookie_in(cookie_header)
        session_id = self.signer.verify(value) if value else None
        found = self.count(session_id.decode()) if session_id else None
        if found is None:
            session_id = secrets.token_urlsafe(32).encode()
            token = secrets.token_hex(20)
            self.create(session_id.decode(), json.dumps({CSRF: token}))
            return 1, token, None, self.signer.sign(session_id)
        data, count = found
        session = json.loads(data)
        _ = FLASH in session
        return count, session[CSRF], session.get(USERID), value

    def count(self, session_id: str) -> tuple[bytes | str, int] | None:
        raise NotImplementedError

    def create(self, session_id: str, data: str) -> None:
        raise NotImplementedError


class RedisFloor(ServerFloor):
    """EVALSHA of one small script over a socket of the thread's own."""

    def __init__(self, secret: bytes, url: str, timeout: int, absolute_timeout: int) -> None:
        super().__init__(secret)
        parts = urlsplit(url)
        self.address = (parts.hostname or "localhost", parts.port or 6379)
        self.timeouts = (str(timeout).encode(), str(absolute_timeout).encode())
        first = RespConnection(*self.address)
        self.visit_sha = first.call(b"SCRIPT", b"LOAD", REDIS_VISIT)
        self.create_sha = first.call(b"SCRIPT", b"LOAD", REDIS_CREATE)

    def connection(self) -> RespConnection:
        if not hasattr(self.local, "connection"):
            self.local.connection = RespConnection(*self.address)
        return self.local.connection

    def count(self, session_id: str) -> tuple[bytes, int] | None:
        key = f"floor:{session_id}".encode()
        reply = self.connection().call(b"EVALSHA", self.visit_sha, b"1", key, *self.timeouts)
        return (reply[0], reply[1]) if reply else None

    def create(self, session_id: str, data: str) -> None:
        key = f"floor:{session_id}".encode()
        self.connection().call(
            b"EVALSHA", self.create_sha, b"1", key, self.timeouts[0], data.encode()
        )


# One row per session: the idle expiry indexed (what clearing expired sessions reads).
SQL_TABLE = (
    "CREATE TABLE IF NOT EXISTS floor_sessions (id VARCHAR(64) PRIMARY KEY, data TEXT NOT NULL,"
    " visits BIGINT NOT NULL, created BIGINT NOT NULL, expiry BIGINT NOT NULL)"
)
SQL_INDEX = "CREATE INDEX IF NOT EXISTS floor_sessions_expiry ON floor_sessions (expiry)"
SQL_CLOCK = {
    "sqlite": "CAST(strftime('%s', 'now') AS INTEGER)",
    "postgresql": "CAST(floor(extract(epoch from now())) AS BIGINT)",
}
SQL_VISIT = (
    "UPDATE floor_sessions SET visits = visits + 1,"
    " expiry = CASE WHEN created + {lifetime} < {now} + {idle} THEN created + {lifetime}"
    " ELSE {now} + {idle} END"
    " WHERE id = {param} AND expiry > {now} AND created + {lifetime} > {now}"
    " RETURNING data, visits"
)
SQL_CREATE = (
    "INSERT INTO floor_sessions (id, data, visits, created, expiry)"
    " VALUES ({param}, {param}, 1, {now}, {now} + {idle})"
)


class SqlFloor(ServerFloor):
    """One UPDATE ... RETURNING on a connection of the thread's own, in autocommit."""

    def __init__(
        self, secret: bytes, connect: Callable[[], Any], dialect: str, timeouts: tuple[int, int]
    ) -> None:
        super().__init__(secret)
        self.connect = connect
        param = "?" if dialect == "sqlite" else "%s"
        words = {"now": SQL_CLOCK[dialect], "idle": timeouts[0], "lifetime": timeouts[1]}
        self.visit_sql = SQL_VISIT.format(param=param, **words)
        self.create_sql = SQL_CREATE.format(param=param, **words)
        first = connect()
        first.execute(SQL_TABLE)
        first.execute(SQL_INDEX)

    def connection(self) -> Any:
        if not hasattr(self.local, "connection"):
            self.local.connection = self.connect()
        return self.local.connection

    def count(self, session_id: str) -> tuple[str, int] | None:
        return self.connection().execute(self.visit_sql, (session_id,)).fetchone()

    def create(self, session_id: str, data: str) -> None:
        self.connection().execute(self.create_sql, (session_id, data))


def sqlite_connect(path: str) -> Callable[[], sqlite3.Connection]:
    """Connections in autocommit, WAL and synchronous=NORMAL, as the project's."""

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    return connect


def postgresql_connect(url: str) -> Callable[[], Any]:
    """psycopg connections in autocommit, every statement prepared on the server."""
    import psycopg

    def connect() -> Any:
        return psycopg.connect(url, autocommit=True, prepare_threshold=0)

    return connect


def make_floor(factory: str, secret: bytes, timeouts: tuple[int, int], url: str) -> Any:
    """The floor of ``factory``'s store (``url``: the Redis or SQLAlchemy URL, if any)."""
    if factory == "signed_cookie":
        return CookieFloor(Signer(secret), *timeouts)
    if factory == "encrypted_cookie":
        return CookieFloor(Box(secret), *timeouts)
    if factory == "redis":
        return RedisFloor(secret, url, *timeouts)
    scheme, _, rest = url.partition("://")
    if scheme.startswith("sqlite"):
        return SqlFloor(secret, sqlite_connect(rest[1:]), "sqlite", timeouts)
    plain = f"postgresql://{rest}"
    return SqlFloor(secret, postgresql_connect(plain), "postgresql", timeouts)
