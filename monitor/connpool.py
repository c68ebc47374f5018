"""An HTTP connector that keeps a bounded number of idle keep-alive connections.

aiohttp keeps every idle connection until its keep-alive timeout, however
many hosts there are. A daemon polling thousands of hosts would hold one
or two idle sockets per host: about 9 KB of memory and a file descriptor
each (bench/polling.py: 2,500 hosts, 19 MB of the daemon's 125), and far
more than the shell's usual limit of 1,024 descriptors. Mature HTTP
clients bound their idle pool (Go's ``MaxIdleConns``, curl's connection
cache); so does this one, keeping the most recently used connections: the
ones a feed's own article pages, fetched right after it, will reuse.

aiohttp has no setting for this, so the connector reads three of its
internals (``_release``, ``_conns``, ``_acquired``). tests/test_connpool.py
checks the cap against a real server, so an aiohttp that changes them
fails the suite rather than the daemon.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey


class IdleCappedConnector(aiohttp.TCPConnector):
    """A TCPConnector with at most ``max_idle`` idle connections, the most recently used."""

    def __init__(self, *, max_idle: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_idle = max_idle
        # Connections in the order they were last released. Entries go stale
        # when aiohttp reuses or closes a connection without telling us; a
        # stale entry is dropped when it reaches the front.
        self._recent: OrderedDict[ResponseHandler, ConnectionKey] = OrderedDict()

    def _release(
        self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False
    ) -> None:
        super()._release(key, protocol, should_close=should_close)
        if not self._is_idle(key, protocol):
            return
        self._recent[protocol] = key
        self._recent.move_to_end(protocol)
        while len(self._recent) > self.max_idle:
            old, old_key = self._recent.popitem(last=False)
            if self._is_idle(old_key, old):
                self._close_idle(old_key, old)

    def idle_count(self) -> int:
        return sum(len(conns) for conns in self._conns.values())

    def _is_idle(self, key: ConnectionKey, protocol: ResponseHandler) -> bool:
        if protocol in self._acquired or not protocol.is_connected():
            return False
        return any(p is protocol for p, _ in self._conns.get(key, ()))

    def _close_idle(self, key: ConnectionKey, protocol: ResponseHandler) -> None:
        conns = self._conns[key]
        for item in conns:
            if item[0] is protocol:
                conns.remove(item)
                break
        if not conns:
            del self._conns[key]
        protocol.close()
