#!/usr/bin/env bash
# The demo fleet on SQLite, under supervisord: `make run` = `deploy/demo.sh start`, `make stop` = `... stop`.
#
#   start  create the fake DCS and the target under var/demo/ (first time only), write
#          deploy/conf.d/*.ini from etc/demo.cfg, start supervisord (or make the running one pick
#          the files up), wait until every scraper has written a record past its seed, print status.
#   stop   stop every program, then supervisord.
#
# Both are safe to repeat: one supervisord per checkout (its socket is var/run/supervisor.sock),
# and the fakers keep their data across restarts (faker_dropsrc = False), so the scrapers resume.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=$PWD/.venv/bin
CFG=etc/demo.cfg
CONF=deploy/supervisord.conf
SCRAPERD=${SCRAPERD:-$BIN/scraperd}
DEADLINE_S=${DEMO_DEADLINE_S:-60}
SETUP_LOG=var/log/demo-setup.log

ctl() { "$BIN/supervisorctl" -c "$CONF" "$@"; }
scraperd() { "$SCRAPERD" -c "$CFG" "$@"; }
supervisord_up() { ctl pid >/dev/null 2>&1; }
sections() {  # the sections of one mode, from check-config's JSON
    scraperd check-config --json | "$BIN/python" -c '
import json, sys
print(" ".join(r["section"] for r in json.load(sys.stdin)["sections"] if r["mode"] == sys.argv[1]))' "$1"
}

# Data flows now: every faker and scraper RUNNING, and every scraper context has a record, not its seed,
# inserted since $1 (UTC) — on a restart the records of the last run do not count.
flowing() {
    local doc
    doc=$(scraperd status --json 2>/dev/null || true)
    [ -n "$doc" ] && "$BIN/python" -c '
import json, sys
doc, since = json.loads(sys.argv[1]), sys.argv[2]
running = all(s["state"] == "RUNNING" for s in doc["sections"] if s["mode"] != "averager")
rows = [r for s in doc["sections"] if s["mode"] == "scraper" for r in s["sources"]]
fresh = all(r["seqno"] and r["seed"] is False and r["insertdate"] >= since for r in rows)
sys.exit(0 if running and rows and fresh else 1)' "$doc" "$1"
}

start() {
    mkdir -p var/run var/log var/demo deploy/conf.d
    scraperd check-config >/dev/null

    if [ ! -e var/demo/fake_dcs.db ] || [ ! -e var/demo/tmp_offline_db.db ]; then
        echo "creating the demo databases under var/demo/ (log: $SETUP_LOG)"
        # One iteration each: the fakers create the DCS tables and a first row, the scrapers create
        # and seed the DBI tables. Done before supervisord, so no program starts against nothing.
        for s in $(sections faker) $(sections scraper); do
            scraperd run "$s" --set maxiter=1 --set sleep=0s >>"$SETUP_LOG" 2>&1 \
                || { echo "demo: setup run of $s failed, see $SETUP_LOG" >&2; exit 1; }
        done
    fi

    scraperd gen-ini ALL
    local since
    since=$(date -u '+%Y-%m-%d %H:%M:%S')

    if supervisord_up; then
        echo "supervisord is running: picking up the program files"
        ctl reread
        ctl update
        # programs stopped by hand come back; running ones are left alone (the averager is run by hand)
        ctl start $(sections faker) $(sections scraper) $(sections monitor) >/dev/null || true
    else
        echo "starting supervisord"
        "$BIN/supervisord" -c "$CONF"
        local until=$((SECONDS + 15))
        until supervisord_up; do
            [ $SECONDS -lt $until ] || { echo "demo: supervisord did not answer, see var/log/supervisord.log" >&2; exit 1; }
            sleep 0.2
        done
    fi

    echo "waiting (up to ${DEADLINE_S}s) until every scraper has written a record..."
    local deadline=$((SECONDS + DEADLINE_S))
    until flowing "$since"; do
        if [ $SECONDS -ge $deadline ]; then
            echo "demo: no records after ${DEADLINE_S}s; programs and status:" >&2
            ctl status >&2 || true
            scraperd status >&2 || true
            echo "look at the logs: $BIN/scraperd logs SECTION (files in var/log/)" >&2
            exit 1
        fi
        sleep 1
    done
    echo
    scraperd status || true
    cat <<EOF

The demo fleet runs under supervisord. Look further with:
  $BIN/supervisorctl -c $CONF status
  $BIN/supervisorctl -c $CONF tail -f adtemp_scraper
  $BIN/supervisorctl -c $CONF stop pmthv_scraper     (and start, restart)
  $BIN/scraperd -c $CFG status [--json]
  $BIN/scraperd -c $CFG monitor [--json]             (freshness, sources, programs: exit 0 OK .. 3 UNKNOWN)
  $BIN/scraperd logs adtemp_scraper --event sample,propagate [-f]
  $BIN/scraperd -c $CFG run adlid_averager          (after a few minutes: per-minute averages)
  make stop
EOF
}

stop() {
    if ! supervisord_up; then
        echo "supervisord is not running: nothing to stop"
        return 0
    fi
    local pid
    pid=$(ctl pid)
    ctl stop all
    ctl shutdown
    local deadline=$((SECONDS + 60))
    while kill -0 "$pid" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "demo: supervisord (pid $pid) still running after 60s" >&2; exit 1; }
        sleep 0.2
    done
    echo "supervisord stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
