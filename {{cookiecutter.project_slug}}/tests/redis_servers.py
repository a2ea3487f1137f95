"""The private Redis deployments the tests start: one server, a Sentinel group, a Cluster,
a TLS server, each on free loopback ports, with nothing written to disk, and stopped by
PID; and the sessions stored in Redis as another program sees them.

Written here rather than taken from pytest-redis, which starts single servers: these tests
also need Sentinel groups, Clusters and TLS, and servers stopped and started mid-test.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from {{ cookiecutter.project_slug }}.sessions.redis.scripts import MOVED_FIELD
from {{ cookiecutter.project_slug }}.sessions.redis.store import KEY_PREFIX

REDIS_URL_ENV = "TEST_REDIS_URL"


# Loopback only, nothing written to disk, quiet.
PRIVATE_SERVER_OPTIONS = ["--bind", "127.0.0.1", "--appendonly", "no", "--loglevel", "warning"]


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private, throw-away redis-server on a free loopback port, stopped by PID.

    ``options`` come last on the command line (the last of a repeated option wins);
    ``config`` is a file read first (a sentinel's); ``directory`` holds whatever the
    server writes (a Cluster's nodes file, a replica's copy, a sentinel's rewrites).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        options: Sequence[str] = (),
        config: Path | None = None,
        directory: Path | None = None,
        url: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.options = list(options)
        self.config = config
        self.directory = directory
        self.url = url or f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def command(self, executable: str) -> list[str]:
        """The redis-server command line."""
        config = [str(self.config)] if self.config else []
        directory = ["--dir", str(self.directory)] if self.directory else []
        return [
            executable,
            *config,
            *["--port", str(self.port), "--save", "", *PRIVATE_SERVER_OPTIONS],
            *directory,
            *self.options,
        ]

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail(
                f"redis-server not found: install it (apt-get install redis-server) "
                f"or point {REDIS_URL_ENV} at a Redis server you own"
            )
        self.process = subprocess.Popen(self.command(executable), stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    pytest.fail(f"redis-server did not start on port {self.port}")
                time.sleep(0.05)
        client.close()
        return self

    def client(self) -> redis.Redis:
        """A new client of this server (use it in a ``with`` block)."""
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=1)

    def stop(self) -> None:
        """Stop the server by its PID and wait for it to exit."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """Stop the server at once, as a crash would (SIGKILL), and wait for it to exit."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def started(running: contextlib.ExitStack, server: RedisServer) -> RedisServer:
    """Start ``server``, to be stopped by PID when ``running`` closes (also on failure)."""
    running.callback(server.stop)
    return server.start()


def wait_until(condition: Callable[[], object], what: str, seconds: float = 20) -> None:
    """Poll ``condition`` (a Redis error counts as not yet) until it holds."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {seconds} s waiting for {what}")
        time.sleep(0.05)


def info(server: RedisServer, section: str) -> dict:
    """One section of the server's INFO."""
    with server.client() as client:
        return client.info(section)


SENTINEL_SERVICE = "sessions"


# Quick to notice a dead primary, and quick to give up a failover that stalls.
SENTINEL_CONFIG = """\
sentinel myid {myid}
sentinel monitor {service} 127.0.0.1 {primary_port} 2
sentinel down-after-milliseconds {service} 1000
sentinel failover-timeout {service} 5000
sentinel parallel-syncs {service} 1
"""


# A primary waits 5 s by default before it sends its first copy to a replica.
NO_DELAY = ["--repl-diskless-sync-delay", "0"]


# What a sentinel would otherwise learn in its first seconds (sentinels announce themselves
# every 2 s): the other sentinels, so that they can agree on a failover at once.
KNOWN_SENTINEL = "sentinel known-sentinel {service} 127.0.0.1 {port} {myid}\n"


@dataclass
class SentinelDeployment:
    """A primary, its replica and three sentinels that watch them."""

    primary: RedisServer
    replica: RedisServer
    sentinels: list[RedisServer]
    service: str = SENTINEL_SERVICE

    @property
    def addresses(self) -> str:
        """The sentinels, as ``session.redis_sentinels`` lists them."""
        return " ".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)

    def settings(self) -> dict:
        """The app's settings for this deployment."""
        return {
            "session.redis_url": "",
            "session.redis_sentinels": self.addresses,
            "session.redis_sentinel_service": self.service,
        }

    def primary_ports(self) -> set[int]:
        """The primary's port, as the sentinels tell clients now: in SENTINEL MASTER, from
        the end of a failover (+switch-master) on, and only while they see it up."""
        ports = set()
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(self.service)
            if state["is_master"] and not (state["is_sdown"] or state["is_odown"]):
                ports.add(int(state["port"]))
        return ports

    def ready(self) -> bool:
        """Whether every sentinel knows the others and the replica, and the replica is
        in sync: only then can the sentinels agree on a failover."""
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(self.service)
            if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                return False
        return info(self.replica, "replication").get("master_link_status") == "up"


def sentinel_servers(directory: Path, primary_port: int, count: int = 3) -> list[RedisServer]:
    """Sentinels watching the primary on ``primary_port`` that know each other, their
    config files in ``directory``."""
    myids: dict[int, str] = {}
    while len(myids) < count:  # ports not in use yet: the same one may come twice
        myids[free_port()] = secrets.token_hex(20)
    servers = []
    for port, myid in myids.items():
        config = directory / f"sentinel-{port}.conf"
        config.write_text(
            SENTINEL_CONFIG.format(myid=myid, service=SENTINEL_SERVICE, primary_port=primary_port)
            + "".join(
                KNOWN_SENTINEL.format(service=SENTINEL_SERVICE, port=other, myid=other_id)
                for other, other_id in myids.items()
                if other != port
            )
        )
        sentinel = RedisServer(port, config=config, directory=directory, options=["--sentinel"])
        servers.append(sentinel)
    return servers


CLUSTER_BUS_OFFSET = 10000  # a Cluster node also listens on its port + 10000


CLUSTER_OPTIONS = [
    *["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"],
    *["--cluster-require-full-coverage", "no"],
]


def port_is_free(port: int) -> bool:
    """Whether nothing listens on ``port`` of the loopback interface."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A free loopback port whose Cluster bus port is free too."""
    for _ in range(100):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET <= 65535 and port_is_free(port + CLUSTER_BUS_OFFSET):
            return port
    pytest.fail("no free port pair for a Cluster node")


@dataclass
class ClusterDeployment:
    """Three Cluster primaries (no replicas): each holds a third of the slots."""

    nodes: list[RedisServer]

    def settings(self) -> dict:
        """The app's settings for this deployment: any one node names the Cluster."""
        return {"session.redis_url": self.nodes[0].url, "session.redis_cluster": "true"}

    def healthy(self) -> bool:
        """Whether every node runs and sees a Cluster of three with every slot served."""
        for node in self.nodes:
            if node.process is None:
                return False
            with node.client() as client:
                state = client.execute_command("CLUSTER INFO")
            seen = [state[name] for name in ("cluster_state", "cluster_known_nodes")]
            if seen != ["ok", "3"] or state["cluster_slots_ok"] != "16384":
                return False
        return True


def cluster_node(directory: Path) -> RedisServer:
    """A Cluster node in a directory of its own, where it keeps its nodes file."""
    port = free_cluster_port()
    node_directory = directory / f"node-{port}"
    node_directory.mkdir()
    options = [*CLUSTER_OPTIONS, "--cluster-config-file", f"nodes-{port}.conf"]
    return RedisServer(port, directory=node_directory, options=options)


def openssl(*arguments: str | Path) -> None:
    """Run openssl; fail the test run with its output when it fails."""
    executable = shutil.which("openssl")
    if executable is None:
        pytest.fail("openssl not found: install it (apt-get install openssl)")
    done = subprocess.run(
        [executable, *map(str, arguments)], capture_output=True, text=True, check=False
    )
    if done.returncode:
        pytest.fail(f"openssl {arguments[0]} failed:\n{done.stderr}")


EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A throw-away certificate authority: its certificate and key."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    openssl(
        *["req", "-x509", *EC_KEY, "-keyout", key, "-out", cert, "-days", "2"],
        *["-subj", f"/CN={name}", "-addext", "keyUsage = critical, keyCertSign, cRLSign"],
    )
    return cert, key


def make_server_certificate(directory: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost signed by ``ca``, and its key."""
    cert, key, request = (directory / f"server.{end}" for end in ("crt", "key", "csr"))
    extensions = directory / "server.ext"
    extensions.write_text(SERVER_EXTENSIONS)
    openssl("req", "-new", *EC_KEY, "-keyout", key, "-out", request, "-subj", "/CN=127.0.0.1")
    openssl(
        *["x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial"],
        *["-out", cert, "-days", "2", "-extfile", extensions],
    )
    return cert, key


def tls_url(port: int, ca_certificate: Path) -> str:
    """A ``rediss://`` URL that trusts only ``ca_certificate``."""
    return f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={quote(str(ca_certificate))}"


@dataclass
class TLSDeployment:
    """A server that speaks TLS only, the CA that signed its certificate, and another."""

    server: RedisServer
    ca: Path
    wrong_ca: Path

    def settings(self, ca: Path | None = None) -> dict:
        """The app's settings for this server, trusting ``ca`` (the right one by default)."""
        return {"session.redis_url": tls_url(self.server.port, ca or self.ca)}


def is_moved_marker(client: redis.Redis, key: bytes) -> bool:
    """Whether ``key`` holds the marker a login leaves under a session's old id."""
    return client.type(key) == b"hash" and bool(client.hexists(key, MOVED_FIELD))


class StoredSessions:
    """The sessions in Redis as another program sees them."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def ids(self) -> list[str]:
        """The ids of the stored sessions (not the markers logins leave)."""
        keys = self.client.scan_iter(f"{KEY_PREFIX}*")
        return [
            key.decode().removeprefix(KEY_PREFIX)
            for key in keys
            if not is_moved_marker(self.client, key)
        ]

    def field(self, session_id: str, name: str) -> bytes:
        """One field of the session's hash."""
        return self.client.hget(KEY_PREFIX + session_id, name)

    def counter(self, session_id: str) -> int:
        """The session's visit counter."""
        return int(self.field(session_id, "count:visits"))

    def created(self, session_id: str) -> int:
        """When the session was created (Redis's clock)."""
        return int(self.field(session_id, "created"))

    def data(self, session_id: str) -> dict:
        """The session's data."""
        return json.loads(self.field(session_id, "data"))

    def set_data(self, session_id: str, text: str) -> None:
        """Overwrite the session's data, as a bug or another program might."""
        self.client.hset(KEY_PREFIX + session_id, "data", text)

    def state(self, session_id: str) -> dict:
        """Everything stored for the session."""
        return self.client.hgetall(KEY_PREFIX + session_id)

    def expire(self, session_id: str) -> None:
        """Let the session's idle timeout pass: Redis deletes the hash."""
        self.client.pexpire(KEY_PREFIX + session_id, 1)
        time.sleep(0.01)

    def delete_all(self) -> None:
        """Delete every session, as "forget" in every tab would."""
        self.client.delete(*[KEY_PREFIX + session_id for session_id in self.ids()])
