"""A guard that fails a test when anything holds the event loop too long.

It times every callback the loop runs (task steps included) and keeps those
that used more than ``threshold_s`` of the loop thread's CPU, or held the
loop more than ``wall_s`` by the clock (a blocking sleep or I/O uses no CPU).
CPU-bound work (feed parsing, extraction) belongs in worker processes, and
matching in a thread, never on the loop.

Why CPU time and not asyncio debug mode's wall-clock timing, which this
guard used first: on a busy machine, or while a matching thread holds the
GIL, a cheap step can take 0.2 s on the clock while using 10 ms of CPU;
debug mode failed the test about every second run on such a machine.
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import TracebackType
from typing import Any


class LoopGuard:
    def __init__(self, threshold_s: float, wall_s: float | None = None) -> None:
        self.threshold_s = threshold_s
        self.wall_s = wall_s if wall_s is not None else 5 * threshold_s
        self.slow: list[str] = []
        self._original: Any = None

    def __enter__(self) -> LoopGuard:
        loop_thread = threading.get_ident()
        original = self._original = asyncio.events.Handle._run
        guard = self

        def timed_run(handle: asyncio.Handle) -> None:
            if threading.get_ident() != loop_thread:
                original(handle)
                return
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                original(handle)
            finally:
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                if cpu > guard.threshold_s or wall > guard.wall_s:
                    guard.slow.append(f"{handle!r} used {cpu:.3f} s of CPU in {wall:.3f} s")

        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign,assignment]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
