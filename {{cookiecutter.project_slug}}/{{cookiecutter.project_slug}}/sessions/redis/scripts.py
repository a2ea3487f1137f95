"""The Lua scripts the store runs in Redis: each one round trip, on one key.

A session is one hash; every script checks that it is live (not expired, not past its
absolute lifetime, of a sane shape) before it renews or writes it, so a session revoked or
expired while a request used it is never brought back. Every script touches one key, so
it runs in a Cluster too: a user's index of sessions (a sorted set) is another key, in
another slot, kept by scripts of its own in round trips of their own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# A counter's field in the session's hash: its name after this prefix.
COUNTER_PREFIX = "count:"
# The marker a login leaves under a session's old key: its new key (and its creation time).
MOVED_FIELD = "moved_to"
# The fields a sign-in adds to a session's hash: whose it is, and the client record.
USER_FIELD, CLIENT_FIELD = "user", "client"
# The Lua every script starts with. A session is one hash: "data" (JSON), "created" (epoch
# seconds, from Redis's clock, set once when the hash is made) and a field per counter
# ("count:<name>", HINCRBY). KEYS[1] is the session's hash; ARGV[1] and ARGV[2] the idle
# and absolute timeouts.
SCRIPT_PRELUDE = """
local key, idle, lifetime = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])

local function now()
  return tonumber(redis.call("TIME")[1])
end

-- A whole number of at most 18 digits (and a sign), written as HINCRBY takes it (no
-- leading zero, no "-0"): HINCRBY by a step of at most 13 digits never overflows it.
local function whole(value)
  if type(value) ~= "string" then return false end
  local canonical = value == "0" or string.find(value, "^%-?[1-9]%d*$") ~= nil
  return canonical and #value <= 18 + (string.sub(value, 1, 1) == "-" and 1 or 0)
end

-- {data, created} of the live session, its expiry renewed, or false when there is none.
-- A hash of any other shape, or older than the absolute timeout, is deleted: it becomes
-- a fresh session, never an error that repeats on every request.
local function live()
  local stored = redis.pcall("HMGET", key, "data", "created")
  if stored.err then
    redis.call("DEL", key)
    return false
  end
  local data, created = stored[1], stored[2]
  if not (data or created) then
    return false
  end
  local age = whole(created) and now() - tonumber(created)
  if not (data and age and age >= -60 and age <= lifetime) then
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

-- The counter field plus the step, or false (the session deleted) when the field holds
-- no whole number or the sum would not be one: another writer's doing, a corrupt session.
local function increment(field, step)
  local value = redis.call("HGET", key, field)
  if value and not whole(value) then
    redis.call("DEL", key)
    return false
  end
  redis.call("HINCRBY", key, field, step)
  -- Read back as text: HINCRBY's reply becomes a Lua number, a float past 2**53.
  value = redis.call("HGET", key, field)
  if not whole(value) then
    redis.call("DEL", key)
    return false
  end
  return value
end
"""
SCRIPTS = {
    "load": "return live()",
    # ARGV[3] the counter's field, ARGV[4] the step (ARGV[5] of increment: new or not).
    "load_and_increment": """
local session = live()
if not session then return false end
session[3] = increment(ARGV[3], ARGV[4])
return session[3] and session
""",
    "increment": """
if not writable(ARGV[5]) then return false end
return increment(ARGV[3], ARGV[4])
""",
    # ARGV[5] and ARGV[6], when given: the user a sign-in bound the session to, and the
    # client record ("" for none).
    "save": """
if not writable(ARGV[4]) then return 0 end
redis.call("HSET", key, "data", ARGV[3])
if ARGV[5] then
  redis.call("HSET", key, "user", ARGV[5], "client", ARGV[6])
end
return 1
""",
    # regenerate, in two steps, since in a Cluster the old and the new id live in other
    # slots (RENAME across slots fails): take the live session out (it is revoked at once,
    # so no request can bring it back), then put it in under the new, random id (ARGV[3]
    # is its key). Data, counters, creation time and remaining lifetime move together. The
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
    # A user's index, KEYS[1] a sorted set of session ids scored by their absolute end
    # (no session lives past it): add ARGV[3] with the score ARGV[4], drop the entries
    # past their end, let the whole set expire with its last session, and return the
    # ARGV[5] entries that end first (the oldest: a bounded piece of work, however many
    # sessions the user has). A value of another type there is another writer's:
    # replaced, as index_read passes over it.
    "index_add": """
local kind = redis.call("TYPE", key).ok
if kind ~= "zset" and kind ~= "none" then redis.call("DEL", key) end
redis.call("ZADD", key, ARGV[4], ARGV[3])
redis.call("ZREMRANGEBYSCORE", key, "-inf", now())
local last = redis.call("ZRANGE", key, -1, -1, "WITHSCORES")
-- pcall: another writer's score (+inf, a fraction) is no time EXPIREAT takes.
if last[2] then redis.pcall("EXPIREAT", key, last[2]) end
return redis.call("ZRANGE", key, 0, tonumber(ARGV[5]) - 1)
""",
    # The index's entries not past their end (the rest dropped), and the clock.
    "index_read": """
if redis.call("TYPE", key).ok ~= "zset" then return {now(), {}} end
redis.call("ZREMRANGEBYSCORE", key, "-inf", now())
return {now(), redis.call("ZRANGE", key, 0, -1)}
""",
    # End the session under KEYS[1] if it is ARGV[3]'s: 1 when it was deleted, 0 when it is
    # another user's or ARGV[4] (the session to keep), -1 when there is no key; for the
    # marker of a session a login moved, the key it went to. A session in the user's index
    # whose user field is not written yet (a sign-in's save still to come) is theirs.
    "end_owned": """
if key == ARGV[4] then return 0 end
if redis.call("EXISTS", key) == 0 then return -1 end
local fields = redis.pcall("HMGET", key, "moved_to", "user")
if fields.err then return 0 end
if fields[1] then return fields[1] end
if fields[2] and fields[2] ~= ARGV[3] then return 0 end
return redis.call("DEL", key)
""",
}
NEW, EXISTING = "1", "0"  # ARGV[5] of increment, ARGV[4] of save
ENDED, ABSENT = 1, -1  # what the "end" script says of a key, besides 0 (kept) or a marker


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
