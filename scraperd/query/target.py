"""Which database, which table, which context and which times a `scraperd query` reads.

    database(table, db=..., section=..., config_path=...)  Where: --db, else --section's target, else
                                                           the one scraper/averager section writing TABLE
    open_tables(conn, table, where)                        the DBI pair, reflected (TABLE, GTABLE or TABLEVld)
    choose_context(conn, tables, where, ...)               the context: what the options say, the rest
                                                           from the section's sources or, failing that,
                                                           from the one context the table holds
    parse_time(text, tz, option)  parse_zone(name)         times as an operator types them

Everything wrong here is a ConfigError (exit 78, one line): a database, table, option or time that
cannot be what was meant. Nothing is written; a missing SQLite file is refused, never created.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from scraperd import config, databases, preflight
from scraperd.config.values import did_you_mean, parse_datetime, parse_timezone
from scraperd.dbi import reader
from scraperd.dbi.context import Context
from scraperd.dbi.tables import DbiTables
from scraperd.errors import ConfigError

# DBI's context defaults, as the scrapers write them (config keys simmask, task; no aggregation)
DEFAULT_SIMMASK = 1
DEFAULT_TASK = 0
AGGREGATENO = -1
WRITER_MODES = ("scraper", "averager")


@dataclass(frozen=True)
class Where:
    """The database a query reads, and what the config says about TABLE there."""

    url: URL
    shown: str                                   # how the database is named in output (no password)
    section: str | None = None                   # the config section whose target it is
    contexts: tuple[Context, ...] = ()           # the contexts that section writes into TABLE
    simmask: int = DEFAULT_SIMMASK
    task: int = DEFAULT_TASK


def parse_zone(name: str | None) -> ZoneInfo:
    """--tz: an IANA zone name (UTC when not given)."""
    try:
        return cast(ZoneInfo, parse_timezone(name or "UTC"))
    except ValueError:
        raise ConfigError(f"unknown time zone {name!r} (use an IANA name such as UTC or Asia/Shanghai)",
                          key="--tz") from None


def parse_time(text: str, tz: ZoneInfo, option: str) -> datetime:
    """A time as typed (the config's formats: 2011-02-01 08:00:00, 2011-02-01T08:00:00, 2011-02-01 08:00,
    2011-02-01), in tz unless it carries its own offset (2011-02-01T08:00:00+08:00), as naive UTC."""
    try:
        local = cast(datetime, parse_datetime(text))
    except ValueError:
        try:
            local = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"cannot parse {text!r} as a time (use 'YYYY-MM-DD HH:MM:SS', "
                              "'YYYY-MM-DDTHH:MM:SS' or 'YYYY-MM-DD')", key=option) from None
    aware = local if local.tzinfo is not None else local.replace(tzinfo=tz)
    return aware.astimezone(UTC).replace(tzinfo=None, microsecond=0)


def engine_for(where: Where) -> Engine:
    """A read-only engine; an SQLite file that does not exist is refused (it would be created)."""
    return databases.reading_engine(where.url, "--db" if where.section is None else "target", section=where.section)


# ----------------------------------------------------------------------------------------------------------
# the database


def database(table: str, *, db: str | None, section: str | None, config_path: str | None) -> Where:
    """Where TABLE is read: --db DBCONF; else --section NAME's target; else the target of the scraper
    or averager sections of the config that write TABLE, when they all name one database."""
    if db:
        url = databases.resolve(db)
        return Where(url=url, shown=databases.describe(url))
    path = config.config_path(config_path)
    try:
        cfg = config.read_file(path)
    except ConfigError as exc:
        raise ConfigError(f"{exc.message}; or name the database with --db DBCONF", file=exc.file) from None
    if section:
        return _of_section(config.validate(cfg, section), table)
    writers, broken = _writers(cfg, table)
    targets = sorted({loaded.settings.target for loaded, _ in writers})
    if len(targets) == 1:
        return _merged([_of_section(loaded, table) for loaded, _ in writers])
    if not targets:
        skipped = f"; {len(broken)} broken sections skipped ({', '.join(broken)}: scraperd check-config)" \
            if broken else ""
        raise ConfigError(f"no scraper or averager section writes {table}{skipped}: name the database with "
                          "--db DBCONF or a section with --section NAME", file=cfg.display)
    which = ", ".join(f"{loaded.name} ({databases.describe_text(loaded.settings.target)})" for loaded, _ in writers)
    raise ConfigError(f"{len(writers)} sections write {table} into different databases: {which}; "
                      "choose one with --section NAME or --db DBCONF", file=cfg.display)


def _writers(cfg: config.ConfigFile, table: str) -> tuple[list[tuple[config.Loaded, str]], list[str]]:
    """The valid scraper and averager sections whose target table is TABLE (with it), and the broken ones."""
    found: list[tuple[config.Loaded, str]] = []
    broken: list[str] = []
    for name, keys in cfg.sections.items():
        mode = (keys.get("mode") or cfg.defaults.get("mode") or "scraper").strip()
        if mode not in WRITER_MODES:
            continue
        try:
            loaded = config.validate(cfg, name)
            assert isinstance(loaded.settings, config.TargetCommon)
            spec = preflight.target_spec(loaded, loaded.settings.regime_cls)
        except ConfigError:
            broken.append(name)
            continue
        if _same_table(table, spec.table, spec.klass):
            found.append((loaded, spec.table))
    return found, broken


def _same_table(asked: str, table: str, klass: str) -> bool:
    return asked in (table, klass, f"{table}Vld")


def _of_section(loaded: config.Loaded, table: str) -> Where:
    s = loaded.settings
    if not isinstance(s, config.TargetCommon):
        raise loaded.error(None, f"is a {loaded.mode} section: it writes no DBI table (a scraper's or "
                                 "averager's target is read; or name the database with --db DBCONF)")
    url = preflight.resolve(loaded, "target")
    spec = preflight.target_spec(loaded, s.regime_cls)
    contexts: tuple[Context, ...] = ()
    if _same_table(table, spec.table, spec.klass):
        contexts = tuple(dict.fromkeys(preflight.context_for(src, s) for src in s.regime_cls.sources))
    return Where(url=url, shown=f"[{loaded.name}] target {databases.describe_text(s.target)}", section=loaded.name,
                 contexts=contexts, simmask=s.simmask, task=s.task)


def _merged(wheres: list[Where]) -> Where:
    """Several sections writing TABLE into one database: their contexts together (simmask and task
    from the first)."""
    first = wheres[0]
    if len(wheres) == 1:
        return first
    contexts = tuple(dict.fromkeys(c for w in wheres for c in w.contexts))
    names = ", ".join(str(w.section) for w in wheres)
    return Where(url=first.url, shown=f"[{names}] target {databases.describe(first.url)}", section=first.section,
                 contexts=contexts, simmask=first.simmask, task=first.task)


# ----------------------------------------------------------------------------------------------------------
# the table


def open_tables(conn: Connection, table: str, where: Where) -> DbiTables:
    """The DBI pair TABLE/TABLEVld (also for TABLE given as its class GTABLE, or as TABLEVld)."""
    names = set(sa.inspect(conn).get_table_names())
    pairs = sorted(t for t in names if f"{t}Vld" in names)
    for candidate in (table, table[:-3] if table.endswith("Vld") else None,
                      table[1:] if table.startswith("G") else None):
        if candidate and candidate in pairs:
            return reader.reflect_tables(conn, candidate)
        folded = [p for p in pairs if candidate and p.lower() == candidate.lower()]
        if len(folded) == 1:  # dcsadtemp for DcsAdTemp: MySQL on Linux tells the two apart, people do not
            return reader.reflect_tables(conn, folded[0])
    if table in names:
        why = f"{table} has no {table}Vld: not a DBI table"
    else:
        why = f"no table {table}{did_you_mean(table, pairs)}"
    known = ", ".join(pairs) if pairs else "none"
    raise ConfigError(f"{why} in {where.shown} (DBI tables there: {known})", key="TABLE")


# ----------------------------------------------------------------------------------------------------------
# the context


def choose_context(conn: Connection, tables: DbiTables, where: Where, *, sitemask: int | None,
                   subsite: int | None, simmask: int | None, task: int | None) -> Context | None:
    """The context asked for: the options given, the rest from the contexts the section writes into
    the table, else from those the table holds. None: the table holds no record of such a context."""
    simmask = where.simmask if simmask is None else simmask
    task = where.task if task is None else task
    if sitemask is not None and subsite is not None:
        return Context(sitemask=sitemask, subsite=subsite, simmask=simmask, task=task)
    wanted = [(c.sitemask, c.subsite) for c in where.contexts
              if (sitemask is None or c.sitemask & sitemask) and (subsite is None or c.subsite == subsite)]
    if not wanted:
        wanted = _held(conn, tables, sitemask=sitemask, subsite=subsite, simmask=simmask, task=task)
    if sitemask is not None:  # rows whose masks share its bit are one context for this query
        wanted = list(dict.fromkeys((sitemask, s) for _, s in wanted))
    if not wanted:
        return None
    if len(wanted) > 1:
        listed = ", ".join(f"sitemask={m} subsite={s}" for m, s in wanted)
        partial = " ".join(f"{k}={v}" for k, v in (("sitemask", sitemask), ("subsite", subsite), ("simmask", simmask),
                                                   ("task", task)) if v is not None)
        source = f"{where.section} writes" if where.contexts and where.section else f"{tables.name} holds"
        raise ConfigError(f"{source} {len(wanted)} contexts for {partial}: {listed}; "
                          "choose one with --site/--sitemask and --subsite", key="context")
    found_mask, found_subsite = wanted[0]
    return Context(sitemask=sitemask if sitemask is not None else found_mask,
                   subsite=subsite if subsite is not None else found_subsite, simmask=simmask, task=task)


def _held(conn: Connection, tables: DbiTables, *, sitemask: int | None, subsite: int | None, simmask: int,
          task: int) -> list[tuple[int, int]]:
    """The (SITEMASK, SUBSITE) pairs of the table's records for simmask and task (and what is given)."""
    v = tables.vld.c
    stmt = (sa.select(v.SITEMASK, v.SUBSITE).distinct()
            .where(v.SIMMASK.op("&")(simmask) != 0, v.TASK == task,
                   sa.func.coalesce(v.AGGREGATENO, AGGREGATENO) == AGGREGATENO)
            .order_by(v.SITEMASK, v.SUBSITE))
    if sitemask is not None:
        stmt = stmt.where(v.SITEMASK.op("&")(sitemask) != 0)
    if subsite is not None:
        stmt = stmt.where(v.SUBSITE == subsite)
    return [(int(m), int(s)) for m, s in conn.execute(stmt) if m is not None and s is not None]
