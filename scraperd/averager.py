"""The averager: binned historical aggregation of a regime's sources, at database speed.

Every source of the regime is averaged into its own DBI context (SITEMASK/SUBSITE from the table
name), all of them in one pass over one grid:

    territory       from the bin after the context's last validity record to the start of the bin
                    holding the source's last row, so only complete bins (a later row exists) are
                    averaged. An empty context starts after timefloor / seed_timestart (or 1971,
                    below which DCS dates are junk). Either way it starts at the bin of the first row
                    the aggregate_filter keeps, so a stretch without any writes nothing and costs
                    no maxiter.
    territory bins  `territory` long, aligned on local midnight: one grouped query each (after an
                    index-only look-up of its ids), grouping the rows into `binsize` bins and
                    computing every `aggregate` function of every column not in `aggregate_skips`,
                    the count (`aggregate_count`) and min/max date_time, `aggregate_filter` in the
                    WHERE clause. The sources' territory bins are taken together, cell by cell of
                    the territory grid: maxiter > 0 caps the cells of one run; SIGTERM stops
                    between cells, after writing the finished ones.
    records         one per group: validity [min, max] date_time in UTC (one second when min = max,
                    as DBI needs start < end), VERSIONDATE = TIMESTART (averages never overlay each
                    other), one payload row keyed like the target columns: <column>_<fn>, count.

Order: records are written in (bin, source) order, the source's place in the regime breaking ties
(AD1 before AD2), as the scraper commits in (sample time, source) order. Every batch is a prefix of
that order and every source resumes after its own last record, so SEQNOs, not only contents, are
the same however the work was cut: maxiter, SIGTERM, a kill between batches, a lost connection.
Each source runs to the end of its own last complete bin; one that is behind never holds the
others back. Append runs over a growing source therefore equal one full run row for row, SEQNOs
included, when the sources have grown alike (their last complete bins are the same at each run, as
when the DCS writes all of them); otherwise only the SEQNO order of the bins where one source was
ahead differs (`territory` events say where each source ends).

Bins are cut from one grid of naive local time starting at 1970-01-01 00:00, so a binsize that
divides a day falls on every local midnight (a DST day holds 23 or 25 hours), and a re-run cuts the
same bins as the first run: N append runs write what one full run writes. A run resumes at the end
of the bin holding the last record's TIMESTART: its TIMEEND can be the next bin's start (a one-row
group), its TIMESTART never. (A local time inside a spring-forward gap, which a DST-keeping DCS
clock never writes, would come back one hour later and resume one bin late.)

Speed: rows never leave the database. Each territory bin is found with `date_time >= :lo AND
date_time < :hi` on the date_time index, which also gives its span of ids, so the grouped query can
read that stretch of the primary key in order (see grouped_statement). Up to `workers`
territory bins are queried at once, taken in order of time, while the main thread writes records in
batches (dbi.writer.write_many: one transaction, SEQNOs reserved once). The work in Python is one
dict per group; memory does not grow with the table.

Events: startup and territory (every bin listed) per source, sample per territory bin (the manual's
SV line: range, groups, state replay), propagate per record (committed in batches),
progress (no terminal) or a bar on stderr (terminal), shutdown.

Refuses (exit 78): a target none of whose columns is named like an aggregate (the regime's scraper is
not used: a group is its aggregates); binsize or territory not falling on every local midnight, or
territory not a whole multiple of binsize (config.AveragerSection, so check-config says so too); an
aggregate_filter the source rejects (checked by running the grouped query over an empty range at
start-up); --drop-target on offline_db. Target columns no aggregate fills, or aggregates the target
has no column for, are an `aggregate_mismatch` warning naming them all: the former are written NULL.
Unlike the scraper, the averager counts every row of a bin, a repeated date_time too. binsize is
fixed for a target: to change it, --drop-target or a new target (a last record longer than a bin is
warned as `binsize_changed`; a larger binsize cannot be told from the records).
It never seeds a target, and never writes anything but its own records. Its writes are fenced as the
scraper's (dbi.writer.Fence): a second copy of the section that wrote first turns a batch into a
`write_conflict` and a fresh start-up from the target, so two copies write what one run writes.
"""

from __future__ import annotations

import calendar
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from scraperd import config, lifecycle, logsetup, preflight, retry
from scraperd.dbi import reader, writer
from scraperd.dbi.context import Context
from scraperd.dbi.tables import DbiTables, create_tables, drop_tables
from scraperd.dbi.writer import Fence, Record
from scraperd.errors import ConfigError
from scraperd.progress import Progress
from scraperd.regimes.base import Regime
from scraperd.scrape import aggregate, source
from scraperd.scrape.sampling import to_local, to_utc

log = logsetup.get_logger("scraperd.averager")

GRID_ORIGIN = datetime(1970, 1, 1)  # naive local: every bin and territory bin is cut from this grid
ONE_SECOND = timedelta(seconds=1)
BATCH_RECORDS = 250        # records per write_many transaction (small: writes overlap queries); written ...
BATCH_SECONDS = 5.0        # ... once that many are pending, or this often, after a whole cell

# Result labels that no `<column>_<fn>` key can take (no aggregate function is named like these).
BIN, FIRST, LAST, COUNT = "averager_bin", "averager_first", "averager_last", "averager_count"


# ----------------------------------------------------------------------------------------------------------
# Pure: the grid, the territory, a group's validity and payload, the grouped statement


def bin_floor(t: datetime, size: timedelta) -> datetime:
    """The start of the grid bin of `size` holding t (naive local time)."""
    return GRID_ORIGIN + ((t - GRID_ORIGIN) // size) * size


def territory_bins(start: datetime, end: datetime, territory: timedelta) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at the territory grid: one (lo, hi) per grouped query."""
    out: list[tuple[datetime, datetime]] = []
    if start >= end:
        return out
    tb = bin_floor(start, territory)
    while tb < end:
        out.append((max(tb, start), min(tb + territory, end)))
        tb += territory
    return out


def resume_start(last_timestart: datetime, tz: ZoneInfo, binsize: timedelta) -> datetime:
    """The first bin not yet written: the one after the bin of the last record's TIMESTART (UTC)."""
    return bin_floor(to_local(last_timestart, tz), binsize) + binsize


def validity(first: datetime, last: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[min, max] date_time of a group in UTC, whole seconds; one second long when min = max."""
    start = to_utc(first, tz).replace(microsecond=0)
    end = to_utc(last, tz).replace(microsecond=0)
    return start, max(end, start + ONE_SECOND)


@dataclass(frozen=True)
class Columns:
    """What one grouped query computes and how a result row becomes a payload row."""

    pairs: tuple[tuple[str, str], ...]   # (source column, function) whose key is a target column
    keys: tuple[str, ...]                # their keys, <column>_<fn>: the result labels
    count_key: str | None                # target column of the count, when the target has one
    none_value: float | None


def plan_columns(spec: aggregate.AggregateSpec, target_columns: Sequence[str]) -> tuple[Columns, list[str], list[str]]:
    """Columns computed for a target; also the aggregate keys it lacks and its columns nothing fills."""
    wanted = set(target_columns)
    pairs = tuple((c, fn) for c in spec.columns for fn in spec.functions if f"{c}_{fn}" in wanted)
    unused = [k for k in spec.keys() if k not in wanted]
    filled = {f"{c}_{fn}" for c, fn in pairs} | {spec.count_key}
    missing = [c for c in target_columns if c not in filled]
    cols = Columns(pairs=pairs, keys=tuple(f"{c}_{fn}" for c, fn in pairs),
                   count_key=spec.count_key if spec.count_key in wanted else None, none_value=spec.none_value)
    return cols, unused, missing


def payload(row: Mapping[Any, Any], cols: Columns) -> dict[str, Any]:
    """The one payload row of a group; None aggregates (all-NULL columns) become aggregate_none if set."""
    out = {k: row[k] for k in cols.keys}
    if cols.none_value is not None:
        out = {k: (cols.none_value if v is None else v) for k, v in out.items()}
    if cols.count_key is not None:
        out[cols.count_key] = row[COUNT]
    return out


def bin_index(dialect: str, date_time: sa.ColumnElement[Any], origin: datetime,
              binsize_s: int) -> sa.ColumnElement[int]:
    """The bin of date_time counted from origin (a bin start): integer arithmetic on naive times."""
    size = sa.bindparam("binsize_s", binsize_s, sa.Integer)
    if dialect == "sqlite":
        # strftime('%s') reads the stored text as if it were UTC, and so does timegm: naive on both sides
        seconds = sa.cast(sa.func.strftime("%s", date_time), sa.Integer) - sa.bindparam(
            "origin_s", calendar.timegm(origin.timetuple()), sa.Integer)
        return seconds.self_group().op("/", return_type=sa.Integer)(size)  # integers: SQLite truncates
    seconds = sa.func.timestampdiff(sa.literal_column("SECOND"), sa.bindparam("origin", origin, sa.DateTime),
                                    date_time, type_=sa.Integer)
    return seconds.op("DIV", return_type=sa.Integer)(size)


def id_span_statement(table: sa.Table, lo: datetime, hi: datetime) -> sa.Select[Any]:
    """The smallest and largest id of lo <= date_time < hi: read from the date_time index alone."""
    dt = table.c.date_time
    return sa.select(sa.func.min(table.c.id), sa.func.max(table.c.id)).where(dt >= lo, dt < hi)


def grouped_statement(table: sa.Table, cols: Columns, filter_sql: str | None, dialect: str, origin: datetime,
                      binsize_s: int, lo: datetime, hi: datetime,
                      id_span: tuple[int, int] | None = None) -> sa.Select[Any]:
    """One territory bin: per bin of lo <= date_time < hi, the aggregates, count and min/max date_time.

    id_span, the ids of that date_time range, adds `id BETWEEN` to the same condition: the server
    may then read that stretch of the primary key in order instead of looking every row up from the
    date_time index, about 10 % less work per row when ids grow with date_time, as DCS ids do. When
    they do not, the span is wide and the server's planner keeps the date_time index; the result is
    the same either way, as the date_time condition decides which rows count.
    """
    dt = table.c.date_time
    q = sa.select(bin_index(dialect, dt, origin, binsize_s).label(BIN),
                  sa.func.min(dt).label(FIRST), sa.func.max(dt).label(LAST), sa.func.count().label(COUNT),
                  *(aggregate.call(fn, table.c[c]).label(key) for (c, fn), key in zip(cols.pairs, cols.keys,
                                                                                        strict=True)))
    q = q.where(dt >= lo, dt < hi)
    if id_span is not None:
        q = q.where(table.c.id.between(*id_span))
    q = aggregate.filtered(q, filter_sql)
    return q.group_by(sa.literal_column(BIN)).order_by(sa.literal_column(BIN))


@dataclass(frozen=True)
class Unit:
    """One source's part of one territory cell: one grouped query, one `sample` event."""

    cell: datetime    # the start of the territory grid cell (local)
    source: int       # the source's place in the regime: breaks ties in the order
    n: int            # the territory bin's number among this source's, from 1
    lo: datetime      # a bin start
    hi: datetime


def cells(bins_per_source: Sequence[Sequence[tuple[datetime, datetime]]],
          territory: timedelta) -> list[list[Unit]]:
    """Every source's territory bins, by cell of the territory grid (in time), sources in order within one."""
    by_cell: dict[datetime, list[Unit]] = {}
    for source_index, bins in enumerate(bins_per_source):
        for n, (lo, hi) in enumerate(bins, start=1):
            cell = bin_floor(lo, territory)
            by_cell.setdefault(cell, []).append(Unit(cell, source_index, n, lo, hi))
    return [by_cell[c] for c in sorted(by_cell)]


def in_order(results: Sequence[tuple[Unit, Sequence[Mapping[Any, Any]]]],
             binsize: timedelta) -> list[tuple[Unit, Mapping[Any, Any]]]:
    """One cell's groups in the order they are written: by bin, then by source."""
    keyed = [((u.lo + int(g[BIN]) * binsize, u.source), u, g) for u, groups in results for g in groups]
    keyed.sort(key=lambda k: k[0])  # stable, and no two groups share a key
    return [(u, g) for _, u, g in keyed]


# ----------------------------------------------------------------------------------------------------------
# The shell


@dataclass
class Plan:
    """One source's work in this run: its table, context, row floor and territory bins."""

    table: source.SourceTable
    context: Context
    floor: datetime                              # rows before it are never averaged (local)
    bins: list[tuple[datetime, datetime]]        # its territory bins, cut at the territory grid
    fence: Fence                                 # the context's last record, as this process knows it

    @property
    def name(self) -> str:
        return self.table.source.name


class Averager:
    """One averager section at work."""

    def __init__(self, loaded: config.Loaded, stop: threading.Event, *, drop_target: bool = False) -> None:
        s = loaded.settings
        assert isinstance(s, config.AveragerSection)
        self.loaded, self.s, self.stop = loaded, s, stop
        self.binsize_s = int(s.binsize.total_seconds())  # whole seconds: config.AveragerSection checks
        self.regime_cls: type[Regime] = config.load_regime(s.regime)
        self.target_url, self.target, self.spec = preflight.open_target(loaded)
        self.drop_target = drop_target
        if drop_target:
            # before anything connects: a refused drop touches nothing
            preflight.refuse_protected(self.target_url, loaded, "dropping the target tables", "target")
        _, self.source_engine = preflight.open_source(loaded, readonly=True)
        self.dialect = self.source_engine.dialect.name
        self.workers = 1 if self.dialect == "sqlite" else self.s.workers
        self.dropped = False
        self.tables: DbiTables | None = None
        self.cols: Columns | None = None
        self.filter: str | None = None
        self.plans: list[Plan] = []
        self.cells: list[list[Unit]] = []
        self.cells_done = 0                      # over the whole run, reconnects included: maxiter counts these
        self.bins_done = 0                       # territory bins (grouped queries) done
        self.records = 0
        self.progress: Progress | None = None

    # ------------------------------------------------------------------------------------------------------
    # start-up: the one path for start, restart and reconnect

    def start(self) -> None:
        s = self.s
        # the source first: a section that cannot work fails before the target is touched
        with retry.side("source"), self.source_engine.connect() as conn:
            tables = [source.reflect(conn, src) for src in self.regime_cls.sources]
            spec = aggregate.resolve(tables[0].main, s.aggregate, s.aggregate_skips, s.aggregate_count,
                                     s.aggregate_filter, s.aggregate_none)
            self.cols = self._columns(spec)
            self.filter = spec.filter
            self._check_filter(conn, tables)
            for st in tables:
                source.warn_bad_dates(conn, st, source.horizon(s.source_tz), log)
        if self.drop_target and not self.dropped:
            with retry.side("target"):
                drop_tables(self.target, self.spec)
            self.dropped = True  # once per process: a reconnect must not drop what this run wrote
            log.info("drop_target", table=self.spec.table)
        with retry.side("target"):
            self.tables = create_tables(self.target, self.spec, previous=self.tables)  # warns once, not per restart
        self.plans = [self._plan(st) for st in tables]
        self.cells = cells([p.bins for p in self.plans], s.territory)
        if self.progress is not None:
            self.progress.close()
        self.progress = Progress(sum(len(c) for c in self._todo()))  # grouped queries of this run

    def _columns(self, spec: aggregate.AggregateSpec) -> Columns:
        cols, unused, missing = plan_columns(spec, preflight.target_columns(self.spec))
        if not cols.pairs:
            raise ConfigError(f"none of the aggregate keys ({', '.join(spec.keys()[:4])}, ...) is a column of "
                              f"{self.spec.table}: the averager writes <column>_<fn> columns",
                              file=self.loaded.file.display, section=self.loaded.name, key="aggregate")
        if unused or missing:
            log.warning("aggregate_mismatch", target=self.spec.table, unused=unused, missing=missing,
                        action="unused keys are not computed; missing columns are written as NULL")
        return cols

    def _check_filter(self, conn: sa.Connection, tables: list[source.SourceTable]) -> None:
        """Run the grouped query once over an empty range: a bad filter fails now, as a config error."""
        assert self.cols is not None
        t0 = source.CHECK_TIME
        with source.filter_errors():
            for st in tables:
                conn.execute(grouped_statement(st.main, self.cols, self.filter, self.dialect, t0, self.binsize_s,
                                               t0, t0, id_span=(0, 0))).all()

    def _plan(self, st: source.SourceTable) -> Plan:
        s, tz = self.s, self.s.source_tz
        assert self.tables is not None
        ctx = preflight.context_for(st.source, s)
        timefloor = to_utc(s.timefloor, tz) if s.timefloor else None
        with retry.side("target"):
            seen = reader.max_seqno(self.target, self.tables)  # before the last record: see writer.Fence
            last = reader.last_validity(self.target, self.tables, ctx, timefloor=timefloor)
        floor = max(source.EPOCH_GUARD, s.timefloor or source.EPOCH_GUARD)
        if last is None and s.seed_timestart:
            floor = max(floor, s.seed_timestart)
        with retry.side("source"), self.source_engine.connect() as conn:
            head = source.head(conn, st, source.horizon(tz))
            resumed = floor
            if last is not None:
                resumed = max(resume_start(last.timestart, tz, s.binsize), floor)
                if to_local(last.timeend - ONE_SECOND, tz) >= resumed:
                    log.warning("binsize_changed", source=st.source.name, seqno=last.seqno,
                                timestart=self._fmt(last.timestart), timeend=self._fmt(last.timeend),
                                binsize=config.format_value(s.binsize),
                                action="the last record spans more than one bin of this binsize; appending "
                                       "anyway (run with --drop-target, or a new target, to change binsize)")
            # from the bin of the first row that counts: a stretch without any (the DCS down, or every
            # row filtered out) writes nothing, and must not use up maxiter run after run
            first = source.first_row_time(conn, st, resumed, self.filter)
        start = bin_floor(first, s.binsize) if first is not None else None
        # the bin holding the last row is incomplete: rows may still arrive in it
        end = bin_floor(head, s.binsize) if head is not None else None
        bins = territory_bins(start, end, s.territory) if start is not None and end is not None else []
        log.info("startup", source=st.source.name, **ctx.fields(), seqno=last.seqno if last else None,
                 resume=self._fmt(start), head=self._fmt(head), target=self.spec.table)
        log.info("territory", source=st.source.name, count=len(bins),
                 bins=[[self._fmt(a), self._fmt(b)] for a, b in bins],
                 first=[self._fmt(t) for t in bins[0]] if bins else None,
                 last=[self._fmt(t) for t in bins[-1]] if bins else None)
        return Plan(table=st, context=ctx, floor=floor, bins=bins,
                    fence=Fence(ctx, last.seqno if last else None, seen))

    # ------------------------------------------------------------------------------------------------------
    # the replay

    def _todo(self) -> list[list[Unit]]:
        """The cells this run still does: all of them, or what maxiter leaves."""
        if not self.s.maxiter:
            return self.cells
        return self.cells[:max(self.s.maxiter - self.cells_done, 0)]

    def loop(self, run: None = None) -> str:
        """Query the cells' territory bins (a few at once, in order), write their records in batches.

        Returns why it ended: done, maxiter or the signal. A cell's records are written only once all
        of its queries are in, so a stop never leaves one source's part of a cell without the other's.
        """
        todo = self._todo()
        units = iter([u for cell in todo for u in cell])
        pending: list[tuple[Plan, Record]] = []
        flushed_at = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="averager")
        inflight: deque[tuple[Unit, Future[list[sa.RowMapping]]]] = deque()

        def submit() -> None:
            # two per worker: a worker has its next query while the main thread writes
            while len(inflight) < 2 * self.workers and (u := next(units, None)) is not None:
                inflight.append((u, pool.submit(self._query, self.plans[u.source], u.lo, u.hi)))

        queued = 0  # cells whose records are pending: they count for maxiter once committed

        def flush() -> None:
            nonlocal queued
            self._flush(pending)
            self.cells_done += queued  # all committed: a lost connection raised before this line
            queued = 0

        try:
            submit()
            for cell in todo:
                if self.stop.is_set():
                    flush()
                    return lifecycle.signal_name(self.stop)
                results = []
                for _ in cell:
                    unit, fut = inflight.popleft()
                    groups = fut.result()
                    submit()
                    self._sampled(unit, groups)
                    results.append((unit, groups))
                pending.extend((self.plans[u.source], self._record(self.plans[u.source], g))
                               for u, g in in_order(results, self.s.binsize))
                queued += 1
                if len(pending) >= BATCH_RECORDS or time.monotonic() - flushed_at >= BATCH_SECONDS or not pending:
                    flush()
                    flushed_at = time.monotonic()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        flush()
        return "maxiter" if len(todo) < len(self.cells) else "done"

    def _query(self, plan: Plan, lo: datetime, hi: datetime) -> list[sa.RowMapping]:
        """One territory bin's groups (run in a worker thread, on a connection of its own)."""
        assert self.cols is not None
        table = plan.table.main
        rows_from = max(lo, plan.floor)  # lo is a bin start; the row floor may lie inside the first bin
        # Both statements run in one transaction, so on InnoDB they read one snapshot.
        with retry.side("source"), self.source_engine.connect() as conn:
            first_id, last_id = conn.execute(id_span_statement(table, rows_from, hi)).one()
            if first_id is None:
                return []  # no rows at all: the grouped query is not needed
            stmt = grouped_statement(table, self.cols, self.filter, self.dialect, lo, self.binsize_s, rows_from, hi,
                                     id_span=(first_id, last_id))
            return list(conn.execute(stmt).mappings())

    def _sampled(self, unit: Unit, groups: Sequence[Mapping[Any, Any]]) -> None:
        """The manual's SV line for one territory bin, and the progress."""
        rows = sum(int(g[COUNT]) for g in groups)
        self.bins_done += 1
        if self.s.log_samples:
            log.info("sample", source=self.plans[unit.source].name, n=unit.n, tcursor=self._fmt(unit.lo),
                     fullness="full", range=[self._fmt(unit.lo), self._fmt(unit.hi)], groups=len(groups),
                     rows=rows, state="replay", proceed=bool(groups))
        assert self.progress is not None
        self.progress.advance(rows)

    def _record(self, plan: Plan, group: Mapping[Any, Any]) -> Record:
        assert self.cols is not None
        start, end = validity(group[FIRST], group[LAST], self.s.source_tz)
        # the averager's records never overlap, so none overlays another: VERSIONDATE is TIMESTART
        return Record(start, end, plan.context, [payload(group, self.cols)], versiondate=start)

    def _flush(self, pending: list[tuple[Plan, Record]]) -> None:
        """Write the pending records in their order, BATCH_RECORDS per transaction (and forget them)."""
        assert self.tables is not None
        # the scraper's propagate event; when a person watches the events and the bar on a terminal,
        # at debug level (a full history is tens of thousands of them; log files get them all)
        emit = log.debug if logsetup.for_people() and self.progress is not None and self.progress.tty else log.info
        while pending:
            batch = pending[:BATCH_RECORDS]
            records = [rec for _, rec in batch]
            with retry.side("target"):  # fenced: a second copy of the section that wrote first makes this a no-op
                seqnos = writer.write_many(self.target, self.tables, records, [p.fence for p in self.plans])
            del pending[:len(batch)]
            self.records += len(batch)
            for p in self.plans:
                p.fence = p.fence.after(records, seqnos)
            for seqno, (plan, rec) in zip(seqnos, batch, strict=True):
                emit("propagate", source=plan.name, seqno=seqno, rows=len(rec.rows),
                     timestart=self._fmt(rec.timestart), timeend=self._fmt(rec.timeend),
                     sitemask=plan.context.sitemask, subsite=plan.context.subsite)

    def _fmt(self, t: datetime | None) -> str | None:
        return t.strftime(self.s.timeformat) if t is not None else None

    def counts(self) -> dict[str, int]:
        return {"bins": self.bins_done, "cells": self.cells_done, "records": self.records}

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        self.target.dispose()
        self.source_engine.dispose()


def run(loaded: config.Loaded[config.AveragerSection], drop_target: bool = False,
        stop: threading.Event | None = None) -> int:
    """Average a section's complete bins (at most maxiter cells of the territory grid), then exit 0.

    SIGTERM stops between cells, after writing the finished ones. Configuration errors
    raise ConfigError (exit 78), --drop-target on offline_db among them.
    """
    return lifecycle.serve(loaded, lambda stop: Averager(loaded, stop, drop_target=drop_target), log, stop)
