"""The Redis client for the deployment ``settings.py`` describes: one server (TLS with
``rediss://``), a primary watched by Sentinel (failover followed without a restart), or a
Cluster; every call gives up after the socket timeout.
"""

from __future__ import annotations

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
