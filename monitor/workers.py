"""A process pool for CPU-bound steps (feed parsing, page extraction).

feedparser and trafilatura hold the GIL for tens of milliseconds to seconds,
so they run in worker processes. pebble kills a task that exceeds its time
limit and replaces the worker, and recycles workers after N tasks, which
bounds trafilatura's memory growth.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import pebble

T = TypeVar("T")

PRELOAD = ("monitor.extract", "monitor.feedparse", "trafilatura")


class TaskTimeout(Exception):
    """The task ran longer than its limit; its worker was killed."""


class WorkerPool:
    def __init__(self, workers: int, max_tasks: int) -> None:
        # forkserver: workers start clean, not as forks of a threaded daemon.
        ctx = multiprocessing.get_context("forkserver")
        # The server preloads only what tasks run, so a worker recycled after
        # ``max_tasks`` starts in milliseconds instead of importing
        # trafilatura again (about a second). Each worker still re-runs the
        # program's main script (multiprocessing does); the ``feed-monitor``
        # script imports only monitor/__main__.py, which is kept tiny.
        ctx.set_forkserver_preload(list(PRELOAD))
        self._pool = pebble.ProcessPool(max_workers=workers, max_tasks=max_tasks, context=ctx)
        self.workers = workers
        self.pending = 0  # tasks handed in and not yet finished (running or queued)

    async def run(self, fn: Callable[..., T], *args: Any, timeout_s: float) -> T:
        future = self._pool.schedule(fn, args=args, timeout=timeout_s)
        self.pending += 1
        try:
            result: T = await asyncio.wrap_future(future)
        except FutureTimeout:
            raise TaskTimeout(f"{fn.__name__} took longer than {timeout_s:g} s") from None
        except asyncio.CancelledError:
            future.cancel()  # type: ignore[no-untyped-call]
            raise
        finally:
            self.pending -= 1
        return result

    def close(self) -> None:
        self._pool.stop()  # type: ignore[no-untyped-call]
        self._pool.join(timeout=10)
