"""What `scraperd status` reports, as typed results: the fleet, each section, each source context.

Their fields are the `--json` keys (render.document() adds each section's check_state, and the
overall state and the lists lagging, failing and config_errors). Times are naive datetimes as the databases hold them: DBI's (timestart, timeend,
insertdate) UTC, the source's (head, tcursor) in the section's source_tz; durations are seconds
(`_s`). compute.py makes them; render.py writes them; nothing here reads a database.

The states (monitor.results.State, whose value is the exit code of `scraperd status`), per section
(check_state, with the word problem() gives for the last line of the table) and for the fleet:

    CRITICAL  a scraper or averager lagging more than its status_maxlag, or whose databases cannot be
              read (or a scraper without a record yet); its program FATAL or EXITED unexpectedly;
              a broken section (whose exit code is 78 all the same)
    WARNING   a scraper STOPPED (but not lagging); its program in BACKOFF, or absent from supervisord
    OK        everything else (supervisord not answering, or not configured, changes nothing ...)
    UNKNOWN   ... unless nothing at all could be read: supervisord does not answer and every section
              that is not broken failed to read each of its databases (the fleet's state only)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from scraperd.monitor.fleet import program_check
from scraperd.monitor.results import State, worst


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


@dataclass(frozen=True)
class HeartbeatStatus:
    """The section's heartbeat file (heartbeat.py): when and in which phase its daemon last beat."""

    ts: str                 # ISO UTC, as the file holds it
    age_s: float            # seconds since then
    phase: str              # starting, reading, writing, sleeping, retrying
    pid: int
    lag_s: float | None     # the daemon's own lag
    sleep_s: float | None   # its current sleep


@dataclass(frozen=True, kw_only=True)
class SectionStatus:
    """One config section: supervisord's view of its program, and per source what its databases say."""

    section: str
    mode: str
    host: str | None = None
    state: str = "-"          # supervisord's; "-" when it does not answer, "absent" without such a program
    pid: int | None = None
    uptime_s: int | None = None
    description: str | None = None  # supervisord's description of the program (its stop time, ...)
    exitstatus: int | None = None   # of the program's last exit
    spawnerr: str | None = None     # why supervisord could not start it
    unexpected_exit: bool = False   # EXITED with a status not among its exitcodes
    status_maxlag_s: float | None = None
    config_error: bool = False
    errors: tuple[str, ...] = ()
    sources: tuple[SourceHead | ContextStatus, ...] = ()
    log: LogFile | None = None  # scrapers only
    heartbeat: HeartbeatStatus | None = None  # None: no heartbeat file (never run here, or a broken section)

    @property
    def failing(self) -> bool:
        """A scraper or averager whose databases could not be read (or that has no record yet)."""
        return self.mode in ("scraper", "averager") and bool(self.errors or any(r.error for r in self.sources))

    @property
    def lagging(self) -> list[str]:
        """The sources lagging more than status_maxlag."""
        return [r.source for r in self.sources if isinstance(r, ContextStatus) and r.lagging]

    @property
    def unread(self) -> bool:
        """Nothing of its databases could be read."""
        return bool(self.errors) or bool(self.sources) and all(r.error for r in self.sources)

    def problems(self) -> list[tuple[State, str]]:
        """What is wrong with the section, each with its state and a word for it (none when all is well)."""
        out = []
        if self.config_error:
            out.append((State.CRITICAL, "config error"))
        if self.lagging:
            out.append((State.CRITICAL, "lagging"))
        if self.failing:
            out.append((State.CRITICAL, "failing"))
        if (program := program_check(self)) is not None and program.state is not State.OK:
            out.append((program.state, "EXITED" if self.unexpected_exit else self.state))
        if self.mode == "scraper" and self.state == "STOPPED":
            out.append((State.WARNING, "stopped"))
        return out

    @property
    def check_state(self) -> State:
        return worst(state for state, _ in self.problems())


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

    @property
    def state(self) -> State:
        """The worst section's check_state; UNKNOWN when nothing could be read at all."""
        readable = [e for e in self.sections if not e.config_error and e.mode not in ("monitor", "watchdog", "backup")]  # read nothing
        if readable and not self.supervisord.reachable and all(e.unread for e in readable):
            return State.UNKNOWN
        return worst(e.check_state for e in self.sections)

    def problems(self) -> dict[str, list[str]]:
        """word -> the sections it names, worst first: {"lagging": ["adtemp_scraper"], "stopped": [...]}."""
        found = sorted(((state, word, e.section) for e in self.sections for state, word in e.problems()),
                       key=lambda p: -p[0].severity)
        out: dict[str, list[str]] = defaultdict(list)
        for _state, word, section in found:
            out[word].append(section)
        return dict(out)


