"""The ``feed-monitor`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from monitor import __version__
from monitor.config import Config, find_config, load_config
from monitor.embedded_redis import EmbeddedRedis
from monitor.errors import ConfigError, MonitorError, Problem, RedisUnavailable
from monitor.logs import event, setup_logging, stop_logging
from monitor.rules import RuleSet, load_rules

if TYPE_CHECKING:  # imported by the commands that use it: lxml stays out of the daemon
    from monitor.opml import OpmlFeed

log = logging.getLogger("monitor.cli")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2

DESCRIPTION = """\
Watch news feeds, match watch rules, raise alerts on Redis.

feed-monitor polls the RSS/Atom feeds listed in its config, fetches each new
article, extracts its text, scores it against the watch rules (YAML files in
config/rules/) and appends every match to the Redis stream feed-monitor:alerts
({feed-monitor}:alerts on a Redis Cluster), also published on the pub/sub
channels feed-monitor:alerts and feed-monitor:alerts:<rule-id>.

With no redis.url in the config it runs a private Redis on a unix socket in
its state directory; `subscribe` and `redis-cli -s STATE_DIR/redis.sock`
reach it there.

The config is --config, else $FEED_MONITOR_CONFIG, else ./config/monitor.yaml,
else /etc/feed-monitor/monitor.yaml. $FEED_MONITOR_REDIS_URL overrides redis.url.
"""

EPILOG = """\
examples:
  feed-monitor check                      validate config and rules
  feed-monitor once                       poll every feed once and exit
  feed-monitor run                        run the daemon
  feed-monitor subscribe                  print alerts (last hour, then live)
  feed-monitor match --explain story.txt  why a story does or does not match
  feed-monitor match --jsonl items.jsonl  batch-match {"id","title","text"} lines
  feed-monitor extract page.html          show the text the extractor gets
  feed-monitor reload                     apply edited config and rules now
  feed-monitor schema rules > rules.json  JSON Schema for editor validation
  feed-monitor status                     every feed's health, worst first
  feed-monitor dead-letters --requeue     retry the entries workers gave up on
  feed-monitor feeds import subs.opml --out config/feeds/subs.yaml
  feed-monitor feeds add https://example.com/   find a site's feed and list it
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="feed-monitor",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"feed-monitor {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, description: str | None = None) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_, description=description or help_)
        c.add_argument("--config", metavar="FILE", help="config file (see above for the default)")
        c.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
        c.add_argument(
            "--log-format",
            default="text",
            choices=["text", "json"],
            help="one event per line: key=value text (default) or JSON",
        )
        return c

    c = command(
        "run",
        "run the daemon: poll feeds on their intervals until SIGTERM",
        "Run the daemon. Polls each feed every interval_s, logs one line per poll and per "
        "alert. SIGHUP reloads the rule files (a broken edit is logged, old rules keep "
        "running); SIGTERM or Ctrl-C stops after in-flight polls finish. Any number of "
        "daemons may share one Redis: due feeds and new entries spread over them.",
    )
    c.add_argument(
        "--role",
        default="all",
        choices=["all", "poller", "worker"],
        help="poller: poll feeds and queue new entries; worker: process queued entries "
        "(fetch, extract, match, alert); all (default): both",
    )
    command(
        "once",
        "poll every feed once, process new entries, exit",
        "Poll every feed once and exit 0 after a complete pass, even when some feeds "
        "failed (one line each). Exits non-zero only when it cannot run at all.",
    )
    c = command(
        "subscribe",
        "print alerts from the alert stream",
        "Print alerts as they arrive. By default replays the last hour, then follows.",
    )
    c.add_argument("--rule", metavar="ID", help="only alerts of this rule")
    c.add_argument("--json", action="store_true", help="one JSON alert per line")
    c.add_argument("--from-start", action="store_true", help="replay the whole stream first")
    c.add_argument(
        "--since",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="replay alerts from the last SECONDS (default 3600; 0 = live only)",
    )
    c.add_argument("--count", type=int, metavar="N", help="exit after N alerts")
    c.add_argument(
        "--group",
        metavar="NAME",
        help="consume reliably as a consumer group: every alert is acked after it "
        "is printed, and one that a crashed consumer left unacked is re-read",
    )
    c.add_argument(
        "--consumer", metavar="NAME", help="this consumer's name within --group (default: host-pid)"
    )
    command(
        "check",
        "validate the config and rule files; exit 2 on errors",
        "Validate the config and every rule file it loads. Prints each problem as "
        "file:line:column: key: reason and exits 2 if there are any.",
    )
    c = command(
        "match",
        "run the rules on stories and explain the result",
        "Match stories against the rules. Inputs: text files (first line is the "
        "title), HTML files or URLs (their body is extracted), or --jsonl FILE.",
    )
    c.add_argument("inputs", nargs="*", metavar="FILE_OR_URL")
    c.add_argument(
        "--jsonl",
        metavar="FILE",
        help='read {"id","title","text","lang"?} lines ("-" = stdin); write one '
        '{"id","matched","rules":[...]} line per input',
    )
    c.add_argument("--explain", action="store_true", help="say why each rule matched or not")
    command(
        "reload",
        "make the running daemon reload its config and rules (SIGHUP)",
        "Send SIGHUP to the daemon that owns the config's state_dir. It validates the "
        "new config and rules off to the side and swaps them in; a broken edit is "
        "logged with file:line and the previous rules keep running. Saved edits to rule "
        "files are also picked up on their own within about a second.",
    )
    c = sub.add_parser(
        "schema",
        help="print the JSON Schema of the config or rule files",
        description="Print a JSON Schema editors can use to validate and "
        "complete config/monitor.yaml (config) or rule files (rules).",
    )
    c.add_argument("which", choices=["config", "rules"])
    c.add_argument("--log-level", default="warning", help=argparse.SUPPRESS)
    c.add_argument("--log-format", default="text", help=argparse.SUPPRESS)
    c = command(
        "status",
        "show every feed's health, worst first",
        "A table of feeds: state (ok, failing, retired, new), last poll, HTTP status, "
        "next poll, consecutive errors and their kind, entries seen, alerts; then every "
        "live daemon on this Redis.",
    )
    c.add_argument("--json", action="store_true", help="one JSON object per feed, for scripts")
    c.add_argument(
        "--daemons",
        action="store_true",
        help="only the live daemons: role, host, pid, last heartbeat, work done",
    )
    c = command(
        "dead-letters",
        "list the entries workers gave up on; --requeue retries them",
        "An entry handed to workers cluster.max_deliveries times (default 5) without "
        "being done (processing raised, or its daemon died or hung on it) is moved to "
        "the stream feed-monitor:entries:dead with the reason, instead of being retried "
        "forever. This lists them, oldest first; after the cause is fixed, --requeue "
        "puts them back in the entry stream for any worker.",
    )
    c.add_argument("--json", action="store_true", help="one JSON object per entry")
    c.add_argument("--requeue", action="store_true", help="put every listed entry back")
    c.add_argument("--limit", type=int, default=1000, metavar="N", help="at most N (default 1000)")
    feeds = sub.add_parser(
        "feeds",
        help="import, export or add feeds (OPML, discovery)",
        description="Manage feed lists. Imported and added feeds are written "
        "as YAML feed lists, which the config loads through feed_files "
        "(default: feeds/*.yaml beside the config).",
    )
    fsub = feeds.add_subparsers(dest="feeds_command", required=True, metavar="ACTION")
    c = fsub.add_parser("import", help="convert an OPML file into a YAML feed list")
    c.add_argument("opml", metavar="FILE.opml")
    c.add_argument("--out", metavar="FILE.yaml", help="write here (default: print)")
    c.add_argument("--interval", type=float, default=900.0, metavar="SECONDS")
    c = fsub.add_parser("export", help="print the configured feeds as OPML")
    c = fsub.add_parser("add", help="find a site's feed (or take a feed URL) and list it")
    c.add_argument("url", metavar="URL")
    c.add_argument("--out", metavar="FILE.yaml", help="append to this feed list (default: print)")
    c.add_argument("--interval", type=float, default=900.0, metavar="SECONDS")
    for c in (*fsub.choices.values(),):
        c.add_argument("--config", metavar="FILE", help="config file (see above for the default)")
        c.add_argument("--log-level", default="warning", help=argparse.SUPPRESS)
        c.add_argument("--log-format", default="text", help=argparse.SUPPRESS)
    c = command("extract", "print what the extractor makes of HTML files or URLs")
    c.add_argument("inputs", nargs="+", metavar="FILE_OR_URL")
    c.add_argument(
        "--jsonl",
        action="store_true",
        help='one {"source","title","text","lang","date"} line per input',
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The daemon's log lines are written by a thread: a stderr that blocks
    # must not stop its event loop (see monitor.logs).
    setup_logging(args.log_level, args.log_format, background=args.command == "run")
    try:
        handler = _COMMANDS[args.command]
        return handler(args)
    except ConfigError as exc:
        for problem in exc.problems:
            _err(f"error: {problem}")
        return EXIT_INVALID
    except MonitorError as exc:
        _err(f"error: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    finally:
        stop_logging()


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _config(args: argparse.Namespace) -> Config:
    return load_config(find_config(args.config))


def _config_and_rules(args: argparse.Namespace) -> tuple[Config, RuleSet]:
    cfg = _config(args)
    files = cfg.rule_files()
    if not files:
        where = str(cfg.source or "<config>")
        globs = ", ".join(cfg.rules)
        raise ConfigError([Problem(where, None, None, "rules", f"no rule file matches {globs}")])
    return cfg, load_rules(files)


@contextlib.contextmanager
def _redis(cfg: Config, *, own: bool) -> Iterator[str]:
    if cfg.redis.url:
        yield cfg.redis.url
        return
    with EmbeddedRedis(cfg.state_dir, own=own) as url:
        event(
            log,
            logging.INFO,
            "redis.embedded",
            socket=str(cfg.redis_socket),
            hint=f"redis-cli -s {cfg.redis_socket}",
        )
        yield url


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.daemon import Daemon, loop_factory, open_app, raise_open_files_limit

    cfg, ruleset = _config_and_rules(args)
    raise_open_files_limit()  # before the embedded Redis starts: it inherits it

    async def go(url: str) -> None:
        async with open_app(cfg, url, ruleset, role=args.role) as app:
            await Daemon(app, role=args.role).run()

    factory = loop_factory(cfg)
    with _redis(cfg, own=True) as url, _pidfile(cfg), asyncio.Runner(loop_factory=factory) as r:
        r.run(go(url))
    return EXIT_OK


@contextlib.contextmanager
def _pidfile(cfg: Config) -> Iterator[None]:
    path = cfg.state_dir / "daemon.pid"
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def cmd_reload(args: argparse.Namespace) -> int:
    cfg = _config(args)
    path = cfg.state_dir / "daemon.pid"
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        _err(f"error: no running daemon found through {path}: {exc}")
        return EXIT_FAILURE
    _out(f"sent SIGHUP to the daemon (pid {pid}); its log shows rules.reloaded or rules.rejected")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from monitor.schema import SCHEMAS

    _out(json.dumps(SCHEMAS[args.which](), indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_once(args: argparse.Namespace) -> int:
    from monitor.daemon import run_once

    cfg, ruleset = _config_and_rules(args)
    with _redis(cfg, own=False) as url:
        outcomes = asyncio.run(run_once(cfg, url, ruleset))
    failed = sum(o.status == "failed" for o in outcomes)
    alerts = sum(o.alerts for o in outcomes)
    event(log, logging.INFO, "once.done", feeds=len(outcomes), failed=failed, alerts=alerts)
    return EXIT_OK


def cmd_subscribe(args: argparse.Namespace) -> int:
    from monitor.redisconn import connect, disconnect
    from monitor.subscribe import consume_group, start_id, subscribe

    cfg = _config(args)
    url = cfg.redis.url
    if url is None:
        if not cfg.redis_socket.exists():
            raise RedisUnavailable(
                str(cfg.redis_socket),
                "no embedded Redis socket: is the daemon running (feed-monitor run)?",
            )
        url = f"unix://{cfg.redis_socket}"

    def emit(text: str) -> None:
        _out(text)

    async def go() -> None:
        client = connect(url)
        try:
            if args.group:
                consumer = args.consumer or f"{socket.gethostname()}-{os.getpid()}"
                await consume_group(
                    client, emit, group=args.group, consumer=consumer, rule=args.rule,
                    as_json=args.json, from_start=args.from_start, limit=args.count,
                )  # fmt: skip
                return
            await subscribe(
                client,
                emit,
                rule=args.rule,
                as_json=args.json,
                from_id=start_id(args.from_start, args.since),
                limit=args.count,
            )
        finally:
            await disconnect(client)

    try:
        asyncio.run(go())
    except OSError as exc:
        raise RedisUnavailable(url, str(exc)) from None
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    cfg, ruleset = _config_and_rules(args)
    _out(
        f"ok: {cfg.source}: {len(cfg.feeds)} feeds; {len(ruleset.rules)} rules and "
        f"{len(ruleset.concepts)} concepts from {len(ruleset.files)} files"
    )
    return EXIT_OK


def cmd_match(args: argparse.Namespace) -> int:
    from monitor.inputs import match_inputs

    if not args.inputs and not args.jsonl:
        build_parser().error("match needs FILE_OR_URL arguments or --jsonl FILE")
    cfg, ruleset = _config_and_rules(args)
    for line in match_inputs(cfg, ruleset, args.inputs, args.jsonl, explain_=args.explain):
        _out(line)
    return EXIT_OK


def cmd_extract(args: argparse.Namespace) -> int:
    from monitor.inputs import extract_inputs

    cfg = _config(args) if args.config else None
    for doc in extract_inputs(cfg, args.inputs):
        if args.jsonl:
            _out(json.dumps(doc, ensure_ascii=False))
        else:
            _out(
                f"== {doc['source']}\ntitle: {doc['title']}\nlang: {doc['lang']}"
                f"  date: {doc['date']}\n\n{doc['text']}\n"
            )
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from monitor.outbox import Outbox
    from monitor.redisconn import connect
    from monitor.status import daemon_statuses, feed_statuses, render, render_daemons
    from monitor.store import Store

    cfg = _config(args)

    async def go(url: str) -> list[dict[str, object]] | str:
        store = Store(connect(url), url, stream_maxlen=cfg.redis.stream_maxlen,
                      delivered_ttl_s=cfg.redis.delivered_ttl_s,
                      seen_per_feed=cfg.redis.seen_per_feed)  # fmt: skip
        try:
            daemons = await daemon_statuses(store)
            dead = await store.dead_count()
            if args.daemons:
                if args.json:
                    return [d.as_dict() for d in daemons]
                return render_daemons(daemons)
            rows = await feed_statuses(cfg, store)
        finally:
            await store.close()
        if args.json:
            return [r.as_dict() for r in rows]
        text = render(rows) + "\n\n" + render_daemons(daemons)
        if dead:
            text += f"\n\n{dead} entries dead-lettered: see `feed-monitor dead-letters`"
        return text

    with _redis(cfg, own=False) as url:
        result = asyncio.run(go(url))
    spool = cfg.state_dir / "spool.db"
    waiting = Outbox(spool).depth() if spool.exists() else (0, 0)
    if isinstance(result, str):
        _out(result)
        if any(waiting):
            _out(f"\nspool: {waiting[0]} alerts and {waiting[1]} seen-marks wait for Redis "
                 f"in {spool}")  # fmt: skip
    else:
        for row in result:
            _out(json.dumps(row, ensure_ascii=False))
    return EXIT_OK


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from monitor.redisconn import connect
    from monitor.store import Store
    from monitor.workitem import BadWorkItem, WorkItem

    cfg = _config(args)

    async def go(url: str) -> list[tuple[str, dict[str, str]]]:
        store = Store(connect(url), url, stream_maxlen=cfg.redis.stream_maxlen,
                      delivered_ttl_s=cfg.redis.delivered_ttl_s,
                      seen_per_feed=cfg.redis.seen_per_feed)  # fmt: skip
        try:
            rows = await store.dead_entries(args.limit)
            if args.requeue:
                for dead_id, fields in rows:
                    await store.requeue_dead(dead_id, fields)
        finally:
            await store.close()
        return rows

    with _redis(cfg, own=False) as url:
        rows = asyncio.run(go(url))
    for _dead_id, fields in rows:
        try:
            link = WorkItem.from_fields(fields).entry.link
        except BadWorkItem:
            link = "?"
        row = {"entry_id": fields.get("entry_id"), "feed": fields.get("feed"), "link": link,
               "at": fields.get("at"), "deliveries": int(fields.get("deliveries") or 0),
               "reason": fields.get("reason")}  # fmt: skip
        if args.json:
            _out(json.dumps(row, ensure_ascii=False))
        else:
            _out(f"{row['at']}  {row['feed']}  {link}\n    {row['deliveries']} deliveries: "
                 f"{row['reason']}")  # fmt: skip
    if not args.json:
        what = "requeued" if args.requeue else "dead-lettered"
        _out(f"{len(rows)} entries {what}")
    return EXIT_OK


def cmd_feeds(args: argparse.Namespace) -> int:
    from monitor.opml import OpmlFeed, feeds_yaml, parse_opml, to_opml, unique_name

    cfg = _config(args)
    names = [f.name for f in cfg.feeds]
    if args.feeds_command == "export":
        # Local file: feeds mean nothing to another machine: left out.
        listed = [(f.name, f.url, f.tags) for f in cfg.feeds if not f.url.startswith("file:")]
        sys.stdout.buffer.write(to_opml(listed, "feed-monitor"))
        return EXIT_OK
    if args.feeds_command == "import":
        data = Path(args.opml).read_bytes()
        known = {f.url for f in cfg.feeds}
        found = [f for f in parse_opml(data, args.opml, existing_names=names) if f.url not in known]
    else:
        from monitor.discover import discover
        from monitor.fetch import HttpLimits, make_session

        h = cfg.http
        limits = HttpLimits.from_settings(h)

        async def find() -> OpmlFeed:
            async with make_session(limits, h.concurrency, h.max_idle_connections) as session:
                res = await discover(session, args.url, limits, max_bytes=h.max_feed_bytes)
            return OpmlFeed(unique_name(res.title, res.url, names), res.url, res.title, (), None)

        found = [asyncio.run(find())]
    if args.out:
        out = Path(args.out)
        previous = _feed_list(out)
        text = feeds_yaml([*previous, *found], args.interval)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        _out(f"{len(found)} feeds written to {out}")
    else:
        _out(feeds_yaml(found, args.interval).rstrip())
    return EXIT_OK


def _feed_list(path: Path) -> list[OpmlFeed]:
    """The feeds already in a generated feed list (to append to it)."""
    from monitor.opml import OpmlFeed

    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return [OpmlFeed(f["name"], f["url"], f["name"], tuple(f.get("tags") or ()), None,
                     f.get("interval_s"))
            for f in data.get("feeds") or []]  # fmt: skip


_COMMANDS = {
    "run": cmd_run,
    "dead-letters": cmd_dead_letters,
    "once": cmd_once,
    "subscribe": cmd_subscribe,
    "check": cmd_check,
    "match": cmd_match,
    "extract": cmd_extract,
    "reload": cmd_reload,
    "schema": cmd_schema,
    "status": cmd_status,
    "feeds": cmd_feeds,
}
