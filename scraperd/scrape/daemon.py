"""The scraper daemon: the imperative shell around sampling.py.

    start()  connect, reflect the sources, create the target tables, and per source resume() from
             the last validity record (seeding a context that holds no record at all, when
             configured; starting at timefloor when timefloor hides every record). One path serves
             first start, restart after kill -9, reconnect after an outage and a write conflict.
    fence    every write is conditional on the last validity record of each source's context being
             the one this process's state rests on (writer.Fence): a second copy of the section
             (by hand beside supervisord's, or on another host) that wrote first makes the write
             do nothing and raise WriteConflict, and lifecycle.py resumes from the target. Any
             number of copies write exactly what one run writes.
    loop     one iteration = at most one collected sample per source. Rows are read in batches
             (one query returns many), so catching up a week of data does not crawl; the sampling
             decisions are the same as reading row by row. While behind, propagated records are
             committed in batches (one transaction each); once caught up, every iteration commits.
             A crash loses at most an uncommitted batch, which the restart writes again.
    order    records of all sources are committed in one order, by (sample time, source), so that
             SEQNOs too are the same however the run was cut: a record is committed only once every
             other source has read past its time (or has nothing more to read). A source far ahead
             of the others waits for them instead of piling up records.
    sleep    stop.wait(sleep_s): SIGTERM ends the wait at once; the current write always finishes.

This module only sleeps, handles signals, retries and logs; what to sample and when to propagate is
decided in sampling.py and the regime.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import sqlalchemy as sa

from scraperd import config, lifecycle, logsetup, preflight, retry
from scraperd.dbi import reader, writer
from scraperd.dbi.context import Context
from scraperd.dbi.tables import DbiTables, create_tables
from scraperd.dbi.writer import Fence, Record
from scraperd.errors import SourceError
from scraperd.regimes.base import Regime, Scraper, Source
from scraperd.scrape import aggregate, late, sampling, source
from scraperd.scrape.sampling import Sampler, SourceRow
from scraperd.scrape.source import SourceTable

log = logsetup.get_logger("scraperd.scraper")

FLUSH_RECORDS = 500      # commit a catch-up batch at this many pending records ...
FLUSH_ROWS = 20_000      # ... or this many payload rows (pmthv: 192 per record)
AHEAD_RECORDS = 2_000    # a source with this many uncommittable records waits for the others
HEADS_EVERY_S = 1.0      # sleep tuning re-reads the source heads at most this often (real time)


@dataclass
class SourceCursor:
    """Per-source runtime state: the reflected table, its context, the sampler and the read buffer."""

    source: Source
    table: SourceTable
    context: Context
    sampler: Sampler
    fence: Fence                                          # the context's last record, as this process knows it
    buffer: deque[SourceRow] = field(default_factory=deque)
    index: int = 0                                        # its place in the regime: breaks ties in the order
    pending: list[tuple[datetime, Record]] = field(default_factory=list)  # (sample time, record), uncommitted
    idle: bool = False                                    # its last read found no row
    skipping: bool = False                                # a propagation skipped since its last record
    warned_duplicates: int = 0


class ScraperDaemon:
    """One scraper section at work."""

    def __init__(self, loaded: config.Loaded, stop: threading.Event, *, until_caught_up: bool = False) -> None:
        s = loaded.settings
        assert isinstance(s, config.ScraperSection)
        self.loaded, self.s, self.stop = loaded, s, stop
        self.regime_cls: type[Regime] = config.load_regime(s.regime)
        self.target_url, self.target, self.spec = preflight.open_target(loaded, self.regime_cls)
        self.source_url, self.source_engine = preflight.open_source(loaded, readonly=True)
        columns = preflight.target_columns(self.spec)
        self.regime = self.regime_cls(columns)
        self.scraper: Scraper = self.regime_cls.scraper(threshold=s.threshold, target_columns=columns,
                                                        aggregate_count=s.aggregate_count,
                                                        aggregate_none=s.aggregate_none)
        self.tables: DbiTables | None = None
        self.cursors: list[SourceCursor] = []
        self.columns_seen: dict[str, tuple[str, ...]] = {}
        self.agg: aggregate.AggregateSpec | None = None
        self.until_caught_up = until_caught_up
        self.flush_at = FLUSH_RECORDS  # pending records that trigger a commit while behind
        self.heads: list[datetime | None] = []  # source heads for the lag, re-read at most every HEADS_EVERY_S
        self.heads_read_at = -HEADS_EVERY_S
        self.iterations = 0
        self.replays = 0  # iterations that only replay skipped propagations: maxiter does not count them
        self.propagations = 0
        self.sleep_s = s.sleep.total_seconds()
        self.effective_heartbeat = s.heartbeat * (s.offset + 1)
        self.late = late.Watcher(s.source_tz, s.timeformat)  # id heads: kept across reconnects

    # ------------------------------------------------------------------------------------------------------
    # start-up: the one path for start, restart and reconnect

    def start(self) -> None:
        s = self.s
        with retry.side("target"):
            self.tables = create_tables(self.target, self.spec, previous=self.tables)  # warns once, not per restart
        self.cursors = []
        with retry.side("source"), self.source_engine.connect() as conn:
            tables = [source.reflect(conn, src) for src in self.regime_cls.sources]
            for st in tables:  # a column lost since the first start-up is an error, not a silent NULL
                lost = [c for c in self.columns_seen.setdefault(st.source.name, st.names) if c not in st.names]
                if lost:
                    raise SourceError(f"source {st.source.name} lost columns {lost[:8]}")
            if s.aggregate:
                self.agg = aggregate.resolve(tables[0].main, s.aggregate, s.aggregate_skips, s.aggregate_count,
                                             s.aggregate_filter, s.aggregate_none)
                self._check_filter(conn, tables)
            until = source.horizon(s.source_tz, s.interval)
            for st in tables:
                source.warn_bad_dates(conn, st, until, log)
        for st in tables:
            self.cursors.append(self._resume(st))
            self.cursors[-1].index = len(self.cursors) - 1
        self._watch_late_from_start()
        self.heads_read_at = -HEADS_EVERY_S  # the cursors are new: read their heads now
        self._tune()  # a restart far behind catches up at once, without first sleeping `sleep` per sample

    def _check_filter(self, conn: sa.Connection, tables: list[source.SourceTable]) -> None:
        """Run the aggregate query once over an empty range: a bad filter fails now, as a config error."""
        assert self.agg is not None
        with source.filter_errors():
            for st in tables:
                source.aggregates(conn, st, self.agg, source.CHECK_TIME, source.CHECK_TIME)

    def _resume(self, st: source.SourceTable) -> SourceCursor:
        s, tz = self.s, self.s.source_tz
        assert self.tables is not None
        ctx = preflight.context_for(st.source, s)
        floor = sampling.to_utc(s.timefloor, tz) if s.timefloor else None
        with retry.side("target"):
            seen = reader.max_seqno(self.target, self.tables)  # before the last record: see writer.Fence
            last = reader.last_validity(self.target, self.tables, ctx, timefloor=floor)
            empty = last is None and (floor is None or reader.last_validity(self.target, self.tables, ctx) is None)
        if empty:  # a context holding any record, even one timefloor hides, is never seeded
            seen = self._seed(st, ctx)  # fenced on an empty context: nobody else wrote it up to the seed
            with retry.side("target"):
                last = reader.last_validity(self.target, self.tables, ctx, timefloor=floor)
        sv0 = None
        if last is None:  # timefloor hides every record of the context: scraping starts at timefloor
            assert s.timefloor is not None
            tcursor, resumed = s.timefloor, "timefloor"
        else:
            tcursor, resumed = sampling.tcursor_after(last.timeend, tz), "last_record"
            with retry.side("source"), self.source_engine.connect() as conn:
                sv0 = source.row_at(conn, st, sampling.to_local(last.timestart, tz))
        sampler = sampling.resume(tcursor, sv0, s.offset)
        log.info("startup", source=st.source.name, **ctx.fields(), seqno=last.seqno if last else None,
                 start_from=resumed, tcursor=self._fmt(tcursor), sv0=sv0.id if sv0 else None, target=self.spec.table)
        return SourceCursor(source=st.source, table=st, context=ctx, sampler=sampler,
                            fence=Fence(ctx, last.seqno if last else None, seen))

    def _seed(self, st: source.SourceTable, ctx: Context) -> int:
        s = self.s
        assert self.tables is not None
        if not s.seed_target_tables:
            raise preflight.needs_seed_message(self.loaded, self.spec.table, st.source, ctx)
        preflight.refuse_protected(self.target_url, self.loaded, "seeding", "seed_target_tables")
        assert s.seed_timestart and s.seed_timeend
        start = sampling.to_utc(s.seed_timestart, s.source_tz)
        end = sampling.to_utc(s.seed_timeend, s.source_tz)
        rows = preflight.seed_payload(self.regime, st.source, self.spec)
        with retry.side("target"):  # fenced on "no record at all": two copies never both seed
            seqno = writer.write(self.target, self.tables, Record(start, end, ctx, rows), [Fence(ctx, None, 0)])
        log.info("seed", source=st.source.name, seqno=seqno, timestart=start, timeend=end, **ctx.fields())
        return seqno

    # ------------------------------------------------------------------------------------------------------
    # the loop

    def loop(self, run: None = None) -> str:
        """Iterate until maxiter or a signal; returns the reason.

        While catching up, an iteration in which a source collected while it had skipped a
        propagation (an empty aggregate) since its last record does not count for maxiter: every run
        resumes from that record and replays the skips, so a run cut by maxiter must get through them.
        """
        s = self.s
        while not self.stop.is_set():
            if s.maxiter and self.iterations - self.replays >= s.maxiter:
                self.flush(final=True)
                return "maxiter"
            self.iterations += 1
            collected = 0
            replay = False
            for cur in self.cursors:
                if self.stop.is_set():
                    break
                skipping = cur.skipping
                if self._iterate_source(cur):
                    collected += 1
                    replay = replay or skipping or cur.skipping
            self.replays += replay and self.sleep_s == 0  # catching up: at the head, every iteration counts
            behind = collected and self.sleep_s == 0
            if not behind or self.stop.is_set():
                self.flush()
            if self.stop.is_set():
                break
            if not collected and self.until_caught_up:
                self.flush(final=True)
                return "caught_up"
            wait = self.sleep_s if collected else max(self.sleep_s, s.sleep.total_seconds(), 0.05)
            if wait > 0 and not (s.maxiter and self.iterations - self.replays >= s.maxiter):
                self.stop.wait(wait)
        self.flush(final=True)
        return lifecycle.signal_name(self.stop)

    def _next_row(self, cur: SourceCursor) -> SourceRow | None:
        """Step rows (from the buffer, refilled in batches) until one is collected."""
        while True:
            if not cur.buffer:
                smp = cur.sampler
                with retry.side("source"), self.source_engine.connect() as conn:
                    rows = source.rows_from(conn, cur.table, smp.tcursor, smp.last_seen, self.s.batch_size,
                                            source.horizon(self.s.source_tz, self.s.interval,
                                                           self.s.source_delay))
                    self.late.poll(conn, cur.table, smp, rows)
                cur.idle = not rows
                if not rows:
                    return None
                cur.buffer.extend(rows)
            row = cur.buffer.popleft()
            cur.sampler, collected, why = sampling.step(cur.sampler, row)
            if why == "duplicate_date_time":
                cur.warned_duplicates += 1
                log.warning("duplicate_date_time", source=cur.source.name, id=row.id,
                            date_time=self._fmt(row.date_time), action="ignored; the first row by id counts")
            if collected:
                return row

    def _watch_late_from_start(self) -> None:
        """The id head of every source, and late rows committed while no scraper ran (late.py)."""
        with retry.side("source"), self.source_engine.connect() as conn:
            for cur in self.cursors:
                self.late.start(conn, cur.table, cur.sampler)

    def _iterate_source(self, cur: SourceCursor) -> bool:
        if len(cur.pending) >= AHEAD_RECORDS:
            return True  # far ahead of another source: let it catch up (work remains, so not idle)
        row = self._next_row(cur)
        if row is None:
            return False
        sv = cur.sampler.sv
        changed = False
        if len(sv) == 2:
            if self.agg is not None and self.scraper.changed_uses_aggregates:
                sv = self._with_aggregates(cur)
            try:
                changed = bool(self.scraper.changed(sv))
            except (TypeError, ValueError, ArithmeticError) as exc:
                log.warning("bad_row", source=cur.source.name, id=row.id, error=repr(exc),
                            action="treated as unchanged")
        sample = sampling.judge(cur.sampler, changed, self.s.maxage)
        if self.s.log_samples:
            log.info("sample", source=cur.source.name, n=sample.n, ids=sample.ids,
                     tcursor=self._fmt(sample.tcursor), fullness=sample.fullness, state=sample.state,
                     range=[self._fmt(t) for t in sample.range], proceed=sample.proceed)
        if sample.proceed:
            self._propagate(cur)
        return True

    def _with_aggregates(self, cur: SourceCursor) -> tuple[SourceRow, ...]:
        """sv with sv[-1].aggd filled (one aggregate query over sv[0] <= date_time < sv[-1])."""
        assert self.agg is not None
        sv = cur.sampler.sv
        if sv[-1].aggd is not None:
            return sv
        with retry.side("source"), self.source_engine.connect() as conn:
            aggd = source.aggregates(conn, cur.table, self.agg, sv[0].date_time, sv[-1].date_time)
        sv = (sv[0], sv[-1].with_aggd(aggd))
        cur.sampler = replace(cur.sampler, sv=sv)
        return sv

    def _propagate(self, cur: SourceCursor) -> None:
        s = self.s
        assert self.tables is not None
        sv = cur.sampler.sv
        vld = sampling.validity(sv[-1].date_time, s.interval, s.source_tz)
        if self.agg is not None:
            sv = self._with_aggregates(cur)
            filled = aggregate.fill_none(sv[-1].aggd or {}, self.agg)
            if filled is None:
                log.warning("aggregate_empty", source=cur.source.name, ids=[r.id for r in sv],
                            range=[self._fmt(sv[0].date_time), self._fmt(sv[-1].date_time)],
                            action="propagation skipped (set aggregate_none to write a value instead)")
                # the sampler moves on as after a written record, so the next range starts here; a
                # restart replays the same rows from the last written record to the same decisions
                cur.sampler = sampling.propagated(cur.sampler, vld, s.source_tz)
                cur.skipping = True
                return
            sv = (sv[0], sv[-1].with_aggd(filled))
        rows = [dict(r) for r in self.scraper.propagate(sv)]
        nulls = sorted({k for r in rows for k, v in r.items() if v is None})
        if nulls and self.agg is None:
            log.warning("bad_row", source=cur.source.name, id=sv[-1].id, null_columns=nulls[:8],
                        action="written as NULL")
        cur.pending.append((sv[-1].date_time, Record(vld.timestart, vld.timeend, cur.context, rows)))
        cur.skipping = False
        cur.sampler = sampling.propagated(cur.sampler, vld, s.source_tz)
        self.propagations += 1
        pending = sum(len(c.pending) for c in self.cursors)
        if pending >= self.flush_at:
            self.flush()
        if self.propagations % s.tunesleepmod == 0:
            self._tune()

    def _committable(self, t: datetime, owner: SourceCursor) -> bool:
        """No other source can still propagate a record sampled before t (it read past t, or has no row)."""
        return all(other is owner or other.idle or (other.sampler.last_seen is not None
                                                      and other.sampler.last_seen >= t)
                   for other in self.cursors)

    def flush(self, *, final: bool = False) -> None:
        """Commit, in one transaction, the pending records that come next in (sample time, source) order.

        final: the run ends; records not yet committable are dropped, not written out of order (the
        next start reads them from the source again and writes them then, unchanged).
        """
        assert self.tables is not None
        merged = heapq.merge(*[[(t, cur.index, n, cur) for n, (t, _) in enumerate(cur.pending)]
                               for cur in self.cursors])
        chosen: list[tuple[SourceCursor, int]] = []
        for t, _, n, cur in merged:
            if not self._committable(t, cur):
                break
            chosen.append((cur, n))
        if chosen:
            records = [cur.pending[n][1] for cur, n in chosen]
            with retry.side("target"):
                seqnos = writer.write_many(self.target, self.tables, records, [c.fence for c in self.cursors])
            for cur in self.cursors:
                cur.fence = cur.fence.after(records, seqnos)
            for seqno, (cur, _), rec in zip(seqnos, chosen, records, strict=True):
                log.info("propagate", source=cur.source.name, seqno=seqno, rows=len(rec.rows),
                         timestart=self._fmt(rec.timestart), timeend=self._fmt(rec.timeend),
                         sitemask=rec.context.sitemask, subsite=rec.context.subsite)
            done = Counter(cur.index for cur, _ in chosen)
            for cur in self.cursors:
                del cur.pending[:done.get(cur.index, 0)]
        # the next batch: this many more records (fewer when they are big: pmthv has 192 rows each)
        per_record = max((len(c.pending[-1][1].rows) for c in self.cursors if c.pending), default=1)
        self.flush_at = sum(len(c.pending) for c in self.cursors) + max(1, min(FLUSH_RECORDS,
                                                                               FLUSH_ROWS // max(per_record, 1)))
        if final:
            left = sum(len(c.pending) for c in self.cursors)
            if left:
                log.info("uncommitted", records=left, action="read again from the source at the next start")
            for cur in self.cursors:
                cur.pending.clear()

    def _tune(self) -> None:
        """Lag = max over sources of (source head − tcursor), in effective heartbeats; sleep from it."""
        lags: list[timedelta] = []
        now = time.monotonic()
        if now - self.heads_read_at >= HEADS_EVERY_S:  # catching up propagates hundreds of times a second
            with retry.side("source"), self.source_engine.connect() as conn:
                until = source.horizon(self.s.source_tz, delay=self.s.source_delay)  # rows held back are no lag
                self.heads = [source.head(conn, cur.table, until) for cur in self.cursors]
            self.heads_read_at = now
        for cur, head in zip(self.cursors, self.heads, strict=True):
            if head is not None:
                lags.append(head - cur.sampler.tcursor)
        maxlag = max([timedelta(0), *lags])  # tcursor runs up to one interval past the head: that is no lag
        eff = self.effective_heartbeat.total_seconds() or 1.0
        lag_hb = maxlag.total_seconds() / eff
        self.sleep_s = 0.0 if lag_hb > 1 else eff
        log.info("tune", maxlag_s=round(maxlag.total_seconds(), 1), lag_heartbeats=round(lag_hb, 1),
                 sleep_s=self.sleep_s)

    def _fmt(self, t: datetime | None) -> str | None:
        return t.strftime(self.s.timeformat) if t is not None else None

    def counts(self) -> dict[str, int]:
        return {"iterations": self.iterations, "propagations": self.propagations}

    def close(self) -> None:
        self.target.dispose()
        self.source_engine.dispose()


def run(loaded: config.Loaded[config.ScraperSection], stop: threading.Event | None = None, *,
        until_caught_up: bool = False) -> int:
    """Run a scraper section until maxiter, a signal, or (until_caught_up) the first idle iteration.

    Exit 0 on all of these; configuration errors raise ConfigError (exit 78).
    """
    return lifecycle.serve(loaded, lambda stop: ScraperDaemon(loaded, stop, until_caught_up=until_caught_up),
                           log, stop)
