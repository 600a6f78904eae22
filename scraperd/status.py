"""`scraperd status`: the fleet in one table — supervisord's view of every program, and per source
context how far the target is behind its source.

    SECTION         MODE     STATE    UPTIME   SOURCE         SEQNO  TIMESTART(UTC)       ...  LAG      HB
    adtemp_scraper  scraper  RUNNING  0:12:03  DBNS_SAB_Temp  412    2011-02-01 01:10:00  ...  0:00:20  2.0

Per context of a scraper or averager: the last validity record (dbi.reader.last_validity, the one a
restart resumes from), the source head (latest date_time, local), the lag = head − tcursor with
tcursor = TIMEEND in source local time, that lag in effective heartbeats (heartbeat × (offset+1)),
and the Vld rows inserted in the last hour (not the seed); for a scraper, the `late_row` events of the
last day in its log file (late source rows it could not read). Fakers show their state and source head only.
supervisord is asked over its unix socket (named in deploy/supervisord.conf); when it does not
answer the state is "-".

Exit 0; 1 when a scraper lags more than its status_maxlag or its databases cannot be read; 78 when
a section's configuration is broken. Reads only: a missing SQLite file is reported, never created,
and no password is printed (databases are named by their config value; any password met while
resolving them is masked in the output as well).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from scraperd import config, databases, logview, preflight
from scraperd.dbi import reader
from scraperd.dbi.context import Context
from scraperd.dbi.tables import DbiTables, tables_for
from scraperd.errors import EX_CONFIG, ConfigError, NoDatabaseFile, ScraperdError, error_lines
from scraperd.regimes.base import Regime
from scraperd.scrape import sampling, source
from scraperd.supervisor import (
    ALL,
    DEFAULT_LOG_DIR,
    SUPERVISORD_CONF,
    ProgramState,
    logfile_for,
    programs,
    supervisor_url,
)

TIME = "%Y-%m-%d %H:%M:%S"
RECENT = timedelta(hours=1)
LATE_WINDOW = timedelta(days=1)  # late_row events counted: rare, and worth seeing the morning after
NOT_RUN = "not run yet"  # an averager's target without a record: a note, not a failure

# ----------------------------------------------------------------------------------------------------------
# databases: read-only, one engine per database per run


class Databases:
    """Engines of this run by config name; remembers passwords so that output can mask them."""

    def __init__(self) -> None:
        self.engines: dict[tuple[str, bool], Engine] = {}
        self.secrets: set[str] = set()

    def engine(self, name: str, *, readonly: bool) -> Engine:
        key = (name, readonly)
        if key not in self.engines:
            url = databases.resolve(name)
            if url.password:
                self.secrets.add(str(url.password))
            _refuse_missing_sqlite(url)
            self.engines[key] = databases.make_engine(url, readonly=readonly)
        return self.engines[key]

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()


def _refuse_missing_sqlite(url: URL) -> None:
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if not Path(url.database).exists():
            raise NoDatabaseFile(f"no database file {url.database} (relative to {os.getcwd()})")


def brief(exc: BaseException) -> str:
    """One line naming an error, without the SQL or the URL."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        text = str(exc.orig).strip().splitlines()
        return f"{type(exc.orig).__name__}: {text[0] if text else ''}"
    if isinstance(exc, ConfigError):
        return exc.line()
    if isinstance(exc, ScraperdError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ----------------------------------------------------------------------------------------------------------
# per section


def _fmt(t: datetime | None) -> str | None:
    return t.strftime(TIME) if t is not None else None


def recent_select(tables: DbiTables, ctx: Context, since: datetime,
                  seed: tuple[datetime, datetime] | None = None) -> sa.Select[Any]:
    """Count of this exact context's Vld rows inserted at or after `since` (naive UTC), the seed not counted."""
    v = tables.vld.c
    q = (sa.select(sa.func.count()).select_from(tables.vld)
         .where(reader.exact_context(tables, ctx), v.INSERTDATE >= since))
    if seed is not None:
        q = q.where(sa.not_(sa.and_(v.TIMESTART == seed[0], v.TIMEEND == seed[1])))
    return q


def _seed_validity(s: config.TargetCommon) -> tuple[datetime, datetime] | None:
    """The seed record's validity (UTC) when the section seeds an empty target."""
    if not (s.seed_target_tables and s.seed_timestart and s.seed_timeend):
        return None
    return sampling.to_utc(s.seed_timestart, s.source_tz), sampling.to_utc(s.seed_timeend, s.source_tz)


def _is_seed(s: config.TargetCommon, last: reader.VldRow) -> bool:
    return _seed_validity(s) == (last.timestart, last.timeend)


def _heads(dbs: Databases, loaded: config.Loaded,
           regime: type[Regime]) -> dict[str, datetime | None | BaseException]:
    """Source head (latest date_time, local) per source name, or the error met reading it."""
    out: dict[str, datetime | None | BaseException] = {}
    s = loaded.settings
    delay = s.source_delay if isinstance(s, config.ScraperSection) else timedelta(0)
    until = source.horizon(s.source_tz, delay=delay)  # a scraper's source_delay holds rows back: they are no lag
    try:
        engine = dbs.engine(s.source, readonly=True)
        with engine.connect() as conn:
            for src in regime.sources:
                try:
                    out[src.name] = source.head(conn, source.reflect(conn, src), until)
                except (sa.exc.SQLAlchemyError, ScraperdError) as exc:
                    out[src.name] = exc
    except (sa.exc.SQLAlchemyError, ScraperdError, OSError) as exc:
        return {src.name: exc for src in regime.sources}
    return out


def section_status(loaded: config.Loaded, dbs: Databases, now: datetime) -> dict[str, Any]:
    """The per-source rows of one validated section."""
    s = loaded.settings
    regime: type[Regime] = config.load_regime(s.regime)
    heads = _heads(dbs, loaded, regime)
    rows: list[dict[str, Any]] = []
    if not isinstance(s, config.TargetCommon):  # a faker: its source head only
        for src in regime.sources:
            head = heads[src.name]
            rows.append({"source": src.name, "head": None if isinstance(head, BaseException) else _fmt(head),
                         "error": brief(head) if isinstance(head, BaseException) else None})
        return {"sources": rows}

    target_error: BaseException | None = None
    tables: DbiTables | None = None
    target: Engine | None = None
    try:
        tables = tables_for(preflight.target_spec(loaded, regime))
        target = dbs.engine(s.target, readonly=True)
    except (sa.exc.SQLAlchemyError, ScraperdError, OSError) as exc:
        target_error = exc
    floor = sampling.to_utc(s.timefloor, s.source_tz) if s.timefloor else None
    averager = isinstance(s, config.AveragerSection)
    eff_heartbeat = s.heartbeat * (s.offset + 1) if isinstance(s, config.ScraperSection) else None
    for src in regime.sources:
        ctx = preflight.context_for(src, s)
        head = heads[src.name]
        row: dict[str, Any] = {"source": src.name, "sitemask": ctx.sitemask, "subsite": ctx.subsite,
                               "seqno": None, "timestart": None, "timeend": None, "insertdate": None,
                               "seed": None, "tcursor": None,
                               "head": None if isinstance(head, BaseException) else _fmt(head),
                               "lag_s": None, "lag_heartbeats": None, "propagations_1h": None,
                               "lagging": False, "error": None, "note": None}
        rows.append(row)
        head_error = head if isinstance(head, BaseException) else None
        # an averager is run by hand, now and then: a target that is not there yet is a note, not a failure
        not_run = averager and isinstance(target_error, NoDatabaseFile)
        error = head_error if not_run else (target_error or head_error)  # a source in trouble always shows
        last = None
        if target_error is None:
            assert tables is not None and target is not None
            try:
                with target.connect() as conn:
                    # an averager's target without tables: not run yet (below)
                    if not averager or sa.inspect(conn).has_table(tables.vld.name):
                        last = reader.last_validity(conn, tables, ctx, timefloor=floor)
                        row["propagations_1h"] = int(conn.execute(recent_select(tables, ctx, now - RECENT,
                                                                                  _seed_validity(s))).scalar()
                                                     or 0)
            except sa.exc.SQLAlchemyError as exc:
                error = exc
        if error is not None:
            row["error"] = brief(error)
        if last is None:
            if error is None and averager:
                row["note"] = NOT_RUN
            elif error is None:
                row["error"] = "no validity record yet"
            continue
        tcursor = sampling.tcursor_after(last.timeend, s.source_tz)
        row.update(seqno=last.seqno, timestart=_fmt(last.timestart), timeend=_fmt(last.timeend),
                   insertdate=_fmt(last.insertdate), seed=_is_seed(s, last), tcursor=_fmt(tcursor))
        if isinstance(head, datetime):
            lag = max(head - tcursor, timedelta(0))
            row["lag_s"] = lag.total_seconds()
            if eff_heartbeat:
                row["lag_heartbeats"] = round(lag / eff_heartbeat, 1)
            row["lagging"] = isinstance(s, config.ScraperSection) and lag > s.status_maxlag
    return {"sources": rows}


def count_late(entry: dict[str, Any], proc: ProgramState | None, logdir: Path | None, now: datetime) -> None:
    """late_rows_24h of a scraper's source rows, from its log file: the one named by --logdir, else
    the one supervisord writes, else var/log/<section>.log. None, and entry["log"]["error"] saying
    why, when the file cannot be read: never a 0 that was not counted."""
    name = entry["section"]
    named = proc.logfile if proc is not None and logdir is None else None
    path = Path(named) if named else logfile_for(name, logdir)
    entry["log"] = {"file": str(path), "error": None}
    counts = None
    try:
        counts = logview.count_events(path, "late_row", now.replace(tzinfo=UTC) - LATE_WINDOW)
    except FileNotFoundError:
        entry["log"]["error"] = f"no log file {path}"
    except OSError as exc:
        entry["log"]["error"] = f"cannot read {path}: {exc.strerror or exc}"
    for r in entry["sources"]:
        r["late_rows_24h"] = None if counts is None else counts.get(r["source"], 0)


def collect(cfg: config.ConfigFile, names: Sequence[str], supervisor_conf: Path | None,
            now: datetime | None = None, logdir: Path | None = None) -> tuple[dict[str, Any], Databases]:
    """The status document of the named sections (the JSON of --json)."""
    now = now or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    url = supervisor_url(supervisor_conf)[0] if supervisor_conf else None
    procs = programs(supervisor_conf) if supervisor_conf else None
    dbs = Databases()
    sections = []
    for name in names:
        proc = procs.get(name) if procs is not None else None
        entry: dict[str, Any] = {
            "section": name, "mode": None, "host": None,
            "state": "-" if procs is None else (proc.state if proc else "absent"),
            "pid": proc.pid if proc else None, "uptime_s": proc.uptime_s if proc else None,
            "status_maxlag_s": None, "config_error": False, "errors": [], "sources": [], "log": None}
        sections.append(entry)
        try:
            loaded = config.validate(cfg, name)
        except ConfigError as exc:
            raw = cfg.sections.get(name, {})
            entry["mode"] = raw.get("mode", cfg.defaults.get("mode", "scraper"))
            entry["errors"] = error_lines(exc)
            entry["config_error"] = True
            continue
        s = loaded.settings
        entry.update(mode=s.mode, host=s.host or None)
        if isinstance(s, config.TargetCommon):
            entry["status_maxlag_s"] = s.status_maxlag.total_seconds()
        try:
            entry.update(section_status(loaded, dbs, now))
        except (sa.exc.SQLAlchemyError, ScraperdError, OSError) as exc:
            entry["errors"] = [brief(exc)]
        if isinstance(s, config.ScraperSection):
            count_late(entry, proc, logdir, now)
    lagging = [f"{e['section']}:{r['source']}" for e in sections for r in e["sources"] if r.get("lagging")]
    failing = [e["section"] for e in sections
               if e["mode"] in ("scraper", "averager") and (e["errors"] or any(r.get("error") for r in e["sources"]))]
    doc = {"config": cfg.display, "now_utc": _fmt(now),
           "supervisord": {"conf": str(supervisor_conf) if supervisor_conf else None, "serverurl": url,
                           "reachable": procs is not None},
           "sections": sections, "lagging": lagging, "failing": failing,
           "config_errors": [e["section"] for e in sections if e.get("config_error")]}
    return doc, dbs


def exit_code(doc: dict[str, Any]) -> int:
    if doc["config_errors"]:
        return EX_CONFIG
    return 1 if doc["lagging"] or doc["failing"] else 0


# ----------------------------------------------------------------------------------------------------------
# output


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return str(timedelta(seconds=int(seconds)))


COLUMNS = ("section", "mode", "state", "uptime", "source", "seqno", "timestart(utc)", "insertdate(utc)",
           "head(local)", "lag", "hb", "prop/1h", "late/24h", "note")


def table_rows(doc: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for e in doc["sections"]:
        first = {"section": e["section"], "mode": e["mode"] or "?", "state": e["state"],
                 "uptime": _duration(e["uptime_s"])}
        if not e["sources"]:
            out.append({**first, "note": "config error" if e.get("config_error") else "; ".join(e["errors"])})
            continue
        for i, r in enumerate(e["sources"]):
            row = dict(first) if i == 0 else {}
            note = r.get("error") or r.get("note") or ""
            if r.get("lagging"):
                note = f"LAGGING (> {_duration(e['status_maxlag_s'])})"
            elif r.get("seed"):
                note = "seed only"
            hb = r.get("lag_heartbeats")
            row.update({"source": r["source"], "seqno": str(r.get("seqno") or "-"),
                        "timestart(utc)": r.get("timestart") or "-", "insertdate(utc)": r.get("insertdate") or "-",
                        "head(local)": r.get("head") or "-", "lag": _duration(r.get("lag_s")),
                        "hb": "-" if hb is None else f"{hb:.1f}",
                        "prop/1h": "-" if r.get("propagations_1h") is None else str(r["propagations_1h"]),
                        "late/24h": "-" if r.get("late_rows_24h") is None else str(r["late_rows_24h"]),
                        "note": note})
            if e["mode"] != "scraper":  # only scrapers read rows one by one: late rows are theirs
                row["late/24h"] = ""
            if e["mode"] == "faker":
                for k in ("seqno", "timestart(utc)", "insertdate(utc)", "lag", "hb", "prop/1h"):
                    row[k] = ""
            out.append(row)
    return out


def render(doc: dict[str, Any]) -> str:
    rows = table_rows(doc)
    widths = {c: max([len(c)] + [len(r.get(c, "")) for r in rows]) for c in COLUMNS}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in COLUMNS).rstrip()]
    lines += ["  ".join(r.get(c, "").ljust(widths[c]) for c in COLUMNS).rstrip() for r in rows]
    sv = doc["supervisord"]
    where = f"at {sv['serverurl']}" if sv["serverurl"] else "(no supervisord config)"
    lines.append(f"supervisord: {'running' if sv['reachable'] else 'not answering'} {where}"
                 f"  ({doc['config']}, now {doc['now_utc']} UTC)")
    lines += [f"{e['section']}: LATE/24H not counted: {e['log']['error']} (--logdir DIR names the log directory)"
              for e in doc["sections"] if e.get("log") and e["log"]["error"]]
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    path = config.config_path(args.config)
    cfg = config.read_file(path)
    if args.section == ALL:
        names = list(cfg.sections)
    else:
        config.validate(cfg, args.section)  # an unknown or broken section named on purpose: exit 78
        names = [args.section]
    conf: Path | None = Path(args.supervisor_conf) if args.supervisor_conf else SUPERVISORD_CONF
    if not args.supervisor_conf and not SUPERVISORD_CONF.exists():
        conf = None  # scraperd installed without its deploy/ tree: no supervisord to ask
    doc, dbs = collect(cfg, names, conf, logdir=Path(args.logdir) if args.logdir else None)
    dbs.close()
    if args.json:
        print(dbs.mask(json.dumps(doc, indent=2)))
    else:
        print(dbs.mask(render(doc)))
        for e in doc["sections"]:
            for line in e["errors"]:
                print(dbs.mask(line), file=sys.stderr)
    return exit_code(doc)


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
Exit 1 when a scraper lags more than its status_maxlag or cannot be read, 78 on a broken section;
an averager whose target has no record yet (it is run by hand, now and then) is noted "not run
yet", not failing. Late rows never change the exit code.

config keys read: source, target, kls, source_tz, source_delay, timefloor, heartbeat, offset,
status_maxlag, seed_target_tables, seed_timestart, seed_timeend
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
