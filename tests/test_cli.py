"""The real ``feed-monitor`` command, run as a subprocess."""

from __future__ import annotations

import asyncio
import http.server
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.servers import NewsSite, page, rss

EXE = str(Path(sys.executable).parent / "feed-monitor")
SEED_TXT = ROOT / "seeds" / "000_79a58b876351234c.txt"


def write_config(tmp_path: Path, feeds: str, extra: str = "") -> Path:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"state_dir: state\n"
        f"rules: ['{ROOT}/config/rules/*.yaml']\n"
        f"http: {{allow_private_addresses: true, "
        f"per_host_spacing_s: 0, per_host_concurrency: 16, timeout_s: 5}}\n"
        f"extraction: {{workers: 1}}\n"
        f"{extra}feeds:\n{feeds}",
        encoding="utf-8",
    )
    return cfg


@pytest.fixture
def site_sync() -> Iterator[str]:
    """A tiny site in a thread, for tests whose subprocess must reach it."""
    home = b'<html><head><link rel="alternate" type="application/rss+xml" href="/feed.xml">'
    feed = rss([{"title": "One", "link": "/one.html", "guid": "1"}]).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = {"/home.html": home, "/feed.xml": feed}.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html" if self.path.endswith("html")
                             else "application/rss+xml")  # fmt: skip
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_help_teaches_every_command() -> None:
    out = run("--help").stdout
    for cmd in ("run", "once", "subscribe", "check", "match", "extract"):
        assert f"  {cmd}" in out
    assert "feed-monitor:alerts" in out
    assert "examples:" in out


def test_once_on_the_seed_feed_flags_the_seed_and_exits_0(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"  - {{name: seeds, url: 'file:{ROOT}/seeds/feed.xml'}}\n")
    res = run("once", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "alert.published rule=sino-russian-military" in res.stderr
    assert res.stderr.count("alert.published") == 1  # the near-miss is not flagged
    assert "once.done feeds=1 failed=0 alerts=1" in res.stderr
    again = run("once", "--config", str(cfg))
    assert again.returncode == 0
    assert "alerts=0" in again.stderr


def test_once_reports_failed_feeds_and_still_exits_0(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        f"  - {{name: seeds, url: 'file:{ROOT}/seeds/feed.xml'}}\n"
        f"  - {{name: missing, url: 'file:{tmp_path}/nope.xml'}}\n",
    )
    res = run("once", "--config", str(cfg))
    assert res.returncode == 0
    assert "feed.failed feed=missing kind=http_404" in res.stderr


def test_check_reports_file_line_and_exits_2(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "concepts:\n  a:\n    terms: {en: [alpha]}\n"
        "rules:\n  - id: r\n    title: R\n    match:\n      all: [a, b]\n",
        encoding="utf-8",
    )
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("rules: [rules.yaml]\nfeeds: []\n", encoding="utf-8")
    res = run("check", "--config", str(cfg))
    assert res.returncode == 2
    assert f"{rules}:8:" in res.stderr
    assert "unknown concept 'b'" in res.stderr


def test_match_jsonl_contract(tmp_path: Path) -> None:
    title, _, body = SEED_TXT.read_text(encoding="utf-8").partition("\n")
    items = tmp_path / "items.jsonl"
    items.write_text(
        json.dumps({"id": "seed", "title": title, "text": body, "lang": "nb"}) + "\n"
        + json.dumps({"id": 7, "title": "Weather", "text": "Rain in Bergen tomorrow."}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    cfg = write_config(tmp_path, "  []\n")
    res = run("match", "--jsonl", str(items), "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    first, second = (json.loads(line) for line in res.stdout.splitlines())
    assert first["id"] == "seed"
    assert first["matched"] is True
    assert first["rules"][0]["id"] == "sino-russian-military"
    assert first["rules"][0]["score"] > 0
    assert first["rules"][0]["terms"]
    assert second == {"id": 7, "matched": False, "rules": []}


def test_match_explain_says_why_not(tmp_path: Path) -> None:
    story = tmp_path / "s.txt"
    story.write_text("China and Russia talk trade\nThe two sides discussed soybeans.\n")
    cfg = write_config(tmp_path, "  []\n")
    res = run("match", "--explain", str(story), "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "sino-russian-military: no match" in res.stdout
    assert "why not:" in res.stdout


def test_extract_jsonl_on_a_local_page() -> None:
    res = run("extract", "--jsonl", str(ROOT / "seeds" / "000_79a58b876351234c.html"))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert set(doc) == {"source", "title", "text", "lang", "date"}
    assert "kamptrening" in doc["text"]
    assert "Forsiden" not in doc["text"]  # navigation is not body text


async def test_daemon_runs_alerts_reach_subscribe_and_sigterm_is_clean(
    tmp_path: Path, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    title, _, body = SEED_TXT.read_text(encoding="utf-8").partition("\n")
    paras = [p for p in body.split("\n\n") if p.strip()]
    news.put_page("/seed.html", page(title, paras, lang="nb"))
    news.put_feed("/feed.xml", rss([{"title": title, "link": f"{base}/seed.html", "guid": "s"}]))
    cfg = write_config(tmp_path, f"  - {{name: local, url: '{base}/feed.xml', interval_s: 1}}\n")
    daemon = await asyncio.create_subprocess_exec(
        EXE, "run", "--config", str(cfg), stderr=asyncio.subprocess.PIPE
    )
    try:
        out = b""
        for _ in range(100):  # the socket appears once the daemon's Redis is up
            sub = await asyncio.create_subprocess_exec(
                EXE, "subscribe", "--json", "--count", "1", "--config", str(cfg),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(sub.communicate(), timeout=30)
            if sub.returncode == 0:
                break
            await asyncio.sleep(0.2)
        alert = json.loads(out)
        assert alert["rule"] == "sino-russian-military"
        assert alert["url"] == f"{base}/seed.html"
        await asyncio.sleep(2.5)  # a few more polls: 304s, no second alert
        assert news.hits["/seed.html"] == 1
        daemon.send_signal(signal.SIGTERM)
        await asyncio.wait_for(daemon.wait(), timeout=30)
        assert daemon.returncode == 0
        assert daemon.stderr is not None
        log = (await daemon.stderr.read()).decode()
        assert log.count("alert.published") == 1
        assert "daemon.stopping signal=SIGTERM" in log
        assert "redis.embedded.stopped" in log
        assert not (tmp_path / "state" / "redis.sock").exists()
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()


def test_status_shows_every_feed_worst_first(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        f"  - {{name: seeds, url: 'file:{ROOT}/seeds/feed.xml'}}\n"
        f"  - {{name: missing, url: 'file:{tmp_path}/nope.xml'}}\n",
    )
    assert run("once", "--config", str(cfg)).returncode == 0
    res = run("status", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:2] == ["FEED", "STATE"]
    assert lines[1].startswith("missing") and "failing" in lines[1]
    rows = [
        json.loads(line)
        for line in run("status", "--json", "--config", str(cfg)).stdout.splitlines()
    ]
    by_name = {r["feed"]: r for r in rows}
    assert by_name["seeds"]["state"] == "ok"
    assert by_name["seeds"]["entries_seen"] >= 2
    assert by_name["seeds"]["alerts"] == 1
    assert by_name["missing"]["error_kind"] == "http_404"


def test_feeds_import_export_and_add(tmp_path: Path, site_sync: str) -> None:
    opml = tmp_path / "subs.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head><title>s</title></head><body>'
        '<outline text="World"><outline text="Local News" type="rss" '
        f'xmlUrl="{site_sync}/feed.xml"/></outline></body></opml>'
    )
    cfg = write_config(tmp_path, "  []\n")
    res = run("feeds", "import", str(opml), "--out", str(tmp_path / "feeds" / "subs.yaml"),
              "--config", str(cfg))  # fmt: skip
    assert res.returncode == 0, res.stderr
    check = run("check", "--config", str(cfg))
    assert "1 feeds" in check.stdout
    exported = run("feeds", "export", "--config", str(cfg)).stdout
    assert f'xmlUrl="{site_sync}/feed.xml"' in exported
    added = run("feeds", "add", f"{site_sync}/home.html", "--config", str(cfg))
    assert added.returncode == 0, added.stderr
    assert f"url: {site_sync}/feed.xml" in added.stdout


def test_feeds_out_keeps_the_intervals_already_in_the_list(tmp_path: Path) -> None:
    def opml(path: Path, url: str) -> Path:
        path.write_text(
            '<?xml version="1.0"?><opml version="2.0"><head><title>s</title></head><body>'
            f'<outline text="{path.stem}" type="rss" xmlUrl="{url}"/></body></opml>'
        )
        return path

    cfg = write_config(tmp_path, "  []\n")
    out = tmp_path / "feeds" / "subs.yaml"
    first = opml(tmp_path / "a.opml", "http://127.0.0.1:9/a.xml")
    second = opml(tmp_path / "b.opml", "http://127.0.0.1:9/b.xml")
    for path, interval in ((first, "600"), (second, "60")):
        res = run("feeds", "import", str(path), "--out", str(out), "--interval", interval,
                  "--config", str(cfg))  # fmt: skip
        assert res.returncode == 0, res.stderr
    feeds = yaml.safe_load(out.read_text())["feeds"]
    assert {f["url"]: f["interval_s"] for f in feeds} == {
        "http://127.0.0.1:9/a.xml": 600,
        "http://127.0.0.1:9/b.xml": 60,
    }
