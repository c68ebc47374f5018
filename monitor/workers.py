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
from typing import Any, Generic, Literal, TypeVar

import pebble

T = TypeVar("T")

# What page extraction and text signatures run: forkserver workers start with
# these already imported.
EXTRACTION_PRELOAD = ("monitor.extract", "monitor.minhash", "trafilatura")
PARSING_PRELOAD = ("monitor.feedparse",)


@dataclass(frozen=True)
class Task(Generic[T]):
    """A worker function named ``"module:function"``: imported in the worker, never here."""

    path: str

    def resolve(self) -> Callable[..., T]:
        module, _, name = self.path.partition(":")
        fn: Callable[..., T] = getattr(importlib.import_module(module), name)
        return fn


def _call(path: str, *args: Any) -> Any:
    """Runs in the worker: the module is imported (or already preloaded) there."""
    return Task[Any](path).resolve()(*args)


class TaskTimeout(Exception):
    """The task ran longer than its limit; its worker was killed."""


class WorkerPool:
    def __init__(
        self,
        workers: int,
        max_tasks: int,
        *,
        preload: tuple[str, ...] = EXTRACTION_PRELOAD,
        start: Literal["forkserver", "spawn"] = "forkserver",
    ) -> None:
        """``forkserver`` (the default): workers start clean, not as forks of a
        threaded daemon, from a server that has ``preload`` imported, so a
        worker recycled after ``max_tasks`` starts in milliseconds instead of
        importing trafilatura again (about a second). There is one server per
        process: the first pool to start it sets what it preloads.

        ``spawn``: each worker is a fresh interpreter that imports only what
        its tasks need. For the feed-parsing process: a fork of the server
        would carry trafilatura and numpy it never uses, about 15 MB more.

        Either way each worker re-runs the program's main script
        (multiprocessing does); the ``feed-monitor`` script imports only
        monitor/__main__.py, which is kept tiny."""
        ctx = multiprocessing.get_context(start)
        if start == "forkserver":
            ctx.set_forkserver_preload(list(preload))
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
        start (and the forkserver to import trafilatura, about a second) and
        for the lazy state the warm-up tasks load."""
        runs = [self.run(t, timeout_s=timeout_s) for t in tasks for _ in range(self.workers)]
        await asyncio.gather(*runs)

    def close(self) -> None:
        self._pool.stop()  # type: ignore[no-untyped-call]
        self._pool.join(timeout=10)
