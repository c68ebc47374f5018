"""Worker pools: tasks named by path, and what each kind of process carries."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import pkgutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import monitor
import monitor.daemon as daemon_module
from monitor.daemon import WARM_EXTRACTION, WARM_PARSING, Daemon, open_app
from monitor.entries import ParsedFeed
from monitor.rules import load_rules
from monitor.textsig import TextSignature
from monitor.workers import Task, WorkerPool
from tests.conftest import make_config

WORKER_ONLY = ("numpy", "feedparser", "trafilatura")
NOT_IN_THE_DAEMON = (*WORKER_ONLY, "lxml", "charset_normalizer")
URL = "http://news.example/rss"


def loaded(*names: str) -> list[str]:
    """Runs in a worker: which of these modules it has imported."""
    return [n for n in names if n in sys.modules]


def test_the_daemon_does_not_import_what_only_workers_need() -> None:
    # In a fresh interpreter: this test process has imported everything.
    code = "import sys, monitor.daemon, monitor.cli; print(','.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout  # fmt: skip
    modules = set(out.strip().split(","))
    assert "monitor.daemon" in modules
    assert [m for m in NOT_IN_THE_DAEMON if m in modules] == []


def test_every_task_the_package_names_resolves_to_a_function() -> None:
    tasks = []
    for info in pkgutil.iter_modules(monitor.__path__, "monitor."):
        if info.name == "monitor.__main__":
            continue
        module = importlib.import_module(info.name)
        tasks += [v for v in vars(module).values() if isinstance(v, Task)]
    assert {t.path for t in tasks} >= {"monitor.feedparse:parse_feed", "monitor.minhash:signature"}
    for task in tasks:
        assert callable(task.resolve()), task.path


def test_a_task_path_must_name_an_existing_function() -> None:
    with pytest.raises(AttributeError):
        Task[int]("monitor.minhash:no_such_function").resolve()
    with pytest.raises(ModuleNotFoundError):
        Task[int]("monitor.no_such_module:f").resolve()


async def test_a_spawned_worker_imports_only_what_its_tasks_need() -> None:
    pool = WorkerPool(1, max_tasks=10)
    try:
        before = await pool.run(loaded, *WORKER_ONLY, timeout_s=60)
        assert before == []
        parse = Task[ParsedFeed]("monitor.feedparse:parse_feed")
        feed = b"<rss version='2.0'><channel><title>T</title><item><title>A</title></item>"
        parsed = await pool.run(parse, feed + b"</channel></rss>", URL, "f", None, timeout_s=60)
        assert (parsed.title, [e.title for e in parsed.entries]) == ("T", ["A"])
        assert await pool.run(loaded, *WORKER_ONLY, timeout_s=60) == ["feedparser"]
    finally:
        pool.close()


async def test_a_worker_runs_named_tasks_and_returns_their_results() -> None:
    pool = WorkerPool(1, max_tasks=10)
    try:
        sig = Task[TextSignature | None]("monitor.minhash:signature")
        words = " ".join(f"word{i}" for i in range(40))
        first = await pool.run(sig, words, 4, 15, timeout_s=60)
        assert first is not None and first.shingles == 37
        assert first == await pool.run(sig, words, 4, 15, timeout_s=60)
        assert await pool.run(sig, "too short", 4, 15, timeout_s=60) is None
    finally:
        pool.close()


def language_model_loaded() -> bool:
    """Runs in a worker: has it loaded the language model yet?"""
    from monitor import extract

    return extract._IDENTIFIER is not None


async def test_warming_a_pool_loads_what_the_first_extraction_would() -> None:
    cold = WorkerPool(1, max_tasks=10)
    warm = WorkerPool(1, max_tasks=10)
    try:
        assert await cold.run(language_model_loaded, timeout_s=60) is False
        await warm.warm(WARM_EXTRACTION)
        assert await warm.run(language_model_loaded, timeout_s=60) is True
        # Spawned, not forked: an extraction worker carries no feed parser.
        assert "feedparser" not in await warm.run(loaded, *WORKER_ONLY, timeout_s=60)
    finally:
        cold.close()
        warm.close()


async def test_warming_a_parsing_pool_imports_the_feed_parser() -> None:
    pool = WorkerPool(1, max_tasks=10)
    try:
        await pool.warm(WARM_PARSING)
        assert await pool.run(loaded, *WORKER_ONLY, timeout_s=60) == ["feedparser"]
    finally:
        pool.close()


class EventNames(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.names: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.names.append(record.getMessage())


@contextlib.asynccontextmanager
async def ready_daemon(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[Daemon, list[str]]]:
    """A daemon (role all, in this process) once it is READY, and the events it logged."""
    cfg = make_config(tmp_path, [], redis={"url": redis_url})
    handler = EventNames()
    log = logging.getLogger("monitor.daemon")
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
            daemon = Daemon(app)
            run = asyncio.ensure_future(daemon.run())
            try:
                for _ in range(600):  # bounded: 60 s
                    if daemon.scheduler.running or run.done():
                        break
                    await asyncio.sleep(0.1)
                assert daemon.scheduler.running
                yield daemon, handler.names
            finally:
                daemon.stopping.set()
                await asyncio.wait_for(run, timeout=30)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


async def test_the_daemon_warms_its_workers_before_it_is_ready(
    tmp_path: Path, redis_url: str
) -> None:
    async with ready_daemon(tmp_path, redis_url) as (daemon, events):
        assert "workers.started" in events
        pool = daemon.app.pipeline.pool
        assert await pool.run(language_model_loaded, timeout_s=60) is True


async def test_a_slow_worker_start_does_not_hold_back_ready(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon_module, "WARM_LIMIT_S", 0.0)
    async with ready_daemon(tmp_path, redis_url) as (daemon, events):
        assert "workers.slow_start" in events and "workers.started" not in events
        assert daemon._warming  # still warming, in the background
