"""`scraperd monitor`: are the targets updated, is the DCS writing, is everything expected there, does
replication keep up, is any program FATAL — one line per check, nagios-style exit code.

    results.py    State (OK 0, WARNING 1, CRITICAL 2, UNKNOWN 3) and CheckResult
    checks.py     freshness of every scraper target per (table, context); freshness of every DCS table
    expected.py   --gen-expected and the MISSING check (pandokia's gen_expected / check_expected)
    replication.py  the offline_db chain, hop by hop: LOCALSEQNO, max SEQNO, max INSERTDATE
    fleet.py      supervisord programs FATAL, BACKOFF or EXITED unexpectedly
    rounds.py     one round of every enabled check (Monitor.round)
    daemon.py     `scraperd run <monitor section>`: a round every `every`, notifying on changes
    here          the one-shot command for cron or nagios

Notifications (scraperd.notify) are sent on a change of state and re-sent every `renotify` while a
check stays bad, by the daemon and by the one-shot alike (the state file remembers what was sent).
"""

from __future__ import annotations

import argparse
import json
import sys

from scraperd import config, logsetup
from scraperd.monitor.results import CheckResult, State, worst
from scraperd.monitor.rounds import Monitor, counts, summary, utcnow

__all__ = ["CheckResult", "Monitor", "State", "register", "worst"]

NOTIFY_GRACE_S = 5.0  # the one-shot waits http_timeout + this for its deliveries, then exits (nagios waits too)

EPILOG = """\
examples:
  scraperd monitor                      # the file's [monitor] section (or every default), one round
  scraperd monitor --json
  scraperd monitor --gen-expected       # record the (table, context) pairs that hold a record now
  scraperd run monitor                  # the same checks every `every`, under supervisord

checks (the `checks` key picks them):
  freshness    every scraper target per (table, context): age of its last record (INSERTDATE,
               TIMEEND) against stale_after (the section's, else the monitor's, else
               2 x maxage + 10 effective heartbeats + source_delay). CRITICAL when nothing was
               written for longer; WARNING while catching up, or when its source stopped too
  source       every DCS table: its newest date_time (source_tz) against source_stale_after
  expected     each pair of the expected file with no record inserted within expected_period is
               MISSING (CRITICAL); --gen-expected adds the pairs that hold a record now (never removes)
  replication  the `chain` of databases (master first), per DBI table and hop: LOCALSEQNO, max
               SEQNO, max INSERTDATE; behind by replica_max_seqnos / replica_max_lag is WARNING,
               twice that CRITICAL
  fleet        supervisord programs FATAL, BACKOFF or EXITED unexpectedly

The first line is the nagios summary; then one line per check. Exit 0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN (the worst check; CRITICAL outranks UNKNOWN, which outranks WARNING); 78 on a broken config.
With `notify` set, a change of state is notified (and re-notified every `renotify`); the state
file keeps what was sent, so a cron job notifies once per change too.
"""


def cmd_monitor(args: argparse.Namespace) -> int:
    cfg = config.read_file(config.config_path(args.config))
    m = Monitor.load(cfg, args.name, config.parse_overrides(args.overrides))
    # events (notify_sent, notify_failed) go to stderr: stdout is the checks' lines or the JSON document
    logsetup.configure(stream=sys.stderr, level=m.settings.dbi_loglevel)
    logsetup.bind(section=m.name)
    if args.gen_expected:
        return _gen_expected(m, as_json=args.json)
    notifier = m.notifier() if m.settings.notify and not args.no_notify else None  # bad secrets: exit 78 first
    now = utcnow()
    results = m.round(now)
    state = worst(r.state for r in results)
    if args.json:
        print(json.dumps({"monitor": m.name, "config": cfg.display, "now_utc": now.isoformat(sep=" "),
                          "state": state.name, "exit_code": state.value, "counts": counts(results),
                          "checks": [r.asdict() for r in results]}, indent=2))
    else:
        print(summary(results))
        for r in results:
            print(r.line())
    sys.stdout.flush()
    if notifier is not None:
        try:
            notifier.observe(results)
        finally:  # what is not delivered by then is sent again by the next run (the state file knows)
            notifier.close(timeout=m.settings.http_timeout.total_seconds() + NOTIFY_GRACE_S)
    return state.value


def _gen_expected(m: Monitor, *, as_json: bool) -> int:
    path, added, had, errors = m.gen_expected()
    if as_json:
        print(json.dumps({"expected_file": str(path), "added": [vars(p) for p in added], "already": had,
                          "errors": errors}, indent=2))
    else:
        for pair in added:
            print(f"added    {pair.target} {pair.table} {pair.context}")
        print(f"{len(added)} pairs added, {had} already expected ({path})")
    for line in errors:
        print(f"scraperd: target not read: {line}", file=sys.stderr)
    return 1 if errors else 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("monitor", help="check targets, sources, expected records, replication and programs once",
                       description="One round of the monitor's checks: one line each, a nagios-style summary "
                                   "first, exit 0/1/2/3 (OK/WARNING/CRITICAL/UNKNOWN).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", metavar="SECTION",
                   help="a mode = monitor section (default: the file's only one, or every default)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of the lines")
    p.add_argument("--gen-expected", action="store_true",
                   help="add every (table, context) that holds a record now to the expected file, and exit")
    p.add_argument("--no-notify", action="store_true", help="print only: notify nobody, leave the state file")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                   help="override a key of the monitor section (repeatable)")
    p.set_defaults(func=cmd_monitor)
