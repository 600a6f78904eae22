"""The faker: fill the fake DCS source tables, one row per table per iteration, for testing scrapers.

Row ids continue from the table's last id. With `faker_timestart` the row with id n has
date_time = faker_timestart + n × interval (elapsed time, shown as local wall time of source_tz, so
a DST change looks as it would in the real DCS); without it, date_time is now() in source_tz.
Values come from the regime's Faker and the `profile`. The rows of one iteration are inserted in one
transaction, so a scraper joining tables (HV ⋈ HVPw) never sees half an iteration.
Start-up (faker_dropsrc, the database, missing tables, reflection) is retried like the loop; the
drop happens once per process: an attempt cut half way is done again whole, a reconnect never drops.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from scraperd import config, databases, dcsddl, heartbeat, lifecycle, logsetup, preflight, retry
from scraperd.regimes.base import Instance, Regime
from scraperd.scrape import sampling

log = logsetup.get_logger("scraperd.faker")


class FakerDaemon:
    """One faker section at work. What a reconnect keeps: the engine, the faker (its random walk
    re-primed from the last rows at each start), the iteration count, and whether the drop was done."""

    def __init__(self, loaded: config.Loaded[config.FakerSection], stop: threading.Event) -> None:
        s = loaded.settings
        self.loaded, self.s, self.stop = loaded, s, stop
        self.regime_cls: type[Regime] = s.regime_cls
        self.faker = self.regime_cls.faker(profile=s.profile, seed=s.faker_seed)
        self.url = preflight.preflight(loaded).source
        self.ddl = Path(s.faker_sql) if s.faker_sql else dcsddl.DEFAULT_DDL
        self.engine = databases.make_engine(self.url)  # connects at first use, after the database exists
        self.iterations = 0
        self.dropped = False

    @property
    def table_names(self) -> list[str]:
        return [t for src in self.regime_cls.sources for t in src.tables]

    def start(self) -> list[sa.Table]:
        """Make sure the source tables exist and reflect them: the running state."""
        # every statement of start-up, the drop and the database creation too, is waited out like the loop
        with retry.side("source"):
            if self.s.faker_dropsrc and not self.dropped:
                # a cut attempt leaves no row yet, so the next one simply drops and recreates again
                created = dcsddl.recreate(self.url, self.ddl)
                self.dropped = True  # once it succeeded: once per process, not again after a reconnect
                log.info("faker_dropsrc", ddl=str(self.ddl), tables=len(created))
            else:
                databases.ensure_database(self.url)
            created = dcsddl.create_missing(self.engine, self.ddl, self.table_names)
            if created:
                log.info("faker_created", tables=created)
            md = databases.reflecting(sa.MetaData())
            with self.engine.connect() as conn:
                tables = [sa.Table(n, md, autoload_with=conn) for n in self.table_names]
                for t in tables:  # random_walk continues from the last row, so restarts change nothing
                    last = conn.execute(sa.select(t).order_by(t.c.id.desc()).limit(1)).mappings().first()
                    self.faker.prime(t.name, dict(last) if last else None)
        log.info("startup", mode="faker", tables=self.table_names, profile=self.s.profile)
        return tables

    def counts(self) -> dict[str, int]:
        return {"iterations": self.iterations}

    def close(self) -> None:
        self.engine.dispose()

    def when(self, id: int) -> datetime:  # noqa: A002
        s = self.s
        if s.faker_timestart is not None:
            start_utc = sampling.to_utc(s.faker_timestart, s.source_tz)
            return sampling.to_local(start_utc + id * s.interval, s.source_tz)
        return datetime.now(UTC).astimezone(s.source_tz).replace(tzinfo=None, microsecond=0)

    def iterate(self, tables: list[sa.Table]) -> list[int]:
        ids: list[int] = []
        heartbeat.beat("writing")
        with retry.side("source"), self.engine.begin() as conn:
            for table in tables:
                last = conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0
                id_ = int(last) + 1
                inst = Instance(table.name, [c.name for c in table.columns])
                self.faker.fake(inst, id_, self.when(id_))
                conn.execute(table.insert().values(**inst))
                ids.append(id_)
        return ids

    def loop(self, tables: list[sa.Table]) -> str:
        """One row per table per iteration, `sleep` apart, until maxiter or a signal."""
        s = self.s
        while not lifecycle.maxiter_reached(s.maxiter, self.iterations):
            if lifecycle.pause(self.stop, s.sleep.total_seconds() if self.iterations else 0):  # between two
                return lifecycle.signal_name(self.stop)
            ids = self.iterate(tables)
            self.iterations += 1
            if s.log_samples:
                log.info("fake", ids=sorted(set(ids)), date_time=self.when(ids[0]).strftime(s.timeformat)
                         if s.faker_timestart else None, n=self.iterations)
        return "maxiter"


def run(loaded: config.Loaded[config.FakerSection], stop: threading.Event | None = None) -> int:
    """Fake rows until maxiter or a signal; exit 0."""
    return lifecycle.serve(loaded, lambda stop: FakerDaemon(loaded, stop), log, stop)
