"""The embedded Redis: starts, persists, dies with its parent, never orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from monitor.embedded_redis import EmbeddedRedis, _alive
from monitor.errors import RedisUnavailable


def client(sock: Path) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(sock), socket_timeout=2, decode_responses=True)


def wait_for(pred: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_starts_on_socket_with_aof_and_data_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "s"
    with EmbeddedRedis(state) as url:
        assert url == f"unix://{state / 'redis.sock'}"
        c = client(state / "redis.sock")
        assert c.config_get("appendonly") == {"appendonly": "yes"}
        c.set("k", "v")
        c.close()
    assert not (state / "redis.sock").exists() or not _alive_socket(state / "redis.sock")
    with EmbeddedRedis(state):
        c = client(state / "redis.sock")
        assert c.get("k") == "v"
        c.close()


def _alive_socket(sock: Path) -> bool:
    try:
        return bool(client(sock).ping())
    except (redis.RedisError, OSError):
        return False


def test_second_owner_is_refused_but_others_share(tmp_path: Path) -> None:
    state = tmp_path / "s"
    with EmbeddedRedis(state):
        with (
            pytest.raises(RedisUnavailable, match="another feed-monitor daemon"),
            EmbeddedRedis(state, own=True),
        ):
            pass
        with EmbeddedRedis(state, own=False) as url:
            assert url.endswith("redis.sock")
            assert _alive_socket(state / "redis.sock")
        # The sharer leaving does not stop the owner's server.
        assert _alive_socket(state / "redis.sock")


CHILD = """
import sys, time
from pathlib import Path
from monitor.embedded_redis import EmbeddedRedis
with EmbeddedRedis(Path(sys.argv[1])):
    print("ready", flush=True)
    time.sleep(600)
"""


def test_server_dies_with_parent_on_sigkill(tmp_path: Path) -> None:
    state = tmp_path / "s"
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "ready"
        pid = int((state / "redis.pid").read_text())
        assert _alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert wait_for(lambda: not _alive(pid)), "redis-server outlived a kill -9 of its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout:
            parent.stdout.close()


def test_leftover_server_is_replaced(tmp_path: Path) -> None:
    """A redis-server from an earlier run (no parent-death link) is shut down."""
    from monitor.embedded_redis import find_redis_server

    state = tmp_path / "s"
    state.mkdir()
    sock = state / "redis.sock"
    orphan = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--unixsocket", str(sock), "--save", "",
         "--pidfile", str(state / "redis.pid"), "--dir", str(state)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_for(lambda: (state / "redis.pid").exists() and _alive_socket(sock))
        with EmbeddedRedis(state):
            assert orphan.wait(timeout=15) is not None
            new_pid = int((state / "redis.pid").read_text())
            assert new_pid != orphan.pid
            assert _alive_socket(sock)
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_too_long_socket_path_is_a_clear_error(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    with pytest.raises(RedisUnavailable, match="too long"), EmbeddedRedis(deep):
        pass
    assert os.path.isdir(deep)
