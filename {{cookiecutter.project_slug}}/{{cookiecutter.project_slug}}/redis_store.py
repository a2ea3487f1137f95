"""The Redis side of the sessions: the client, the Lua scripts, one round trip each.

The client follows the deployment that ``redis_settings`` describes: one server (TLS with
``rediss://``), a primary watched by Sentinel (failover followed without a restart), or a
Cluster. Every script touches one key, so it runs in a Cluster too; regenerate moves a
session between slots in two scripts. The client is made on first use, so the app starts
(and answers 503) while Redis is down. ``end_all_sessions`` (clear-sessions --all) ends
every session on every server that holds some.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from .redis_settings import RedisSettings, read_redis_settings
from .settings import SessionSettings

# What a failing or unreachable Redis raises: the 503 page answers them all. A Cluster
# client that cannot reach any node raises the one that is no RedisError.
STORE_ERRORS = (redis.RedisError, RedisClusterException)
HEALTH_CHECK_SECONDS = 30
# Keys per SCAN call, and per pipeline of scripts, when every session is ended.
SCAN_BATCH = 1000

KEY_PREFIX = "{{ cookiecutter.project_slug }}:session:"
COUNTER_FIELD = "counter"
# The marker a login leaves under a session's old key: its new key (and its creation time).
MOVED_FIELD = "moved_to"
# The Lua every script starts with. A session is one hash: "data" (JSON), "created" (epoch
# seconds, from Redis's clock, set once when the hash is made) and "counter" (HINCRBY).
# KEYS[1] is the session's hash; ARGV[1] and ARGV[2] the idle and absolute timeouts.
SCRIPT_PRELUDE = """
local key, idle, lifetime = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])

local function now()
  return tonumber(redis.call("TIME")[1])
end

-- A whole number of at most 18 digits: HINCRBY never overflows it.
local function whole(value)
  return type(value) == "string" and #value <= 18 and string.find(value, "^%-?%d+$") ~= nil
end

-- {data, created} of the live session, its expiry renewed, or false when there is none.
-- A hash of any other shape, or older than the absolute timeout, is deleted: it becomes
-- a fresh session, never an error that repeats on every request.
local function live()
  local stored = redis.pcall("HMGET", key, "data", "created", "counter")
  if stored.err then
    redis.call("DEL", key)
    return false
  end
  local data, created, counter = stored[1], stored[2], stored[3]
  if not (data or created or counter) then
    return false
  end
  local age = whole(created) and now() - tonumber(created)
  if not (data and age and age >= -60 and age <= lifetime and (not counter or whole(counter))) then
    redis.call("DEL", key)
    return false
  end
  redis.call("EXPIRE", key, math.max(1, math.min(idle, lifetime - age)))
  return {data, created}
end

-- Whether this request may write the session: a new one (ARGV[3] == "1", a random id
-- made by this request, whose hash is created here) or one still live. A session
-- revoked or expired while a request used it is never brought back.
local function writable(new)
  if new == "1" then
    redis.call("HSETNX", key, "created", now())
    redis.call("EXPIRE", key, idle)
    return true
  end
  return live() ~= false
end
"""
SCRIPTS = {
    "load": "return live()",
    "load_and_count": """
local session = live()
if session then session[3] = redis.call("HINCRBY", key, "counter", 1) end
return session
""",
    "count": """
if not writable(ARGV[3]) then return false end
return redis.call("HINCRBY", key, "counter", 1)
""",
    "save": """
if not writable(ARGV[4]) then return 0 end
redis.call("HSET", key, "data", ARGV[3])
return 1
""",
    # regenerate, in two steps, since in a Cluster the old and the new id live in other
    # slots (RENAME across slots fails): take the live session out (it is revoked at once,
    # so no request can bring it back), then put it in under the new, random id (ARGV[3]
    # is its key). Data, counter, creation time and remaining lifetime move together. The
    # old key becomes a marker of where the session went, for an idle timeout: no request
    # reads it as a session (it has no data), and clear-sessions --all, whose SCAN may
    # have passed the new key already, finds it under the old name and follows it.
    "detach": """
local session = live()
if not session then return false end
local fields = redis.call("HGETALL", key)
table.insert(fields, 1, redis.call("PTTL", key))
redis.call("DEL", key)
redis.call("HSET", key, "moved_to", ARGV[3], "moved_created", session[2])
redis.call("EXPIRE", key, idle)
return fields
""",
    "adopt": """
redis.call("HSET", key, unpack(ARGV, 4))
redis.call("PEXPIRE", key, ARGV[3])
return 1
""",
    # clear-sessions --all, for one key: 1 when it deleted a session, 0 when it kept one
    # created after the cutoff (ARGV[3]) by this server's clock (a creation time ahead of
    # the clock, or of no sane shape, cannot be told from an old session's: that goes),
    # -1 when there is no key; for the marker of an older session a login moved, the key
    # it went to.
    "end": """
local function made_after_cutoff(created)
  return whole(created) and tonumber(created) > tonumber(ARGV[3]) and tonumber(created) <= now()
end
if redis.call("EXISTS", key) == 0 then return -1 end
local marker = redis.pcall("HMGET", key, "moved_to", "moved_created")
if marker[1] then
  if made_after_cutoff(marker[2]) then return 0 end
  return marker[1]
end
if made_after_cutoff(redis.pcall("HGET", key, "created")) then return 0 end
return redis.call("DEL", key)
""",
}
NEW, EXISTING = "1", "0"  # ARGV[3] of count, ARGV[4] of save
ENDED, ABSENT = 1, -1  # what the "end" script says of a key, besides 0 (kept) or a marker


def error_reason(error: Exception) -> str:
    """What a log line says of a Redis error: redis-py's message (it names no key)."""
    return str(error)


def session_key(session_id: str) -> str:
    """The Redis key of a session's hash."""
    return KEY_PREFIX + session_id


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


def make_redis_client(settings: RedisSettings) -> redis.Redis | RedisCluster:
    """A pooled client for the deployment that gives up after the socket timeout."""
    timeouts = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_timeout,
    }
    if settings.topology == "sentinel":
        sentinel = Sentinel(
            list(settings.sentinels),
            sentinel_kwargs={**timeouts, "password": settings.sentinel_password},
            **timeouts,
        )
        return sentinel.master_for(
            settings.sentinel_service,
            password=settings.password,
            health_check_interval=HEALTH_CHECK_SECONDS,
            **timeouts,
        )
    if settings.topology == "cluster":
        # No retries: a hung node must cost its sessions one socket timeout, not eleven.
        return RedisCluster.from_url(settings.url, retry=Retry(NoBackoff(), 0), **timeouts)
    return redis.Redis.from_url(
        settings.url, health_check_interval=HEALTH_CHECK_SECONDS, **timeouts
    )


@dataclass(frozen=True)
class LuaScript:
    """One of SCRIPTS with its prelude, and its SHA1 for EVALSHA."""

    source: str
    sha: str

    @classmethod
    def of(cls, body: str) -> LuaScript:
        """The script for ``body``."""
        source = SCRIPT_PRELUDE + body
        return cls(source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())


LUA_SCRIPTS = {name: LuaScript.of(body) for name, body in SCRIPTS.items()}


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

    @property
    def client(self) -> redis.Redis | RedisCluster:
        """The client, made by the first request that needs it."""
        return self.connect_once() if self._client is None else self._client

    def connect_once(self) -> redis.Redis | RedisCluster:
        """Make the client, once for every thread."""
        with self._lock:
            if self._client is None:
                self._client = self.connect()
        return self._client

    def run(self, script: str, keys: list[str], *args: Any) -> Any:
        """Run one of SCRIPTS: one round trip, to the node of its key.

        By SHA; a node that does not know the script yet gets it with EVAL, which also
        caches it there. (redis-py's Script would load it on every Cluster primary, and
        fail while any one of them is down.)
        """
        client = self.client
        lua = LUA_SCRIPTS[script]
        arguments = (len(keys), *keys, self.timeout, self.absolute_timeout, *args)
        try:
            return client.evalsha(lua.sha, *arguments)
        except NoScriptError:
            return client.eval(lua.source, *arguments)

    # The session store: one script, one round trip, for each.
    def load(self, session_id: str) -> list | None:
        """``[data, created]`` of the live session, its expiry renewed, or None."""
        return self.run("load", [session_key(session_id)])

    def load_and_count(self, session_id: str) -> list | None:
        """``[data, created, counter]`` after counting one visit, or None."""
        return self.run("load_and_count", [session_key(session_id)])

    def count(self, session_id: str, new: bool) -> int | None:
        """The counter after one more visit; None when the session is gone."""
        return self.run("count", [session_key(session_id)], NEW if new else EXISTING)

    def save(self, session_id: str, data: bytes, new: bool) -> None:
        """Store the session's JSON data, unless it was revoked meanwhile."""
        self.run("save", [session_key(session_id)], data, NEW if new else EXISTING)

    def delete(self, session_id: str) -> None:
        """Revoke the session."""
        self.client.delete(session_key(session_id))

    def reset_counter(self, session_id: str) -> None:
        """Set the visit counter back to zero."""
        self.client.hdel(session_key(session_id), COUNTER_FIELD)

    def move(self, old_id: str, new_id: str) -> bool:
        """Move the live session to ``new_id``: detach revokes the old id at once, adopt
        puts it in under the new one (in a Cluster, the two live in other slots)."""
        moved = self.run("detach", [session_key(old_id)], session_key(new_id))
        if moved:
            self.run("adopt", [session_key(new_id)], *moved)
        return bool(moved)

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
        while moved:
            time.sleep(self.socket_timeout)
            followed = [self.follow(key, cutoff) for key in moved]
            ended += sum(outcome == ENDED for outcome, _ in followed)
            moved = [key for outcome, key in followed if outcome == ABSENT and key is not None]
        return ended

    def follow(self, key: bytes, cutoff: int) -> tuple[int, bytes | None]:
        """End the session a marker leads to, along every later move at once: what the
        "end" script says of it, and, if it was reached through a marker found just now
        and is not there, its key: its move may be on its way still (look again later)."""
        outcome, moved_now = self.run("end", [key], cutoff), None
        while isinstance(outcome, bytes):
            key = moved_now = outcome
            outcome = self.run("end", [key], cutoff)
        return outcome, moved_now

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
