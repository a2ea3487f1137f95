"""Who is signed in: Pyramid's security policy, the password hashes, and the users.

The policy keeps the signed-in user's id in the session, under ``auth.userid``, through
Pyramid's ``SessionAuthenticationHelper`` (as the Pyramid 2 wiki tutorial does). Views use
Pyramid's API: ``request.authenticated_userid``, ``remember(request, userid)`` and
``forget(request)``; ``login_views.py`` has the sign-in form and the sign-out button.

The two users, ``editor`` and ``viewer``, are the quick tutorial's demo users, kept here
as password hashes only, and let in only where ``auth.demo_users = true`` (development.ini;
production.ini keeps them out). They are placeholders: ``check_credentials`` is the one
function to replace with a look-up in your own user store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from pyramid.authentication import SessionAuthenticationHelper
from pyramid.authorization import ACLHelper, Allow, Authenticated, Everyone
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.security import Allowed, Denied
from pyramid.settings import asbool

# Passwords are hashed with scrypt from the standard library: no new dependency, and
# scrypt is memory-hard (each guess costs 16 MiB as well as time, which makes guessing on
# GPUs and special hardware expensive). n=2**14, r=8, p=1 are the parameters recommended
# for interactive logins: about 50 ms a hash. Each hash keeps its own parameters, so that
# raising them later still verifies the hashes made before.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
# The memory scrypt may take: four times what n=2**14, r=8 needs (128 * n * r bytes, 16
# MiB), room for a higher n later. OpenSSL refuses to go past it (ValueError).
SCRYPT_MAX_MEMORY = 64 * 1024 * 1024

# The quick tutorial's demo users (the password is the user name), hashed once with
# hash_password() (README.md, "Sign in and out", shows the command): no file of the app
# holds their passwords. Placeholders: check_credentials says what replaces them.
DEMO_USERS: dict[str, str] = {
    "editor": (
        "scrypt:16384:8:1$Q6ij7ad1PY6RkHGlvVD4ow==$ZnL/+KuMDsAynuwQLBr1/oqrKVspfyyefyYYK3ij3a0="
    ),
    "viewer": (
        "scrypt:16384:8:1$kaeOIvggi+XnIerp1rzEyg==$o9auqM0hArZEd0h0DYUcE34nMeqNwi9FHsveclrv2lg="
    ),
}
# The setting that lets the demo users sign in: true in development.ini, false in
# production.ini (their passwords are in every copy of this project).
DEMO_USERS_SETTING = "auth.demo_users"
# The hash of a random password nobody knows, with the same parameters: an unknown user
# is checked against it, so that a sign-in takes as long whether the user exists or not.
DUMMY_HASH = (
    "scrypt:16384:8:1$gahkpAfhzxP/4ZA8G0EdIQ==$l6jLB9IxtiKUb+pCIoIXvS5rAHErUVXj15B0LitV6JU="
)


def scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    """The scrypt hash of ``password`` (as UTF-8) with ``salt`` and the cost ``n, r, p``."""
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=SCRYPT_MAX_MEMORY,
        dklen=HASH_BYTES,
    )


def to_text(data: bytes) -> str:
    """``data`` as base64 text, for a hash string."""
    return base64.b64encode(data).decode("ascii")


def from_text(text: str) -> bytes:
    """The bytes ``to_text`` made ``text`` of."""
    return base64.b64decode(text, validate=True)


def hash_password(password: str) -> str:
    """``password`` hashed for storage, with a new random salt, as
    ``scrypt:<n>:<r>:<p>$<salt>$<hash>`` (salt and hash in base64): what a user store
    keeps, never the password itself."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}${to_text(salt)}${to_text(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` (a hash_password result) was made of.

    The comparison takes as long wherever the hashes differ (``hmac.compare_digest``): an
    attacker timing the answers learns nothing about the stored hash.
    """
    method, salt, expected = stored.split("$")
    name, n, r, p = method.split(":")
    if name != "scrypt":
        raise ValueError(f"not a hash of hash_password(): {name!r}")
    digest = scrypt(password, from_text(salt), int(n), int(r), int(p))
    return hmac.compare_digest(digest, from_text(expected))


def demo_users(request: Request) -> dict[str, str]:
    """The demo users where the settings let them in (``auth.demo_users``), else none."""
    return DEMO_USERS if asbool(request.registry.settings.get(DEMO_USERS_SETTING)) else {}


def kept_out(request: Request, userid: str) -> bool:
    """Whether ``userid`` is a demo user where the settings keep them out: a session signed
    in as one before (an earlier release let them in under production.ini) is signed in
    no more."""
    return userid in DEMO_USERS and not demo_users(request)


def check_credentials(request: Request, login: str, password: str) -> str | None:
    """The id of the user who signs in with ``login`` and ``password``, or None.

    Replace this with your own user store: find the user by ``login``, then return
    ``str(user.id)`` when ``verify_password(password, user.password_hash)``. Keep the
    dummy check for a user that is not found: without it, an unknown user is answered
    50 ms sooner, which tells an attacker which user names exist.
    """
    stored = demo_users(request).get(login)
    matches = verify_password(password, DUMMY_HASH if stored is None else stored)
    return login if stored is not None and matches else None


# The permission of the pages only a signed-in user may see (/sessions): a view asks for
# it with ``permission=SIGNED_IN``, and its route's context, SignedInPages, grants it.
SIGNED_IN = "signed-in"


class SignedInPages:
    """The context of routes for signed-in users only (``factory=`` of a route, as
    routes.py does for /sessions): Pyramid's security policy reads its ``__acl__``, and a
    visitor who asks is sent to sign in (login_views.py's forbidden view)."""

    __acl__ = ((Allow, Authenticated, SIGNED_IN),)

    def __init__(self, request: Request) -> None:
        self.request = request


class SecurityPolicy:
    """Pyramid's security policy (set in ``includeme``): the user's id lives in the session.

    Signing in and out changes the session; ``login_views.py`` renews it as it does, so
    that a session id or CSRF token seen before the sign-in is worth nothing after it.
    """

    def __init__(self) -> None:
        self.helper = SessionAuthenticationHelper()
        self.acl = ACLHelper()

    def identity(self, request: Request) -> str | None:
        """The signed-in user's id (``request.identity``), or None for a visitor."""
        userid = self.helper.authenticated_userid(request)
        if not isinstance(userid, str):  # a session's data may be damaged
            return None
        return None if kept_out(request, userid) else userid

    def authenticated_userid(self, request: Request) -> str | None:
        """The signed-in user's id (``request.authenticated_userid``), or None."""
        return self.identity(request)

    def principals(self, request: Request) -> list[str]:
        """Who the request acts as, for ACLs: everyone, and the user when signed in."""
        userid = self.authenticated_userid(request)
        if userid is None:
            return [Everyone]
        return [Everyone, Authenticated, f"user:{userid}"]

    def permits(self, request: Request, context: object, permission: str) -> Allowed | Denied:
        """Whether the request may ``permission`` on ``context``: its ``__acl__`` says,
        as in the quick tutorial's authorization step (no view of the app asks yet)."""
        return self.acl.permits(context, self.principals(request), permission)

    def remember(self, request: Request, userid: str, **kw: object) -> list:
        """Keep ``userid`` in the session (call ``regenerate_session`` first)."""
        return self.helper.remember(request, userid, **kw)

    def forget(self, request: Request, **kw: object) -> list:
        """Drop the user's id from the session."""
        return self.helper.forget(request, **kw)


def includeme(config: Configurator) -> None:
    """Set the security policy, and add the sign-in and sign-out views."""
    config.set_security_policy(SecurityPolicy())
    config.scan(".login_views")
