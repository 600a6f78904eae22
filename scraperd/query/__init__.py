"""`scraperd query` and `scraperd shell`: reading the conditions database the fleet writes.

    target.py    which database (--db, --section, the config section writing TABLE), table, context, times
    resolve.py   DBI's context query at a time (dbi.reader), and over a range (segments and gaps)
    render.py    the answer as aligned tables, one JSON document, or CSV
    shell.py     the interactive Python with src/tgt sessions, kls_() and NonDbi's session_()
    here         the commands: arguments, exit codes, the "Non-unique versionDate" warning

Exit codes of query: 0 an answer; 1 no record (a gap, or nothing of that context) or a database that
cannot be read; 78 a bad table, option, time, zone, section or database name (one line). Reads only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import sqlalchemy as sa

from scraperd import clirun, logsetup
from scraperd.dbi.context import site_mask
from scraperd.dbi.reader import VldRow
from scraperd.errors import ConfigError, ScraperdError
from scraperd.query import render, resolve, target

EPILOG = """\
examples:
  scraperd query DcsAdTemp --at '2011-02-01 00:05:00'                  # the record valid then (UTC)
  scraperd query DcsAdTemp --at '2011-02-01 08:05' --tz Asia/Shanghai   # local time in, local time out
  scraperd query DcsPmtHv --at 2011-02-01T00:05:00 --site DayaBay --subsite 2 --json
  scraperd query DcsAdTemp --range '2011-02-01 00:00' '2011-02-01 01:00' --csv > adtemp.csv
  scraperd query DcsAdTemp --range 2011-02-01 2011-02-02 --no-payload  # the records only, and the gaps
  scraperd query DcsAdTemp --at '2011-02-01 00:05' --rollback '2011-03-01'   # as the DB stood then
  scraperd query DcsAdTemp --at '2011-02-01 00:05' --db sqlite:///var/demo/tmp_offline_db.db

The answer is DBI's context query: of the Vld rows whose [TIMESTART, TIMEEND) holds the time, whose
SITEMASK and SIMMASK share a bit with the context's and whose SUBSITE and TASK equal it (AGGREGATENO
-1, not aggregated), the one with the highest VERSIONDATE; between equal VERSIONDATEs the later
SEQNO, with DBI's warning "Non-unique versionDate" on stderr (and a non_unique_versiondate event).
--rollback DATE hides the rows inserted at or after DATE (INSERTDATE < DATE), as DBI's rollback.

--range A B answers the same question at every instant of [A, B): the records in time order (a
scraper's records cover [t, t+interval) and may leave gaps; each gap is a line of its own). A
record overlaid in part by another (same context, later VERSIONDATE) is shown where it answers
(NOTE: overlaid: answers from ... until ...); one overlaid everywhere is not shown.

Which database: --db DBCONF (a ~/.my.cnf section, $SCRAPERD_MYCNF, or an SQLAlchemy URL); else
--section NAME's target; else the target of the scraper or averager section(s) of the config (-c,
$SCRAPER_CFG, etc/scraper.cfg) that write TABLE. TABLE may be given as its class (GDcsAdTemp).

The context: DBI's defaults as the scrapers write them (simmask 1 = data, task 0, or the section's
simmask and task keys); the site and subsite the options do not give come from the section's
sources (DBNS_SAB_Temp: SAB, subsite 1), else from the table when it holds one such context only.
Sites: DayaBay 1, LingAo 2, Far 4, Mid 8, Aberdeen 16, SAB 32 (or DBNS, LANS, FARS, MIDS).

Times: 'YYYY-MM-DD HH:MM:SS', 'YYYY-MM-DDTHH:MM:SS', 'YYYY-MM-DD HH:MM' or a date, in UTC unless
--tz NAME (an IANA zone) says otherwise; --tz also converts every time shown, and each header says
the zone (JSON and CSV: ISO 8601 with the offset).

Exit codes: 0 an answer; 1 no record valid then (the line says where the records before and after
end and start) or a database that cannot be read; 78 a bad table, option, time or zone (one line).
"""

SHELL_EPILOG = """\
examples:
  scraperd shell adtemp_scraper                     # src, tgt: the section's source and target
  scraperd shell --db sqlite:///var/demo/fake_dcs.db -c 'q = db.query(kls_("DBNS_SAB_Temp")); print(q.count())'
  echo 'tgt.query(kls_("DcsAdTempVld")).count()' | scraperd shell adtemp_scraper

In the namespace:
  src, tgt      sqlalchemy.orm.Session of the section's source and target (None, with a note, when
                the section has none); with --db, db and tgt are a Session of that database
  kls_(name)    a class mapped onto the table (sqlalchemy automap, reflected), from the first of db,
                src, tgt holding it; session.kls_(name) maps it from that session's database. A table
                without a primary key is mapped on `id` (DCS tables), (SEQNO, ROW_COUNTER) or SEQNO.
  session_(DBCONF)   a Session with .kls_() for any ~/.my.cnf section or URL, as NonDbi's;
                `from NonDbi import session_` works too, so the manual's lines work as written:
                  from NonDbi import session_
                  session = session_("fake_dcs")
                  kls = session.kls_("DBNS_AD1_HV")
                  q = session.query(kls).order_by(kls.date_time)
                  q.count()
                  q[70:74]
  sa            sqlalchemy

-c PYTHON runs the code and exits; code piped on stdin likewise. Statements run one by one as at
the prompt: the value of a bare expression is printed. Exit 0, or 1 after the first exception (its
traceback on stderr). On a terminal: IPython when it is installed, else Python's own console.
Nothing is written unless the code writes (and commits) it.
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    fmt = argparse.RawDescriptionHelpFormatter
    q = clirun.arguments_are_config(sub.add_parser(
        "query", help="the DBI record valid at a time (or over a range) for a context, with its payload",
        description="Ask the conditions database what DBI answers: the validity record valid at a time\n"
                    "for a context, and its payload rows (or every record over a time range).",
        epilog=EPILOG, formatter_class=fmt))
    q.add_argument("table", metavar="TABLE", help="DBI payload table (DcsAdTemp) or class (GDcsAdTemp)")
    when = q.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", metavar="TIME", help="the record valid at TIME")
    when.add_argument("--range", nargs=2, metavar=("A", "B"), help="every record answering in [A, B), in time order")
    site = q.add_mutually_exclusive_group()
    site.add_argument("--sitemask", type=int, metavar="N", help="SITEMASK of the context (a bit mask)")
    site.add_argument("--site", metavar="NAME", help="site by name: DayaBay, LingAo, Far, Mid, Aberdeen, SAB")
    q.add_argument("--subsite", type=int, metavar="N", help="SUBSITE of the context (detector: AD1 = 1, ...)")
    q.add_argument("--simmask", type=int, metavar="N", help="SIMMASK (default: the section's simmask, else 1 = data)")
    q.add_argument("--task", type=int, metavar="N", help="TASK (default: the section's task, else 0)")
    q.add_argument("--rollback", metavar="DATE", help="as the database stood at DATE: rows inserted since are hidden")
    q.add_argument("--tz", metavar="NAME", help="zone of the times given and shown (default UTC)")
    db = q.add_mutually_exclusive_group()
    db.add_argument("--db", metavar="DBCONF", help="database: ~/.my.cnf section or SQLAlchemy URL")
    db.add_argument("--section", metavar="NAME", help="read this scraper's or averager's target")
    out = q.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON document")
    out.add_argument("--csv", action="store_true", help="CSV: the payload rows, led by SEQNO")
    q.add_argument("--no-payload", dest="payload", action="store_false", help="the validity records only")
    q.set_defaults(func=cmd_query)

    sh = sub.add_parser(
        "shell", help="interactive Python with SQLAlchemy sessions on a section's databases (NonDbi's session_)",
        description="An interactive Python (IPython when installed) with sessions on the source (src) and\n"
                    "target (tgt) of SECTION, kls_(name) mapping any table, and NonDbi's session_(DBCONF).",
        epilog=SHELL_EPILOG, formatter_class=fmt)
    sh.add_argument("section", nargs="?", metavar="SECTION", help="config section whose source and target to open")
    sh.add_argument("--db", metavar="DBCONF", help="open this database as db (and tgt): ~/.my.cnf section or URL")
    sh.add_argument("-c", dest="code", metavar="PYTHON", help="run PYTHON and exit (code on stdin likewise)")
    sh.set_defaults(func=cmd_shell)


# ----------------------------------------------------------------------------------------------------------
# query


def _sitemask(args: argparse.Namespace) -> int | None:
    for key in ("sitemask", "simmask"):  # a mask of no bit matches nothing, a negative one everything
        value = getattr(args, key)
        if value is not None and value < 1:
            raise ConfigError(f"must be a bit mask of 1 or more (DBI's masks: 1, 2, 4, ...), got {value}",
                              key=f"--{key}")
    if args.site is None:
        return int(args.sitemask) if args.sitemask is not None else None
    try:
        return site_mask(args.site)
    except ValueError as exc:
        raise ConfigError(str(exc), key="--site") from None


UNKNOWN_DATABASE = (1049,)  # ER_BAD_DB_ERROR


def _mysql_code(exc: sa.exc.DBAPIError) -> int | None:
    code = next(iter(getattr(exc.orig, "args", ())), None)
    return code if isinstance(code, int) else None


def _brief(exc: sa.exc.DBAPIError) -> str:
    text = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    return f"{type(exc.orig or exc).__name__}: {text[0] if text else ''}"


def cmd_query(args: argparse.Namespace) -> int:
    logsetup.configure(stream=sys.stderr)
    # everything typed is checked before anything connects
    tz = target.parse_zone(args.tz)
    sitemask = _sitemask(args)
    at = target.parse_time(args.at, tz, "--at") if args.at else None
    start = end = None
    if args.range:
        start, end = (target.parse_time(t, tz, "--range") for t in args.range)
        if start >= end:
            raise ConfigError(f"the range's start {args.range[0]!r} is not before its end {args.range[1]!r}",
                              key="--range")
    rollback = target.parse_time(args.rollback, tz, "--rollback") if args.rollback else None
    where = target.database(args.table, db=args.db, section=args.section, config_path=args.config)
    engine = target.engine_for(where)
    answer: resolve.AtAnswer | resolve.RangeAnswer
    try:
        with engine.connect() as conn:
            tables = target.open_tables(conn, args.table, where)
            ctx = target.choose_context(conn, tables, where, sitemask=sitemask, subsite=args.subsite,
                                        simmask=args.simmask, task=args.task)
            if ctx is None:  # no record of any context matching what was given
                given = {k: v for k, v in (("sitemask", sitemask), ("subsite", args.subsite),
                                           ("simmask", args.simmask if args.simmask is not None else where.simmask),
                                           ("task", args.task if args.task is not None else where.task))
                         if v is not None}
                print(f"no record of {tables.name} for {' '.join(f'{k}={v}' for k, v in given.items())} "
                      f"({where.shown})", file=sys.stderr if args.json or args.csv else sys.stdout)
                return 1
            asked = render.Asked(table=tables.name, database=where.shown, context=ctx, tz=tz,
                                 columns=("ROW_COUNTER", *tables.spec.column_names), at=at, start=start, end=end,
                                 rollback=rollback, payload=args.payload)
            if at is not None:
                answer = resolve.at(conn, tables, at, ctx, rollback=rollback, with_payload=args.payload)
            else:
                assert start is not None and end is not None
                answer = resolve.over(conn, tables, start, end, ctx, rollback=rollback, with_payload=args.payload)
    except sa.exc.DBAPIError as exc:
        if _mysql_code(exc) in UNKNOWN_DATABASE:  # a misspelt --db or target, not a server in trouble
            raise ConfigError(f"cannot read {where.shown}: {_brief(exc)}", key="--db" if args.db else None) from None
        raise ScraperdError(f"cannot read {where.shown}: {_brief(exc)}") from None
    finally:
        engine.dispose()
    return _show(answer, asked, args)


def _show(answer: resolve.AtAnswer | resolve.RangeAnswer, asked: render.Asked, args: argparse.Namespace) -> int:
    """Print the answer in the format asked; warn of ties; 1 when there is no record."""
    found = answer.vld is not None if isinstance(answer, resolve.AtAnswer) else bool(answer.records)
    if isinstance(answer, resolve.AtAnswer):
        text = render.at_json(answer, asked) if args.json else render.at_csv(answer, asked) if args.csv \
            else render.at_table(answer, asked) if found else render.empty(answer, asked)
        ties = [(answer.vld, answer.ties)] if answer.vld is not None and answer.ties else []
    else:
        text = render.range_json(answer, asked) if args.json else render.range_csv(answer, asked) if args.csv \
            else render.range_table(answer, asked) if found else render.empty(answer, asked)
        ties = list({(s.vld.seqno, s.ties): (s.vld, s.ties) for s in answer.records if s.vld and s.ties}.values())
    print(text)
    sys.stdout.flush()
    if not found and (args.csv or args.json):  # the document says it to a script; this line, to its reader
        print(f"scraperd: {render.empty(answer, asked)}", file=sys.stderr)
    _warn_ties(ties, asked)
    return 0 if found else 1


def _warn_ties(ties: Sequence[tuple[VldRow, tuple[int, ...]]], asked: render.Asked) -> None:
    log = logsetup.get_logger()
    for winner, others in ties:
        print(f"scraperd: warning: {render.non_unique(winner, others, asked)}", file=sys.stderr)
        sys.stderr.flush()
        log.warning("non_unique_versiondate", table=asked.table, versiondate=winner.versiondate.isoformat(),
                    seqnos=[winner.seqno, *others], answer=winner.seqno, **asked.context.fields())


# ----------------------------------------------------------------------------------------------------------
# shell


def cmd_shell(args: argparse.Namespace) -> int:
    from scraperd.query import shell

    namespace, notes = shell.open_namespace(args.section, db=args.db, config_path=args.config)
    return shell.run(namespace, notes, code=args.code)
