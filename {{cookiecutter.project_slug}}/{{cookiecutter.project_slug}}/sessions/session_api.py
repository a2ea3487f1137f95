"""What every session of this app offers beyond a dict, whichever store holds it."""

from __future__ import annotations

import re
import secrets
from typing import Any

from pyramid.csrf import SessionCSRFStoragePolicy
from pyramid.request import Request

from .settings import SessionSettings

COOKIE_NAME = "session"
# Browsers keep a __Host- cookie only if it is Secure, has Path=/ and no Domain: neither a
# sibling subdomain nor a plain-HTTP response can plant one (no session fixation that way).
SECURE_COOKIE_NAME = "__Host-session"
CSRF_TOKEN_KEY = "_csrft_"  # noqa: S105 - the key of Pyramid's SessionCSRFStoragePolicy
FLASH_KEY_PREFIX = "_f_"  # where Pyramid's own sessions keep a flash queue
# A counter's name: what every store keeps as it is (a Redis hash field, a key of the SQL
# store's JSON counters, a key of a cookie session), with no quoting to get wrong.
COUNTER_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
# The largest step of one increment, and the first value no counter reaches: a counter of
# at most 18 digits plus a step never overflows a store's 64-bit integers.
MAX_STEP, COUNTER_LIMIT = 10**12, 10**18
# A user's id as every store keeps it: the SQL store's column takes 255 characters, and
# PostgreSQL's text no NUL.
MAX_USERID_LENGTH = 255


def check_userid(userid: str) -> None:
    """Refuse a user id no store can keep (a bug in the app's user store): a ValueError,
    the 500 page, rather than a 503 at every sign-in as if the store were down."""
    if not (isinstance(userid, str) and 0 < len(userid) <= MAX_USERID_LENGTH):
        raise ValueError(f"a user's id is 1 to {MAX_USERID_LENGTH} characters of text")
    if "\x00" in userid:
        raise ValueError("a user's id holds no NUL character")


def check_counter(name: str, by: int) -> None:
    """Refuse a counter name or a step no store can take (a bug in the calling view)."""
    if not (isinstance(name, str) and COUNTER_NAME.fullmatch(name)):
        raise ValueError(f"a counter's name is 1 to 100 of A-Z a-z 0-9 _ . : -, not {name!r}")
    if type(by) is not int or abs(by) > MAX_STEP:
        raise ValueError(f"a counter's step is a whole number up to {MAX_STEP}, not {by!r}")


def cookie_name(settings: SessionSettings) -> str:
    """The session cookie's name: with the ``__Host-`` prefix whenever it is Secure."""
    return SECURE_COOKIE_NAME if settings.secure else COOKIE_NAME


def cookie_attributes(settings: SessionSettings) -> str:
    """What follows the value in every Set-Cookie header of the session."""
    return "; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if settings.secure else "")


def request_cookie(header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a Cookie request header.

    As in WebOb (so as in Pyramid's own sessions), the last of repeated cookies wins.
    Session cookies are base64url text, so unquoting is only taking off double quotes.
    """
    found = None
    for pair in header.split(";"):
        key, equals, value = pair.partition("=")
        if equals and key.strip() == name:
            found = value.strip().strip('"')
    return found


class SessionAPI:
    """Pyramid's ISession methods that do not depend on where the session is stored.

    Mixed into a session class that has the dict methods they call and a
    ``write_back(request, response)`` method, and calls ``attach(request)`` as it is made;
    flash queues and the CSRF token live in the keys Pyramid's own sessions use.
    """

    dirty = False
    request: Request | None

    def attach(self, request: Request) -> None:
        """Belong to ``request`` until it is finished.

        The request holds its session (``request.session``) and the session its request,
        to add ``write_back`` to it: a reference cycle that only Python's garbage collector
        could free, 6-15 µs a page of its time (BENCHMARKS.md). The session lets go of the
        request when it is finished instead, and every object of the request is freed then.
        """
        self.request = request
        request.add_finished_callback(self.detach)

    def detach(self, request: Request) -> None:
        """The request is finished (its finished callback): let go of it."""
        self.request = None

    def changed(self) -> None:
        """Write the session back (``write_back``) when the response goes out."""
        if not self.dirty:
            self.dirty = True
            self.request.add_response_callback(self.write_back)

    def flash(self, msg: Any, queue: str = "", allow_duplicate: bool = True) -> None:
        """Add ``msg`` to the flash queue ``queue``."""
        messages = self.peek_flash(queue)
        if allow_duplicate or msg not in messages:
            self[FLASH_KEY_PREFIX + queue] = [*messages, msg]

    def pop_flash(self, queue: str = "") -> list:
        """Take every message of the flash queue ``queue``."""
        messages = self.pop(FLASH_KEY_PREFIX + queue, [])
        return messages if isinstance(messages, list) else []

    def peek_flash(self, queue: str = "") -> list:
        """The messages of the flash queue ``queue``, left in place.

        Stored data of another shape (a server-side store can be written by others) reads
        as an empty queue, never as an error.
        """
        messages = self.get(FLASH_KEY_PREFIX + queue, [])
        return messages if isinstance(messages, list) else []

    def new_csrf_token(self) -> str:
        """A fresh CSRF token, stored in the session."""
        token = self[CSRF_TOKEN_KEY] = secrets.token_hex(20)
        return token

    def stored_csrf_token(self) -> str | None:
        """The session's CSRF token, or None when it holds none that is ASCII text
        (Pyramid compares tokens as Latin-1 bytes)."""
        token = self.get(CSRF_TOKEN_KEY)
        valid = isinstance(token, str) and token.isascii() and token
        return token if valid else None

    def get_csrf_token(self) -> str:
        """The session's CSRF token, made on first use, or when the stored one is not valid."""
        return self.stored_csrf_token() or self.new_csrf_token()


class SessionCSRFPolicy(SessionCSRFStoragePolicy):
    """Pyramid's session CSRF policy, with the token kept and checked by the session.

    Pyramid's own policy reads the stored token as it is; the session's
    ``get_csrf_token`` replaces one that is not text, so damaged data is a 400, not a 500.
    """

    def new_csrf_token(self, request: Request) -> str:
        """A fresh token, stored in the session."""
        return request.session.new_csrf_token()

    def get_csrf_token(self, request: Request) -> str:
        """The session's token, made on first use."""
        return request.session.get_csrf_token()

    def check_csrf_token(self, request: Request, supplied_token: str) -> bool:
        """Whether ``supplied_token`` is the session's token; never when it has none.

        Pyramid's own check makes a token when the session has none, which changes the
        session: its 400 page would then send a new session cookie. A POST from another
        site comes without the cookie (SameSite=Lax), and the browser would store that new
        cookie over the user's own, ending their session.
        """
        if request.session.stored_csrf_token() is None:
            return False
        return super().check_csrf_token(request, supplied_token)
