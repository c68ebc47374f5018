"""How long does a config of many feeds take to load? (issue 8: "tens of thousands of feeds")

``load_config`` on generated configs of 1,000 to 30,000 feeds (block style,
three keys each, as a user or an OPML import writes them), three ways: as
the daemon does (libyaml, which PyYAML's wheels carry, and the garbage
collector paused while the nodes are built); PyYAML's own parser, paused;
and the baseline, as before: PyYAML's own parser with the collector
running. The ratio is the baseline's time over the daemon's. The daemon
loads its config at start and on every reload (in a thread, but parsing
holds the GIL, so the event loop slows meanwhile). Best of ``--repeat``
runs each.

    .venv/bin/python bench/configload.py [--feeds 1000,10000,30000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor import yamlsource
from monitor.config import load_config


def write_config(directory: Path, feeds: int) -> Path:
    lines = [f"state_dir: {directory / 'state'}", "feeds:"]
    for k in range(feeds):
        lines += [f"  - name: feed-{k}", f"    url: https://news{k}.example.org/rss.xml",
                  "    interval_s: 900"]  # fmt: skip
    path = directory / f"feeds-{feeds}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


Loader = type[yaml.CSafeLoader] | type[yaml.SafeLoader]
# name -> (parser, collector paused while parsing)
WAYS: dict[str, tuple[Loader, bool]] = {
    "libyaml, paused (used)": (yaml.CSafeLoader, True),
    "pure-Python, paused": (yaml.SafeLoader, True),
    "pure-Python, running (before)": (yaml.SafeLoader, False),
}

PAUSED = yamlsource._collector_paused


@contextlib.contextmanager
def _collector_running() -> Iterator[None]:
    """As before: the collector left alone."""
    yield


def best_load_s(path: Path, loader: Loader, paused: bool, repeat: int) -> float:
    # The two choices this bench compares.
    yamlsource._Loader = loader
    yamlsource._collector_paused = PAUSED if paused else _collector_running
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        cfg = load_config(path)
        best = min(best, time.perf_counter() - started)
    assert len(cfg.feeds) > 0
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--feeds", default="1000,10000,30000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not yaml.__with_libyaml__:
        sys.exit("this PyYAML has no libyaml: nothing to compare")
    print("seconds to load, best of", args.repeat)
    print(f"{'feeds':>7} " + " ".join(f"{w:>30}" for w in WAYS) + f" {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.feeds.split(",")):
            path = write_config(Path(tmp), n)
            secs = [best_load_s(path, *way, args.repeat) for way in WAYS.values()]
            cols = " ".join(f"{x:>30.2f}" for x in secs)
            print(f"{n:>7,} {cols} {secs[-1] / secs[0]:>5.1f}x", flush=True)


if __name__ == "__main__":
    main()
