"""Watch the config, rule files and feed files for edits, so saved changes go live.

Editors save in many ways (write in place, write-and-rename, delete and
recreate), so the watch is on the directories, filtered to the files the
config's globs select now (a new file matching a glob counts too).
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import AsyncIterator
from pathlib import Path

import watchfiles

from monitor.config import Config

DEBOUNCE_MS = 200


def _patterns(cfg: Config) -> tuple[str, ...]:
    """The globs whose files are loaded: rule packs and feed lists."""
    return (*cfg.rules, *cfg.feed_files)


def watched_dirs(cfg: Config) -> list[Path]:
    dirs: dict[Path, None] = {}
    for pattern in _patterns(cfg):
        p = Path(pattern)
        base = p if p.is_absolute() else cfg.base_dir / p
        # The deepest directory without wildcards.
        parts = base.parts
        i = next((n for n, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts))
        d = Path(*parts[:i]) if i < len(parts) else base.parent
        dirs.setdefault(d.resolve(), None)
    if cfg.source:
        dirs.setdefault(cfg.source.parent.resolve(), None)
    return [d for d in dirs if d.is_dir()]


def is_relevant(cfg: Config, changed: Path) -> bool:
    """Is ``changed`` the config file or a file the rule or feed globs select?"""
    changed = changed.resolve() if changed.exists() else changed
    if cfg.source and changed == cfg.source.resolve():
        return True
    for pattern in _patterns(cfg):
        p = Path(pattern)
        base = p if p.is_absolute() else cfg.base_dir / p
        if fnmatch.fnmatch(str(changed), str(base.resolve())) or changed == base.resolve():
            return True
    return False


async def changes(cfg: Config, stop: asyncio.Event) -> AsyncIterator[set[Path]]:
    """Yield the set of relevant changed paths after each burst of edits."""
    dirs = watched_dirs(cfg)
    if not dirs:
        return
    async for batch in watchfiles.awatch(
        *dirs, debounce=DEBOUNCE_MS, step=50, stop_event=stop, recursive=False
    ):
        paths = {Path(p) for _change, p in batch}
        relevant = {p for p in paths if is_relevant(cfg, p)}
        if relevant:
            yield relevant
