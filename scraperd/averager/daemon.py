"""The averager's shell: connect, reflect, read, write, log, progress; run() is `scraperd run` of an averager.

What to average and in what order is decided in grid.py; the grouped statements are built in queries.py.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from scraperd import config, lifecycle, logsetup, preflight, retry
from scraperd.averager.grid import (
    ONE_SECOND,
    Unit,
    bin_floor,
    cells,
    in_order,
    resume_start,
    territory_bins,
    validity,
)
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
from scraperd.errors import ConfigError
from scraperd.progress import Progress
from scraperd.regimes.base import Regime
from scraperd.scrape import aggregate, source
from scraperd.scrape.sampling import to_local, to_utc

log = logsetup.get_logger("scraperd.averager")

BATCH_RECORDS = 250        # records per write_many transaction (small: writes overlap queries); written ...
BATCH_SECONDS = 5.0        # ... once that many are pending, or this often, after a whole cell

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
