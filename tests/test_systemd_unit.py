"""The systemd unit ``systemd/feed-monitor.service`` and its install config.

Static checks only; ``systemd/boot-test.sh`` boots the unit under a real
systemd. Three kinds:

- ``systemd-analyze verify`` must print nothing at all (its exit status is 0
  even for unknown keys, so the output is what counts). verify also checks
  that every ``ExecStart=``/``ExecReload=`` program exists and is executable,
  and the unit names the documented install path
  ``/opt/feed-monitor/venv/bin/feed-monitor``, which a dev or CI machine does
  not have. Rather than edit the unit, ignore that message, or install into
  /opt on the test machine, the test runs ``verify --root=DIR`` on a scratch
  root laid out like an install: the unit, byte for byte, in
  ``etc/systemd/system/``; executable stand-ins at exactly the paths the unit's
  commands name; and this machine's own system units in ``usr/lib/systemd/``
  so that dependencies such as ``sysinit.target`` resolve. Everything verify
  checks (syntax, unknown keys and values, dependencies, the command paths) is
  then checked on the shipped unit; the stand-ins only answer "is there an
  executable at this path", which the real install answers with the venv's
  script (shown by the boot test). Two control cases prove the harness is
  not blind: an unknown key and a missing program each make verify speak.
- ``systemd-analyze security --offline=yes``: overall exposure 1.5 or lower.
- Plain assertions on the service contract (notify, watchdog, reload, restart,
  stop timeout against the daemon's drain deadline, dynamic user, directories)
  and on the install config and install script the README documents.

The systemd-analyze tests are skipped only where ``systemd-analyze`` is absent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor.cli import main as cli_main
from monitor.config import Config, load_config
from tests.conftest import ROOT

UNIT = ROOT / "systemd" / "feed-monitor.service"
INSTALL_CONFIG = ROOT / "systemd" / "monitor.yaml"
INSTALL_SH = ROOT / "systemd" / "install.sh"
README = ROOT / "systemd" / "README.md"

VENV = "/opt/feed-monitor/venv"
ETC_CONFIG = "/etc/feed-monitor/monitor.yaml"
MAX_EXPOSURE = 1.5

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (Debian: apt-get install systemd)"
)


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as ordered (key, value) lists; keys may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line}"
        current.append((key.strip(), value.strip()))
    return sections


UNIT_SECTIONS = parse_unit(UNIT.read_text(encoding="utf-8"))


def values(key: str, section: str = "Service") -> list[str]:
    return [v for k, v in UNIT_SECTIONS.get(section, []) if k == key]


def value(key: str, section: str = "Service") -> str:
    """The effective (last) value of a single-valued directive."""
    found = values(key, section)
    assert found, f"[{section}] {key}= is not set"
    return found[-1]


def seconds(span: str) -> float:
    """A systemd time span as used in this unit ("30s", "5min", "1min 30s", "90")."""
    units = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span):
        assert unit in units, f"unexpected time unit in {span!r}"
        total += float(number) * units[unit]
    return total


def program(command: str) -> str:
    """The executable of an Exec*= line, without its -@:+! prefixes."""
    return command.split(maxsplit=1)[0].lstrip("-@:+!")


def install_config() -> Config:
    return load_config(INSTALL_CONFIG)


# --- systemd-analyze ----------------------------------------------------------


def system_unit_dir() -> Path:
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "sysinit.target").exists():
            return candidate
    pytest.fail("systemd-analyze is installed but no system unit dir has sysinit.target")


def verify_root(tmp_path: Path, *, unit_text: str | None = None, stubs: bool = True) -> Path:
    """A scratch root laid out like an install (see the module docstring)."""
    root = tmp_path / "root"
    (root / "usr" / "lib" / "systemd").mkdir(parents=True)
    shutil.copytree(system_unit_dir(), root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    for merged in ("bin", "sbin", "lib"):  # merged /usr, as on Debian 12
        (root / merged).symlink_to(f"usr/{merged}")
    (root / "usr" / "bin").mkdir(exist_ok=True)
    (root / "usr" / "sbin").mkdir(exist_ok=True)
    etc = root / "etc" / "systemd" / "system"
    etc.mkdir(parents=True)
    text = UNIT.read_text(encoding="utf-8") if unit_text is None else unit_text
    (etc / "feed-monitor.service").write_text(text, encoding="utf-8")
    if stubs:
        for command in values("ExecStart") + values("ExecReload"):
            exe = root / program(command).lstrip("/")
            exe.parent.mkdir(parents=True, exist_ok=True)
            if not exe.exists():
                exe.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
                exe.chmod(0o755)
    return root


def analyze_verify(root: Path) -> str:
    assert ANALYZE is not None
    res = subprocess.run(
        [ANALYZE, "verify", f"--root={root}", "feed-monitor.service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = (res.stdout + res.stderr).strip()
    return out if res.returncode == 0 else f"{out}\nrc={res.returncode}"


@needs_analyze
def test_verify_prints_nothing(tmp_path: Path) -> None:
    out = analyze_verify(verify_root(tmp_path))
    assert out == "", f"systemd-analyze verify complained:\n{out}"


@needs_analyze
def test_verify_harness_reports_unknown_keys(tmp_path: Path) -> None:
    text = UNIT.read_text(encoding="utf-8").replace("[Service]\n", "[Service]\nNotADirective=1\n")
    out = analyze_verify(verify_root(tmp_path, unit_text=text))
    assert "NotADirective" in out


@needs_analyze
def test_verify_harness_reports_missing_programs(tmp_path: Path) -> None:
    out = analyze_verify(verify_root(tmp_path, stubs=False))
    assert f"{VENV}/bin/feed-monitor is not executable" in out


@needs_analyze
def test_security_exposure_is_low() -> None:
    assert ANALYZE is not None
    res = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    m = re.search(r"Overall exposure level for feed-monitor\.service: (\d+(?:\.\d+)?)", res.stdout)
    assert m, res.stdout + res.stderr
    exposure = float(m.group(1))
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}:\n{res.stdout}"


# --- the service contract -------------------------------------------------------


def test_notify_with_watchdog() -> None:
    assert value("Type") == "notify"
    assert value("NotifyAccess") == "main"  # not the workers, not redis-server
    assert 10 <= seconds(value("WatchdogSec")) <= 120
    assert seconds(value("TimeoutStartSec")) >= 30  # redis-server alone may take 15 s


def test_reload_is_sighup_to_the_daemon() -> None:
    assert value("ExecReload") == "/bin/kill -HUP $MAINPID"


def test_restarts_on_failure_with_a_limit() -> None:
    assert value("Restart") == "on-failure"
    assert 1 <= seconds(value("RestartSec")) <= 60
    assert int(value("StartLimitBurst", "Unit")) >= 3
    assert seconds(value("StartLimitIntervalSec", "Unit")) > 0


def test_stop_leaves_room_for_the_drain() -> None:
    # SIGTERM to the daemon only: it drains, then stops the pool and Redis itself.
    assert value("KillMode") == "mixed"
    drain = install_config().shutdown_deadline_s
    assert drain == Config().shutdown_deadline_s == 20
    # The daemon waits the deadline, then up to 5 s for cancelled polls.
    assert drain + 5 < seconds(value("TimeoutStopSec")) <= drain + 20


def test_runs_as_a_dynamic_user_with_its_own_directories() -> None:
    assert value("DynamicUser") == "yes"
    assert not values("User") and not values("Group")
    assert value("StateDirectory") == "feed-monitor"
    assert value("ConfigurationDirectory") == "feed-monitor"
    assert value("RuntimeDirectory") == "feed-monitor"
    assert value("EnvironmentFile") == "-/etc/feed-monitor/env"  # optional secrets
    assert value("UMask") == "0077"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("DevicePolicy", "closed"),
        ("PrivateUsers", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("RemoveIPC", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("ProtectProc", "invisible"),
        ("ProcSubset", "pid"),
    ],
)
def test_hardening(key: str, expected: str) -> None:
    assert value(key) == expected


def test_syscall_filter() -> None:
    assert values("SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    assert value("SystemCallErrorNumber") == "EPERM"


# --- the documented install -------------------------------------------------------


def test_execstart_is_the_documented_install() -> None:
    assert value("ExecStart") == f"{VENV}/bin/feed-monitor run --config {ETC_CONFIG}"
    script = INSTALL_SH.read_text(encoding="utf-8")
    assert "PREFIX=${FEED_MONITOR_PREFIX:-/opt/feed-monitor}" in script
    assert 'python3 -m venv "$PREFIX/venv"' in script
    assert '"$SRC/systemd/monitor.yaml" "$ETC/monitor.yaml"' in script
    assert "ETC=/etc/feed-monitor" in script
    readme = README.read_text(encoding="utf-8")
    assert f"python3 -m venv {VENV}" in readme
    assert f"install -m 0644 systemd/monitor.yaml {ETC_CONFIG}" in readme


def test_install_config_uses_the_state_directory() -> None:
    raw = yaml.safe_load(INSTALL_CONFIG.read_text(encoding="utf-8"))
    assert raw["state_dir"] == "/var/lib/" + value("StateDirectory")
    cfg = install_config()
    assert cfg.redis.url is None  # embedded Redis on /var/lib/feed-monitor/redis.sock
    assert cfg.metrics.listen is not None and cfg.metrics.listen.startswith("127.0.0.1:")
    assert [f.url for f in cfg.feeds] == ["file:///opt/feed-monitor/seeds/feed.xml"]


def test_install_config_checks_with_the_rule_pack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As install.sh lays it out: monitor.yaml with rules/ beside it."""
    shutil.copy(INSTALL_CONFIG, tmp_path / "monitor.yaml")
    (tmp_path / "rules").mkdir()
    for rules in (ROOT / "config" / "rules").glob("*.yaml"):
        shutil.copy(rules, tmp_path / "rules")
    assert cli_main(["check", "--config", str(tmp_path / "monitor.yaml")]) == 0
    assert "ok:" in capsys.readouterr().out
