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
    beat     heartbeat phases reading (a source query), writing (a commit), sleeping (lifecycle.pause);
             the lag and sleep of the last tune (heartbeat.py: throttled, free while catching up).

This module only reads, writes, sleeps, retries and logs. What to sample and when to propagate is
decided in sampling.py (decide()) and the regime; when to commit and how long to sleep in
schedule.py. start() returns the running state (Run: tables, cursors, aggregate spec, sleep); what
a reconnect keeps is what the daemon object holds (counters, the columns seen, the late-row watcher).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import sqlalchemy as sa

from scraperd import config, heartbeat, lifecycle, logsetup, notify, preflight, retry
from scraperd.dbi import reader, writer
from scraperd.dbi.context import Context
from scraperd.dbi.tables import DbiTables, create_tables
from scraperd.dbi.writer import Fence, Record
from scraperd.errors import SourceError
from scraperd.regimes.base import Regime, Scraper, Source
from scraperd.scrape import aggregate, late, sampling, schedule, source
from scraperd.scrape.sampling import Sampler, SourceRow
from scraperd.scrape.source import SourceTable

log = logsetup.get_logger("scraperd.scraper")

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
    pending: list[tuple[datetime, Record]] = field(default_factory=list)  # (sample time, record), uncommitted
    idle: bool = False                                    # its last read found no row
    skipping: bool = False                                # a propagation skipped since its last record

    def reading(self) -> schedule.Reading:
        return schedule.Reading(self.sampler.last_seen, self.idle)


@dataclass
class Run:
    """The running state start() builds from the databases and loop() works on. A reconnect or a
    write conflict builds a new one: nothing uncommitted survives it (it is read again)."""

    tables: DbiTables
    cursors: list[SourceCursor]
    agg: aggregate.AggregateSpec | None
    flush_at: int                                       # pending records that trigger a commit while behind
    sleep_s: float = 0.0                                # tuned from the lag (schedule.tune)
    heads: list[datetime | None] = field(default_factory=list)  # source heads for the lag ...
    heads_read_at: float = -HEADS_EVERY_S               # ... re-read at most every HEADS_EVERY_S

    def pending(self) -> int:
        return sum(len(c.pending) for c in self.cursors)


class ScraperDaemon:
    """One scraper section at work."""

    def __init__(self, loaded: config.Loaded[config.ScraperSection], stop: threading.Event, *,
                 until_caught_up: bool = False, notice: notify.ProgressNotifier | None = None) -> None:
        s = loaded.settings
        self.loaded, self.s, self.stop = loaded, s, stop
        self.regime_cls: type[Regime] = s.regime_cls
        self.target_url, self.target, self.spec = preflight.open_target(loaded)
        self.source_engine = preflight.open_source(loaded, readonly=True)[1]
        columns = preflight.target_columns(self.spec)
        self.regime = self.regime_cls(columns)
        self.scraper: Scraper = self.regime_cls.scraper(threshold=s.threshold, target_columns=columns,
                                                        aggregate_count=s.aggregate_count,
                                                        aggregate_none=s.aggregate_none)
        self.rules = sampling.Rules(s.maxage, s.interval, s.source_tz)
        self.until_caught_up = until_caught_up
        # kept across reconnects and write conflicts:
        self.tables: DbiTables | None = None              # the last start's, so create_tables warns once
        self.columns_seen: dict[str, tuple[str, ...]] = {}  # a column lost since the first start is an error
        self.late = late.Watcher(s.source_tz, s.timeformat)  # id heads
        self.iterations = 0
        self.replays = 0  # iterations that only replay skipped propagations: maxiter does not count them
        self.propagations = 0
        self.notice = notice or notify.ProgressNotifier.off(loaded.name, "catch-up")
        self.catch_up: list[tuple[datetime, timedelta]] = []  # per source: tcursor at the first start, lag then

    # ------------------------------------------------------------------------------------------------------
    # start-up: the one path for start, restart and reconnect

    def start(self) -> Run:
        s = self.s
        with retry.side("target"):
            tables = self.tables = create_tables(self.target, self.spec, previous=self.tables)
        with retry.side("source"), self.source_engine.connect() as conn:
            sources = self._reflect(conn)
            agg = self._aggregate_spec(conn, sources) if s.aggregate else None
            until = source.horizon(s.source_tz, s.interval)
            for st in sources:
                source.warn_bad_dates(conn, st, until, log)
        cursors = [self._resume(tables, st) for st in sources]  # in the regime's order: it breaks ties
        with retry.side("source"), self.source_engine.connect() as conn:
            for cur in cursors:  # the id heads, and late rows committed while no scraper ran (late.py)
                self.late.start(conn, cur.table, cur.sampler)
        run = Run(tables, cursors, agg, flush_at=schedule.FLUSH_RECORDS)
        self._tune(run)  # a restart far behind catches up at once, without first sleeping `sleep` per sample
        if self.notice.active and not self.catch_up:
            self._catch_up_started(run)
        return run

    def _catch_up_started(self, run: Run) -> None:
        """--catch-up progress counts source time: per source, from its tcursor at the first start to its head then."""
        self.catch_up = [(c.sampler.tcursor, max(h - c.sampler.tcursor, timedelta(0)) if h else timedelta(0))
                         for c, h in zip(run.cursors, run.heads, strict=True)]
        self.notice.start(int(sum(lag.total_seconds() for _, lag in self.catch_up)))

    def _catch_up_progress(self, run: Run) -> None:
        """The source time read of what there was to read at the first start (notified per progress_every %)."""
        self.notice.advance(int(sum(min(max(c.sampler.tcursor - t0, timedelta(0)), lag).total_seconds()
                                    for c, (t0, lag) in zip(run.cursors, self.catch_up, strict=True))))

    def _reflect(self, conn: sa.Connection) -> list[SourceTable]:
        """The regime's source tables as they are now; a column lost since the first start-up is an
        error (SourceError: retried), not a silent NULL."""
        sources = [source.reflect(conn, src) for src in self.regime_cls.sources]
        for st in sources:
            lost = [c for c in self.columns_seen.setdefault(st.source.name, st.names) if c not in st.names]
            if lost:
                raise SourceError(f"source {st.source.name} lost columns {lost[:8]}")
        return sources

    def _aggregate_spec(self, conn: sa.Connection, sources: list[SourceTable]) -> aggregate.AggregateSpec:
        """The aggregate settings checked against the first source; the query run once over an empty
        range, so that a bad aggregate_filter fails now, as a config error."""
        s = self.s
        agg = aggregate.resolve(sources[0].main, s.aggregate, s.aggregate_skips, s.aggregate_count,
                                s.aggregate_filter, s.aggregate_none)
        with source.filter_errors():
            for st in sources:
                source.aggregates(conn, st, agg, source.CHECK_TIME, source.CHECK_TIME)
        return agg

    def _resume(self, tables: DbiTables, st: SourceTable) -> SourceCursor:
        s, tz = self.s, self.s.source_tz
        ctx = preflight.context_for(st.source, s)
        floor = s.timefloor_utc
        with retry.side("target"):
            seen = reader.max_seqno(self.target, tables)  # before the last record: see writer.Fence
            last = reader.last_validity(self.target, tables, ctx, timefloor=floor)
            empty = last is None and (floor is None or reader.last_validity(self.target, tables, ctx) is None)
        if empty:  # a context holding any record, even one timefloor hides, is never seeded
            seen = self._seed(tables, st, ctx)  # fenced on an empty context: nobody else wrote it up to the seed
            with retry.side("target"):
                last = reader.last_validity(self.target, tables, ctx, timefloor=floor)
        tcursor, resumed = sampling.start_point(last.timeend if last else None, s.timefloor, tz)
        sv0 = None
        if last is not None:
            with retry.side("source"), self.source_engine.connect() as conn:
                sv0 = source.row_at(conn, st, sampling.to_local(last.timestart, tz))
        sampler = sampling.resume(tcursor, sv0, s.offset)
        log.info("startup", source=st.source.name, **ctx.fields(), seqno=last.seqno if last else None,
                 start_from=resumed, tcursor=s.fmt(tcursor), sv0=sv0.id if sv0 else None, target=self.spec.table)
        return SourceCursor(source=st.source, table=st, context=ctx, sampler=sampler,
                            fence=Fence(ctx, last.seqno if last else None, seen))

    def _seed(self, tables: DbiTables, st: SourceTable, ctx: Context) -> int:
        s = self.s
        if not s.seed_target_tables:
            raise preflight.needs_seed_message(self.loaded, self.spec.table, st.source, ctx)
        preflight.refuse_protected(self.target_url, self.loaded, "seeding", "seed_target_tables")
        assert s.seed_timestart and s.seed_timeend  # the config model requires both with seed_target_tables
        start = sampling.to_utc(s.seed_timestart, s.source_tz)
        end = sampling.to_utc(s.seed_timeend, s.source_tz)
        rows = preflight.seed_payload(self.regime, st.source, self.spec)
        with retry.side("target"):  # fenced on "no record at all": two copies never both seed
            seqno = writer.write(self.target, tables, Record(start, end, ctx, rows), [Fence(ctx, None, 0)])
        log.info("seed", source=st.source.name, seqno=seqno, timestart=start, timeend=end, **ctx.fields())
        return seqno

    # ------------------------------------------------------------------------------------------------------
    # the loop

    def loop(self, run: Run) -> str:
        """Iterate until maxiter or a signal (or caught up, with until_caught_up); returns the reason.

        While catching up, an iteration in which a source collected while it had skipped a
        propagation (an empty aggregate) since its last record does not count for maxiter: every run
        resumes from that record and replays the skips, so a run cut by maxiter must get through them.
        """
        s, wait = self.s, 0.0
        while not lifecycle.maxiter_reached(s.maxiter, self.iterations - self.replays):
            if lifecycle.pause(self.stop, wait):
                break
            self.iterations += 1
            collected, replay = self._iterate(run)
            if self.notice.active:
                self._catch_up_progress(run)
            self.replays += replay and run.sleep_s == 0  # catching up: at the head, every iteration counts
            if not (collected and run.sleep_s == 0) or self.stop.is_set():  # behind: commit in batches
                self.flush(run)
            if self.stop.is_set():
                break
            if not collected and self.until_caught_up:
                self.flush(run, final=True)
                self.notice.finish("completed")
                return "caught_up"
            wait = schedule.wait_s(collected, run.sleep_s, s.sleep.total_seconds())
        else:  # the loop ran out of iterations (no break)
            self.flush(run, final=True)
            return "maxiter"
        self.flush(run, final=True)
        return lifecycle.signal_name(self.stop)

    def _iterate(self, run: Run) -> tuple[bool, bool]:
        """At most one collection per source: (any source collected?, any of them replaying a skip?)."""
        collected = replay = False
        for cur in run.cursors:
            if self.stop.is_set():
                break
            skipping = cur.skipping
            if self._iterate_source(run, cur):
                collected = True
                replay = replay or skipping or cur.skipping
        return collected, replay

    def _iterate_source(self, run: Run, cur: SourceCursor) -> bool:
        """Collect one row of a source and act on the decision; False when it has no row to collect."""
        if len(cur.pending) >= AHEAD_RECORDS:
            return True  # far ahead of another source: let it catch up (work remains, so not idle)
        row = self._next_row(cur)
        if row is None:
            return False
        changed = self._changed(run, cur, row) if cur.sampler.full else False
        decision = sampling.decide(cur.sampler, changed, self.rules)
        cur.sampler = decision.state
        sample = decision.sample
        if self.s.log_samples:
            fmt = self.s.fmt
            log.info("sample", source=cur.source.name, n=sample.n, ids=sample.ids, tcursor=fmt(sample.tcursor),
                     fullness=sample.fullness, state=sample.state, range=[fmt(t) for t in sample.range],
                     proceed=sample.proceed)
        if decision.validity is not None:
            self._propagate(run, cur, sample.sv, decision.validity)
        return True

    def _next_row(self, cur: SourceCursor) -> SourceRow | None:
        """Step rows (from the buffer, refilled in batches) until one is collected."""
        s = self.s
        while True:
            if not cur.buffer:
                heartbeat.beat("reading")
                smp = cur.sampler
                with retry.side("source"), self.source_engine.connect() as conn:
                    rows = source.rows_from(conn, cur.table, smp.tcursor, smp.last_seen, s.batch_size,
                                            source.horizon(s.source_tz, s.interval, s.source_delay))
                    self.late.poll(conn, cur.table, smp, rows)
                cur.idle = not rows
                if not rows:
                    return None
                cur.buffer.extend(rows)
            row = cur.buffer.popleft()
            cur.sampler, collected, why = sampling.step(cur.sampler, row)
            if why == "duplicate_date_time":
                log.warning("duplicate_date_time", source=cur.source.name, id=row.id,
                            date_time=s.fmt(row.date_time), action="ignored; the first row by id counts")
            if collected:
                return row

    def _changed(self, run: Run, cur: SourceCursor, row: SourceRow) -> bool:
        """The regime's verdict on a full vector; a row it cannot judge is unchanged (bad_row)."""
        sv = cur.sampler.sv
        if run.agg is not None and self.scraper.changed_uses_aggregates:
            sv = self._with_aggregates(run.agg, cur, sv)
        try:
            return bool(self.scraper.changed(sv))
        except (TypeError, ValueError, ArithmeticError) as exc:
            log.warning("bad_row", source=cur.source.name, id=row.id, error=repr(exc), action="treated as unchanged")
            return False

    def _with_aggregates(self, agg: aggregate.AggregateSpec, cur: SourceCursor,
                         sv: tuple[SourceRow, ...]) -> tuple[SourceRow, ...]:
        """sv with sv[-1].aggd filled (one aggregate query over sv[0] <= date_time < sv[-1]), kept in the
        sampler while sv is its vector, so that changed() and the propagation share one query."""
        if sv[-1].aggd is not None:
            return sv
        with retry.side("source"), self.source_engine.connect() as conn:
            aggd = source.aggregates(conn, cur.table, agg, sv[0].date_time, sv[-1].date_time)
        filled = (sv[0], sv[-1].with_aggd(aggd))
        if cur.sampler.sv is sv:
            cur.sampler = replace(cur.sampler, sv=filled)
        return filled

    def _propagate(self, run: Run, cur: SourceCursor, sv: tuple[SourceRow, ...],
                   vld: sampling.Validity) -> None:
        """Queue the record of a proceeding sample (the sampler already moved on), or skip an empty
        aggregate: the next range starts here either way, and a restart replays the same decisions."""
        if run.agg is not None:
            filled = self._aggregated(run.agg, cur, sv)
            if filled is None:
                cur.skipping = True
                return
            sv = filled
        rows = [dict(r) for r in self.scraper.propagate(sv)]
        nulls = sorted({k for r in rows for k, v in r.items() if v is None})
        if nulls and run.agg is None:
            log.warning("bad_row", source=cur.source.name, id=sv[-1].id, null_columns=nulls[:8],
                        action="written as NULL")
        cur.pending.append((sv[-1].date_time, Record(vld.timestart, vld.timeend, cur.context, rows)))
        cur.skipping = False
        self.propagations += 1
        if run.pending() >= run.flush_at:
            self.flush(run)
        if self.propagations % self.s.tunesleepmod == 0:
            self._tune(run)

    def _aggregated(self, agg: aggregate.AggregateSpec, cur: SourceCursor,
                    sv: tuple[SourceRow, ...]) -> tuple[SourceRow, ...] | None:
        """sv with its aggregates (aggregate_none filled in); None for a range without samples, which
        is skipped with a warning (aggregate_empty)."""
        sv = self._with_aggregates(agg, cur, sv)
        filled = aggregate.fill_none(sv[-1].aggd or {}, agg)
        if filled is None:
            fmt = self.s.fmt
            log.warning("aggregate_empty", source=cur.source.name, ids=[r.id for r in sv],
                        range=[fmt(sv[0].date_time), fmt(sv[-1].date_time)],
                        action="propagation skipped (set aggregate_none to write a value instead)")
            return None
        return (sv[0], sv[-1].with_aggd(filled))

    def flush(self, run: Run, *, final: bool = False) -> None:
        """Commit, in one transaction, the pending records that come next in (sample time, source) order.

        final: the run ends; records not yet committable are dropped, not written out of order (the
        next start reads them from the source again and writes them then, unchanged).
        """
        cursors = run.cursors
        chosen = schedule.committable([[t for t, _ in c.pending] for c in cursors], [c.reading() for c in cursors])
        if chosen:
            self._commit(run, chosen)
        per_record = max((len(c.pending[-1][1].rows) for c in cursors if c.pending), default=1)
        run.flush_at = schedule.next_flush_at(run.pending(), per_record)
        if final and run.pending():
            log.info("uncommitted", records=run.pending(), action="read again from the source at the next start")
            for cur in cursors:
                cur.pending.clear()

    def _commit(self, run: Run, chosen: list[tuple[int, int]]) -> None:
        """Write the chosen (source, position) pending records in one fenced transaction, in order."""
        cursors = run.cursors
        records = [cursors[i].pending[n][1] for i, n in chosen]
        heartbeat.beat("writing")
        with retry.side("target"):
            seqnos = writer.write_many(self.target, run.tables, records, [c.fence for c in cursors])
        for cur in cursors:
            cur.fence = cur.fence.after(records, seqnos)
        for seqno, (i, _), rec in zip(seqnos, chosen, records, strict=True):
            log.info("propagate", source=cursors[i].source.name, seqno=seqno, **rec.fields(self.s.fmt))
        done = Counter(i for i, _ in chosen)
        for i, cur in enumerate(cursors):
            del cur.pending[:done.get(i, 0)]

    def _tune(self, run: Run) -> None:
        """Sleep from the lag = max over sources of (source head − tcursor), in effective heartbeats."""
        now = time.monotonic()
        if now - run.heads_read_at >= HEADS_EVERY_S:  # catching up propagates hundreds of times a second
            with retry.side("source"), self.source_engine.connect() as conn:
                until = source.horizon(self.s.source_tz, delay=self.s.source_delay)  # rows held back are no lag
                run.heads = [source.head(conn, cur.table, until) for cur in run.cursors]
            run.heads_read_at = now
        lags = [head - cur.sampler.tcursor for cur, head in zip(run.cursors, run.heads, strict=True)
                if head is not None]
        tune = schedule.tune(lags, self.s.effective_heartbeat)
        run.sleep_s = tune.sleep_s
        heartbeat.beat("reading", lag_s=tune.maxlag.total_seconds(), sleep_s=tune.sleep_s)
        log.info("tune", maxlag_s=round(tune.maxlag.total_seconds(), 1), lag_heartbeats=round(tune.lag_heartbeats, 1),
                 sleep_s=tune.sleep_s)

    def counts(self) -> dict[str, int]:
        return {"iterations": self.iterations, "propagations": self.propagations}

    def close(self) -> None:
        self.target.dispose()
        self.source_engine.dispose()


def run(loaded: config.Loaded[config.ScraperSection], stop: threading.Event | None = None, *,
        until_caught_up: bool = False) -> int:
    """Run a scraper section until maxiter, a signal, or (until_caught_up) the first idle iteration.

    Exit 0 on all of these; configuration errors raise ConfigError (exit 78). With `notify`, a
    catch-up posts its progress (source time read): running, every progress_every %, completed /
    aborted (signal, maxiter) / failed.
    """
    notice = (notify.for_job(loaded, "catch-up", unit="s of source time") if until_caught_up
              else notify.ProgressNotifier.off(loaded.name, "run"))
    with notice.reporting():
        return lifecycle.serve(loaded, lambda stop: ScraperDaemon(loaded, stop, until_caught_up=until_caught_up,
                                                                  notice=notice), log, stop)
