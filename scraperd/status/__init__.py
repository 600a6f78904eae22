"""`scraperd status`: the fleet in one table — supervisord's view of every program, and per source
context how far the target is behind its source.

    SECTION         MODE     STATE    UPTIME   BEAT         SOURCE         SEQNO  TIMESTART(UTC)       INSERTDATE(UTC)      HEAD(local)          LAG      HB    PROP/1H  LATE/24H  NOTE
    adtemp_scraper  scraper  RUNNING  0:12:03  2s sleeping  DBNS_SAB_Temp  412    2011-02-01 01:10:00  2026-05-09 07:35:25  2011-02-01 09:10:30  0:00:20  2.0   6        0

Per context of a scraper or averager: the last validity record (dbi.reader.last_validity, the one a
restart resumes from), the source head (latest date_time, local), the lag = head − tcursor with
tcursor = TIMEEND in source local time, that lag in effective heartbeats (heartbeat × (offset+1)),
and the Vld rows inserted in the last hour (not the seed); for a scraper, the `late_row` events of the
last day in its log file (late source rows it could not read). Fakers show their state and source head only.
supervisord is asked over its unix socket (named in deploy/supervisord.conf); when it does not
answer the state is "-". DBI times are UTC, the source's local (the section's source_tz): each time
column's header says which.

    results.py   what status reports, typed: FleetStatus, SectionStatus, ContextStatus, SourceHead
    compute.py   reading the databases and supervisord into those results (collect)
    render.py    the results as the table, or as the --json document
    here         the command: which sections, which supervisord, the exit code

The exit code is the nagios one of the fleet's state (results.py; as `scraperd monitor`'s):
0 OK; 1 WARNING: a scraper STOPPED but not lagging, a program in BACKOFF or absent from supervisord;
2 CRITICAL: a scraper lagging more than its status_maxlag, a scraper or averager whose databases
cannot be read (or a scraper without any record), a program FATAL or EXITED unexpectedly; 3 UNKNOWN:
nothing could be read at all (supervisord does not answer and no section's databases could be
read); 78 when a section's configuration is broken, whatever the rest. Reads only: a missing SQLite file is reported, never created,
and no password is printed (databases are named by their config value; any password met while
resolving them is masked in the output as well).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scraperd import config
from scraperd.errors import EX_CONFIG
from scraperd.status import render
from scraperd.status.compute import Databases, collect
from scraperd.status.results import FleetStatus
from scraperd.supervisor import ALL, DEFAULT_LOG_DIR, SUPERVISORD_CONF


def exit_code(fleet: FleetStatus) -> int:
    """78 for a broken section, else the fleet's state: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    if fleet.config_errors:
        return EX_CONFIG
    return int(fleet.state)


def _supervisor_conf(args: argparse.Namespace) -> Path | None:
    """--supervisor-conf, else the checkout's deploy/supervisord.conf when there is one."""
    if args.supervisor_conf:
        return Path(args.supervisor_conf)
    return SUPERVISORD_CONF if SUPERVISORD_CONF.exists() else None  # installed without deploy/: nothing to ask


def cmd_status(args: argparse.Namespace) -> int:
    cfg = config.read_file(config.config_path(args.config))
    if args.section == ALL:  # a watchdog section is supervisord's event listener, a backup one cron's: no programs
        names = [n for n, keys in cfg.sections.items()
                 if {**cfg.defaults, **keys}.get("mode") not in config.NOT_PROGRAMS]
    else:
        config.validate(cfg, args.section)  # an unknown or broken section named on purpose: exit 78
        names = [args.section]
    with Databases() as dbs:
        fleet = collect(cfg, names, _supervisor_conf(args), dbs, logdir=Path(args.logdir) if args.logdir else None)
    if args.json:
        print(dbs.mask(render.to_json(fleet)))
    else:
        print(dbs.mask(render.render(fleet)))
        for e in fleet.sections:
            for line in e.errors:
                print(dbs.mask(line), file=sys.stderr)
    return exit_code(fleet)


EPILOG = """\
examples:
  scraperd status
  scraperd -c etc/demo.cfg status adtemp_scraper --json

LAG is head − tcursor (tcursor = TIMEEND of the last record, in source local time; a scraper's head
is the latest date_time at least source_delay old); HB is that lag in effective heartbeats,
heartbeat × (offset+1); PROP/1H counts the Vld rows inserted in the last hour (a seed record not
among them). LATE/24H counts a scraper's `late_row` warnings of the last 24 hours — source rows
committed after it had read past their date_time, which it never reads but a rebuild would — in
its log file (and the rotated ones before it): the file supervisord names for the program, else
var/log/<section>.log, or in --logdir; "-" when the file cannot be read, with the reason below the
table. STATE is supervisord's ("-" when it does not answer, "absent" when it has no such program).
BEAT is the age and phase of the program's own heartbeat file (<run_dir>/<section>.heartbeat,
written by the daemon: reading, writing, sleeping, retrying; "-" when there is none), e.g. `3s sleeping`;
--json gives it as "heartbeat" {ts, age_s, phase, pid, lag_s, sleep_s} or null. It never changes the
exit code.
A time column's header names its zone: (UTC) as DBI holds it, (local) the section's source_tz.
The last line names the state and what made it ("status: WARNING (1 stopped: adtemp_scraper)");
--json gives it as "state", and each section's as "check_state". Exit codes (nagios'):
  0  OK
  1  WARNING: a scraper STOPPED but not lagging; a program in BACKOFF, or absent from supervisord
  2  CRITICAL: a scraper or averager lagging more than its status_maxlag, or whose databases cannot
     be read (a scraper with no record yet); a program FATAL, or EXITED with a status not expected
  3  UNKNOWN: nothing could be read: supervisord does not answer and no section's database could be
     read (supervisord not answering alone changes nothing: STATE is "-")
  78 a broken section, whatever the rest
An averager whose target has no record yet (it is run by hand, now and then) is noted "not run
yet", not failing. Late rows never change the exit code.

config keys read: source, target, kls, source_tz, source_delay, timefloor, heartbeat, offset,
status_maxlag, seed_target_tables, seed_timestart, seed_timeend, run_dir
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("status", help="supervisord state, last record and lag of every section",
                       description="One table: supervisord state and uptime, and per source context the last "
                                   "validity record, the source head, the lag and recent propagations.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("section", nargs="?", default=ALL, metavar="SECTION|ALL", help="default ALL")
    p.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    p.add_argument("--supervisor-conf", metavar="PATH",
                   help=f"supervisord config naming its socket (default {SUPERVISORD_CONF})")
    p.add_argument("--logdir", metavar="DIR", help="directory of the programs' log files, read for LATE/24H "
                   f"(default: the file supervisord names, else {DEFAULT_LOG_DIR})")
    p.set_defaults(func=cmd_status)
