"""Inputs for the ``match`` and ``extract`` commands: files, URLs, JSONL.

Runs the daemon's own code (fetch, extraction workers, matcher) on many
inputs in one process, so the evaluation tools measure what the daemon does.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from monitor.bodychoice import PageText
from monitor.config import Config
from monitor.entries import Entry
from monitor.errors import ConfigError, Problem
from monitor.explain import explain, jsonl_result
from monitor.extract import extract_page
from monitor.fetch import HttpLimits, fetch, make_session
from monitor.matching import Story, match_story
from monitor.rules import RuleSet
from monitor.workers import WorkerPool

_HTML_SUFFIXES = (".html", ".htm", ".xhtml")


@dataclass(frozen=True)
class _Doc:
    source: str
    title: str
    text: str
    lang: str | None
    date: str | None


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


async def _load_docs(cfg: Config | None, sources: list[str]) -> list[_Doc]:
    html_jobs: list[tuple[str, bytes]] = []
    docs: dict[str, _Doc] = {}
    urls = [s for s in sources if _is_url(s)]
    if urls:
        c = cfg or Config()
        limits = HttpLimits.from_settings(c.http)
        async with make_session(limits, c.http.concurrency, c.http.max_idle_connections) as session:
            for u in urls:
                result = await fetch(session, u, limits, max_bytes=c.http.max_page_bytes)
                html_jobs.append((u, result.body))
    for s in sources:
        if _is_url(s):
            continue
        path = Path(s)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise ConfigError([Problem(s, None, None, "", f"cannot read: {exc}")]) from None
        if path.suffix.lower() in _HTML_SUFFIXES:
            html_jobs.append((s, data))
        else:
            title, _, body = data.decode("utf-8", errors="replace").partition("\n")
            docs[s] = _Doc(s, title.strip(), body.strip(), None, None)
    if html_jobs:
        c = cfg or Config()
        pool = WorkerPool(min(len(html_jobs), 4), c.extraction.max_tasks_per_worker)
        try:
            pages: list[PageText] = await asyncio.gather(
                *(
                    pool.run(
                        extract_page,
                        data,
                        src if _is_url(src) else None,
                        c.extraction.max_html_bytes,
                        timeout_s=c.extraction.timeout_s,
                    )
                    for src, data in html_jobs
                )
            )
        finally:
            await asyncio.to_thread(pool.close)
        for (src, _), page in zip(html_jobs, pages, strict=True):
            docs[src] = _Doc(src, page.title, page.text, page.lang, page.date)
    return [docs[s] for s in sources]


def extract_inputs(cfg: Config | None, sources: list[str]) -> list[dict[str, Any]]:
    docs = asyncio.run(_load_docs(cfg, sources))
    return [
        {"source": d.source, "title": d.title, "text": d.text, "lang": d.lang, "date": d.date}
        for d in docs
    ]


def _entry(source: str, title: str) -> Entry:
    return Entry(source, f"cli:{source}", title, None, "", "", datetime.now(UTC))


def _jsonl_lines(stream: TextIO, ruleset: RuleSet, file: str) -> Iterator[str]:
    for n, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            story = Story(str(item.get("title") or ""), "", str(item.get("text") or ""))
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ConfigError([Problem(file, n, None, "", f"not a JSON object: {exc}")]) from None
        results = match_story(story, ruleset, all_rules=False)
        yield json.dumps(jsonl_result(item.get("id"), results), ensure_ascii=False)


def match_inputs(
    cfg: Config, ruleset: RuleSet, sources: list[str], jsonl: str | None, *, explain_: bool
) -> Iterator[str]:
    if jsonl:
        if jsonl == "-":
            yield from _jsonl_lines(sys.stdin, ruleset, "<stdin>")
        else:
            with open(jsonl, encoding="utf-8") as fh:
                yield from _jsonl_lines(fh, ruleset, jsonl)
    if not sources:
        return
    for doc in asyncio.run(_load_docs(cfg, sources)):
        story = Story(doc.title, "", doc.text)
        results = match_story(story, ruleset)
        if explain_:
            yield explain(story, results, doc.source)
        else:
            yield json.dumps(jsonl_result(doc.source, results), ensure_ascii=False)
