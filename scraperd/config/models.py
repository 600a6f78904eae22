"""The pydantic models of the sections: the only home of every key, its default, type and help text.

One model per mode (ScraperSection, FakerSection, AveragerSection, built on Common and TargetCommon);
MODELS picks it by `mode`. `scraperd show`, `run --help` and gen-ini read the keys from here. A rule
between keys raises _KeyError, so that loading.py can name the key it is about. ProgramKeys are the
few keys supervisord needs, read even from a broken section.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from scraperd.config.values import (
    DAY,
    Aggregates,
    Bool,
    Channels,
    Duration,
    Filter,
    Float,
    Int,
    Interval,
    Level,
    Names,
    OptDuration,
    OptFloat,
    OptInt,
    OptPath,
    OptWhen,
    RegimeRef,
    Routes,
    TimeZone,
    did_you_mean,
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


class Program(BaseModel):
    """Keys every supervised program reads, whatever it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    mode: Literal["scraper", "faker", "averager", "monitor", "watchdog", "backup"] = Field(
        "scraper", description="What the section runs: scraper, faker, averager, monitor or watchdog; "
                               "backup: the settings of `scraperd backup`/`restore` (run from cron).")
    maxiter: Int = Field(0, ge=0, description="Iterations to run, 0 for no limit.")
    timeformat: str = Field("%Y-%m-%d %H:%M:%S", description="strftime format of datetimes in logs.")
    host: str = Field("", description="Machine that runs this section (gen-ini --host picks by it).")
    reconnect_max_wait: Duration = Field(timedelta(seconds=60),
                                         description="Cap of the exponential backoff between reconnects.")
    dbi_loglevel: Level = Field("INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    run_dir: OptPath = Field(None, description="Directory of the heartbeat files, <section>.heartbeat "
                             "(default $SCRAPERD_RUN_DIR, else var/run of the checkout).")
    supervisor_autostart: Bool = Field(True, description="supervisord autostart for this program.")
    supervisor_startsecs: Int = Field(5, ge=0, description="supervisord startsecs.")
    supervisor_startretries: Int = Field(3, ge=0, description="supervisord startretries.")
    supervisor_stopwaitsecs: Int = Field(30, ge=1, description="supervisord stopwaitsecs.")
    supervisor_logfile_maxbytes: str = Field("50MB", description="supervisord stdout_logfile_maxbytes.")
    supervisor_logfile_backups: Int = Field(5, ge=0, description="supervisord stdout_logfile_backups.")
    supervisor_priority: Int = Field(999, ge=0, description="supervisord priority (fakers start first).")

    def fmt(self, t: datetime | None) -> str | None:
        """A datetime as the logs show it (timeformat); None stays None."""
        return t.strftime(self.timeformat) if t is not None else None


CHECKS = ("freshness", "source", "expected", "replication", "fleet")
ROUTED = (*CHECKS, "progress", "config", "watchdog", "*")  # what a route may name: the checks, a job's progress, a broken section


class Notify(BaseModel):
    """Where notifications go: the monitor's state changes, and a long job's progress (scraper
    --catch-up, averager). Secrets never stand here: the SMTP password comes from the secret file."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    notify: Channels = Field((), description="Notification channels: email, http (empty: none).")
    mail_to: Names = Field((), description="E-mail recipients of every check no route names.")
    mail_from: str = Field("", description="From: address (default scraperd@<this host>).")
    smtp_host: str = Field("localhost", description="SMTP server.")
    smtp_port: Int = Field(25, ge=1, le=65535, description="SMTP port (587 for submission with STARTTLS).")
    smtp_starttls: Bool = Field(False, description="Upgrade the SMTP connection with STARTTLS before "
                                "logging in.")
    smtp_user: str = Field("", description="SMTP login (default: the user of the smtp_secret section).")
    smtp_secret: str = Field("", description="Section of the secret file holding the SMTP password "
                             "(`password = ...`, MySQL option-file style); $SCRAPERD_SMTP_PASSWORD "
                             "wins when set. Empty: no login.")
    secret_file: OptPath = Field(None, description="The secret file (default: the MySQL option file, "
                                 "$SCRAPERD_MYCNF or ~/.my.cnf).")
    http_url: str = Field("", description="URL that receives a JSON POST for every check no route names.")
    http_timeout: Duration = Field(timedelta(seconds=10), description="Timeout of one SMTP or HTTP delivery.")
    routes: Routes = Field((), description="Which checks go to whom: `source: dcs-experts@lab.org; "
                           "freshness, fleet: scraper-experts@lab.org, http://mon:8080/hook`; a recipient "
                           "is an e-mail address or an http(s) URL, `*` every check no other route names.")
    notify_attempts: Int = Field(5, ge=1, description="Delivery attempts (exponential backoff between "
                                 "them) before `notify_failed` gives up on a notification.")
    progress_every: Int = Field(10, ge=1, le=100, description="Progress notifications of a long job "
                                "(run --catch-up, averager): one every this many percent.")

    @model_validator(mode="after")
    def _recipients(self) -> Notify:
        routed = [r for _, to in self.routes for r in to]
        for r in routed:
            if "://" in r and not r.startswith(("http://", "https://")):
                raise _KeyError("routes", f"{r!r}: a URL recipient must be http:// or https://")
            if "://" not in r and "@" not in r:
                raise _KeyError("routes", f"{r!r} is neither an e-mail address nor an http(s) URL")
        for checks, _ in self.routes:
            for name in checks:
                if name not in ROUTED:
                    raise _KeyError("routes", f"{name!r} is not a check ({', '.join(ROUTED)})"
                                              f"{did_you_mean(name, ROUTED)}")
        if "email" in self.notify and not (self.mail_to or any("://" not in r for r in routed)):
            raise _KeyError("mail_to", "required when notify names email (or a route with an address)")
        if "http" in self.notify and not (self.http_url or any("://" in r for r in routed)):
            raise _KeyError("http_url", "required when notify names http (or a route with a URL)")
        defaults = ("email" in self.notify and self.mail_to) or ("http" in self.notify and self.http_url)
        if self.notify and not defaults and not any("*" in checks for checks, _ in self.routes):
            key = "mail_to" if "email" in self.notify else "http_url"
            raise _KeyError(key, "required: the checks no route names need a recipient (or give a `*` route)")
        if self.http_timeout < timedelta(seconds=1):
            raise _KeyError("http_timeout", f"must be at least 1s, got {format_value(self.http_timeout)}")
        if self.http_url and not self.http_url.startswith(("http://", "https://")):
            raise _KeyError("http_url", f"must be an http:// or https:// URL, got {self.http_url!r}")
        return self


class Common(Program):
    """Keys every mode that reads a DCS source reads (scraper, faker, averager)."""

    regime: RegimeRef = Field(description="Regime class, e.g. scraperd.regimes.adtemp:AdTemp.")
    source: str = Field(description="~/.my.cnf section or SQLAlchemy URL of the DCS (source) database.")
    source_tz: TimeZone = Field(ZoneInfo("Asia/Shanghai"),
                                description="Time zone of the DCS date_time stamps (the target is UTC).")
    interval: Interval = Field(timedelta(seconds=10), description="DB time quantum: tcursor step after a "
                               "propagation; the faker's step between fake rows.")
    sleep: Duration = Field(timedelta(seconds=3), description="Real-time pause between iterations "
                            "(scrapers tune it from the lag).")
    log_samples: Bool = Field(True, description="Log every `sample` event; false keeps propagations, "
                              "tune and warnings only.")

    @property
    def regime_cls(self) -> type[Regime]:
        """The regime class `regime` names (imported once, at validation)."""
        return load_regime(self.regime)


class TargetCommon(Notify, Common):
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

    stale_after: OptDuration = Field(None, description="`scraperd monitor`: the target is stale (CRITICAL) when "
                                     "its last record is older than this; default 2 × maxage + 10 effective "
                                     "heartbeats + source_delay (the monitor section's stale_after, if set).")

    @model_validator(mode="after")
    def _stale_after(self) -> ScraperSection:
        if self.stale_after is not None and self.stale_after <= timedelta(0):
            raise _KeyError("stale_after", f"must be above 0s, got {format_value(self.stale_after)}")
        return self

    @property
    def effective_heartbeat(self) -> timedelta:
        """heartbeat × (offset + 1): how often a collected source row is expected; lag is counted in it."""
        return self.heartbeat * (self.offset + 1)

    def derived_stale_after(self) -> timedelta:
        """stale_after when unset: a live scraper propagates at least every maxage of DCS time, and
        sleeps at most a few heartbeats between reads."""
        return 2 * self.maxage + 10 * self.effective_heartbeat + self.source_delay


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


def _known_checks(value: object) -> object:
    if isinstance(value, tuple):
        for name in value:
            if name not in CHECKS:
                raise ValueError(f"{name!r} is not a check ({', '.join(CHECKS)}){did_you_mean(name, CHECKS)}")
    return value


class MonitorSection(Notify, Program):
    """mode = monitor: check the fleet's targets, sources, expected records, replication chain and
    supervisord programs; notify on a change of state."""

    sections: Names = Field((), description="Sections whose targets and sources are checked (default: every "
                            "scraper, averager and faker section of the file).")
    checks: Annotated[Names, AfterValidator(_known_checks)] = Field(
        CHECKS, description=f"Checks to run: {', '.join(CHECKS)}.")
    every: Duration = Field(timedelta(minutes=5), description="Pause between two rounds of checks "
                            "(`scraperd run` of this section).")
    stale_after: OptDuration = Field(None, description="Target freshness limit of every scraper that sets none "
                                     "(default: derived from each one's maxage and heartbeat).")
    source_stale_after: OptDuration = Field(None, description="A DCS source whose newest date_time is older than "
                                            "this is CRITICAL (default: the stale_after of the sections reading it).")
    expected_file: OptPath = Field(None, description="The expected (table, context) list that --gen-expected "
                                   "adds to (default var/monitor/<section>.expected).")
    expected_period: Duration = Field(timedelta(days=1), description="An expected pair with no record inserted "
                                      "within this period is MISSING (CRITICAL).")
    chain: Names = Field((), description="Replication chain, master first: ~/.my.cnf sections or URLs "
                         "(offline_db, offline_db_slave1, ...).")
    replica_max_seqnos: Int = Field(100, ge=0, description="A replica behind the hop before it by more SEQNOs "
                                    "than this is WARNING, by twice as many CRITICAL.")
    replica_max_lag: Duration = Field(timedelta(hours=1), description="A replica whose newest INSERTDATE is "
                                      "this far behind the hop before it is WARNING, twice as far CRITICAL.")
    renotify: Duration = Field(timedelta(hours=12), description="Re-send a notification this often while a "
                               "check stays bad.")
    state_file: OptPath = Field(None, description="What was last notified, kept across restarts (SQLite; "
                                "default var/monitor/<section>.state.sqlite).")
    supervisor_conf: OptPath = Field(None, description="supervisord config naming its socket, for the fleet "
                                     "check (default deploy/supervisord.conf).")

    @model_validator(mode="after")
    def _positive(self) -> MonitorSection:
        for key, least in (("every", timedelta(seconds=1)), ("renotify", timedelta(seconds=1)),
                           ("expected_period", timedelta(seconds=1))):
            value: timedelta = getattr(self, key)
            if value < least:
                raise _KeyError(key, f"must be at least {format_value(least)}, got {format_value(value)}")
        for key in ("stale_after", "source_stale_after"):
            if getattr(self, key) is not None and getattr(self, key) <= timedelta(0):
                raise _KeyError(key, f"must be above 0s, got {format_value(getattr(self, key))}")
        return self


class WatchdogSection(Notify, Program):
    """mode = watchdog: the settings of `scraperd watchdog`, supervisord's event listener (gen-ini writes
    it as [eventlistener:scraperd_watchdog]); without such a section, these defaults."""

    stuck_after: OptDuration = Field(None, description="A RUNNING program whose heartbeat is older than this is "
                                     "stuck (default max(3 × its current sleep, 2m)); phase retrying never is.")
    restart_backoff: Duration = Field(timedelta(minutes=10), description="At most one restart of a stuck "
                                      "program per this long.")
    tick: Int = Field(60, description="supervisord tick the heartbeats are checked on: 60 (TICK_60) or 5 (TICK_5).")

    @model_validator(mode="after")
    def _tick(self) -> WatchdogSection:
        if self.tick not in (5, 60):
            raise _KeyError("tick", f"must be 60 or 5 (supervisord's TICK_60, TICK_5), got {self.tick}")
        if self.stuck_after is not None and self.stuck_after <= timedelta(0):
            raise _KeyError("stuck_after", f"must be above 0s, got {format_value(self.stuck_after)}")
        return self


class BackupSection(Notify, Program):
    """mode = backup: the settings of `scraperd backup` and `scraperd restore` (run from cron, not by
    supervisord): their defaults and where their progress is notified (check `progress`)."""

    chunk: Int = Field(10000, ge=1, description="SEQNOs per chunk file of a new backup directory (an existing "
                       "one keeps its own).")
    workers: OptInt = Field(None, ge=1, description="Chunks dumped or loaded at once (MySQL: a mysqldump or a "
                            "connection each; default: backup 3, restore 2).")


NOT_PROGRAMS = ("watchdog", "backup")  # modes supervisord runs as no program of the section's name


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


MODELS: dict[str, type[Program]] = {"scraper": ScraperSection, "faker": FakerSection, "averager": AveragerSection,
                                    "monitor": MonitorSection, "watchdog": WatchdogSection, "backup": BackupSection}
ALL_KEYS = sorted({k for m in MODELS.values() for k in m.model_fields})
Section = ScraperSection | FakerSection | AveragerSection | MonitorSection | WatchdogSection | BackupSection
