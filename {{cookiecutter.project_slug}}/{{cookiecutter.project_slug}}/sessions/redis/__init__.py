"""The Redis store, on one server, Sentinel or a Cluster: what the session engine uses of it.

settings.py reads the ``session.redis_*`` settings; client.py makes the client, scripts.py
holds the Lua scripts; store.py puts them together.
"""

from .store import STORE_ERRORS, RedisStore, error_reason, make_redis_store, make_store

__all__ = ["STORE_ERRORS", "RedisStore", "error_reason", "make_redis_store", "make_store"]
