"""The averager's shell: connect, reflect, read, write, log, progress; run() is `scraperd run` of an averager.

What to average and in what order is decided in grid.py; the grouped statements are built in queries.py.
start() rebuilds a Running from the databases (first start, reconnect, write conflict alike); what
must outlive it (counters, the progress bar, what was already warned or dropped) is the Averager's.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from scraperd import config, heartbeat, lifecycle, logsetup, notify, preflight, retry
from scraperd.averager import grid
from scraperd.averager.grid import Unit, cells, in_order, validity
from scraperd.averager.queries import (
    COUNT,
    FIRST,
    LAST,
    Columns,
    grouped_statement,
    id_span_statement,
    payload,
    plan_columns,
)
from scraperd.dbi import reader, writer
from scraperd.dbi.context import Context
from scraperd.dbi.tables import DbiTables, create_tables, drop_tables
from scraperd.dbi.writer import Fence, Record
from scraperd.progress import Progress
from scraperd.scrape import aggregate, source

log = logsetup.get_logger("scraperd.averager")

BATCH_RECORDS = 250        # records per write_many transaction (small: writes overlap queries); written ...
BATCH_SECONDS = 5.0        # ... once that many are pending, or this often, after a whole cell


@dataclass
class Plan:
    """One source's work in this run: its table, context, row floor and territory bins."""

    table: source.SourceTable
    context: Context
    floor: datetime                              # rows before it are never averaged (local)
    bins: Sequence[tuple[datetime, datetime]]    # its territory bins, cut at the territory grid
    fence: Fence                                 # the context's last record, as this process knows it

    @property
    def name(self) -> str:
        return self.table.source.name


@dataclass(frozen=True)
class Running:
    """What start() found in the databases and loop() works on; the next start() builds a new one."""

    tables: DbiTables               # the target's tables, as create_tables found them
    columns: Columns                # what every grouped query computes
    filter: str | None              # aggregate_filter, as resolved against the source
    plans: list[Plan]               # one per source, in the regime's order (their fences move on every write)
    cells: list[list[Unit]]         # all the sources' territory bins, cell by cell of the territory grid


@dataclass
class Pending:
    """Records not yet written, and the cells they finish: those count for maxiter once committed."""

    records: list[tuple[Plan, Record]] = field(default_factory=list)
    cells: int = 0
    since: float = field(default_factory=time.monotonic)   # the last commit after a cell

    def due(self) -> bool:
        """After a cell: enough records, long enough, or none at all (the cell still counts)."""
        return (len(self.records) >= BATCH_RECORDS or time.monotonic() - self.since >= BATCH_SECONDS
                or not self.records)


class Queries:
    """The units' grouped queries on a pool, in order, two per worker ahead: a worker has its next query
    while the main thread writes. Leaving it cancels what has not started and waits for the rest."""

    def __init__(self, workers: int, query: Callable[[Unit], list[sa.RowMapping]], units: Iterable[Unit]) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="averager")
        self.ahead, self.query, self.units = 2 * workers, query, iter(units)
        self.inflight: deque[tuple[Unit, Future[list[sa.RowMapping]]]] = deque()
        self._submit()

    def _submit(self) -> None:
        while len(self.inflight) < self.ahead and (u := next(self.units, None)) is not None:
            self.inflight.append((u, self.pool.submit(self.query, u)))

    def next(self) -> tuple[Unit, list[sa.RowMapping]]:
        """The next unit and its groups (waits for its query)."""
        unit, fut = self.inflight.popleft()
        groups = fut.result()
        self._submit()
        return unit, groups

    def __enter__(self) -> Queries:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class Averager:
    """One averager section at work."""

    def __init__(self, loaded: config.Loaded[config.AveragerSection], stop: threading.Event, *,
                 drop_target: bool = False, notice: notify.ProgressNotifier | None = None) -> None:
        s = loaded.settings
        self.loaded, self.s, self.stop = loaded, s, stop
        self.notice = notice or notify.ProgressNotifier.off(loaded.name, "averager")
        self.binsize_s = int(s.binsize.total_seconds())  # whole seconds: config.AveragerSection checks
        self.target_url, self.target, self.spec = preflight.open_target(loaded)
        self.drop_target = drop_target
        if drop_target:
            # before anything connects: a refused drop touches nothing
            preflight.refuse_protected(self.target_url, loaded, "dropping the target tables", "target")
        _, self.source_engine = preflight.open_source(loaded, readonly=True)
        self.dialect = self.source_engine.dialect.name
        self.workers = 1 if self.dialect == "sqlite" else s.workers
        # what outlives a reconnect
        self.dropped = False                     # --drop-target: once per process, not per start-up
        self.found: DbiTables | None = None      # the last start-up's tables: create_tables warns once
        self.cells_done = 0                      # over the whole run, reconnects included: maxiter counts these
        self.bins_done = 0                       # territory bins (grouped queries) done
        self.records = 0
        self.progress = Progress(0)              # every start-up counts its own grouped queries

    # ------------------------------------------------------------------------------------------------------
    # start-up: the one path for start, restart and reconnect

    def start(self) -> Running:
        s = self.s
        # the source first: a section that cannot work fails before the target is touched
        with retry.side("source"), self.source_engine.connect() as conn:
            sources = [source.reflect(conn, src) for src in s.regime_cls.sources]
            spec = aggregate.resolve(sources[0].main, s.aggregate, s.aggregate_skips, s.aggregate_count,
                                     s.aggregate_filter, s.aggregate_none)
            columns = self._columns(spec)
            self._check_filter(conn, sources, columns, spec.filter)
            for st in sources:
                source.warn_bad_dates(conn, st, source.horizon(s.source_tz), log)
        if self.drop_target and not self.dropped:
            with retry.side("target"):
                drop_tables(self.target, self.spec)
            self.dropped = True  # once per process: a reconnect must not drop what this run wrote
            log.info("drop_target", table=self.spec.table)
        with retry.side("target"):
            tables = self.found = create_tables(self.target, self.spec, previous=self.found)
        plans = [self._plan(tables, spec.filter, st) for st in sources]
        run = Running(tables, columns, spec.filter, plans, cells([p.bins for p in plans], s.territory))
        self.progress.close()
        self.progress = Progress(sum(len(c) for c in self._todo(run)))  # grouped queries of this run
        self.notice.start(self.cells_done + len(self._todo(run)))  # posted once; a reconnect updates the total
        return run

    def _columns(self, spec: aggregate.AggregateSpec) -> Columns:
        cols, unused, missing = plan_columns(spec, preflight.target_columns(self.spec))
        if not cols.pairs:
            raise self.loaded.error("aggregate", f"none of the aggregate keys ({', '.join(spec.keys()[:4])}, ...) "
                                    f"is a column of {self.spec.table}: the averager writes <column>_<fn> columns")
        if unused or missing:
            log.warning("aggregate_mismatch", target=self.spec.table, unused=unused, missing=missing,
                        action="unused keys are not computed; missing columns are written as NULL")
        return cols

    def _check_filter(self, conn: sa.Connection, sources: list[source.SourceTable], columns: Columns,
                      filter_sql: str | None) -> None:
        """Run the grouped query once over an empty range: a bad filter fails now, as a config error."""
        t0 = source.CHECK_TIME
        with source.filter_errors():
            for st in sources:
                conn.execute(grouped_statement(st.main, columns, filter_sql, self.dialect, t0, self.binsize_s,
                                               t0, t0, id_span=(0, 0))).all()

    def _plan(self, tables: DbiTables, filter_sql: str | None, st: source.SourceTable) -> Plan:
        """One source's territory, from its context's last record and the source's first and last rows."""
        s = self.s
        ctx = preflight.context_for(st.source, s)
        with retry.side("target"):
            seen = reader.max_seqno(self.target, tables)  # before the last record: see writer.Fence
            last = reader.last_validity(self.target, tables, ctx, timefloor=s.timefloor_utc)
        resume = grid.resume(last, s.timefloor, s.seed_timestart, s.source_tz, s.binsize)
        with retry.side("source"), self.source_engine.connect() as conn:
            head = source.head(conn, st, source.horizon(s.source_tz))
            if resume.spans_bins and last is not None:
                self._binsize_changed(st, last)
            # from the bin of the first row that counts: a stretch without any (the DCS down, or every
            # row filtered out) writes nothing, and must not use up maxiter run after run
            first = source.first_row_time(conn, st, resume.at, filter_sql)
        territory = grid.territory(first, head, s.binsize, s.territory)
        bins, fmt = territory.bins, s.fmt
        log.info("startup", source=st.source.name, **ctx.fields(), seqno=last.seqno if last else None,
                 resume=fmt(territory.start), head=fmt(head), target=self.spec.table)
        log.info("territory", source=st.source.name, count=len(bins), bins=[[fmt(a), fmt(b)] for a, b in bins],
                 first=[fmt(t) for t in bins[0]] if bins else None,
                 last=[fmt(t) for t in bins[-1]] if bins else None)
        return Plan(table=st, context=ctx, floor=resume.floor, bins=bins,
                    fence=Fence(ctx, last.seqno if last else None, seen))

    def _binsize_changed(self, st: source.SourceTable, last: reader.VldRow) -> None:
        s = self.s
        log.warning("binsize_changed", source=st.source.name, seqno=last.seqno,
                    timestart=s.fmt(last.timestart), timeend=s.fmt(last.timeend),
                    binsize=config.format_value(s.binsize),
                    action="the last record spans more than one bin of this binsize; appending "
                           "anyway (run with --drop-target, or a new target, to change binsize)")

    # ------------------------------------------------------------------------------------------------------
    # the replay

    def _todo(self, run: Running) -> list[list[Unit]]:
        """The cells this run still does: all of them, or what maxiter leaves."""
        if not self.s.maxiter:
            return run.cells
        return run.cells[:max(self.s.maxiter - self.cells_done, 0)]

    def loop(self, run: Running) -> str:
        """Query the cells' territory bins (a few at once, in order), write their records in batches.

        Returns why it ended: done, maxiter or the signal. A cell's records are written only once all
        of its queries are in, so a stop never leaves one source's part of a cell without the other's.
        """
        todo = self._todo(run)
        pending = Pending()
        end = max((u.hi for u in todo[-1]), default=None) if todo else None  # the heartbeat's lag: source time left
        with Queries(self.workers, lambda u: self._query(run, u), (u for cell in todo for u in cell)) as queries:
            for cell in todo:
                if self.stop.is_set():
                    self._commit(run, pending)
                    return lifecycle.signal_name(self.stop)
                if end is not None and cell:
                    heartbeat.beat("reading", lag_s=(end - max(u.hi for u in cell)).total_seconds())
                pending.records.extend(self._cell(run, queries, len(cell)))
                pending.cells += 1
                self.notice.advance(self.cells_done + pending.cells)  # queried; written in batches
                if pending.due():
                    self._commit(run, pending)
                    pending.since = time.monotonic()
        self._commit(run, pending)
        if len(todo) < len(run.cells):
            return "maxiter"
        self.notice.finish("completed")
        return "done"

    def _cell(self, run: Running, queries: Queries, units: int) -> list[tuple[Plan, Record]]:
        """One cell's queries in (each one sampled), and its records in (bin, source) order."""
        results = []
        for _ in range(units):
            unit, groups = queries.next()
            self._sampled(run.plans[unit.source], unit, groups)
            results.append((unit, groups))
        return [(run.plans[u.source], self._record(run, run.plans[u.source], g))
                for u, g in in_order(results, self.s.binsize)]

    def _query(self, run: Running, unit: Unit) -> list[sa.RowMapping]:
        """One territory bin's groups (run in a worker thread, on a connection of its own)."""
        plan, lo, hi = run.plans[unit.source], unit.lo, unit.hi
        table = plan.table.main
        rows_from = max(lo, plan.floor)  # lo is a bin start; the row floor may lie inside the first bin
        # Both statements run in one transaction, so on InnoDB they read one snapshot.
        with retry.side("source"), self.source_engine.connect() as conn:
            first_id, last_id = conn.execute(id_span_statement(table, rows_from, hi)).one()
            if first_id is None:
                return []  # no rows at all: the grouped query is not needed
            stmt = grouped_statement(table, run.columns, run.filter, self.dialect, lo, self.binsize_s, rows_from, hi,
                                     id_span=(first_id, last_id))
            return list(conn.execute(stmt).mappings())

    def _sampled(self, plan: Plan, unit: Unit, groups: Sequence[Mapping[Any, Any]]) -> None:
        """The manual's SV line for one territory bin, and the progress."""
        rows = sum(int(g[COUNT]) for g in groups)
        self.bins_done += 1
        if self.s.log_samples:
            fmt = self.s.fmt
            log.info("sample", source=plan.name, n=unit.n, tcursor=fmt(unit.lo), fullness="full",
                     range=[fmt(unit.lo), fmt(unit.hi)], groups=len(groups), rows=rows, state="replay",
                     proceed=bool(groups))
        self.progress.advance(rows)

    def _record(self, run: Running, plan: Plan, group: Mapping[Any, Any]) -> Record:
        start, end = validity(group[FIRST], group[LAST], self.s.source_tz)
        # the averager's records never overlap, so none overlays another: VERSIONDATE is TIMESTART
        return Record(start, end, plan.context, [payload(group, run.columns)], versiondate=start)

    def _commit(self, run: Running, pending: Pending) -> None:
        """Write the pending records; then, all committed, their cells count (a lost connection raised)."""
        self._flush(run, pending.records)
        self.cells_done += pending.cells
        pending.cells = 0

    def _flush(self, run: Running, pending: list[tuple[Plan, Record]]) -> None:
        """Write the pending records in their order, BATCH_RECORDS per transaction (and forget them)."""
        # the scraper's propagate event; when a person watches the events and the bar on a terminal,
        # at debug level (a full history is tens of thousands of them; log files get them all)
        emit = log.debug if logsetup.for_people() and self.progress.tty else log.info
        while pending:
            batch = pending[:BATCH_RECORDS]
            records = [rec for _, rec in batch]
            heartbeat.beat("writing")
            with retry.side("target"):  # fenced: a second copy of the section that wrote first makes this a no-op
                seqnos = writer.write_many(self.target, run.tables, records, [p.fence for p in run.plans])
            del pending[:len(batch)]
            self.records += len(batch)
            for p in run.plans:
                p.fence = p.fence.after(records, seqnos)
            for seqno, (plan, rec) in zip(seqnos, batch, strict=True):
                emit("propagate", source=plan.name, seqno=seqno, **rec.fields(self.s.fmt))

    def counts(self) -> dict[str, int]:
        return {"bins": self.bins_done, "cells": self.cells_done, "records": self.records}

    def close(self) -> None:
        self.progress.close()
        self.target.dispose()
        self.source_engine.dispose()


def run(loaded: config.Loaded[config.AveragerSection], drop_target: bool = False,
        stop: threading.Event | None = None) -> int:
    """Average a section's complete bins (at most maxiter cells of the territory grid), then exit 0.

    SIGTERM stops between cells, after writing the finished ones. Configuration errors
    raise ConfigError (exit 78), --drop-target on offline_db among them. With `notify`, the run's
    progress is posted: running, every progress_every %, completed / aborted (signal, maxiter) / failed.
    """
    notice = notify.for_job(loaded, "averager", unit="cells")
    with notice.reporting():
        return lifecycle.serve(loaded, lambda stop: Averager(loaded, stop, drop_target=drop_target, notice=notice),
                               log, stop)
