"""The one typed configuration model, loaded from YAML and validated.

Every error names the file, line and key, and says what was expected.
Relative paths (state_dir, rule globs, ``file:`` feed URLs) are relative to
the config file, so a config can be moved together with its rules.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from monitor.errors import ConfigError, Problem
from monitor.yamlsource import SourcedYaml, parse_yaml

ENV_REDIS_URL = "FEED_MONITOR_REDIS_URL"
ENV_CONFIG = "FEED_MONITOR_CONFIG"
DEFAULT_CONFIG_PATHS = (Path("config/monitor.yaml"), Path("/etc/feed-monitor/monitor.yaml"))

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_URL_SCHEMES = ("http://", "https://", "file:")
SENTINEL_SCHEME = "redis+sentinel://"
# As Go's net/http (MaxIdleConns): enough for the hosts polled in one burst.
DEFAULT_MAX_IDLE = 100
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
Nodes = tuple[tuple[str, int], ...]  # (host, port) of each sentinel or cluster node


@dataclass(frozen=True)
class SentinelUrl:
    """A Redis master found through Sentinel (redis-py has no URL form for it)."""

    sentinels: Nodes
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None  # the master's; the sentinels take none


@dataclass(frozen=True)
class ClusterUrl:
    """A Redis Cluster, reached through any of the listed nodes (redis-py's
    URL form names only one, which then must be up at every start)."""

    nodes: Nodes
    username: str | None = None
    password: str | None = None
    tls: bool = False


def _login_and_nodes(netloc: str, what: str, example: str) -> tuple[str | None, str | None, Nodes]:
    """``[[user]:password@]host:port[,host:port...]``, percent-decoded."""
    userinfo, _, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = []
    for node in hosts.split(","):
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{what} {node!r} is not host:port, e.g. {example}")
        nodes.append((host.strip("[]"), int(port)))
    return unquote(username) or None, unquote(password) or None, tuple(nodes)


def parse_sentinel_url(url: str) -> SentinelUrl:
    """``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``"""
    if not url.startswith(SENTINEL_SCHEME):
        raise ValueError(f"expected {SENTINEL_SCHEME}...")
    netloc, _, path = url.removeprefix(SENTINEL_SCHEME).partition("/")
    username, password, sentinels = _login_and_nodes(netloc, "sentinel", "10.0.0.5:26379")
    service, _, db = path.strip("/").partition("/")
    if not service or (db and not db.isdigit()):
        raise ValueError("expected /service-name[/db] after the sentinels, e.g. /mymaster/0")
    return SentinelUrl(sentinels, unquote(service), int(db or 0), username, password)


def parse_cluster_url(url: str) -> ClusterUrl:
    """``redis+cluster://[[user]:password@]host:port[,host:port...]``; ``rediss+cluster://``
    for TLS. No database number: Cluster has only database 0."""
    scheme = next((s for s in CLUSTER_SCHEMES if url.startswith(s)), None)
    if scheme is None:
        raise ValueError(f"expected {' or '.join(CLUSTER_SCHEMES)}...")
    netloc, _, path = url.removeprefix(scheme).partition("/")
    if path.strip("/") not in ("", "0"):
        raise ValueError("Redis Cluster has only database 0: drop the /db after the nodes")
    username, password, nodes = _login_and_nodes(netloc, "cluster node", "10.0.0.5:7000")
    return ClusterUrl(nodes, username, password, tls=scheme.startswith("rediss"))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeedSpec(_Model):
    """A feed as declared in the config."""

    name: str
    url: str
    interval_s: Annotated[float, Field(gt=0, le=7 * 86400)] = 900.0
    tags: tuple[str, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 100), e.g. 'nrk-world'")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(_URL_SCHEMES):
            raise ValueError("expected an http://, https:// or file: URL")
        return v


class RedisSettings(_Model):
    # None: start a private embedded redis-server in state_dir.
    url: str | None = None
    stream_maxlen: Annotated[int, Field(ge=1000)] = 100_000
    # How long an alert_id is remembered as delivered (idempotency window).
    delivered_ttl_s: Annotated[int, Field(ge=3600)] = 90 * 86400
    # Seen entry identities kept per feed (oldest dropped first).
    seen_per_feed: Annotated[int, Field(ge=100)] = 20_000
    # Consumer groups that must read every alert: the daemon warns (log,
    # metric, system channel) when one lags near stream_maxlen, before
    # trimming could drop alerts it has not read.
    consumer_groups: tuple[str, ...] = ()
    lag_warn_ratio: Annotated[float, Field(gt=0, le=1)] = 0.8

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        # The parsers' ValueErrors say what is wrong.
        if v is not None and v.startswith(SENTINEL_SCHEME):
            parse_sentinel_url(v)
        elif v is not None and v.startswith(CLUSTER_SCHEMES):
            parse_cluster_url(v)
        elif v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "expected a redis://, rediss://, unix://, redis+sentinel:// or "
                "redis+cluster:// URL, or null for embedded"
            )
        return v


class HttpSettings(_Model):
    user_agent: str = "feed-monitor/0.1 (+https://github.com/feed-monitor/feed-monitor)"
    # Tried once when a server answers 403 (a bot wall); null: never.
    alt_user_agent: str | None = None
    # Politeness: requests in flight to one host, and seconds between starts.
    per_host_concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    per_host_spacing_s: Annotated[float, Field(ge=0, le=600)] = 1.0
    timeout_s: Annotated[float, Field(gt=0)] = 30.0
    connect_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    max_feed_bytes: Annotated[int, Field(ge=1024)] = 10_000_000
    max_page_bytes: Annotated[int, Field(ge=1024)] = 5_000_000
    max_redirects: Annotated[int, Field(ge=0, le=20)] = 5
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 16
    # Idle keep-alive connections kept for reuse, the most recently used
    # (monitor/connpool.py): each holds memory and a file descriptor.
    max_idle_connections: Annotated[int, Field(ge=0, le=10_000)] = DEFAULT_MAX_IDLE
    # Refuse loopback/private/link-local targets: feeds are written by strangers.
    allow_private_addresses: bool = False
    # ...except these networks, e.g. ["127.0.0.0/8"] for a site on this machine.
    allowed_networks: tuple[str, ...] = ()

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for n in v:
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError:
                raise ValueError(f"{n!r} is not a network (e.g. 127.0.0.0/8, 10.1.2.3)") from None
        return v


class ExtractionSettings(_Model):
    # 0 means one worker per CPU core.
    workers: Annotated[int, Field(ge=0, le=64)] = 0
    # Processes of their own for feed parsing, so polls never wait behind
    # extractions; 0: parse in the extraction workers. Role "all" only.
    parse_workers: Annotated[int, Field(ge=0, le=16)] = 1
    timeout_s: Annotated[float, Field(gt=0)] = 30.0
    max_html_bytes: Annotated[int, Field(ge=1024)] = 3_000_000
    # Recycle a worker after this many tasks: trafilatura's memory grows
    # (about 18 MB from 200 to 1,000 real pages). A new worker idles its core
    # until pebble replaces it and rebuilds lazy state: every 200 tasks this
    # cost bench/pipeline.py about 0.05 of its ratio to bare trafilatura.
    max_tasks_per_worker: Annotated[int, Field(ge=1)] = 1000


class PollingSettings(_Model):
    """Bounds for the adaptive poll interval (see monitor/schedule.py)."""

    min_interval_s: Annotated[float, Field(gt=0)] = 60.0
    max_interval_s: Annotated[float, Field(gt=0)] = 86400.0
    backoff_base_s: Annotated[float, Field(gt=0)] = 60.0
    # Failing feeds are retried at this interval for ever, never dropped.
    backoff_ceiling_s: Annotated[float, Field(gt=0)] = 21600.0
    jitter: Annotated[float, Field(ge=0, lt=1)] = 0.1
    retry_after_cap_s: Annotated[float, Field(gt=0)] = 21600.0
    # 0: poll at the configured interval; 1: at the feed's observed entry rate.
    adapt_weight: Annotated[float, Field(ge=0, le=1)] = 0.5


class ClusterSettings(_Model):
    """Several daemons on one Redis: poll leases, the entry stream, heartbeats."""

    # A poll holds its feed's lease this long and is cancelled after it; a
    # dead daemon's feeds are polled by another once it runs out. null:
    # max(300, 4 × http.timeout_s + 2 × extraction.timeout_s).
    lease_s: Annotated[float, Field(gt=0, le=86400)] | None = None
    # An entry left this long unacknowledged by a worker is taken over by
    # another (XAUTOCLAIM); longer than any one entry's fetch and extraction.
    claim_idle_s: Annotated[float, Field(ge=1, le=86400)] = 300.0
    # An entry handed to workers this many times without being done (it
    # crashed them, or they died or hung on it) moves to the dead-letter
    # stream instead of being retried forever; `feed-monitor dead-letters`.
    max_deliveries: Annotated[int, Field(ge=1, le=1000)] = 5
    # Entries a worker works on at once, per extraction process: the bounded
    # queue in front of the extraction pool.
    inflight_per_process: Annotated[int, Field(ge=1, le=64)] = 4
    # Pollers hand out no feeds while more entries than this wait in the
    # stream (back-pressure when extraction falls behind).
    max_queued_entries: Annotated[int, Field(ge=10)] = 2000
    # Seconds between a daemon's heartbeats; it counts as gone after 3 missed.
    heartbeat_s: Annotated[float, Field(ge=0.2, le=300)] = 5.0


class MetricsSettings(_Model):
    # host:port for /metrics (Prometheus) and /healthz; null turns them off.
    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            host, sep, port = v.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("expected host:port, e.g. 127.0.0.1:9464")
        return v


class DedupeSettings(_Model):
    """One story, one alert: how sightings of an alerted story are recognised
    (see monitor/sameness.py and docs/alerts.md, "also_seen" updates)."""

    enabled: bool = True
    # Same page: the entry link or the page's rel=canonical, tracking removed.
    by_url: bool = True
    # Same text: MinHash estimate of the bodies' shingle overlap (Jaccard).
    by_text: bool = True
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.3
    # Also the same text: the shorter body at least this share inside the
    # longer (by-lines and share buttons added, a short version of a long
    # story); null: Jaccard only.
    containment: Annotated[float, Field(gt=0, le=1)] | None = 0.7
    # How long a first alert collects sightings; its Redis state expires then.
    window_s: Annotated[int, Field(ge=60, le=30 * 86400)] = 48 * 3600
    # Words per shingle (a Chinese, Japanese or Thai character counts as a word).
    shingle_words: Annotated[int, Field(ge=1, le=12)] = 4
    # Bodies shorter than this are compared by URL only.
    min_words: Annotated[int, Field(ge=1)] = 15


class WebSubSettings(_Model):
    """WebSub push (see docs/websub.md); off while callback_url is null."""

    # The public base URL hubs call back, e.g. https://monitor.example.org/websub;
    # each feed gets <callback_url>/<feed>/<random token>.
    callback_url: str | None = None
    # Where the daemon listens for those calls (behind a reverse proxy).
    listen: str = "127.0.0.1:8470"
    # Lease asked of the hub; the hub may grant another one.
    lease_s: Annotated[int, Field(ge=60, le=365 * 86400)] = 10 * 86400
    # Renew when this fraction of the granted lease has passed.
    renew_fraction: Annotated[float, Field(ge=0.5, le=0.95)] = 0.85
    # A pushed feed is still polled this often, so a silent hub hides nothing.
    safety_interval_s: Annotated[float, Field(ge=1, le=7 * 86400)] = 21600.0
    # Ask again when a hub has not verified a request within this time.
    verify_timeout_s: Annotated[float, Field(ge=1, le=86400)] = 300.0
    # Hub errors back off from base to ceiling, doubling.
    backoff_base_s: Annotated[float, Field(ge=1)] = 60.0
    backoff_ceiling_s: Annotated[float, Field(ge=1)] = 21600.0
    # Larger pushed bodies are refused (413).
    max_body_bytes: Annotated[int, Field(ge=1024)] = 10_000_000

    @field_validator("callback_url")
    @classmethod
    def _callback(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("expected the public http(s):// URL hubs can reach, or null")
        return v.rstrip("/") if v else v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected host:port, e.g. 127.0.0.1:8470")
        return v


class Config(_Model):
    """The validated configuration; build it with ``load_config``."""

    state_dir: Path = Path("state")
    redis: RedisSettings = RedisSettings()
    http: HttpSettings = HttpSettings()
    extraction: ExtractionSettings = ExtractionSettings()
    metrics: MetricsSettings = MetricsSettings()
    polling: PollingSettings = PollingSettings()
    dedupe: DedupeSettings = DedupeSettings()
    websub: WebSubSettings = WebSubSettings()
    cluster: ClusterSettings = ClusterSettings()
    # The daemon's event loop: uvloop (libuv's, in C: a quarter less CPU per
    # poll than asyncio's own, measured by bench/scale.py) or "asyncio".
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # On SIGTERM, in-flight polls get this long to finish before cancellation.
    shutdown_deadline_s: Annotated[float, Field(gt=0, le=3600)] = 20.0
    rules: tuple[str, ...] = ("rules/*.yaml",)
    # More feed lists (files holding `feeds: [...]`), e.g. from `feeds import`.
    feed_files: tuple[str, ...] = ("feeds/*.yaml",)
    # The first poll of a new feed alerts only on entries younger than this.
    backfill_window_s: Annotated[float, Field(ge=0)] = 86400.0
    # A poll processes at most this many new entries (newest first); the
    # rest stay unseen and are taken by the next polls, none dropped.
    max_new_entries_per_poll: Annotated[int, Field(ge=1)] = 300
    feeds: tuple[FeedSpec, ...] = ()
    # Where the config was read from (set by load_config, not by YAML).
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("feeds")
    @classmethod
    def _unique_names(cls, v: tuple[FeedSpec, ...]) -> tuple[FeedSpec, ...]:
        seen: set[str] = set()
        for f in v:
            if f.name in seen:
                raise ValueError(f"feed name {f.name!r} is used twice; names must be unique")
            seen.add(f.name)
        return v

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    @property
    def redis_socket(self) -> Path:
        """Unix socket of the embedded Redis (used when redis.url is null)."""
        return self.state_dir / "redis.sock"

    def rule_files(self) -> list[Path]:
        """Rule files matched by the ``rules`` globs, sorted, without repeats."""
        return self._glob(self.rules)

    def _glob(self, patterns: tuple[str, ...]) -> list[Path]:
        found: dict[Path, None] = {}
        for pattern in patterns:
            p = Path(pattern)
            base = p if p.is_absolute() else self.base_dir / p
            if any(ch in pattern for ch in "*?["):
                root = Path(base.anchor)
                matches = sorted(root.glob(str(base.relative_to(root))))
            else:
                matches = [base]
            for m in matches:
                found.setdefault(m.resolve(), None)
        return list(found)


# Settings the daemon reads once, at start: the connections, pools, servers
# and subscriptions built from them stay as they are. A reload that changes
# one keeps its running value and names it; everything else (rules, feeds,
# polling, backfill, the lag watch, back-pressure) is live on reload.
# None: the whole section.
RESTART_ONLY: dict[str, frozenset[str] | None] = {
    "state_dir": None,
    "event_loop": None,
    "http": None,
    "extraction": None,
    "metrics": None,
    "dedupe": None,
    "websub": None,
    "redis": frozenset({"url", "stream_maxlen", "delivered_ttl_s", "seen_per_feed"}),
    "cluster": frozenset(
        {"lease_s", "claim_idle_s", "max_deliveries", "inflight_per_process", "heartbeat_s"}
    ),
}


def reloaded(running: Config, edited: Config) -> tuple[Config, list[str]]:
    """The config a reload applies, and the restart-only settings it kept
    at their running values (dotted names) although the edit changed them."""
    kept: list[str] = []
    update: dict[str, Any] = {}
    for section, fields in RESTART_ONLY.items():
        old, new = getattr(running, section), getattr(edited, section)
        if old == new:
            continue
        if not isinstance(old, BaseModel):
            kept.append(section)
            update[section] = old
            continue
        names = type(old).model_fields if fields is None else fields
        changed = sorted(f for f in names if getattr(old, f) != getattr(new, f))
        kept += [f"{section}.{f}" for f in changed]
        update[section] = new.model_copy(update={f: getattr(old, f) for f in changed})
    return edited.model_copy(update=update), kept


def find_config(explicit: str | None) -> Path:
    """The config path: --config, else $FEED_MONITOR_CONFIG, else a default location."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.exists():
            return candidate
    tried = ", ".join(str(p) for p in DEFAULT_CONFIG_PATHS)
    raise ConfigError(
        [Problem("<config>", None, None, "", f"no config file found (tried {tried}); use --config")]
    )


def load_config(path: Path, environ: dict[str, str] | None = None) -> Config:
    """Read, validate and resolve a config file; raise ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(path), None, None, "", f"cannot read: {exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), None, None, "", f"not UTF-8: {exc}")]) from None
    src = parse_yaml(text, str(path))
    return config_from_yaml(src, path, os.environ if environ is None else environ)


def config_from_yaml(src: SourcedYaml, path: Path, environ: Any) -> Config:
    data = src.data if src.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([src.problem((), "the config must be a mapping of settings")])
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(src, exc)) from None
    cfg = _resolve(cfg, path.resolve(), environ)
    return _with_feed_files(cfg, src)


class _FeedList(_Model):
    feeds: tuple[FeedSpec, ...] = ()


def _with_feed_files(cfg: Config, main: SourcedYaml) -> Config:
    """Add the feeds of the ``feed_files``; names must stay unique across files."""
    feeds = list(cfg.feeds)
    home = {f.name: main for f in feeds}
    problems: list[Problem] = []
    for path in cfg._glob(cfg.feed_files):
        if not path.is_file():
            continue
        try:
            src = parse_yaml(path.read_text(encoding="utf-8"), str(path))
            listed = _FeedList.model_validate(src.data or {})
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(path), None, None, "", f"cannot read: {exc}"))
            continue
        except ValidationError as exc:
            problems.extend(validation_problems(src, exc))
            continue
        for i, f in enumerate(listed.feeds):
            if f.name in home:
                where = home[f.name].file
                msg = f"feed name {f.name!r} is already used in {where}; names must be unique"
                problems.append(src.problem(("feeds", i, "name"), msg))
                continue
            home[f.name] = src
            feeds.append(f.model_copy(update={"url": resolve_file_url(f.url, path.parent)}))
    if problems:
        raise ConfigError(problems)
    return cfg.model_copy(update={"feeds": tuple(feeds)})


def validation_problems(src: SourcedYaml, exc: ValidationError) -> list[Problem]:
    """Turn pydantic's errors into located, plain-language problems."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see `feed-monitor schema`)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        if err["type"] == "string_type" and isinstance(err.get("input"), bool):
            msg += " (YAML reads yes/no/on/off/true/false as booleans: put it in quotes)"
        problems.append(src.problem(loc, msg))
    return problems


def _resolve(cfg: Config, path: Path, environ: Any) -> Config:
    base = path.parent
    state_dir = (cfg.state_dir if cfg.state_dir.is_absolute() else base / cfg.state_dir).resolve()
    feeds = tuple(f.model_copy(update={"url": resolve_file_url(f.url, base)}) for f in cfg.feeds)
    redis = cfg.redis
    env_url = environ.get(ENV_REDIS_URL)
    if env_url:
        # Validated like redis.url: model_copy alone would take any string.
        try:
            redis = RedisSettings.model_validate({**redis.model_dump(), "url": env_url})
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise ConfigError(
                [Problem(f"${ENV_REDIS_URL}", None, None, "redis.url", msg)]
            ) from None
    return cfg.model_copy(
        update={"state_dir": state_dir, "feeds": feeds, "redis": redis, "source": path}
    )


def resolve_file_url(url: str, base: Path) -> str:
    """``file:relative/path`` → ``file:///abs/path`` (relative to the config file)."""
    if not url.startswith("file:"):
        return url
    rest = url.removeprefix("file:")
    if rest.startswith("//"):
        return url
    p = Path(rest)
    if not p.is_absolute():
        p = (base / p).resolve()
    return p.as_uri()
