"""monitor.config and monitor.yamlsource: validation errors located at file:line:column."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from monitor import yamlsource
from monitor.config import ENV_REDIS_URL, Config, load_config, reloaded, resolve_file_url
from monitor.daemon import loop_factory
from monitor.errors import ConfigError, Problem
from monitor.yamlsource import parse_yaml
from tests.conftest import ROOT

EXE = Path(sys.executable).parent / "feed-monitor"


def write(tmp_path: Path, text: str, name: str = "monitor.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(path: Path, environ: dict[str, str] | None = None) -> Config:
    return load_config(path, environ={} if environ is None else environ)


def problems(tmp_path: Path, text: str) -> tuple[Path, list[Problem]]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.problems, "a ConfigError must list its problems"
    for p in info.value.problems:
        assert p.file == str(path)
    return path, info.value.problems


def only(tmp_path: Path, text: str) -> Problem:
    _, found = problems(tmp_path, text)
    assert len(found) == 1, found
    return found[0]


# ----------------------------------------------------------- shipped config


def test_shipped_config_loads_and_validates() -> None:
    cfg = load(ROOT / "config" / "monitor.yaml")
    assert cfg.source == (ROOT / "config" / "monitor.yaml").resolve()
    assert cfg.state_dir == (ROOT / "state").resolve()
    assert cfg.redis.url is None
    assert cfg.http.allow_private_addresses is False
    names = [f.name for f in cfg.feeds]
    assert "seeds" in names
    assert len(names) == len(set(names))
    seeds = next(f for f in cfg.feeds if f.name == "seeds")
    assert seeds.url == (ROOT / "seeds" / "feed.xml").resolve().as_uri()
    assert (ROOT / "seeds" / "feed.xml").exists()
    rule_files = cfg.rule_files()
    assert rule_files
    assert all(
        p.is_file() and p.parent == (ROOT / "config" / "rules").resolve() for p in rule_files
    )
    for feed in cfg.feeds:
        assert feed.url.startswith(("http://", "https://", "file:///"))


# ------------------------------------------------------------------ errors


def test_unknown_top_level_key(tmp_path: Path) -> None:
    p = only(
        tmp_path,
        """
        state_dir: state
        backfil_window_s: 60
        """,
    )
    assert (p.line, p.column, p.key) == (2, 1, "backfil_window_s")
    assert "unknown key" in p.message


def test_unknown_nested_key_in_second_feed(tmp_path: Path) -> None:
    p = only(
        tmp_path,
        """
        feeds:
          - name: harbour
            url: https://harbour.example/rss
          - name: valley
            url: https://valley.example/rss
            intervl_s: 60
        """,
    )
    assert (p.line, p.column, p.key) == (6, 5, "feeds.1.intervl_s")
    assert "unknown key" in p.message
    assert str(p).endswith(":6:5: feeds.1.intervl_s: " + p.message)


def test_unknown_key_in_a_section(tmp_path: Path) -> None:
    p = only(
        tmp_path,
        """
        http:
          timeout_s: 10
          max_redirect: 3
        """,
    )
    assert (p.line, p.column, p.key) == (3, 3, "http.max_redirect")


def test_wrong_type(tmp_path: Path) -> None:
    p = only(
        tmp_path,
        """
        http:
          timeout_s: fast
        """,
    )
    assert (p.line, p.column, p.key) == (2, 3, "http.timeout_s")
    assert "number" in p.message


def test_out_of_range_value(tmp_path: Path) -> None:
    p = only(
        tmp_path,
        """
        feeds:
          - {name: harbour, url: "https://harbour.example/rss", interval_s: -5}
        """,
    )
    assert p.key == "feeds.0.interval_s"
    assert p.line == 2
    assert "greater than 0" in p.message


def test_feed_without_url(tmp_path: Path) -> None:
    p = only(
        tmp_path,
        """
        feeds:
          - name: harbour
            url: https://harbour.example/rss
          - name: valley
            interval_s: 60
        """,
    )
    assert p.key == "feeds.1.url"
    assert (p.line, p.column) == (4, 5)  # the feed that lacks it
    assert p.message == "required key is missing"


def test_duplicate_feed_names(tmp_path: Path) -> None:
    p = only(
        tmp_path,
        """
        state_dir: state
        feeds:
          - {name: harbour, url: "https://harbour.example/rss"}
          - {name: harbour, url: "https://harbour.example/other"}
        """,
    )
    assert (p.line, p.column, p.key) == (2, 1, "feeds")
    assert "'harbour'" in p.message
    assert "twice" in p.message


@pytest.mark.parametrize(
    "url", ["ftp://harbour.example/rss", "harbour.example/rss", "javascript:alert(1)"]
)
def test_bad_feed_url_scheme(tmp_path: Path, url: str) -> None:
    p = only(
        tmp_path,
        f"""
        feeds:
          - name: harbour
            url: "{url}"
        """,
    )
    assert (p.line, p.column, p.key) == (3, 5, "feeds.0.url")
    assert "http://" in p.message


def test_bad_feed_name(tmp_path: Path) -> None:
    p = only(
        tmp_path,
        """
        feeds:
          - name: "harbour news!"
            url: https://harbour.example/rss
        """,
    )
    assert (p.line, p.key) == (2, "feeds.0.name")


def test_bad_redis_url(tmp_path: Path) -> None:
    p = only(
        tmp_path,
        """
        redis:
          url: http://127.0.0.1:6379/0
        """,
    )
    assert (p.line, p.column, p.key) == (2, 3, "redis.url")
    assert "redis://" in p.message


def test_yaml_syntax_error_line(tmp_path: Path) -> None:
    p = only(
        tmp_path,
        """
        state_dir: state
        feeds:
          - name: harbour
            url: [https://harbour.example/rss
        backfill_window_s: 60
        """,
    )
    assert p.line is not None
    assert p.line >= 4
    assert p.column is not None
    assert p.message.startswith("invalid YAML")


def test_yaml_tab_indentation_error_line(tmp_path: Path) -> None:
    p = only(tmp_path, "state_dir: state\nfeeds:\n\t- name: harbour\n")
    assert (p.line, p.column) == (3, 1)
    assert "invalid YAML" in p.message


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    p = only(
        tmp_path,
        """
        feeds:
          - name: harbour
            url: https://harbour.example/rss
            name: valley
        """,
    )
    assert (p.line, p.column, p.key) == (4, 5, "feeds.0.name")
    assert p.message == "duplicate key"


def test_duplicate_top_level_key(tmp_path: Path) -> None:
    p = only(tmp_path, "state_dir: a\nbackfill_window_s: 5\nstate_dir: b\n")
    assert (p.line, p.column, p.key) == (3, 1, "state_dir")


# Each is parsed by libyaml (what the daemon uses when PyYAML has it) and by
# PyYAML's own parser (the fallback): the positions users are pointed at must
# not depend on which.
SAME_POSITIONS = [
    "feeds:\n  - {name: 'fjørd', url: 'https://a.example/rss'}\n  - name: b\n    url: u\n",
    "state_dir: state\nfeeds:\n\t- name: harbour\n",
    "feeds:\n  - {name: 'å', url: u}\n  - {name: b, url: [}\n",
    "tittel: ø\n  feil: 2\n",
    "a: 1\na: 2\n",
    "k: !foo x\n",
    "a: &x [*x]\n",
]


@pytest.mark.parametrize("text", SAME_POSITIONS)
def test_libyaml_and_pure_python_parsers_point_at_the_same_places(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, object]] = []
    for loader in (yaml.CSafeLoader, yaml.SafeLoader):
        monkeypatch.setattr(yamlsource, "_Loader", loader)
        try:
            seen.append(("ok", parse_yaml(text, "f.yaml").positions))
        except ConfigError as exc:
            seen.append(("error", [(p.file, p.line, p.column, p.key) for p in exc.problems]))
    assert seen[0] == seen[1]


@pytest.mark.parametrize("enabled", [True, False])
def test_parsing_leaves_the_garbage_collector_as_it_found_it(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        parse_yaml("feeds:\n  - {name: a, url: u}\n", "f.yaml")
        with pytest.raises(ConfigError):
            parse_yaml("a: [\n", "f.yaml")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


@pytest.mark.parametrize("word", ["no", "yes", "off", "on", "false"])
def test_yaml_boolean_trap_in_tags(tmp_path: Path, word: str) -> None:
    p = only(
        tmp_path,
        f"""
        feeds:
          - name: oslo
            url: https://oslo.example/rss
            tags: [{word}, world]
        """,
    )
    assert p.key == "feeds.0.tags.0"
    assert p.line == 4
    assert "quotes" in p.message


def test_quoted_no_is_a_tag(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        feeds:
          - {name: oslo, url: "https://oslo.example/rss", tags: ["no", world]}
        """,
    )
    assert load(path).feeds[0].tags == ("no", "world")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    _, found = problems(
        tmp_path,
        """
        redis: {url: "http://x"}
        http: {timeout_s: soon}
        feeds:
          - {name: a}
        """,
    )
    assert sorted(p.key for p in found) == ["feeds.0.url", "http.timeout_s", "redis.url"]
    assert sorted(p.line or 0 for p in found) == [1, 2, 4]


@pytest.mark.parametrize(
    ("text", "key", "line", "needle"),
    [
        ("state_dir: !secret x\n", "state_dir", 1, "!secret"),
        ("backfill_window_s: !!int soon\n", "backfill_window_s", 1, "invalid"),
        ("state_dir: !!python/object:os.system x\n", "state_dir", 1, "python/object"),
        (
            "feeds:\n  - &h {name: a, url: 'https://a.example/'}\n  - <<: *h\n    name: b\n",
            "feeds.1",
            3,
            "merge keys",
        ),
        ("state_dir: &loop [*loop]\n", "state_dir.0", 1, "recursive"),
    ],
)
def test_yaml_that_pyyaml_cannot_construct(
    tmp_path: Path, text: str, key: str, line: int, needle: str
) -> None:
    """Bad tags, bad typed values, merge keys and self-referencing aliases are
    located problems, not tracebacks."""
    p = only(tmp_path, text)
    assert (p.key, p.line) == (key, line)
    assert needle in p.message


def test_config_must_be_a_mapping(tmp_path: Path) -> None:
    p = only(tmp_path, "- just\n- a list\n")
    assert p.line == 1
    assert "mapping" in p.message


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing set\n")
    cfg = load(path)
    assert cfg.feeds == ()
    assert cfg.state_dir == (tmp_path / "state").resolve()
    assert cfg.http.max_redirects == 5


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.yaml")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("state_dir: Tromsø\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(latin)


def test_parse_yaml_positions() -> None:
    src = parse_yaml("a:\n  b: [1, {c: 2}]\n", "x.yaml")
    assert src.data == {"a": {"b": [1, {"c": 2}]}}
    assert src.locate(("a",)) == (1, 1)
    assert src.locate(("a", "b")) == (2, 3)
    assert src.locate(("a", "b", 1, "c")) == (2, 11)
    assert src.locate(("a", "b", 1, "zz")) == (2, 10)  # deepest existing prefix
    assert str(src.problem(("a", "b"), "bad")) == "x.yaml:2:3: a.b: bad"


# ---------------------------------------------------------------- environ


def test_env_redis_url_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "redis:\n  url: redis://127.0.0.1:6379/0\n  stream_maxlen: 5000\n")
    assert load(path).redis.url == "redis://127.0.0.1:6379/0"
    cfg = load(path, {ENV_REDIS_URL: "unix:///run/redis/redis.sock"})
    assert cfg.redis.url == "unix:///run/redis/redis.sock"
    assert cfg.redis.stream_maxlen == 5000  # the rest of the section is kept
    assert load(path, {ENV_REDIS_URL: ""}).redis.url == "redis://127.0.0.1:6379/0"


def test_env_redis_url_overrides_embedded(tmp_path: Path) -> None:
    path = write(tmp_path, "redis: {url: null}\n")
    assert load(path, {ENV_REDIS_URL: "redis://10.1.2.3:6380/2"}).redis.url == (
        "redis://10.1.2.3:6380/2"
    )


def test_env_redis_url_is_validated(tmp_path: Path) -> None:
    path = write(tmp_path, "feeds: []\n")
    with pytest.raises(ConfigError) as info:
        load(path, {ENV_REDIS_URL: "http://127.0.0.1:6379"})
    (p,) = info.value.problems
    assert p.file == f"${ENV_REDIS_URL}"
    assert p.key == "redis.url"
    assert "redis://" in p.message


def test_os_environ_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "feeds: []\n")
    monkeypatch.setenv(ENV_REDIS_URL, "redis://127.0.0.1:7000/1")
    assert load_config(path).redis.url == "redis://127.0.0.1:7000/1"


# ----------------------------------------------------------- relative paths


def test_relative_paths_resolve_against_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc" / "fm"
    (conf_dir / "rules").mkdir(parents=True)
    (conf_dir / "rules" / "b.yaml").write_text("rules: []\n", encoding="utf-8")
    (conf_dir / "rules" / "a.yaml").write_text("rules: []\n", encoding="utf-8")
    (conf_dir / "extra.yaml").write_text("rules: []\n", encoding="utf-8")
    (conf_dir / "local feeds").mkdir()
    write(
        conf_dir,
        f"""
        state_dir: ../../var/state
        rules: ["rules/*.yaml", extra.yaml, "rules/a.yaml"]
        feeds:
          - {{name: local, url: "file:local feeds/wire.xml"}}
          - {{name: dotted, url: "file:./../shared.xml"}}
          - {{name: absolute, url: "file:{tmp_path}/abs.xml"}}
          - {{name: authority, url: "file:///srv/feeds/x.xml"}}
          - {{name: web, url: "https://wire.example/rss"}}
        """,
        name="monitor.yaml",
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # nothing may resolve against the working directory
    cfg = load(Path("../etc/fm/monitor.yaml"))
    assert cfg.source == (conf_dir / "monitor.yaml").resolve()
    assert cfg.state_dir == (tmp_path / "var" / "state").resolve()
    assert cfg.rule_files() == [
        (conf_dir / "rules" / "a.yaml").resolve(),
        (conf_dir / "rules" / "b.yaml").resolve(),
        (conf_dir / "extra.yaml").resolve(),
    ]
    urls = {f.name: f.url for f in cfg.feeds}
    assert urls["local"] == (conf_dir / "local feeds" / "wire.xml").resolve().as_uri()
    assert urls["dotted"] == (tmp_path / "etc" / "shared.xml").resolve().as_uri()
    assert urls["absolute"] == (tmp_path / "abs.xml").as_uri()
    assert urls["authority"] == "file:///srv/feeds/x.xml"
    assert urls["web"] == "https://wire.example/rss"


def test_absolute_state_dir_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "state"
    path = write(tmp_path / "conf", f"state_dir: {target}\n")
    assert load(path).state_dir == target.resolve()


def test_resolve_file_url() -> None:
    base = Path("/srv/fm")
    assert resolve_file_url("file:feeds/a.xml", base) == "file:///srv/fm/feeds/a.xml"
    assert resolve_file_url("file:/data/a.xml", base) == "file:///data/a.xml"
    assert resolve_file_url("file:///data/a.xml", base) == "file:///data/a.xml"
    assert resolve_file_url("https://x.example/a.xml", base) == "https://x.example/a.xml"


# --------------------------------------------------------------------- CLI


def run_check(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV_REDIS_URL}
    return subprocess.run(
        [str(EXE), "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_cli_check_on_a_broken_config_exits_2_with_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        rules: ['{ROOT}/config/rules/*.yaml']
        feeds:
          - name: harbour
            url: https://harbour.example/rss
            intervl_s: 60
        """,
    )
    res = run_check(path)
    assert res.returncode == 2, res.stderr
    assert f"{path}:5:5: feeds.0.intervl_s: unknown key" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_check_on_bad_yaml_tag_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, "state_dir: !vault secret/path\n")
    res = run_check(path)
    assert res.returncode == 2, res.stderr
    assert f"{path}:1:12: state_dir:" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_check_on_a_good_config_exits_0(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        rules: ['{ROOT}/config/rules/*.yaml']
        feeds:
          - {{name: harbour, url: "https://harbour.example/rss", tags: [en, "no"]}}
        """,
    )
    res = run_check(path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"ok: {path.resolve()}: 1 feeds;")


def test_a_reload_keeps_restart_only_settings_and_applies_the_rest() -> None:
    running = Config.model_validate(
        {"redis": {"url": "redis://a:6379/0"}, "http": {"timeout_s": 20}, "feeds": []}
    )
    edited = Config.model_validate(
        {
            "redis": {"url": "redis://b:6379/0", "consumer_groups": ["archive"]},
            "http": {"timeout_s": 5, "user_agent": "other/1.0"},
            "cluster": {"claim_idle_s": 60, "max_queued_entries": 500},
            "polling": {"jitter": 0.2},
            "max_new_entries_per_poll": 50,
            "feeds": [{"name": "n", "url": "https://example.com/feed.xml"}],
        }
    )
    applied, kept = reloaded(running, edited)
    assert kept == ["http.timeout_s", "http.user_agent", "redis.url", "cluster.claim_idle_s"]
    assert applied.http == running.http
    assert applied.redis.url == "redis://a:6379/0"
    assert applied.cluster.claim_idle_s == running.cluster.claim_idle_s
    # live: the rest of the edit
    assert applied.redis.consumer_groups == ("archive",)
    assert applied.cluster.max_queued_entries == 500
    assert applied.polling.jitter == 0.2
    assert applied.max_new_entries_per_poll == 50
    assert [f.name for f in applied.feeds] == ["n"]
    assert reloaded(running, running) == (running, [])


# ----------------------------------------------------------- event loop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.parametrize(("choice", "module"), [(None, "uvloop"), ("asyncio", "asyncio")])
def test_event_loop_the_daemon_runs_on(tmp_path: Path, choice: str | None, module: str) -> None:
    cfg = load(write(tmp_path, f"event_loop: {choice}\n" if choice else ""))
    with asyncio.Runner(loop_factory=loop_factory(cfg)) as runner:
        assert runner.run(_loop_module()).split(".")[0] == module


def test_unknown_event_loop_is_located(tmp_path: Path) -> None:
    p = only(tmp_path, "feeds: []\nevent_loop: trio\n")
    assert (p.line, p.key) == (2, "event_loop")
    assert "uvloop" in p.message and "asyncio" in p.message


def test_uvloop_missing_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "event_loop: uvloop\n")
    cfg = load(path)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    with pytest.raises(ConfigError) as info:
        loop_factory(cfg)
    [p] = info.value.problems
    assert (p.file, p.key) == (str(path), "event_loop")
    assert "event_loop: asyncio" in p.message


def test_the_event_loop_changes_only_with_a_restart() -> None:
    running = Config.model_validate({"feeds": []})
    edited = Config.model_validate({"event_loop": "asyncio", "feeds": []})
    applied, kept = reloaded(running, edited)
    assert (applied.event_loop, kept) == ("uvloop", ["event_loop"])
