"""What `scraperd status` reports, as typed results: the fleet, each section, each source context.

Their fields are the `--json` keys (render.document() adds the lists lagging, failing and
config_errors). Times are naive datetimes as the databases hold them: DBI's (timestart, timeend,
insertdate) UTC, the source's (head, tcursor) in the section's source_tz; durations are seconds
(`_s`). compute.py makes them; render.py writes them; nothing here reads a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class SourceHead:
    """A faker's source table: its head only."""

    source: str
    head: datetime | None = None   # latest date_time, source local time
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class ContextStatus:
    """One source context of a scraper or averager: its last validity record and how far it is behind."""

    source: str
    sitemask: int
    subsite: int
    seqno: int | None = None
    timestart: datetime | None = None    # of the last record, UTC (the one a restart resumes from)
    timeend: datetime | None = None      # UTC
    insertdate: datetime | None = None   # UTC
    seed: bool | None = None             # the last record is the seed
    tcursor: datetime | None = None      # TIMEEND in source local time
    head: datetime | None = None         # latest date_time at least source_delay old, source local time
    lag_s: float | None = None           # head − tcursor, never below 0
    lag_heartbeats: float | None = None  # that lag in effective heartbeats (scrapers)
    propagations_1h: int | None = None   # Vld rows inserted in the last hour, the seed not counted
    lagging: bool = False                # a scraper lagging more than its status_maxlag
    error: str | None = None
    note: str | None = None
    late_rows_24h: int | None = None     # a scraper's late_row reports of the last day; None: not counted


@dataclass(frozen=True)
class LogFile:
    """The log file a scraper's late rows were counted in, and why they could not be, if so."""

    file: str
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class SectionStatus:
    """One config section: supervisord's view of its program, and per source what its databases say."""

    section: str
    mode: str
    host: str | None = None
    state: str = "-"          # supervisord's; "-" when it does not answer, "absent" without such a program
    pid: int | None = None
    uptime_s: int | None = None
    status_maxlag_s: float | None = None
    config_error: bool = False
    errors: tuple[str, ...] = ()
    sources: tuple[SourceHead | ContextStatus, ...] = ()
    log: LogFile | None = None  # scrapers only

    @property
    def failing(self) -> bool:
        """A scraper or averager whose databases could not be read (or that has no record yet)."""
        return self.mode in ("scraper", "averager") and bool(self.errors or any(r.error for r in self.sources))

    @property
    def lagging(self) -> list[str]:
        """The sources lagging more than status_maxlag."""
        return [r.source for r in self.sources if isinstance(r, ContextStatus) and r.lagging]


@dataclass(frozen=True)
class SupervisordStatus:
    """The supervisord that was asked: its config, its socket, and whether it answered."""

    conf: str | None
    serverurl: str | None
    reachable: bool


@dataclass(frozen=True)
class FleetStatus:
    """The status of the named sections: the document `--json` prints."""

    config: str
    now_utc: datetime
    supervisord: SupervisordStatus
    sections: tuple[SectionStatus, ...]

    @property
    def lagging(self) -> list[str]:
        """section:source of every context lagging more than its section's status_maxlag."""
        return [f"{e.section}:{name}" for e in self.sections for name in e.lagging]

    @property
    def failing(self) -> list[str]:
        return [e.section for e in self.sections if e.failing]

    @property
    def config_errors(self) -> list[str]:
        return [e.section for e in self.sections if e.config_error]


