"""The Redis store: what the session engine asks of a store, one script per round trip.

The client (client.py) is made on first use, so the app starts (and answers 503) while
Redis is down; regenerate moves a session between slots in two scripts (scripts.py).
``end_all_sessions`` (clear-sessions --all) ends every session on every server that holds
some.

Each user who signed in has an index of their sessions: a sorted set under
``<slug>:user:<userid>:sessions``, scored by each session's absolute end and expiring
with the last one. The session's hash stays the truth (its ``user`` field says whose it
is; deleting it revokes it): the index only says where to look, so it is kept in round
trips of its own (in a Cluster, it lives in another slot than the sessions). A session
enters it only once its hash exists, so an entry whose hash is gone is gone for good:
reading the index drops it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException

from ..settings import SessionSettings
from .client import command_sender, make_redis_client
from .scripts import (
    ABSENT,
    CLIENT_FIELD,
    COUNTER_PREFIX,
    ENDED,
    EXISTING,
    LUA_SCRIPTS,
    NEW,
    USER_FIELD,
)
from .settings import RedisSettings, read_redis_settings

log = logging.getLogger(__name__)

# What a failing or unreachable Redis raises: the 503 page answers them all. A Cluster
# client that cannot reach any node raises the one that is no RedisError.
STORE_ERRORS = (redis.RedisError, RedisClusterException)
# The most entries of a user's index a sign-in checks (the oldest first), so that its cost
# stays bounded however many sessions the user keeps.
PRUNED_AT_SIGN_IN = 100
# Keys per SCAN call, and per pipeline of scripts, when every session is ended.
SCAN_BATCH = 1000
KEY_PREFIX = "{{ cookiecutter.project_slug }}:session:"
USER_KEY_PREFIX = "{{ cookiecutter.project_slug }}:user:"
# What PTTL says of a key that does not exist.
NO_KEY = -2


def error_reason(error: Exception) -> str:
    """What a log line says of a Redis error: redis-py's message (it names no key)."""
    return str(error)


def session_key(session_id: str) -> str:
    """The Redis key of a session's hash."""
    return KEY_PREFIX + session_id


def user_key(userid: str) -> str:
    """The Redis key of a user's index of sessions."""
    return f"{USER_KEY_PREFIX}{userid}:sessions"


def ids_in(members: list[bytes]) -> list[str]:
    """The session ids among a user's index's ``members``: session ids are ASCII, and
    another writer's entry of other bytes names no session."""
    return [member.decode() for member in members if member.isascii()]


def in_batches(keys: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    """``keys`` in lists of ``size`` (the last one shorter)."""
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class RedisStore:
    """The Redis client every request shares, how long sessions live, and the scripts."""

    def __init__(
        self,
        connect: Callable[[], redis.Redis | RedisCluster],
        timeout: int,
        absolute_timeout: int,
        socket_timeout: float = 1.0,
    ) -> None:
        self.connect = connect
        self.timeout = timeout
        self.absolute_timeout = absolute_timeout
        self.socket_timeout = socket_timeout
        self._client: redis.Redis | RedisCluster | None = None
        self._lock = threading.Lock()
        # What sends the scripts' commands, once the client is made (connect_once).
        self.send: Callable[..., Any] = self.connect_and_send

    @property
    def client(self) -> redis.Redis | RedisCluster:
        """The client, made by the first request that needs it."""
        return self.connect_once() if self._client is None else self._client

    def connect_once(self) -> redis.Redis | RedisCluster:
        """Make the client (and what sends the scripts), once for every thread."""
        with self._lock:
            if self._client is None:
                client = self.connect()
                self.send = command_sender(client)
                self._client = client
        return self._client

    def connect_and_send(self, *command: Any) -> Any:
        """Make the client, then send ``command`` as every later one is sent."""
        self.connect_once()
        return self.send(*command)

    def run(self, script: str, keys: list[str], *args: Any) -> Any:
        """Run one of SCRIPTS: one round trip, to the node of its key (on this thread's
        connection: client.py).

        By SHA; a node that does not know the script yet gets it with EVAL, which also
        caches it there. (redis-py's Script would load it on every Cluster primary, and
        fail while any one of them is down.)
        """
        lua = LUA_SCRIPTS[script]
        arguments = (len(keys), *keys, self.timeout, self.absolute_timeout, *args)
        try:
            return self.send("EVALSHA", lua.sha, *arguments)
        except NoScriptError:
            return self.send("EVAL", lua.source, *arguments)

    # The session store: one script, one round trip, for each.
    def load(self, session_id: str) -> list | None:
        """``[data, created]`` of the live session, its expiry renewed, or None."""
        return self.run("load", [session_key(session_id)])

    def load_and_increment(self, session_id: str, name: str, by: int) -> list | None:
        """``[data, created, value]`` after adding ``by`` to the counter ``name``, or None."""
        key, field = session_key(session_id), COUNTER_PREFIX + name
        return self.run("load_and_increment", [key], field, by)

    def increment(self, session_id: str, name: str, by: int, new: bool) -> int | None:
        """The counter ``name`` plus ``by``; None when the session is gone."""
        key, field = session_key(session_id), COUNTER_PREFIX + name
        value = self.run("increment", [key], field, by, NEW if new else EXISTING)
        return None if value is None else int(value)  # the script answers in text

    def save(
        self, session_id: str, data: bytes, new: bool, owner: tuple[str, str] | None = None
    ) -> None:
        """Store the session's JSON data, and its owner when given, unless it was revoked
        meanwhile."""
        self.run("save", [session_key(session_id)], data, NEW if new else EXISTING, *owner or ())

    def delete(self, session_id: str) -> None:
        """Revoke the session."""
        self.client.delete(session_key(session_id))

    def reset_counter(self, session_id: str, name: str) -> None:
        """Set the counter ``name`` back to zero."""
        self.client.hdel(session_key(session_id), COUNTER_PREFIX + name)

    def move(self, old_id: str, new_id: str) -> bool:
        """Move the live session to ``new_id``: detach revokes the old id at once, adopt
        puts it in under the new one (in a Cluster, the two live in other slots)."""
        moved = self.run("detach", [session_key(old_id)], session_key(new_id))
        if moved:
            self.run("adopt", [session_key(new_id)], *moved)
            self.index_moved(new_id, dict(zip(moved[1::2], moved[2::2], strict=True)))
        return bool(moved)

    def index_moved(self, new_id: str, fields: dict[bytes, bytes]) -> None:
        """Put a moved session in its user's index, if it has a user: after it is in place
        (until then, the marker under its old id, which the index holds, leads to it)."""
        user = fields.get(USER_FIELD.encode())
        if user is not None:
            self.bind(new_id, user.decode(), int(fields[b"created"]))

    # the user's sessions
    def bind(self, session_id: str, userid: str, created: int) -> None:
        """Put the session, which exists, in ``userid``'s index (its hash names the user
        when its data is saved next), and drop the entries of the user's sessions that
        have ended since (signed out, idle too long), up to PRUNED_AT_SIGN_IN of the
        oldest: the index holds the live sessions and those that ended after the last
        sign-in. One round trip for a user's first session; one more (two if some
        ended) when there are others."""
        end = created + self.absolute_timeout
        members = self.run("index_add", [user_key(userid)], session_id, end, PRUNED_AT_SIGN_IN)
        others = [other for other in ids_in(members) if other != session_id]
        if others:
            self.drop_ended(userid, others)

    def drop_ended(self, userid: str, indexed: list[str]) -> None:
        """Drop the ``indexed`` entries of ``userid``'s index whose session is gone.

        Housekeeping, never a reason to fail the sign-in: a Cluster node that does not
        answer (it holds one of the sessions) leaves the entries for a later sign-in.
        """
        pipeline = self.client.pipeline(transaction=False)
        for session_id in indexed:
            pipeline.exists(session_key(session_id))
        try:
            found = pipeline.execute()
            gone = [sid for sid, there in zip(indexed, found, strict=True) if not there]
            self.unindex(userid, gone)
        except STORE_ERRORS as error:
            log.warning("the user's index was not pruned: %s", error_reason(error))

    def unindex(self, userid: str, session_ids: list[str]) -> None:
        """Drop ``session_ids`` from ``userid``'s index (none: no round trip)."""
        if session_ids:
            self.client.zrem(user_key(userid), *session_ids)

    def indexed(self, userid: str) -> tuple[int, list[str]]:
        """The clock, and the ids in ``userid``'s index (those past their end dropped)."""
        now, members = self.run("index_read", [user_key(userid)])
        return int(now), ids_in(members)

    def user_sessions(self, userid: str) -> list[tuple[str, int, int, bytes | None]]:
        """``(session_id, created, expiry, client record)`` of ``userid``'s live sessions:
        the index's entries whose hash is there and names the user. Entries whose hash is
        gone leave the index."""
        now, session_ids = self.indexed(userid)
        if not session_ids:
            return []
        pipeline = self.client.pipeline(transaction=False)
        for session_id in session_ids:
            pipeline.hmget(session_key(session_id), USER_FIELD, "created", CLIENT_FIELD)
            pipeline.pttl(session_key(session_id))
        replies = pipeline.execute()
        rows, gone = [], []
        for session_id, fields, pttl in zip(session_ids, replies[::2], replies[1::2], strict=True):
            user, created, client = fields
            if pttl == NO_KEY:
                gone.append(session_id)
            elif user == userid.encode() and self.before_its_end(created, now):
                rows.append((session_id, int(created), now + pttl // 1000, client))
        self.unindex(userid, gone)
        return rows

    def before_its_end(self, created: bytes | None, now: int) -> bool:
        """Whether a session created at ``created`` (as its hash holds it) is short of its
        absolute end (a damaged one is not: its next request deletes it)."""
        return (created or b"").isdigit() and int(created) + self.absolute_timeout > now

    def end_user_session(self, userid: str, session_id: str) -> bool:
        """Revoke the session if it is ``userid``'s (wherever a login moved it)."""
        return self.end_owned(userid, [session_id], None) == 1

    def end_user_sessions(self, userid: str, keep: str | None = None) -> int:
        """Revoke every session in ``userid``'s index but ``keep``; how many there were."""
        _, session_ids = self.indexed(userid)
        return self.end_owned(userid, [sid for sid in session_ids if sid != keep], keep)

    def end_owned(self, userid: str, session_ids: list[str], keep: str | None) -> int:
        """Delete the sessions of ``session_ids`` that are ``userid``'s, following the
        markers of logins that moved them (never to ``keep``), then drop them from the
        index; how many were deleted."""
        kept = session_key(keep) if keep else ""
        keys = [session_key(session_id) for session_id in session_ids]
        seen: set[bytes] = set()
        followed = [self.follow(key, "end_owned", userid, kept, seen=seen) for key in keys]
        ended = sum(outcome == ENDED for outcome, _ in followed)
        moved = [key for outcome, key in followed if outcome == ABSENT and key is not None]
        ended += self.follow_moves(moved, "end_owned", userid, kept)
        self.unindex(userid, session_ids)
        return ended

    # clear-sessions --all
    def end_all_sessions(self) -> int:
        """Delete every session that exists now; how many there were.

        SCAN finds every key that is there for the whole scan; the script deletes the
        sessions made up to the start, by the latest clock of the servers, and keeps those
        made meanwhile. A login moves a session to a key that SCAN may have passed, but
        leaves a marker under the old one, which SCAN finds: the sessions the markers lead
        to are ended once their move is complete (a socket timeout later, at the latest).
        """
        servers = self.servers()
        cutoff = max(int(server.time()[0]) for server in servers)
        ended, moved = self.sweep(servers, cutoff)
        return ended + self.follow_moves(moved, "end", cutoff)

    def follow_moves(self, moved: list[bytes], script: str, *args: Any) -> int:
        """End the sessions the markers of logins lead to (``moved``: their keys, found
        absent), once their moves are complete (a socket timeout later, at the latest);
        how many ended."""
        ended = 0
        while moved:
            time.sleep(self.socket_timeout)
            followed = [self.follow(key, script, *args) for key in moved]
            ended += sum(outcome == ENDED for outcome, _ in followed)
            moved = [key for outcome, key in followed if outcome == ABSENT and key is not None]
        return ended

    def follow(
        self, key: bytes | str, script: str, *args: Any, seen: set[bytes] | None = None
    ) -> tuple[int, bytes | None]:
        """End the session under ``key`` with ``script`` ("end" or "end_owned"), along
        every move of it at once: what the script says of it, and, if it was reached
        through a marker found just now and is not there, its key: its move may be on its
        way still (look again later).

        ``seen`` holds the keys the walks of one call have visited: a walk stops at one
        (as if kept: the other walk ended it), so that a user's index, which names every
        key a sign-in left a marker under, costs a round trip per key, not per key and
        each key after it.
        """
        seen = set() if seen is None else seen
        moved_now = None
        while True:
            name = key.encode() if isinstance(key, str) else key
            if name in seen:
                return 0, None
            seen.add(name)
            outcome = self.run(script, [key], *args)
            if not isinstance(outcome, bytes):
                return outcome, moved_now
            key = moved_now = outcome

    def servers(self) -> list[redis.Redis]:
        """A client of each server that holds sessions: the one server, Sentinel's
        primary, or each primary of the Cluster (SCAN runs on one server)."""
        client = self.client
        if isinstance(client, RedisCluster):
            return [client.get_redis_connection(node) for node in client.get_primaries()]
        return [client]

    def sweep(self, servers: list[redis.Redis], cutoff: int) -> tuple[int, list[bytes]]:
        """Delete the sessions made up to ``cutoff`` on ``servers``: how many, and the
        keys the markers of moved sessions lead to."""
        script, ended, moved = LUA_SCRIPTS["end"], 0, []
        for server in servers:
            server.script_load(script.source)
            keys = server.scan_iter(match=f"{KEY_PREFIX}*", count=SCAN_BATCH)
            for batch in in_batches(keys, SCAN_BATCH):
                pipeline = server.pipeline(transaction=False)
                for key in batch:
                    pipeline.evalsha(
                        script.sha, 1, key, self.timeout, self.absolute_timeout, cutoff
                    )
                outcomes = pipeline.execute()
                ended += sum(outcome == ENDED for outcome in outcomes)
                moved += [outcome for outcome in outcomes if isinstance(outcome, bytes)]
        return ended, moved

    def close(self) -> None:
        """Close the client's connections (a command's last step)."""
        if self._client is not None:
            self._client.close()

    # /readyz
    def ping(self) -> None:
        """One PING, the cheapest round trip: to the one server, to Sentinel's primary, or
        to one node of a Cluster (redis-py's default node: while that node is down, until
        the Cluster fails over to its replica, the other nodes' sessions work but this
        fails). Raises the store's errors within the socket timeout, as every call does."""
        self.client.ping()


def make_redis_store(settings: RedisSettings, timeout: int, absolute_timeout: int) -> RedisStore:
    """The store for ``settings``; it connects on first use."""
    return RedisStore(
        lambda: make_redis_client(settings), timeout, absolute_timeout, settings.socket_timeout
    )


def make_store(
    settings: Mapping[str, str], environ: Mapping[str, str], session: SessionSettings
) -> RedisStore:
    """The store the ``session.redis_*`` settings and the environment describe."""
    redis_settings = read_redis_settings(settings, environ)
    return make_redis_store(redis_settings, session.timeout, session.absolute_timeout)
