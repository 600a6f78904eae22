"""The pydantic models of the sections: the only home of every key, its default, type and help text.

One model per mode (ScraperSection, FakerSection, AveragerSection, built on Common and TargetCommon);
MODELS picks it by `mode`. `scraperd show`, `run --help` and gen-ini read the keys from here. A rule
between keys raises _KeyError, so that loading.py can name the key it is about. ProgramKeys are the
few keys supervisord needs, read even from a broken section.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scraperd.config.values import (
    DAY,
    Aggregates,
    Bool,
    Duration,
    Filter,
    Float,
    Int,
    Interval,
    Level,
    Names,
    OptFloat,
    OptWhen,
    RegimeRef,
    TimeZone,
    format_value,
    load_regime,
)

if TYPE_CHECKING:
    from scraperd.config.loading import ConfigFile
    from scraperd.regimes.base import Regime


class _KeyError(ValueError):
    """A cross-key problem, attributed to one key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


class Common(BaseModel):
    """Keys every mode reads."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    mode: Literal["scraper", "faker", "averager"] = Field(
        "scraper", description="What the section runs: scraper, faker or averager.")
    regime: RegimeRef = Field(description="Regime class, e.g. scraperd.regimes.adtemp:AdTemp.")
    source: str = Field(description="~/.my.cnf section or SQLAlchemy URL of the DCS (source) database.")
    source_tz: TimeZone = Field(ZoneInfo("Asia/Shanghai"),
                                description="Time zone of the DCS date_time stamps (the target is UTC).")
    interval: Interval = Field(timedelta(seconds=10), description="DB time quantum: tcursor step after a "
                               "propagation; the faker's step between fake rows.")
    sleep: Duration = Field(timedelta(seconds=3), description="Real-time pause between iterations "
                            "(scrapers tune it from the lag).")
    maxiter: Int = Field(0, ge=0, description="Iterations to run, 0 for no limit.")
    timeformat: str = Field("%Y-%m-%d %H:%M:%S", description="strftime format of datetimes in logs.")
    host: str = Field("", description="Machine that runs this section (gen-ini --host picks by it).")
    reconnect_max_wait: Duration = Field(timedelta(seconds=60),
                                         description="Cap of the exponential backoff between reconnects.")
    log_samples: Bool = Field(True, description="Log every `sample` event; false keeps propagations, "
                              "tune and warnings only.")
    dbi_loglevel: Level = Field("INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    supervisor_autostart: Bool = Field(True, description="supervisord autostart for this program.")
    supervisor_startsecs: Int = Field(5, ge=0, description="supervisord startsecs.")
    supervisor_startretries: Int = Field(3, ge=0, description="supervisord startretries.")
    supervisor_stopwaitsecs: Int = Field(30, ge=1, description="supervisord stopwaitsecs.")
    supervisor_logfile_maxbytes: str = Field("50MB", description="supervisord stdout_logfile_maxbytes.")
    supervisor_logfile_backups: Int = Field(5, ge=0, description="supervisord stdout_logfile_backups.")
    supervisor_priority: Int = Field(999, ge=0, description="supervisord priority (fakers start first).")

    @property
    def regime_cls(self) -> type[Regime]:
        """The regime class `regime` names (imported once, at validation)."""
        return load_regime(self.regime)

    def fmt(self, t: datetime | None) -> str | None:
        """A datetime as the logs show it (timeformat); None stays None."""
        return t.strftime(self.timeformat) if t is not None else None


class TargetCommon(Common):
    """Keys of the modes that write DBI records (scraper, averager)."""

    target: str = Field(description="~/.my.cnf section or SQLAlchemy URL of the DBI (target) database.")
    kls: str | None = Field(None, description="Target DybDbi class or table (GDcsAdTemp); default from the "
                            "regime.")
    spec_dir: Path | None = Field(None, description="Directory of the .spec files (default etc/spec).")
    timefloor: OptWhen = Field(None, description="Local time before which the scraper has no interest "
                               "(limits the last-validity query).")
    seed_target_tables: Bool = Field(False, description="Seed an empty target with the regime's seed() "
                                     "record (refused for offline_db).")
    seed_timestart: OptWhen = Field(None, description="Seed validity start (source local time).")
    seed_timeend: OptWhen = Field(None, description="Seed validity end (source local time).")
    aggregate: Aggregates = Field((), description="MySQL aggregate functions for generic aggregation, "
                                  "e.g. avg,min,max,std.")
    aggregate_count: str = Field("count", description="Name of the sample-count attribute.")
    aggregate_skips: Names = Field((), description="Source columns not aggregated, e.g. id,date_time.")
    aggregate_filter: Filter = Field(None, description="SQL condition applied to aggregated rows, "
                                     "e.g. Quality != 0.")
    aggregate_none: OptFloat = Field(None, description="Value replacing None aggregates. Scraper: a zero-sample "
                                     "range is then written with it (unset: skipped with a warning). Averager: "
                                     "all-NULL columns get it (unset: NULL); a bin the filter empties writes no "
                                     "record either way.")
    task: Int = Field(0, description="DBI TASK of the written records.")
    simmask: Int = Field(1, description="DBI SIMMASK of the written records (1 = data).")
    status_maxlag: Duration = Field(timedelta(hours=1), description="`scraperd status` exits 1 when the "
                                    "lag exceeds this.")

    @property
    def timefloor_utc(self) -> datetime | None:
        """timefloor (source local time) in UTC, as the target's TIMESTART holds it; None when unset."""
        from scraperd.scrape.sampling import to_utc

        return to_utc(self.timefloor, self.source_tz) if self.timefloor is not None else None

    @model_validator(mode="after")
    def _seed_range(self) -> TargetCommon:
        if self.seed_target_tables:
            if self.seed_timestart is None:
                raise _KeyError("seed_timestart", "required when seed_target_tables = True")
            if self.seed_timeend is None:
                raise _KeyError("seed_timeend", "required when seed_target_tables = True")
        if self.seed_timestart and self.seed_timeend and self.seed_timeend <= self.seed_timestart:
            raise _KeyError("seed_timeend", "must be after seed_timestart")
        return self


class ScraperSection(TargetCommon):
    """mode = scraper: sample the source vector, propagate changes as validity records."""

    heartbeat: Duration = Field(timedelta(seconds=3), description="Approximate source update period "
                                "(sleep tuning).")
    offset: Int = Field(0, ge=0, description="Read every (offset+1)th source row.")
    maxage: Duration = Field(timedelta(minutes=10), description="Propagate at least this often (DB time), "
                             "changed or not.")
    threshold: Float = Field(1.0, description="Change threshold handed to the regime's changed().")
    tunesleepmod: Int = Field(1, ge=1, description="Tune the sleep after every Nth propagation.")
    batch_size: Int = Field(2000, ge=1, description="Source rows read per query when catching up.")
    source_delay: Duration = Field(timedelta(0), description="Read a source row only once its date_time is at "
                                   "least this far behind now (source_tz): rows the DCS commits up to this late are "
                                   "still read in order (Kafka Connect's timestamp.delay), and rows held back are no "
                                   "lag. 0: at once, believing a DCS clock up to a day ahead. Scrapers only (the "
                                   "averager reads complete past bins).")

    @property
    def effective_heartbeat(self) -> timedelta:
        """heartbeat × (offset + 1): how often a collected source row is expected; lag is counted in it."""
        return self.heartbeat * (self.offset + 1)


class FakerSection(Common):
    """mode = faker: insert fake rows into the source tables, for testing."""

    faker_dropsrc: Bool = Field(False, description="Drop and recreate the source database from "
                                "faker_sql at start.")
    faker_sql: Path | None = Field(None, description="No-data mysqldump of the source DDL "
                                   "(default etc/fake_dcs.sql).")
    faker_timestart: OptWhen = Field(None, description="date_time of row id n is faker_timestart + "
                                     "n × interval; unset = now() in source_tz.")
    profile: Literal["modulo_ramp", "constant", "random_walk"] = Field(
        "modulo_ramp", description="Fake values: modulo_ramp, constant or random_walk.")
    faker_seed: Int = Field(0, description="Random seed of the random_walk profile.")


class AveragerSection(TargetCommon):
    """mode = averager: binned historical aggregation with grouped queries."""

    territory: Duration = Field(timedelta(days=1), description="Territory bin: one grouped query each "
                                "(aligned on local midnight): a whole multiple of binsize that divides "
                                "a day or is whole days.")
    binsize: Duration = Field(timedelta(hours=1), description="Group size inside a territory bin; one "
                              "record per group. Divides a day (e.g. 10m, 1h, 6h) or is whole days, so "
                              "that bins fall on every local midnight.")
    workers: Int = Field(2, ge=1, le=16, description="Territory-bin queries running at once on a MySQL source "
                         "(SQLite: 1); lower it to spare a busy DCS replica.")
    maxiter: Int = Field(0, ge=0, description="Territory-grid cells to average in one run (each is one "
                         "territory bin of every source), 0 for all complete bins.")

    @model_validator(mode="after")
    def _needs_aggregate(self) -> AveragerSection:
        if not self.aggregate:
            raise _KeyError("aggregate", "the averager needs aggregate functions, e.g. avg,min,max,std")
        return self

    @model_validator(mode="after")
    def _bins_on_midnight(self) -> AveragerSection:
        for key in ("binsize", "territory"):
            size: timedelta = getattr(self, key)
            seconds = size.total_seconds()
            if seconds < 1 or seconds != int(seconds):
                raise _KeyError(key, f"must be a whole number of seconds, at least 1s, got {format_value(size)}")
            if DAY % size and size % DAY:
                raise _KeyError(key, f"must divide a day (e.g. 10m, 1h, 6h) or be whole days, so that it falls "
                                     f"on every local midnight, got {format_value(size)}")
        if self.territory < self.binsize or self.territory % self.binsize:
            raise _KeyError("territory", f"must be a whole multiple of binsize ({format_value(self.binsize)}), "
                                         f"got {format_value(self.territory)}: a bin must not straddle two queries")
        return self


class ProgramKeys(BaseModel):
    """What supervisord needs of a section, readable even when the rest of the section is broken."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    mode: str = "scraper"
    host: str = Common.model_fields["host"].default
    supervisor_autostart: Bool = Common.model_fields["supervisor_autostart"].default
    supervisor_startsecs: Int = Field(Common.model_fields["supervisor_startsecs"].default, ge=0)
    supervisor_startretries: Int = Field(Common.model_fields["supervisor_startretries"].default, ge=0)
    supervisor_stopwaitsecs: Int = Field(Common.model_fields["supervisor_stopwaitsecs"].default, ge=1)
    supervisor_logfile_maxbytes: str = Common.model_fields["supervisor_logfile_maxbytes"].default
    supervisor_logfile_backups: Int = Field(Common.model_fields["supervisor_logfile_backups"].default, ge=0)
    supervisor_priority: Int = Field(Common.model_fields["supervisor_priority"].default, ge=0)


def program_keys(cfg: ConfigFile, name: str) -> ProgramKeys:
    """The supervisord keys of a section as written ([DEFAULT], then the section); a broken one is
    replaced by its default, so that a broken section still gets a program that ends FATAL."""
    raw = {k: v for k, v in {**cfg.defaults, **cfg.sections[name]}.items() if k in ProgramKeys.model_fields}
    while True:
        try:
            return ProgramKeys.model_validate(raw)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e.get("loc")}
            if not bad & set(raw):
                return ProgramKeys.model_validate({})
            raw = {k: v for k, v in raw.items() if k not in bad}


MODELS: dict[str, type[Common]] = {"scraper": ScraperSection, "faker": FakerSection, "averager": AveragerSection}
ALL_KEYS = sorted({k for m in MODELS.values() for k in m.model_fields})
Section = ScraperSection | FakerSection | AveragerSection
