"""Process pools for CPU-bound steps (feed parsing, page extraction, text signatures).

feedparser and trafilatura hold the GIL for tens of milliseconds to seconds,
so they run in worker processes. pebble kills a task that exceeds its time
limit and replaces the worker, and recycles workers after N tasks, which
bounds trafilatura's memory growth.

The daemon names what its workers run by path (``Task``), so it never
imports the libraries only they need: numpy, feedparser, lxml and
trafilatura would add about 30 MB to the daemon for nothing.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pebble

T = TypeVar("T")


@dataclass(frozen=True)
class Task(Generic[T]):
    """A worker function named ``"module:function"``: imported in the worker, never here."""

    path: str

    def resolve(self) -> Callable[..., T]:
        module, _, name = self.path.partition(":")
        fn: Callable[..., T] = getattr(importlib.import_module(module), name)
        return fn


def _call(path: str, *args: Any) -> Any:
    """Runs in the worker: the module is imported there, on the first task."""
    return Task[Any](path).resolve()(*args)


class TaskTimeout(Exception):
    """The task ran longer than its limit; its worker was killed."""


class WorkerPool:
    def __init__(self, workers: int, max_tasks: int) -> None:
        """Workers are spawned: fresh interpreters, not forks of a threaded
        daemon, that import only what their tasks need (``Task`` names the
        module), so a feed-parsing worker never loads trafilatura or numpy.

        Why not a forkserver with trafilatura preloaded (the earlier design)?
        Its workers shared its pages only until they did real work: the
        tree's PSS came out the same (bench/polling.py, 231 MB either way)
        while the server was one more 50 MB process. The price of spawning:
        a recycled worker takes about 0.3 s to start (a new interpreter
        importing trafilatura), not milliseconds, once per ``max_tasks``
        tasks; bench/pipeline.py did not see it (medians 0.87 and 0.90 of
        bare trafilatura, against 0.85 and 0.86 with the forkserver).

        Each worker re-runs the program's main script (multiprocessing does);
        the ``feed-monitor`` script imports only monitor/__main__.py, which is
        kept tiny."""
        ctx = multiprocessing.get_context("spawn")
        self._pool = pebble.ProcessPool(max_workers=workers, max_tasks=max_tasks, context=ctx)
        self.workers = workers
        self.pending = 0  # tasks handed in and not yet finished (running or queued)

    async def run(self, fn: Callable[..., T] | Task[T], *args: Any, timeout_s: float) -> T:
        if isinstance(fn, Task):
            name = fn.path
            future = self._pool.schedule(_call, args=(fn.path, *args), timeout=timeout_s)
        else:
            name = fn.__name__
            future = self._pool.schedule(fn, args=args, timeout=timeout_s)
        self.pending += 1
        try:
            result: T = await asyncio.wrap_future(future)
        except FutureTimeout:
            raise TaskTimeout(f"{name} took longer than {timeout_s:g} s") from None
        except asyncio.CancelledError:
            future.cancel()  # type: ignore[no-untyped-call]
            raise
        finally:
            self.pending -= 1
        return result

    async def warm(self, *tasks: Task[Any], timeout_s: float = 120.0) -> None:
        """Start every worker and run each of ``tasks`` once per worker, before
        real work arrives: otherwise the first tasks wait for the workers to
        start (a new interpreter importing trafilatura) and for the lazy state
        the warm-up tasks load."""
        runs = [self.run(t, timeout_s=timeout_s) for t in tasks for _ in range(self.workers)]
        await asyncio.gather(*runs)

    def close(self) -> None:
        self._pool.stop()  # type: ignore[no-untyped-call]
        self._pool.join(timeout=10)
