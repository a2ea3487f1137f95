"""The Redis client for the deployment ``settings.py`` describes: one server (TLS with
``rediss://``), a primary watched by Sentinel (failover followed without a restart), or a
Cluster; every call gives up after the socket timeout. The store's scripts go out on a
connection of each thread's own (``ThreadConnections``).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from .settings import RedisSettings

HEALTH_CHECK_SECONDS = 30


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


class ThreadConnections:
    """Each thread's own connection, made as ``pool`` makes its connections (its class
    and settings), for the store's scripts.

    redis-py's client checks a connection out of its pool and back in for every command,
    and looks for unread data on it first (a non-blocking recv): 55 µs of the counter
    page's round trip (BENCHMARKS.md). Here a thread sends on a connection of its own. The
    connection is redis-py's, with the client's settings (timeouts, TLS, health checks,
    Sentinel's primary looked up at each connect); a failure other than Redis's own answer
    closes it, as the client closes its connections, and the thread's next command
    connects anew. A thread that ends takes its connection with it; a process forked from
    this one starts with none (its parent's sockets are not its own).
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self.pool = pool
        self.start_afresh()
        after_fork = weakref.WeakMethod(self.start_afresh)
        os.register_at_fork(after_in_child=lambda: call_if_alive(after_fork))

    def start_afresh(self) -> None:
        """No connection yet, in any thread."""
        self.local = threading.local()

    def send(self, *command: Any) -> Any:
        """Send ``command`` on this thread's connection; Redis's reply."""
        connection = self.connection()
        try:
            connection.send_command(*command)
            return connection.read_response()
        except redis.ResponseError:
            raise  # Redis answered, in full: the connection is in step
        except BaseException:
            # Anything else may leave a reply unread, to be taken for the next one's.
            self.local.connection = None
            connection.disconnect()
            raise

    def connection(self) -> redis.connection.AbstractConnection:
        """This thread's connection, in step with Redis; a new one if it has none that is.
        (Not the pool's make_connection(): it counts its connections against a limit, and
        these never go back to it.)"""
        connection = getattr(self.local, "connection", None)
        if connection is not None and in_step(connection):
            return connection
        self.local.connection = None
        if connection is not None:
            connection.disconnect()
        connection = self.pool.connection_class(**self.pool.connection_kwargs)
        connection.connect()  # Sentinel's connections look the primary up here
        self.local.connection = connection
        return connection


def in_step(connection: redis.connection.AbstractConnection) -> bool:
    """Whether nothing waits on ``connection``: no data, and no end from the server (a
    restart, a failover, a timeout of its own). A connection that idled in this state is
    found here, before a command goes out on it, as the pool finds one it hands out: a
    command sent on it would fail, and no one could tell whether it ran."""
    try:
        return not connection.can_read()
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def command_sender(client: redis.Redis | RedisCluster) -> Callable[..., Any]:
    """What sends a command for the store's scripts: a connection per thread for one
    server or Sentinel's primary; the client itself for a Cluster, which finds the node of
    the command's key."""
    if isinstance(client, RedisCluster):
        return client.execute_command
    return ThreadConnections(client.connection_pool).send


def call_if_alive(method: weakref.WeakMethod) -> None:
    """Call ``method`` unless its object is gone (a fork handler must not keep it)."""
    bound = method()
    if bound is not None:
        bound()
