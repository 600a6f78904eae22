"""`scraperd status` computed: the named sections' databases and supervisord read into results.py's
typed results.

    fleet = collect(cfg, names, SUPERVISORD_CONF, dbs)   FleetStatus: a SectionStatus per section, with
                                                         a ContextStatus per source context (a faker's: SourceHead)

Reads only, and prints nothing: no database is written or created (a missing SQLite file is
NoDatabaseFile), and an error met while reading becomes a one-line text in the result (brief()),
never an exception out of collect(). What the table shows, and which exit code, is decided elsewhere.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from scraperd import config, databases, heartbeat, logview, preflight
from scraperd.dbi import reader
from scraperd.dbi.context import Context
from scraperd.dbi.tables import DbiTables, tables_for
from scraperd.errors import ConfigError, NoDatabaseFile, ScraperdError, error_lines
from scraperd.regimes.base import Regime
from scraperd.scrape import sampling, source
from scraperd.status.results import (
    ContextStatus,
    FleetStatus,
    HeartbeatStatus,
    LogFile,
    SectionStatus,
    SourceHead,
    SupervisordStatus,
)
from scraperd.supervisor import ProgramState, logfile_for, programs, supervisor_url

RECENT = timedelta(hours=1)
LATE_WINDOW = timedelta(days=1)  # late_row events counted: rare, and worth seeing the morning after
NOT_RUN = "not run yet"  # an averager's target without a record: a note, not a failure
READ_ERRORS = (sa.exc.SQLAlchemyError, ScraperdError, OSError)

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

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()  # the secrets stay: output printed after closing is masked all the same


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
# per source context


@dataclass(frozen=True)
class _Target:
    """A section's target as this run reads it."""

    tables: DbiTables
    engine: Engine


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


def _heads(dbs: Databases, s: config.Common, regime: type[Regime]) -> dict[str, datetime | None | BaseException]:
    """Source head (latest date_time, local) per source name, or the error met reading it."""
    out: dict[str, datetime | None | BaseException] = {}
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
    except READ_ERRORS as exc:
        return {src.name: exc for src in regime.sources}
    return out


def _open_target(loaded: config.Loaded[config.TargetCommon], dbs: Databases) -> _Target | BaseException:
    """The target's tables and engine, or the error met finding them."""
    try:
        return _Target(tables_for(preflight.target_spec(loaded, loaded.settings.regime_cls)),
                       dbs.engine(loaded.settings.target, readonly=True))
    except READ_ERRORS as exc:
        return exc


def _read_target(s: config.TargetCommon, target: _Target, ctx: Context,
                 now: datetime) -> tuple[reader.VldRow | None, int | None]:
    """(last validity record, Vld rows inserted in the last hour) of one context."""
    with target.engine.connect() as conn:
        # an averager's target without tables: not run yet
        if isinstance(s, config.AveragerSection) and not sa.inspect(conn).has_table(target.tables.vld.name):
            return None, None
        last = reader.last_validity(conn, target.tables, ctx, timefloor=s.timefloor_utc)
        recent = conn.execute(recent_select(target.tables, ctx, now - RECENT, _seed_validity(s))).scalar()
        return last, int(recent or 0)


def _with_record(row: ContextStatus, s: config.TargetCommon, last: reader.VldRow) -> ContextStatus:
    """The row with its last record, and the lag behind the source head when that is known."""
    tcursor = sampling.tcursor_after(last.timeend, s.source_tz)
    row = replace(row, seqno=last.seqno, timestart=last.timestart, timeend=last.timeend,
                  insertdate=last.insertdate, seed=_seed_validity(s) == (last.timestart, last.timeend),
                  tcursor=tcursor)
    if row.head is None:
        return row
    lag = max(row.head - tcursor, timedelta(0))
    if not isinstance(s, config.ScraperSection):
        return replace(row, lag_s=lag.total_seconds())
    return replace(row, lag_s=lag.total_seconds(), lagging=lag > s.status_maxlag,
                   lag_heartbeats=round(lag / s.effective_heartbeat, 1) if s.effective_heartbeat else None)


def _shown_error(s: config.TargetCommon, head: datetime | None | BaseException,
                 target: _Target | BaseException) -> BaseException | None:
    """The error a context shows before its target is read: the target's, else the source's."""
    head_error = head if isinstance(head, BaseException) else None
    # an averager is run by hand, now and then: a target that is not there yet is a note, not a failure
    not_run = isinstance(s, config.AveragerSection) and isinstance(target, NoDatabaseFile)
    if isinstance(target, BaseException) and not not_run:
        return target
    return head_error  # a source in trouble always shows


def _without_record(row: ContextStatus, s: config.TargetCommon) -> ContextStatus:
    if row.error is not None:
        return row
    return replace(row, note=NOT_RUN) if isinstance(s, config.AveragerSection) else \
        replace(row, error="no validity record yet")


def context_status(s: config.TargetCommon, ctx: Context, name: str, head: datetime | None | BaseException,
                   target: _Target | BaseException, now: datetime) -> ContextStatus:
    """One source context: its last record, the source head and the lag between them."""
    error = _shown_error(s, head, target)
    last, recent = None, None
    if isinstance(target, _Target):
        try:
            last, recent = _read_target(s, target, ctx, now)
        except sa.exc.SQLAlchemyError as exc:
            error = exc
    row = ContextStatus(source=name, sitemask=ctx.sitemask, subsite=ctx.subsite,
                        head=None if isinstance(head, BaseException) else head, propagations_1h=recent,
                        error=brief(error) if error is not None else None)
    return _without_record(row, s) if last is None else _with_record(row, s, last)


def _source_head(name: str, head: datetime | None | BaseException) -> SourceHead:
    return SourceHead(name, error=brief(head)) if isinstance(head, BaseException) else SourceHead(name, head)


def section_status(loaded: config.Loaded, dbs: Databases, now: datetime) -> tuple[SourceHead | ContextStatus, ...]:
    """The per-source rows of one validated section."""
    s = loaded.settings
    if isinstance(s, config.MonitorSection | config.WatchdogSection):  # reads no source, writes no target
        return ()
    regime = s.regime_cls
    heads = _heads(dbs, s, regime)
    if not isinstance(s, config.TargetCommon):  # a faker: its source heads only
        return tuple(_source_head(src.name, heads[src.name]) for src in regime.sources)
    target = _open_target(loaded.of(config.TargetCommon), dbs)
    return tuple(context_status(s, preflight.context_for(src, s), src.name, heads[src.name], target, now)
                 for src in regime.sources)


# ----------------------------------------------------------------------------------------------------------
# per section


def late_rows(section: str, proc: ProgramState | None, logdir: Path | None,
              now: datetime) -> tuple[LogFile, Counter[str] | None]:
    """A scraper's late_row reports of the last day per source, from its log file: the one named by
    --logdir, else the one supervisord writes, else var/log/<section>.log. None, and the LogFile
    saying why, when the file cannot be read: never a 0 that was not counted."""
    named = proc.logfile if proc is not None and logdir is None else None
    path = Path(named) if named else logfile_for(section, logdir)
    try:
        return LogFile(str(path)), logview.count_events(path, "late_row", now.replace(tzinfo=UTC) - LATE_WINDOW)
    except FileNotFoundError:
        return LogFile(str(path), f"no log file {path}"), None
    except OSError as exc:
        return LogFile(str(path), f"cannot read {path}: {exc.strerror or exc}"), None


def _counted_late(entry: SectionStatus, proc: ProgramState | None, logdir: Path | None,
                  now: datetime) -> SectionStatus:
    log, counts = late_rows(entry.section, proc, logdir, now)
    rows = tuple(replace(r, late_rows_24h=None if counts is None else counts.get(r.source, 0))
                 if isinstance(r, ContextStatus) else r for r in entry.sources)
    return replace(entry, sources=rows, log=log)


def heartbeat_status(settings: config.Program, section: str, now: datetime) -> HeartbeatStatus | None:
    """The section's heartbeat file read back (None when there is none); now is naive UTC."""
    beat = heartbeat.read(heartbeat.path_for(heartbeat.run_dir(settings), section))
    if beat is None:
        return None
    return HeartbeatStatus(ts=heartbeat.stamp(beat.ts), age_s=round(beat.age_s(now.replace(tzinfo=UTC)), 1),
                           phase=beat.phase, pid=beat.pid, lag_s=beat.lag_s, sleep_s=beat.sleep_s)


def _broken(cfg: config.ConfigFile, name: str, exc: ConfigError) -> SectionStatus:
    """A section that fails validation: its mode as written, and its errors."""
    mode = cfg.sections.get(name, {}).get("mode", cfg.defaults.get("mode", "scraper"))
    return SectionStatus(section=name, mode=mode, config_error=True, errors=tuple(error_lines(exc)))


def _configured(cfg: config.ConfigFile, name: str, proc: ProgramState | None, dbs: Databases, now: datetime,
                logdir: Path | None) -> SectionStatus:
    """What the config and the databases say of one section."""
    try:
        loaded = config.validate(cfg, name)
    except ConfigError as exc:
        return _broken(cfg, name, exc)
    s = loaded.settings
    entry = SectionStatus(section=name, mode=s.mode, host=s.host or None, status_maxlag_s=(
        s.status_maxlag.total_seconds() if isinstance(s, config.TargetCommon) else None),
        heartbeat=heartbeat_status(s, name, now))
    try:
        entry = replace(entry, sources=section_status(loaded, dbs, now))
    except READ_ERRORS as exc:
        entry = replace(entry, errors=(brief(exc),))
    return _counted_late(entry, proc, logdir, now) if isinstance(s, config.ScraperSection) else entry


def section_entry(cfg: config.ConfigFile, name: str, procs: dict[str, ProgramState] | None, dbs: Databases,
                  now: datetime, logdir: Path | None = None) -> SectionStatus:
    """One section: what its config and databases say, and supervisord's view of its program."""
    proc = procs.get(name) if procs is not None else None
    entry = _configured(cfg, name, proc, dbs, now, logdir)
    if procs is None:
        return entry  # supervisord did not answer: state "-"
    if proc is None:
        return replace(entry, state="absent")
    return replace(entry, state=proc.state, pid=proc.pid, uptime_s=proc.uptime_s, description=proc.description or None,
                   exitstatus=proc.exitstatus, spawnerr=proc.spawnerr or None, unexpected_exit=proc.unexpected_exit)


def collect(cfg: config.ConfigFile, names: Sequence[str], supervisor_conf: Path | None, dbs: Databases,
            now: datetime | None = None, logdir: Path | None = None) -> FleetStatus:
    """The status of the named sections, reading their databases through dbs."""
    now = now or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    url = supervisor_url(supervisor_conf)[0] if supervisor_conf else None
    procs = programs(supervisor_conf) if supervisor_conf else None
    sv = SupervisordStatus(conf=str(supervisor_conf) if supervisor_conf else None, serverurl=url,
                           reachable=procs is not None)
    return FleetStatus(config=cfg.display, now_utc=now, supervisord=sv,
                       sections=tuple(section_entry(cfg, name, procs, dbs, now, logdir) for name in names))
